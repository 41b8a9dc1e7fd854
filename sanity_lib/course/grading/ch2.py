"""Checks of the exercise notebook of chapter 2, "Comparing maps".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch2_ex1``  a function ``maps (N x C x H x W) -> N x H x W``: the paper's abs
             normalization (sum of ``|map|`` over channels, minus the minimum,
             divided by the 99th percentile, clipped to [0, 1])
``ch2_ex2``  the same for the diverging normalization (sum over channels, divided
             by the 99th percentile of ``|sum|``, clipped to [-1, 1])
``ch2_ex3``  a function ``(a, b) -> N`` values: Spearman's rank correlation of each
             pair of maps, ties given their average rank
``ch2_ex4``  a dict of four measured rank correlations: a map against its negation,
             and ``x * u`` against ``x * v`` for random ``u, v``, each in abs and
             diverging mode
``ch2_ex5``  a dict with the measured noise floor of ``spearman_abs`` and ``hog``
             for 28 x 28 Uniform[-1, 1] masks
===========  ===================================================================

The function checks run the student's function on fixed inputs (random maps, maps with a
large offset, heavy-tailed maps, tie-heavy maps, and real gradient maps of two small
networks), compare with the library (:mod:`sanity_lib.similarity`) or scipy, and when the
result is wrong, recompute the typical mistakes to say *which* one was made.

Examples
--------
>>> import sanity_lib as sl
>>> sl.grading.check("ch2_ex1", lambda m: sl.similarity.normalize(m, "abs"))
'ch2_ex1: correct. Well done!'
"""
import functools
import math
import numbers

import numpy as np
import torch
from scipy import stats

from . import CheckFailed, as_array, expect, register

__all__ = []  # the checks are reached through sanity_lib.course.grading.check

_ATOL = 1e-5  # float32 answers are fine
_INTERPOLATIONS = ("lower", "higher", "nearest", "midpoint")


# ----------------------------------------------------------------------------- helpers



def _close(x, y):
    return x.shape == y.shape and np.allclose(x, y, atol=_ATOL, rtol=0.0)


def _call(fn, *args):
    """Call the student's function on copies of ``args``; fail if it changed them."""
    tensors = [torch.from_numpy(a.copy()) for a in args]
    before = [t.clone() for t in tensors]
    out = fn(*tensors)
    changed = not all(torch.equal(t, b) for t, b in zip(tensors, before))
    expect(not changed, "Your function changed its input tensor in place.",
           hint="Use out-of-place operations (`m.abs()`, `m - m.min()`), not `abs_()`, `-=` "
                "or `clamp_()` on the input: the caller still needs the original map.")
    return out


def _percentile(s, q=99.0, method="linear"):
    """Per-image percentile of N x H x W maps, shaped N x 1 x 1 for broadcasting."""
    flat = s.reshape(s.shape[0], -1)
    return np.percentile(flat, q, axis=1, method=method)[:, None, None]


def _minimum(s):
    return s.reshape(s.shape[0], -1).min(axis=1)[:, None, None]


def _maximum(s):
    return s.reshape(s.shape[0], -1).max(axis=1)[:, None, None]


# ----------------------------------------------------------------------------- inputs

@functools.lru_cache(maxsize=1)
def _real_maps():
    """Gradient maps of two small real networks: MNIST digits (1 channel) and photos (3)."""
    from sanity_lib import data, models, saliency

    digits, _ = data.load_mnist("test")
    mnist = saliency.explain(models.mnist_cnn(seed=0), digits[:3], "gradient")
    photos = data.sample_images(32, names=["chelsea", "coffee"])
    conv = saliency.explain(models.one_conv_model(in_channels=3, seed=0), photos, "gradient")
    return mnist.double().numpy(), conv.double().numpy()


def _normalization_inputs():
    """Named N x C x H x W float64 batches on which each mistake shows up somewhere."""
    rng = np.random.default_rng(2018)
    mnist, photos = _real_maps()
    return {
        "random 3-channel maps (3 x 3 x 20 x 24)": rng.standard_normal((3, 3, 20, 24)),
        # sum |m| is about 12 +- 2 here, so the minimum is far from 0.
        "maps with a large positive offset": rng.standard_normal((2, 3, 16, 16)) + 4.0,
        # Cubed normals: the maximum is far above the 99th percentile.
        "heavy-tailed maps": rng.standard_normal((2, 1, 32, 32)) ** 3,
        # Negative values dominate: the percentile of the signed map is not that of |map|.
        "mostly negative maps": -np.abs(rng.standard_normal((2, 2, 16, 16))) ** 2 + 0.3,
        "real gradient maps of an MNIST CNN": mnist,
        "real 3-channel gradient maps of photos (one conv layer)": photos,
    }


# ----------------------------------------------------------------------------- normalization

def _abs_sum(m):
    return np.abs(m).sum(axis=1)


def _abs_rule(s, q=99.0, method="linear"):
    s = s - _minimum(s)
    return np.clip(s / _percentile(s, q, method), 0.0, 1.0)


def _diverging_rule(s, q=99.0, method="linear"):
    return np.clip(s / _percentile(np.abs(s), q, method), -1.0, 1.0)


def _batchwide(rule_input, mode):
    """The rule with one minimum / percentile for the whole batch instead of per image."""
    s = rule_input
    if mode == "abs":
        s = s - s.min()
        return np.clip(s / np.percentile(s, 99), 0.0, 1.0)
    return np.clip(s / np.percentile(np.abs(s), 99), -1.0, 1.0)


_HINT_ABS = ("The abs recipe, per image: s = |m|.sum(channel axis); s = s - s.min(); "
             "s = s / percentile(s, 99); clip to [0, 1].")
_HINT_DIV = ("The diverging recipe, per image: s = m.sum(channel axis); "
             "s = s / percentile(|s|, 99); clip to [-1, 1].")

# (function of N x C x H x W maps, message, hint) for each typical mistake, in the order
# they are tried; a mistake is reported only where it gives a different result.
_ABS_MISTAKES = [
    (lambda m: _abs_rule(np.abs(m.sum(axis=1))),
     "You took the absolute value *after* summing the channels. The abs mode sums the "
     "absolute values of the channels, so a +1 and a -1 in two channels add up instead of "
     "cancelling.", _HINT_ABS),
    (lambda m: _abs_rule(m.sum(axis=1)),
     "You did not take absolute values: your map keeps the sign before the minimum is "
     "subtracted.", _HINT_ABS),
    (lambda m: _abs_rule(np.abs(m[:, 0])),
     "You used only the first channel. Sum the absolute values over all channels.", _HINT_ABS),
    (lambda m: np.clip(_abs_sum(m) / _percentile(_abs_sum(m)), 0.0, 1.0),
     "You did not subtract each map's minimum before dividing.", _HINT_ABS),
    (lambda m: np.clip((_abs_sum(m) - _minimum(_abs_sum(m))) / _percentile(_abs_sum(m)),
                       0.0, 1.0),
     "You took the 99th percentile *before* subtracting the minimum. Take it of the "
     "min-subtracted map, so that the clipping point lands exactly on 1.", _HINT_ABS),
    (lambda m: _abs_rule(_abs_sum(m), q=100.0),
     "You divided by the maximum instead of the 99th percentile. One extreme pixel then "
     "squashes every other pixel towards 0.", _HINT_ABS),
    (lambda m: (lambda s: s / _percentile(s))(_abs_sum(m) - _minimum(_abs_sum(m))),
     "You did not clip: the top 1 % of the pixels end up above 1. Clip the result to "
     "[0, 1] (`torch.clamp(s, 0, 1)` or `np.clip`).", _HINT_ABS),
    (lambda m: _batchwide(_abs_sum(m), "abs"),
     "You took the minimum and the percentile over the whole batch. Each map is "
     "normalized on its own: reduce over the H x W pixels of one image (dim=1 after "
     "flattening each map), not over everything.", _HINT_ABS),
    (lambda m: _abs_rule(_abs_sum(m), q=0.99),
     "You took the 0.99th percentile (nearly the minimum), not the 99th. "
     "`np.percentile` takes 0-100 (99), `torch.quantile` takes 0-1 (0.99).", _HINT_ABS),
] + [
    (functools.partial(lambda m, how: _abs_rule(_abs_sum(m), method=how), how=how),
     f"Your percentile interpolates between pixels differently (like method='{how}'). Use "
     "linear interpolation, the default of `np.percentile` and of `torch.quantile`.",
     _HINT_ABS)
    for how in _INTERPOLATIONS
]

_DIV_MISTAKES = [
    (lambda m: np.clip(np.abs(m.sum(axis=1)) / _percentile(np.abs(m.sum(axis=1))), 0, 1),
     "You took absolute values: the diverging mode keeps the sign (negative evidence "
     "stays negative). Only the *percentile* is taken of |map|.", _HINT_DIV),
    (lambda m: np.clip(_abs_sum(m) / _percentile(_abs_sum(m)), 0, 1),
     "You summed the absolute values of the channels: the diverging mode sums the signed "
     "channels and keeps the sign.", _HINT_DIV),
    (lambda m: _abs_rule(_abs_sum(m)),
     "You returned the abs normalization: the diverging mode keeps the sign.", _HINT_DIV),
    (lambda m: np.clip(m.sum(axis=1) / _percentile(m.sum(axis=1)), -1.0, 1.0),
     "You took the 99th percentile of the signed map. Take it of |map|, so that large "
     "negative values count as much as large positive ones.", _HINT_DIV),
    (lambda m: _diverging_rule(m.sum(axis=1), q=100.0),
     "You divided by the maximum of |map| instead of its 99th percentile. One extreme "
     "pixel then squashes every other pixel towards 0.", _HINT_DIV),
    (lambda m: (lambda s: s / _percentile(np.abs(s)))(m.sum(axis=1)),
     "You did not clip: the top 1 % of the pixels end up outside [-1, 1]. Clip the result "
     "to [-1, 1].", _HINT_DIV),
    (lambda m: np.clip(m.sum(axis=1) / _percentile(np.abs(m.sum(axis=1))), 0.0, 1.0),
     "You clipped to [0, 1]: every negative pixel became 0. Diverging maps live in "
     "[-1, 1].", _HINT_DIV),
    (lambda m: (lambda s: _diverging_rule(s - _minimum(s)))(m.sum(axis=1)),
     "You subtracted the minimum. In the diverging mode zero must stay zero (a pixel "
     "with no attribution), so there is no shift, only a division.", _HINT_DIV),
    (lambda m: (lambda s, q: np.clip((s + q) / (2 * q), -1.0, 1.0))(
        m.sum(axis=1), _percentile(m.sum(axis=1))),
     "You used the PAIR `saliency` package's rule (x + p) / (2 p) with the percentile of "
     "the signed map: it sends 0 to 0.5. The course uses the symmetric rule x / p99(|x|).",
     _HINT_DIV),
    (lambda m: _diverging_rule(m[:, 0]),
     "You used only the first channel. Sum the channels (with their signs).", _HINT_DIV),
    (lambda m: _batchwide(m.sum(axis=1), "diverging"),
     "You took the percentile over the whole batch. Each map is normalized on its own: "
     "reduce over the H x W pixels of one image.", _HINT_DIV),
    (lambda m: _diverging_rule(m.sum(axis=1), q=0.99),
     "You took the 0.99th percentile, not the 99th. `np.percentile` takes 0-100 (99), "
     "`torch.quantile` takes 0-1 (0.99).", _HINT_DIV),
] + [
    (functools.partial(lambda m, how: _diverging_rule(m.sum(axis=1), method=how), how=how),
     f"Your percentile interpolates between pixels differently (like method='{how}'). Use "
     "linear interpolation, the default of `np.percentile` and of `torch.quantile`.",
     _HINT_DIV)
    for how in _INTERPOLATIONS
]


def _diagnose(outputs, references, inputs, mistakes):
    """The (message, hint, case) of the typical mistake that explains a wrong answer, or None.

    ``outputs``, ``references`` and ``inputs`` map each case name to the student's result,
    the right result and the arguments. A mistake that reproduces the student's results on
    *every* case wins; failing that, one that reproduces the first wrong case (and differs
    from the right result there).
    """
    wrong = [c for c in outputs if not _close(outputs[c], references[c])]
    predictions = [{c: fn(*inputs[c]) for c in outputs} for fn, _, _ in mistakes]
    for (_, message, hint), pred in zip(mistakes, predictions):
        if all(_close(outputs[c], pred[c]) for c in outputs):
            return message, hint, wrong[0]
    c = wrong[0]
    for (_, message, hint), pred in zip(mistakes, predictions):
        if not _close(pred[c], references[c]) and _close(outputs[c], pred[c]):
            return message, hint, c
    return None


def _check_normalizer(fn, mode, name, exercise):
    from sanity_lib.similarity import normalize

    expect(callable(fn), f"The answer should be your function `{name}` itself.",
           hint=f"Pass the function, without calling it: sl.grading.check('{exercise}', {name})")
    mistakes = _ABS_MISTAKES if mode == "abs" else _DIV_MISTAKES
    recipe = _HINT_ABS if mode == "abs" else _HINT_DIV
    lo = 0.0 if mode == "abs" else -1.0
    inputs, outputs, references = {}, {}, {}
    for case, maps in _normalization_inputs().items():
        n, c, h, w = maps.shape
        out = as_array(_call(fn, maps), f"What `{name}` returns")
        if out.shape == (n, 1, h, w):
            out = out[:, 0]  # a kept channel axis of size one is fine
        if out.shape == maps.shape and c > 1:
            raise CheckFailed(
                f"On the {case} ({n} x {c} x {h} x {w}) your function returned the same shape: "
                "it did not sum over the channel axis.\nHint: the result has one value per "
                "pixel, shape N x H x W; sum over dim=1.")
        expect(out.shape == (n, h, w),
               f"On the {case} ({n} x {c} x {h} x {w}) your function returned shape "
               f"{out.shape}; expected {(n, h, w)}: one normalized H x W map per image.",
               hint="Sum over the channel axis (dim=1) and keep the batch axis.")
        expect(np.isfinite(out).all(),
               f"On the {case} your maps contain NaN or inf.",
               hint="Divide by the percentile of each map, which is positive for these maps; "
                    "check the axis you reduce over.")
        inputs[case], outputs[case] = (maps,), out
        references[case] = normalize(maps, mode).numpy()
    if all(_close(outputs[c], references[c]) for c in outputs):
        return
    found = _diagnose(outputs, references, inputs, mistakes)
    if found:
        message, hint, case = found
        raise CheckFailed(f"{message} (Seen on the {case}.)\nHint: {hint}")
    case = next(c for c in outputs if not _close(outputs[c], references[c]))
    out, reference = outputs[case], references[case]
    if out.min() < lo - _ATOL or out.max() > 1 + _ATOL:
        raise CheckFailed(
            f"On the {case} your values span [{out.min():.3g}, {out.max():.3g}]; {mode} maps "
            f"must lie in [{lo:g}, 1].\nHint: {recipe}")
    i, y, x = np.unravel_index(np.argmax(np.abs(out - reference)), out.shape)
    raise CheckFailed(
        f"On the {case} your maps differ from the paper's {mode} normalization: the "
        f"largest difference is in map {i} at pixel ({y}, {x}), where you give "
        f"{out[i, y, x]:.4g} and the reference gives {reference[i, y, x]:.4g}.\nHint: {recipe}")


@register("ch2_ex1")
def _check_ex1(answer):
    _check_normalizer(answer, "abs", "normalize_abs", "ch2_ex1")


@register("ch2_ex2")
def _check_ex2(answer):
    _check_normalizer(answer, "diverging", "normalize_diverging", "ch2_ex2")


# ----------------------------------------------------------------------------- Spearman

def _pearson_rows(x, y):
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    return (xc * yc).sum(axis=1) / np.sqrt((xc ** 2).sum(axis=1) * (yc ** 2).sum(axis=1))


def _ranked_pearson(a, b, method):
    n = a.shape[0]
    ra = stats.rankdata(a.reshape(n, -1), method=method, axis=1)
    rb = stats.rankdata(b.reshape(n, -1), method=method, axis=1)
    return _pearson_rows(ra, rb)


def _shortcut_formula(a, b):
    n = a.shape[0]
    ra = stats.rankdata(a.reshape(n, -1), axis=1)
    rb = stats.rankdata(b.reshape(n, -1), axis=1)
    d = ra.shape[1]
    return 1 - 6 * ((ra - rb) ** 2).sum(axis=1) / (d * (d * d - 1))


def _batch_ranks(a, b):
    ra = stats.rankdata(a.ravel()).reshape(a.shape[0], -1)
    rb = stats.rankdata(b.ravel()).reshape(b.shape[0], -1)
    return _pearson_rows(ra, rb)


def _row_ranks(a, b):
    # rankdata(a, axis=-1) on N x H x W ranks within each row of each map
    n = a.shape[0]
    ra = stats.rankdata(a, axis=-1).reshape(n, -1)
    rb = stats.rankdata(b, axis=-1).reshape(n, -1)
    return _pearson_rows(ra, rb)


_HINT_SPEARMAN = ("Per sample: flatten the map, rank its pixels with average ranks for ties "
                  "(scipy.stats.rankdata(..., axis=1) on N x (H*W) arrays), then take the "
                  "Pearson correlation of the two rank vectors.")
_SPEARMAN_MISTAKES = [
    (lambda a, b: _pearson_rows(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)),
     "You correlated the raw values (Pearson), not their ranks. A rank correlation only "
     "asks whether the same pixels rank high, whatever the scale: rank first."),
    (functools.partial(_ranked_pearson, method="ordinal"),
     "You broke ties by position (ordinal ranks, as a stable argsort of argsort gives). Tied "
     "values must share one rank, the average of the ranks they occupy: normalized maps "
     "have many ties (every clipped pixel is exactly 1)."),
    (functools.partial(_ranked_pearson, method="min"),
     "You gave tied values the lowest rank of their group ('min' ranks). Tied values get "
     "the *average* of the ranks they occupy."),
    (functools.partial(_ranked_pearson, method="max"),
     "You gave tied values the highest rank of their group ('max' ranks). Tied values get "
     "the *average* of the ranks they occupy."),
    (functools.partial(_ranked_pearson, method="dense"),
     "You used dense ranks (1, 2, 3 for the distinct values). Tied values get the average "
     "of the ranks they occupy among *all* pixels."),
    (_shortcut_formula,
     "You used the shortcut 1 - 6 sum(d^2) / (n (n^2 - 1)). It is exact only when there are "
     "no ties; with ties, compute the Pearson correlation of the (average) ranks."),
    (_batch_ranks,
     "You ranked the pixels of all the samples together. Rank each map on its own."),
    (_row_ranks,
     "You ranked the pixels within each row of the map (the last axis) instead of within "
     "the whole map. Flatten each map to H*W pixels first: reshape(N, -1)."),
]
_SPEARMAN_MISTAKES = [(fn, message, _HINT_SPEARMAN) for fn, message in _SPEARMAN_MISTAKES]


_TIE_FREE = "maps without ties, related by a curved, increasing function"


def _spearman_inputs():
    """Named pairs of N x H x W float64 batches, most of them full of ties."""
    from sanity_lib.similarity import normalize

    rng = np.random.default_rng(7)
    levels = rng.integers(0, 4, size=(4, 12, 12)).astype(np.float64)
    nudged = levels + rng.integers(0, 3, size=levels.shape)
    heavy = rng.standard_normal((3, 1, 16, 16)) ** 3
    # Clipping at the 80th percentile makes 20 % of each map tie at exactly 1.
    clipped_a = normalize(heavy, "abs", percentile=80).numpy()
    clipped_b = normalize(heavy + 0.5 * rng.standard_normal(heavy.shape), "abs",
                          percentile=80).numpy()
    smooth = rng.standard_normal((3, 10, 10))
    curved = np.exp(2.0 * smooth) + 0.3 * rng.standard_normal(smooth.shape)
    return {
        "tie-heavy maps (4 distinct values)": (levels, nudged),
        "normalized maps clipped at the 80th percentile": (clipped_a, clipped_b),
        _TIE_FREE: (smooth, curved),
    }


@register("ch2_ex3")
def _check_ex3(answer):
    expect(callable(answer), "The answer should be your function `spearman_per_sample` itself.",
           hint="Pass the function without calling it: "
                "sl.grading.check('ch2_ex3', spearman_per_sample)")
    inputs, outputs, references = {}, {}, {}
    for case, (a, b) in _spearman_inputs().items():
        n = a.shape[0]
        out = as_array(_call(answer, a, b), "What `spearman_per_sample` returns")
        if out.ndim == 0:
            raise CheckFailed(
                f"On the {case} your function returned one number for {n} pairs of maps. "
                "Return one correlation per sample (a tensor or array of length N).\n"
                f"Hint: {_HINT_SPEARMAN}")
        out = out.reshape(-1) if out.size == n else out
        expect(out.shape == (n,),
               f"On the {case} your function returned shape {out.shape}; expected ({n},): "
               "one correlation per pair of maps.", hint=_HINT_SPEARMAN)
        inputs[case], outputs[case] = (a, b), out
        references[case] = np.array([stats.spearmanr(x.ravel(), y.ravel())[0]
                                     for x, y in zip(a, b)])
    wrong = [c for c in outputs if not _close(outputs[c], references[c])]
    if not wrong:
        return
    found = _diagnose(outputs, references, inputs, _SPEARMAN_MISTAKES)
    if found:
        message, _, case = found
        raise CheckFailed(f"{message} (Seen on the {case}.)\nHint: {_HINT_SPEARMAN}")
    if _TIE_FREE not in wrong:
        raise CheckFailed(
            f"Your function is right on maps without ties but wrong on the {wrong[0]}. Tied "
            "values must share one rank, the average of the ranks they occupy; sorting "
            "(argsort of argsort) breaks ties in an arbitrary order.\nHint: " + _HINT_SPEARMAN)
    case = wrong[0]
    raise CheckFailed(
        f"On the {case} your correlations {np.round(outputs[case], 4).tolist()} differ from "
        f"scipy.stats.spearmanr's {np.round(references[case], 4).tolist()}.\n"
        f"Hint: {_HINT_SPEARMAN}")


# ----------------------------------------------------------------------------- measurements

def _numbers(answer, keys, exercise):
    expect(isinstance(answer, dict),
           f"The answer should be a dict with the keys {list(keys)}, got "
           f"{type(answer).__name__}.", hint=f"Fill in the dict of {exercise} with numbers.")
    missing = [k for k in keys if k not in answer]
    expect(not missing, f"The answer lacks the keys {missing}.",
           hint=f"Use exactly the keys {list(keys)}.")
    values = {}
    for k in keys:
        v = answer[k]
        count = v.numel() if isinstance(v, torch.Tensor) else np.size(v)
        if count > 1:
            raise CheckFailed(f"answer[{k!r}] holds {count} values; give one number.\n"
                              "Hint: average over the images, e.g. `.mean().item()`.")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise CheckFailed(f"answer[{k!r}] should be a number, got {type(v).__name__}.\n"
                              "Hint: average over the images, e.g. `.mean().item()`.") from None
        expect(math.isfinite(v) and -1 - 1e-9 <= v <= 1 + 1e-9,
               f"answer[{k!r}] = {v!r} is not a correlation: it must lie in [-1, 1].",
               hint="Use sl.similarity.spearman / compare, which return values in [-1, 1].")
        values[k] = v
    return values


_EX4_KEYS = ("negation_abs", "negation_diverging", "random_abs", "random_diverging")


@register("ch2_ex4")
def _check_ex4(answer):
    v = _numbers(answer, _EX4_KEYS, "ch2_ex4")
    if v["negation_abs"] < -0.99 and v["negation_diverging"] > 0.99:
        raise CheckFailed(
            "Your negation numbers are swapped: the abs mode cannot see a sign, so it gives "
            "+1 for a map and its negation; the diverging mode gives -1.\nHint: check which "
            "value you computed with mode='abs' and which with mode='diverging'.")
    expect(v["negation_abs"] > 0.99,
           f"negation_abs = {v['negation_abs']:.3f}, but the absolute values of m and -m are "
           "identical, so their rank correlation is 1.",
           hint="Compare the map m with -m using sl.similarity.spearman(m, -m, mode='abs').")
    expect(v["negation_diverging"] < -0.99,
           f"negation_diverging = {v['negation_diverging']:.3f}, but -m ranks every pixel in "
           "exactly the reverse order of m, so the signed rank correlation is -1."
           + (" Did you compare m with itself?" if v["negation_diverging"] > 0.99 else ""),
           hint="Use mode='diverging' on m and -m.")
    if v["random_abs"] > 0.99 and v["random_diverging"] > 0.99:
        raise CheckFailed(
            "Both x * u vs x * v correlations are 1: you used the same random vector for "
            "both products.\nHint: draw two independent vectors, u = torch.randn_like(x) and "
            "v = torch.randn_like(x) (two separate calls).")
    if abs(v["random_abs"]) < 0.1 and abs(v["random_diverging"]) > 0.3:
        raise CheckFailed(
            "Your x * u vs x * v numbers look swapped: the signs of u and v are independent, so "
            "the *diverging* correlation is about 0, while the *abs* maps both follow |x|.\n"
            "Hint: check which value you computed with which mode.")
    expect(v["random_abs"] > 0.15,
           f"random_abs = {v['random_abs']:.3f}: |x * u| and |x * v| both follow |x|, so they "
           "should stay clearly rank-correlated (well above 0).",
           hint="Multiply the *same* images x by two random vectors, and compare with "
                "mode='abs'. Did you multiply two different images, or use mode='diverging'?")
    expect(abs(v["random_diverging"]) < 0.15,
           f"random_diverging = {v['random_diverging']:.3f}: with the signs of u and v drawn "
           "independently, the signed maps should be unrelated (about 0).",
           hint="Use independent u and v, zero-mean (torch.randn_like), and mode='diverging'.")


_EX5_KEYS = ("spearman_abs", "hog")


@functools.lru_cache(maxsize=1)
def _floor_28():
    from sanity_lib.similarity import noise_floor

    return noise_floor((28, 28), metrics=_EX5_KEYS, n=400, seed=20181003, kind="uniform",
                       return_std=True)


@register("ch2_ex5")
def _check_ex5(answer, n_pairs=50):
    if not isinstance(n_pairs, numbers.Integral) or n_pairs < 2:
        raise ValueError(f"n_pairs must be an int >= 2, got {n_pairs!r}")
    v = _numbers(answer, _EX5_KEYS, "ch2_ex5")
    means, stds = _floor_28()
    for key in _EX5_KEYS:
        expect(v[key] < 0.9,
               f"answer[{key!r}] = {v[key]:.3f} is close to 1: you compared each mask with "
               "itself.", hint="Draw two independent batches of masks, a and b, and compare "
                               "a[i] with b[i].")
    # The answer is a mean of n_pairs random pairs: allow four standard errors.
    for key in _EX5_KEYS:
        tol = 4 * stds[key] / math.sqrt(n_pairs) + 0.005
        if key == "hog" and v[key] < means[key] - tol:
            raise CheckFailed(
                f"Your HOG noise floor {v[key]:.3f} is too low: two independent 28 x 28 "
                f"Uniform[-1, 1] masks give about {means[key]:.3f}, not 0. HOG features are "
                "non-negative and share the block layout, so even unrelated maps correlate a "
                "little.\nHint: use sl.similarity.hog_correlation(a, b) with its defaults "
                "(abs maps, Pearson, 4 x 4 cells for 28 x 28 maps) and average over the pairs.")
        expect(abs(v[key] - means[key]) <= tol,
               f"Your {key} noise floor {v[key]:.3f} is far from the {means[key]:.3f} +- "
               f"{tol:.3f} expected for the mean over {n_pairs} pairs of independent 28 x 28 "
               "Uniform[-1, 1] masks.",
               hint="Draw masks with 2 * torch.rand(n, 28, 28) - 1 (two independent batches), "
                    "compare them with the library's defaults, and average over the pairs.")
