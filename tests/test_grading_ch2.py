"""The checks of chapter 2's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of the library (torch / numpy / scipy /
scikit-image), so a check that only agreed with ``sanity_lib.similarity`` would not pass them
unless the library is right too.
"""
import numpy as np
import pytest
import torch
from scipy import stats
from skimage.feature import hog

from sanity_lib import data
from sanity_lib.course.grading import CheckFailed, check


# ----------------------------------------------------------------------------- answers

def abs_torch(m):
    """The paper's abs normalization, written with torch.quantile."""
    s = m.abs().sum(1)
    flat = s.flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    return (flat / torch.quantile(flat, 0.99, dim=1, keepdim=True)).clamp(0, 1).view_as(s)


def diverging_torch(m):
    s = m.sum(1)
    flat = s.flatten(1)
    scale = torch.quantile(flat.abs(), 0.99, dim=1, keepdim=True)
    return (flat / scale).clamp(-1, 1).view_as(s)


def abs_numpy_keepdim(m):
    """Right too: numpy, float32, with a kept channel axis of size one."""
    s = np.abs(m.numpy()).sum(axis=1, keepdims=True)
    s = s - s.min(axis=(2, 3), keepdims=True)
    p = np.percentile(s, 99, axis=(2, 3), keepdims=True)
    return np.clip(s / p, 0, 1).astype(np.float32)


def spearman_scipy(a, b):
    return torch.tensor([stats.spearmanr(x.ravel(), y.ravel())[0]
                         for x, y in zip(a.numpy(), b.numpy())])


def spearman_vectorized(a, b):
    n = a.shape[0]
    ra = torch.from_numpy(stats.rankdata(a.reshape(n, -1).numpy(), axis=1))
    rb = torch.from_numpy(stats.rankdata(b.reshape(n, -1).numpy(), axis=1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


# ----------------------------------------------------------------------------- ex1 / ex2

@pytest.mark.parametrize("answer", [abs_torch, abs_numpy_keepdim])
def test_ex1_accepts_right_abs_normalizations(answer):
    assert "correct" in check("ch2_ex1", answer)


def test_ex2_accepts_a_right_diverging_normalization():
    assert "correct" in check("ch2_ex2", diverging_torch)


def abs_max(m):
    s = m.abs().sum(1).flatten(1)
    s = s - s.min(1, keepdim=True).values
    return (s / s.max(1, keepdim=True).values).view(m.shape[0], *m.shape[2:])


def abs_percentile_first(m):
    s = m.abs().sum(1).flatten(1)
    p = torch.quantile(s, 0.99, dim=1, keepdim=True)
    return ((s - s.min(1, keepdim=True).values) / p).clamp(0, 1).view(m.shape[0], *m.shape[2:])


def abs_no_clip(m):
    s = m.abs().sum(1).flatten(1)
    s = s - s.min(1, keepdim=True).values
    return (s / torch.quantile(s, 0.99, dim=1, keepdim=True)).view(m.shape[0], *m.shape[2:])


def abs_per_channel(m):
    s = m.abs().flatten(2)
    s = s - s.min(2, keepdim=True).values
    return (s / torch.quantile(s, 0.99, dim=2, keepdim=True)).clamp(0, 1).view_as(m)


def abs_of_sum(m):
    return abs_torch(m.sum(1, keepdim=True))


def abs_batchwide(m):
    s = m.abs().sum(1)
    s = s - s.min()
    return (s / torch.quantile(s.flatten(), 0.99)).clamp(0, 1)


def abs_in_place(m):
    out = abs_torch(m)
    m.abs_()
    return out


def abs_fraction_percentile(m):
    s = m.abs().sum(1).flatten(1)
    s = s - s.min(1, keepdim=True).values
    p = torch.quantile(s, 0.0099, dim=1, keepdim=True)
    return (s / p).clamp(0, 1).view(m.shape[0], *m.shape[2:])


@pytest.mark.parametrize("wrong, message", [
    (abs_max, "maximum instead of the 99th percentile"),
    (abs_percentile_first, r"percentile \*before\* subtracting the minimum"),
    (abs_no_clip, "did not clip"),
    (abs_per_channel, "did not sum over the channel axis"),
    (abs_of_sum, r"absolute value \*after\* summing"),
    (abs_batchwide, "over the whole batch"),
    (abs_in_place, "changed its input"),
    (abs_fraction_percentile, "0.99th percentile"),
    (lambda m: diverging_torch(m), r"must lie in \[0, 1\]"),
    (abs_torch(torch.randn(1, 3, 4, 4)), "your function `normalize_abs` itself"),
])
def test_ex1_names_the_typical_mistakes(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex1", wrong)


def div_abs_applied(m):
    return diverging_torch(m).abs()


def div_signed_percentile(m):
    s = m.sum(1).flatten(1)
    return (s / torch.quantile(s, 0.99, dim=1, keepdim=True)).clamp(-1, 1).view(
        m.shape[0], *m.shape[2:])


def div_clip01(m):
    return diverging_torch(m).clamp(0, 1)


def div_min_subtracted(m):
    s = m.sum(1).flatten(1)
    s = s - s.min(1, keepdim=True).values
    return (s / torch.quantile(s.abs(), 0.99, dim=1, keepdim=True)).clamp(-1, 1).view(
        m.shape[0], *m.shape[2:])


def div_pair_package(m):
    s = m.sum(1).flatten(1)
    p = torch.quantile(s, 0.99, dim=1, keepdim=True)
    return ((s + p) / (2 * p)).clamp(-1, 1).view(m.shape[0], *m.shape[2:])


def div_max(m):
    s = m.sum(1).flatten(1)
    return (s / s.abs().max(1, keepdim=True).values).view(m.shape[0], *m.shape[2:])


@pytest.mark.parametrize("wrong, message", [
    (div_abs_applied, "took absolute values"),
    (abs_torch, "abs normalization"),
    (div_signed_percentile, "percentile of the signed map"),
    (div_clip01, r"clipped to \[0, 1\]"),
    (div_min_subtracted, "subtracted the minimum"),
    (div_pair_package, "PAIR"),
    (div_max, r"maximum of \|map\|"),
])
def test_ex2_names_the_typical_mistakes(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex2", wrong)


# ----------------------------------------------------------------------------- ex3

@pytest.mark.parametrize("answer", [spearman_scipy, spearman_vectorized])
def test_ex3_accepts_right_spearman_functions(answer):
    assert "correct" in check("ch2_ex3", answer)


def _pearson(ra, rb):
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


def spearman_stable_argsort(a, b):
    def rank(t):
        return t.flatten(1).argsort(dim=1, stable=True).argsort(dim=1, stable=True).double()
    return _pearson(rank(a), rank(b))


def spearman_unstable_argsort(a, b):
    def rank(t):  # ties broken in reverse order of position: neither right nor 'ordinal'
        flipped = t.flatten(1).flip(1)
        return flipped.argsort(dim=1, stable=True).argsort(dim=1, stable=True).flip(1).double()
    return _pearson(rank(a), rank(b))


def pearson_raw(a, b):
    return _pearson(a.flatten(1), b.flatten(1))


def shortcut_formula(a, b):
    n = a.shape[0]
    ra = torch.from_numpy(stats.rankdata(a.reshape(n, -1).numpy(), axis=1))
    rb = torch.from_numpy(stats.rankdata(b.reshape(n, -1).numpy(), axis=1))
    d = ra.shape[1]
    return 1 - 6 * ((ra - rb) ** 2).sum(1) / (d * (d ** 2 - 1))


@pytest.mark.parametrize("wrong, message", [
    (spearman_stable_argsort, "broke ties by position"),
    (spearman_unstable_argsort, "right on maps without ties"),
    (pearson_raw, "raw values"),
    (shortcut_formula, "shortcut"),
    (lambda a, b: spearman_scipy(a, b).mean(), "one number"),
    (lambda a, b: _pearson(torch.from_numpy(stats.rankdata(a.numpy()).reshape(a.shape[0], -1)),
                           torch.from_numpy(stats.rankdata(b.numpy()).reshape(b.shape[0], -1))),
     "all the samples together"),
])
def test_ex3_names_the_typical_mistakes(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex3", wrong)


# ----------------------------------------------------------------------------- ex4

def _measured_ex4():
    """The four correlations, computed with numpy and scipy only (not sanity_lib)."""
    gen = np.random.default_rng(0)
    x = data.sample_images(64).numpy() * 2 - 1            # photos in [-1, 1]
    m = gen.standard_normal(x.shape)                      # a map
    u, v = gen.standard_normal(x.shape), gen.standard_normal(x.shape)

    def norm_abs(t):
        s = np.abs(t).sum(1).reshape(len(t), -1)
        s = s - s.min(1, keepdims=True)
        return np.clip(s / np.percentile(s, 99, axis=1, keepdims=True), 0, 1)

    def norm_div(t):
        s = t.sum(1).reshape(len(t), -1)
        return np.clip(s / np.percentile(np.abs(s), 99, axis=1, keepdims=True), -1, 1)

    def rho(a, b, norm):
        return float(np.mean([stats.spearmanr(p, q)[0] for p, q in zip(norm(a), norm(b))]))

    return {"negation_abs": rho(m, -m, norm_abs), "negation_diverging": rho(m, -m, norm_div),
            "random_abs": rho(x * u, x * v, norm_abs),
            "random_diverging": rho(x * u, x * v, norm_div)}


def test_ex4_accepts_measured_values():
    answer = _measured_ex4()
    assert answer["random_abs"] > 0.2 and abs(answer["random_diverging"]) < 0.05
    assert "correct" in check("ch2_ex4", answer)
    assert "correct" in check("ch2_ex4", {k: torch.tensor(v) for k, v in answer.items()})


@pytest.mark.parametrize("change, message", [
    (dict(negation_abs=-1.0, negation_diverging=1.0), "swapped"),
    (dict(negation_diverging=1.0), "compare m with itself"),
    (dict(random_abs=1.0, random_diverging=1.0), "same random vector"),
    (dict(random_abs=0.01, random_diverging=0.5), "look swapped"),
    (dict(random_abs=0.0), "clearly rank-correlated"),
    (dict(random_abs=1.7), r"must lie in \[-1, 1\]"),
    (dict(random_abs="high"), "should be a number"),
    (dict(random_abs=torch.full((5,), 0.4)), "holds 5 values"),
])
def test_ex4_rejects_wrong_measurements(change, message):
    answer = {"negation_abs": 1.0, "negation_diverging": -1.0, "random_abs": 0.4,
              "random_diverging": 0.0}
    answer.update(change)
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex4", answer)


def test_ex4_rejects_a_missing_key():
    with pytest.raises(CheckFailed, match="lacks the keys"):
        check("ch2_ex4", {"negation_abs": 1.0})


# ----------------------------------------------------------------------------- ex5

def _floor_by_hand(n=50, seed=5):
    """Mean spearman_abs and HOG correlation of n pairs of 28 x 28 Uniform masks, from scipy
    and scikit-image directly."""
    gen = np.random.default_rng(seed)
    a, b = gen.uniform(-1, 1, (2, n, 28, 28))

    def norm_abs(t):
        s = np.abs(t).reshape(n, -1)
        s = s - s.min(1, keepdims=True)
        return np.clip(s / np.percentile(s, 99, axis=1, keepdims=True), 0, 1).reshape(n, 28, 28)

    na, nb = norm_abs(a), norm_abs(b)
    rho = np.mean([stats.spearmanr(p.ravel(), q.ravel())[0] for p, q in zip(na, nb)])
    feats = [[hog(m, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(3, 3),
                  block_norm="L2-Hys") for m in maps] for maps in (na, nb)]
    h = np.mean([np.corrcoef(p, q)[0, 1] for p, q in zip(*feats)])
    return {"spearman_abs": float(rho), "hog": float(h)}


def test_ex5_accepts_a_floor_measured_by_hand():
    answer = _floor_by_hand()
    assert 0.02 < answer["hog"] < 0.15          # the paper's point: HOG's floor is not 0
    assert "correct" in check("ch2_ex5", answer)


@pytest.mark.parametrize("answer, message", [
    ({"spearman_abs": 0.0, "hog": 0.0}, "too low"),
    ({"spearman_abs": 1.0, "hog": 1.0}, "itself"),
    ({"spearman_abs": 0.2, "hog": 0.07}, "far from"),
    ({"spearman_abs": 0.0}, "lacks the keys"),
    ([0.0, 0.07], "should be a dict"),
])
def test_ex5_rejects_wrong_floors(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex5", answer)
