"""Tests for sanity_lib.studies.mprt: smooth MPRT and efficient MPRT (Hedström et al. 2023).

Every number is checked against an independent computation: the entropy with
``numpy.histogram`` + ``scipy.stats.entropy``, the gradient of a linear model (its weight),
a hand-written averaging loop over noisy copies, and the similarity of hand-made maps.
"""
import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch

import sanity_lib as sl
from sanity_lib import mprt
from sanity_lib.models import linear_model, mnist_cnn

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    x, _ = sl.data.load_mnist("test")
    return x[:3]


def scipy_entropy(m, bins=100, base=None):
    counts, _ = np.histogram(np.asarray(m, dtype=np.float64).ravel(), bins=bins)
    return scipy.stats.entropy(counts, base=base)


def constant_cnn():
    """A CNN whose every parameter tensor is constant: shuffling it changes nothing."""
    model = mnist_cnn(seed=0)
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.fill_(0.02 * (i + 1) if p.dim() > 1 else 0.01)
    return model


# ----------------------------------------------------------------------------- entropy

@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (2, 3, 16, 16), (3, 50)])
def test_histogram_entropy_matches_numpy_histogram_and_scipy(shape):
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(shape, generator=g) ** 3  # heavy-tailed, like gradient maps
    ours = mprt.histogram_entropy(maps)
    expected = [scipy_entropy(m) for m in maps.numpy()]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12)
    assert ours.dtype == torch.float64
    # numpy input gives the same numbers
    np.testing.assert_allclose(mprt.histogram_entropy(maps.numpy()).numpy(), expected)


def test_histogram_entropy_bin_count_and_extremes():
    spread = torch.arange(1000.0).reshape(1, 10, 100)  # equally many values in every bin
    assert mprt.histogram_entropy(spread).item() == pytest.approx(math.log(100))
    assert mprt.histogram_entropy(spread, n_bins=10).item() == pytest.approx(math.log(10))
    assert mprt.histogram_entropy(torch.full((2, 5, 5), 3.0)).tolist() == [0.0, 0.0]
    # one outlier squeezes everything else into the first bin: low entropy
    sparse = torch.zeros(1, 28, 28)
    sparse[0, 0, 0] = 100.0
    assert mprt.histogram_entropy(sparse).item() == pytest.approx(
        scipy_entropy(sparse.numpy()), abs=1e-12)
    assert mprt.histogram_entropy(sparse).item() < 0.05


def test_histogram_entropy_rejects_bad_input():
    with pytest.raises(ValueError, match="n_bins must be an int >= 1"):
        mprt.histogram_entropy(torch.rand(2, 4, 4), n_bins=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        mprt.histogram_entropy(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="batch first"):
        mprt.histogram_entropy(torch.rand(5))
    with pytest.raises(TypeError, match="torch tensor or numpy array"):
        mprt.histogram_entropy([[1.0, 2.0]])


# ----------------------------------------------------------------------------- eMPRT score

def test_efficient_mprt_score_is_the_relative_entropy_rise_in_any_log_base():
    g = torch.Generator().manual_seed(2)
    trained = torch.randn(3, 1, 28, 28, generator=g) ** 5     # peaked: low entropy
    randomized = torch.randn(3, 1, 28, 28, generator=g)       # Gaussian: higher entropy
    ours = mprt.efficient_mprt_score(trained, randomized)
    for base in (None, 2):  # nats or bits: the ratio is the same
        h = np.array([scipy_entropy(m, base=base) for m in trained.numpy()])
        h_rand = np.array([scipy_entropy(m, base=base) for m in randomized.numpy()])
        np.testing.assert_allclose(ours.numpy(), (h_rand - h) / h, rtol=1e-10)
    assert bool((ours > 0).all())  # noisier after randomization: positive, higher is better
    assert bool((mprt.efficient_mprt_score(randomized, trained) < 0).all())
    assert mprt.efficient_mprt_score(trained, trained).abs().max().item() == 0.0


def test_efficient_mprt_score_constant_original_is_nan_with_a_warning():
    maps = torch.zeros(2, 1, 8, 8)
    maps[1, 0, 0, :4] = torch.arange(4.0)
    with pytest.warns(RuntimeWarning, match="constant"):
        score = mprt.efficient_mprt_score(maps, torch.rand(2, 1, 8, 8))
    assert math.isnan(score[0].item()) and math.isfinite(score[1].item())
    with pytest.raises(ValueError, match="same shape"):
        mprt.efficient_mprt_score(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 4, 4))


# ----------------------------------------------------------------------------- full randomization

@pytest.mark.parametrize("order", ["top_down", "bottom_up"])
def test_fully_randomized_is_the_last_cascading_step(order):
    model = mnist_cnn(seed=0)
    before = copy.deepcopy(model.state_dict())
    *_, (_, last) = sl.randomization.cascading(model, order=order, init="truncated_normal",
                                               seed=3)
    ours = mprt.fully_randomized(model, init="truncated_normal", seed=3)
    for (name, p), q in zip(ours.state_dict().items(), last.state_dict().values()):
        assert torch.equal(p, q), name
        assert not torch.equal(p, before[name]), f"{name} was not randomized"
    for name, p in model.state_dict().items():  # the model given is untouched
        assert torch.equal(p, before[name])
    assert not ours.training


def test_efficient_mprt_of_a_linear_model_uses_its_weights_as_gradient_maps():
    # The gradient of f(x) = w . x is w for every input: a sparse w (few non-zero pixels)
    # has a low entropy, a fully randomized dense w a high one.
    w = torch.zeros(1, 28, 28)
    w[0, 10:14, 10:14] = torch.linspace(0.5, 2.0, 16).reshape(4, 4)
    model = linear_model(w)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    table = mprt.efficient_mprt(model, x, ["gradient"], init="normal", seed=1)
    w_rand = mprt.fully_randomized(model, init="normal", seed=1).weight.detach()
    h, h_rand = scipy_entropy(w.numpy()), scipy_entropy(w_rand.numpy())
    np.testing.assert_allclose(table["entropy_original"], [h, h], rtol=1e-6)
    np.testing.assert_allclose(table["entropy_randomized"], [h_rand, h_rand], rtol=1e-6)
    np.testing.assert_allclose(table["score"], (h_rand - h) / h, rtol=1e-6)
    assert (table["score"] > 1).all()  # the map's entropy more than doubles


def test_efficient_mprt_matches_explain_by_hand_and_is_zero_when_nothing_changes(digits):
    model = mnist_cnn(seed=0)
    table = mprt.efficient_mprt(model, digits, ["gradient", "guided_backprop"], init="uniform",
                                seed=0, target="original")
    rand = mprt.fully_randomized(model, init="uniform", seed=0)
    t = model(digits).argmax(1)
    for method in ("gradient", "guided_backprop"):
        e = sl.saliency.explain(model, digits, method, target=t)
        e_rand = sl.saliency.explain(rand, digits, method, target=t)
        h = np.array([scipy_entropy(m) for m in e.numpy()])
        h_rand = np.array([scipy_entropy(m) for m in e_rand.numpy()])
        rows = table[table.method == method]
        np.testing.assert_allclose(rows["score"], (h_rand - h) / h, rtol=1e-9)
        assert rows["image"].tolist() == [0, 1, 2]
    # permuting constant tensors changes no weight, so no map changes: score exactly 0
    still = mprt.efficient_mprt(constant_cnn(), digits, ["gradient"], init="permutation")
    assert still["score"].abs().max() == 0.0


def test_efficient_mprt_rejects_bad_arguments(digits):
    model = mnist_cnn(seed=0)
    with pytest.raises(ValueError, match="did you mean 'guided_backprop'"):
        mprt.efficient_mprt(model, digits, ["guided_backprob"])
    with pytest.raises(ValueError, match="target='label' is not known"):
        mprt.efficient_mprt(model, digits, ["gradient"], target="label")
    with pytest.raises(ValueError, match="N x C x H x W"):
        mprt.efficient_mprt(model, digits[0], ["gradient"])
    with pytest.raises(ValueError, match="init='xavier' is not known"):
        mprt.efficient_mprt(model, digits, ["gradient"], init="xavier")


# ----------------------------------------------------------------------------- smooth explain

def test_smooth_explain_is_the_mean_over_noisy_copies(digits):
    model = mnist_cnn(seed=1)
    target = torch.tensor([3, 1, 7])
    ours = mprt.smooth_explain(model, digits, "guided_backprop", n_samples=4, noise_level=0.1,
                               seed=5, target=target)
    # by hand: noise std 0.1 * range of each image, the draws of smoothgrad_noise
    noise = sl.saliency.smoothgrad_noise(digits, n_samples=4, noise_level=0.1, seed=5)
    ranges = digits.flatten(1).amax(1) - digits.flatten(1).amin(1)
    unit = sl.saliency.smoothgrad_noise(digits, n_samples=4, noise_level=1.0, seed=5)
    torch.testing.assert_close(noise, 0.1 * unit)
    assert unit.flatten(2).std(dim=(0, 2)).div(ranges).sub(1).abs().max() < 0.05
    manual = torch.stack([sl.saliency.explain(model, digits + noise[s], "guided_backprop",
                                              target=target) for s in range(4)]).mean(0)
    torch.testing.assert_close(ours, manual, atol=1e-6, rtol=1e-5)


def test_smooth_gradient_is_smoothgrad_and_defaults_to_the_clean_argmax(digits):
    model = mnist_cnn(seed=2)
    ours = mprt.smooth_explain(model, digits, "gradient", n_samples=3, noise_level=0.1, seed=0)
    sg = sl.saliency.explain(model, digits, "smoothgrad", n_samples=3, noise_level=0.1, seed=0,
                             target=model(digits).argmax(1))
    torch.testing.assert_close(ours, sg, atol=1e-6, rtol=1e-5)


def test_smooth_explain_does_not_depend_on_how_samples_are_batched(digits, monkeypatch):
    model = mnist_cnn(seed=0)
    whole = mprt.smooth_explain(model, digits, "gradient_x_input", n_samples=5)
    monkeypatch.setattr(mprt, "_ROWS_PER_CALL", 4)  # one noisy copy of the batch per call
    chunked = mprt.smooth_explain(model, digits, "gradient_x_input", n_samples=5)
    torch.testing.assert_close(whole, chunked, atol=1e-7, rtol=1e-6)


def test_smooth_explain_rejects_bad_settings(digits):
    model = mnist_cnn(seed=0)
    with pytest.raises(ValueError, match="noise_level must be a finite number >= 0"):
        mprt.smooth_explain(model, digits, "gradient", noise_level=-0.1)
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        mprt.smooth_explain(model, digits, "gradient", n_samples=0)
    with pytest.raises(ValueError, match="target holds 2 classes but x holds 3"):
        mprt.smooth_explain(model, digits, "gradient", target=[1, 2])


# ----------------------------------------------------------------------------- smooth MPRT

def test_smooth_mprt_compares_smoothed_maps_step_by_step(digits):
    model = mnist_cnn(seed=0)
    result = mprt.smooth_mprt(model, digits, ["gradient"], n_samples=2, seed=4,
                              metrics=["spearman_abs", "spearman_diverging"], progress=False)
    assert result.layers == ["original", "conv1", "conv2", "fc1", "logits"]  # bottom-up
    first = mprt.smooth_explain(model, digits, "gradient", n_samples=2, seed=4)
    steps = list(sl.randomization.cascading(model, order="bottom_up", seed=4))
    for k, (layer, randomized) in enumerate(steps, start=1):
        maps = mprt.smooth_explain(randomized, digits, "gradient", n_samples=2, seed=4)
        for mode in ("abs", "diverging"):
            rows = result.table[(result.table.step == k)
                                & (result.table.metric == f"spearman_{mode}")]
            assert rows.layer.unique().tolist() == [layer]
            np.testing.assert_allclose(rows.value, sl.similarity.spearman(first, maps, mode),
                                       atol=1e-6)
        torch.testing.assert_close(result.maps["gradient"][k], maps)
        assert torch.equal(result.targets[k], randomized(digits).argmax(1))


def test_smooth_mprt_finds_no_change_when_randomization_changes_nothing(digits):
    result = mprt.smooth_mprt(constant_cnn(), digits, ["gradient", "guided_backprop"],
                              n_samples=2, init="permutation", metrics=["spearman_diverging"],
                              progress=False)
    assert np.allclose(result.table["value"], 1.0)


def test_smooth_mprt_cache_round_trip(digits, monkeypatch, tmp_path):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    model = mnist_cnn(seed=0)
    kwargs = dict(n_samples=2, metrics=["spearman_abs"], progress=False, cache=True)
    first = mprt.smooth_mprt(model, digits, ["gradient"], **kwargs)
    entries = lambda: sorted((tmp_path / "sweeps").glob("*.pt"))  # noqa: E731
    assert len(entries()) == 1
    stamp = entries()[0].stat().st_mtime_ns
    again = mprt.smooth_mprt(model, digits, ["gradient"], **kwargs)
    assert again.table.equals(first.table) and again.layers == first.layers
    assert len(entries()) == 1 and entries()[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert again.settings["test"] == "smooth_model_randomization"
    mprt.smooth_mprt(model, digits, ["gradient"], noise_level=0.2, **kwargs)  # another noise
    assert len(entries()) == 2
    # the plain MPRT of the same model and images is another entry too
    sl.model_randomization_test(model, digits, ["gradient"], order="bottom_up",
                                metrics=["spearman_abs"], progress=False, cache=True)
    assert len(entries()) == 3


def test_smooth_mprt_is_the_sweep_with_a_smoothing_explainer(digits):
    model = mnist_cnn(seed=0)
    smooth = mprt.smooth_mprt(model, digits, ["gradient", "guided_backprop"], n_samples=3,
                              metrics=["spearman_abs"], progress=False)
    explainer = sl.saliency.Smoothed(n_samples=3, noise_level=0.1, seed=0)
    plain = sl.model_randomization_test(model, digits, ["gradient", "guided_backprop"],
                                        order="bottom_up", metrics=["spearman_abs"],
                                        progress=False, explainer=explainer)
    np.testing.assert_allclose(smooth.table["value"], plain.table["value"])


def test_smooth_mprt_rejects_bad_arguments(digits):
    model = mnist_cnn(seed=0)
    with pytest.raises(ValueError, match="order='up' is not known"):
        mprt.smooth_mprt(model, digits, ["gradient"], order="up")
    with pytest.raises(ValueError, match="metrics=.*not known"):
        mprt.smooth_mprt(model, digits, ["gradient"], metrics=["pearson"])
    with pytest.raises(ValueError, match="appears twice"):
        mprt.smooth_mprt(model, digits, ["gradient", "gradient"])
    with pytest.raises(TypeError, match="settings of method 'gradient' must be a dict"):
        mprt.smooth_mprt(model, digits, {"gradient": 3})
    with pytest.raises(TypeError, match="progress must be True or False"):
        mprt.smooth_mprt(model, digits, ["gradient"], progress="yes")
