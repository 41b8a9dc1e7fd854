"""Checks of the exercise notebook of chapter 7, "Beyond the paper".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch7_ex1``  a function ``histogram_entropy(maps, n_bins=100)``: one entropy per
             map (natural log, nats) of the histogram of its values, ``n_bins``
             equal-width bins from that map's minimum to its maximum
``ch7_ex2``  a function ``emprt_score(maps, randomized_maps)``: efficient MPRT's
             score per map, ``(H(randomized) - H(original)) / H(original)``
``ch7_ex3``  a dict ``{"top_down": float, "bottom_up": float, "changes_sooner":
             "top_down" | "bottom_up"}``: Guided Backprop's mean ``spearman_abs``
             after *one* layer group is randomized in each order, and the order
             that changes its map more; needs ``top_down=`` and ``bottom_up=`` (the
             student's two results)
``ch7_ex4``  a dict ``{"debugging": method, "avoid": [methods]}``: a method fit for
             model debugging, and the methods to avoid for it; with an input-times
             method (Gradient ⊙ Input, IG, DeepLIFT, LRP-ε) as the pick, optionally
             ``"maps": "signed"`` (``"abs"`` is refused)
===========  ===================================================================

The entropy is in nats (natural logarithm, ``scipy.stats.entropy``'s default). The eMPRT
score is a *ratio* of two entropies, so it is the same in bits or nats: ex2 accepts either,
ex1 asks for nats and says so when it gets bits. ex1 and ex2 ask the student to write what
``sanity_lib.studies.mprt`` computes, so calling it inside the function fails them
(``np.histogram`` and ``scipy.stats.entropy`` are fine). ex3 validates the two results first:
cascading tests of the MNIST CNN with truncated-normal re-initialization, in the two orders, on
the same model and digits, with Guided Backprop, the gradient and ``spearman_abs``.

Examples
--------
>>> import numpy as np, torch, sanity_lib as sl
>>> from scipy import stats
>>> def histogram_entropy(maps, n_bins=100):
...     rows = maps.reshape(len(maps), -1).double().numpy()
...     return torch.tensor([stats.entropy(np.histogram(r, bins=n_bins)[0]) for r in rows])
>>> sl.grading.check("ch7_ex1", histogram_entropy)
'ch7_ex1: correct. Well done!'
>>> sl.grading.check("ch7_ex1", sl.studies.mprt.histogram_entropy)
Traceback (most recent call last):
...
sanity_lib.course.grading.CheckFailed: Your answer calls sanity_lib.studies.mprt.histogram_entropy: the exercise asks you to write the histogram entropy yourself.
Hint: Use np.histogram and the entropy formula (or scipy.stats.entropy); sl.studies.mprt is what the check compares with.
"""
import functools
import inspect
import math

import numpy as np
import torch
from scipy import stats

from . import (CheckFailed, as_array, call_student, check_result, check_trained_mnist, describe,
               expect, method_name, register)

__all__ = ["ACCEPTED_FOR_DEBUGGING", "MUST_AVOID", "MAY_AVOID", "ORDER_MARGIN", "VALUE_ATOL"]

# float32 vs float64 histograms may put a value on a bin edge differently
_RTOL = 1e-4
#: ex3: the two orders' values must differ by more than this for one to "change sooner".
ORDER_MARGIN = 0.05
#: ex3: tolerance on the measured means read off the results.
VALUE_ATOL = 0.02

#: ex4: methods that pass both randomization tests in this book (signed and abs maps).
ACCEPTED_FOR_DEBUGGING = ("gradient", "smoothgrad", "gradcam")
#: ex4: methods that clearly fail: they must be in "avoid".
MUST_AVOID = ("guided_backprop", "guided_gradcam")
#: ex4: methods whose abs maps fail but signed maps pass: "avoid" may name them or not, and
#: each is a fit pick for debugging through its signed maps (the chapter's recommendation).
MAY_AVOID = ("gradient_x_input", "integrated_gradients", "integrated_gradients_smoothgrad",
             "deeplift", "lrp_epsilon")

#: ex3: the settings of the two results.
EX3_SETTINGS = {"init": "truncated_normal", "model": "MnistCNN"}

_MPRT_LIBRARY = ("sanity_lib.studies.mprt",)
_MPRT_HINT = ("Use np.histogram and the entropy formula (or scipy.stats.entropy); "
              "sl.studies.mprt is what the check compares with.")

_NO_EVIDENCE = ("this book has no evidence that it passes the randomization tests (the "
                "paper defines it but shows no results).")
_WHY_NOT = {
    "guided_backprop": (
        "Guided Backprop barely changes when the top layers are randomized (top-down, its "
        "maps stay highly rank-correlated with the trained ones after the logits and fc1), "
        "and its maps for two different classes are nearly the same: it reconstructs the "
        "input instead of explaining the decision."),
    "guided_gradcam": (
        "Guided GradCAM multiplies GradCAM by Guided Backprop, and inherits most of its "
        "insensitivity to the top layers."),
    "gradient_x_input": (
        "Gradient ⊙ Input's absolute maps hardly change under randomization (the input "
        "dominates them: a rank correlation close to 1 on MNIST); only its signed maps change."),
    "integrated_gradients": (
        "Integrated Gradients (zero baseline) is input times an averaged gradient: its "
        "absolute maps hardly change under randomization; only its signed maps change."),
    "integrated_gradients_smoothgrad": (
        "IG-SmoothGrad inherits Integrated Gradients' input-dominated absolute maps."),
    "deeplift": (
        "DeepLIFT with a zero baseline behaves like Gradient ⊙ Input on these networks: "
        "absolute maps that stay the same under randomization."),
    "lrp_epsilon": (
        "LRP-ε on a ReLU network is exactly Gradient ⊙ Input (the chapter measures it): "
        "input-dominated absolute maps."),
}


# ----------------------------------------------------------------------------- helpers

def _entropy(row, bins=100, base=None):
    counts, _ = np.histogram(row, bins=bins)
    return float(stats.entropy(counts, base=base))


def _ref_entropy(maps, bins=100, base=None):
    return np.array([_entropy(m.ravel(), bins, base) for m in maps])




@functools.lru_cache(maxsize=1)
def _entropy_inputs():
    """Named batches of maps on which each typical mistake shows up."""
    rng = np.random.default_rng(7)
    heavy = rng.standard_normal((4, 1, 28, 28)) ** 3        # gradient-like, heavy tails
    shifted = rng.standard_normal((3, 1, 20, 20)) * 0.1 + 5.0  # far from [0, 1]
    rgb = rng.standard_normal((2, 3, 16, 16))
    mixed = rng.standard_normal((3, 1, 12, 12))
    mixed[0] = 0.25  # a constant map: entropy 0
    mixed[1] *= 100.0  # another map on a very different scale
    return {
        "heavy-tailed maps (4 x 1 x 28 x 28)": heavy,
        "maps far from [0, 1] (values around 5)": shifted,
        "3-channel maps (2 x 3 x 16 x 16)": rgb,
        "a batch with a constant map and maps of very different scales": mixed,
    }


def _global_range_entropy(maps, bins=100):
    lo, hi = maps.min(), maps.max()
    return np.array([float(stats.entropy(np.histogram(m.ravel(), bins=bins,
                                                      range=(lo, hi))[0])) for m in maps])


def _fixed_range_entropy(maps, bins=100):
    return np.array([float(stats.entropy(np.histogram(m.ravel(), bins=bins,
                                                      range=(0.0, 1.0))[0])) for m in maps])


def _values_as_probabilities(maps):
    return np.array([float(stats.entropy(np.abs(m.ravel()))) for m in maps])


_ENTROPY_MISTAKES = [
    (lambda m: _ref_entropy(m, base=2),
     "Your entropies are in bits (log base 2): each is the expected one divided by ln 2. "
     "This exercise uses nats (the natural logarithm), scipy.stats.entropy's default.",
     "Use `np.log` (not `np.log2`), or `scipy.stats.entropy(counts)` without base=2. (The "
     "eMPRT score of the next exercise is a ratio of entropies, so it would not notice the "
     "base; an entropy reported on its own must say which one it uses.)"),
    (lambda m: _ref_entropy(m, bins=10),
     "Your entropies use 10 bins, numpy.histogram's default, not the 100 the paper uses.",
     "Pass `bins=n_bins` to `np.histogram`."),
    (lambda m: _ref_entropy(np.abs(m)),
     "You took absolute values before the histogram. Efficient MPRT's entropy is of the map "
     "as given, signed values included.",
     "Histogram the raw values: `np.histogram(row, bins=n_bins)`."),
    (_global_range_entropy,
     "Your bins span the whole batch's minimum to maximum. Each map gets its own bins, from "
     "its own minimum to its own maximum (np.histogram's default range).",
     "Call `np.histogram(row, bins=n_bins)` once per map, without a `range=`."),
    (_fixed_range_entropy,
     "Your bins span [0, 1], so values outside that range are dropped. Each map's bins span "
     "its own minimum to maximum.",
     "Leave out `range=` in `np.histogram`."),
    (_values_as_probabilities,
     "You treated the map's values as probabilities (entropy of the map itself). The "
     "probabilities are the *bin counts* of the map's histogram, divided by their sum.",
     "`counts, _ = np.histogram(row, bins=n_bins)`, then the entropy of `counts`."),
]

_HINT_ENTROPY = ("Per map: flatten it, `counts, _ = np.histogram(row, bins=n_bins)`, "
                 "`p = counts[counts > 0] / counts.sum()`, `H = -(p * np.log(p)).sum()`.")


def _call_entropy(fn, maps, label="", **kwargs):
    t = torch.from_numpy(maps.copy()).float()
    out = call_student(fn, t, name="histogram_entropy", usage="histogram_entropy(maps, n_bins=100)",
                       on=f"on {label}" if label else "", forbid=_MPRT_LIBRARY,
                       task="the histogram entropy", forbid_hint=_MPRT_HINT, **kwargs)
    return as_array(out, "Your function's result", hint="return one entropy per map")


def _judge_entropy(fn, label, maps, expected_bins=100, **kwargs):
    got = _call_entropy(fn, maps, label, **kwargs)
    ref = _ref_entropy(maps.astype(np.float32).astype(np.float64), bins=expected_bins)
    n = maps.shape[0]
    expect(got.size != 1 or n == 1,
           f"On {label} your function returned a single number for {n} maps.",
           hint="Return one entropy per map (a tensor of length N): loop over the maps, or "
                "histogram each row of `maps.reshape(len(maps), -1)`.")
    expect(got.shape == (n,),
           f"On {label} your function returned shape {got.shape}; expected ({n},): one "
           "entropy per map.", hint="Return a 1-D tensor with one value per map.")
    expect(np.isfinite(got).all(),
           f"On {label} your function returned NaN or infinite values: {np.round(got, 4)}.",
           hint="A constant map puts everything in one bin: its entropy is 0. Leave empty "
                "bins out of the sum (0 * log 0 counts as 0), e.g. `p = p[p > 0]`.")
    if np.allclose(got, ref, rtol=_RTOL, atol=1e-9):
        return
    if expected_bins == 100:
        for mistake, message, hint in _ENTROPY_MISTAKES:
            wrong = mistake(maps.astype(np.float32).astype(np.float64))
            if not np.allclose(wrong, ref, rtol=_RTOL) and np.allclose(got, wrong, rtol=_RTOL,
                                                                       atol=1e-9):
                raise CheckFailed(f"On {label}: {message}\nHint: {hint}")
        for bins in (20, 50, 64, 128, 200, 256):
            if np.allclose(got, _ref_entropy(maps.astype(np.float32).astype(np.float64),
                                             bins=bins), rtol=_RTOL):
                raise CheckFailed(f"On {label} your entropies use {bins} bins instead of "
                                  "the default 100.\nHint: use the `n_bins` argument, "
                                  "default 100.")
    raise CheckFailed(
        f"On {label} your entropies {np.round(got, 4)} differ from the expected "
        f"{np.round(ref, 4)} (n_bins={expected_bins}).\nHint: {_HINT_ENTROPY}")


# ----------------------------------------------------------------------------- ex1

@register("ch7_ex1")
def _check_ex1(answer, **_):
    expect(callable(answer), f"The answer should be your function `histogram_entropy` itself, got "
           f"{describe(answer)}.",
           hint='Pass the function itself: `sl.grading.check("ch7_ex1", histogram_entropy)`.')
    try:
        params = inspect.signature(answer).parameters
    except (TypeError, ValueError):
        params = {}
    expect("n_bins" in params or not params,
           "Your function has no `n_bins` argument.",
           hint="Define it as `def histogram_entropy(maps, n_bins=100):`.")
    for label, maps in _entropy_inputs().items():
        _judge_entropy(answer, label, maps)
    label, maps = next(iter(_entropy_inputs().items()))
    _judge_entropy(answer, f"{label} with n_bins=20", maps, expected_bins=20, n_bins=20)


# ----------------------------------------------------------------------------- ex2

@functools.lru_cache(maxsize=1)
def _score_inputs():
    """(label, maps, randomized maps): some pairs get noisier, some get simpler."""
    rng = np.random.default_rng(11)
    peaked = rng.standard_normal((3, 1, 28, 28)) ** 5
    gaussian = rng.standard_normal((3, 1, 28, 28))
    mixed_a = np.concatenate([peaked[:2], gaussian[:1]])
    mixed_b = np.concatenate([gaussian[1:3], peaked[2:]])
    return [
        ("peaked maps that become Gaussian noise (entropy rises)", peaked, gaussian),
        ("a batch where the entropy rises for some maps and falls for others",
         mixed_a, mixed_b),
        ("Gaussian maps that become peaked (entropy falls)", gaussian, peaked),
    ]


def _score_parts(a, b):
    h, hr = _ref_entropy(a), _ref_entropy(b)
    return h, hr


_SCORE_MISTAKES = [
    (lambda h, hr: (h - hr) / h,
     "Your scores have the wrong sign: a map that gets noisier when the model is randomized "
     "should score *positive* (higher is better).",
     "score = (H(randomized) - H(original)) / H(original)."),
    (lambda h, hr: (hr - h) / hr,
     "You divided by the entropy of the randomized map; eMPRT's rise is relative to the "
     "*original* map's entropy.", "score = (H(randomized) - H(original)) / H(original)."),
    (lambda h, hr: hr - h,
     "You returned the difference of the entropies without dividing by the original "
     "entropy: eMPRT's score is a relative rise.",
     "Divide by H(original)."),
    (lambda h, hr: hr / h,
     "You returned the ratio H(randomized) / H(original), which is the score plus 1: no "
     "change should score 0.", "Subtract the original entropy before dividing."),
    (lambda h, hr: np.abs(hr - h) / h,
     "You took the absolute value of the change: a map that gets *simpler* under "
     "randomization must score negative.", "Leave out abs()."),
]


@register("ch7_ex2")
def _check_ex2(answer, **_):
    expect(callable(answer), f"The answer should be your function `emprt_score` itself, got "
           f"{describe(answer)}.",
           hint='Pass the function itself: `sl.grading.check("ch7_ex2", emprt_score)`.')
    for label, a, b in _score_inputs():
        ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
        out = call_student(answer, ta, tb, name="emprt_score",
                           usage="emprt_score(maps, randomized_maps)", on=f"on {label}",
                           forbid=_MPRT_LIBRARY, task="the eMPRT score",
                           forbid_hint="Compute it from your histogram_entropy; "
                                       "sl.studies.mprt is what the check compares with.")
        got = as_array(out, "Your function's result", hint="return one score per map")
        h, hr = _score_parts(ta.double().numpy(), tb.double().numpy())
        ref = (hr - h) / h
        expect(got.shape == ref.shape,
               f"On {label} your function returned shape {got.shape}; expected "
               f"{ref.shape}: one score per map.", hint="Return one score per map.")
        if np.allclose(got, ref, rtol=1e-5, atol=1e-9):
            continue
        for mistake, message, hint in _SCORE_MISTAKES:
            wrong = mistake(h, hr)
            if not np.allclose(wrong, ref, rtol=1e-5) and np.allclose(got, wrong, rtol=1e-4,
                                                                      atol=1e-9):
                raise CheckFailed(f"On {label}: {message}\nHint: {hint}")
        raise CheckFailed(
            f"On {label} your scores {np.round(got, 4)} differ from the expected "
            f"{np.round(ref, 4)}.\nHint: compute H = histogram_entropy (100 bins) of both "
            "batches, then (H_randomized - H_original) / H_original, one value per map.")


# ----------------------------------------------------------------------------- ex3

def _check_sweep(result, order, name):
    from sanity_lib.checks import SanityCheckResult

    expect(isinstance(result, SanityCheckResult),
           f"This check needs your two results, passed as top_down=... and bottom_up=...; "
           f"{name}= is {describe(result)}.",
           hint="`sl.grading.check(\"ch7_ex3\", answer, top_down=td, bottom_up=bu)`.")
    expect(result.settings.get("order") == order,
           f"The result passed as {name}= was run with order={result.settings.get('order')!r}"
           f", not {order!r}.", hint="Pass each result under its own name.")
    check_result(result, test="model_randomization", mode="cascading", name=name,
                 what=f"sl.model_randomization_test(cnn, x, ['gradient', 'guided_backprop'], "
                      f"order={order!r}, **sweep_options)",
                 methods=("guided_backprop", "gradient"),
                 metrics=("spearman_abs", "spearman_diverging"), settings=EX3_SETTINGS)
    check_trained_mnist(result, what="sl.model_randomization_test(cnn, x, ...)", kind="cnn",
                        name=name)


def _step_mean(result, step, method="guided_backprop", metric="spearman_abs"):
    t = result.table
    rows = t[(t.method == method) & (t.metric == metric) & (t.step == step)]
    return float(rows["value"].mean()) if len(rows) else math.nan


def _number(answer, key):
    value = answer.get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"answer[{key!r}] should be a number, got {value!r}.\nHint: read "
                          "the mean over images from `result.summary()`.") from None
    return value


@register("ch7_ex3")
def _check_ex3(answer, top_down=None, bottom_up=None, **_):
    _check_sweep(top_down, "top_down", "top_down")
    _check_sweep(bottom_up, "bottom_up", "bottom_up")
    for key, what in (("model_fingerprint", "models"), ("x_fingerprint", "digits")):
        expect(top_down.settings.get(key) == bottom_up.settings.get(key),
               f"Your two results were computed on different {what}: the two orders can only "
               "be compared on the same trained CNN and the same digits.",
               hint="Run both tests with the same `cnn` and `x`.")
    expect(isinstance(answer, dict) and {"top_down", "bottom_up", "changes_sooner"}
           <= set(answer),
           "The answer should be a dict with keys 'top_down', 'bottom_up' and "
           "'changes_sooner'.",
           hint='e.g. {"top_down": 0.9, "bottom_up": 0.5, "changes_sooner": "bottom_up"}')
    td, bu = _step_mean(top_down, 1), _step_mean(bottom_up, 1)
    got_td, got_bu = _number(answer, "top_down"), _number(answer, "bottom_up")
    first_td, first_bu = top_down.layers[1], bottom_up.layers[1]
    for got, want, result, order, layer in ((got_td, td, top_down, "top_down", first_td),
                                            (got_bu, bu, bottom_up, "bottom_up", first_bu)):
        if abs(got - want) <= VALUE_ATOL:
            continue
        other = bu if order == "top_down" else td
        if abs(got - other) <= VALUE_ATOL and abs(other - want) > VALUE_ATOL:
            raise CheckFailed(f"Your {order!r} value {got:.3f} is the other order's. With "
                              f"{order}, the first group randomized is {layer!r}.\nHint: "
                              "read each number from its own result.")
        last = _step_mean(result, result.n_steps)
        if abs(got - last) <= VALUE_ATOL and abs(last - want) > VALUE_ATOL:
            raise CheckFailed(f"Your {order!r} value {got:.3f} is read at the last step, where "
                              "every layer is random (both orders end at the same model). "
                              f"Read step 1, after {layer!r} alone is randomized.\nHint: "
                              "`summary[summary.step == 1]`.")
        grad = _step_mean(result, 1, method="gradient")
        if not math.isnan(grad) and abs(got - grad) <= VALUE_ATOL and abs(grad - want) > \
                VALUE_ATOL:
            raise CheckFailed(f"Your {order!r} value {got:.3f} is the Gradient's, not Guided "
                              "Backprop's.\nHint: filter the summary on "
                              "method == 'guided_backprop'.")
        div = _step_mean(result, 1, metric="spearman_diverging")
        if not math.isnan(div) and abs(got - div) <= VALUE_ATOL and abs(div - want) > \
                VALUE_ATOL:
            raise CheckFailed(f"Your {order!r} value {got:.3f} is the signed (diverging) rank "
                              "correlation; this exercise reads spearman_abs.\nHint: filter "
                              "on metric == 'spearman_abs'.")
        raise CheckFailed(f"Your {order!r} value {got:.3f} is not Guided Backprop's mean "
                          f"spearman_abs after {layer!r} is randomized in your result "
                          f"({want:.3f}).\nHint: average over the images at step 1.")
    sooner = answer["changes_sooner"]
    expect(sooner in ("top_down", "bottom_up"),
           f"answer['changes_sooner'] should be 'top_down' or 'bottom_up', got {sooner!r}.",
           hint="The order whose first step leaves the lower similarity.")
    if abs(td - bu) > ORDER_MARGIN:
        right = "top_down" if td < bu else "bottom_up"
        expect(sooner == right,
               f"In your results Guided Backprop's map changes more after one {right} step "
               f"(similarity {min(td, bu):.2f}) than after one "
               f"{'bottom_up' if right == 'top_down' else 'top_down'} step "
               f"({max(td, bu):.2f}).",
               hint="Lower similarity means the map changed more. Compare with your "
                    "prediction: which layers does Guided Backprop listen to?")


# ----------------------------------------------------------------------------- ex4

@register("ch7_ex4")
def _check_ex4(answer, **_):
    expect(isinstance(answer, dict) and {"debugging", "avoid"} <= set(answer),
           "The answer should be a dict with keys 'debugging' (one method) and 'avoid' "
           "(a list of methods).",
           hint='e.g. {"debugging": "...", "avoid": ["...", "..."]}')
    pick = method_name(answer["debugging"])
    maps = answer.get("maps", "signed" if pick in MAY_AVOID else None)
    if pick in MAY_AVOID:
        expect(maps in ("signed", "diverging"),
               f"{pick!r} can be used for model debugging only through its signed maps: "
               f"{_WHY_NOT[pick]} You wrote maps={maps!r}.",
               hint="Write 'maps': 'signed' (or leave the key out), or pick a method whose "
                    "absolute maps pass too (the gradient, SmoothGrad, GradCAM).")
    elif pick not in ACCEPTED_FOR_DEBUGGING:
        raise CheckFailed(
            f"{pick!r} is not a good pick for model debugging: "
            f"{_WHY_NOT.get(pick, _NO_EVIDENCE)}\nHint: pick "
            "a method whose maps change (abs and signed) when the model's parameters are "
            "randomized and when it is trained on random labels.")
    avoid = answer["avoid"]
    if isinstance(avoid, str):
        avoid = [avoid]
    try:
        avoid = {method_name(m) for m in avoid}
    except TypeError:
        raise CheckFailed("answer['avoid'] should be a list of method names.\nHint: e.g. "
                          '["guided_backprop"].') from None
    expect(pick not in avoid, f"You pick {pick!r} for debugging and also list it to avoid.",
           hint="A method is either fit or not.")
    missing = [m for m in MUST_AVOID if m not in avoid]
    expect(not missing,
           "Your list of methods to avoid leaves out " + ", ".join(missing) + ". "
           + " ".join(_WHY_NOT[m] for m in missing),
           hint="Look at the top-down cascading curves and the class-sensitivity table.")
    wrong = sorted(avoid & set(ACCEPTED_FOR_DEBUGGING))
    expect(not wrong,
           "You would avoid " + ", ".join(wrong) + ", but " + ("it passes" if len(wrong) == 1
                                                               else "they pass")
           + " both randomization tests in this book: the maps change when the parameters "
           "are randomized and when the labels are.",
           hint="Avoid only methods whose maps stay similar when the model changes.")
