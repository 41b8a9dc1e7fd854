"""Checks of the exercise notebook of chapter 5, "Why methods fail".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch5_ex1``  a function ``integrated_gradients(model, x, baseline, n_steps)``: IG of
             the model's single output by a Riemann sum along the straight path from
             ``baseline`` to ``x``
``ch5_ex2``  a dict ``{"measured": 5 values, "predicted": 5 values}``: per photo, the
             abs rank correlation of ``x * u`` and ``x * v`` for the grey photos as
             EfficientNet-Lite0 sees them (112 px), and its prediction
             ``var(log|x|) / (var(log|x|) + var(log|u|))``
``ch5_ex3``  a function ``sobel_magnitude(gray)``: N x 1 x H x W grey images ->
             N x H x W, computed with a hand-built convolution holding the Sobel
             kernels and equal to ``skimage.filters.sobel``
``ch5_ex4``  a function ``edge_excess(maps, gray)``: N x H x W maps and N x 1 x H x W
             grey images -> ``{"same", "mismatched", "excess"}``, N values each: the
             Spearman correlation of the student's Sobel magnitude of ``|map|`` with
             that of its own image, with that of image ``(i + 1) mod N`` (the
             mismatched-image null; ``i - 1`` or the mean over every other image
             pass too), and their paired difference; ``ValueError`` for one image
===========  ===================================================================

Each check compares with an independent computation (a quadrature of high order, fresh random
draws, scikit-image, scipy's Sobel and ranks in float64) and, when the answer is wrong,
recomputes the typical mistakes to say which one was made. ex1, ex3 and ex4 ask the student to
*write* a method, so the student's function is called with the libraries that already compute
it (Captum and ``sanity_lib.saliency`` for IG; scikit-image's filters, ``scipy.ndimage`` and
``sanity_lib.studies.failures``, whose ``edge_agreement`` is ex4's measure, for Sobel and ex4)
watched: calling them fails the check (:class:`~sanity_lib.course.grading.forbid_library`).
ex1 also runs the function with few steps, where the quadrature rule shows, so that ignoring
``n_steps`` fails; ex4 runs it on one image, where there is no other image for the null.

Examples
--------
>>> import torch, sanity_lib as sl
>>> from torch import nn
>>> def sobel_magnitude(gray):
...     k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
...     conv = nn.Conv2d(1, 2, 3, padding=1, bias=False, padding_mode="replicate")
...     with torch.no_grad():
...         conv.weight.copy_(torch.stack([k, k.T])[:, None])
...         g = conv(gray)
...     return torch.sqrt((g ** 2).sum(dim=1) / 2) / 4
>>> sl.grading.check("ch5_ex3", sobel_magnitude)
'ch5_ex3: correct. Well done!'
>>> from skimage.filters import sobel
>>> sl.grading.check("ch5_ex3", lambda gray: torch.stack([torch.from_numpy(sobel(g))
...                                                        for g in gray[:, 0].numpy()]))
Traceback (most recent call last):
...
sanity_lib.course.grading.CheckFailed: Your answer calls skimage.filters.edges.sobel: the exercise asks you to write the Sobel magnitude as a convolution yourself.
Hint: Build the Conv2d with the two Sobel kernels; skimage.filters.sobel is only the reference the check compares with.
>>> def edge_excess(maps, gray):
...     if len(maps) < 2:
...         raise ValueError("the mismatched-image null needs two images")
...     edges = sobel_magnitude(maps.abs()[:, None]), sobel_magnitude(gray)
...     same = sl.similarity.spearman(*edges, mode=None)
...     other = sl.similarity.spearman(edges[0], edges[1].roll(-1, dims=0), mode=None)
...     return {"same": same, "mismatched": other, "excess": same - other}
>>> sl.grading.check("ch5_ex4", edge_excess)
'ch5_ex4: correct. Well done!'
"""
import copy
import functools
import math

import numpy as np
import torch
from torch import nn

from . import (CheckFailed, as_array, call_student, describe, expect, forbid_library,
               register)

__all__ = []  # the checks are reached through sanity_lib.course.grading.check

#: Var(log|Z|) for a standard normal Z.
LOG_ABS_NORMAL_VAR = math.pi ** 2 / 8
EX2_SIZE = 112
#: ex2: the measured correlations must be within this of the check's own measurement (the
#: spread of a mean over 5 random pairs is about 0.003).
EX2_MEASURED_ATOL = 0.015
#: ex2: the predictions must be within this of the formula (sampled var(log|u|) is fine).
EX2_PREDICTED_ATOL = 0.02

_IG_LIBRARIES = ("captum", "sanity_lib.saliency")
_SOBEL_LIBRARIES = ("skimage.filters", "scipy.ndimage", "sanity_lib.studies.failures")
_IG_USAGE = "integrated_gradients(model, x, baseline, n_steps)"
_SOBEL_USAGE = "sobel_magnitude(gray)"

# ----------------------------------------------------------------------------- ex1: IG

def _grad(model, points):
    points = points.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model(points)[:, 0].sum(), points)
    return g


def _path_mean_gradient(model, start, x, n_steps):
    """Mean gradient at start + (k / n) (x - start), k = 1..n, all points in one batch."""
    alphas = torch.arange(1, n_steps + 1, dtype=x.dtype) / n_steps
    alphas = alphas.view((-1,) + (1,) * x.dim())
    points = (start + alphas * (x - start)).reshape((-1,) + tuple(x.shape[1:]))
    return _grad(model, points).view((n_steps,) + tuple(x.shape)).mean(dim=0)


def _ig_mistakes(model, x, baseline, n_steps):
    """(prediction, message) for the usual wrong IGs."""
    mean_grad = _path_mean_gradient(model, baseline, x, n_steps)
    from_zero = _path_mean_gradient(model, torch.zeros_like(x), x, n_steps)
    hint_formula = ("IG(x) = (x - x') * mean over k = 1..n of grad f(x' + (k / n) (x - x')), "
                    "with x' the baseline.")
    return [
        (mean_grad, "You returned the average gradient along the path and forgot to multiply "
                    "by (x - x').", hint_formula),
        (x * mean_grad, "You multiplied by x instead of (x - x'): with a baseline that is not 0 "
                        "the factor is the difference between the input and the baseline.",
         hint_formula),
        ((baseline - x) * mean_grad, "Your map has the wrong sign: the factor is (x - x'), "
                                     "input minus baseline.", hint_formula),
        (n_steps * (x - baseline) * mean_grad,
         "You summed the gradients over the steps instead of averaging them (your map is "
         "n_steps times too large).", "Divide the sum by n_steps (or use .mean())."),
        ((x - baseline) * _grad(model, x),
         "You used the gradient at x only. That is gradient x (x - x'), not Integrated "
         "Gradients: the gradient must be averaged along the path from the baseline to x.",
         hint_formula),
        ((x - baseline) * from_zero,
         "Your path starts at 0, not at the baseline: the points are alpha * x instead of "
         "x' + alpha (x - x').", hint_formula),
        ((x - baseline) * _grad(model, baseline),
         "You used the gradient at the baseline only; average it along the whole path.",
         hint_formula),
    ]


@functools.lru_cache(maxsize=1)
def _ex1_cases():
    """(name, model, x, baseline) on which IG is checked: two linear models, one smooth MLP."""
    from sanity_lib import data, models

    digits = data.load_mnist("test")[0][::400][:5]            # five digits, several classes
    gen = torch.Generator().manual_seed(55)
    w = torch.randn(1, 28, 28, generator=gen)
    linear = models.linear_model(w)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Softplus(),
                            nn.Linear(32, 1)).eval()
    grey = torch.full_like(digits, 0.3)
    noisy = (digits + 0.2 * torch.randn(digits.shape, generator=gen)).clamp(0, 1)
    return [
        ("a linear model with the zero baseline", linear, digits, torch.zeros_like(digits)),
        ("a linear model with a grey baseline (0.3)", linear, digits, grey),
        ("a small softplus network with a noisy baseline", mlp, digits, noisy),
    ]


@functools.lru_cache(maxsize=1)
def _ex1_curved():
    """A strongly curved softplus network, on which 2 or 3 steps are far from the integral."""
    from sanity_lib import data

    digits = data.load_mnist("test")[0][::400][:5]
    with torch.random.fork_rng():
        torch.manual_seed(15)
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Softplus(),
                            nn.Linear(16, 1)).eval()
        with torch.no_grad():
            net[1].weight.mul_(12.0)
            net[1].bias.fill_(-3.0)
    return net, digits, torch.zeros_like(digits)


def _riemann_rules(model, x, baseline, n_steps):
    """IG by the usual quadrature rules with ``n_steps`` gradients: right, left, midpoint,
    trapezoid (all converge to the integral; the exercise's sum is the right one)."""
    def at(alphas):
        total = torch.zeros_like(x)
        for a in alphas:
            total += _grad(model, baseline + a * (x - baseline))
        return (x - baseline) * total / len(alphas)

    n = n_steps
    ends = [_grad(model, baseline), _grad(model, x)]
    inner = sum((_grad(model, baseline + (k / n) * (x - baseline)) for k in range(1, n)),
                torch.zeros_like(x))
    trapezoid = (x - baseline) * (inner + (ends[0] + ends[1]) / 2) / n
    return {"right": at([k / n for k in range(1, n + 1)]),
            "left": at([k / n for k in range(n)]),
            "midpoint": at([(k + 0.5) / n for k in range(n)]),
            "trapezoid": trapezoid}


def _reference_ig(model, x, baseline):
    from sanity_lib import saliency

    # Gauss-Legendre with 64 nodes: exact to rounding for these smooth 1-D integrals.
    return saliency.explain(model, x, "integrated_gradients", target=0, baseline=baseline,
                            n_steps=64, integration="gausslegendre", batch_size=4096)


def _ig_close(out, ref):
    scale = ref.abs().amax(dim=tuple(range(1, ref.dim())), keepdim=True)
    return out.shape == ref.shape and bool(((out - ref).abs() <= 0.02 * scale + 1e-6).all())


def _call_ig(answer, name, model, x, baseline, n_steps):
    """The student's IG on one case, as a float64 tensor of the input's shape."""
    out = call_student(answer, copy.deepcopy(model), x.clone(), baseline.clone(), n_steps,
                       name="integrated_gradients", usage=_IG_USAGE, on=f"on {name}",
                       forbid=_IG_LIBRARIES, task="Integrated Gradients",
                       forbid_hint="Average the gradients along the path with "
                                   "torch.autograd.grad yourself; Captum and "
                                   "sl.saliency.explain are only the check's reference.")
    expect(isinstance(out, (torch.Tensor, np.ndarray)),
           f"On {name} your function returned {type(out).__name__}; it should return the "
           "attribution map, a tensor of the shape of x.",
           hint="End with `return (x - baseline) * mean_gradient`.")
    out = torch.as_tensor(as_array(out, "What `integrated_gradients` returns"),
                          dtype=torch.float64)
    expect(tuple(out.shape) == tuple(x.shape),
           f"On {name} your function returned shape {tuple(out.shape)}; IG has the shape "
           f"of the input, {tuple(x.shape)}.",
           hint="Multiply (x - baseline), shape N x 1 x 28 x 28, by the averaged gradient "
                "of the same shape.")
    expect(bool(torch.isfinite(out).all()), f"On {name} your map contains NaN or inf.")
    return out


def _check_n_steps(answer):
    """With 2 and 3 steps the quadrature rule shows: the answer must be one of the usual
    rules with that many gradients, not the converged integral (``n_steps`` ignored)."""
    model, x, baseline = _ex1_curved()
    name = "a strongly curved softplus network"
    ref = _reference_ig(model, x, baseline).double()
    for n in (2, 3):
        out = _call_ig(answer, f"{name} with n_steps={n}", model, x, baseline, n)
        rules = {k: v.double() for k, v in _riemann_rules(model, x, baseline, n).items()}
        if any(_ig_close(out, r) for r in rules.values()):
            continue
        if _ig_close(out, ref) and not _ig_close(rules["right"], ref):
            raise CheckFailed(
                f"With n_steps={n} your map is the converged integral, not a sum of {n} "
                "gradients: your function ignores its `n_steps` argument (or uses a fixed "
                "number of steps).\nHint: Use n_steps points k / n_steps, k = 1..n_steps, "
                "on the path.")
        raise CheckFailed(
            f"On {name} with n_steps={n} your map is not the Riemann sum with {n} gradients "
            f"(nor the left, midpoint or trapezoid rule).\nHint: IG(x) = (x - x') * mean over "
            "k = 1..n of grad f(x' + (k / n) (x - x')).")


@register("ch5_ex1")
def _check_ex1(answer, n_steps=128):
    expect(callable(answer), "The answer should be your function `integrated_gradients` itself.",
           hint="Pass the function without calling it: "
                "sl.grading.check('ch5_ex1', integrated_gradients)")
    for name, model, x, baseline in _ex1_cases():
        out = _call_ig(answer, name, model, x, baseline, n_steps)
        ref = _reference_ig(model, x, baseline).double()
        if _ig_close(out, ref):
            continue
        for prediction, message, hint in _ig_mistakes(model, x, baseline, n_steps):
            prediction = prediction.double()
            if not _ig_close(prediction, ref) and _ig_close(out, prediction):
                raise CheckFailed(f"{message} (Seen on {name}.)\nHint: {hint}")
        total, expected = out.flatten(1).sum(1), ref.flatten(1).sum(1)
        raise CheckFailed(
            f"On {name} your attributions differ from Integrated Gradients: they add up to "
            f"{total[0].item():.4g} for the first digit, while IG adds up to f(x) - f(x') = "
            f"{expected[0].item():.4g} (completeness).\nHint: IG(x) = (x - x') * mean over "
            "k = 1..n of grad f(x' + (k / n) (x - x')); compute each gradient with "
            "torch.autograd.grad(model(points)[:, 0].sum(), points).")
    _check_n_steps(answer)


# ----------------------------------------------------------------------------- ex2: x * u

@functools.lru_cache(maxsize=1)
def _ex2_grey():
    """The five photos at 112 px, as EfficientNet-Lite0 sees them, averaged to grey."""
    from sanity_lib import data, models

    photos = data.sample_images(EX2_SIZE)
    pixels01 = photos.mean(dim=1, keepdim=True)
    seen = models.efficientnet_lite0(pretrained=False).preprocess(photos).mean(1, keepdim=True)
    return seen, pixels01


def _measured(x, mode="abs", n_pairs=6):
    from sanity_lib import analysis

    table = analysis.input_times_random_correlation(x, n_pairs=n_pairs, seed=2024)
    rows = table[(table["maps"] == "x*u vs x*v") & (table["metric"] == f"spearman_{mode}")]
    return rows.groupby("image")["value"].mean().to_numpy()


def _pearson_abs(x, n_pairs=4):
    gen = torch.Generator().manual_seed(7)
    values = []
    for _ in range(n_pairs):
        u = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        a, b = (x.double() * u).abs().flatten(1), (x.double() * v).abs().flatten(1)
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        values.append(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).numpy())
    return np.mean(values, axis=0)


def _prediction(x, spread="var", of="log"):
    flat = x.double().flatten(1)
    values = torch.log(flat.abs()) if of == "log" else flat.abs()
    s = values.var(dim=1) if spread == "var" else values.std(dim=1)
    noise = LOG_ABS_NORMAL_VAR if spread == "var" else math.sqrt(LOG_ABS_NORMAL_VAR)
    return (s / (s + noise)).numpy()


def _five_numbers(answer, key):
    expect(isinstance(answer, dict) and key in answer,
           f"The answer should be a dict with the keys 'measured' and 'predicted'; "
           f"'{key}' is missing.",
           hint="answer = {'measured': measured, 'predicted': predicted}")
    arr = as_array(answer[key], f"answer['{key}']").ravel()
    expect(arr.shape == (5,),
           f"answer['{key}'] should hold one number per photo (5), got {arr.size}.",
           hint="Average over the random pairs, keep one value per photo.")
    expect(bool(np.isfinite(arr).all()),
           f"answer['{key}'] contains NaN or inf.",
           hint="A pixel that is exactly 0 gives log 0 = -inf; the photos as the network sees "
                "them (model.preprocess) have none.")
    return arr


@functools.lru_cache(maxsize=1)
def _ex2_references():
    """The right measurement and the usual wrong ones, computed once per session."""
    seen, pixels01 = _ex2_grey()
    return {"right": _measured(seen, n_pairs=12), "diverging": _measured(seen, "diverging"),
            "pixels01": _measured(pixels01), "pearson": _pearson_abs(seen)}


@register("ch5_ex2")
def _check_ex2(answer):
    measured = _five_numbers(answer, "measured")
    predicted = _five_numbers(answer, "predicted")
    seen, pixels01 = _ex2_grey()
    refs = _ex2_references()
    truth = refs["right"]
    right = _prediction(seen)
    if np.allclose(measured, predicted, rtol=0, atol=1e-6) or (
            np.allclose(measured, right, atol=0.002)
            and not np.allclose(truth, right, atol=EX2_MEASURED_ATOL)):
        raise CheckFailed(
            "Your measured values are the prediction, not a measurement. The point of the "
            "exercise is to compare the formula with what random maps really give.\nHint: "
            "draw u and v with torch.randn, compute sl.similarity.spearman(x * u, x * v, "
            "mode='abs') for 5 pairs and average per photo.")
    if not np.allclose(measured, truth, atol=EX2_MEASURED_ATOL):
        if np.allclose(measured, refs["diverging"], atol=0.05):
            raise CheckFailed(
                "Your measured values are about 0: you compared the signed maps (mode="
                "'diverging' or mode=None). The signs of u and v are independent; the "
                "paper's point is about the *absolute* maps.\nHint: "
                "sl.similarity.spearman(x * u, x * v, mode='abs').")
        if np.allclose(measured, refs["pixels01"], atol=0.05):
            raise CheckFailed(
                "Your measured values are those of the pixels in [0, 1]. The exercise uses "
                "the photos as EfficientNet-Lite0 sees them: model.preprocess(photos), in "
                "[-1, 1], then averaged to grey.\nHint: "
                "x = effnet.preprocess(photos).mean(dim=1, keepdim=True).")
        if np.allclose(measured, refs["pearson"], atol=0.05):
            raise CheckFailed(
                "You computed Pearson's correlation of the absolute values, not a rank "
                "correlation.\nHint: use sl.similarity.spearman(..., mode='abs').")
        raise CheckFailed(
            f"Your measured correlations {np.round(measured, 3).tolist()} are not what x * u "
            f"and x * v give for these photos (about {np.round(truth, 3).tolist()}, within "
            f"{EX2_MEASURED_ATOL}).\nHint: "
            "for each of a few pairs, u = torch.randn(x.shape), v = torch.randn(x.shape), "
            "sl.similarity.spearman(x * u, x * v, 'abs'); average over the pairs, per photo.")
    # Var(log|u|) estimated from samples instead of pi^2 / 8 is right too.
    if np.allclose(predicted, right, atol=EX2_PREDICTED_ATOL):
        return
    mistakes = [
        (_prediction(seen, spread="std"),
         "You used standard deviations; the prediction is a ratio of *variances*: "
         "var(log|x|) / (var(log|x|) + var(log|u|))."),
        (_prediction(seen, of="abs"),
         "You used the variance of |x|, not of log|x|. Ranks do not change under the log, and "
         "log turns the product |x| |u| into the sum log|x| + log|u|: the variances of the two "
         "log terms are what compete."),
        (_prediction(pixels01) if bool((pixels01 > 0).all()) else np.full(5, np.nan),
         "Your prediction uses the pixels in [0, 1]; use the same x as for the measurement."),
        (1 - right,
         "You computed var(log|u|) / (var(log|x|) + var(log|u|)): the share of the noise, not "
         "of the input."),
    ]
    for prediction, message in mistakes:
        if np.allclose(predicted, prediction, atol=0.02):
            raise CheckFailed(message + "\nHint: per photo, L = torch.log(x.abs().flatten()); "
                              "predicted = L.var() / (L.var() + math.pi ** 2 / 8).")
    raise CheckFailed(
        f"Your predictions {np.round(predicted, 2).tolist()} differ from "
        f"var(log|x|) / (var(log|x|) + var(log|u|)) = {np.round(right, 2).tolist()}.\nHint: "
        "var(log|u|) for a standard normal u is pi^2 / 8 = 1.234; compute var(log|x|) over the "
        "pixels of each grey photo.")


# ----------------------------------------------------------------------------- ex3: Sobel

@functools.lru_cache(maxsize=1)
def _ex3_cases():
    from sanity_lib import data

    rng = np.random.default_rng(3)
    step = np.zeros((1, 1, 12, 12))
    step[..., 6:] = 1.0
    return {
        "grey photos (64 x 64)": data.sample_images(64).double().mean(1, keepdim=True).numpy(),
        "MNIST digits": data.load_mnist("test")[0][::500].double().numpy(),
        "a vertical step edge": step,
        "random images (20 x 24)": rng.random((2, 1, 20, 24)),
    }


def _sobel_parts(gray, mode="nearest"):
    """Gx, Gy with scipy's border ``mode``: "nearest" repeats the edge pixel (torch's
    "replicate"), "constant" pads zeros, "mirror" is torch's "reflect", "wrap" its
    "circular"."""
    from scipy import ndimage

    k = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx = np.stack([ndimage.correlate(g, k, mode=mode) for g in gray])
    gy = np.stack([ndimage.correlate(g, k.T, mode=mode) for g in gray])
    return gx, gy


_HINT_SOBEL = ("skimage.filters.sobel(g) = sqrt((Gx**2 + Gy**2) / 2) / 4, where Gx, Gy are "
               "the responses to [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] and its transpose, with the "
               "border padded by repeating the edge pixel: padding_mode='replicate' in torch "
               "(scipy calls this mode 'nearest' for a 3 x 3 kernel; torch's 'reflect' skips "
               "the edge pixel and is wrong here).")


def _sobel_mistakes(gray):
    gx, gy = _sobel_parts(gray)
    zx, zy = _sobel_parts(gray, "constant")
    mx, my = _sobel_parts(gray, "mirror")
    wx, wy = _sobel_parts(gray, "wrap")
    l2 = np.sqrt(gx ** 2 + gy ** 2)
    return [
        (l2, "Your magnitude is 4 sqrt(2) = 5.66 times too large: scikit-image divides the "
             "squared responses by 2 (the number of axes) and the kernels by 4."),
        (l2 / 4, "Your magnitude is sqrt(2) times too large: scikit-image averages the two "
                 "squared responses, sqrt((Gx**2 + Gy**2) / 2)."),
        (l2 / math.sqrt(2), "Your magnitude is 4 times too large: scikit-image's Sobel kernels "
                            "are divided by 4 (their weights sum to 1 in absolute value per "
                            "side)."),
        ((np.abs(gx) + np.abs(gy)) / (4 * math.sqrt(2)),
         "You used the L1 magnitude |Gx| + |Gy| (what the ReLU model of the chapter computes); "
         "scikit-image's Sobel is the L2 magnitude sqrt(Gx**2 + Gy**2) (then rescaled)."),
        (np.abs(gx) / (4 * math.sqrt(2)),
         "You used only one kernel (Gx); the magnitude needs both directions."),
        (np.abs(gy) / (4 * math.sqrt(2)),
         "You used only one kernel (Gy); the magnitude needs both directions."),
        (np.sqrt((zx ** 2 + zy ** 2) / 2) / 4,
         "Inside the image you match scikit-image, but not on the border: you padded with "
         "zeros, so the image's border looks like an edge. scikit-image repeats the edge "
         "pixel: padding_mode='replicate'."),
        (np.sqrt((mx ** 2 + my ** 2) / 2) / 4,
         "Inside the image you match scikit-image, but not on the border: torch's "
         "padding_mode='reflect' mirrors around the edge pixel and skips it (d c b | a b c d). "
         "scikit-image repeats the edge pixel (a | a b c d), which is torch's 'replicate' "
         "(scipy's 'reflect' and torch's 'reflect' are not the same mode)."),
        (np.sqrt((wx ** 2 + wy ** 2) / 2) / 4,
         "Inside the image you match scikit-image, but not on the border: padding_mode="
         "'circular' wraps the opposite border around. scikit-image repeats the edge pixel: "
         "padding_mode='replicate'."),
    ]


@register("ch5_ex3")
def _check_ex3(answer):
    from skimage.filters import sobel

    expect(callable(answer), "The answer should be your function `sobel_magnitude` itself.",
           hint="Pass the function without calling it: "
                "sl.grading.check('ch5_ex3', sobel_magnitude)")
    for case, gray in _ex3_cases().items():
        n, _, h, w = gray.shape
        x = torch.from_numpy(gray.astype(np.float32))
        with torch.no_grad():
            out = call_student(
                answer, x, name="sobel_magnitude", usage=_SOBEL_USAGE, on=f"on the {case}",
                forbid=_SOBEL_LIBRARIES, task="the Sobel magnitude as a convolution",
                forbid_hint="Build the Conv2d with the two Sobel kernels; "
                            "skimage.filters.sobel is only the reference the check compares "
                            "with.")
        expect(isinstance(out, (torch.Tensor, np.ndarray)),
               f"On the {case} your function returned {type(out).__name__}; it should return "
               f"the magnitudes, a tensor N x H x W.",
               hint="End with `return torch.sqrt((g ** 2).sum(dim=1) / 2) / 4`.")
        out = as_array(out, "What `sobel_magnitude` returns")
        if out.shape == (n, 1, h, w):
            out = out[:, 0]
        expect(out.shape == (n, h, w),
               f"On the {case} ({n} x 1 x {h} x {w}) your function returned shape "
               f"{out.shape}; expected {(n, h, w)}, one magnitude per pixel, the same size as "
               "the image.",
               hint="Use padding=1 in the Conv2d so the output keeps the input's size, and "
                    "combine the two output channels into one magnitude.")
        expected = np.stack([sobel(g) for g in gray[:, 0]])
        if np.allclose(out, expected, atol=1e-5):
            continue
        for prediction, message in _sobel_mistakes(gray[:, 0]):
            if np.allclose(out, prediction, atol=1e-5):
                raise CheckFailed(f"{message} (Seen on the {case}.)\nHint: {_HINT_SOBEL}")
        inner = (slice(None), slice(1, -1), slice(1, -1))
        if np.allclose(out[inner], expected[inner], atol=1e-5):
            raise CheckFailed(
                f"On the {case} you match scikit-image inside the image but not on its "
                f"border.\nHint: {_HINT_SOBEL}")
        i, r, c = np.unravel_index(np.argmax(np.abs(out - expected)), out.shape)
        raise CheckFailed(
            f"On the {case} your magnitude differs from skimage.filters.sobel: at image {i}, "
            f"pixel ({r}, {c}) you give {out[i, r, c]:.4g}, scikit-image "
            f"{expected[i, r, c]:.4g}.\nHint: {_HINT_SOBEL}")


# ----------------------------------------------------------------------------- ex4: edges vs edges

_EDGE_LIBRARIES = ("sanity_lib.studies.failures", "skimage.filters", "scipy.ndimage")
_EDGE_USAGE = "edge_excess(maps, gray)"
_EDGE_KEYS = ("same", "mismatched", "excess")
_EDGE_FORBID_HINT = ("Make both edge maps with your own `sobel_magnitude` of exercise 3, not "
                     "with sl.studies.failures (edge_agreement, edge_maps) or scikit-image's "
                     "sobel.")
#: ex4: a correlation must be within this of the check's float64 recomputation (a float32
#: Sobel moves the rank correlations of the check's images by about 3e-4).
EX4_ATOL = 0.005
_HINT_EDGES = ("same[i] = Spearman(sobel_magnitude(|maps[i]|), sobel_magnitude(gray[i])), "
               "mismatched[i] the same against the edges of gray[(i + 1) % N], "
               "excess[i] = same[i] - mismatched[i]; `sl.similarity.spearman(a, b, mode=None)` "
               "gives one rank correlation per image.")


@functools.lru_cache(maxsize=1)
def _ex4_cases():
    """(name, maps N x H x W, gray N x 1 x H x W), float32: real signed saliency maps of random
    conv stacks on images without flat patches (so no rank depends on float32 rounding)."""
    from sanity_lib import data, models, saliency

    photos = data.sample_images(48, names="all").mean(dim=1, keepdim=True)
    gbp = saliency.explain(models.conv_stack_model(3, seed=1), photos, "guided_backprop")
    gen = torch.Generator().manual_seed(4)
    blobs = nn.functional.avg_pool2d(torch.rand(3, 1, 22, 28, generator=gen), 3, stride=1)
    grad = saliency.explain(models.conv_stack_model(2, seed=2), blobs, "gradient")
    return [("8 grey photos (48 x 48) with Guided Backprop maps", gbp[:, 0], photos),
            ("3 smooth random images (20 x 26) with gradient maps", grad[:, 0], blobs)]


def _sobel_np(images, mode="nearest", l1=False):
    """N x H x W float64 -> the Sobel magnitude (scikit-image's with ``mode="nearest"``)."""
    gx, gy = _sobel_parts(images, mode)
    if l1:
        return (np.abs(gx) + np.abs(gy)) / (4 * math.sqrt(2))
    return np.sqrt((gx ** 2 + gy ** 2) / 2) / 4


def _standard_rows(a, ranked=True):
    """Each row of N x ... flattened (ranked, ties averaged), centred and of unit length."""
    from scipy.stats import rankdata

    a = a.reshape(len(a), -1)
    if ranked:
        a = rankdata(a, method="average", axis=1)
    a = a - a.mean(axis=1, keepdims=True)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _rank_corr(a, b, ranked=True):
    """Spearman (or, with ``ranked=False``, Pearson) of each row of ``a`` with that of ``b``."""
    return (_standard_rows(a, ranked) * _standard_rows(b, ranked)).sum(axis=1)


def _ex4_reference(maps, gray):
    """The right ``same`` and the accepted nulls: image i + 1, image i - 1, all others."""
    map_edges = _sobel_np(np.abs(maps))
    image_edges = _sobel_np(gray[:, 0])
    every = _standard_rows(map_edges) @ _standard_rows(image_edges).T   # map i vs image j
    same, n = np.diag(every).copy(), len(maps)
    nulls = {"image (i + 1) mod N": np.roll(image_edges, -1, axis=0),
             "image (i - 1) mod N": np.roll(image_edges, 1, axis=0)}
    nulls = {k: _rank_corr(map_edges, v) for k, v in nulls.items()}
    nulls["the mean over every other image"] = (every.sum(axis=1) - same) / (n - 1)
    return same, nulls


def _ex4_same_mistakes(maps, gray):
    """(prediction, message) for the usual wrong ``same``."""
    image = gray[:, 0]
    map_edges, image_edges = _sobel_np(np.abs(maps)), _sobel_np(image)
    ex3 = " Your `sobel_magnitude` of exercise 3 is wrong: make it pass ch5_ex3 first."
    batch = _rank_corr(map_edges.reshape(1, -1), image_edges.reshape(1, -1))
    return [
        (_rank_corr(np.abs(maps), image_edges),
         "You correlated |map| itself with the image's Sobel magnitude: that asks whether the "
         "map is *large* at the image's edges (chapter 1's edge score), not whether its edges "
         "fall on them. Take the Sobel magnitude of |map| first."),
        (_rank_corr(_sobel_np(maps), image_edges),
         "You took the Sobel magnitude of the signed map. The exercise compares the edges of "
         "|map|: where the map changes sign, the signed map has an edge that |map| does not."),
        (_rank_corr(map_edges, image_edges, ranked=False),
         "You computed Pearson's correlation of the two Sobel magnitudes, not Spearman's rank "
         "correlation: a few strong edges decide Pearson's value."),
        (_rank_corr(map_edges, image),
         "You correlated the map's edges with the image itself (its brightness), not with the "
         "image's edges: take sobel_magnitude(gray) too."),
        (np.full(len(maps), batch[0]),
         "You computed one rank correlation over the whole batch, with every pixel of every "
         "image pooled: the exercise asks for one correlation per image."),
        (_rank_corr(_sobel_np(np.abs(maps), "constant"), _sobel_np(image, "constant")),
         "Your Sobel magnitudes pad the border with zeros." + ex3),
        (_rank_corr(_sobel_np(np.abs(maps), "mirror"), _sobel_np(image, "mirror")),
         "Your Sobel magnitudes use torch's padding_mode='reflect'." + ex3),
        (_rank_corr(_sobel_np(np.abs(maps), "wrap"), _sobel_np(image, "wrap")),
         "Your Sobel magnitudes use padding_mode='circular'." + ex3),
        (_rank_corr(_sobel_np(np.abs(maps), l1=True), _sobel_np(image, l1=True)),
         "Your Sobel magnitudes are the L1 magnitude |Gx| + |Gy|." + ex3),
    ]


def _close(a, b, atol=EX4_ATOL):
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0, atol=atol))


def _worst(values, expected):
    i = int(np.argmax(np.abs(values - expected)))
    return f"at image {i} you give {values[i]:.4f}, the check computes {expected[i]:.4f}"


def _ex4_values(out, key, n, case, same=None, null=None):
    """``out[key]`` as N float64 numbers, or a failed check saying what is wrong with it."""
    hint = ("return {'same': same, 'mismatched': mismatched, 'excess': same - mismatched}, "
            "each with one value per image.")
    expect(isinstance(out, dict),
           f"On the {case} your function returned {describe(out)}; it should return a dict "
           "with the keys 'same', 'mismatched' and 'excess'.", hint=hint)
    expect(key in out, f"The dict your function returns has no key '{key}' (it has "
           f"{sorted(map(str, out))}); the exercise asks for 'same', 'mismatched' and "
           "'excess'.", hint=hint)
    arr = as_array(out[key], f"What your function returns under '{key}'").ravel()
    if key == "excess" and arr.size == 1 and n > 1 and same is not None and _close(
            arr, np.array([same.mean() - null.mean()]), 2 * EX4_ATOL):
        raise CheckFailed(
            "Your excess is one number, the difference of the mean same-image and the mean "
            "mismatched agreement: an unpaired difference of means. The exercise asks for the "
            "paired difference, image by image, so that its spread over the images (and a "
            "bootstrap interval) can be read.\nHint: excess = same - mismatched, one value per "
            "image.")
    expect(arr.size == n,
           f"On the {case} your '{key}' holds {arr.size} value(s); it should hold one per "
           f"image ({n}).", hint=hint)
    expect(bool(np.isfinite(arr).all()),
           f"On the {case} your '{key}' contains NaN or inf; none of these maps or images is "
           "constant, so every correlation is defined.", hint=_HINT_EDGES)
    return arr


def _check_ex4_same(same, maps, gray, expected, case):
    if _close(same, expected):
        return
    for prediction, message in _ex4_same_mistakes(maps, gray):
        if not _close(prediction, expected) and _close(same, prediction):
            raise CheckFailed(f"{message} (Seen on the {case}.)\nHint: {_HINT_EDGES}")
    raise CheckFailed(
        f"On the {case} your 'same' values are not the rank correlation of the Sobel magnitude "
        f"of |map| with that of the map's own image: {_worst(same, expected)}.\nHint: "
        f"{_HINT_EDGES}")


def _check_ex4_null(mismatched, expected_same, nulls, case):
    """The name of the accepted null the student's values match."""
    for name, null in nulls.items():
        if _close(mismatched, null):
            return name
    if _close(mismatched, expected_same):
        raise CheckFailed(
            f"Your mismatched values equal your same-image values (seen on the {case}): your "
            "null compares each map with its own image's edges, so the excess is 0 by "
            "construction. The mismatched-image null holds map i against the edges of "
            "*another* image.\nHint: shift the images' edges by one along the batch: "
            "torch.roll(image_edges, -1, dims=0)[i] is image_edges[(i + 1) % N].")
    for shift in (1, -1):
        if _close(mismatched, np.roll(expected_same, shift)):
            raise CheckFailed(
                f"You shifted the maps and the images together (seen on the {case}): map i + 1 "
                "still meets the edges of its own image i + 1, so your null is only the "
                "same-image values in another order.\nHint: shift the images' edges only, "
                "and keep the maps in place.")
    expected = nulls["image (i + 1) mod N"]
    raise CheckFailed(
        f"On the {case} your 'mismatched' values are not the rank correlation of map i's edges "
        f"with the edges of another image, (i + 1) mod N: {_worst(mismatched, expected)}."
        f"\nHint: {_HINT_EDGES}")


def _check_ex4_excess(excess, same, null, case):
    expected = same - null
    if _close(excess, expected, 2 * EX4_ATOL):
        return
    unpaired = ("an unpaired difference. The exercise asks for the paired difference, image by "
                "image: same[i] - mismatched[i].")
    mistakes = [
        (-expected, "Your excess has the wrong sign: it is the same-image agreement minus the "
                    "mismatched one, positive when the map's edges follow its own image."),
        (np.full_like(expected, same.mean() - null.mean()),
         "Your excess is the same number for every image, the difference of the two means: "
         + unpaired),
        (same - null.mean(), "You subtracted the *mean* of the null from each image's "
                             "same-image value: " + unpaired),
        (same.mean() - null, "You subtracted each image's null from the *mean* same-image "
                             "value: " + unpaired),
    ]
    for prediction, message in mistakes:
        if not _close(prediction, expected, 2 * EX4_ATOL) and _close(excess, prediction,
                                                                      2 * EX4_ATOL):
            raise CheckFailed(f"{message} (Seen on the {case}.)\nHint: excess = same - "
                              "mismatched.")
    raise CheckFailed(f"On the {case} your 'excess' is not same - mismatched: "
                      f"{_worst(excess, expected)}.\nHint: excess = same - mismatched, one "
                      "value per image.")


def _check_ex4_one_image(answer, maps, gray):
    """With one image there is no other image: the function must raise ValueError."""
    try:
        with forbid_library(_EDGE_LIBRARIES, "the edge agreement", _EDGE_FORBID_HINT):
            answer(maps[:1].clone(), gray[:1].clone())
    except ValueError:
        return
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as err:  # noqa: BLE001 (any error of the student's code is reported)
        said = f" ({err})" if str(err) else ""
        raise CheckFailed(
            f"With one image your `edge_excess` raised {type(err).__name__}{said}; the "
            "exercise asks for a ValueError that says why: one image has no other image to "
            "be the null.\nHint: start with `if maps.shape[0] < 2: raise ValueError(...)`.") \
            from None
    raise CheckFailed(
        "With one image your `edge_excess` returned values: image (i + 1) mod 1 is image 0 "
        "itself, so that null pairs the map with its own image's edges and the excess is 0 by "
        "construction, not a measurement. With fewer than two images there is no mismatched "
        "null: raise a ValueError.\nHint: start with `if maps.shape[0] < 2: raise "
        "ValueError(...)`.")


@register("ch5_ex4")
def _check_ex4(answer):
    expect(callable(answer), f"The answer should be your function `edge_excess` itself, got "
           f"{describe(answer)}.", hint="Pass the function without calling it: "
                                        "sl.grading.check('ch5_ex4', edge_excess)")
    cases = _ex4_cases()
    for case, maps, gray in cases:
        with torch.no_grad():
            out = call_student(answer, maps.clone(), gray.clone(), name="edge_excess",
                               usage=_EDGE_USAGE, on=f"on the {case}", forbid=_EDGE_LIBRARIES,
                               task="the edge agreement",
                               forbid_hint=_EDGE_FORBID_HINT)
        m, g = maps.double().numpy(), gray.double().numpy()
        same_ref, nulls = _ex4_reference(m, g)
        n = len(m)
        same, mismatched = (_ex4_values(out, key, n, case) for key in _EDGE_KEYS[:2])
        _check_ex4_same(same, m, g, same_ref, case)
        null = nulls[_check_ex4_null(mismatched, same_ref, nulls, case)]
        excess = _ex4_values(out, "excess", n, case, same_ref, null)
        _check_ex4_excess(excess, same_ref, null, case)
    _check_ex4_one_image(answer, cases[0][1], cases[0][2])
