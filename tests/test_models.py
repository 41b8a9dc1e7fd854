"""Tests for sanity_lib.models: the model zoo and layer_groups."""
from urllib.error import URLError

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sanity_lib import models
from sanity_lib.data import imagenet_categories, sample_images
from sanity_lib.models.efficientnet import LITE0_STAGES, Conv2dSame, weights_file

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat"}  # chelsea is a tabby

INCEPTION_PAPER_STAGES = [
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "Logits",
]
LITE0_GROUPS = ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head", "logits"]


@pytest.fixture(scope="module")
def lite0():
    return models.efficientnet_lite0()


@pytest.fixture(scope="module")
def inception():
    return models.inception_v3(pretrained=False, init_weights=False)


def _call_order(model, groups, x):
    """Names of the groups in the order their modules run in a forward pass."""
    order = []
    handles = [module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
               for name, module in groups]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return order


# ------------------------------------------------------------------ EfficientNet-Lite0
def test_lite0_classifies_the_sample_photos(lite0):
    x = sample_images(224, names=["chelsea", "coffee"])
    with torch.no_grad():
        probs = lite0(lite0.preprocess(x)).softmax(dim=1)
    names = imagenet_categories()
    top = probs.argmax(dim=1).tolist()
    assert names[top[0]] in CAT_CLASSES
    assert names[top[1]] == "espresso"
    assert float(probs[1].max()) > 0.5
    assert not lite0.training


def test_lite0_preprocess_is_tf_lite_scaling(lite0):
    x = torch.tensor([0.0, 127 / 255, 1.0])
    assert torch.allclose(lite0.preprocess(x), torch.tensor([-127 / 128, 0.0, 1.0]))


def test_lite0_weights_land_where_the_file_says():
    """Spot checks of the key map, against names written out by hand."""
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    model = models.efficientnet_lite0()
    pairs = [
        ("_conv_stem.weight", model.stem.conv.weight),
        ("_bn0.running_var", model.stem.bn.running_var),
        ("_blocks.0._depthwise_conv.weight", model.stage1[0].depthwise_conv.weight),
        ("_blocks.1._expand_conv.weight", model.stage2[0].expand_conv.weight),
        ("_blocks.4._bn1.bias", model.stage3[1].depthwise_bn.bias),
        ("_blocks.10._bn2.running_mean", model.stage5[2].project_bn.running_mean),
        ("_blocks.15._project_conv.weight", model.stage7[0].project_conv.weight),
        ("_conv_head.weight", model.head.conv.weight),
        ("_bn1.weight", model.head.bn.weight),
        ("_fc.bias", model.logits.bias),
    ]
    for key, ours in pairs:
        assert torch.equal(state[key], ours), key
    # every tensor of the file is used once: same number of values
    ours_total = sum(t.numel() for t in model.state_dict().values())
    assert ours_total == sum(t.numel() for t in state.values())


@pytest.mark.parametrize("change, pattern", [
    ("drop", r"1 missing key\(s\) \['_blocks.3._bn1.running_var'\]"),
    ("extra", r"1 unexpected key\(s\) \['_blocks.3._se_reduce.weight'\]"),
])
def test_lite0_loading_is_strict(tmp_path, change, pattern):
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    if change == "drop":
        del state["_blocks.3._bn1.running_var"]
    else:
        state["_blocks.3._se_reduce.weight"] = torch.zeros(6, 144, 1, 1)
    path = tmp_path / "lite0.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match=pattern):
        models.efficientnet_lite0(weights_path=path)


def test_lite0_random_init_differs(lite0):
    random = models.efficientnet_lite0(pretrained=False)
    assert not random.training
    assert not torch.equal(random.logits.weight, lite0.logits.weight)
    assert set(random.state_dict()) == set(lite0.state_dict())


def test_lite0_architecture(lite0):
    # 4,652,008 parameters: the published size of EfficientNet-Lite0 (4.65 M)
    assert sum(p.numel() for p in lite0.parameters()) == 4_652_008
    assert len([m for m in lite0.modules() if isinstance(m, models.efficientnet.MBConv)]) == 16
    # Lite: no squeeze-and-excitation gates, no swish
    assert not any(isinstance(m, (nn.Sigmoid, nn.SiLU, nn.Hardsigmoid)) for m in lite0.modules())
    shapes = {}
    handles = [getattr(lite0, n).register_forward_hook(
        lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:]))) for n in LITE0_GROUPS]
    with torch.no_grad():
        lite0(torch.zeros(1, 3, 224, 224))
    for h in handles:
        h.remove()
    assert shapes == {
        "stem": (32, 112, 112), "stage1": (16, 112, 112), "stage2": (24, 56, 56),
        "stage3": (40, 28, 28), "stage4": (80, 14, 14), "stage5": (112, 14, 14),
        "stage6": (192, 7, 7), "stage7": (320, 7, 7), "head": (1280, 7, 7),
        "logits": (1000,),
    }


@pytest.mark.parametrize("size, kernel", [(224, 3), (112, 5), (15, 3), (15, 5)])
def test_conv2d_same_pads_like_tensorflow(size, kernel):
    """TF 'SAME', stride 2: out = ceil(n / 2), the extra padding goes bottom/right."""
    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, kernel, stride=2, bias=False)
    x = torch.randn(1, 2, size, size)
    out_size = -(-size // 2)
    total = max((out_size - 1) * 2 + kernel - size, 0)
    before, after = total // 2, total - total // 2
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, stride=2)
    assert conv(x).shape[-1] == out_size
    assert torch.allclose(conv(x), expected, atol=1e-6)


def test_lite0_activations_are_distinct_modules_and_not_inplace(lite0):
    acts = [m for m in lite0.modules() if isinstance(m, nn.ReLU6)]
    # stem + head + one per block (depthwise) + one more per block with expansion
    expected = 2 + sum(r * (2 if e != 1 else 1) for r, _, _, e, _ in LITE0_STAGES)
    assert len(acts) == expected == 33
    assert len({id(m) for m in acts}) == len(acts)
    assert not any(getattr(m, "inplace", False) for m in lite0.modules())
    # every activation runs exactly once, and no clamp happens outside those modules
    calls = {}
    handles = [m.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
               for m in acts]

    class CountHardtanh(torch.overrides.TorchFunctionMode):
        count = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (F.hardtanh, F.relu6, F.relu, torch.clamp, torch.Tensor.clamp):
                CountHardtanh.count += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), CountHardtanh():
        lite0(torch.zeros(1, 3, 64, 64))
    for h in handles:
        h.remove()
    assert sorted(calls.values()) == [1] * len(acts)
    assert CountHardtanh.count == len(acts)


# ----------------------------------------------------------------------- MNIST models
def test_mnist_cnn_matches_the_paper():
    model = models.mnist_cnn()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 32, (5, 5)), (32, 64, (5, 5))]
    assert [(l.in_features, l.out_features) for l in linears] == [(64 * 7 * 7, 1024), (1024, 10)]
    # parameters: weights + biases of each layer, counted by hand
    by_hand = (32 * 1 * 25 + 32) + (64 * 32 * 25 + 64) + (3136 * 1024 + 1024) + (1024 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == by_hand == 3_274_634
    assert len([m for m in model.modules() if isinstance(m, nn.MaxPool2d)]) == 2
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model.preprocess(x), x)


def test_mnist_mlp_matches_the_paper():
    model = models.mnist_mlp()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [
        (784, 2500), (2500, 1500), (1500, 500), (500, 10)]
    by_hand = (784 * 2500 + 2500) + (2500 * 1500 + 1500) + (1500 * 500 + 500) + (500 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == by_hand == 6_469_510
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("build", [models.mnist_cnn, models.mnist_mlp])
def test_mnist_models_have_distinct_relu_modules(build):
    model = build()
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 3 and len({id(m) for m in relus}) == 3
    assert not any(m.inplace for m in relus)


# ------------------------------------------------------------------------ Inception v3
def test_inception_groups_are_the_papers_17_stages(inception):
    groups = models.layer_groups(inception)
    assert [name for name, _ in groups] == INCEPTION_PAPER_STAGES
    assert groups[-1][1] is inception.fc and groups[0][1] is inception.Conv2d_1a_3x3
    order = _call_order(inception, groups, torch.zeros(1, 3, 80, 80))
    assert order == INCEPTION_PAPER_STAGES


def test_inception_preprocess_equals_torchvision_transform_input(inception):
    """(x - 0.5) / 0.5 == ImageNet normalization followed by transform_input=True."""
    x = torch.rand(2, 3, 80, 80)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = inception(inception.preprocess(x))
        inception.transform_input = True
        try:
            theirs = inception((x - mean) / std)
        finally:
            inception.transform_input = False
    assert ours.shape == (2, 1000) and not inception.training
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_inception_offline_error_is_clear(monkeypatch, tmp_path):
    import torch.hub

    def no_internet(url, dst, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: it must download
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_internet)
    with pytest.raises(OSError, match="offline") as info:
        models.inception_v3(pretrained=True)
    message = str(info.value)
    assert "needs internet once" in message and "efficientnet_lite0()" in message
    assert info.value.__suppress_context__  # no urllib traceback chained below ours


# ----------------------------------------------------------------------- layer_groups
@pytest.mark.parametrize("build, names, shape", [
    (models.mnist_cnn, ["conv1", "conv2", "fc1", "logits"], (1, 1, 28, 28)),
    (models.mnist_mlp, ["fc1", "fc2", "fc3", "logits"], (1, 1, 28, 28)),
    (lambda: models.linear_model(torch.ones(1, 4, 4)), ["linear"], (1, 1, 4, 4)),
    (models.one_conv_model, ["conv"], (1, 1, 8, 8)),
    (lambda: models.conv_stack_model(3), ["convs.0", "convs.1", "convs.2"], (1, 1, 8, 8)),
])
def test_layer_groups_order_follows_forward(build, names, shape):
    model = build()
    groups = models.layer_groups(model)
    assert [n for n, _ in groups] == names
    assert all(module is model.get_submodule(n) for n, module in groups)
    assert _call_order(model, groups, torch.zeros(shape)) == names


def test_layer_groups_lite0(lite0):
    groups = models.layer_groups(lite0)
    assert [n for n, _ in groups] == LITE0_GROUPS == list(lite0.layer_group_names)
    assert _call_order(lite0, groups, torch.zeros(1, 3, 64, 64)) == LITE0_GROUPS
    # the groups cover every parameter exactly once
    covered = [id(p) for _, m in groups for p in m.parameters()]
    assert sorted(covered) == sorted(id(p) for p in lite0.parameters())


def test_layer_groups_user_sequential():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 1, 6, 6))  # materialize the lazy layer
    groups = models.layer_groups(net)
    assert [n for n, _ in groups] == ["0", "3"]
    assert groups[0][1] is net[0] and groups[1][1] is net[3]


def test_layer_groups_user_module_uses_registration_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 5))
            self.act = nn.ReLU()
            self.head = nn.Linear(5, 2)

        def forward(self, x):
            return self.head(self.act(self.encoder(x)))

    net = Net()
    assert [n for n, _ in models.layer_groups(net)] == ["encoder", "head"]
    # explicit groups: dotted paths, in the order given
    groups = models.layer_groups(net, groups=["encoder.0", "encoder.2", "head"])
    assert [m for _, m in groups] == [net.encoder[0], net.encoder[2], net.head]
    # (name, module) pairs keep the caller's names
    pairs = models.layer_groups(net, groups=[("first", net.encoder[0]), ("last", net.head)])
    assert pairs == [("first", net.encoder[0]), ("last", net.head)]
    # (name, path) pairs rename
    assert models.layer_groups(net, groups=[("Logits", "head")]) == [("Logits", net.head)]


def test_layer_groups_explicit_override_beats_layer_group_names():
    model = models.mnist_cnn()
    groups = models.layer_groups(model, groups=["fc1", "logits"])
    assert [n for n, _ in groups] == ["fc1", "logits"]


def test_layer_groups_bad_names():
    model = models.mnist_cnn()
    with pytest.raises(ValueError, match=r"no submodule 'conv3'.*close matches: \[.*'conv1'"):
        models.layer_groups(model, groups=["conv1", "conv3"])
    with pytest.raises(ValueError, match=r"top-level submodules are \['conv1', 'act1'"):
        models.layer_groups(model, groups=["decoder"])
    with pytest.raises(ValueError, match="not part of the model"):
        models.layer_groups(model, groups=[("fc", nn.Linear(2, 2))])
    with pytest.raises(TypeError, match="list of submodule names"):
        models.layer_groups(model, groups=[3])
    with pytest.raises(ValueError, match="unique.*conv1"):
        models.layer_groups(model, groups=["conv1", "conv1"])


def test_layer_groups_without_parameterized_children():
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3))
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x * self.weight)

    with pytest.raises(ValueError, match=r"no top-level submodule with parameters.*groups=\["):
        models.layer_groups(Bare())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        models.layer_groups("conv1")


# --------------------------------------------------------------- analysis toy models
def test_linear_model_is_w_dot_x():
    torch.manual_seed(1)
    w = torch.randn(1, 5, 5)
    x = torch.randn(4, 1, 5, 5, requires_grad=True)
    model = models.linear_model(w, bias=0.7)
    out = model(x)
    assert out.shape == (4, 1)
    by_hand = (x * w).flatten(1).sum(dim=1, keepdim=True) + 0.7
    assert torch.allclose(out, by_hand, atol=1e-5)
    # the gradient is w for every input (the paper's section 5.1)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, w.expand_as(grad))
    assert torch.equal(model.weight, w) and torch.equal(model.preprocess(x), x)
    with pytest.raises(ValueError, match=r"N x 1 x 5 x 5"):
        model(torch.zeros(2, 1, 4, 4))


def test_one_conv_model_is_conv_relu_sum():
    model = models.one_conv_model(in_channels=3, out_channels=6, seed=3)
    x = torch.randn(2, 3, 9, 9)
    by_hand = F.relu(F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)).sum(dim=(1, 2, 3))
    assert torch.allclose(model(x)[:, 0], by_hand, atol=1e-4)
    # seeded: same seed, same filters; other seed, other filters
    assert torch.equal(models.one_conv_model(in_channels=3, out_channels=6, seed=3).conv.weight,
                       model.conv.weight)
    assert not torch.equal(models.one_conv_model(in_channels=3, out_channels=6, seed=4).conv.weight,
                           model.conv.weight)
    assert isinstance(model.act, nn.ReLU) and model.layer_group_names == ("conv",)


def test_one_conv_sobel_is_scikit_image_sobel_magnitude():
    import numpy as np
    from skimage.filters import sobel_h, sobel_v

    image = np.random.default_rng(0).random((20, 24))
    model = models.one_conv_model(init="sobel", padding_mode="replicate")
    ours = model(torch.tensor(image, dtype=torch.float32)[None, None]).item()
    # scikit-image's kernels are ours divided by 4; its 'reflect' border = replicate here
    reference = 4 * (np.abs(sobel_h(image)) + np.abs(sobel_v(image))).sum()
    assert ours == pytest.approx(reference, rel=1e-5)


def _step_gradient(model, size=32, edge=16):
    x = torch.zeros(1, 1, size, size)
    x[..., edge:] = 1.0
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    return grad[0, 0]


def test_one_conv_sobel_gradient_sits_on_the_edge():
    grad = _step_gradient(models.one_conv_model(init="sobel", padding_mode="replicate"))
    mass = grad.abs()
    near_edge = mass[:, 14:18].sum()  # the 4 columns whose 3x3 windows see the step
    assert float(near_edge / mass.sum()) == pytest.approx(1.0)
    assert float(mass[:, :12].sum()) == 0.0 and float(mass[:, 20:].sum()) == 0.0


def test_one_conv_random_gradient_changes_only_at_the_edge():
    """Paper section 5.2: with random weights the gradient is constant in flat regions
    and changes only where the activation pattern changes, i.e. along edges."""
    grad = _step_gradient(models.one_conv_model(seed=0, out_channels=16, padding_mode="replicate"))
    inner = grad[1:-1, 1:-1]  # leave out the border, where padding repeats pixels
    change = (inner[:, 1:] - inner[:, :-1]).abs().sum(dim=0)  # per column boundary
    # the gradient at column p depends on input columns p-2..p+2, so with the step between
    # image columns 15 and 16 it can change across the boundaries 13|14 ... 17|18, which
    # are change[12:17] (inner column j is image column j + 1)
    edge_cols = change[12:17]
    assert float(edge_cols.sum()) > 0
    assert float(change.sum() - edge_cols.sum()) == pytest.approx(0.0, abs=1e-5)
    assert float((inner[1:] - inner[:-1]).abs().max()) == pytest.approx(0.0, abs=1e-5)


def test_one_conv_model_bad_arguments():
    with pytest.raises(ValueError, match="init='laplace'"):
        models.one_conv_model(init="laplace")
    with pytest.raises(ValueError, match="exactly 4 filters"):
        models.one_conv_model(init="sobel", out_channels=8)
    with pytest.raises(ValueError, match=r"out_channels x 1 x 3 x 3"):
        models.one_conv_model(kernel=torch.zeros(2, 2, 3, 3))


def test_shifted_softplus_is_softplus_moved_to_zero():
    """softplus(z) - ln 2, with softplus's derivative; the library's methods see a smooth
    activation (the guided clamp acts at it, GBP warns it is no rectifier)."""
    import math

    import sanity_lib as sl

    z = torch.linspace(-30, 30, 601, dtype=torch.float64, requires_grad=True)
    shifted = models.ShiftedSoftplus()(z)
    torch.testing.assert_close(shifted, torch.log1p(torch.exp(z)) - math.log(2))
    shifted.sum().backward()
    torch.testing.assert_close(z.grad, torch.sigmoid(z.detach()))
    assert float(models.ShiftedSoftplus()(torch.zeros(1))) == 0.0
    model = models.mnist_cnn("shifted_softplus", seed=3)
    assert all(type(getattr(model, a)) is models.ShiftedSoftplus for a in ("act1", "act2", "act3"))
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([1, 4, 7])
    with pytest.warns(sl.saliency.SaliencyWarning, match="Softplus.*not rectifiers"):
        plain = sl.saliency.explain(model, x, "guided_backprop", target=target)
    torch.testing.assert_close(plain, sl.saliency.explain(model, x, "gradient", target=target))
    guided = sl.saliency.explain(model, x, "guided_backprop", target=target, smooth="guided")
    assert not torch.allclose(guided, plain)
    # Captum's DeepLIFT has no rule for the subclass: refused, not treated as linear
    with pytest.raises(sl.saliency.UnsupportedModelError, match="ShiftedSoftplus"):
        sl.saliency.explain(model, x, "deeplift", target=target)


# ----------------------------------------------------------------------- conv_stack_model
def _guided_by_hand(model, x):
    """Guided Backprop of a ConvStackModel written out layer by layer: at every ReLU the
    gradient is multiplied by (z > 0) and by (gradient > 0); conv layers pass it back through
    their transposed weights (torch.nn.grad.conv2d_input)."""
    pre, a = [], x
    for conv in model.convs:
        z = conv(a)
        pre.append((a, z))
        a = torch.relu(z)
    grad = torch.ones_like(a)                              # d sum / d output
    for conv, (a_in, z) in zip(reversed(model.convs), reversed(pre)):
        grad = grad * (z > 0) * (grad > 0)
        grad = torch.nn.grad.conv2d_input(a_in.shape, conv.weight, grad, padding=1)
    return grad


def test_conv_stack_guided_backprop_matches_a_hand_computation():
    from sanity_lib import saliency

    x = torch.rand(3, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    for depth in (1, 2, 4):
        model = models.conv_stack_model(depth, seed=depth)
        with torch.no_grad():
            expected = _guided_by_hand(model, x)
        guided = saliency.explain(model, x, "guided_backprop")
        torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-6)
        gradient = saliency.explain(model, x, "gradient")
        # one layer: the sum sends +1 to every ReLU and the clamp never acts
        assert torch.equal(guided, gradient) == (depth == 1), depth


def test_conv_stack_is_seeded_and_checks_its_arguments():
    a, b = models.conv_stack_model(2, seed=5), models.conv_stack_model(2, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert models.conv_stack_model(2, in_channels=3)(torch.rand(1, 3, 8, 8)).shape == (1, 1)
    for bad in ({"depth": 0}, {"channels": 0}, {"depth": 1.5}):
        with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
            models.conv_stack_model(**{"depth": 2, **bad})
