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

def _abs_with_percentile(method):
    def normalize_abs(m):
        s = np.abs(m.numpy()).sum(axis=1)
        flat = s.reshape(len(s), -1)
        flat = flat - flat.min(axis=1, keepdims=True)
        p = np.percentile(flat, 99, axis=1, method=method, keepdims=True)
        return np.clip(flat / p, 0, 1).reshape(s.shape)
    return normalize_abs


def _diverging_with_percentile(method):
    def normalize_diverging(m):
        s = m.numpy().sum(axis=1)
        flat = s.reshape(len(s), -1)
        p = np.percentile(np.abs(flat), 99, axis=1, method=method, keepdims=True)
        return np.clip(flat / p, -1, 1).reshape(s.shape)
    return normalize_diverging


def abs_sorted_by_hand(m):
    """The 99th percentile picked from the sorted pixels (the 'k-th largest' textbook rule)."""
    s = m.abs().sum(1).flatten(1)
    s = s - s.min(1, keepdim=True).values
    k = int(np.ceil(0.99 * s.shape[1])) - 1
    p = s.sort(dim=1).values[:, k:k + 1]
    return (s / p).clamp(0, 1).view(m.shape[0], *m.shape[2:])


def div_pair_package(m):
    """The PAIR `saliency` package's rule, which the paper's reference code calls."""
    s = m.sum(1).flatten(1)
    p = torch.quantile(s, 0.99, dim=1, keepdim=True)
    return ((s + p) / (2 * p)).clamp(-1, 1).view(m.shape[0], *m.shape[2:])


RIGHT_EX1 = [("torch.quantile", abs_torch), ("numpy, float32, a kept channel axis",
                                            abs_numpy_keepdim),
             ("the k-th largest pixel", abs_sorted_by_hand)] + [
    (f"np.percentile method={how!r}", _abs_with_percentile(how))
    for how in ("lower", "higher", "nearest", "midpoint", "hazen", "weibull", "median_unbiased",
                "inverted_cdf")]
RIGHT_EX2 = [("torch.quantile", diverging_torch),
             ("the reference code's own rule (PAIR saliency)", div_pair_package)] + [
    (f"np.percentile method={how!r}", _diverging_with_percentile(how))
    for how in ("lower", "higher", "nearest", "midpoint", "hazen", "weibull")]


@pytest.mark.parametrize("name, answer", RIGHT_EX1, ids=[r[0] for r in RIGHT_EX1])
def test_ex1_accepts_correct_alternatives(name, answer):
    assert "correct" in check("ch2_ex1", answer)


@pytest.mark.parametrize("name, answer", RIGHT_EX2, ids=[r[0] for r in RIGHT_EX2])
def test_ex2_accepts_correct_alternatives(name, answer):
    assert "correct" in check("ch2_ex2", answer)


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


def abs_library(m):
    import sanity_lib as sl

    return sl.similarity.normalize(m, "abs")


def abs_percentile_80(m):
    s = m.abs().sum(1).flatten(1)
    s = s - s.min(1, keepdim=True).values
    return (s / torch.quantile(s, 0.80, dim=1, keepdim=True)).clamp(0, 1).view(
        m.shape[0], *m.shape[2:])


WRONG_EX1 = [
    ("divides by the maximum", abs_max, "maximum instead of the 99th percentile"),
    ("percentile before the minimum", abs_percentile_first,
     r"percentile \*before\* subtracting the minimum"),
    ("no clipping", abs_no_clip, "did not clip"),
    ("per channel", abs_per_channel, "did not sum over the channel axis"),
    ("abs after the sum", abs_of_sum, r"absolute value \*after\* summing"),
    ("batch-wide", abs_batchwide, "over the whole batch"),
    ("the 0.99th percentile", abs_fraction_percentile, "0.99th percentile"),
    ("the 80th percentile", abs_percentile_80, "differ from the paper's abs normalization"),
    ("the diverging rule", lambda m: diverging_torch(m), r"must lie in \[0, 1\]"),
    ("the library's normalize", abs_library, "calls sanity_lib.similarity"),
    ("changes its input", abs_in_place, "changed its argument `m` in place"),
    ("a tensor, not a function", abs_torch(torch.randn(1, 3, 4, 4)),
     "your function `normalize_abs` itself, got a tensor"),
    ("None", None, "your function `normalize_abs` itself, got None"),
    ("wrong signature", lambda m, mode: abs_torch(m), r"cannot be called as normalize_abs\(maps\)"),
    ("raises inside torch", lambda m: m.sum(1) @ m, "raised RuntimeError"),
    ("returns None", lambda m: None, "should be a torch tensor or a numpy array of numbers"),
    ("returns a string", lambda m: "normalized", "should be a torch tensor or a numpy array"),
    ("returns NaN", lambda m: abs_torch(m) * float("nan"), "NaN or inf"),
]


@pytest.mark.parametrize("name, wrong, message", WRONG_EX1, ids=[w[0] for w in WRONG_EX1])
def test_ex1_rejects_wrong_answers_saying_why(name, wrong, message):
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


def div_max(m):
    s = m.sum(1).flatten(1)
    return (s / s.abs().max(1, keepdim=True).values).view(m.shape[0], *m.shape[2:])


def div_library(m):
    from sanity_lib.similarity import normalize

    return normalize(m, "diverging")


WRONG_EX2 = [
    ("absolute values", div_abs_applied, "took absolute values"),
    ("the abs rule", abs_torch, "abs normalization"),
    ("percentile of the signed map", div_signed_percentile, "percentile of the signed map"),
    ("clipped to [0, 1]", div_clip01, r"clipped to \[0, 1\]"),
    ("minimum subtracted", div_min_subtracted, "subtracted the minimum"),
    ("divides by the maximum", div_max, r"maximum of \|map\|"),
    ("the library's normalize, imported by name", div_library, "calls sanity_lib.similarity"),
    ("None", None, "your function `normalize_diverging` itself, got None"),
    ("a class", torch.nn.Identity, "your function `normalize_diverging` itself"),
    ("wrong signature", lambda: None, r"cannot be called as normalize_diverging\(maps\)"),
    ("wrong shape", lambda m: m.sum(1).flatten(1), "expected"),
]


@pytest.mark.parametrize("name, wrong, message", WRONG_EX2, ids=[w[0] for w in WRONG_EX2])
def test_ex2_rejects_wrong_answers_saying_why(name, wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex2", wrong)


# ----------------------------------------------------------------------------- ex3

def spearman_loop(a, b):
    """Average ranks by hand (argsort, then the mean rank of each tied group)."""
    def ranks(row):
        order = np.argsort(row, kind="stable")
        r = np.empty(len(row))
        r[order] = np.arange(1, len(row) + 1)
        values, inverse = np.unique(row, return_inverse=True)
        sums = np.bincount(inverse, weights=r)
        return sums[inverse] / np.bincount(inverse)[inverse]

    out = []
    for x, y in zip(a.numpy(), b.numpy()):
        out.append(np.corrcoef(ranks(x.ravel()), ranks(y.ravel()))[0, 1])
    return np.array(out)


RIGHT_EX3 = [("rankdata, vectorized", spearman_vectorized),
             ("average ranks by hand, numpy", spearman_loop)]


@pytest.mark.parametrize("name, answer", RIGHT_EX3, ids=[r[0] for r in RIGHT_EX3])
def test_ex3_accepts_correct_alternatives(name, answer):
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


def spearman_library(a, b):
    import sanity_lib as sl

    return sl.similarity.spearman(a, b, mode=None)


WRONG_EX3 = [
    ("ties by position", spearman_stable_argsort, "broke ties by position"),
    ("ties in reverse order", spearman_unstable_argsort, "right on maps without ties"),
    ("Pearson of the values", pearson_raw, "raw values"),
    ("the no-ties shortcut", shortcut_formula, "shortcut"),
    ("scipy's spearmanr", spearman_scipy, "calls scipy.stats.*spearmanr"),
    ("the library's spearman", spearman_library, "calls sanity_lib.similarity"),
    ("one number", lambda a, b: _pearson(a.flatten(1), b.flatten(1)).mean(), "one number"),
    ("ranks over the batch",
     lambda a, b: _pearson(torch.from_numpy(stats.rankdata(a.numpy()).reshape(a.shape[0], -1)),
                           torch.from_numpy(stats.rankdata(b.numpy()).reshape(b.shape[0], -1))),
     "all the samples together"),
    ("made-up correlations", lambda a, b: torch.zeros(a.shape[0]), "differ from"),
    ("None", None, "`spearman_per_sample` itself, got None"),
    ("wrong signature", lambda a: a, r"cannot be called as spearman_per_sample\(a, b\)"),
    ("raises", lambda a, b: a.flatten() @ b, "raised RuntimeError"),
    ("returns a string", lambda a, b: "0.5", "torch tensor or a numpy array of numbers"),
]


@pytest.mark.parametrize("name, wrong, message", WRONG_EX3, ids=[w[0] for w in WRONG_EX3])
def test_ex3_rejects_wrong_answers_saying_why(name, wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex3", wrong)


# ----------------------------------------------------------------------------- ex4

def _norm_abs(t):
    s = np.abs(t).sum(1).reshape(len(t), -1)
    s = s - s.min(1, keepdims=True)
    return np.clip(s / np.percentile(s, 99, axis=1, keepdims=True), 0, 1)


def _norm_div(t):
    s = t.sum(1).reshape(len(t), -1)
    return np.clip(s / np.percentile(np.abs(s), 99, axis=1, keepdims=True), -1, 1)


def _rho(a, b, norm):
    return float(np.mean([stats.spearmanr(p, q)[0] for p, q in zip(norm(a), norm(b))]))


def _inputs_ex4(seed=0, names=None):
    gen = np.random.default_rng(seed)
    x = data.sample_images(64, names=names).numpy() * 2 - 1     # photos in [-1, 1]
    return {"grad": gen.standard_normal(x.shape), "x": x,
            "u": gen.standard_normal(x.shape), "v": gen.standard_normal(x.shape)}


def _measured_ex4(grad, x, u, v):
    """The four correlations, computed with numpy and scipy only (not sanity_lib)."""
    return {"negation_abs": _rho(grad, -grad, _norm_abs),
            "negation_diverging": _rho(grad, -grad, _norm_div),
            "random_abs": _rho(x * u, x * v, _norm_abs),
            "random_diverging": _rho(x * u, x * v, _norm_div)}


@pytest.fixture(scope="module")
def ex4_case():
    context = _inputs_ex4()
    return _measured_ex4(**context), context


def test_ex4_accepts_measured_values(ex4_case):
    answer, context = ex4_case
    # the typed prediction 0 for random_diverging is off by more than the tolerance here
    assert answer["random_abs"] > 0.2 and abs(answer["random_diverging"]) > 0.005
    assert "correct" in check("ch2_ex4", answer, **context)
    tensors = {k: torch.from_numpy(v).float() for k, v in context.items()}
    assert "correct" in check("ch2_ex4", {k: torch.tensor(v) for k, v in answer.items()},
                              **tensors)


_PREDICTED = {"negation_abs": 1, "negation_diverging": -1, "random_abs": 0.5,
              "random_diverging": 0}

WRONG_EX4 = [
    ("the typed predictions", lambda a, c: (_PREDICTED, c), "random_abs = 0.500, but measured"
     ".*your prediction, not a measurement"),
    ("abs and diverging swapped (random)",
     lambda a, c: ({**a, "random_abs": a["random_diverging"],
                    "random_diverging": a["random_abs"]}, c), "random_abs and random_diverging "
                                                               "are swapped"),
    ("abs and diverging swapped (negation)",
     lambda a, c: ({**a, "negation_abs": -1.0, "negation_diverging": 1.0}, c),
     "negation_abs and negation_diverging are swapped"),
    ("x * u compared with itself",
     lambda a, c: ({**a, "random_abs": 1.0, "random_diverging": 1.0}, c), "with itself"),
    ("measured on other photos",
     lambda a, c: (_measured_ex4(**_inputs_ex4(1, names=["astronaut", "motorcycle", "rocket"])),
                   c), "measured on the inputs you passed"),
    ("u and v the same tensor", lambda a, c: (a, {**c, "v": c["u"]}), "same random tensor"),
    ("u uniform, not normal", lambda a, c: (a, {**c, "u": np.random.default_rng(3).random(
        c["x"].shape)}), "standard-normal"),
    ("no context", lambda a, c: (a, {}), "pass grad="),
    ("x of another shape", lambda a, c: (a, {**c, "x": c["x"][:1]}), "one shape"),
    ("grad= a string", lambda a, c: (a, {**c, "grad": "grad"}), "grad= should be a torch tensor"),
    ("a key missing", lambda a, c: ({"negation_abs": 1.0}, c), "lacks the keys"),
    ("not a number", lambda a, c: ({**a, "random_abs": "high"}, c), "should be a number"),
    ("one value per image", lambda a, c: ({**a, "random_abs": torch.full((5,), 0.4)}, c),
     "holds 5 values"),
    ("out of range", lambda a, c: ({**a, "random_abs": 1.7}, c), r"must lie in \[-1, 1\]"),
    ("not a dict", lambda a, c: (list(a.values()), c), "should be a dict"),
]


@pytest.mark.parametrize("name, make, message", WRONG_EX4, ids=[w[0] for w in WRONG_EX4])
def test_ex4_rejects_wrong_answers_saying_why(ex4_case, name, make, message):
    answer, context = make(*ex4_case)
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex4", answer, **context)


# ----------------------------------------------------------------------------- ex5

def _masks(n=50, seed=5):
    gen = np.random.default_rng(seed)
    return gen.uniform(-1, 1, (2, n, 28, 28))


def _floor_by_hand(a, b):
    """Mean spearman_abs and HOG correlation of the pairs (a[i], b[i]), from scipy and
    scikit-image directly."""
    n = len(a)

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


@pytest.fixture(scope="module")
def ex5_case():
    a, b = _masks()
    return _floor_by_hand(a, b), {"a": a, "b": b}


def test_ex5_accepts_a_floor_measured_by_hand(ex5_case):
    answer, context = ex5_case
    assert 0.02 < answer["hog"] < 0.15          # the paper's point: HOG's floor is not 0
    assert "correct" in check("ch2_ex5", answer, **context)
    more = _masks(n=80, seed=9)
    assert "correct" in check("ch2_ex5", _floor_by_hand(*more), a=torch.from_numpy(more[0]),
                              b=torch.from_numpy(more[1]))


def _library_floor():
    import sanity_lib as sl

    return sl.similarity.noise_floor((28, 28), metrics=["spearman_abs", "hog"], kind="uniform")


WRONG_EX5 = [
    ("made-up zeros", lambda a, c: ({"spearman_abs": 0.0, "hog": 0.0}, c), "too low"),
    ("made-up plausible numbers", lambda a, c: ({"spearman_abs": 0.0, "hog": 0.07}, c),
     "measured on the masks you passed"),
    ("the library's noise_floor, typed in", lambda a, c: (_library_floor(), c),
     "measured on the masks you passed"),
    ("each mask with itself", lambda a, c: ({"spearman_abs": 1.0, "hog": 1.0}, c), "itself"),
    ("a and b the same masks", lambda a, c: (a, {**c, "b": c["a"]}), "same masks"),
    ("normal, not uniform masks", lambda a, c: (a, {**c, "a": np.random.default_rng(1)
                                                    .standard_normal((50, 28, 28))}),
     "not Uniform"),
    ("masks in [0, 1]", lambda a, c: (a, {**c, "a": (c["a"] + 1) / 2}), "not Uniform"),
    ("10 pairs", lambda a, c: (a, {"a": c["a"][:10], "b": c["b"][:10]}), "holds 10 masks"),
    ("64 x 64 masks", lambda a, c: (a, {**c, "a": np.zeros((50, 64, 64))}), "28 x 28"),
    ("no masks passed", lambda a, c: (a, {}), "pass a="),
    ("a key missing", lambda a, c: ({"spearman_abs": 0.0}, c), "lacks the keys"),
    ("not a dict", lambda a, c: ([0.0, 0.07], c), "should be a dict"),
]


@pytest.mark.parametrize("name, make, message", WRONG_EX5, ids=[w[0] for w in WRONG_EX5])
def test_ex5_rejects_wrong_answers_saying_why(ex5_case, name, make, message):
    answer, context = make(*ex5_case)
    with pytest.raises(CheckFailed, match=message):
        check("ch2_ex5", answer, **context)
