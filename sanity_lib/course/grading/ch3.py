"""Checks of the exercise notebook of chapter 3, "The model parameter randomization test".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch3_ex1``  a generator function ``f(model, init="default", seed=0)`` yielding
             ``(layer_name, randomized_model)``: cascading randomization from the
             logits down, cumulative, one fresh copy per step, the model given
             left untouched (as :func:`sanity_lib.randomization.cascading`)
``ch3_ex2``  the methods that *fail* the test on the MNIST CNN: those whose mean
             ``spearman_abs`` with the original map stays at or above
             :data:`FAIL_THRESHOLD` once ``logits`` and ``fc1`` are randomized;
             needs ``result=`` (the student's cascading result)
``ch3_ex3``  the layer at which Guided Backprop's map first changes visibly in the
             cascading explorer (EfficientNet-Lite0); needs ``result=``
===========  ===================================================================

The checks of ex2 and ex3 judge the answer against the result the student computed, with
a margin: a method (or layer) close to the threshold is accepted either way, only the
clear cases must be right. No number is hard-coded.

Examples
--------
>>> import sanity_lib as sl
>>> sl.grading.check("ch3_ex1", sl.randomization.cascading)
'ch3_ex1: correct. Well done!'
"""
import copy
import functools

import numpy as np
import torch
from torch import nn

from . import CheckFailed, expect, method_names, register

__all__ = ["failing_methods", "change_layers", "FAIL_THRESHOLD", "FAIL_MARGIN", "FAIL_AFTER",
           "CHANGE_START", "CHANGE_CLEAR"]

#: ex2: a method fails when its mean spearman_abs after ``FAIL_AFTER`` is at least this.
FAIL_THRESHOLD = 0.5
#: ex2: methods within this distance of the threshold are accepted on either side.
FAIL_MARGIN = 0.1
#: ex2: the step at which the similarity is read: logits and fc1 randomized.
FAIL_AFTER = "fc1"
#: ex3: Guided Backprop's map has started to change once its spearman_abs (the mean over
#: images, or one image's own) is below this ...
CHANGE_START = 0.9
#: ex3: ... and has clearly changed once it is below this.
CHANGE_CLEAR = 0.5


# ----------------------------------------------------------------------------- ex1

class _BlockNet(nn.Module):
    """A tiny model whose layer groups are *blocks* (conv + batch norm + ReLU), like
    EfficientNet's stages, so that a loop that only works for single layers is caught."""

    layer_group_names = ("block1", "block2", "head")

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.pool(self.block2(self.block1(x))).flatten(1))


@functools.lru_cache(maxsize=1)
def _block_net_state():
    gen = torch.Generator().manual_seed(3)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = _BlockNet()
    with torch.no_grad():
        # "trained" batch-norm affine parameters (not the fresh 1 / 0), so a re-initialization
        # of a block is visible in every one of its parameters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.5 + torch.rand(m.bias.shape, generator=gen))
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen))
                m.running_var.copy_(1 + torch.rand(m.running_var.shape, generator=gen))
    return copy.deepcopy(net.state_dict())


def _test_models():
    from sanity_lib import models

    net = _BlockNet()
    net.load_state_dict(_block_net_state())
    return [("the MNIST CNN", models.mnist_cnn(seed=0)), ("a small model made of conv "
            "blocks (conv + batch norm + ReLU per group)", net.eval())]


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed_groups(model, original_params, group_names):
    """{group: "all" | "some" | "none"}: how many of the group's parameter tensors differ."""
    out = {}
    for name in group_names:
        params = dict(model.get_submodule(name).named_parameters())
        changed = [not torch.equal(p.detach(), original_params[f"{name}.{k}"])
                   for k, p in params.items()]
        out[name] = "all" if all(changed) else ("some" if any(changed) else "none")
    return out


def _describe_step(k, name, state, order):
    randomized = [g for g in order if state[g] != "none"]
    if not randomized:
        return f"step {k} ({name!r}) changed no weights"
    return f"step {k} ({name!r}) has {randomized} re-initialized"


def _check_one_model(fn, label, model):
    from sanity_lib import randomization

    expected = randomization.randomization_order(model, order="top_down")
    before = _snapshot(model)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    try:
        steps = fn(model)
    except TypeError as err:
        raise CheckFailed(
            f"Calling your function as f(model) on {label} failed with TypeError: {err}\n"
            "Hint: define it as `def my_cascading(model, init=\"default\", seed=0):` and "
            "`yield name, randomized_model` inside the loop.") from None
    expect(steps is not None and hasattr(steps, "__iter__") and not isinstance(steps, nn.Module),
           f"Your function returned {type(steps).__name__}, not something to loop over.",
           hint="Use `yield name, randomized_model` inside the loop over the groups (a "
                "generator), or return a list of (name, model) pairs.")
    seen = []
    for k, item in enumerate(steps, start=1):
        expect(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
               and isinstance(item[1], nn.Module),
               f"Step {k} of your function gave {type(item).__name__}, not a pair "
               "(layer_name, randomized_model).",
               hint="`yield name, randomized` with the group's name (a str) and the model.")
        name, randomized = item
        expect(randomized is not model,
               f"Step {k} yielded the very model you were given, re-initialized in place.",
               hint="Work on `copy.deepcopy(model)`: the trained model must stay trained, "
                    "because step 0 (the original maps) and every later comparison need it.")
        # judge the step now, before the next step has a chance to change the same object
        seen.append((name, randomized, _changed_groups(randomized, params, expected)))
    names = [name for name, _, _ in seen]
    after = _snapshot(model)
    expect(all(torch.equal(before[k], after[k]) for k in before),
           f"Your function changed the model it was given ({label}): after the loop its "
           "weights are no longer the trained ones.",
           hint="Deep-copy first (`work = copy.deepcopy(model)`) and re-initialize the copy; "
                "`randomize_module` and `reset_parameters` change a module in place.")
    expect(names != expected[::-1] or len(expected) < 2,
           f"On {label} your steps come in the order {names}: that is bottom-up (input "
           f"first). The paper's cascading test goes top-down: {expected}.",
           hint="Loop over `reversed(sl.models.layer_groups(model))`: the groups come "
                "ordered input -> output.")
    expect(names == expected,
           f"On {label} your steps are named {names}; expected the layer groups from the "
           f"logits down, one per step: {expected}.",
           hint="One step per group of `sl.models.layer_groups(model)`, in reverse order, "
                "named by the group's name.")
    for k, (name, _, state) in enumerate(seen, start=1):
        should = expected[:k]
        partial = [g for g in should if state[g] == "some"]
        expect(not partial,
               f"On {label}, {_describe_step(k, name, state, expected)}, but only some of "
               f"the parameters of {partial} changed.",
               hint="Re-initialize every parameter of the group (weights, biases, batch-norm "
                    "scale and shift), e.g. with `sl.randomization.randomize_module(group, "
                    "init=init, seed=seed)`, which walks all of the group's submodules.")
        missing = [g for g in should if state[g] == "none"]
        if missing and k > 1 and state[name] == "all" and all(
                state[g] == "none" for g in should[:-1]):
            raise CheckFailed(
                f"On {label}, step {k} ({name!r}) has only {name!r} re-initialized: the "
                f"groups of the earlier steps, {should[:-1]}, are trained again. That is "
                "independent randomization, not cascading.\nHint: keep one working copy "
                "for the whole loop and re-initialize it a bit more at each step (copy "
                "the model once, before the loop; yield a copy of the working model).")
        expect(not missing,
               f"On {label}, {_describe_step(k, name, state, expected)}; at step {k} the "
               f"groups {should} should all be re-initialized (missing: {missing}).",
               hint="Cascading is cumulative: step k has the top k groups random.")
        extra = [g for g in expected[k:] if state[g] != "none"]
        expect(not extra,
               f"On {label}, {_describe_step(k, name, state, expected)}; at step {k} only "
               f"{should} should be re-initialized, but {extra} changed too.",
               hint="Re-initialize one more group per step, starting at the logits; the "
                    "groups below stay trained until their turn.")
    # every step's model must stay as it was yielded (a list of the steps must be right)
    for k, (name, randomized, state) in enumerate(seen, start=1):
        now = _changed_groups(randomized, params, expected)
        expect(now == state,
               f"On {label}, the model yielded at step {k} ({name!r}) changed after it was "
               f"yielded: now {_describe_step(k, name, now, expected)}. Your steps share one "
               "model object, so `list(my_cascading(model))` would give the last step "
               f"{len(seen)} times.",
               hint="Yield a copy of the working model at each step: "
                    "`yield name, copy.deepcopy(work)`.")


@register("ch3_ex1")
def _check_ex1(answer, **_):
    expect(callable(answer),
           f"The answer should be your function, got {type(answer).__name__}.",
           hint="Pass the function itself: `sl.grading.check(\"ch3_ex1\", my_cascading)`.")
    for label, model in _test_models():
        _check_one_model(answer, label, model)


# ----------------------------------------------------------------------------- helpers ex2/3

def _check_result(result, what):
    from sanity_lib.checks import SanityCheckResult

    expect(isinstance(result, SanityCheckResult),
           f"This check needs the result you computed, passed as result=...; got "
           f"{type(result).__name__}.",
           hint=f"`sl.grading.check(..., answer, result=result)` with the result of "
                f"{what}.")
    expect(result.settings.get("test") == "model_randomization"
           and result.settings.get("mode") == "cascading"
           and result.settings.get("order", "top_down") == "top_down",
           "The result passed as result= is not a top-down cascading model randomization "
           "test.", hint=f"Pass the result of {what}.")
    expect("spearman_abs" in result.metrics,
           "The result passed as result= has no spearman_abs values.",
           hint="Run the test with the default metrics (all four).")


def _mean_curves(result, metric="spearman_abs"):
    """{method: np.array of the mean over images at steps 1..K}."""
    table = result.table[result.table["metric"] == metric]
    means = table.groupby(["method", "step"])["value"].mean()
    return {m: np.array([means.get((m, k), np.nan) for k in range(1, len(result.layers))])
            for m in result.methods}


def _method_set(answer):
    return method_names(answer, example='failing = ["guided_backprop"]')


# ----------------------------------------------------------------------------- ex2

def failing_methods(result, threshold=FAIL_THRESHOLD, margin=FAIL_MARGIN, after=FAIL_AFTER):
    """(must, may): the methods that clearly fail, and those near the threshold.

    A method fails when its mean ``spearman_abs`` with the original map, read at the step
    ``after`` (cascading, so every group from the logits down to it is random), is at least
    ``threshold``. Methods within ``margin`` of the threshold may be named or not.

    Examples
    --------
    >>> must, may = failing_methods(result)          # doctest: +SKIP
    """
    expect(after in result.layers,
           f"The result has no step {after!r} (its steps are {result.layers}).",
           hint="Run the test on the MNIST CNN, whose groups are conv1, conv2, fc1, logits.")
    step = result.layers.index(after)
    curves = _mean_curves(result)
    values = {m: float(c[step - 1]) for m, c in curves.items()}
    must = {m for m, v in values.items() if v >= threshold + margin}
    may = {m for m, v in values.items() if abs(v - threshold) < margin}
    return must, may, values


@register("ch3_ex2")
def _check_ex2(answer, result=None, **_):
    _check_result(result, "`sl.model_randomization_test` on the trained MNIST CNN")
    named = _method_set(answer)
    must, may, values = failing_methods(result)
    unknown = sorted(named - set(values))
    expect(not unknown, f"{unknown} is not among the methods of your result "
           f"({result.methods}).", hint="Name methods that the test ran.")
    where = f"once `logits` and `{FAIL_AFTER}` are randomized"
    missed = sorted(must - named)
    expect(not missed,
           "You left out " + ", ".join(
               f"{m} (its maps still have a mean rank correlation of {values[m]:.2f} with "
               "the original)" for m in missed) + f" {where}: it fails the test.",
           hint=f"A method fails when its maps stay similar (spearman_abs >= "
                f"{FAIL_THRESHOLD}) although the model's top layers are random; read "
                f"`result.summary()` at layer {FAIL_AFTER!r}.")
    wrong = sorted(named - must - may)
    expect(not wrong,
           "You named " + ", ".join(
               f"{m} (its mean rank correlation drops to {values[m]:.2f})" for m in wrong)
           + f" {where}: its maps change, so it passes.",
           hint="Passing means the map changes when the model does; only methods whose "
                f"similarity stays at or above {FAIL_THRESHOLD} fail.")


# ----------------------------------------------------------------------------- ex3

def change_layers(result, method="guided_backprop", start=CHANGE_START, clear=CHANGE_CLEAR):
    """The layers at which ``method``'s map can be said to first change visibly.

    For the curve of the mean ``spearman_abs`` over images, and for each image's own curve
    (the explorer shows one image at a time), the window runs from the first step whose
    similarity falls below ``start`` (the map begins to change) to the first step below
    ``clear`` (it has clearly changed; the last step if it never gets there). A layer is
    accepted when it lies in one of these windows.

    Returns
    -------
    list of str
        Accepted layer names, in randomization order; empty when no curve falls below
        ``start``.

    Examples
    --------
    >>> change_layers(result)                        # doctest: +SKIP
    ['stage6', 'stage5', 'stage4']
    """
    expect(method in result.methods,
           f"The result has no {method} maps (methods: {result.methods}).",
           hint=f"Run the test with {method!r} among the methods.")
    table = result.table[(result.table["metric"] == "spearman_abs")
                         & (result.table["method"] == method)]
    per_image = table.pivot_table(index="image", columns="step", values="value")
    per_image = per_image.reindex(columns=range(1, len(result.layers)))
    curves = [per_image.mean(axis=0).to_numpy()] + [row.to_numpy() for _, row in
                                                     per_image.iterrows()]

    def first_below(values, level):
        below = np.flatnonzero(values < level)  # NaN compares False: never "below"
        return int(below[0]) + 1 if below.size else None  # steps are numbered from 1

    steps = set()
    for values in curves:
        lo = first_below(values, start)
        if lo is None:
            continue
        hi = first_below(values, clear)
        steps.update(range(lo, (hi if hi is not None else len(values)) + 1))
    return [result.layers[k] for k in sorted(steps)]


@register("ch3_ex3")
def _check_ex3(answer, result=None, **_):
    _check_result(result, "`sl.model_randomization_test` on EfficientNet-Lite0 (cascading)")
    expect(isinstance(answer, str),
           f"The answer should be a layer name (a str), got {type(answer).__name__}.",
           hint="Read the layer off the explorer's slider, e.g. \"stage6\".")
    layer = answer.strip()
    expect(layer in result.layers[1:],
           f"{answer!r} is not one of the sweep's randomized layers: {result.layers[1:]}.",
           hint="Copy the name shown on the explorer's layer slider.")
    accepted = change_layers(result)
    expect(accepted, "Guided Backprop's maps never change much in your result, so there is "
           "no layer to name.", hint="Did the sweep run to the input layer?")
    k = result.layers.index(layer)
    curve = _mean_curves(result)["guided_backprop"]
    first, last = result.layers.index(accepted[0]), result.layers.index(accepted[-1])
    expect(k >= first,
           f"At {layer!r} Guided Backprop's map has not changed yet: its mean rank "
           f"correlation with the original is still {curve[k - 1]:.2f}.",
           hint="Move the slider further towards the input and watch the Guided Backprop "
                "map (abs), not the Gradient's.")
    expect(k <= last or layer in accepted,
           f"{layer!r} is too late: Guided Backprop's map had already changed clearly "
           f"before it (mean rank correlation {curve[last - 1]:.2f} at {accepted[-1]!r}).",
           hint="Find the first layer where the map starts to look different.")
    expect(layer in accepted,
           f"{layer!r} is not where Guided Backprop's map first changes.",
           hint="Watch the map and the rank correlation under it while you move the slider.")
