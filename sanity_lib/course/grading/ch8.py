"""Checks of the exercise notebook of chapter 8, "Sanity-check your own model".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch8_ex1``  the layer groups of a model for a cascading test, as for
             :func:`sanity_lib.models.layer_groups` (names, ``(name, path)`` or
             ``(name, module)`` pairs); needs ``model=`` and optionally ``x=``
             (inputs, to check the forward order). Good groups: modules of the
             model, in forward order, no overlaps, every parameter covered, at least
             :data:`MIN_GROUPS` of them, the final linear layer a group of its own
             and the last one
``ch8_ex2``  the methods of :data:`sanity_lib.checks.DEFAULT_METHODS` that can
             explain a given model (those for which
             :func:`sanity_lib.saliency.explain` does not raise
             :class:`~sanity_lib.saliency.UnsupportedModelError`); needs ``model=``
             and ``x=``
``ch8_ex3``  the methods that fail a cascading test judged at one step by the
             course's rule (:meth:`~sanity_lib.checks.SanityCheckResult.verdict`):
             the whole 95 % interval keeps at least :data:`FAIL_THRESHOLD` of the
             similarity, on the scale where the noise floor is 0 and identical maps
             are 1; needs ``result=`` and ``by=`` (a layer name), optionally
             ``metric=`` (default ``"spearman_abs"``)
``ch8_ex4``  the numbers of the true statements among :data:`STATEMENTS`
===========  ===================================================================

ex3 judges the answer against the result the student computed, by the same rule as the book:
a method that fails must be named, one that passes must not, and one the rule cannot tell
(its interval straddles the threshold) may be named or not. No measured number is
hard-coded. The result is validated first (a cascading model randomization test holding the
metric), and method names are read through the registry's aliases. A missing or wrong context
(no model, no result, a step the result does not have) is refused in plain words.

Examples
--------
>>> import sanity_lib as sl
>>> sl.grading.check("ch8_ex1", ["conv1", "conv2", "fc1", "logits"],
...                  model=sl.models.mnist_cnn())
'ch8_ex1: correct. Well done!'
>>> sl.grading.check("ch8_ex4", {2, 3, 6})
'ch8_ex4: correct. Well done!'
"""
import numbers
import warnings

import torch
from torch import nn

from sanity_lib.checks.result import PASS_THRESHOLD

from . import CheckFailed, check_result, describe, expect, method_name, register

__all__ = ["MIN_GROUPS", "FAIL_THRESHOLD", "STATEMENTS", "TRUE_STATEMENTS",
           "explainable_methods", "failing_methods"]

#: ex1: fewer groups than this make a cascading curve with too few points to read.
MIN_GROUPS = 4
#: ex3: a method fails when at least this fraction of its similarity is left (the
#: course's rule, :data:`sanity_lib.checks.PASS_THRESHOLD`).
FAIL_THRESHOLD = PASS_THRESHOLD

#: ex4: the statements, numbered from 1, and why each is true or false.
STATEMENTS = {
    1: ("A saliency method that passes both sanity checks gives faithful explanations.",
        False, "Passing is necessary, not sufficient: a map of random noise passes both "
               "tests and explains nothing."),
    2: ("If a method's maps stay similar after the top layers are randomized, the test gives "
        "no evidence that its maps show what those layers learned.", True,
        "That is the logic of the model parameter randomization test. It is worded as a lack "
        "of evidence on purpose: the stronger claim, that such maps *cannot* show what the "
        "layers learned, is contested, since a similarity measure can miss differences that "
        "matter and a randomized network keeps part of the trained one's behaviour (Binder et "
        "al. 2023; Yona & Greenfeld 2021)."),
    3: ("A method that returns random noise, whatever the model, passes the model "
        "parameter randomization test.", True,
        "Its maps change from step to step, so their similarity sits at the noise floor: "
        "passing says nothing about quality."),
    4: ("Gradient x Input fails in absolute value, so its signed maps do not depend on "
        "the model either.", False,
        "Its signed maps change at once (their rank correlation falls to the noise "
        "floor); the absolute maps look alike because both are shaped by the input."),
    5: ("A verdict found on one architecture holds for every architecture.", False,
        "Guided Backprop fails the data randomization test on the MNIST CNN and not on "
        "the MLP (chapter 4): run the checks on the model you explain."),
    6: ("The step at which a cascading test is judged should be chosen before looking at "
        "the curves.", True,
        "Choosing it afterwards lets you make a method pass or fail at will."),
}
#: ex4: the numbers of the true statements.
TRUE_STATEMENTS = frozenset(k for k, (_, truth, _) in STATEMENTS.items() if truth)


# ----------------------------------------------------------------------------- ex1

@register("ch8_ex1")
def _check_groups(answer, model=None, x=None):
    from sanity_lib.models import layer_groups
    from sanity_lib.models import group_problems

    expect(isinstance(model, nn.Module),
           f"ch8_ex1 needs the model the groups are for, passed as model=...; got "
           f"{describe(model)}.", hint='sl.grading.check("ch8_ex1", groups, model=model, x=x)')
    expect(isinstance(answer, (list, tuple)) and not isinstance(answer, str),
           f"Your answer should be a list of groups, got {describe(answer)}.",
           hint="e.g. [('stem', 'conv1'), ..., ('logits', 'fc')]: names of submodules, or "
                "(name, path) pairs.")
    try:
        with warnings.catch_warnings():  # overlapping groups are reported by the check
            warnings.simplefilter("ignore", UserWarning)
            resolved = layer_groups(model, groups=list(answer))
    except (TypeError, ValueError) as err:
        raise CheckFailed(f"These groups are not submodules of the model: {err}\nHint: list "
                          "the candidates with sl.models.list_modules(model, x).") from None
    problems = group_problems(model, list(answer), x)
    expect(not problems, "Your grouping has a problem: " + " ".join(problems),
           hint="sl.models.group_problems(model, groups, x) says the same; fix each item.")
    expect(len(resolved) >= MIN_GROUPS,
           f"Only {len(resolved)} groups: a cascading curve with so few steps can hardly be "
           "read.", hint="Use the model's blocks (stages), not two or three big parts.")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    last_name, last = resolved[-1]
    if linears:
        final = linears[-1]
        own = {id(p) for p in last.parameters()}
        expect(own == {id(p) for p in final.parameters()},
               f"The last group, {last_name!r}, is not the final linear layer alone.",
               hint="Keep the logits layer a group of its own, listed last: cascading "
                    "randomization starts with it, as in the paper.")
    names = [n for n, _ in resolved]
    expect(len(set(names)) == len(names), "Two groups have the same name.",
           hint="Rename them with (name, path) pairs.")


# ----------------------------------------------------------------------------- ex2

def explainable_methods(model, x):
    """The methods of :data:`sanity_lib.checks.DEFAULT_METHODS` that can explain ``model``
    on ``x[:1]`` (cheap settings), in that order."""
    from sanity_lib.checks import DEFAULT_METHODS
    from sanity_lib.saliency import UnsupportedModelError, explain

    cheap = {"integrated_gradients": {"n_steps": 2}, "smoothgrad": {"n_samples": 2},
             "integrated_gradients_smoothgrad": {"n_samples": 2, "n_steps": 2}}
    ok = []
    for method in DEFAULT_METHODS:
        try:
            explain(model, x[:1], method, **cheap.get(method, {}))
        except UnsupportedModelError:
            continue
        ok.append(method)
    return ok


def _method_list(answer, what="Your answer"):
    """The set of canonical names in the student's list (names, labels or aliases)."""
    from sanity_lib import saliency

    if isinstance(answer, str):
        answer = [answer]
    try:
        items = list(answer)
    except TypeError:
        raise CheckFailed(f"{what} should be a list of method names, got "
                          f"{describe(answer)}.\nHint: e.g. ['gradient', 'gradcam'].") \
            from None
    unknown = [n for n in items if not isinstance(n, str) or saliency.lookup(n) is None]
    expect(not unknown, f"{unknown} are not method names.",
           hint=f"Use the names of sl.saliency.METHODS, e.g. {list(saliency.METHODS[:3])}.")
    return {method_name(n) for n in items}


@register("ch8_ex2")
def _check_explainable(answer, model=None, x=None):
    expect(isinstance(model, nn.Module) and isinstance(x, torch.Tensor),
           f"ch8_ex2 needs the model and its inputs, passed as model=... and x=...; got "
           f"model={describe(model)}, x={describe(x)}.",
           hint='sl.grading.check("ch8_ex2", methods, model=leaky, x=x)')
    given = _method_list(answer)
    right = set(explainable_methods(model, x))
    wrong = sorted(given - right)
    expect(not wrong,
           f"{wrong} cannot explain this model: the library raises UnsupportedModelError.",
           hint="Guided Backprop (and Guided GradCAM, which uses it) has a rule only for "
                "rectifiers that zero negative inputs; a leaky ReLU has none.")
    missing = sorted(right - given)
    expect(not missing, f"{missing} can explain this model too.",
           hint="Methods that only use ordinary gradients (Gradient, Gradient x Input, IG, "
                "SmoothGrad, GradCAM) work with any differentiable activation. Try each with "
                "sl.saliency.explain, or read sl.checks.preflight's report.")


# ----------------------------------------------------------------------------- ex3

def failing_methods(result, by, metric="spearman_abs", threshold=FAIL_THRESHOLD):
    """``(verdicts, retained)``: each method's call at step ``by`` by the course's rule
    (``"fails"``, ``"passes"``, ``"cannot tell"``) and its retained similarity,
    ``(mean - floor) / (1 - floor)``."""
    result.step_index(by, name="by", first=1)
    if metric not in result.metrics:
        raise ValueError(f"metric={metric!r} is not in this result ({result.metrics})")
    table = result.verdict(at=by, metric=metric, threshold=threshold).set_index("method")
    return table["verdict"].to_dict(), table["retained"].to_dict()


@register("ch8_ex3")
def _check_failing(answer, result=None, by=None, metric="spearman_abs"):
    what = "sl.model_randomization_test(model, x, methods, mode='cascading')"
    check_result(result, test="model_randomization", mode="cascading", what=what,
                 metrics=(metric,) if isinstance(metric, str) else ())
    steps = list(result.layers)[1:]
    expect(isinstance(by, str) and by in steps,
           f"by={by!r} is not a step of your result; its steps are {steps}.",
           hint='The exercise fixes the step in advance: by="layer4".')
    expect(isinstance(metric, str) and metric in result.metrics,
           f"metric={metric!r} is not in your result ({list(result.metrics)}).",
           hint="Leave metric out (spearman_abs) or name one of the result's metrics.")
    given = _method_list(answer)
    calls, retained = failing_methods(result, by, metric)
    not_run = sorted(given - set(retained))
    expect(not not_run, f"{not_run} are not in your result.",
           hint=f"Choose among the methods you ran: {list(retained)}.")
    clear_fail = {m for m, call in calls.items() if call == "fails"}
    clear_pass = {m for m, call in calls.items() if call == "passes"}
    wrong = sorted(given & clear_pass)
    expect(not wrong,
           f"{wrong} changed: less than half of their similarity is left at {by!r}, "
           f"across the whole 95 % interval "
           f"({', '.join(f'{m} {retained[m]:.2f}' for m in wrong)}), so they pass there.",
           hint="Fail means the maps stayed similar. Rescale the mean similarity: "
                "(mean - noise floor) / (1 - noise floor), or use sl.checks.verdict.")
    missing = sorted(clear_fail - given)
    expect(not missing,
           f"{missing} stayed similar at {by!r} "
           f"({', '.join(f'{m} {retained[m]:.2f}' for m in missing)} of the similarity is "
           "left, and at least half across the whole 95 % interval), so they fail.",
           hint=f"Judge every method at the step {by!r}, in {metric!r}; don't judge by the "
                "last step or by eye.")


# ----------------------------------------------------------------------------- ex4

@register("ch8_ex4")
def _check_statements(answer):
    if isinstance(answer, (str, numbers.Integral)):
        answer = [answer]
    try:
        chosen = {int(a) for a in answer}
    except (TypeError, ValueError):
        raise CheckFailed("Your answer should be the numbers of the true statements, e.g. "
                          "{1, 4}.\nHint: a set or list of ints.") from None
    unknown = sorted(chosen - set(STATEMENTS))
    expect(not unknown, f"There is no statement {unknown}.",
           hint=f"The statements are numbered {min(STATEMENTS)} to {max(STATEMENTS)}.")
    false_chosen = sorted(chosen - TRUE_STATEMENTS)
    expect(not false_chosen,
           f"Statement {false_chosen[0]} is false: {STATEMENTS[false_chosen[0]][2]}"
           if false_chosen else "", hint="Reread the chapter's box 'Reading a verdict'.")
    missed = sorted(TRUE_STATEMENTS - chosen)
    expect(not missed,
           f"Statement {missed[0]} is true: {STATEMENTS[missed[0]][2]}" if missed else "",
           hint="Reread the chapter's box 'Reading a verdict'.")
