"""Checks of the exercise notebook of chapter 6, "Gaussian noise on the parameters".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch6_ex1``  a function ``f(model, layer, std, seed=0)`` returning a *copy* of
             ``model`` in which every parameter of the layer ``layer`` (weights and
             biases) has zero-mean Gaussian noise of standard deviation ``std``
             added; the model given and the other layers are left untouched, the
             same seed gives the same noise, ``std=0`` changes nothing
``ch6_ex2``  the same with *relative* noise: each parameter tensor ``p`` gets noise
             of standard deviation ``std * p.std()``
``ch6_ex3``  a dict ``{method: std or None}``: the smallest noise std of the noise
             explorer at which the method's map of the shown image is visibly
             destroyed once the first layer (``logits``) is noised, None if it never
             is; needs ``results=`` (the explorer's ``{std: result}``) and ``image=``
``ch6_ex4``  a dict ``{"most_sensitive": method, "least_sensitive": method}`` read
             off the student's sweep; needs ``sweep=`` (a
             :class:`sanity_lib.studies.noise.NoiseSweep`)
``ch6_ex5``  a function ``f(curve) -> float``: the concavity index of
             :func:`sanity_lib.studies.noise.concavity`
===========  ===================================================================

ex1 and ex2 run the student's function on a small two-layer network whose biases have a
different spread (and a non-zero mean) from its weights, so that absolute, relative, pooled
and multiplicative noise all give different statistics; ex1, ex2 and ex5 ask the student to
write what the library does, so calling ``sanity_lib.randomization`` or
``sanity_lib.studies.noise`` inside the function fails them. ex3 and ex4 judge the answer
against the student's own measurements, with a margin: only the clear cases must be right. The
measurements are validated first: the Gaussian-noise test (absolute noise, top-down) of the
model and the methods the exercise names, with the signed rank correlation; every method of
them needs an answer.

Examples
--------
>>> import copy, torch, sanity_lib as sl
>>> def add_noise(model, layer, std, seed=0):
...     noisy = copy.deepcopy(model)
...     g = torch.Generator().manual_seed(seed)
...     with torch.no_grad():
...         for p in noisy.get_submodule(layer).parameters():
...             p += std * torch.randn(p.shape, generator=g)
...     return noisy
>>> sl.grading.check("ch6_ex1", add_noise)
'ch6_ex1: correct. Well done!'
>>> def with_library(model, layer, std, seed=0):
...     noisy = copy.deepcopy(model)
...     sl.randomization.add_gaussian_noise(noisy.get_submodule(layer), std, seed=seed)
...     return noisy
>>> sl.grading.check("ch6_ex1", with_library)
Traceback (most recent call last):
...
sanity_lib.course.grading.CheckFailed: Your answer calls sanity_lib.randomization.add_gaussian_noise: the exercise asks you to write the noise step yourself.
Hint: Draw the noise with torch.randn(p.shape, generator=g) and add it; the library's gaussian_noise is what you compare with afterwards.
"""
import functools
import math
import numbers

import numpy as np
import torch
from torch import nn

from . import CheckFailed, as_array, call_student, expect, method_name, register

__all__ = ["DESTROYED", "STILL_SAME", "SENSITIVITY_MARGIN"]

#: ex3: a map whose signed rank correlation with the original is below this is destroyed.
DESTROYED = 0.3
#: ex3: ... and at or above this it is still recognisably the same map.
STILL_SAME = 0.6
#: ex4: methods whose sensitivity is within this (or two seed standard deviations) of the
#: extreme are accepted as tied.
SENSITIVITY_MARGIN = 0.02

#: ex3: the methods the exercise runs in the noise explorer.
EX3_METHODS = ("gradient", "integrated_gradients", "guided_backprop")
#: ex4: the methods of the report's ranking, which the sweep must hold.
EX4_METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
               "guided_backprop")

_NOISE_LIBRARIES = ("sanity_lib.randomization", "sanity_lib.studies.noise")
_NOISE_HINT = ("Draw the noise with torch.randn(p.shape, generator=g) and add it; the library's "
               "gaussian_noise is what you compare with afterwards.")
_STD = 0.1          # the absolute noise level the checks of ex1 use
_REL_STD = 0.5      # the relative noise level the checks of ex2 use


# ----------------------------------------------------------------------------- the network

class _NoiseNet(nn.Module):
    """784 -> 1000 -> 10, with biases that differ in spread and mean from the weights."""

    layer_group_names = ("hidden", "out")

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(784, 1000)
        self.act = nn.ReLU()
        self.out = nn.Linear(1000, 10)

    def forward(self, x):
        return self.out(self.act(self.hidden(self.flatten(x))))


@functools.lru_cache(maxsize=1)
def _net_state():
    with torch.random.fork_rng():
        torch.manual_seed(6)
        net = _NoiseNet()
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        # weights: std ~0.02 like a trained MLP's; biases: mean 0.1, std 0.1 (5x the weights),
        # so that std, root mean square, mean |p| and max |p| all differ by > 15 %
        net.hidden.weight.copy_(0.02 * torch.randn(net.hidden.weight.shape, generator=gen))
        net.hidden.bias.copy_(0.1 + 0.1 * torch.randn(net.hidden.bias.shape, generator=gen))
    return {k: v.clone() for k, v in net.state_dict().items()}


def _net():
    net = _NoiseNet()
    net.load_state_dict(_net_state())
    return net.eval()


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _tensor_std(t):
    return float(t.double().std(correction=0))


# ----------------------------------------------------------------------------- ex1 / ex2

def _call(fn, layer, std, seed, name):
    """Run the student's function on a fresh network; return (original, before, output)."""
    model = _net()
    before = _params(model)
    out = call_student(fn, model, layer, std, seed=seed, name=name,
                       usage=f"{name}(model, layer, std, seed=0)",
                       on=f"with layer={layer!r}, std={std}, seed={seed}",
                       forbid=_NOISE_LIBRARIES, task="the noise step", forbid_hint=_NOISE_HINT)
    expect(isinstance(out, nn.Module),
           f"`{name}` returned {type(out).__name__}; it should return the noisy copy of the "
           "model.", hint="End the function with `return noisy` (the deep copy you changed).")
    after = _params(model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    expect(not changed,
           f"Your function changed the model it was given (parameters {changed}). The test "
           "compares the noisy model with the original, so the original must survive.",
           hint="Work on `noisy = copy.deepcopy(model)` and add the noise to `noisy`'s layer.")
    expect(out is not model, f"`{name}` returned the model it was given, not a copy.",
           hint="Return `copy.deepcopy(model)` with the noise added to it.")
    return before, _params(out)


def _check_structure(fn, layer, std, name):
    before, after = _call(fn, layer, std, 0, name)
    expect(set(after) == set(before),
           f"The copy has other parameters than the model: {sorted(set(after) ^ set(before))}.",
           hint="Deep-copy the whole model; do not rebuild it.")
    others = [k for k in before if not k.startswith(layer + ".") and
              not torch.equal(before[k], after[k])]
    expect(not others,
           f"Noise landed outside the layer {layer!r}: {others} changed too. One step of the "
           "cascade noises one layer; the test adds the next layer at the next step.",
           hint=f"Loop over `noisy.get_submodule({layer!r}).parameters()` only, not over "
                "`noisy.parameters()`.")
    mine = [k for k in before if k.startswith(layer + ".")]
    untouched = [k for k in mine if torch.equal(before[k], after[k])]
    expect(not untouched,
           f"The parameters {untouched} of {layer!r} did not change: every parameter of the "
           "layer gets noise, its biases included.",
           hint="Loop over all of the layer's `.parameters()`, weight and bias.")
    return before, after


def _correlation(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def _check_reproducible(fn, layer, std, name):
    _, first = _call(fn, layer, std, 3, name)
    _, again = _call(fn, layer, std, 3, name)
    _, other = _call(fn, layer, std, 4, name)
    key = f"{layer}.weight"
    expect(torch.equal(first[key], again[key]),
           "Two calls with the same seed gave different noise, so the figures of a notebook "
           "would change on every run.",
           hint="Draw from your own generator: `g = torch.Generator().manual_seed(seed)` and "
                "`torch.randn(p.shape, generator=g)`.")
    expect(not torch.equal(first[key], other[key]),
           "Seeds 3 and 4 gave the same noise: the seed is ignored.",
           hint="Seed the generator with the `seed` argument.")


def _check_zero(fn, layer, name):
    before, after = _call(fn, layer, 0.0, 0, name)
    changed = [k for k in before if not torch.allclose(before[k], after[k], atol=0, rtol=0)]
    expect(not changed, f"With std=0 the parameters {changed} still changed. Noise of standard "
                        "deviation 0 is no noise.",
           hint="Add `std * z` with z standard normal: for std=0 that adds exactly 0.")


def _gaussian_share(diff, scale):
    """Fraction of ``diff`` within one ``scale`` of 0: 0.683 for a Gaussian, 0.577 uniform."""
    return float((diff.abs() <= scale).double().mean())


def _library_noise_std(layer, std, relative):
    from sanity_lib.randomization import add_gaussian_noise

    net = _net()
    before = net.get_submodule(layer).weight.detach().clone()
    add_gaussian_noise(net.get_submodule(layer), std, relative=relative, seed=0, prefix=layer)
    return _tensor_std(net.get_submodule(layer).weight.detach() - before)


def _diagnose_scale(measured, expected, candidates, what):
    """Name the mistake whose predicted noise std matches ``measured``, else a generic one."""
    for predicted, message, hint in candidates:
        if predicted > 0 and abs(measured / predicted - 1) < 0.05:
            raise CheckFailed(f"{message}\nHint: {hint}")
    raise CheckFailed(f"The noise you added to {what} has standard deviation {measured:.4g}; "
                      f"it should be {expected:.4g}.\nHint: add `std * torch.randn(p.shape, "
                      "generator=g)` to each parameter `p`.")


@register("ch6_ex1")
def _check_ex1(answer):
    name = "add_noise"
    expect(callable(answer), f"The answer should be your function `{name}` itself.",
           hint="Pass the function without calling it: sl.grading.check('ch6_ex1', add_noise)")
    layer = "hidden"
    before, after = _check_structure(answer, layer, _STD, name)
    w, dw = before[f"{layer}.weight"].double(), (after[f"{layer}.weight"] - before[f"{layer}.weight"]).double()
    b, db = before[f"{layer}.bias"].double(), (after[f"{layer}.bias"] - before[f"{layer}.bias"]).double()
    measured, n = _tensor_std(dw), dw.numel()
    tolerance = 4 * _STD / math.sqrt(2 * n)
    if abs(measured - _STD) > tolerance:
        library = _library_noise_std(layer, _STD, relative=False)
        if _correlation(dw.abs().flatten(), w.abs().flatten()) > 0.3:
            raise CheckFailed(
                f"Your noise grows with the size of each weight (std {measured:.4g} instead of "
                f"{_STD}): that is multiplicative noise, w * (1 + std * z). The report's test "
                f"adds noise, w + std * z, the same for every weight (the library's "
                f"gaussian_noise gives std {library:.4g}).\nHint: add `std * z`, do not "
                "multiply the weight by it.")
        _diagnose_scale(measured, _STD, [
            (_STD * _tensor_std(w),
             f"Your noise has std {measured:.4g} = std x the weights' spread: that is the "
             "*relative* noise of the next exercise. Here the noise is absolute: std "
             f"{_STD} whatever the weights' size.", "Multiply z by `std` only."),
            (math.sqrt(_STD), f"Your noise has std {measured:.4g} = sqrt({_STD}): you used std "
                              "as the variance.", "torch.randn has std 1; multiply it by std."),
            (_STD ** 2, f"Your noise has std {measured:.4g} = {_STD}^2: you multiplied by the "
                        "variance, not the standard deviation.", "Multiply z by std, not std**2."),
        ], f"{layer}.weight (library: {library:.4g})")
    expect(abs(float(dw.mean())) < 5 * _STD / math.sqrt(n),
           f"Your noise has mean {float(dw.mean()):.4g}; it should be zero-mean.",
           hint="Use torch.randn (mean 0), not torch.rand (mean 0.5).")
    share = _gaussian_share(dw, _STD)
    expect(abs(share - 0.6827) < 0.01,
           f"{share:.1%} of your noise values lie within one std of 0; for Gaussian noise it "
           "is 68.3% (uniform noise gives 57.7%).",
           hint="Draw with torch.randn, the standard normal distribution.")
    bias_std, nb = _tensor_std(db), db.numel()
    expect(abs(bias_std - _STD) <= 4 * _STD / math.sqrt(2 * nb),
           f"The noise on {layer}.bias has std {bias_std:.4g}, not {_STD}: the biases need the "
           "same absolute noise as the weights.", hint="Treat every parameter alike.")
    _check_zero(answer, layer, name)
    _check_reproducible(answer, "out", _STD, name)
    _check_structure(answer, "out", _STD, name)


@register("ch6_ex2")
def _check_ex2(answer):
    name = "add_relative_noise"
    expect(callable(answer), f"The answer should be your function `{name}` itself.",
           hint="Pass the function without calling it: "
                "sl.grading.check('ch6_ex2', add_relative_noise)")
    layer, s = "hidden", _REL_STD
    before, after = _check_structure(answer, layer, s, name)
    w, b = before[f"{layer}.weight"].double(), before[f"{layer}.bias"].double()
    pooled = _tensor_std(torch.cat([w.flatten(), b]))
    for key, p in ((f"{layer}.weight", w), (f"{layer}.bias", b)):
        d = (after[key] - before[key]).double()
        measured, expected, n = _tensor_std(d), s * _tensor_std(p), d.numel()
        if abs(measured / expected - 1) <= 4 / math.sqrt(2 * n) + 0.01:
            continue
        if _correlation(d.abs().flatten(), p.abs().flatten()) > 0.3:
            raise CheckFailed(
                f"On {key} your noise grows with each entry's size: that is multiplicative "
                "noise, p * (1 + std * z). Relative noise scales one Gaussian draw by the "
                "*tensor's* spread, the same for every entry.\nHint: `p + std * p.std() * z`.")
        _diagnose_scale(measured, expected, [
            (s, f"On {key} your noise has std {measured:.4g} = std: that is absolute noise. "
                f"Relative noise is std x the tensor's own spread ({_tensor_std(p):.4g} here), "
                f"so {expected:.4g}.", "Multiply z by `std * p.std()`."),
            (s * pooled, f"On {key} your noise has std {measured:.4g}: you scaled by the spread "
                         "of the weights and biases pooled together. Each tensor uses its own "
                         f"spread ({_tensor_std(p):.4g} here).",
             "Compute p.std() inside the loop over the parameters, one tensor at a time."),
            (s * float(p.abs().mean()), f"On {key} you scaled by the mean absolute value; "
                                        "relative noise uses the standard deviation.",
             "Use `p.std()`."),
            (s * float(p.abs().max()), f"On {key} you scaled by the largest absolute value; "
                                       "relative noise uses the standard deviation.",
             "Use `p.std()`."),
            (s * float(p.pow(2).mean().sqrt()),
             f"On {key} you scaled by the root mean square, which counts the tensor's mean "
             f"({float(p.mean()):.3g} here) as spread. Relative noise uses the standard "
             "deviation around the mean.", "Use `p.std()`."),
        ], f"{key}")
    _check_zero(answer, layer, name)
    _check_reproducible(answer, "out", s, name)
    _check_structure(answer, "out", s, name)


# ----------------------------------------------------------------------------- ex3

def _per_image_step1(result, method, image):
    t = result.table
    rows = t[(t["method"] == method) & (t["metric"] == "spearman_diverging") & (t["step"] == 1)
             & (t["image"] == image)]
    if len(rows) != 1:
        raise CheckFailed(f"The results hold no spearman_diverging value of {method!r} for "
                          f"image {image} at step 1.\nHint: Pass the results the explorer was "
                          "built from.")
    return float(rows["value"].iloc[0])


def _check_results(results):
    """The explorer's ``{std: result}``, validated: one Gaussian-noise test of the CNN per
    absolute noise level, top-down, with the exercise's methods and the signed metric, all on
    the same model and inputs."""
    from sanity_lib import grading

    what = ("noise_study.noise_sweep(cnn, x[2:3], methods, grid, seeds=[0], "
            "metrics=['spearman_diverging']).results_by_std()")
    expect(isinstance(results, dict) and len(results) > 0,
           f"ch6_ex3 needs results={{std: result}}, the dict given to the noise explorer; got "
           f"{grading.describe(results)}.",
           hint=f'sl.grading.check("ch6_ex3", answer, results=results, image=IMAGE), with '
                f"results = {what}.")
    out = {}
    for key, result in results.items():
        expect(isinstance(key, numbers.Real) and not isinstance(key, bool),
               f"The keys of results= should be the noise levels (numbers); got {key!r}.",
               hint=f"results = {what}")
        grading.check_result(
            result, test="model_randomization", mode="gaussian_noise", what=what,
            methods=EX3_METHODS, metrics=["spearman_diverging"],
            settings={"relative": False, "order": "top_down", "model": "MnistCNN"},
            name=f"results[{key}]")
        std = result.settings.get("std")
        expect(isinstance(std, numbers.Real) and math.isclose(float(std), float(key),
                                                              rel_tol=1e-9),
               f"results[{key}] was run with std={std!r}, not {key}: the keys must be the "
               "noise levels of their results.", hint=f"results = {what}")
        out[float(key)] = result
    for key in ("model_fingerprint", "x_fingerprint"):
        seen = {r.settings.get(key) for r in out.values()}
        expect(len(seen) == 1,
               f"The results come from different {'models' if key[0] == 'm' else 'inputs'}: "
               "one noise explorer compares the same model and digit at every noise level.",
               hint=f"Build them in one call: results = {what}")
    # one model for all (checked above): its step-0 predictions must be the trained CNN's
    grading.check_trained_mnist(next(iter(out.values())), what=what, kind="cnn",
                                name=f"results[{next(iter(out))}]")
    expect(len(out) >= 3,
           f"The results hold {len(out)} noise level(s); the exercise's grid has five, and "
           "the smallest destroying std cannot be read off fewer than three.",
           hint="grid = [0.01, 0.03, 0.1, 0.2, 0.3]")
    return dict(sorted(out.items()))


@register("ch6_ex3")
def _check_ex3(answer, results=None, image=0):
    from sanity_lib import grading

    results = _check_results(results)
    stds = list(results)
    first = next(iter(results.values()))
    methods = list(first.methods)
    images = sorted(set(first.table["image"]))
    expect(isinstance(image, numbers.Integral) and image in images,
           f"image={image!r} is not one of the results' images {images}.",
           hint="Pass image=IMAGE, the digit the explorer shows.")
    expect(isinstance(answer, dict) and answer,
           f"The answer should be a dict {{method: std}}, e.g. {{'gradient': 0.1, ...}}; got "
           f"{grading.describe(answer)}.",
           hint="One entry per method the exercise names; None where the map is never "
                "destroyed.")
    given = {}
    for key, value in answer.items():
        given[method_name(key, available=methods)] = value
    missing = [m for m in EX3_METHODS if m not in given]
    expect(not missing,
           f"Your answer has no entry for {missing}: the exercise asks about each of "
           f"{list(EX3_METHODS)}.",
           hint="Give a std for each of them, or None where the map survives every level.")
    for method, value in given.items():
        rho = {s: _per_image_step1(r, method, image) for s, r in results.items()}
        listing = ", ".join(f"std {s:g}: {v:.2f}" for s, v in rho.items())
        if value is None:
            lowest = min(rho, key=rho.get)
            expect(rho[lowest] >= DESTROYED,
                   f"{method}: you say its map is never destroyed, but at std {lowest:g} its "
                   f"rank correlation with the original is {rho[lowest]:.2f}: little is left "
                   f"of it.", hint=f"Move the noise slider up with the layer slider on "
                                   f"'logits' and compare with 'original'. ({listing})")
            continue
        expect(isinstance(value, numbers.Real) and not isinstance(value, bool),
               f"{method}: {value!r} is not a noise std.",
               hint=f"Give one of the explorer's std values {stds}, or None.")
        match = [s for s in stds if math.isclose(s, float(value), rel_tol=1e-6)]
        expect(bool(match), f"{method}: {value!r} is not one of the explorer's noise levels.",
               hint=f"The slider offers {stds}.")
        s = match[0]
        expect(rho[s] < STILL_SAME,
               f"{method}: at std {s:g} its map is still much like the original (rank "
               f"correlation {rho[s]:.2f}); the picture has changed, but the same pixels stand "
               "out.", hint=f"Look at higher noise. ({listing})")
        earlier = [t for t in stds if t < s and rho[t] < DESTROYED]
        if earlier:
            raise CheckFailed(
                f"{method}: the map is already destroyed at std {earlier[0]:g} (rank "
                f"correlation {rho[earlier[0]]:.2f}), below your {s:g}.\nHint: The question "
                f"asks for the smallest such std. ({listing})")


# ----------------------------------------------------------------------------- ex4

def _check_sweep(sweep):
    """The sweep, validated: absolute noise on the MLP, the report's five methods, the noise
    levels 0.1 and 0.3, at least two seeds and ten digits, the signed metric."""
    from sanity_lib import grading
    from sanity_lib.studies.noise import NoiseSweep

    what = ("noise_study.noise_sweep(mlp, x, report_methods, stds=[0.1, 0.3], seeds=[0, 1], "
            "metrics=['spearman_diverging', 'spearman_abs'])")
    expect(isinstance(sweep, NoiseSweep),
           f"ch6_ex4 needs sweep=, the NoiseSweep your answer is read from; got "
           f"{grading.describe(sweep)}.",
           hint=f'sl.grading.check("ch6_ex4", ranking, sweep=sweep), with sweep = {what}.')
    expect(not sweep.relative,
           "Your sweep used relative noise; the report's ranking is for absolute noise.",
           hint=f"Run it with relative=False (the default): {what}")
    missing = [s for s in (0.1, 0.3) if not any(math.isclose(s, t) for t in sweep.stds)]
    expect(not missing, f"Your sweep has no noise level {missing} (it has {sweep.stds}); the "
           "exercise compares the methods at std 0.1 and 0.3.", hint=f"sweep = {what}")
    expect(len(sweep.seeds) >= 2,
           f"Your sweep has {len(sweep.seeds)} seed(s); with fewer than two there is no seed "
           "spread to tell a real difference from a lucky draw.", hint="seeds=[0, 1]")
    for key, result in sweep.results.items():
        grading.check_result(result, test="model_randomization", mode="gaussian_noise",
                             what=what, methods=EX4_METHODS, metrics=["spearman_diverging"],
                             settings={"relative": False, "model": "MnistMLP"},
                             min_images=10, name=f"sweep.results[{key}]")
    seen = {r.settings.get("model_fingerprint") for r in sweep.results.values()}
    expect(len(seen) == 1, "The tests of your sweep were run on different models.",
           hint=f"Build the sweep in one call: {what}")
    key, first = next(iter(sweep.results.items()))
    grading.check_trained_mnist(first, what=what, kind="mlp", name=f"sweep.results[{key}]")


@register("ch6_ex4")
def _check_ex4(answer, sweep=None):
    from sanity_lib import grading
    from sanity_lib.studies.noise import sensitivity

    _check_sweep(sweep)
    keys = ("most_sensitive", "least_sensitive")
    expect(isinstance(answer, dict) and all(k in answer for k in keys),
           f"The answer should be a dict with the keys {list(keys)}; got "
           f"{grading.describe(answer)}"
           + (f" with the keys {list(answer)}" if isinstance(answer, dict) else "") + ".",
           hint="e.g. {'most_sensitive': 'gradient', 'least_sensitive': 'smoothgrad'}")
    table = sensitivity(sweep.curves("spearman_diverging"))
    methods = list(dict.fromkeys(table["method"]))
    answer = {k: method_name(answer[k], available=methods) for k in keys}
    expect(answer["most_sensitive"] != answer["least_sensitive"],
           "The same method cannot be both the most and the least sensitive.",
           hint="Sort the methods by their sensitivity (the area above the curve).")
    for s, part in table.groupby("noise_std"):
        part = part.set_index("method")
        for key, pick in (("most_sensitive", part["sensitivity"].idxmax()),
                          ("least_sensitive", part["sensitivity"].idxmin())):
            mine = answer[key]
            gap = abs(part.loc[pick, "sensitivity"] - part.loc[mine, "sensitivity"])
            margin = max(SENSITIVITY_MARGIN, 2 * max(part.loc[pick, "seed_std"],
                                                     part.loc[mine, "seed_std"]))
            word = "most" if key == "most_sensitive" else "least"
            expect(gap <= margin,
                   f"At std {s:g}, {pick} is clearly the {word} sensitive method (area above "
                   f"its curve {part.loc[pick, 'sensitivity']:.2f}), not {mine} "
                   f"({part.loc[mine, 'sensitivity']:.2f}).",
                   hint="Sensitivity is 1 - the mean similarity over the noised steps: a large "
                        "value means the map moves away from the original quickly.")


# ----------------------------------------------------------------------------- ex5

def _ex5_curves():
    rng = np.random.default_rng(6)
    curves = {
        "a straight line": np.linspace(1.0, 0.2, 5),
        "flat, then a drop at the last step": np.array([1.0, 1.0, 1.0, 1.0, 0.3]),
        "a drop at the first step, then flat": np.array([1.0, 0.3, 0.3, 0.3, 0.3]),
        "a slow-then-fast curve of 6 steps": 1 - 0.7 * (np.arange(7) / 6) ** 2,
        "a fast-then-slow curve of 3 steps": np.array([1.0, 0.35, 0.15, 0.1]),
        "a random falling curve of 8 steps": np.r_[1.0, np.sort(rng.uniform(-0.1, 0.9, 8))[::-1]],
    }
    return curves


def _area(y):
    n = y.size - 1
    chord = y[0] + (y[-1] - y[0]) * np.arange(n + 1) / n
    return float(np.sum(y - chord))


_EX5_MISTAKES = [
    (lambda y: -_area(y) * 2 / ((y.size - 2) * (y[0] - y[-1])),
     "Your index has the wrong sign: a curve *above* its chord (slow, then fast) is concave "
     "and gets a positive index.", "Use curve - chord, not chord - curve."),
    (lambda y: _area(y),
     "You return the raw area between the curve and its chord; the index divides it by the "
     "largest possible area, (L - 1)(y_0 - y_L) / 2, so that it lies in [-1, 1].",
     "Divide by (L - 1) * (y[0] - y[-1]) / 2, with L the number of steps."),
    (lambda y: _area(y) / (y[0] - y[-1]),
     "You divided by the drop but not by (L - 1) / 2: your index grows with the number of "
     "steps.", "Divide by (L - 1) * (y[0] - y[-1]) / 2."),
    (lambda y: _area(y) / ((y.size - 2) * (y[0] - y[-1])),
     "Your index is half the right one: the mean gap to the chord, divided by the drop, "
     "reaches only 1/2 for the most concave curve.", "Multiply by 2."),
    (lambda y: 2 * _area(y) / (y.size * (y[0] - y[-1])),
     "You divided by the number of points minus 0 (or the steps plus one) instead of L - 1, "
     "the number of interior points.", "With L steps there are L + 1 points and L - 1 "
                                       "interior ones."),
    (lambda y: 2 * _area(y) / ((y.size - 1) * (y[0] - y[-1])),
     "You divided by L instead of L - 1, the number of interior points: the extreme curves "
     "then miss +-1.", "With L steps there are L + 1 points and L - 1 interior ones."),
]


@register("ch6_ex5")
def _check_ex5(answer):
    from sanity_lib.studies.noise import concavity

    for case, y in _ex5_curves().items():
        out = call_student(answer, y.copy(), name="concavity_index",
                           usage="concavity_index(curve)", on=f"on {case}",
                           forbid=("sanity_lib.studies.noise",), task="the concavity index",
                           forbid_hint="Compute the chord and the area with numpy; "
                                       "noise_study.concavity is what the check compares with.")
        value = as_array(out, "What `concavity_index` returns", hint="return one float")
        expect(value.size == 1,
               f"On {case} your function returned {value.size} numbers; the index is one "
               "number per curve.", hint="Sum over the interior points and return a float.")
        out = float(value.ravel()[0])
        expect(math.isfinite(out), f"On {case} your index is {out}.",
               hint="Divide by (L - 1) * (y[0] - y[-1]) / 2, with L = len(curve) - 1.")
        right = concavity(y)
        if math.isclose(out, right, abs_tol=1e-6):
            continue
        for fn, message, hint in _EX5_MISTAKES:
            if math.isclose(out, fn(y), abs_tol=1e-6):
                raise CheckFailed(f"{message} (Seen on {case}: you return {out:.4f}, the index "
                                  f"is {right:.4f}.)\nHint: {hint}")
        raise CheckFailed(f"On {case} ({np.round(y, 3).tolist()}) your index is {out:.4f}; it "
                          f"should be {right:.4f}.\nHint: chord c_k = y_0 + (y_L - y_0) k / L; "
                          "index = 2 * sum_{k=1}^{L-1} (y_k - c_k) / ((L - 1)(y_0 - y_L)).")
