"""Tests for the shared-pass engine (sanity_lib.saliency._shared) and its use in sweeps.

The reference is always the per-method path: one ``saliency.reference`` call per method (each
method's own plan, through Captum where Captum has the method), independent of the engine;
``explain`` itself runs the engine, and the rest of the suite checks it against hand-written
autograd. Shared passes must give the same
maps; chunking must not change them; the faster model copy (batch norm folded into the
convolution, channels-last) must compute the same function. Timings live only in
benchmarks/bench_sweep.py.
"""
import numpy as np
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib import saliency
from sanity_lib.models import mnist_cnn
from sanity_lib.saliency import _shared
from sanity_lib.saliency._shared import (SHARED_METHODS, explain_all, fast_copy,
                                         passes_per_image, saved_bytes_per_row)

torch.set_num_threads(1)

SMALL = {  # every shared method, with few steps / samples so the file stays quick
    "gradient": {}, "gradient_x_input": {},
    "integrated_gradients": {"n_steps": 6},
    "smoothgrad": {"n_samples": 5, "seed": 2},
    "vargrad": {"n_samples": 5, "seed": 2},
    "guided_backprop": {}, "gradcam": {}, "guided_gradcam": {},
}


@pytest.fixture(scope="module")
def digits():
    x, _ = sl.data.load_mnist("test")
    return x[:3].clone()


@pytest.fixture(scope="module")
def cnn():
    return mnist_cnn(seed=0)


def per_method(model, x, methods, target=None):
    """The independent reference: each method's own plan (Captum where it has the method)."""
    return {m: saliency.reference(model, x, m, target=target, **s) for m, s in methods.items()}


def assert_same(got, want, rtol=1e-5):
    for m in want:
        scale = float(want[m].abs().max()) or 1.0
        assert got[m].shape == want[m].shape, m
        assert torch.allclose(got[m], want[m], rtol=rtol, atol=rtol * scale), m


# ----------------------------------------------------------------------------- equality

def test_shared_passes_equal_one_explain_call_per_method(cnn, digits):
    assert set(SMALL) == set(SHARED_METHODS)
    got = explain_all(cnn, digits, SMALL)
    want = per_method(cnn, digits, SMALL)
    assert list(got) == list(SMALL)
    assert_same(got, want)
    # the product and the statistics really are what they claim
    assert torch.allclose(got["gradient_x_input"], digits * got["gradient"])
    assert torch.allclose(got["guided_gradcam"], got["guided_backprop"] * got["gradcam"])
    assert not torch.allclose(got["smoothgrad"], got["gradient"])
    assert (got["vargrad"] >= 0).all()


@pytest.mark.parametrize("method", sorted(SMALL))
def test_explain_is_the_engine_and_agrees_with_the_independent_reference(cnn, digits, method,
                                                                         monkeypatch):
    settings = SMALL[method]
    want = saliency.reference(cnn, digits, method, **settings)
    calls = []
    real = _shared._shared_maps
    monkeypatch.setattr(_shared, "_shared_maps", lambda *a: calls.append(a) or real(*a))
    got = saliency.explain(cnn, digits, method, **settings)
    assert calls, "explain did not run the fused engine"
    assert_same({method: got}, {method: want})


def test_explain_on_flat_input_runs_the_engine_too():
    mlp = sl.models.mnist_mlp(seed=0)
    x = torch.rand(4, 784)
    for method in ("gradient", "integrated_gradients", "guided_backprop"):
        assert_same({method: saliency.explain(mlp, x, method, n_steps=5)
                     if method == "integrated_gradients" else saliency.explain(mlp, x, method)},
                    {method: saliency.reference(mlp, x, method, n_steps=5)
                     if method == "integrated_gradients" else saliency.reference(mlp, x, method)})


def test_explicit_targets_and_methods_without_a_shared_path(cnn, digits):
    methods = {"gradient": {}, "smoothgrad": {"n_samples": 3},
               "integrated_gradients_smoothgrad": {"n_samples": 2, "n_steps": 3},
               "deeplift": {}}
    target = [3, 0, 7]
    got = explain_all(cnn, digits, methods, target=target)
    assert_same(got, per_method(cnn, digits, methods, target=target))
    # a different class gives a different map: the targets were used
    other = explain_all(cnn, digits, {"gradient": {}}, target=[4, 1, 8])
    assert not torch.allclose(other["gradient"], got["gradient"])


def test_smoothgrad_and_vargrad_with_different_noise_do_not_share(cnn, digits):
    methods = {"smoothgrad": {"n_samples": 4, "seed": 0},
               "vargrad": {"n_samples": 4, "seed": 1}}
    got = explain_all(cnn, digits, methods)
    assert_same(got, per_method(cnn, digits, methods))


def test_chunking_does_not_change_the_maps(cnn, digits, monkeypatch):
    one_batch = explain_all(cnn, digits, {m: {**s, "batch_size": 256}
                                          for m, s in SMALL.items()})
    row_by_row = explain_all(cnn, digits, {m: {**s, "batch_size": 1} for m, s in SMALL.items()})
    assert_same(row_by_row, one_batch)
    # the memory cap cuts chunks too
    monkeypatch.setattr(_shared, "PASS_MEMORY", 1)
    capped = explain_all(cnn, digits, SMALL)
    assert_same(capped, one_batch)


def test_rows_through_the_model_match_the_pass_count(cnn, digits):
    rows = []

    def count(module, inputs):
        if torch.is_grad_enabled() and inputs[0].requires_grad:
            rows.append(inputs[0].shape[0])

    handle = cnn.conv1.register_forward_pre_hook(count)
    try:
        explain_all(cnn, digits, SMALL)
    finally:
        handle.remove()
    # 1 plain + 6 IG + 5 noisy (shared by SmoothGrad and VarGrad) + 1 guided = 13,
    # plus the one-row probe of the activation memory and the one-row check that a
    # gradient reaches the input (the probe pass of saliency._inputs.probe)
    assert passes_per_image(SMALL) == 13
    assert sum(rows) == 13 * len(digits) + 2


def test_the_model_is_left_as_it_was(cnn, digits):
    cnn.train()
    cnn.conv1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    try:
        explain_all(cnn, digits, {"gradient": {}, "guided_backprop": {}})
        assert cnn.training and not cnn.conv1.weight.requires_grad
        assert cnn.conv2.weight.requires_grad
        assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
        assert not cnn._forward_hooks and not cnn.conv2._forward_hooks
    finally:
        cnn.eval()
        cnn.conv1.weight.requires_grad_(True)


def test_float64_stays_float64(cnn, digits):
    model = mnist_cnn(seed=1).double()
    x = digits.double()
    got = explain_all(model, x, {"gradient": {}, "integrated_gradients": {"n_steps": 4}})
    assert all(v.dtype == torch.float64 for v in got.values())
    assert_same(got, per_method(model, x, {"gradient": {},
                                           "integrated_gradients": {"n_steps": 4}}), rtol=1e-10)


def test_bad_input_raises_like_explain(cnn, digits):
    with pytest.raises(ValueError, match="did you mean 'smoothgrad'"):
        explain_all(cnn, digits, ["smoothgrd"])
    with pytest.raises(TypeError, match="takes no setting 'n_steps'"):
        explain_all(cnn, digits, {"gradient": {"n_steps": 3}})
    with pytest.raises(ValueError, match="given twice"):
        explain_all(cnn, digits, {"gradient": {}, "Gradient": {}})
    with pytest.raises(ValueError, match="methods is empty"):
        explain_all(cnn, digits, {})
    with pytest.raises(ValueError, match="out of range"):
        explain_all(cnn, digits, ["gradient"], target=10)
    mlp = sl.models.mnist_mlp()
    with pytest.raises(ValueError, match="needs image input"):
        explain_all(mlp, digits.reshape(3, -1), ["gradcam"])


# ----------------------------------------------------------------------------- fast copy

class ConvBN(nn.Module):
    """conv -> BN -> ReLU6 twice, then a linear head; BN with trained-looking statistics."""

    def __init__(self, reuse_conv_output=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1, self.act1 = nn.BatchNorm2d(8), nn.ReLU6()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(8), nn.ReLU6()
        self.head = nn.Linear(8, 5)
        self.reuse = reuse_conv_output
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
        self.eval()

    def forward(self, x):
        a = self.conv1(x)
        h = self.act1(self.bn1(a))
        if self.reuse:  # the conv's raw output is used again: folding would be wrong
            h = h + a
        h = self.act2(self.bn2(self.conv2(h)))
        return self.head(h.mean(dim=(2, 3)))


def images(n=3, size=64):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_fast_copy_folds_batch_norm_and_computes_the_same_function():
    model, x = ConvBN(), images()
    fast, channels_last = fast_copy(model, x)
    assert fast is not model and channels_last  # 64 x 64 images on the CPU
    assert isinstance(fast.bn1, nn.Identity) and isinstance(fast.bn2, nn.Identity)
    assert isinstance(model.bn1, nn.BatchNorm2d)  # the original is untouched
    with torch.no_grad():
        assert torch.allclose(fast(x.contiguous(memory_format=torch.channels_last)), model(x),
                              rtol=1e-5, atol=1e-6)
    methods = {"gradient": {}, "integrated_gradients": {"n_steps": 5},
               "smoothgrad": {"n_samples": 4}, "guided_backprop": {}, "gradcam": {},
               "guided_gradcam": {}}
    got = explain_all(model, x, methods)
    want = per_method(model, x, methods)
    for m in methods:  # the same maps up to float rounding (gates may flip at a tie)
        rel = float((got[m] - want[m]).norm() / want[m].norm())
        assert rel < 1e-3, (m, rel)
        assert sl.similarity.spearman(got[m], want[m], "diverging").min() > 0.999, m
        assert got[m].is_contiguous() and got[m].dtype == torch.float32


def test_fast_copy_keeps_batch_norm_that_does_not_read_the_conv_output_alone():
    model, x = ConvBN(reuse_conv_output=True), images(size=16)
    fast, channels_last = fast_copy(model, x)
    # conv1's output feeds bn1 and the skip: folding it would change the function;
    # conv2 -> bn2 is still a clean pair
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), rtol=1e-5, atol=1e-6)
    assert not channels_last  # 16 x 16: too small to pay off
    assert fast is model or isinstance(fast.bn1, nn.BatchNorm2d)


def test_gradcam_layer_is_never_folded_away():
    model, x = ConvBN(), images(size=16)
    got = explain_all(model, x, {"gradcam": {"layer": "conv2"}, "gradient": {}})
    want = per_method(model, x, {"gradcam": {"layer": "conv2"}, "gradient": {}})
    assert_same(got, want, rtol=1e-4)
    fast, _ = fast_copy(model, x, keep={model.conv2})
    assert isinstance(fast.bn2, nn.BatchNorm2d) and isinstance(fast.bn1, nn.Identity)


def test_saved_bytes_per_row_counts_the_activations_autograd_keeps():
    net = nn.Sequential(nn.Linear(10, 20, bias=False), nn.ReLU(), nn.Linear(20, 1))
    # With trainable weights each Linear keeps its input (10 and 20 floats) for the weight
    # gradient, the ReLU its 20 outputs: 50 float32 values.
    assert saved_bytes_per_row(net, torch.rand(1, 10)) == 50 * 4
    # Frozen (as in fast_copy), the Linears keep only their weights, which are parameters
    # and not counted: only the ReLU's outputs remain.
    net.requires_grad_(False)
    assert saved_bytes_per_row(net, torch.rand(1, 10)) == 20 * 4
    assert saved_bytes_per_row(net.double(), torch.rand(1, 10, dtype=torch.float64)) == 20 * 8
    # PyTorch's convolution node keeps its input even when only the input gradient is
    # needed: 3 x 5 x 5 (conv 1) + 4 x 5 x 5 (ReLU output) + 4 x 5 x 5 (conv 2's input)
    conv = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 1, 1)).requires_grad_(False)
    assert saved_bytes_per_row(conv, torch.rand(1, 3, 5, 5)) == (75 + 100 + 100) * 4


# ----------------------------------------------------------------------------- sweeps

def test_sweep_with_shared_passes_equals_the_per_method_sweep(cnn, digits):
    methods = {"gradient": {}, "smoothgrad": {"n_samples": 3}, "gradcam": {},
               "guided_gradcam": {}}
    kwargs = dict(metrics=["spearman_abs", "ssim"], progress=False)
    fast = sl.model_randomization_test(cnn, digits, methods, **kwargs)
    slow = sl.model_randomization_test(cnn, digits, methods, explainer=saliency.explain_each,
                                       **kwargs)
    assert fast.layers == slow.layers and torch.equal(fast.targets, slow.targets)
    for m in methods:
        scale = float(slow.maps[m].abs().max())
        assert torch.allclose(fast.maps[m], slow.maps[m], rtol=1e-5, atol=1e-5 * scale), m
    np.testing.assert_allclose(fast.table["value"].to_numpy(), slow.table["value"].to_numpy(),
                               rtol=1e-6, atol=1e-9)
