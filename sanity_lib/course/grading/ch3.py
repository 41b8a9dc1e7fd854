"""Checks of the exercise notebook of chapter 3, "The model parameter randomization test".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch3_ex1``  a generator function ``f(model, init=..., seed=0)`` yielding
             ``(layer_name, randomized_model)``: cascading randomization from the
             logits down, cumulative, one fresh copy per step, the model given
             left untouched, ``init`` and ``seed`` obeyed. Written by hand: calling
             the library's loops (:func:`sanity_lib.randomization.cascading` and its
             siblings) fails the check; ``randomize_module`` is allowed.
``ch3_ex2``  the methods that *fail* the test on the MNIST CNN by the course's rule
             (:meth:`~sanity_lib.checks.SanityCheckResult.verdict`): the 95 % interval
             of the mean ``spearman_abs`` with the original map, rescaled by the noise
             floor, stays at or above :data:`FAIL_THRESHOLD` once ``logits`` and
             ``fc1`` are randomized (methods the rule cannot tell may be named or not);
             needs ``result=``: the student's cascading test of the *trained* CNN
             with the paper's eight methods at the book's settings
             (:func:`sanity_lib.course.book.book_methods`),
             ``init="truncated_normal"``, two test digits of every class
``ch3_ex3``  ``{"guided_backprop": layer, "gradient": layer}``: for both methods, the
             layer at which the map first changes visibly in the cascading explorer
             (EfficientNet-Lite0); needs ``result=``: the student's full cascading
             sweep of the ImageNet-trained network, ``init="truncated_normal"``
``ch3_ex4``  a function ``my_similarity_curve(model, x, method="gradient", seed=0)``
             returning ``[("original", 1.0), (layer, mean), ...]``: the model
             randomization test's similarity curve written by hand, one pair per
             cascading step, each step's maps compared with the *original* maps by
             ``spearman_abs`` and averaged over the images; every model explains its
             own top class. Calling ``sl.model_randomization_test`` fails the check.
===========  ===================================================================

ex1 calls the student's function with ``init`` passed by keyword (it never relies on the
default of the student's signature) and judges every step by which parameters changed; the
library's own loop is the reference for the order of the groups. The checks of ex2 and ex3
first validate the result they are given (test, mode, order, init, methods, metrics, every
layer, and the trained model: for MNIST, the model's predictions on the result's digits must be
right; for EfficientNet-Lite0, the weights must be the shipped ones), then judge the answer
against that result, accepting either answer where the result cannot decide: in ex2 a method
whose interval straddles the threshold (the book's rule says "cannot tell"), in ex3 a layer
close to the threshold. Only the clear cases must be right. No number is hard-coded.

Examples
--------
>>> import copy, sanity_lib as sl
>>> def my_cascading(model, init="truncated_normal", seed=0):
...     work = copy.deepcopy(model)
...     for name, group in reversed(sl.models.layer_groups(work)):
...         sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
...         yield name, copy.deepcopy(work)
>>> sl.grading.check("ch3_ex1", my_cascading)
'ch3_ex1: correct. Well done!'
>>> def calls_the_library(model, init="truncated_normal", seed=0):
...     return sl.randomization.cascading(model, init=init, seed=seed)
>>> sl.grading.check("ch3_ex1", calls_the_library)
Traceback (most recent call last):
...
sanity_lib.course.grading.CheckFailed: Your answer calls sanity_lib.randomization.cascading: the exercise asks you to write the cascading loop yourself.
Hint: ...
"""
import copy
import functools
import math

import numpy as np
import torch
from torch import nn

from sanity_lib.checks.result import PASS_THRESHOLD

from . import TRAINED_ACCURACY, CheckFailed, expect, method_names, register  # noqa: F401

__all__ = ["failing_methods", "change_layers", "FAIL_THRESHOLD", "FAIL_AFTER",
           "CHANGE_START", "CHANGE_CLEAR", "TRAINED_ACCURACY", "EX1_INIT", "EX1_OTHER_INIT"]

#: ex2: a method fails when its retained spearman_abs after ``FAIL_AFTER`` is at least this
#: across its whole 95 % interval (the course's rule, :data:`sanity_lib.checks.PASS_THRESHOLD`).
FAIL_THRESHOLD = PASS_THRESHOLD
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


#: ex1: the init passed to the student's function for the step-by-step checks (the course's
#: setting) and the other one it is run with to see that ``init`` is obeyed.
EX1_INIT = "truncated_normal"
EX1_OTHER_INIT = "default"

_FORBID_HINT = ("Loop over the groups yourself and re-initialize each with "
                "`sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)`; "
                "sl.randomization.cascading is what the check compares with.")


def _library_loops():
    """The library's own randomization loops, which the answer must not call."""
    from sanity_lib import randomization

    return [randomization.cascading, randomization.independent, randomization.gaussian_noise,
            randomization._cascade, randomization._one_at_a_time]


def _usage():
    """The signature to show, with the library's own default for ``init`` (whatever it is)."""
    import inspect

    from sanity_lib import randomization

    default = inspect.signature(randomization.cascading).parameters["init"].default
    return f"my_cascading(model, init={default!r}, seed=0)"


def _run_steps(fn, label, model, expected, params, init, seed):
    """Call ``fn(model, init=init, seed=seed)`` and walk its steps, with the library's loops
    forbidden; return ``[(name, randomized_model, {group: "all" | "some" | "none"})]``, each
    step judged as soon as it is yielded."""
    from . import call_student, describe, forbid_calls

    usage = _usage()
    seen = []
    with forbid_calls("the cascading loop", functions=_library_loops(), hint=_FORBID_HINT):
        steps = call_student(fn, model, init=init, seed=seed, name="my_cascading",
                             usage=usage, on=f"on {label}")
        expect(steps is not None and hasattr(steps, "__iter__")
               and not isinstance(steps, (nn.Module, str, torch.Tensor)),
               f"Your function returned {describe(steps)}, not something to loop over.",
               hint="Use `yield name, randomized_model` inside the loop over the groups (a "
                    "generator), or return a list of (name, model) pairs.")
        iterator = iter(steps)
        for k in range(1, len(expected) + 2):  # one more than expected: a too-long loop shows
            try:
                item = next(iterator)
            except StopIteration:
                break
            except (CheckFailed, NotImplementedError):
                raise
            except Exception as err:  # noqa: BLE001 (any error of the student's loop)
                raise CheckFailed(
                    f"Your `my_cascading` raised {type(err).__name__} at step {k} on {label} "
                    f"(called as my_cascading(model, init={init!r}, seed={seed})): {err}\n"
                    "Hint: Run it yourself on the MNIST CNN; every step should re-initialize "
                    "one more group of the working copy.") from None
            expect(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                   and isinstance(item[1], nn.Module),
                   f"Step {k} of your function gave {describe(item)}, not a pair "
                   "(layer_name, randomized_model).",
                   hint="`yield name, randomized` with the group's name (a str) and the model.")
            name, randomized = item
            expect(randomized is not model,
                   f"Step {k} yielded the very model you were given, re-initialized in place.",
                   hint="Work on `copy.deepcopy(model)`: the trained model must stay trained, "
                        "because step 0 (the original maps) and every later comparison need "
                        "it.")
            # judge the step now, before the next step has a chance to change the same object
            seen.append((name, randomized, _changed_groups(randomized, params, expected)))
    return seen


def _check_one_model(fn, label, model):
    from sanity_lib import randomization

    expected = randomization.randomization_order(model, order="top_down")
    before = _snapshot(model)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    seen = _run_steps(fn, label, model, expected, params, EX1_INIT, 0)
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
    return expected, params, seen[-1][1]


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def _check_arguments(fn, label, model, expected, params, last):
    """The same ``init`` and ``seed`` give the same weights; another ``init`` or another
    ``seed`` gives other weights. ``last``: the final step's model of the first run."""
    def final(init, seed):
        return _run_steps(fn, label, model, expected, params, init, seed)[-1][1]

    expect(_same_weights(final(EX1_INIT, 0), last),
           f"On {label}, two runs with init={EX1_INIT!r} and seed=0 gave different weights: "
           "your randomization is not reproducible.",
           hint="Draw the new weights from the seed you are given: "
                "`sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)`"
                " (no unseeded `torch.randn` or `reset_parameters` on the global RNG).")
    expect(not _same_weights(final(EX1_INIT, 1), last),
           f"On {label}, seed=0 and seed=1 gave the same weights: your function ignores "
           "`seed`.", hint="Pass `seed=seed` on to `randomize_module`.")
    expect(not _same_weights(final(EX1_OTHER_INIT, 0), last),
           f"On {label}, init={EX1_INIT!r} and init={EX1_OTHER_INIT!r} gave the same weights: "
           "your function ignores `init` (the check passes it by keyword, as "
           "`sl.model_randomization_test` does).",
           hint="Pass `init=init` on to `randomize_module`; do not fix the scheme inside "
                "the loop.")


@register("ch3_ex1")
def _check_ex1(answer, **_):
    from . import describe

    got = (f"a model ({type(answer).__name__})" if isinstance(answer, nn.Module)
           else describe(answer))
    expect(callable(answer) and not isinstance(answer, (type, nn.Module)),
           f"The answer should be your function, got {got}.",
           hint="Pass the function itself: `sl.grading.check(\"ch3_ex1\", my_cascading)`.")
    runs = [(label, model, *_check_one_model(answer, label, model))
            for label, model in _test_models()]
    # the steps are right on every model; now init and seed (on the MNIST CNN)
    _check_arguments(answer, *runs[0])


# ----------------------------------------------------------------------------- helpers ex2/3

#: ex2: the call the exercise asks for, and what the result must hold.
EX2_WHAT = ('sl.model_randomization_test(cnn, xd, sl.course.book.book_methods(), '
            'mode="cascading", init="truncated_normal", cache=True)')
EX2_SETTINGS = {"order": "top_down", "init": "truncated_normal", "model": "MnistCNN"}
#: ex2: the paper's settings of the two methods that have a cost knob.
EX2_METHOD_SETTINGS = {"integrated_gradients": {"n_steps": 50}, "smoothgrad": {"n_samples": 50}}
#: ex2: test digits of every class the result must hold (the exercise takes two per class).
EX2_PER_CLASS = 2
#: ex3: the call the exercise asks for, and what the result must hold.
EX3_WHAT = ('sl.model_randomization_test(model, x, ["gradient", "guided_backprop"], '
            'init="truncated_normal", metrics=["spearman_abs", "spearman_diverging"], '
            'cache=True)')
EX3_METHODS = ("guided_backprop", "gradient")
EX3_SETTINGS = {"order": "top_down", "init": "truncated_normal", "model": "EfficientNetLite0"}
_METRICS = ("spearman_abs", "spearman_diverging")


def _every_layer(result, model_class, what):
    """The result's steps must be every layer group of the model, from the logits down."""
    expected = list(reversed(model_class.layer_group_names))
    steps = list(result.layers[1:])
    missing = [g for g in expected if g not in steps]
    expect(steps == expected,
           f"The result passed as result= has the steps {steps}; the exercise's test "
           f"randomizes every layer group of {model_class.__name__}, from the logits down: "
           f"{expected}" + (f" (missing: {missing})." if missing else "."),
           hint=f"Run `{what}` without `groups=` so that the sweep goes down to the input.")


def _check_ex2_result(result):
    from sanity_lib.checks import DEFAULT_METHODS
    from sanity_lib.models.mnist import MnistCNN

    from . import check_result, check_trained_mnist

    check_result(result, test="model_randomization", mode="cascading", what=EX2_WHAT,
                 methods=DEFAULT_METHODS, metrics=_METRICS, settings=EX2_SETTINGS,
                 method_settings=EX2_METHOD_SETTINGS, min_images=10 * EX2_PER_CLASS)
    _every_layer(result, MnistCNN, EX2_WHAT)
    check_trained_mnist(result, what=EX2_WHAT, min_per_class=EX2_PER_CLASS)


_EN_FINGERPRINT = None


def _efficientnet_fingerprint():
    """The fingerprint of the ImageNet-trained EfficientNet-Lite0 (loaded once)."""
    global _EN_FINGERPRINT
    if _EN_FINGERPRINT is None:
        from sanity_lib import models
        from sanity_lib._cache import fingerprint

        _EN_FINGERPRINT = fingerprint(models.efficientnet_lite0())
    return _EN_FINGERPRINT


def _check_ex3_result(result):
    from sanity_lib.models.efficientnet import EfficientNetLite0

    from . import check_result

    check_result(result, test="model_randomization", mode="cascading", what=EX3_WHAT,
                 methods=EX3_METHODS, metrics=_METRICS, settings=EX3_SETTINGS)
    _every_layer(result, EfficientNetLite0, EX3_WHAT)
    expect(result.settings.get("model_fingerprint") == _efficientnet_fingerprint(),
           "The result passed as result= was not computed on the ImageNet-trained "
           "EfficientNet-Lite0 (its weights differ from the shipped ones: "
           "`pretrained=False`, or a model you changed?). The test asks how the maps of the "
           "*trained* network change.",
           hint=f"`model = sl.models.efficientnet_lite0()`, then `{EX3_WHAT}`.")


def _mean_curves(result, metric="spearman_abs"):
    """{method: np.array of the mean over images at steps 1..K}."""
    table = result.table[result.table["metric"] == metric]
    means = table.groupby(["method", "step"])["value"].mean()
    return {m: np.array([means.get((m, k), np.nan) for k in range(1, len(result.layers))])
            for m in result.methods}


def _method_set(answer):
    return method_names(answer, example='failing = ["guided_backprop"]')


# ----------------------------------------------------------------------------- ex2

def failing_methods(result, threshold=FAIL_THRESHOLD, after=FAIL_AFTER):
    """(must, may, values): the methods that fail by the course's rule, those it cannot tell,
    and every method's mean ``spearman_abs`` at the step ``after``.

    The rule is :meth:`SanityCheckResult.verdict` at ``after`` (cascading, so every group
    from the logits down to it is random): "fails" when the whole 95 % interval of the
    similarity, rescaled by the noise floor, keeps at least ``threshold``; "cannot tell"
    when it straddles ``threshold``.

    Examples
    --------
    >>> must, may, values = failing_methods(result)          # doctest: +SKIP
    """
    expect(after in result.layers,
           f"The result has no step {after!r} (its steps are {result.layers}).",
           hint="Run the test on the MNIST CNN, whose groups are conv1, conv2, fc1, logits.")
    step = result.layers.index(after)
    curves = _mean_curves(result)
    values = {m: float(c[step - 1]) for m, c in curves.items()}
    calls = result.verdict(at=after, metric="spearman_abs",
                           threshold=threshold).set_index("method")["verdict"]
    must = {m for m in values if calls[m] == "fails"}
    may = {m for m in values if calls[m] == "cannot tell"}
    return must, may, values


@register("ch3_ex2")
def _check_ex2(answer, result=None, **_):
    _check_ex2_result(result)
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
           hint=f"A method fails when its maps stay similar (the interval of spearman_abs, "
                f"rescaled by the noise floor, at or above {FAIL_THRESHOLD}) although the "
                f"model's top layers are random; read `result.verdict(at={FAIL_AFTER!r})` or "
                f"`result.interval(method, {FAIL_AFTER!r})`.")
    wrong = sorted(named - must - may)
    expect(not wrong,
           "You named " + ", ".join(
               f"{m} (its mean rank correlation drops to {values[m]:.2f})" for m in wrong)
           + f" {where}: its maps change, so it passes.",
           hint="Passing means the map changes when the model does; only methods whose "
                f"similarity stays at or above {FAIL_THRESHOLD}, across its whole interval, "
                "fail.")


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


_EX3_EXAMPLE = '{"guided_backprop": "head", "gradient": "stage2"}'
_LABELS = {"guided_backprop": "Guided Backprop", "gradient": "the Gradient"}


def _ex3_answer(answer, result):
    """``{method: layer}`` with a layer for every method of :data:`EX3_METHODS`."""
    from . import describe, method_name

    expect(isinstance(answer, dict),
           f"The answer should be a dict with the layer for each of the two methods, got "
           f"{describe(answer)}.",
           hint=f"e.g. `first_change = {_EX3_EXAMPLE}` (names from the explorer's slider).")
    layers = {}
    for key, layer in answer.items():
        method = method_name(key, available=result.methods)
        expect(method in EX3_METHODS,
               f"{method} is not one of the methods the exercise looks at "
               f"({list(EX3_METHODS)}).", hint=f"e.g. `first_change = {_EX3_EXAMPLE}`.")
        expect(method not in layers, f"The answer names {method} twice.",
               hint="One layer per method.")
        expect(isinstance(layer, str),
               f"answer[{key!r}] should be a layer name (a str), got {describe(layer)}.",
               hint="Read the layer off the explorer's slider, e.g. \"stage1\".")
        layers[method] = layer.strip()
    missing = [m for m in EX3_METHODS if m not in layers]
    expect(not missing,
           f"The answer has no layer for {missing}: the exercise asks where the map of "
           f"each of {list(EX3_METHODS)} first changes.",
           hint=f"Switch the explorer to each method in turn; e.g. `first_change = "
                f"{_EX3_EXAMPLE}`.")
    return layers


def _check_first_change(method, layer, result, curves):
    label = _LABELS.get(method, method)
    expect(layer in result.layers[1:],
           f"{layer!r} (for {method}) is not one of the sweep's randomized layers: "
           f"{result.layers[1:]}.",
           hint="Copy the name shown on the explorer's layer slider.")
    accepted = change_layers(result, method)
    expect(accepted, f"{label}'s maps never change much in your result, so there is no "
           "layer to name.", hint="Did the sweep run to the input layer?")
    k = result.layers.index(layer)
    curve = curves[method]
    first, last = result.layers.index(accepted[0]), result.layers.index(accepted[-1])
    expect(k >= first,
           f"At {layer!r} {label}'s map has not changed yet: its mean rank correlation "
           f"with the original is still {curve[k - 1]:.2f}.",
           hint=f"Move the slider further towards the input and watch the {label} map "
                "(abs), not the other method's.")
    expect(k <= last or layer in accepted,
           f"{layer!r} is too late for {method}: {label}'s map had already changed clearly "
           f"before it (mean rank correlation {curve[last - 1]:.2f} at {accepted[-1]!r}).",
           hint="Find the first layer where the map starts to look different.")
    expect(layer in accepted,
           f"{layer!r} is not where {label}'s map first changes.",
           hint="Watch the map and the rank correlation under it while you move the slider.")


@register("ch3_ex3")
def _check_ex3(answer, result=None, **_):
    _check_ex3_result(result)
    layers = _ex3_answer(answer, result)
    curves = _mean_curves(result)
    for method in EX3_METHODS:
        _check_first_change(method, layers[method], result, curves)


# ----------------------------------------------------------------------------- ex4

#: ex4: the signature the exercise asks for.
EX4_USAGE = 'my_similarity_curve(model, x, method="gradient", seed=0)'
#: ex4: how close the student's means must be to the library's (both average the same
#: per-image rank correlations; only float rounding may differ).
EX4_TOLERANCE = 1e-4
_EX4_FORBID_HINT = ("Explain with `sl.saliency.explain`, randomize with "
                    "`sl.randomization.cascading(model, seed=seed)` and compare with "
                    "`sl.similarity.spearman(original, maps, mode=\"abs\")`; the test itself "
                    "is what the check compares your loop with.")


def _ex4_inputs():
    """A small CNN (seeded, so maps are never constant) and four test digits of classes 0-3."""
    from sanity_lib import data, models

    digits, labels = data.load_mnist("test")
    pick = torch.cat([torch.nonzero(labels == c)[:1, 0] for c in range(4)])
    return models.mnist_cnn(seed=0), digits[pick]


def _ex4_reference(model, x, method, seed):
    """The library's curve, ``[(layer, mean spearman_abs)]``."""
    from sanity_lib.checks import model_randomization_test

    result = model_randomization_test(model, x, [method], metrics=["spearman_abs"], seed=seed,
                                      progress=False, keep_maps=False)
    curve = result.curve(method, "spearman_abs")
    return list(zip(curve["layer"], curve["mean"].astype(float)))


def _ex4_mistake(model, x, method, seed, *, against="original", mode="abs", target=None,
                 order="top_down"):
    """The curve of a typical mistake, recomputed: compared ``against`` the previous step,
    in another ``mode``, for the trained model's ``target``, or in another ``order``."""
    from sanity_lib import randomization, saliency, similarity

    original = saliency.explain(model, x, method)
    with torch.no_grad():
        targets = model(x).argmax(1)
    out, previous = [("original", 1.0)], original
    for name, randomized in randomization.cascading(model, seed=seed, order=order):
        maps = saliency.explain(randomized, x, method,
                                target=targets if target == "original" else None)
        base = previous if against == "previous" else original
        out.append((name, float(np.nanmean(similarity.spearman(base, maps, mode=mode).numpy()))))
        previous = maps
    return out


def _ex4_curve(fn, model, x, method, seed):
    """Call the student's function (the test's own loop forbidden) and read its curve."""
    from sanity_lib.checks import model_randomization_test, sweep

    from . import call_student, describe, forbid_calls

    with forbid_calls("the similarity curve of the cascading test",
                      functions=[model_randomization_test, sweep.run_sweep],
                      hint=_EX4_FORBID_HINT):
        got = call_student(fn, model, x, method=method, seed=seed, name="my_similarity_curve",
                           usage=EX4_USAGE, on=f"on the MNIST CNN with method={method!r}")
    shape_hint = ('Return a list of (layer_name, mean) pairs: [("original", 1.0), '
                  '("logits", 0.42), ...].')
    expect(isinstance(got, (list, tuple)) and all(
               isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str)
               for p in got),
           f"Your function returned {describe(got)}, not a list of (layer_name, mean) pairs.",
           hint=shape_hint)
    curve = []
    for name, value in got:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise CheckFailed(f"The value for {name!r} is {describe(value)}, not a number.\n"
                              f"Hint: {shape_hint} Average with `.mean()` and turn the "
                              "result into a float.") from None
        curve.append((name, value))
    return curve


def _ex4_same(a, b):
    return [n for n, _ in a] == [n for n, _ in b] and all(
        math.isclose(u, v, abs_tol=EX4_TOLERANCE) or (math.isnan(u) and math.isnan(v))
        for (_, u), (_, v) in zip(a, b))


def _ex4_diagnose(curve, model, x, method, seed):
    """Why a curve differs from the library's: the typical mistakes, recomputed."""
    mistakes = [
        ({"against": "previous"}, "You compared each step's maps with the maps of the step "
         "before; the test compares every step with the *original* maps (step 0), so the "
         "curve shows how much of the trained network's explanation is left.",
         "Keep the step-0 maps in a variable and compare every later step with them."),
        ({"mode": "diverging"}, "You compared signed maps (mode='diverging'); the exercise "
         "asks for the paper's headline comparison, the absolute values (mode='abs').",
         'Use `sl.similarity.spearman(original, maps, mode="abs")`.'),
        ({"target": "original"}, "Your randomized models explain the class the *trained* "
         "model predicted; in the test (and the paper's code) every model explains its own "
         "top class.", "Call `sl.saliency.explain(randomized, x, method)` without a target."),
        ({"order": "bottom_up"}, "Your curve goes bottom-up (the input layer first); the "
         "paper's cascading test goes from the logits down.",
         "`sl.randomization.cascading(model, seed=seed)` with its default order."),
    ]
    for variant, message, hint in mistakes:
        if _ex4_same(curve, _ex4_mistake(model, x, method, seed, **variant)):
            raise CheckFailed(f"{message}\nHint: {hint}")


@register("ch3_ex4")
def _check_ex4(answer, **_):
    model, x = _ex4_inputs()
    for method, seed in (("gradient", 0), ("guided_backprop", 1)):
        curve = _ex4_curve(answer, model, x, method, seed)
        ref = _ex4_reference(model, x, method, seed)
        names, ref_names = [n for n, _ in curve], [n for n, _ in ref]
        expect(names[:1] == ["original"] and math.isclose(curve[0][1], 1.0),
               f"Your curve starts with {curve[:1]}; it should start with step 0, "
               "('original', 1.0): the original maps compared with themselves.",
               hint="Put (\"original\", 1.0) first, then one pair per randomized step.")
        if names != ref_names:
            _ex4_diagnose(curve, model, x, method, seed)
            raise CheckFailed(f"Your curve's steps are {names}; the cascading test's are "
                              f"{ref_names}.\nHint: One pair per step of "
                              "`sl.randomization.cascading(model, seed=seed)`, named by its "
                              "layer.")
        if not _ex4_same(curve, ref):
            _ex4_diagnose(curve, model, x, method, seed)
            listing = ", ".join(f"{n}: yours {u:.3f}, expected {v:.3f}"
                                for (n, u), (_, v) in zip(curve, ref)
                                if not math.isclose(u, v, abs_tol=EX4_TOLERANCE))
            raise CheckFailed(
                f"With method={method!r} and seed={seed} your curve differs from the "
                f"cascading test's ({listing}).\nHint: Explain x under the trained model once, "
                "then under every model of `sl.randomization.cascading(model, seed=seed)`; "
                "compare each with the original maps by "
                "`sl.similarity.spearman(original, maps, mode=\"abs\")` and average over the "
                "images. Use the `method` and `seed` you are given.")
