"""Checks of the exercise notebook of chapter 4, "The data randomization test".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch4_ex1``  a function ``f(images, labels, seed=0)`` returning the training set
             of the random-label model, ``(images, new_labels)`` (or only
             ``new_labels``): the same images, the labels shuffled by a seeded
             random permutation (:func:`check_label_permutation` says what is
             required)
``ch4_ex2``  a number: the test accuracy of the network trained on permuted
             labels, as the check measures it again on ``model=`` (that network)
             and the test digits (optionally ``test_data=(images, labels)``,
             default: the embedded MNIST test split), within
             :data:`ACCURACY_TOLERANCE`; the model must be the random-label
             network: near chance on the test digits, and the shuffled training
             labels memorized (:func:`shuffled_training_set`)
``ch4_ex3``  the methods whose maps stay similar between the true-label and the
             random-label model: mean ``spearman_abs`` at or above
             :data:`SIMILAR_THRESHOLD`; needs ``result=`` (the student's
             :func:`sanity_lib.data_randomization_test` result)
``ch4_ex4``  the methods whose maps look similar in absolute value but not once the
             sign is kept: mean ``spearman_abs`` at or above :data:`SIMILAR_THRESHOLD`
             and mean ``spearman_diverging`` below it; needs ``result=``
``ch4_ex5``  a function ``my_data_comparison(true_model, random_model, x,
             method="gradient")`` returning one ``spearman_abs`` per image: the
             comparison step of the data randomization test written by hand (both
             networks explain their own top class). Calling
             ``sl.data_randomization_test`` fails the check.
``ch4_ex6``  a dict ``{method: shift}``: how much each method's mean
             ``spearman_abs`` moves when the random-label network explains the
             class the true-label network predicts (``target="original"``) instead
             of its own, ``same_class`` minus ``result``; needs ``result=`` (ex3's)
             and ``same_class=`` (the same test, only the target changed), and
             recomputes every shift from them (:func:`class_shift`)
``ch4_ex7``  a dict ``{method: gap}``: how far each method's similarity between
             the true-label control (random-label recipe) and the random-label
             network sits below the seed-to-seed ceiling (two such controls);
             needs ``control=`` and ``ceiling=``, validated (trained networks,
             the same first network and digits), and recomputes every gap
             (:func:`ceiling_gap`)
===========  ===================================================================

ex2 does not take the chance level, or any number read off a plot, for the measurement: only
what the model scores counts. ex3 and ex4 first validate the result they are given: the
paper's eight methods at the exercise's settings (IG 50 steps, SmoothGrad 50 samples, GradCAM
on ``act2``), both spearman metrics, four test digits of every class, and the right models
(the first network classifies the digits, the second does not, and they differ). Then they
judge the answer against that result by the course's rule
(:meth:`~sanity_lib.checks.SanityCheckResult.verdict`): a method whose maps stay similar
across the whole 95 % interval must be named, one whose interval is all below the threshold
must not, and one whose interval straddles it (the rule "cannot tell") may be named or not.
No measured number is hard-coded.

Examples
--------
>>> import torch, sanity_lib as sl
>>> def shuffle(images, labels, seed=0):
...     g = torch.Generator().manual_seed(seed)
...     return images, labels[torch.randperm(len(labels), generator=g)]
>>> sl.grading.check("ch4_ex1", shuffle)
'ch4_ex1: correct. Well done!'
"""
import math
import numbers

import numpy as np
import torch

from sanity_lib.checks.result import PASS_THRESHOLD

from . import CheckFailed, expect, method_name, method_names, register

__all__ = ["SIMILAR_THRESHOLD", "MIN_CHANGED", "MAX_CRAMERS_V",
           "ACCURACY_TOLERANCE", "MEMORIZED", "check_label_permutation", "similar_methods",
           "shuffled_training_set", "SHIFT_TOLERANCE", "class_shift", "ceiling_gap",
           "per_method_numbers"]

#: ex3/ex4: a method's maps "stay similar" (it fails) when the mean rank correlation between
#: the true-label and the random-label model's maps, rescaled by the noise floor, is at least
#: this across its 95 % interval: the course's rule, :data:`sanity_lib.checks.PASS_THRESHOLD`.
SIMILAR_THRESHOLD = PASS_THRESHOLD
#: ex1: at least this fraction of the images must get another label. A random permutation
#: of 10 balanced classes keeps about 10 % of the labels by chance, so about 90 % change.
MIN_CHANGED = 0.75
#: ex1: the new labels must be (nearly) independent of the old ones: Cramér's V of the
#: 10 x 10 table of old against new labels below this (a random permutation of 2,000
#: labels gives about 0.03; keeping every label gives 1).
MAX_CRAMERS_V = 0.1
#: ex2: an accuracy within this of the check's own measurement is accepted (rounding to a
#: tenth of a percent; one test digit of 2,000 is 0.05 %). A typed-in chance level is not.
ACCURACY_TOLERANCE = 0.002
#: ex2: the random-label network must classify at least this fraction of its training digits
#: as their shuffled label (it memorized them: about 97 %; an untrained network about 10 %).
MEMORIZED = 0.8


# ----------------------------------------------------------------------------- ex1

def _toy_training_set(n_per_class=200, n_classes=10, seed=0):
    """Distinct random images with labels sorted by class, like the embedded MNIST split
    (so a shift of the labels by a few places is not a randomization)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n_per_class * n_classes, 1, 28, 28, generator=gen)
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return images, labels


def _as_tensor(value, what):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a torch tensor or a numpy array, got "
                          f"{type(value).__name__}.\nHint: return the tensors, e.g. "
                          "`return images, labels[perm]`.") from None


def _call(fn, images, labels, seed):
    """Run the student's function on copies; return (images, labels) as tensors."""
    im, lab = images.clone(), labels.clone()
    try:
        out = fn(im, lab, seed=seed)
    except TypeError as err:
        if "seed" not in str(err):
            raise
        raise CheckFailed(f"Your function does not take a `seed` argument ({err}).\n"
                          "Hint: define it as `def randomize_labels(images, labels, seed=0):` "
                          "and build a `torch.Generator().manual_seed(seed)` from it.") from None
    expect(torch.equal(im, images) and torch.equal(lab, labels),
           "Your function changed the images or labels it was given, in place.",
           hint="Return new tensors (`labels[perm]`) instead of shuffling the input in place "
                "(e.g. with `np.random.shuffle`): the true-label model still needs them.")
    if isinstance(out, tuple) and len(out) == 2:
        new_images, new_labels = (_as_tensor(out[0], "The images you return"),
                                  _as_tensor(out[1], "The labels you return"))
    else:
        new_images, new_labels = images, _as_tensor(out, "What your function returns")
        expect(new_labels.dim() == 1,
               f"Your function should return a pair (images, labels), got one tensor of "
               f"shape {tuple(new_labels.shape)}.",
               hint="`return images, labels[perm]`.")
    expect(new_labels.dim() == 1 and len(new_labels) == len(labels),
           f"The labels you return have shape {tuple(new_labels.shape)}; expected "
           f"{(len(labels),)}, one label per image.",
           hint="Permute the labels; do not drop, add or reshape them.")
    expect(not (new_labels.dtype.is_floating_point or new_labels.dtype == torch.bool),
           f"The labels you return are {new_labels.dtype}, not integer class indices.",
           hint="Index the labels with a permutation: `labels[perm]` keeps their dtype.")
    expect(tuple(new_images.shape) == tuple(images.shape),
           f"The images you return have shape {tuple(new_images.shape)}; expected "
           f"{tuple(images.shape)}.", hint="Return the images unchanged.")
    return new_images, new_labels.long()


def _image_order(new_images, images):
    """The original index of every returned image, or a CheckFailed if one is not an input
    image or appears twice."""
    index = {img.numpy().tobytes(): i for i, img in enumerate(images)}
    order = [index.get(img.to(images.dtype).numpy().tobytes()) for img in new_images]
    expect(None not in order,
           "Some of the images you return are not among the images given.",
           hint="The data randomization test keeps the images as they are; only the labels "
                "change. Return `images` itself.")
    expect(len(set(order)) == len(order),
           "Some images appear twice in what you return, and others are missing.",
           hint="Return every image once: leave the images as they are.")
    return torch.tensor(order)


def _cramers_v(a, b, k):
    table = np.zeros((k, k))
    np.add.at(table, (a.numpy(), b.numpy()), 1)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    keep = expected > 0
    chi2 = ((table - expected)[keep] ** 2 / expected[keep]).sum()
    return math.sqrt(chi2 / (table.sum() * (k - 1)))


def check_label_permutation(fn, images=None, labels=None):
    """Check that ``fn(images, labels, seed=...)`` shuffles the labels for the data
    randomization test; raise :class:`CheckFailed` saying what is wrong otherwise.

    Required: every image keeps its place (or, if reordered, each is still returned once);
    the new labels are a permutation of the old ones (the same count per class); at least
    :data:`MIN_CHANGED` of the images get another label, and the new label of an image is
    (nearly) independent of its old one (Cramér's V below :data:`MAX_CRAMERS_V`); the same
    seed gives the same labels, another seed other labels; the inputs are not changed.

    Parameters
    ----------
    fn : callable
        ``fn(images, labels, seed=0) -> (images, new_labels)`` or ``-> new_labels``.
    images, labels : torch.Tensor, optional
        The training set to try it on; default 2,000 distinct random 28 x 28 images with
        labels sorted by class (200 per class, as the embedded MNIST split).

    Examples
    --------
    >>> def shuffle(images, labels, seed=0):
    ...     g = torch.Generator().manual_seed(seed)
    ...     return images, labels[torch.randperm(len(labels), generator=g)]
    >>> check_label_permutation(shuffle)
    """
    expect(callable(fn), f"The answer should be a function, got {type(fn).__name__}.",
           hint="Pass the function itself: `check(\"ch4_ex1\", randomize_labels)`.")
    if images is None or labels is None:
        images, labels = _toy_training_set()
    labels = labels.long()
    k = int(labels.max()) + 1
    new_images, new_labels = _call(fn, images, labels, seed=0)
    order = _image_order(new_images, images)
    old = labels[order]  # the label each returned image had in the true training set

    before = torch.bincount(labels, minlength=k)
    in_range = bool(new_labels.min() >= 0)
    after = torch.bincount(new_labels.clamp(min=0), minlength=k) if in_range else None
    expect(in_range and torch.equal(before, after),
           "The new labels are not a permutation of the old ones: the number of images per "
           f"class changed from {before.tolist()} to "
           f"{after.tolist() if in_range else 'something with negative labels'}.",
           hint="Shuffle the labels you have (`labels[torch.randperm(n, generator=g)]`) "
                "instead of drawing new ones at random: the test keeps the label "
                "distribution and only breaks the link between an image and its label.")
    changed = (new_labels != old).float().mean().item()
    reordered = not torch.equal(order, torch.arange(len(order)))
    expect(changed > 0 or not reordered,
           "You moved the images together with their labels: every image still has its own "
           "label, so nothing was randomized (the model would learn the digits as usual).",
           hint="Leave the images where they are and permute only the labels.")
    expect(changed > 0, "Every image still has its original label.",
           hint="Permute the labels: `labels[torch.randperm(len(labels), generator=g)]`.")
    expect(changed >= MIN_CHANGED,
           f"Only {changed:.1%} of the images got another label; a random permutation "
           f"changes about 90 % of them (10 classes).",
           hint="Shuffle all the labels with one random permutation (shifting the labels by "
                "a place, or swapping a few pairs, leaves most of them as they were).")
    v = _cramers_v(old, new_labels, k)
    expect(v < MAX_CRAMERS_V,
           f"The new labels still depend on the old ones (Cramér's V = {v:.2f}; a random "
           "permutation gives about 0.03): e.g. shifting the labels by a few places keeps "
           "most of them within the same class when the data are sorted by class.",
           hint="Use a *random* permutation: `torch.randperm(len(labels), generator=g)`.")

    _, again = _call(fn, images, labels, seed=0)
    expect(torch.equal(again, new_labels),
           "Two calls with the same seed gave different labels: the shuffle is not "
           "reproducible.",
           hint="Draw the permutation from a generator seeded with `seed`: "
                "`g = torch.Generator().manual_seed(seed)` then "
                "`torch.randperm(n, generator=g)`.")
    _, other = _call(fn, images, labels, seed=1)
    expect(not torch.equal(other, new_labels),
           "seed=0 and seed=1 gave the same labels: your function ignores `seed`.",
           hint="Seed the generator with the `seed` argument, not a fixed number.")


@register("ch4_ex1")
def _check_ex1(answer, **_):
    check_label_permutation(answer)


# ----------------------------------------------------------------------------- ex2

def _number(answer, what):
    from . import describe

    one_value = ((isinstance(answer, torch.Tensor) and answer.numel() == 1)
                 or (isinstance(answer, np.ndarray) and answer.size == 1
                     and answer.dtype.kind in "iuf"))
    expect(one_value or isinstance(answer, numbers.Real) and not isinstance(answer, bool),
           f"{what} should be a number, got {describe(answer)}.",
           hint="e.g. `answer = 0.1` (a fraction) or `answer = 10` (a percentage).")
    value = float(answer)
    expect(math.isfinite(value) and 0 <= value <= 100,
           f"{value} is not an accuracy: give a fraction in [0, 1] or a percentage.",
           hint="Accuracy = the fraction of test digits classified as their true label.")
    return value / 100 if value > 1 else value


def shuffled_training_set(seed=0):
    """The training digits and the shuffled labels the exercise's random-label CNN memorized
    (``sl.training.trained_mnist_model("cnn", labels="random", seed=seed)``), rebuilt
    without the model: the recipe's subset of the training split and the training code's
    seeded permutation of its labels."""
    from sanity_lib import training

    images, labels = training.mnist_training_data("cnn", "random")
    permutation = torch.randperm(len(labels), generator=training._generator(seed, "labels"))
    return images, labels[permutation]


# Accuracies measured by earlier calls, keyed by the fingerprints of the model's weights and
# of the data: a student (or a test) who runs the check again on the same network waits
# seconds less, and any change of a weight or an image measures anew.
_ACCURACIES: dict = {}


def _evaluate(model, images, labels, what):
    from sanity_lib import training
    from sanity_lib._cache import fingerprint

    try:
        key = (fingerprint(model), fingerprint(images), fingerprint(labels))
        if key not in _ACCURACIES:
            if len(_ACCURACIES) >= 16:
                _ACCURACIES.clear()
            _ACCURACIES[key] = training.evaluate(model, images, labels)
        return _ACCURACIES[key]
    except Exception as err:  # noqa: BLE001 (the student's model or data)
        raise CheckFailed(f"Evaluating the model you passed on {what} failed with "
                          f"{type(err).__name__}: {err}\nHint: Pass the random-label CNN "
                          "itself: `model=random_cnn`.") from None


@register("ch4_ex2")
def _check_ex2(answer, model=None, test_data=None, **_):
    from sanity_lib import data

    from . import describe

    expect(isinstance(model, torch.nn.Module),
           "This check needs the random-label model, passed as model=...; got "
           f"{describe(model)}.",
           hint="`sl.grading.check(\"ch4_ex2\", random_test_accuracy, model=random_cnn)`, "
                "with the network trained with labels=\"random\".")
    if test_data is None:
        test_data = data.load_mnist("test")
    expect(isinstance(test_data, (tuple, list)) and len(test_data) == 2
           and all(isinstance(t, torch.Tensor) for t in test_data),
           f"test_data= should be a pair (images, labels) of tensors, got "
           f"{describe(test_data)}.", hint="Leave test_data out: the check uses the 2,000 "
                                           "embedded test digits, as the exercise does.")
    images, labels = test_data
    measured = _evaluate(model, images, labels, "the test digits")
    expect(measured < 0.5,
           f"The model you passed classifies {measured:.0%} of the test digits correctly: it "
           "learned the digits, so it is not the random-label model.",
           hint="Pass `model=random_cnn`, the network trained with labels=\"random\".")
    train_images, shuffled = shuffled_training_set()
    memorized = _evaluate(model, train_images, shuffled, "the shuffled training labels")
    expect(memorized >= MEMORIZED,
           f"The model you passed matches only {memorized:.0%} of the shuffled training "
           "labels it should have memorized: it is not the random-label network (an "
           "untrained one, or one trained otherwise). Its test accuracy says nothing about "
           "memorizing without learning.",
           hint="`random_cnn, random_history = sl.training.trained_mnist_model(\"cnn\", "
                "labels=\"random\")`, and pass `model=random_cnn`.")
    value = _number(answer, "The answer")
    if abs(value - measured) <= ACCURACY_TOLERANCE:
        return
    counts = torch.bincount(labels.long()).double()
    chance = 1 / len(counts)
    majority = (counts.max() / counts.sum()).item()
    measure = ("Measure it: `sl.training.evaluate(random_cnn, x_test, y_test)`, or the last "
               "point of `random_history.eval_accuracy`.")
    expect(value < 0.9,
           f"{value:.0%} is the accuracy on the *training* labels, which the network "
           f"memorized; on the test digits it scores {measured:.1%}.", hint=measure)
    expect(value > 0.02,
           f"{value:.0%} would mean the model is systematically *wrong*, which needs "
           f"knowledge of the digits too; it scores {measured:.1%}.", hint=measure)
    for level, what in ((chance, "the chance level (one class in ten)"),
                        (majority, "the share of the most frequent class")):
        expect(abs(value - level) > ACCURACY_TOLERANCE,
               f"{value:.1%} is {what}, what you would expect, not what you measured: the "
               f"random-label model scores {measured:.1%} on the test digits.", hint=measure)
    expect(False,
           f"{value:.1%} is not what the random-label model scores on the test digits "
           f"(measured: {measured:.1%}).", hint=measure)


# ----------------------------------------------------------------------------- ex3 / ex4

#: ex3/ex4: the call the exercise asks for, and what the result must hold.
EX3_WHAT = "sl.data_randomization_test(true_cnn, random_cnn, x, methods, cache=True)"
EX3_METHOD_SETTINGS = {"integrated_gradients": {"n_steps": 50}, "smoothgrad": {"n_samples": 50},
                       "gradcam": {"layer": "act2"}, "guided_gradcam": {"layer": "act2"}}
#: ex3/ex4: test digits of every class the result must hold (the exercise takes four).
EX3_PER_CLASS = 4


def _check_result(result):
    """Refuse a result that cannot answer ex3/ex4: the exercise's test, methods, settings
    and metrics; the true-label CNN first, the random-label CNN second (told apart by their
    predictions on the result's test digits)."""
    from sanity_lib.checks import DEFAULT_METHODS

    from . import TRAINED_ACCURACY, check_result, mnist_test_labels

    check_result(result, test="data_randomization", what=EX3_WHAT, methods=DEFAULT_METHODS,
                 metrics=("spearman_abs", "spearman_diverging"),
                 settings={"model": "MnistCNN", "random_label_model": "MnistCNN"},
                 method_settings=EX3_METHOD_SETTINGS, min_images=10 * EX3_PER_CLASS)
    settings = result.settings
    expect(settings.get("model_fingerprint") != settings.get("random_label_model_fingerprint"),
           "The result passed as result= compares a network with itself: both models have "
           "the same weights, so every method's maps are identical.",
           hint=f"`{EX3_WHAT}` with the true-label CNN first and the random-label CNN second.")
    labels = mnist_test_labels(result, what=EX3_WHAT, min_per_class=EX3_PER_CLASS)
    target = settings.get("target", "argmax")
    targets = result.targets
    expect(isinstance(target, str) and isinstance(targets, torch.Tensor)
           and tuple(targets.shape) == (2, len(labels)),
           f"The result passed as result= was run with target={target!r}: it does not record "
           "what the networks predicted, so I cannot tell which network it explained.",
           hint=f"Leave `target` at its default: `{EX3_WHAT}`.")
    true_acc = (targets[0].long() == labels).double().mean().item()
    expect(true_acc >= TRAINED_ACCURACY,
           f"The first network of the result passed as result= classifies only "
           f"{true_acc:.0%} of its digits correctly: it is not the CNN trained on the true "
           "labels (the two networks swapped, or an untrained one?).",
           hint=f"`{EX3_WHAT}`: the true-label CNN first, the random-label CNN second.")
    if target == "argmax":   # with "original", both rows hold the true-label model's classes
        random_acc = (targets[1].long() == labels).double().mean().item()
        expect(random_acc < 0.5,
               f"The second network of the result passed as result= classifies "
               f"{random_acc:.0%} of the digits correctly: it learned the digits, so it is not "
               "the network trained on shuffled labels.",
               hint='`random_cnn, _ = sl.training.trained_mnist_model("cnn", labels="random")`'
                    " as the second model.")


def _method_set(answer, available):
    return method_names(answer, available,
                        example='similar = ["guided_backprop"]`, or `[]` for none')


def similar_methods(result, metric="spearman_abs", threshold=SIMILAR_THRESHOLD):
    """(must, may, means): the methods whose maps stay similar by the course's rule, those
    the rule cannot tell, and every method's mean similarity.

    The rule is :meth:`SanityCheckResult.verdict` at the test's one step: "fails" (the maps
    stay similar) when the whole 95 % interval of the mean ``metric``, rescaled by the noise
    floor, is at least ``threshold``; "cannot tell" when it straddles ``threshold``.

    Examples
    --------
    >>> must, may, means = similar_methods(result)          # doctest: +SKIP
    """
    table = result.table[result.table["metric"] == metric]
    means = table.groupby("method")["value"].mean().to_dict()
    means = {m: float(means.get(m, float("nan"))) for m in result.methods}
    calls = result.verdict(at=1, metric=metric, threshold=threshold).set_index("method")
    must = {m for m in means if calls.loc[m, "verdict"] == "fails"}
    may = {m for m in means if calls.loc[m, "verdict"] == "cannot tell"}
    return must, may, means


@register("ch4_ex3")
def _check_ex3(answer, result=None, **_):
    _check_result(result)
    named = _method_set(answer, result.methods)
    must, may, means = similar_methods(result)
    missed = sorted(must - named)
    expect(not missed, "You left out " + ", ".join(
        f"{m} (mean spearman_abs {means[m]:.2f})" for m in missed)
        + ": its maps stay similar although the random-label network learned nothing "
          "about digits.",
        hint=f"Read the mean spearman_abs per method and its interval (`result.verdict()`): "
             f"a method's maps stay similar when all of the interval is at least "
             f"{SIMILAR_THRESHOLD}.")
    wrong = sorted(named - must - may)
    expect(not wrong, "You named " + ", ".join(
        f"{m} (mean spearman_abs {means[m]:.2f})" for m in wrong)
        + ": its maps change with the labels, so it passes the test.",
        hint=f"Only methods whose spearman_abs is at least {SIMILAR_THRESHOLD} across its "
             "95 % interval stay similar.")


@register("ch4_ex4")
def _check_ex4(answer, result=None, **_):
    _check_result(result)
    named = _method_set(answer, result.methods)
    must_abs, may_abs, abs_means = similar_methods(result, "spearman_abs")
    must_div, may_div, div_means = similar_methods(result, "spearman_diverging")
    low_div = set(div_means) - must_div - may_div      # the signed maps clearly changed
    must = must_abs & low_div
    may = ((must_abs | may_abs) & (low_div | may_div)) - must
    rule = (f"Name the methods whose spearman_abs stays at or above {SIMILAR_THRESHOLD} and "
            f"whose spearman_diverging falls below it, each across its 95 % interval (toggle "
            "abs/diverging in the explorer, or read `result.verdict(metric=...)`).")
    missed = sorted(must - named)
    expect(not missed, "You left out " + ", ".join(
        f"{m} (mean spearman_abs {abs_means[m]:.2f}, spearman_diverging {div_means[m]:.2f})"
        for m in missed) + ": its maps look alike in absolute value but not once the sign "
        "is kept.", hint=rule)
    for m in sorted(named - must - may):
        expect(abs_means[m] >= SIMILAR_THRESHOLD,
               f"You named {m}, but its maps already differ in absolute value (mean "
               f"spearman_abs {abs_means[m]:.2f}).", hint=rule)
        expect(False, f"You named {m}, but its maps stay similar with the sign kept too "
               f"(mean spearman_diverging {div_means[m]:.2f}): it is not an abs-only "
               "similarity.", hint=rule)


# ----------------------------------------------------------------------------- ex5

#: ex5: the signature the exercise asks for.
EX5_USAGE = 'my_data_comparison(true_model, random_model, x, method="gradient")'
_EX5_FORBID_HINT = ("Explain x with `sl.saliency.explain` under each network and compare the "
                    "two batches with `sl.similarity.spearman(a, b, mode=\"abs\")`.")


def _ex5_inputs():
    """Two differently seeded CNNs (they stand in for the true- and random-label networks:
    the comparison step does not care how they were trained) and five test digits."""
    from sanity_lib import data, models

    digits, labels = data.load_mnist("test")
    pick = torch.cat([torch.nonzero(labels == c)[:1, 0] for c in range(5)])
    return models.mnist_cnn(seed=0), models.mnist_cnn(seed=1), digits[pick]


def _ex5_variant(a, b, x, method, *, mode="abs", target=None):
    from sanity_lib import saliency, similarity

    with torch.no_grad():
        classes = a(x).argmax(1)
    maps_a = saliency.explain(a, x, method)
    maps_b = saliency.explain(b, x, method, target=classes if target == "first" else None)
    return similarity.spearman(maps_a, maps_b, mode=mode).numpy()


@register("ch4_ex5")
def _check_ex5(answer, **_):
    from sanity_lib.checks import data_randomization_test, sweep

    from . import as_array, call_student, forbid_calls

    true_model, random_model, x = _ex5_inputs()
    for method in ("gradient", "guided_backprop"):
        with forbid_calls("the comparison step of the data randomization test",
                          functions=[data_randomization_test, sweep.run_sweep],
                          hint=_EX5_FORBID_HINT):
            got = call_student(answer, true_model, random_model, x, method=method,
                               name="my_data_comparison", usage=EX5_USAGE,
                               on=f"on two MNIST CNNs with method={method!r}")
        got = as_array(got, "The value your function returned",
                       hint="return the per-image rank correlations, e.g. "
                            "`sl.similarity.spearman(a, b, mode=\"abs\")`")
        result = data_randomization_test(true_model, random_model, x, [method],
                                         metrics=["spearman_abs"], progress=False,
                                         keep_maps=False)
        ref = result.values(method, 1, "spearman_abs")
        expect(got.shape == ref.shape,
               f"Your function returned {got.size} value(s) of shape {got.shape} for "
               f"{len(x)} images; the comparison gives one rank correlation per image.",
               hint="Do not average: return the N values of `sl.similarity.spearman`.")
        if np.allclose(got, ref, atol=1e-4, equal_nan=True):
            continue
        for wrong, message, hint in [
                (np.ones_like(ref), "Every value is 1: you compared a network's maps with "
                 "themselves.", "Explain x under *both* networks and compare the two."),
                (_ex5_variant(true_model, random_model, x, method, mode="diverging"),
                 "You compared signed maps (mode='diverging'); the exercise asks for the "
                 "absolute values (mode='abs').", 'sl.similarity.spearman(a, b, mode="abs")'),
                (_ex5_variant(true_model, random_model, x, method, target="first"),
                 "The random-label network explains the class the *true-label* network "
                 "predicted; in the test each network explains its own top class.",
                 "Call `sl.saliency.explain(model, x, method)` without a target for both.")]:
            if np.allclose(got, wrong, atol=1e-4, equal_nan=True):
                raise CheckFailed(f"{message}\nHint: {hint}")
        raise CheckFailed(
            f"With method={method!r} your values differ from the test's: yours "
            f"{np.round(got, 3).tolist()}, expected {np.round(ref, 3).tolist()}.\n"
            f"Hint: {_EX5_FORBID_HINT} Use the `method` you are given.")


# ----------------------------------------------------------------------------- ex6

#: ex6: the call the exercise asks for beside ex3's.
EX6_WHAT = ('sl.data_randomization_test(true_cnn, random_cnn, x, methods, target="original", '
            'cache=True)')
#: ex6: a shift within this of the check's own is accepted (rounding to three decimals).
SHIFT_TOLERANCE = 2e-3


def _check_same_class(same_class, result):
    """``same_class`` must be ex3's test again with only the explained class changed: the same
    two networks, digits, methods and settings, ``target="original"``."""
    from . import check_result

    check_result(same_class, test="data_randomization", what=EX6_WHAT, name="same_class",
                 methods=result.methods, metrics=("spearman_abs",),
                 settings={"model": "MnistCNN", "random_label_model": "MnistCNN"},
                 method_settings=EX3_METHOD_SETTINGS, min_images=10 * EX3_PER_CLASS)
    given, ref = same_class.settings, result.settings
    target = given.get("target", "argmax")
    expect(target == "original",
           f"same_class was run with target={target!r}: each network explains "
           + ("its own top class, as in result, so nothing changed." if target == "argmax"
              else "a class you chose, not the class the true-label network predicts."),
           hint=f"`same_class = {EX6_WHAT}`.")
    for key, which in (("model_fingerprint", "true-label"),
                       ("random_label_model_fingerprint", "random-label")):
        expect(given.get(key) == ref.get(key),
               f"same_class and result were computed on different {which} networks: the "
               "comparison would change two things at once.",
               hint="Use the same `true_cnn` and `random_cnn` for both tests.")
    same_inputs = (isinstance(same_class.inputs, torch.Tensor)
                   and isinstance(result.inputs, torch.Tensor)
                   and same_class.inputs.shape == result.inputs.shape
                   and torch.equal(same_class.inputs, result.inputs))
    expect(same_inputs, "same_class and result explain different digits: the shift would mix "
           "the change of class with the change of digits.",
           hint="Pass the same `x` to both tests.")
    for m in result.methods:
        mine = dict((given.get("methods") or {}).get(m) or {})
        theirs = dict((ref.get("methods") or {}).get(m) or {})
        expect(mine == theirs,
               f"The {m} maps of same_class were computed with {mine or 'the defaults'}, those "
               f"of result with {theirs or 'the defaults'}: only the explained class may differ.",
               hint="Pass the same `methods` dict to both tests.")


def class_shift(result, same_class, metric="spearman_abs"):
    """``{method: mean of same_class - mean of result}`` at the test's one step.

    Examples
    --------
    >>> class_shift(result, same_class)["guided_backprop"]      # doctest: +SKIP
    0.004
    """
    return {m: float(same_class.mean(m, 1, metric) - result.mean(m, 1, metric))
            for m in result.methods}


def per_method_numbers(answer, reference, *, what, how, wrongs=()):
    """Check a dict ``{method: number}`` against the check's own ``reference`` numbers.

    Every method of ``reference`` needs an entry (names through the registry's aliases),
    each a finite number within :data:`SHIFT_TOLERANCE` of the reference. Otherwise the
    first of ``wrongs`` that the answer matches names the mistake: ``(numbers, message)``
    pairs of the answers a typical mistake gives.

    Examples
    --------
    >>> per_method_numbers({"IG": 0.1}, {"integrated_gradients": 0.1}, what="shift",
    ...                    how="same minus own")
    """
    from . import describe

    methods = list(reference)
    expect(isinstance(answer, dict) and answer,
           f"The answer should be a dict {{method: {what}}}, e.g. {{'gradient': 0.01, ...}}; "
           f"got {describe(answer)}.", hint=how)
    given = {method_name(key, available=methods): value for key, value in answer.items()}
    missing = [m for m in methods if m not in given]
    expect(not missing, f"Your answer has no entry for {missing}: the exercise asks for the "
           f"{what} of every method of the test ({methods}).", hint=how)
    for m in methods:
        value, ref = given[m], reference[m]
        if (isinstance(value, torch.Tensor) and value.numel() == 1
                or isinstance(value, np.ndarray) and value.size == 1):
            value = value.item()
        expect(isinstance(value, numbers.Real) and not isinstance(value, bool)
               and math.isfinite(value), f"{m}: {value!r} is not a number.", hint=how)
        value = float(value)
        if abs(value - ref) <= SHIFT_TOLERANCE:
            continue
        for wrong, message in wrongs:
            expect(wrong.get(m) is None or abs(ref - wrong[m]) <= SHIFT_TOLERANCE
                   or abs(value - wrong[m]) > SHIFT_TOLERANCE,
                   f"{m}: your {what} {value:+.3f} {message} (measured: {ref:+.3f}).", hint=how)
        expect(False, f"{m}: your {what} {value:+.3f} is not what your results give "
               f"({ref:+.3f}).", hint=how)


@register("ch4_ex6")
def _check_ex6(answer, result=None, same_class=None, **_):
    _check_result(result)
    _check_same_class(same_class, result)
    shift = class_shift(result, same_class)
    signed = class_shift(result, same_class, "spearman_diverging") \
        if "spearman_diverging" in same_class.metrics else {}
    per_method_numbers(
        answer, shift, what="shift",
        how=("The shift is same_class's mean spearman_abs minus result's, per method: "
             "`same_class.mean(m, 1, 'spearman_abs') - result.mean(m, 1, 'spearman_abs')`."),
        wrongs=[({m: -v for m, v in shift.items()},
                 "has the wrong sign: you subtracted same_class from result"),
                ({m: same_class.mean(m, 1) for m in shift},
                 "is same_class's mean itself, not its change from result"),
                (signed, "is the shift of spearman_diverging; the exercise asks about "
                         "spearman_abs")])


# ----------------------------------------------------------------------------- ex7

#: ex7: the calls the exercise asks for.
EX7_CONTROL = "sl.data_randomization_test(control, random_cnn, x, methods, cache=True)"
EX7_CEILING = "sl.data_randomization_test(control, control_2, x, methods, cache=True)"


def _check_pair(result, *, name, what, second_trained):
    """A data randomization result of the exercise's methods and digits whose first network
    is trained on the true labels and whose second is (``second_trained``) or is not."""
    from sanity_lib.checks import DEFAULT_METHODS

    from . import TRAINED_ACCURACY, check_result, mnist_test_labels

    check_result(result, test="data_randomization", what=what, name=name,
                 methods=DEFAULT_METHODS, metrics=("spearman_abs",),
                 settings={"model": "MnistCNN", "random_label_model": "MnistCNN",
                           "target": "argmax"},
                 method_settings=EX3_METHOD_SETTINGS, min_images=10 * EX3_PER_CLASS)
    settings = result.settings
    expect(settings.get("model_fingerprint") != settings.get("random_label_model_fingerprint"),
           f"The result passed as {name}= compares a network with itself: every map is "
           "identical, so it says nothing.", hint=f"`{name} = {what}`.")
    labels = mnist_test_labels(result, what=what, name=name, min_per_class=EX3_PER_CLASS)
    accuracy = [(result.targets[k].long() == labels).double().mean().item() for k in (0, 1)]
    expect(accuracy[0] >= TRAINED_ACCURACY,
           f"The first network of {name} classifies only {accuracy[0]:.0%} of its digits "
           "correctly: it is not a network trained on the true labels.",
           hint=f"`{name} = {what}`, with `control` first.")
    if second_trained:
        expect(accuracy[1] >= TRAINED_ACCURACY,
               f"The second network of {name} classifies only {accuracy[1]:.0%} of the digits "
               "correctly: the ceiling compares two networks that both learned the digits.",
               hint='`control_2, _ = sl.training.trained_mnist_model("cnn", "true", '
                    'recipe="random", seed=1)`.')
    else:
        expect(accuracy[1] < 0.5,
               f"The second network of {name} classifies {accuracy[1]:.0%} of the digits "
               "correctly: it learned the digits, so it is not the random-label network.",
               hint=f"`{name} = {what}`, with `random_cnn` second.")


def ceiling_gap(control, ceiling, metric="spearman_abs"):
    """``{method: (mean, low, high)}``: how far each method's true-vs-random similarity sits
    below its seed-to-seed ceiling, per digit (ceiling minus control, a paired difference
    with its 95 % bootstrap interval).

    Examples
    --------
    >>> ceiling_gap(control, ceiling)["gradient"]      # doctest: +SKIP
    (0.34, 0.29, 0.39)
    """
    from sanity_lib.checks.statistics import paired_difference

    return {m: paired_difference(ceiling.values(m, 1, metric), control.values(m, 1, metric))
            for m in control.methods}


@register("ch4_ex7")
def _check_ex7(answer, control=None, ceiling=None, **_):
    _check_pair(control, name="control", what=EX7_CONTROL, second_trained=False)
    _check_pair(ceiling, name="ceiling", what=EX7_CEILING, second_trained=True)
    expect(control.settings.get("model_fingerprint") == ceiling.settings.get("model_fingerprint"),
           "control and ceiling start from different true-label networks: the gap would mix "
           "two changes.", hint="Put the same `control` network first in both tests.")
    expect(control.inputs.shape == ceiling.inputs.shape
           and torch.equal(control.inputs, ceiling.inputs),
           "control and ceiling explain different digits: a per-image (paired) difference "
           "needs the same digits in the same order.", hint="Pass the same `x` to both tests.")
    gap = {m: mean for m, (mean, _, _) in ceiling_gap(control, ceiling).items()}
    per_method_numbers(
        answer, gap, what="gap",
        how=("The gap is the ceiling's mean spearman_abs minus the control's, per method: "
             "`ceiling.mean(m, 1) - control.mean(m, 1)` (the mean of the paired "
             "per-digit differences is the same number)."),
        wrongs=[({m: -v for m, v in gap.items()},
                 "has the wrong sign: you subtracted the ceiling from the control"),
                ({m: control.mean(m, 1) for m in gap},
                 "is the control's similarity itself, not its distance to the ceiling"),
                ({m: 1 - control.mean(m, 1) for m in gap},
                 "is the distance to 1 (identical maps), not to the seed-to-seed ceiling"),
                ({m: ceiling.mean(m, 1) for m in gap}, "is the ceiling itself")])
