"""Bad input gets one clear error from the library, never a silent wrong result.

Each class of problem found by trying the library as a hostile but realistic user would: flags
read by truthiness, numeric faults, models whose output has no gradient, results that share
the caller's storage. Every error is checked for its message *and* for where it is raised:
inside sanity_lib, not deep in torch, numpy or scikit-image.
"""
from pathlib import Path

import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib.models import mnist_cnn
from sanity_lib.saliency import UnsupportedModelError

LIBRARY = Path(sl.__file__).resolve().parent


def raised_in_the_library(info) -> bool:
    """The frame that raised is a file of sanity_lib."""
    return LIBRARY in Path(str(info.traceback[-1].path)).resolve().parents


@pytest.fixture(scope="module")
def digits():
    return sl.data.load_mnist("test")[0][:3]


# ----------------------------------------------------------------------------- flags

@pytest.mark.parametrize("value", ["no", "False", 0, 1, None])
def test_a_boolean_option_takes_a_bool(digits, value):
    maps = torch.rand(2, 1, 28, 28)
    with pytest.raises(TypeError, match="gaussian_weights must be True or False") as info:
        sl.similarity.compare(maps, maps, ["ssim"], gaussian_weights=value)
    assert raised_in_the_library(info)
    with pytest.raises(TypeError, match="gaussian_weights must be True or False"):
        sl.similarity.ssim(maps, maps, gaussian_weights=value)
    with pytest.raises(TypeError, match="cache must be True or False") as info:
        sl.training.trained_mnist_model("cnn", cache=value)
    assert raised_in_the_library(info)
    with pytest.raises(TypeError, match="keep_maps must be True or False"):
        sl.model_randomization_test(mnist_cnn(), digits, ["gradient"], keep_maps=value)


# ----------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("lr", [float("inf"), float("nan"), -1.0, 0.0, "0.1", True])
def test_training_refuses_a_learning_rate_that_is_not_a_positive_number(lr):
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    with pytest.raises(ValueError, match="lr must be a finite number > 0.0") as info:
        sl.training.train(mnist_cnn(), x, y, epochs=1, lr=lr, progress=False)
    assert raised_in_the_library(info)


def test_a_diverging_training_stops_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    with pytest.raises(FloatingPointError, match="training diverged; lower lr"):
        sl.training.trained_mnist_model("mlp", n_train=256, epochs=2, batch_size=16,
                                        lr=1e12, optimizer="sgd", progress=False)
    assert not list(tmp_path.rglob("*.pt")), "a diverged run must not be cached"


def test_a_nan_weight_model_is_refused_not_explained_as_nan(digits):
    model = mnist_cnn()
    with torch.no_grad():
        model.fc1.weight[0, 0] = float("nan")
    for method in ("gradient", "guided_backprop", "smoothgrad"):
        with pytest.raises(ValueError, match="NaN or infinite") as info:
            sl.saliency.explain(model, digits, method, n_samples=2) if method == "smoothgrad" \
                else sl.saliency.explain(model, digits, method)
        assert raised_in_the_library(info)
    with pytest.raises(ValueError, match="NaN or infinite"):
        sl.model_randomization_test(model, digits, ["gradient", "gradcam"], progress=False)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_are_refused(digits, bad):
    x = digits.clone()
    x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite") as info:
        sl.model_randomization_test(mnist_cnn(), x, ["gradient"], progress=False)
    assert raised_in_the_library(info)


# ----------------------------------------------------------------------------- no gradient

class NoGradForward(nn.Module):
    """A model that computes its scores under torch.no_grad(): no gradient reaches x."""

    def __init__(self):
        super().__init__()
        self.net = mnist_cnn()

    def forward(self, x):
        with torch.no_grad():
            return self.net(x)


class DetachedForward(NoGradForward):
    def forward(self, x):
        return self.net(x.detach())


@pytest.mark.parametrize("model_class", [NoGradForward, DetachedForward])
@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "integrated_gradients",
                                    "gradcam", "smoothgrad"])
def test_a_model_without_gradients_is_one_clear_error(digits, model_class, method):
    settings = {"n_steps": 2} if method == "integrated_gradients" else (
        {"n_samples": 2} if method == "smoothgrad" else {})
    with pytest.raises(UnsupportedModelError, match="does not depend on its input") as info:
        sl.saliency.explain(model_class(), digits, method, **settings)
    assert raised_in_the_library(info)
    # ...and the sanity check refuses it instead of reading all-zero maps as "unchanged"
    with pytest.raises(UnsupportedModelError, match="does not depend on its input"):
        sl.model_randomization_test(model_class(), digits, {method: settings}, progress=False)


# ----------------------------------------------------------------------------- ownership

def test_a_result_owns_its_inputs_and_targets(digits):
    x = digits.clone()
    target = torch.tensor([1, 2, 3])
    result = sl.model_randomization_test(mnist_cnn(), x, ["gradient"], target=target,
                                         metrics=["ssim"], progress=False)
    kept_x, kept_t = result.inputs.clone(), result.targets.clone()
    x.add_(1.0)
    target.zero_()
    assert torch.equal(result.inputs, kept_x), "editing x changed the result"
    assert torch.equal(result.targets, kept_t), "editing target changed the result"
    result.inputs.zero_()
    assert torch.equal(x, digits + 1.0), "editing the result changed the caller's x"


# ----------------------------------------------------------------------------- layer groups

def test_groups_follow_the_models_order_not_the_lists(digits):
    model = mnist_cnn(seed=0)
    kwargs = dict(metrics=["spearman_abs"], progress=False)
    natural = sl.model_randomization_test(model, digits, ["gradient"], **kwargs)
    with pytest.warns(UserWarning, match="using the forward order"):
        listed = sl.model_randomization_test(model, digits, ["gradient"],
                                             groups=["logits", "fc1", "conv2", "conv1"],
                                             **kwargs)
    assert listed.layers == natural.layers == ["original", "logits", "fc1", "conv2", "conv1"]
    assert listed.table["value"].tolist() == natural.table["value"].tolist()


def test_a_group_without_parameters_is_refused(digits):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(ValueError, match="group '2' \\(ReLU\\) holds no parameters") as info:
        sl.model_randomization_test(net, digits, ["gradient"], groups=["1", "2", "3"],
                                    progress=False)
    assert raised_in_the_library(info)


def test_tied_weights_are_named():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encode = nn.Linear(8, 8)
            self.decode = nn.Linear(8, 8)
            self.decode.weight = self.encode.weight

        def forward(self, x):
            return self.decode(self.encode(x))

    with pytest.warns(UserWarning, match="'encode' and 'decode' share parameters"):
        sl.models.layer_groups(Tied(), groups=["encode", "decode"])


# ----------------------------------------------------------------------------- stale caches

def test_the_sweep_cache_sees_what_the_model_computes_not_only_its_weights(digits, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    kwargs = dict(metrics=["spearman_abs"], progress=False, cache=True)
    model = mnist_cnn(seed=0)
    first = sl.model_randomization_test(model, digits, ["gradient"], **kwargs)
    entries = lambda: len(list((tmp_path / "sweeps").glob("*.pt")))  # noqa: E731
    sl.model_randomization_test(model, digits, ["gradient"], **kwargs)
    assert entries() == 1, "an identical call must be a hit"

    patched = mnist_cnn(seed=0)                   # same state_dict, another forward
    original_forward = patched.forward
    patched.forward = lambda x: 2.0 * original_forward(x)
    sl.model_randomization_test(patched, digits, ["gradient"], **kwargs)
    assert entries() == 2, "a patched forward must not reuse the old result"

    hooked = mnist_cnn(seed=0)
    hooked.fc1.register_forward_hook(lambda m, i, out: out.clamp(min=0.1))
    second = sl.model_randomization_test(hooked, digits, ["gradient"], **kwargs)
    assert entries() == 3, "a hook that changes outputs must not reuse the old result"
    assert not second.table["value"].equals(first.table["value"])


# ----------------------------------------------------------------------------- pixel scale

def test_preflight_reports_8_bit_pixels_as_a_problem():
    model = sl.models.efficientnet_lite0(pretrained=False)
    pixels = (sl.data.sample_images(64)[:2] * 255).round()
    report = sl.checks.preflight(model, pixels, ["gradient"])
    status, detail = report.loc["input"]
    assert status == "problem" and "8-bit pixels: divide by 255" in detail
    fine = sl.checks.preflight(model, model.preprocess(pixels / 255), ["gradient"])
    assert fine.loc["input", "status"] == "ok"


def test_preprocess_converts_uint8_and_refuses_other_integers():
    model = sl.models.efficientnet_lite0(pretrained=False)
    x01 = sl.data.sample_images(32)[:1]
    as_bytes = (x01 * 255).round().to(torch.uint8)
    assert torch.allclose(model.preprocess(as_bytes), model.preprocess(as_bytes.float() / 255))
    with pytest.raises(TypeError, match="must hold floats in \\[0, 1\\]") as info:
        model.preprocess(as_bytes.to(torch.int64))
    assert raised_in_the_library(info)
    assert sl.models.mnist_cnn().preprocess(torch.full((1, 1, 28, 28), 255,
                                                       dtype=torch.uint8)).max() == 1.0


def test_train_cached_keys_on_frozen_layers_and_the_whole_eval_data(tmp_path, monkeypatch):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    x, y = sl.data.load_mnist("train")
    x, y = x[:64], y[:64]
    calls = []
    real = sl.training.train
    monkeypatch.setattr(sl.training, "train", lambda *a, **k: calls.append(1) or real(*a, **k))

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    kwargs = dict(name="demo", epochs=1, batch_size=32)
    sl.training.train_cached(net(), x, y, **kwargs)
    sl.training.train_cached(net(), x, y, **kwargs)
    assert len(calls) == 1
    frozen = net()
    frozen[1].bias.requires_grad_(False)
    sl.training.train_cached(frozen, x, y, **kwargs)
    assert len(calls) == 2, "a frozen layer must not return the unfrozen run"
    # two eval sets whose reprs agree (a long tensor's repr is truncated) but whose data differ
    a = (torch.zeros(2000, 1, 28, 28), torch.zeros(2000, dtype=torch.long))
    b = (a[0].clone(), a[1].clone())
    b[0][1000, 0, 14, 14] = 1.0
    assert repr(a) == repr(b)
    sl.training.train_cached(net(), x, y, eval_data=a, **kwargs)
    sl.training.train_cached(net(), x, y, eval_data=b, **kwargs)
    assert len(calls) == 4


# ----------------------------------------------------------------------------- hand-written ReLUs

class HandWritten(nn.Module):
    """A small CNN whose ReLU is written in one of the ways the guided rule cannot see."""

    def __init__(self, how):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)
        self.how = how

    def forward(self, x):
        h = self.conv(x)
        if self.how == "where":
            h = torch.where(h > 0, h, torch.zeros_like(h))
        elif self.how == "maximum":
            h = torch.maximum(h, torch.zeros_like(h))
        else:
            h = h * (h > 0)
        return self.fc(h.flatten(1))


@pytest.mark.parametrize("how, found", [("where", "torch.where"),
                                        ("maximum", "torch.maximum"),
                                        ("mask", "a comparison with 0")])
def test_a_hand_written_relu_is_named_and_the_map_said_to_be_the_gradient(digits, how, found):
    model = HandWritten(how)
    with pytest.warns(sl.saliency.SaliencyWarning) as caught:
        guided = sl.saliency.explain(model, digits, "guided_backprop")
    message = " ".join(str(w.message) for w in caught)
    assert found in message and "the map is the plain gradient" in message
    assert "no rectifier at all" not in message
    assert torch.allclose(guided, sl.saliency.explain(model, digits, "gradient"))


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (2, 1, 20, 20)])
def test_an_input_of_the_wrong_size_is_one_clear_error(shape):
    x = torch.rand(*shape)
    for method in ("gradient", "guided_backprop"):
        with pytest.raises(ValueError, match="cannot run on x of shape") as info:
            sl.saliency.explain(mnist_cnn(), x, method)
        assert raised_in_the_library(info)
    with pytest.raises(ValueError, match="cannot run on x of shape"):
        sl.model_randomization_test(mnist_cnn(), x, ["gradient", "gradcam"], progress=False)


# ----------------------------------------------------------------------------- options that
# would otherwise reach scikit-image, numpy or torch unchecked

_MAPS = torch.rand(2, 1, 28, 28)


@pytest.mark.parametrize("call, match", [
    (lambda: sl.similarity.ssim(_MAPS, _MAPS, data_range=-1.0), "data_range"),
    (lambda: sl.similarity.ssim(_MAPS, _MAPS, data_range=float("nan")), "data_range"),
    (lambda: sl.similarity.hog_correlation(_MAPS, _MAPS, orientations=0), "orientations"),
    (lambda: sl.similarity.hog_correlation(_MAPS, _MAPS, orientations=2.5), "orientations"),
    (lambda: sl.similarity.hog_correlation(_MAPS, _MAPS, block_norm="L3"), "L2-Hys"),
    (lambda: sl.similarity.noise_floor((28, 28), seed=-1), "seed"),
    (lambda: sl.models.one_conv_model(padding_mode="mirror"), "reflect"),
    (lambda: sl.saliency.smoothgrad_noise(_MAPS, n_samples=0), "n_samples"),
    (lambda: sl.saliency.smoothgrad_noise(_MAPS, noise_level=-0.1), "noise_level"),
    (lambda: sl.saliency.smoothgrad_noise(_MAPS, seed=-1), "seed"),
    (lambda: sl.saliency.smoothgrad_noise([[1.0]]), "batch tensor"),
])
def test_options_for_dependencies_are_checked_in_the_library(call, match):
    """Each of these failed inside scikit-image, numpy or torch (or not at all: a negative
    data_range and a negative noise level gave numbers)."""
    with pytest.raises((TypeError, ValueError), match=match) as info:
        call()
    assert raised_in_the_library(info)
