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
