"""Tests for sanity_lib.saliency, each against an independent computation.

References are written out by hand here: gradients by a manual backward pass through
explicit conv / linear operations (torch.nn.grad), Integrated Gradients by NumPy's
Gauss-Legendre nodes, SmoothGrad from the documented noise, GradCAM from activations and
gradients captured with our own hooks, and the linear-model identities of PAPER.md 7.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input

import sanity_lib as sl
import sanity_lib.models as sl_models
from sanity_lib.saliency import (DEFAULT_SETTINGS, METHODS, SaliencyWarning,
                                 UnsupportedModelError, explain, smoothgrad_noise)

torch.set_num_threads(1)

FAST = {  # few samples / steps, so the file stays quick; defaults are tested separately
    "integrated_gradients": {"n_steps": 8},
    "smoothgrad": {"n_samples": 4},
    "vargrad": {"n_samples": 4},
    "integrated_gradients_smoothgrad": {"n_samples": 3, "n_steps": 4},
}


def seeded(seed=0):
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def logit_gradient(model, x, target):
    """dS_target/dx by plain autograd, one target per image."""
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), x)
    return grad


# ------------------------------------------------------------------- small test models

class TinyNet(nn.Module):
    """conv(1->3) -> rect -> conv(3->4) -> rect -> fc(4*6*6 -> 5), rectifier written in
    one of many ways. Every variant computes the same function (per `upper`)."""

    STYLES = {  # style: upper bound of the rectifier (None = ReLU)
        "relu_module": None, "reused_module": None, "functional_inplace": None,
        "torch_relu_ignoring_return": None, "method_relu_ignoring_return": None,
        "clamp_min0": None, "threshold_0_0": None, "relu6_module": 6.0,
        "relu6_functional_inplace": 6.0, "hardtanh_0_6": 6.0,
    }

    def __init__(self, style="relu_module", scale=6.0):
        super().__init__()
        seeded(3)
        self.style = style
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 5)
        with torch.no_grad():  # big enough pre-activations that ReLU6's top matters
            self.conv1.weight.mul_(scale)
            self.conv2.weight.mul_(scale)
        if style == "relu_module":
            self.act1, self.act2 = nn.ReLU(), nn.ReLU()
        elif style == "reused_module":
            self.act = nn.ReLU()
        elif style == "relu6_module":
            self.act1, self.act2 = nn.ReLU6(), nn.ReLU6()

    @property
    def upper(self):
        return self.STYLES[self.style]

    def rect(self, z, i):
        s = self.style
        if s in ("relu_module", "relu6_module"):
            return getattr(self, f"act{i}")(z)
        if s == "reused_module":
            return self.act(z)
        if s == "functional_inplace":
            return F.relu(z, inplace=True)
        if s == "torch_relu_ignoring_return":
            torch.relu_(z)
            return z
        if s == "method_relu_ignoring_return":
            z.relu_()
            return z
        if s == "clamp_min0":
            return z.clamp(min=0)
        if s == "threshold_0_0":
            return F.threshold(z, 0.0, 0.0)
        if s == "relu6_functional_inplace":
            return F.relu6(z, inplace=True)
        if s == "hardtanh_0_6":
            return F.hardtanh(z, 0.0, 6.0)
        raise AssertionError(s)

    def forward(self, x):
        h = self.rect(self.conv1(x), 1)
        h = self.rect(self.conv2(h), 2)
        return self.fc(h.flatten(1))


def hand_backprop(net, x, target, guided):
    """Manual backward through TinyNet: conv2d_input for the convolutions, the weight
    matrix for the linear layer, and the (guided) rectifier rule written out."""
    up = net.upper if net.upper is not None else float("inf")
    w1, b1, w2, b2 = net.conv1.weight, net.conv1.bias, net.conv2.weight, net.conv2.bias
    with torch.no_grad():
        z1 = F.conv2d(x, w1, b1, padding=1)
        a1 = z1.clamp(0, up)
        z2 = F.conv2d(a1, w2, b2, padding=1)
        g = F.one_hot(target, 5).to(x.dtype) @ net.fc.weight          # dS/da2, flattened
        g = g.reshape(z2.shape)
        for z, weight, shape in ((z2, w2, a1.shape), (z1, w1, x.shape)):
            open_ = (z > 0) & (z < up)
            g = (g.clamp(min=0) if guided else g) * open_
            g = conv2d_input(shape, weight, g, padding=1)
    return g, torch.cat([z1.flatten(), z2.flatten()])


class TinyCNN(nn.Module):
    """conv -> BN -> ReLU -> maxpool -> conv -> ReLU -> dropout -> flatten -> fc(3)."""

    def __init__(self):
        super().__init__()
        seeded(1)
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6 * 4 * 4, 3)
        with torch.no_grad():  # non-trivial running statistics
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        x = self.pool(self.act1(self.bn(self.conv1(x))))
        return self.fc(self.flatten(self.drop(self.act2(self.conv2(x)))))


def smooth_mlp(activation=nn.Tanh, seed=2):
    seeded(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), activation(), nn.Linear(8, 6),
                         activation(), nn.Linear(6, 3)).double().eval()


def linear(weight, bias=0.3):
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.numel(), 1)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(weight.reshape(1, -1))
        model[1].bias.fill_(bias)
    return model


@pytest.fixture
def images():
    gen = seeded(5)
    return torch.rand(3, 1, 6, 6, generator=gen) * 2 - 0.5


@pytest.fixture
def cnn_x():
    gen = seeded(6)
    return torch.randn(4, 2, 8, 8, generator=gen)


# ------------------------------------------------------------------------- gradients

def test_gradient_is_the_signed_autograd_gradient_of_the_target_logit(cnn_x):
    model = TinyCNN().eval()
    target = torch.tensor([0, 2, 1, 2])
    expected = logit_gradient(model, cnn_x, target)
    got = explain(model, cnn_x, "gradient", target=target)
    torch.testing.assert_close(got, expected)
    assert (got < 0).any() and (got > 0).any()  # signed, not abs
    torch.testing.assert_close(explain(model, cnn_x, "gradient_x_input", target=target),
                               cnn_x * expected)


def test_gradient_matches_a_manual_backward_pass(images):
    net = TinyNet("relu_module").eval()
    target = torch.tensor([1, 4, 0])
    expected, _ = hand_backprop(net, images, target, guided=False)
    torch.testing.assert_close(explain(net, images, "gradient", target=target), expected,
                               rtol=1e-5, atol=1e-6)


def test_target_none_explains_each_images_own_argmax(cnn_x):
    model = TinyCNN().eval()
    top = model(cnn_x).argmax(1)
    other = (top + 1) % 3
    default = explain(model, cnn_x, "gradient")
    torch.testing.assert_close(default, logit_gradient(model, cnn_x, top))
    assert not torch.allclose(default, explain(model, cnn_x, "gradient", target=other))
    # An int target is broadcast to every image.
    torch.testing.assert_close(explain(model, cnn_x, "gradient", target=2),
                               logit_gradient(model, cnn_x, torch.full((4,), 2)))


def test_batch_size_chunks_give_the_same_maps(cnn_x):
    model = TinyCNN().eval()
    for method in ("gradient", "integrated_gradients", "guided_backprop", "gradcam", "deeplift"):
        settings = FAST.get(method, {})
        whole = explain(model, cnn_x, method, **settings)
        chunked = explain(model, cnn_x, method, batch_size=3, **settings)
        torch.testing.assert_close(chunked, whole, msg=method)
    torch.testing.assert_close(
        explain(model, cnn_x, "integrated_gradients", n_steps=8, internal_batch_size=5),
        explain(model, cnn_x, "integrated_gradients", n_steps=8))


# -------------------------------------------------------------- integrated gradients

def hand_ig(model, x, baseline, n_steps, target):
    """Gauss-Legendre quadrature of the path integral, nodes from NumPy."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas, weights = (nodes + 1) / 2, weights / 2          # map [-1, 1] to [0, 1]
    total = torch.zeros_like(x)
    for alpha, weight in zip(alphas, weights):
        point = baseline + float(alpha) * (x - baseline)
        total += float(weight) * logit_gradient(model, point, target)
    return (x - baseline) * total


def test_integrated_gradients_is_gauss_legendre_quadrature():
    model = smooth_mlp()
    x = torch.randn(3, 12, dtype=torch.float64, generator=seeded(7))
    target = torch.tensor([0, 1, 2])
    got = explain(model, x, "integrated_gradients", target=target, n_steps=7)
    torch.testing.assert_close(got, hand_ig(model, x, torch.zeros_like(x), 7, target))


def test_integrated_gradients_completeness_on_a_smooth_model():
    model = smooth_mlp(nn.Softplus)
    x = 3 * torch.randn(4, 12, dtype=torch.float64, generator=seeded(8))
    target = model(x).argmax(1)
    for baseline in (0.0, 0.5, torch.linspace(-1, 1, 12, dtype=torch.float64)):
        base = torch.broadcast_to(torch.as_tensor(baseline, dtype=torch.float64), x.shape)
        rows = torch.arange(4)
        delta = (model(x)[rows, target] - model(base)[rows, target]).detach()
        attr = explain(model, x, "integrated_gradients", baseline=baseline)  # 50 steps
        error = (attr.sum(1) - delta).abs()
        assert (error < 1e-3 * delta.abs().clamp(min=1e-2)).all(), (baseline, error, delta)
        # Without the (x - x') factor the sum is far from f(x) - f(x'): the check bites.
        wrong = (attr / (x - base)).sum(1)
        assert ((wrong - delta).abs() > 1e-2).any()


def test_integrated_gradients_on_a_linear_model_is_input_minus_baseline_times_w():
    gen = seeded(9)
    w = torch.randn(1, 4, 4, generator=gen, dtype=torch.float64)
    model = linear(w)
    x = torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64)
    baseline = torch.randn(1, 4, 4, generator=gen, dtype=torch.float64)
    for rule in ("gausslegendre", "riemann_middle", "riemann_left"):
        got = explain(model, x, "integrated_gradients", baseline=baseline, n_steps=5,
                      integration=rule)
        # Captum builds Riemann nodes in float32, hence 1e-7 rather than 1e-15.
        torch.testing.assert_close(got, (x - baseline) * w, rtol=1e-7, atol=1e-10)


def test_linear_model_identities_of_the_paper():
    """PAPER.md 7: gradient = SmoothGrad = w; Gradient x Input = IG (zero baseline) = x * w."""
    gen = seeded(10)
    w = torch.randn(1, 5, 5, generator=gen, dtype=torch.float64)
    model = linear(w)
    x = torch.randn(4, 1, 5, 5, generator=gen, dtype=torch.float64)
    w_batch = w.expand_as(x)
    torch.testing.assert_close(explain(model, x, "gradient"), w_batch)
    for level in (0.15, 2.0):  # any noise: the gradient of a linear model is constant
        torch.testing.assert_close(explain(model, x, "smoothgrad", n_samples=6,
                                           noise_level=level), w_batch)
    torch.testing.assert_close(explain(model, x, "vargrad", n_samples=6), torch.zeros_like(x))
    for method in ("gradient_x_input", "integrated_gradients", "deeplift", "lrp_epsilon"):
        torch.testing.assert_close(explain(model, x, method), x * w, msg=method)


# ----------------------------------------------------------- SmoothGrad and friends

def test_smoothgrad_and_vargrad_are_mean_and_variance_at_the_documented_noisy_points():
    model = smooth_mlp(nn.Softplus)
    x = torch.randn(3, 12, dtype=torch.float64, generator=seeded(11))
    target = torch.tensor([2, 0, 1])
    noise = smoothgrad_noise(x, n_samples=7, noise_level=0.3, seed=4)
    grads = torch.stack([logit_gradient(model, x + eps, target) for eps in noise])
    settings = {"n_samples": 7, "noise_level": 0.3, "seed": 4, "target": target}
    for batch_size in (2, 100):  # images and samples split over calls, or all in one
        torch.testing.assert_close(
            explain(model, x, "smoothgrad", batch_size=batch_size, **settings), grads.mean(0))
        torch.testing.assert_close(
            explain(model, x, "vargrad", batch_size=batch_size, **settings),
            grads.var(0, unbiased=False))
    # A different seed gives different noise, hence a different map.
    other = explain(model, x, "smoothgrad", **{**settings, "seed": 5})
    assert not torch.allclose(other, grads.mean(0))


def test_smoothgrad_noise_std_scales_with_each_images_own_range():
    gen = seeded(12)
    x = torch.rand(3, 1, 8, 8, generator=gen)
    x[1] *= 10.0          # ten times the range
    x[2] = 0.7            # a constant image: no noise at all
    ranges = x.flatten(1).amax(1) - x.flatten(1).amin(1)
    noise = smoothgrad_noise(x, n_samples=400, noise_level=0.15, seed=0)
    std = noise.transpose(0, 1).flatten(1).std(1)
    torch.testing.assert_close(std[:2], 0.15 * ranges[:2], rtol=0.03, atol=0)
    assert noise[:, 2].eq(0).all()
    assert noise.transpose(0, 1).flatten(1)[:2].mean(1).abs().max() < 0.02 * ranges[1]
    # Image i's noise does not depend on the other images in the batch.
    alone = smoothgrad_noise(x[:1], n_samples=400, noise_level=0.15, seed=0)
    torch.testing.assert_close(alone[:, 0], noise[:, 0])


def test_ig_smoothgrad_is_smoothgrad_over_integrated_gradients():
    gen = seeded(13)
    w = torch.randn(1, 3, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64)
    noise = smoothgrad_noise(x, n_samples=5, noise_level=0.2, seed=1)
    got = explain(linear(w), x, "integrated_gradients_smoothgrad", n_samples=5,
                  noise_level=0.2, seed=1, n_steps=3, baseline=0.25)
    torch.testing.assert_close(got, ((x + noise - 0.25) * w).mean(0))   # closed form
    model = smooth_mlp()
    x = torch.randn(2, 12, dtype=torch.float64, generator=gen)
    noise = smoothgrad_noise(x, n_samples=3, noise_level=0.2, seed=1)
    target = torch.tensor([1, 2])
    expected = torch.stack([hand_ig(model, x + eps, torch.zeros_like(x), 4, target)
                            for eps in noise]).mean(0)
    got = explain(model, x, "integrated_gradients_smoothgrad", n_samples=3, noise_level=0.2,
                  seed=1, n_steps=4, target=target, batch_size=2)
    torch.testing.assert_close(got, expected)


def test_defaults_are_the_papers_settings():
    ig = DEFAULT_SETTINGS["integrated_gradients"]
    assert (ig["n_steps"], ig["baseline"]) == (50, 0.0)
    sg = DEFAULT_SETTINGS["smoothgrad"]
    assert (sg["n_samples"], sg["noise_level"]) == (50, 0.15)
    assert DEFAULT_SETTINGS["integrated_gradients_smoothgrad"]["n_samples"] == 50
    assert set(DEFAULT_SETTINGS) == set(METHODS)


# ------------------------------------------------------------------- guided backprop

@pytest.mark.parametrize("style", list(TinyNet.STYLES))
def test_guided_backprop_is_guided_at_every_rectifier(style, images):
    net = TinyNet(style).eval()
    target = torch.tensor([1, 4, 0])
    expected, z = hand_backprop(net, images, target, guided=True)
    if net.upper is not None:
        assert (z > net.upper).any()  # the upper bound of ReLU6 is exercised
    got = explain(net, images, "guided_backprop", target=target)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    plain = explain(net, images, "gradient", target=target)
    assert (got - plain).abs().max() > 1e-3 * plain.abs().max()


def test_guided_backprop_on_efficientnet_differs_from_the_gradient():
    model = sl_models.efficientnet_lite0(pretrained=False)     # ReLU6 everywhere
    x = torch.randn(1, 3, 64, 64, generator=seeded(14))
    gbp = explain(model, x, "guided_backprop")
    grad = explain(model, x, "gradient")
    assert (gbp - grad).abs().max() > 0.1 * grad.abs().max()
    # The default GradCAM layer is the head, the last 4-D layer group.
    torch.testing.assert_close(explain(model, x, "gradcam"),
                               explain(model, x, "gradcam", layer="head"))


class _Custom(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad


class _FunctionalNet(nn.Module):
    def __init__(self, op):
        super().__init__()
        seeded(0)
        self.fc1, self.fc2, self.op = nn.Linear(4, 5), nn.Linear(5, 3), op

    def forward(self, x):
        return self.fc2(self.op(self.fc1(x)))


@pytest.mark.parametrize("op, match", [
    (nn.LeakyReLU(), "LeakyReLU"),
    (nn.PReLU(), "PReLU"),
    (nn.ELU(), "ELU"),
    (lambda h: F.leaky_relu(h, 0.1), "LeakyReLU"),
    (_Custom.apply, "custom autograd Function _Custom"),
    (lambda h: torch.ops.aten.relu(h), "could not intercept"),
])
def test_guided_backprop_refuses_rectifiers_it_cannot_guide(op, match):
    model = _FunctionalNet(op) if not isinstance(op, nn.Module) else \
        nn.Sequential(nn.Linear(4, 5), op, nn.Linear(5, 3))
    with pytest.raises(UnsupportedModelError, match=match):
        explain(model, torch.randn(2, 4), "guided_backprop")


def test_guided_backprop_is_guided_at_relu_and_plain_through_tanh():
    seeded(17)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Tanh(),
                          nn.Linear(4, 3)).double().eval()
    x = torch.randn(4, 6, dtype=torch.float64, generator=seeded(18))
    target = torch.tensor([0, 1, 2, 0])
    w1, b1, w2, b2 = model[0].weight, model[0].bias, model[2].weight, model[2].bias
    w3 = model[4].weight
    with torch.no_grad():
        z1 = x @ w1.T + b1
        a2 = torch.tanh(z1.clamp(min=0) @ w2.T + b2)
        g = F.one_hot(target, 3).double() @ w3          # dS/da2
        g = (g * (1 - a2 ** 2)) @ w2                     # plain through tanh
        g = (g.clamp(min=0) * (z1 > 0)) @ w1             # guided at the ReLU
    with pytest.warns(SaliencyWarning, match="Tanh.*1 rectifier call"):
        got = explain(model, x, "guided_backprop", target=target)
    torch.testing.assert_close(got, g)


def test_guided_backprop_through_smooth_activations_warns_and_is_the_gradient():
    model = smooth_mlp(nn.Softplus)
    x = torch.randn(2, 12, dtype=torch.float64, generator=seeded(15))
    with pytest.warns(SaliencyWarning, match="Softplus.*equals the plain gradient"):
        gbp = explain(model, x, "guided_backprop")
    torch.testing.assert_close(gbp, explain(model, x, "gradient"))


# --------------------------------------------------------------------------- GradCAM

class CamNet(nn.Module):
    def __init__(self, negative_head=False):
        super().__init__()
        seeded(4)
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.act2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)
        if negative_head:  # every class score falls as any channel of act2 grows
            with torch.no_grad():
                self.fc.weight.copy_(-self.fc.weight.abs() - 0.1)

    def forward(self, x):
        x = self.act2(self.conv2(self.pool(self.act1(self.conv1(x)))))
        return self.fc(self.gap(x).flatten(1))


def hand_gradcam(model, layer, x, target):
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.update(A=o))
    try:
        out = model(x)
    finally:
        handle.remove()
    (dA,) = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), store["A"])
    alpha = dA.mean(dim=(2, 3), keepdim=True)
    cam = (alpha * store["A"]).sum(1, keepdim=True).clamp(min=0).detach()
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)


def test_gradcam_matches_a_hand_computation(cnn_x):
    model = CamNet().eval()
    target = torch.tensor([0, 1, 2, 1])
    for layer in ("act2", "conv2", "act1"):
        expected = hand_gradcam(model, model.get_submodule(layer), cnn_x, target)
        got = explain(model, cnn_x, "gradcam", target=target, layer=layer)
        assert got.shape == (4, 1, 8, 8)
        torch.testing.assert_close(got, expected, msg=layer)
        assert expected.abs().sum() > 0
    # A module object works as well as its name.
    torch.testing.assert_close(explain(model, cnn_x, "gradcam", target=target, layer=model.act2),
                               hand_gradcam(model, model.act2, cnn_x, target))


def test_gradcam_is_zero_not_nan_when_the_score_does_not_grow_with_the_layer(cnn_x):
    model = CamNet(negative_head=True).eval()
    for method in ("gradcam", "guided_gradcam"):
        maps = explain(model, cnn_x, method, layer="act2")
        assert torch.isfinite(maps).all() and maps.eq(0).all(), method
    # The same without the sign trick would not be zero: the case is not trivial.
    assert explain(CamNet().eval(), cnn_x, "gradcam", layer="act2").abs().sum() > 0


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam(cnn_x):
    model = CamNet().eval()
    gbp = explain(model, cnn_x, "guided_backprop")
    cam = explain(model, cnn_x, "gradcam", layer="act1")
    torch.testing.assert_close(explain(model, cnn_x, "guided_gradcam", layer="act1"), gbp * cam)


def test_default_gradcam_layer_is_the_rectified_output_of_the_last_convolutional_group(
        cnn_x, monkeypatch):
    x = torch.rand(2, 1, 28, 28, generator=seeded(16))
    cnn = sl_models.mnist_cnn()
    # The MNIST CNN's last 4-D group is conv2; GradCAM explains it after its ReLU (act2).
    default = explain(cnn, x, "gradcam")
    torch.testing.assert_close(default, explain(cnn, x, "gradcam", layer="act2"))
    assert not torch.allclose(default, explain(cnn, x, "gradcam", layer="conv2"))
    assert not torch.allclose(default, explain(cnn, x, "gradcam", layer="conv1"))
    # With layer groups, the last group whose output is 4-D (here a whole block that
    # ends in a ReLU), not the last Conv2d inside it.
    model = CamNet().eval()
    monkeypatch.setattr(sl_models, "layer_groups",
                        lambda m: [("block", m.act1), ("block2", m.act2), ("head", m.fc)])
    default = explain(model, cnn_x, "gradcam")
    torch.testing.assert_close(default, explain(model, cnn_x, "gradcam", layer="act2"))
    assert not torch.allclose(default, explain(model, cnn_x, "gradcam", layer="conv2"))

    def no_groups(m):
        raise ValueError("no groups")
    monkeypatch.setattr(sl_models, "layer_groups", no_groups)   # fallback: last Conv2d, rectified
    torch.testing.assert_close(explain(model, cnn_x, "gradcam"),
                               explain(model, cnn_x, "gradcam", layer="act2"))


class _ConvBlocks(nn.Module):
    """conv -> BatchNorm -> ReLU, then a conv whose ReLU is a shared module or a function."""

    def __init__(self, tail: str):
        super().__init__()
        seeded(5)
        self.conv1, self.bn1, self.act = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.tail = tail
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = self.conv2(x)
        x = self.act(x) if self.tail == "shared" else F.relu(x) if self.tail == "function" else x
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("tail", ["shared", "function", "none"])
def test_default_gradcam_layer_moves_past_a_nonlinearity_only_where_it_is_a_module_used_once(
        cnn_x, tail, monkeypatch):
    def no_groups(m):
        raise ValueError("no groups")
    monkeypatch.setattr(sl_models, "layer_groups", no_groups)
    model = _ConvBlocks(tail).eval()
    # conv2's ReLU is a module used twice (ambiguous), a function call (invisible) or absent:
    # the default stays at conv2.
    torch.testing.assert_close(explain(model, cnn_x, "gradcam"),
                               explain(model, cnn_x, "gradcam", layer="conv2"))


class _ConvBnRelu(nn.Module):
    def __init__(self):
        super().__init__()
        seeded(6)
        self.conv, self.bn, self.act = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():  # a BatchNorm that shifts, so its output and the ReLU's differ
            self.bn.bias.fill_(-0.3)

    def forward(self, x):
        return self.fc(self.act(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_default_gradcam_layer_passes_normalization_on_its_way_to_the_nonlinearity(cnn_x):
    model = _ConvBnRelu().eval()   # no layer groups: its last Conv2d, conv, is the start
    default = explain(model, cnn_x, "gradcam")
    torch.testing.assert_close(default, explain(model, cnn_x, "gradcam", layer="act"))
    assert not torch.allclose(default, explain(model, cnn_x, "gradcam", layer="bn"))


# ------------------------------------------------------------------ DeepLift and LRP

def test_deeplift_sums_to_the_output_difference_on_a_relu_network(images):
    # Rescale rule through conv / ReLU / linear: summation-to-delta holds exactly.
    # (Captum's max-pooling rule is only approximately complete, so no pooling here.)
    model = TinyNet("relu_module").eval()
    target = model(images).argmax(1)
    rows = torch.arange(len(images))
    for baseline in (0.0, 0.3):
        attr = explain(model, images, "deeplift", baseline=baseline)
        reference = model(torch.full_like(images, baseline))[rows, target]
        delta = (model(images)[rows, target] - reference).detach()
        torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), delta, rtol=1e-4, atol=1e-4)
    # ... and it is neither Gradient x Input nor IG.
    attr = explain(model, images, "deeplift")
    for other in ("gradient_x_input", "integrated_gradients"):
        assert not torch.allclose(attr, explain(model, images, other), atol=1e-3), other


def test_lrp_epsilon_equals_gradient_x_input_on_a_relu_network(cnn_x):
    # Known identity (Ancona et al. 2018): LRP-epsilon with epsilon -> 0 on a ReLU
    # network with max pooling equals Gradient x Input, biases included.
    model = CamNet().eval()
    torch.testing.assert_close(explain(model, cnn_x, "lrp_epsilon"),
                               explain(model, cnn_x, "gradient_x_input"), rtol=1e-3, atol=1e-5)
    assert not torch.allclose(explain(model, cnn_x, "lrp_epsilon", epsilon=10.0),
                              explain(model, cnn_x, "gradient_x_input"), atol=1e-3)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)) + x)


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def _mlp(middle):
    return nn.Sequential(nn.Linear(4, 4), middle, nn.Linear(4, 2))


@pytest.mark.parametrize("method, model, match", [
    ("deeplift", _mlp(nn.ReLU6()), "no DeepLift rule for ReLU6"),
    ("deeplift", _Twice(), "used more than once.*'act'"),
    ("deeplift", _FunctionalNet(F.relu), "functional relu"),
    ("lrp_epsilon", _mlp(nn.ReLU6()), "no LRP rule for ReLU6"),
    ("lrp_epsilon", _mlp(nn.BatchNorm1d(4)), "no LRP rule for BatchNorm1d"),
    ("lrp_epsilon", _Twice(), "used more than once"),
    ("lrp_epsilon", _Residual(), "functional add"),
])
def test_deeplift_and_lrp_refuse_what_captum_has_no_rule_for(method, model, match):
    model.eval()
    with pytest.raises(UnsupportedModelError, match=match):
        explain(model, torch.randn(3, 4), method)


# ------------------------------------------------------- the model is left as it was

def _hooks(model):
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
             "_forward_hooks_always_called", "_state_dict_hooks", "_load_state_dict_pre_hooks")
    return [(n, tuple(getattr(m, n, {}).keys())) for m in model.modules() for n in names] + \
        [m._is_full_backward_hook for m in model.modules()]


@pytest.mark.parametrize("method", METHODS)
def test_explain_leaves_the_model_and_input_unchanged(method, cnn_x):
    model = TinyCNN()
    model.train()
    model.act2.eval()                      # a mixed mode that must come back as it was
    model.conv1.bias.requires_grad_(False)
    seen = []
    model.fc.register_forward_hook(lambda m, i, o: seen.append(1))   # the user's own hook
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    hooks = _hooks(model)
    attrs = [sorted(vars(m)) for m in model.modules()]
    x = cnn_x.clone()

    maps = explain(model, x, method, **FAST.get(method, {}))

    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert _hooks(model) == hooks
    assert [sorted(vars(m)) for m in model.modules()] == attrs   # no attributes left behind
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(x, cnn_x)
    assert not maps.requires_grad and torch.isfinite(maps).all()
    # Computed in eval mode: the same as explaining an eval copy (dropout off, BN frozen).
    reference = explain(copy.deepcopy(model).eval(), x, method, **FAST.get(method, {}))
    torch.testing.assert_close(maps, reference)
    assert maps.shape == ((4, 1, 8, 8) if method == "gradcam" else x.shape)


# ----------------------------------------------------------------------- bad input

@pytest.mark.parametrize("x, error, match", [
    ([[0.0] * 8] * 8, TypeError, "torch.Tensor"),
    (torch.zeros(4, 2, 8, 8, dtype=torch.int64), TypeError, "floating-point"),
    (torch.zeros(2, 8, 8), ValueError, "4 dimensions.*unsqueeze"),
    (torch.zeros(4, 3, 8, 8), ValueError, "3 channels.*expects 2"),
    (torch.zeros(0, 2, 8, 8), ValueError, "non-empty"),
    (torch.zeros(4, 2, 8, 8, dtype=torch.float64), TypeError, "float64 but the model's weights"),
])
def test_bad_x_raises(x, error, match):
    with pytest.raises(error, match=match):
        explain(TinyCNN().eval(), x, "gradient")


def test_nan_inf_and_wrong_size_for_a_linear_first_layer_raise(cnn_x):
    model = TinyCNN().eval()
    for value, match in ((float("nan"), "1 NaN and 0 infinite"),
                         (float("inf"), "0 NaN and 1 infinite")):
        x = cnn_x.clone()
        x[1, 0, 2, 3] = value
        with pytest.raises(ValueError, match=match):
            explain(model, x, "gradient")
    with pytest.raises(ValueError, match="Linear over 12 features"):
        explain(smooth_mlp(), torch.zeros(2, 13, dtype=torch.float64), "gradient")


@pytest.mark.parametrize("target, error, match", [
    (3, ValueError, r"target=3 is out of range.*0\.\.2"),
    (-1, ValueError, "out of range"),
    (torch.tensor([0, 1, 5, 0]), ValueError, "target=5 is out of range"),
    ([0, 1], ValueError, "length 4"),
    (1.0, TypeError, "int"),
    (torch.tensor([0.0, 1.0, 1.0, 0.0]), TypeError, "integer class indices"),
    (True, TypeError, "int"),
])
def test_bad_target_raises(target, error, match, cnn_x):
    with pytest.raises(error, match=match):
        explain(TinyCNN().eval(), cnn_x, "gradient", target=target)


def test_single_output_model_takes_target_zero_only():
    w = torch.ones(1, 2, 2, dtype=torch.float64)
    x = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(explain(linear(w), x, "gradient", target=0), w.expand_as(x))
    with pytest.raises(ValueError, match="1 output column, so target must be 0"):
        explain(linear(w), x, "gradient", target=1)


@pytest.mark.parametrize("method, match", [
    ("integrated_gradient", "did you mean 'integrated_gradients'"),
    ("ig", "did you mean 'integrated_gradients'"),
    ("guided_backpropagation", "did you mean 'guided_backprop'"),
    ("occlusion", "choose one of"),
])
def test_unknown_method_suggests_the_closest(method, match, cnn_x):
    with pytest.raises(ValueError, match=match):
        explain(TinyCNN().eval(), cnn_x, method)


@pytest.mark.parametrize("method, settings, error, match", [
    ("gradient", {"n_steps": 10}, TypeError,
     "'gradient' takes no setting 'n_steps'.*integrated_gradients"),
    ("smoothgrad", {"n_sample": 10}, TypeError, "did you mean 'n_samples'"),
    ("gradcam", {"baseline": 0.0}, TypeError, "takes no setting 'baseline'"),
    ("smoothgrad", {"n_samples": 0}, ValueError, "n_samples must be an int >= 1"),
    ("vargrad", {"n_samples": 1}, ValueError, "n_samples must be an int >= 2"),
    ("smoothgrad", {"noise_level": -0.1}, ValueError, "noise_level"),
    ("smoothgrad", {"seed": 1.5}, ValueError, "seed"),
    ("integrated_gradients", {"integration": "simpson"}, ValueError, "gausslegendre"),
    ("integrated_gradients", {"integration": "riemann_trapezoid"}, ValueError, r"\(n_steps - 1\)"),
    ("integrated_gradients", {"integration": "riemann_left", "n_steps": 1}, ValueError, ">= 2"),
    ("integrated_gradients", {"baseline": "black"}, TypeError, "baseline"),
    ("integrated_gradients", {"baseline": torch.zeros(3, 8, 8)}, ValueError, "does not broadcast"),
    ("gradient", {"batch_size": 0}, ValueError, "batch_size"),
    ("lrp_epsilon", {"epsilon": 0}, ValueError, "epsilon"),
    ("gradcam", {"layer": 3}, TypeError, "layer must be"),
])
def test_bad_settings_raise(method, settings, error, match, cnn_x):
    with pytest.raises(error, match=match):
        explain(TinyCNN().eval(), cnn_x, method, **settings)


@pytest.mark.parametrize("layer, match", [
    ("conv3", "layer='conv3' is not a submodule.*did you mean 'conv2'"),
    ("fc", "output is N x C x h x w.*2-D"),
    (nn.Conv2d(4, 6, 3), "not part of this model"),
])
def test_bad_gradcam_layer_raises(layer, match, cnn_x):
    with pytest.raises(ValueError, match=match):
        explain(TinyCNN().eval(), cnn_x, "gradcam", layer=layer)


def test_gradcam_needs_images_and_a_non_module_model_is_refused():
    with pytest.raises(ValueError, match="needs image input"):
        explain(smooth_mlp(), torch.zeros(2, 12, dtype=torch.float64), "gradcam")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        explain(lambda x: x, torch.zeros(2, 12), "gradient")


def test_lrp_zplus_is_the_z_plus_rule_computed_by_hand():
    """Relevance flows only along positive contributions a_j w_jk^+, layer by layer
    (zero biases, so the rule has no bias term to place)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()
    with torch.no_grad():
        model[0].bias.zero_()
        model[2].bias.zero_()
    x = torch.rand(4, 6, dtype=torch.float64)
    target = model(x).argmax(1)
    got = explain(model, x, "lrp_zplus", target=target)
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    hidden = torch.relu(x @ w1.T)
    want = []
    for i in range(4):
        z2 = hidden[i] * w2[target[i]].clamp(min=0)
        r1 = z2 / z2.sum() * (hidden[i] @ w2[target[i]])
        z1 = x[i][:, None] * w1.T.clamp(min=0)
        want.append((z1 / z1.sum(0, keepdim=True) * r1[None, :]).sum(1))
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-6, atol=1e-8)
    assert (got >= 0).all()                     # positive inputs: no negative relevance
    assert not torch.allclose(got, explain(model, x, "lrp_epsilon", target=target))


@pytest.mark.parametrize("activation", [nn.Tanh, nn.Softplus, nn.GELU, nn.Sigmoid])
def test_the_guided_clamp_at_smooth_activations_is_s_prime_times_the_positive_gradient(
        activation):
    """smooth="guided": at y = s(z) the backward is s'(z) * max(grad_y, 0), computed here by
    hand layer by layer; smooth="plain" (the default) is the plain gradient and warns."""
    torch.manual_seed(3)
    l1, l2, l3 = nn.Linear(5, 7), nn.Linear(7, 6), nn.Linear(6, 3)
    model = nn.Sequential(l1, activation(), l2, activation(), l3).double().eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0])
    got = explain(model, x, "guided_backprop", target=target, smooth="guided")

    def s_prime(z):
        z = z.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(model[1](z).sum(), z)
        return d

    z1 = l1(x)
    z2 = l2(model[1](z1))
    g = l3.weight.detach()[target]                       # d score / d a2
    g = s_prime(z2) * g.clamp(min=0)                     # guided at the second activation
    g = g @ l2.weight.detach()
    g = s_prime(z1) * g.clamp(min=0)                     # and at the first
    want = g @ l1.weight.detach()
    torch.testing.assert_close(got, want.detach(), rtol=1e-7, atol=1e-10)
    with pytest.warns(sl.saliency.SaliencyWarning, match="not rectifiers"):
        plain = explain(model, x, "guided_backprop", target=target)
    torch.testing.assert_close(plain, explain(model, x, "gradient", target=target))
    assert not torch.allclose(got, plain)
    # the reference (each method's own plan) agrees with the engine
    torch.testing.assert_close(sl.saliency.reference(model, x, "guided_backprop", target=target,
                                                     smooth="guided"), got)


def test_smooth_setting_is_checked_and_guided_gradcam_takes_it_too():
    model = sl.models.mnist_cnn(activation="softplus")
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="'plain'.*'guided'"):
        explain(model, x, "guided_backprop", smooth="yes")
    with pytest.warns(sl.saliency.SaliencyWarning, match="not rectifiers"):  # plain GGCAM
        maps = sl.saliency.explain_all(model, x, {"guided_backprop": {"smooth": "guided"},
                                                  "guided_gradcam": {"smooth": "plain"}})
    cam = explain(model, x, "gradcam")
    with pytest.warns(sl.saliency.SaliencyWarning):
        plain = explain(model, x, "guided_backprop")
    torch.testing.assert_close(maps["guided_gradcam"], plain * cam, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(maps["guided_backprop"],
                               explain(model, x, "guided_backprop", smooth="guided"))
