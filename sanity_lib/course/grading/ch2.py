"""Checks of the exercise notebook of chapter 2, "Comparing maps".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch2_ex1``  a function ``maps (N x C x H x W) -> N x H x W``: the paper's abs
             normalization (sum of ``|map|`` over channels, minus the minimum,
             divided by the 99th percentile, clipped to [0, 1]); any percentile
             convention is accepted
``ch2_ex2``  the same for the diverging normalization (sum over channels, divided
             by the 99th percentile of ``|sum|``, clipped to [-1, 1]); the reference
             code's rule ``clip((s + p) / (2 p), -1, 1)`` is accepted too
``ch2_ex3``  a function ``(a, b) -> N`` values: Spearman's rank correlation of each
             pair of maps, ties given their average rank
``ch2_ex4``  a dict of four measured rank correlations: a map against its negation,
             and ``x * u`` against ``x * v`` for random ``u, v``, each in abs and
             diverging mode; context ``grad=, x=, u=, v=`` (recomputed from them)
``ch2_ex5``  a dict with the measured noise floor of ``spearman_abs`` and ``hog``
             for 50 pairs of 28 x 28 Uniform[-1, 1] masks; context ``a=, b=`` (the
             masks, recomputed from them)
===========  ===================================================================

The function checks run the student's function on fixed inputs (random maps, maps with a
large offset, heavy-tailed maps, tie-heavy maps, and real gradient maps of two small
networks), compare with the library (:mod:`sanity_lib.similarity`) or scipy, and when the
result is wrong, recompute the typical mistakes to say *which* one was made. Inside the
student's function the library's :mod:`sanity_lib.similarity` (and, for ex3,
``scipy.stats.spearmanr``) is refused: the exercise is to write it. The measured numbers of
ex4 and ex5 are recomputed from the student's own inputs.

Examples
--------
>>> import torch, sanity_lib as sl
>>> def normalize_abs(maps):
...     s = maps.abs().sum(dim=1).flatten(1)
...     s = s - s.min(dim=1, keepdim=True).values
...     scale = torch.quantile(s, 0.99, dim=1, keepdim=True)
...     return (s / scale).clamp(0, 1).view(maps.shape[0], *maps.shape[2:])
>>> sl.grading.check("ch2_ex1", normalize_abs)
'ch2_ex1: correct. Well done!'
>>> sl.grading.check("ch2_ex1", lambda m: sl.similarity.normalize(m, "abs"))
Traceback (most recent call last):
...
sanity_lib.course.grading.CheckFailed: Your answer calls sanity_lib.similarity.normalize: the exercise asks you to write the abs normalization yourself.
Hint: Use torch (or numpy) operations: abs, sum, min, quantile, clamp.
"""
import functools
import math

import numpy as np
import torch
from scipy import stats

from . import (CheckFailed, as_array, call_student, describe, expect, forbid_calls,
               register)

__all__ = []  # the checks are reached through sanity_lib.course.grading.check

_ATOL = 1e-5  # float32 answers are fine
#: ch2_ex1/ex2 accept any percentile convention: a scale between the order statistics this
#: many places below and above the two that bracket the 99th percentile (numpy's nine
#: methods, torch.quantile's five and the textbook definitions all fall in this window).
_PERCENTILE_SLACK = 1


# ----------------------------------------------------------------------------- helpers



def _close(x, y):
    return x.shape == y.shape and np.allclose(x, y, atol=_ATOL, rtol=0.0)


#: What each function exercise asks the student to write, and what it may not call for it.
_WRITE = {
    "ch2_ex1": dict(task="the abs normalization", modules=["sanity_lib.similarity"]),
    "ch2_ex2": dict(task="the diverging normalization", modules=["sanity_lib.similarity"]),
    "ch2_ex3": dict(task="Spearman's rank correlation", modules=["sanity_lib.similarity"],
                    functions=[stats.spearmanr]),
}
_WRITE_HINT = {
    "ch2_ex1": "Use torch (or numpy) operations: abs, sum, min, quantile, clamp.",
    "ch2_ex2": "Use torch (or numpy) operations: sum, abs, quantile, clamp.",
    "ch2_ex3": "Rank with `scipy.stats.rankdata(..., axis=1)` and correlate the ranks "
               "yourself; `scipy.stats.spearmanr` and `sl.similarity` are what the check "
               "compares with.",
}


def _call(fn, exercise, name, usage, case, *args):
    """Call the student's function on torch copies of the numpy ``args`` (through
    :func:`call_student`: signature, errors, no change of the inputs), with the library's
    version of the exercise forbidden."""
    tensors = [torch.from_numpy(a.copy()) for a in args]
    with forbid_calls(**_WRITE[exercise], hint=_WRITE_HINT[exercise]):
        return call_student(fn, *tensors, name=name, usage=usage, on=f"on the {case}")


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
    (lambda m: _diverging_rule(m[:, 0]),
     "You used only the first channel. Sum the channels (with their signs).", _HINT_DIV),
    (lambda m: _batchwide(m.sum(axis=1), "diverging"),
     "You took the percentile over the whole batch. Each map is normalized on its own: "
     "reduce over the H x W pixels of one image.", _HINT_DIV),
    (lambda m: _diverging_rule(m.sum(axis=1), q=0.99),
     "You took the 0.99th percentile, not the 99th. `np.percentile` takes 0-100 (99), "
     "`torch.quantile` takes 0-1 (0.99).", _HINT_DIV),
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


def _other_percentile(out, maps, mode):
    """Whether ``out`` is the ``mode`` rule with another percentile convention: per image,
    the scale that reproduces the unclipped pixels must lie between the order statistics
    around the 99th percentile (:data:`_PERCENTILE_SLACK` places of slack), and the rule
    with that scale must reproduce every pixel."""
    if mode == "abs":
        s = _abs_sum(maps)
        s, base, lo = s - _minimum(s), None, 0.0
        base = s
    else:
        s = maps.sum(axis=1)
        base, lo = np.abs(s), -1.0
    for o, v, b in zip(out, s, base):
        inside = (np.abs(o) > 1e-3) & (np.abs(o) < 1 - 1e-3)
        if inside.sum() < 10:
            return False
        scale = float(np.median(v[inside] / o[inside]))
        order = np.sort(b.ravel())
        at = 0.99 * (order.size - 1)
        low = order[max(int(np.floor(at)) - _PERCENTILE_SLACK, 0)]
        high = order[min(int(np.ceil(at)) + _PERCENTILE_SLACK, order.size - 1)]
        if not (low * (1 - 1e-6) <= scale <= high * (1 + 1e-6)):
            return False
        if not _close(o, np.clip(v / scale, lo, 1.0)):
            return False
    return True


def _reference_code_rule(maps):
    """The diverging rule of the PAIR ``saliency`` package the paper's code calls:
    clip((s + p) / (2 p), -1, 1) with p the 99th percentile of the signed sum."""
    s = maps.sum(axis=1)
    p = _percentile(s)
    return np.clip((s + p) / (2 * p), -1.0, 1.0)


def _accepted(out, maps, reference, mode):
    """A correct normalization: the reference, another percentile convention, or (diverging)
    the reference code's own rule; none of them changes a rank correlation noticeably."""
    return (_close(out, reference) or _other_percentile(out, maps, mode)
            or (mode == "diverging" and _close(out, _reference_code_rule(maps))))


def _check_normalizer(fn, mode, name, exercise):
    from sanity_lib.similarity import normalize

    expect(callable(fn) and not isinstance(fn, type),
           f"The answer should be your function `{name}` itself, got {describe(fn)}.",
           hint=f"Pass the function, without calling it: sl.grading.check('{exercise}', {name})")
    mistakes = _ABS_MISTAKES if mode == "abs" else _DIV_MISTAKES
    recipe = _HINT_ABS if mode == "abs" else _HINT_DIV
    lo = 0.0 if mode == "abs" else -1.0
    inputs, outputs, references = {}, {}, {}
    for case, maps in _normalization_inputs().items():
        n, c, h, w = maps.shape
        out = as_array(_call(fn, exercise, name, f"{name}(maps)", case, maps),
                       f"What `{name}` returns", hint="return the N x H x W tensor of maps")
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
    if all(_accepted(outputs[c], inputs[c][0], references[c], mode) for c in outputs):
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
    expect(callable(answer) and not isinstance(answer, type),
           f"The answer should be your function `spearman_per_sample` itself, got "
           f"{describe(answer)}.",
           hint="Pass the function without calling it: "
                "sl.grading.check('ch2_ex3', spearman_per_sample)")
    inputs, outputs, references = {}, {}, {}
    for case, (a, b) in _spearman_inputs().items():
        n = a.shape[0]
        out = as_array(_call(answer, "ch2_ex3", "spearman_per_sample",
                             "spearman_per_sample(a, b)", case, a, b),
                       "What `spearman_per_sample` returns",
                       hint="return one correlation per pair of maps (a tensor of length N)")
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
#: ch2_ex4/ex5: a measured number may differ from the check's recomputation on the same
#: inputs by this much (float32, another percentile convention, another Spearman code).
MEASURE_TOLERANCE = 0.005


def _tensor_context(value, name, shape_text, hint):
    """A context tensor (``grad=``, ``x=``, ``a=`` ...) as a float64 numpy array."""
    expect(value is not None, f"This check recomputes your numbers from your inputs; pass "
           f"{name}= ({shape_text}).", hint=hint)
    arr = as_array(value, f"{name}=", hint=f"pass the tensor itself ({shape_text})")
    expect(np.isfinite(arr).all() and arr.size > 0,
           f"{name}= should be a tensor of finite numbers ({shape_text}).", hint=hint)
    return arr


def _standard_normal(t, name):
    mean, std = float(t.mean()), float(t.std())
    expect(abs(mean) < 0.1 and 0.8 < std < 1.2,
           f"{name}= has mean {mean:.2f} and standard deviation {std:.2f}; the exercise asks "
           "for standard-normal random numbers (mean 0, standard deviation 1).",
           hint=f"{name} = torch.randn(x.shape, generator=gen)")


def _corr(p, q):
    p, q = p.ravel() - p.mean(), q.ravel() - q.mean()
    return float((p * q).sum() / np.sqrt((p * p).sum() * (q * q).sum()))


def _prediction_note(value):
    return (" That is a round number: your prediction, not a measurement?"
            if any(abs(value - r) < 1e-9 for r in (-1.0, -0.5, 0.0, 0.5, 1.0)) else "")


@register("ch2_ex4")
def _check_ex4(answer, grad=None, x=None, u=None, v=None, **_):
    from sanity_lib.similarity import spearman

    call = "sl.grading.check('ch2_ex4', answer_ex4, grad=grad, x=x, u=u, v=v)"
    values = _numbers(answer, _EX4_KEYS, "ch2_ex4")
    grad = _tensor_context(grad, "grad", "the gradient maps, N x C x H x W", call)
    x = _tensor_context(x, "x", "the photos in the network's input space", call)
    u = _tensor_context(u, "u", "a random tensor shaped like x", call)
    v = _tensor_context(v, "v", "a random tensor shaped like x", call)
    expect(grad.ndim == 4, f"grad= has shape {grad.shape}; expected the N x C x H x W "
           "gradient maps.", hint=call)
    expect(x.ndim == 4 and u.shape == x.shape and v.shape == x.shape,
           f"x=, u= and v= should have one shape, N x C x H x W; got {x.shape}, {u.shape} and "
           f"{v.shape}.", hint="u and v are drawn with the shape of x: "
                               "`torch.randn(x.shape, generator=gen)`.")
    expect(not np.array_equal(u, v) and not np.array_equal(u, -v),
           "u= and v= are the same random tensor (or one is minus the other): the exercise "
           "compares two *independent* random vectors.",
           hint="Draw them with two separate calls: u = torch.randn(...), v = torch.randn(...).")
    _standard_normal(u, "u")
    _standard_normal(v, "v")
    expect(abs(_corr(u, v)) < 0.1,
           f"u= and v= are correlated ({_corr(u, v):.2f}): they should be independent.",
           hint="Draw v with its own call of torch.randn, not from u.")
    grad_t, xu, xv = torch.from_numpy(grad), torch.from_numpy(x * u), torch.from_numpy(x * v)
    measured = {
        "negation_abs": spearman(grad_t, -grad_t, "abs").mean().item(),
        "negation_diverging": spearman(grad_t, -grad_t, "diverging").mean().item(),
        "random_abs": spearman(xu, xv, "abs").mean().item(),
        "random_diverging": spearman(xu, xv, "diverging").mean().item(),
    }
    off = [k for k in _EX4_KEYS if abs(values[k] - measured[k]) > MEASURE_TOLERANCE]
    if not off:
        return
    pairs = (("negation_abs", "negation_diverging"), ("random_abs", "random_diverging"))
    for a, b in pairs:
        if a in off and abs(values[a] - measured[b]) <= MEASURE_TOLERANCE \
                and abs(values[b] - measured[a]) <= MEASURE_TOLERANCE:
            raise CheckFailed(
                f"Your {a} and {b} are swapped: measured on your inputs, {a} is "
                f"{measured[a]:.3f} and {b} is {measured[b]:.3f}.\nHint: check which value "
                "you computed with mode='abs' and which with mode='diverging'.")
    if values["random_abs"] > 0.99 and values["random_diverging"] > 0.99:
        raise CheckFailed(
            "Both x * u vs x * v correlations are 1: you compared x * u with itself (or used "
            "the same random vector twice).\nHint: compare x * u with x * v.")
    key = off[0]
    what = "grad and -grad" if key.startswith("negation") else "x * u and x * v"
    mode = key.split("_")[1]
    raise CheckFailed(
        f"{key} = {values[key]:.3f}, but measured on the inputs you passed it is "
        f"{measured[key]:.3f} (the mean spearman_{mode} of {what} over the "
        f"{len(grad) if key.startswith('negation') else len(x)} images)."
        + _prediction_note(values[key])
        + f"\nHint: sl.similarity.spearman(a, b, '{mode}').mean().item() with a, b = {what}; "
          "keep your predictions in the text cell above.")


_EX5_KEYS = ("spearman_abs", "hog")
#: ch2_ex5: the exercise draws 50 pairs of masks; fewer make too noisy a mean.
EX5_MIN_PAIRS = 50


def _uniform_masks(t, name):
    call = "sl.grading.check('ch2_ex5', answer_ex5, a=a, b=b)"
    t = _tensor_context(t, name, f"{EX5_MIN_PAIRS} x 28 x 28 masks", call)
    expect(t.ndim == 3 and t.shape[1:] == (28, 28),
           f"{name}= has shape {t.shape}; expected N x 28 x 28 masks (N = {EX5_MIN_PAIRS}).",
           hint=f"{name} = 2 * torch.rand({EX5_MIN_PAIRS}, 28, 28, generator=gen) - 1")
    expect(len(t) >= EX5_MIN_PAIRS,
           f"{name}= holds {len(t)} masks; the exercise measures the mean over "
           f"{EX5_MIN_PAIRS} pairs.", hint=f"Draw {EX5_MIN_PAIRS} masks in each batch.")
    lo, hi, mean, var = float(t.min()), float(t.max()), float(t.mean()), float(t.var())
    expect(lo >= -1 - 1e-6 and hi <= 1 + 1e-6 and lo < -0.9 and hi > 0.9
           and abs(mean) < 0.05 and abs(var - 1 / 3) < 0.03,
           f"{name}= is not Uniform[-1, 1]: values in [{lo:.2f}, {hi:.2f}], mean {mean:.2f}, "
           f"variance {var:.2f} (Uniform[-1, 1] has mean 0 and variance 1/3).",
           hint="2 * torch.rand(...) - 1, not torch.randn and not torch.rand alone.")
    return t


@register("ch2_ex5")
def _check_ex5(answer, a=None, b=None, **_):
    from sanity_lib.similarity import hog_correlation, spearman

    values = _numbers(answer, _EX5_KEYS, "ch2_ex5")
    a, b = _uniform_masks(a, "a"), _uniform_masks(b, "b")
    expect(a.shape == b.shape, f"a= and b= have shapes {a.shape} and {b.shape}; pair a[i] "
           "with b[i], so draw as many of each.", hint="Two batches of one shape.")
    for key in _EX5_KEYS:
        expect(values[key] < 0.9,
               f"answer[{key!r}] = {values[key]:.3f} is close to 1: you compared each mask "
               "with itself.", hint="Compare a[i] with b[i].")
    expect(not np.array_equal(a, b) and abs(_corr(a, b)) < 0.05,
           "a= and b= are the same masks (or strongly related): the noise floor compares "
           "*independent* masks.", hint="Draw a and b with two separate calls of torch.rand.")
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    measured = {"spearman_abs": spearman(ta, tb, "abs").mean().item(),
                "hog": hog_correlation(ta, tb).mean().item()}
    for key in _EX5_KEYS:
        if abs(values[key] - measured[key]) <= MEASURE_TOLERANCE:
            continue
        if key == "hog" and abs(values[key]) < 0.01 < measured[key]:
            raise CheckFailed(
                f"Your HOG noise floor {values[key]:.3f} is too low: measured on your masks it "
                f"is {measured[key]:.3f}, not 0. HOG features are non-negative and share the "
                "block layout, so even unrelated maps correlate a little.\nHint: use "
                "sl.similarity.hog_correlation(a, b) with its defaults (abs maps, Pearson, "
                "4 x 4 cells for 28 x 28 maps) and average over the pairs.")
        raise CheckFailed(
            f"Your {key} noise floor is {values[key]:.3f}, but measured on the masks you "
            f"passed (a= and b=, {len(a)} pairs) it is {measured[key]:.3f}."
            + _prediction_note(values[key])
            + "\nHint: compare a with b using the library's defaults and average over the "
              "pairs; the noise_floor printed below the exercise is another draw of masks.")
