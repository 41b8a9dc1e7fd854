"""Cross-check of smooth MPRT and efficient MPRT (``sanity_lib.studies.mprt``) against Quantus.

Quantus 0.6.0 (``quantus.SmoothMPRT``, ``quantus.EfficientMPRT``) is the implementation by the
authors of both tests (Hedström et al. 2023). Each test below runs Quantus and the library on
the same model (the MNIST CNN, seeded, untrained: agreement does not need a trained network),
the same four test digits and the same settings, and compares the numbers.

What Quantus does (read from its source, ``quantus/metrics/randomisation/``), and how the
two are made to compute the same thing:

- *Explanations.* ``quantus.explain(method="Gradient")`` is Captum's ``Saliency(abs=False)``
  summed over the (single) channel: the plain gradient of the class score, bit for bit ours.
- *Target.* Quantus explains ``y_batch`` at every step; we pass the labels as
  ``smooth_mprt(target=labels)`` and, for eMPRT (whose ``target`` is ``"argmax"`` or
  ``"original"``), give Quantus the trained model's classes, which is what
  ``target="original"`` explains.
- *Randomization.* Quantus walks ``named_modules()`` that have ``reset_parameters`` (here
  conv1, conv2, fc1, logits; reversed for top-down), cumulatively, and re-seeds torch's
  global generator with ``seed + 1`` before every ``reset_parameters()``. Our
  ``init="default"`` runs the same ``reset_parameters()`` from a generator seeded per module
  by a hash of ``(seed, name)``. The fixture ``quantus_seeding`` replaces that hash by
  Quantus' ``seed + 1``: the weights are then identical, which the tests check.
- *Noise (sMPRT).* ``nr_samples`` explanations averaged, the first ``nr_samples - 1`` at
  ``x + randn * noise_magnitude * (max(x_i) - min(x_i))`` from NumPy's *global* generator
  (not seeded by Quantus), the last at the clean ``x``; new draws for every explanation call
  (the reference map, the trained model, every layer). The fixture ``same_noise`` hands
  Quantus our standard-normal draws (:func:`sanity_lib.saliency.smoothgrad_noise`) at every
  call, and ``noise_free_last=True`` makes our last sample clean. (Its sMPRT calls
  ``quantus.explain`` itself, whatever ``explain_func`` it is given; only
  ``explain_func_kwargs`` reach it.)
- *Similarity (sMPRT).* ``correlation_spearman`` of ``abs(normalise(map))``, where
  ``normalise_by_average_second_moment_estimate`` divides the whole batch by one positive
  number: rank-neutral, so it is Spearman of ``|map|``.
- *Complexity (eMPRT).* ``scipy.stats.entropy`` (natural log) of ``numpy.histogram(map,
  bins=n_bins)`` of the signed, unnormalized map (``abs=False, normalise=False``); ``n_bins``
  is 100 unless a rule is asked for; score ``(H_rand - H) / H`` with the fully randomized
  model (the last cascading step).

Measured agreement (this file's settings; the trained CNN, ten digits and N = 50 give the
same within a factor of ten): gradients and eMPRT maps bit for bit, smoothed maps to ~1e-7
relative (float32 rounding of ``x + noise``), eMPRT entropies and scores to ~1e-15, Spearman
scores to < 1e-6 (7.6e-6 at N = 50: near-tied pixels swap ranks). The documented differences
are reproduced exactly: Quantus' map is ours with ``noise_free_last=True`` (ours minus
Quantus' is one noisy sample's gradient minus the clean gradient, over N), Quantus' fresh
noise per model is reproduced by hand from its own draws, and our ``spearman_abs`` (each
map's top 1 % clipped to ties) sits within 1e-4 of Quantus' Spearman of ``|map|`` (asserted:
1e-3). Not tested here, because no seed makes them equal: the book's ``init=
"truncated_normal"`` is not Quantus' ``reset_parameters()``; for the trained CNN that flips the
sign of the gradient's eMPRT score (about -0.11 against +0.13 over seeds 0-3).
"""
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

import sanity_lib as sl
from sanity_lib import randomization, saliency
from sanity_lib.studies import mprt

quantus = pytest.importorskip("quantus")
from quantus.functions.complexity_func import discrete_entropy  # noqa: E402
from quantus.functions.normalise_func import (  # noqa: E402
    normalise_by_average_second_moment_estimate)
from quantus.helpers.model.pytorch_model import PyTorchModel  # noqa: E402
import quantus.metrics.randomisation.smooth_mprt as quantus_smooth_mprt  # noqa: E402

torch.set_num_threads(1)

QSEED = 42             # Quantus' default seed for the layer randomization
N = 6                  # noisy samples (the paper uses 50; the agreement does not depend on it)
LAYERS = ["conv1", "conv2", "fc1", "logits"]   # bottom-up
MAP_RTOL = 1e-5        # maps: float32 rounding of x + noise differs (measured ~1e-7)
SCORE_ATOL = 1e-6      # Spearman of those maps (measured 0 here, 7.6e-6 at N = 50)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def digits():
    """The first test digit of four classes, and their labels."""
    x, y = sl.data.load_mnist("test")
    idx = [int((y == c).nonzero()[0]) for c in (1, 3, 7, 8)]
    return x[idx].contiguous(), y[idx].contiguous()


@pytest.fixture(scope="module")
def model():
    return sl.models.mnist_cnn(seed=0)


@pytest.fixture
def quantus_seeding(monkeypatch):
    """Our init="default" with Quantus' seeding: every module's reset_parameters() runs from
    torch's generator seeded with QSEED + 1, as in PyTorchModel.get_random_layer_generator."""
    monkeypatch.setattr(randomization, "_derive_seed", lambda *parts: QSEED + 1)


class _SameDraws:
    """Stands in for ``np.random`` in Quantus' sMPRT module: the k-th ``randn`` call of an
    explanation returns our k-th standard-normal draw, at every call (every model)."""

    def __init__(self, z):
        self.z, self.calls = z, 0

    def randn(self, *shape):
        out = self.z[self.calls % len(self.z)]
        self.calls += 1
        assert out.shape == shape
        return out.copy()


class _LoggedDraws:
    """``np.random`` for Quantus' sMPRT module that draws as usual and keeps every draw."""

    def __init__(self):
        self.draws = []

    def randn(self, *shape):
        out = np.random.randn(*shape)
        self.draws.append(out.copy())
        return out


class _NumpyWith:
    """The numpy module, but with ``random`` in place of ``numpy.random``."""

    def __init__(self, random):
        self.random = random

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def same_noise(monkeypatch, digits):
    """Quantus draws our standard-normal draws, the first N - 1 of them. Our noise for image
    i depends on the seed, i and the image's range only: at level 1, for images of range 1
    (all zero but one pixel), it is the bare draw."""
    x, _ = digits
    unit = torch.zeros_like(x)
    unit[:, 0, 0, 0] = 1.0
    z = saliency.smoothgrad_noise(unit, n_samples=N, noise_level=1.0, seed=0)
    draws = _SameDraws(z[:N - 1].numpy().astype(np.float64))
    monkeypatch.setattr(quantus_smooth_mprt, "np", _NumpyWith(draws))
    return draws


def _quantus_smpr(model, x, y, **options):
    """quantus.SmoothMPRT on the gradient; returns its scores and the maps it compared."""
    compared = []

    def spearman(a, b, batched=False, **kwargs):
        compared.append((np.array(a), np.array(b)))
        return quantus.similarity_func.correlation_spearman(a, b, batched=batched)

    metric = quantus.SmoothMPRT(nr_samples=N, noise_magnitude=0.1, layer_order="bottom_up",
                                seed=QSEED, similarity_func=spearman, disable_warnings=True,
                                **options)
    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore")
        scores = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                        explain_func=quantus.explain, explain_func_kwargs={"method": "Gradient"},
                        channel_first=True, device="cpu")
    return {k: np.asarray(v) for k, v in scores.items()}, compared


def _quantus_emprt(model, x, y, method="Gradient", **options):
    metric = quantus.EfficientMPRT(disable_warnings=True, **options)
    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore")
        scores = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                        explain_func=quantus.explain, explain_func_kwargs={"method": method},
                        channel_first=True, device="cpu")
    return np.asarray(scores), metric


def _ours_smpr(model, x, target, **options):
    result = mprt.smooth_mprt(model, x, ["gradient"], n_samples=N, noise_level=0.1,
                              order="bottom_up", init="default", target=target,
                              metrics=["spearman_abs"], progress=False, **options)
    maps = result.maps["gradient"].numpy().astype(np.float64)      # steps x N x 1 x 28 x 28
    return result, maps.reshape(maps.shape[0], maps.shape[1], -1)


def _spearman_rows(a, b):
    return np.array([scipy.stats.spearmanr(ai, bi)[0] for ai, bi in zip(a, b)])


def _rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# ----------------------------------------------------------------------------- shared pieces

@pytest.mark.parametrize("ours, theirs", [("gradient", "Gradient"),
                                          ("gradient_x_input", "InputXGradient")])
def test_quantus_explain_is_our_explain(model, digits, ours, theirs):
    x, y = digits
    q = quantus.explain(model, x.numpy(), y.numpy(), method=theirs)
    o = saliency.explain(model, x, ours, target=y).numpy()
    assert q.shape == o.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(q, o, rtol=1e-6, atol=1e-9 * np.abs(o).max())  # measured: 0


@pytest.mark.parametrize("order", ["bottom_up", "top_down"])
def test_quantus_randomizes_the_same_layers_in_the_same_order(model, order):
    """Same names, same order, and at step k exactly the parameters of the first k layers
    differ from the trained model, in both (no seeding trick needed for this)."""
    trained = model.state_dict()

    def changed(m):
        return {k for k, v in m.state_dict().items() if not torch.equal(v, trained[k])}

    with torch.random.fork_rng():
        theirs = [(name, changed(m)) for name, m in
                  PyTorchModel(model, channel_first=True).get_random_layer_generator(
                      order=order, seed=QSEED)]
    ours = [(name, changed(m)) for name, m in
            randomization.cascading(model, order=order, init="default", seed=0)]
    assert [n for n, _ in theirs] == randomization.randomization_order(model, order)
    assert theirs == ours
    expected = LAYERS if order == "bottom_up" else LAYERS[::-1]
    assert [n for n, _ in ours] == expected
    assert [len(c) for _, c in ours] == [2, 4, 6, 8]   # weight + bias per layer, cumulative


@pytest.mark.parametrize("order", ["bottom_up", "top_down"])
def test_quantus_weights_are_our_default_init_with_quantus_seeding(model, order,
                                                                   quantus_seeding):
    with torch.random.fork_rng():
        theirs = [(name, {k: v.clone() for k, v in m.state_dict().items()}) for name, m in
                  PyTorchModel(model, channel_first=True).get_random_layer_generator(
                      order=order, seed=QSEED)]
    ours = list(randomization.cascading(model, order=order, init="default", seed=0))
    assert [n for n, _ in theirs] == [n for n, _ in ours]
    for (_, sd), (_, m) in zip(theirs, ours):
        for k, v in m.state_dict().items():
            assert torch.equal(v, sd[k]), k
    # eMPRT's fully randomized model is the last cascading step
    full = mprt.fully_randomized(model, init="default")
    for k, v in full.state_dict().items():
        assert torch.equal(v, theirs[-1][1][k]), k


# ----------------------------------------------------------------------------- smooth MPRT

def test_smooth_mprt_maps_and_scores_match_quantus(model, digits, quantus_seeding, same_noise):
    """sMPRT as Quantus computes it: labels as target, N samples with the last noise-free,
    bottom-up, reset_parameters() randomization. Our maps at every step are Quantus' maps,
    and Quantus' Spearman scores are those of our maps."""
    x, y = digits
    result, ours = _ours_smpr(model, x, target=y, noise_free_last=True)
    assert result.layers == ["original"] + LAYERS

    # Quantus without abs / normalise: we see its raw smoothed maps
    raw, compared = _quantus_smpr(model, x, y, abs=False, normalise=False)
    assert list(raw) == ["original"] + LAYERS
    assert same_noise.calls == (N - 1) * (2 + len(LAYERS))  # N - 1 noisy copies per map
    assert len(compared) == 1 + len(LAYERS)
    for step, (reference, theirs) in enumerate(compared):
        assert _rel_err(reference, ours[0]) < MAP_RTOL
        assert _rel_err(theirs, ours[step]) < MAP_RTOL, result.layers[step]
        np.testing.assert_allclose(raw[result.layers[step]],
                                   _spearman_rows(ours[0], ours[step]), atol=SCORE_ATOL)
    np.testing.assert_array_equal(raw["original"], 1.0)   # the same noise: the same map

    # Quantus' defaults (abs=True, normalise=True): Spearman of |map|
    scores, _ = _quantus_smpr(model, x, y)
    table = result.table.pivot(index="image", columns="layer", values="value")
    for step, layer in enumerate(LAYERS, start=1):
        exact = _spearman_rows(np.abs(ours[0]), np.abs(ours[step]))
        np.testing.assert_allclose(scores[layer], exact, atol=SCORE_ATOL)
        # our spearman_abs clips each map's top 1 % to ties before ranking: close, not equal
        assert np.abs(table[layer].to_numpy() - scores[layer]).max() < 1e-3
    # Quantus' normalisation divides by one positive number: the ranks do not move
    step = ours[1].reshape(4, 1, 28, 28)
    np.testing.assert_allclose(
        _spearman_rows(np.abs(normalise_by_average_second_moment_estimate(step)).reshape(4, -1),
                       ours[0]),
        _spearman_rows(np.abs(ours[1]), ours[0]), atol=1e-12)


def test_target_must_be_the_label_to_match_quantus(model, digits, quantus_seeding, same_noise):
    """The untrained CNN calls every digit an 8: target="original" explains class 8, Quantus
    the label, so the two agree on the 8 only."""
    x, y = digits
    t_orig = model(x).argmax(1)
    assert t_orig.tolist() == [8, 8, 8, 8] and y.tolist() == [1, 3, 7, 8]
    _, ours = _ours_smpr(model, x, target="original", noise_free_last=True)
    _, compared = _quantus_smpr(model, x, y, abs=False, normalise=False)
    theirs = compared[-1][1]
    differs = np.abs(theirs - ours[-1]).max(1) / np.abs(theirs).max(1)
    assert differs[3] < MAP_RTOL
    assert (differs[:3] > 0.1).all()


def test_the_noise_free_last_sample_is_the_whole_difference(model, digits, quantus_seeding,
                                                            same_noise):
    """Our default sMPRT (all N samples noisy) against Quantus': the difference at every
    step is (gradient at x + noise_N - gradient at x) / N, computed here by hand."""
    x, y = digits
    _, ours = _ours_smpr(model, x, target=y)                        # noise_free_last=False
    _, compared = _quantus_smpr(model, x, y, abs=False, normalise=False)
    last_noisy = x + saliency.smoothgrad_noise(x, n_samples=N, noise_level=0.1)[-1]
    steps = [model] + [m for _, m in randomization.cascading(model, order="bottom_up",
                                                             init="default", seed=0)]
    for step, m in enumerate(steps):
        theirs = compared[step][1]
        gap = ours[step] - theirs
        by_hand = ((saliency.explain(m, last_noisy, "gradient", target=y)
                    - saliency.explain(m, x, "gradient", target=y)) / N).numpy()
        assert np.abs(gap).max() > 0.05 * np.abs(theirs).max()     # a real difference ...
        assert _rel_err(gap, by_hand.reshape(4, -1)) < 1e-4        # ... and all of it

    # smooth_explain's option is exactly this average
    noise = saliency.smoothgrad_noise(x, n_samples=N, noise_level=0.1)
    by_hand = (sum(saliency.explain(model, x + noise[k], "gradient", target=y)
                   for k in range(N - 1)) + saliency.explain(model, x, "gradient", target=y)) / N
    clean_last = mprt.smooth_explain(model, x, "gradient", n_samples=N, target=y,
                                     noise_free_last=True)
    torch.testing.assert_close(clean_last, by_hand, rtol=1e-5, atol=1e-9)
    assert _rel_err(clean_last.numpy().reshape(4, -1), compared[0][1]) < MAP_RTOL
    # and the default is SmoothGrad (nothing changed there)
    torch.testing.assert_close(
        mprt.smooth_explain(model, x, "gradient", n_samples=N, target=y),
        saliency.explain(model, x, "smoothgrad", n_samples=N, noise_level=0.1, target=y),
        rtol=1e-5, atol=1e-9)


def test_quantus_draws_new_noise_for_every_model(model, digits, quantus_seeding, monkeypatch):
    """Left alone, Quantus draws fresh noise from NumPy's global generator for the reference
    map, the trained model's map and every layer's: its "original" score is below 1. Its
    scores are reproduced by hand from its own draws with our gradient."""
    x, y = digits
    draws = _LoggedDraws()
    monkeypatch.setattr(quantus_smooth_mprt, "np", _NumpyWith(draws))
    state = np.random.get_state()
    np.random.seed(0)
    try:
        scores, _ = _quantus_smpr(model, x, y)
    finally:
        np.random.set_state(state)
    assert len(draws.draws) == (N - 1) * (2 + len(LAYERS))
    assert (scores["original"] < 0.99).all()

    xs = x.numpy()
    std = 0.1 * (xs.max(axis=(1, 2, 3), keepdims=True) - xs.min(axis=(1, 2, 3), keepdims=True))
    models = [model, model] + [m for _, m in randomization.cascading(
        model, order="bottom_up", init="default", seed=0)]
    maps = []
    for call, m in enumerate(models):          # reference, trained model, conv1, ..., logits
        eps = draws.draws[call * (N - 1):(call + 1) * (N - 1)]
        rows = [torch.Tensor(xs + e * std) for e in eps] + [x]
        maps.append(sum(saliency.explain(m, r, "gradient", target=y) for r in rows).numpy() / N)
    flat = [np.abs(m.reshape(4, -1)) for m in maps]
    for key, m in zip(["original"] + LAYERS, flat[1:]):
        np.testing.assert_allclose(scores[key], _spearman_rows(flat[0], m), atol=SCORE_ATOL)


def test_smooth_mprt_noise_free_last_is_validated_and_recorded(model, digits):
    x, y = digits
    with pytest.raises(TypeError, match="noise_free_last"):
        mprt.smooth_mprt(model, x, ["gradient"], noise_free_last="yes", progress=False)
    with pytest.raises(TypeError, match="noise_free_last"):
        mprt.smooth_explain(model, x, "gradient", noise_free_last=1)
    result = mprt.smooth_mprt(model, x[:2], ["gradient"], n_samples=2, target=y[:2],
                              metrics=["spearman_abs"], progress=False, noise_free_last=True)
    assert result.settings["noise_free_last"] is True
    assert "noise_free_last=True" in result.settings["explainer"]
    with pytest.raises(ValueError, match="target holds 3 classes"):
        mprt.smooth_mprt(model, x[:2], ["gradient"], target=[1, 2, 3], progress=False)


# ----------------------------------------------------------------------------- efficient MPRT

@pytest.mark.parametrize("shape, n_bins", [((5, 1, 28, 28), 100), ((3, 3, 16, 16), 100),
                                           ((4, 1, 28, 28), 10), ((4, 1, 28, 28), 37)])
def test_histogram_entropy_is_quantus_discrete_entropy(shape, n_bins):
    """The same numbers as Quantus' complexity function on fixed maps, to 1e-12: a log2,
    another bin count or bins over |map| would break it."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(shape, generator=g, dtype=torch.float64) ** 3      # heavy tails
    b = torch.randn(shape, generator=g, dtype=torch.float64)
    h_q = np.array([discrete_entropy(a=m, x=m, n_bins=n_bins) for m in a.numpy()])
    h_rand_q = np.array([discrete_entropy(a=m, x=m, n_bins=n_bins) for m in b.numpy()])
    np.testing.assert_allclose(mprt.histogram_entropy(a, n_bins=n_bins).numpy(), h_q,
                               rtol=1e-12)
    np.testing.assert_allclose(mprt.efficient_mprt_score(a, b, n_bins=n_bins).numpy(),
                               (h_rand_q - h_q) / h_q, rtol=1e-12)
    assert (h_q > 0.5).all() and not np.allclose(h_q, h_rand_q)   # not degenerate


@pytest.mark.parametrize("ours, theirs", [("gradient", "Gradient"),
                                          ("gradient_x_input", "InputXGradient")])
def test_efficient_mprt_matches_quantus(model, digits, quantus_seeding, ours, theirs):
    """Quantus' defaults (100 bins, signed maps, bottom-up cascade to the end) against ours
    with target="original": Quantus explains the classes it is given, so it gets the trained
    model's."""
    x, _ = digits
    t_orig = model(x).argmax(1)
    scores, metric = _quantus_emprt(model, x, t_orig, method=theirs)
    assert metric.complexity_func_kwargs["n_bins"] == mprt.N_BINS == 100
    table = mprt.efficient_mprt(model, x, [ours], init="default", target="original")
    h = metric.explanation_scores_by_layer
    assert list(h) == ["orig", "logits"]
    np.testing.assert_allclose(table.entropy_original, h["orig"], rtol=1e-12)
    np.testing.assert_allclose(table.entropy_randomized, h["logits"], rtol=1e-12)
    np.testing.assert_allclose(table.score, scores, rtol=1e-10, atol=1e-14)
    assert np.ptp(scores) > 0.01                      # four different numbers, not a constant


@pytest.mark.parametrize("rule", ["Sturges Formula", "Square Root", "Rice",
                                  "Freedman Diaconis"])
def test_quantus_bin_rules_are_a_fixed_bin_count_for_us(model, digits, quantus_seeding, rule):
    """With a rule, Quantus picks one bin count for the batch from the trained model's maps
    (clamped to [10, 200]); our efficient_mprt with that n_bins gives Quantus' scores. The
    square-root, Sturges and Rice rules read ``a_batch[0].ndim`` (3 for a 1 x 28 x 28 map)
    as the number of values, so they always give the minimum, 10 bins (Freedman-Diaconis
    depends on the maps' spread: 10 here, 12 for the trained CNN's gradients, 200 for its
    gradient x input, whose interquartile range is 0)."""
    x, _ = digits
    t_orig = model(x).argmax(1)
    scores, metric = _quantus_emprt(model, x, t_orig, complexity_func_kwargs={"rule": rule})
    n_bins = metric.complexity_func_kwargs["n_bins"]
    if rule != "Freedman Diaconis":
        assert n_bins == 10
    assert 10 <= n_bins <= 200 and n_bins != mprt.N_BINS
    table = mprt.efficient_mprt(model, x, ["gradient"], init="default", target="original",
                                n_bins=n_bins)
    np.testing.assert_allclose(table.score, scores, rtol=1e-10, atol=1e-14)
    default = mprt.efficient_mprt(model, x, ["gradient"], init="default", target="original")
    assert np.abs(default.score.to_numpy() - scores).max() > 1e-3   # the bin count matters
