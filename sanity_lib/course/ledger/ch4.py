"""Chapter 4 (data randomization): the paper's label-permutation test, on the MNIST CNN and MLP.

What the chapter hands in (``measured``); similarities are means over the 100 test digits of
the true-label against the random-label network's maps, with 95% bootstrap intervals
(``result.mean(method, "random labels")``, ``result.interval(...)``):

================================================  ============================================
key                                               what it is
================================================  ============================================
``<arch>_random_train``, ``<arch>_random_test``   the random-label network's accuracy on its
                                                  (shuffled) training labels and on the true
                                                  test labels, arch in cnn, mlp
``n_random``                                      how many training digits it memorized
``cnn_<method>_<abs|div>`` (and ``_ci``)          CNN: Spearman (abs / signed)
``cnn_<method>_abs_control`` (and ``_ci``)        CNN, the same-recipe control: a true-label
                                                  network trained with the random-label
                                                  recipe against the random-label network
``mlp_guided_backprop_abs``                       MLP: Guided Backprop, abs (reported)
``input_only_abs``                                x⊙u against x⊙v, abs (the input's own level)
================================================  ============================================

Examples
--------
>>> [c.verdict for c in claims(agreeing_example())]
['agrees', 'agrees', 'agrees', 'agrees']
"""
from __future__ import annotations

from . import Claim, all_of, fmt_interval, interval_above, interval_below
from ._measured import finite, mean_and_interval, take

__all__ = ["claims", "memorization", "gradient_family_changes", "guided_methods_stay",
           "input_times_stay_abs", "agreeing_example", "MEMORIZED", "CHANCE"]

#: The paper's criterion: training accuracy above 95% on the permuted labels.
MEMORIZED = 0.95
#: Test accuracy counted as chance for ten classes (10%, with a margin).
CHANCE = 0.15
_SOURCE = "Sec. 5 (data randomization test)"
_SETTING = "100 test digits; each network explains its own top class; GradCAM at act2"



def memorization(measured: dict) -> Claim:
    """Both random-label networks fit their permuted labels (training accuracy above 95 %)
    and stay at chance on the test digits (below 15 %). Both: agrees; neither: differs; else
    partly.

    Examples
    --------
    >>> memorization(agreeing_example() | {"cnn_random_train": 0.5,
    ...                                    "cnn_random_test": 0.6}).verdict
    'differs'
    """
    acc = dict(zip(("cnn_train", "cnn_test", "mlp_train", "mlp_test"), take(
        measured, "cnn_random_train", "cnn_random_test", "mlp_random_train", "mlp_random_test")))
    (n,) = take(measured, "n_random")
    for name, value in acc.items():
        finite(name, value)
    return Claim(
        "Networks fit permuted labels (memorization) with test accuracy at chance",
        paper="trained on permuted labels until training accuracy > 95 %, the networks' test "
              "accuracy is at chance (≈ 10 %)",
        source=_SOURCE,
        measured="; ".join(f"{arch.upper()}: training labels {100 * acc[arch + '_train']:.1f} %, "
                           f"test {100 * acc[arch + '_test']:.1f} %" for arch in ("cnn", "mlp")),
        agrees=all_of(min(acc["cnn_train"], acc["mlp_train"]) > MEMORIZED,
                      max(acc["cnn_test"], acc["mlp_test"]) < CHANCE),
        setting=f"random labels memorized on {n:.0f} of the 8,000 embedded digits instead of "
                "60,000")


def gradient_family_changes(measured: dict) -> Claim:
    """Gradient, SmoothGrad and GradCAM maps change: CNN abs Spearman below 0.5 for each
    (whole interval), against the book's true-label network *and* against the same-recipe
    control (which differs from the random-label network only in its labels). All six:
    agrees; none: differs; else partly.

    Examples
    --------
    >>> gradient_family_changes(agreeing_example() | {"cnn_gradcam_abs": 0.8,
    ...                                               "cnn_gradcam_abs_ci": (0.7, 0.9)}).verdict
    'partly'
    """
    methods = ("gradient", "smoothgrad", "gradcam")
    values = {m: mean_and_interval(measured, f"cnn_{m}_abs") for m in methods}
    control = {m: mean_and_interval(measured, f"cnn_{m}_abs_control") for m in methods}
    return Claim(
        "Data randomization: Gradient, SmoothGrad and GradCAM maps change (pass)",
        paper="the maps of the random-label model differ clearly from the true-label model's",
        source=_SOURCE,
        measured="CNN spearman_abs " + ", ".join(
            f"{m} {fmt_interval(*values[m])} (same-recipe control {fmt_interval(*control[m])})"
            for m in methods),
        agrees=all_of(*(interval_below(v[m][1], 0.5) for v in (values, control)
                        for m in methods)),
        setting=_SETTING + "; also judged against a true-label network trained with the "
                "random-label recipe")


def guided_methods_stay(measured: dict) -> Claim:
    """Guided Backprop and Guided GradCAM keep their maps: CNN abs Spearman above 0.5 (whole
    interval). Both: agrees; neither: differs; else partly.

    Examples
    --------
    >>> guided_methods_stay(agreeing_example() | {"cnn_guided_backprop_abs": 0.1,
    ...     "cnn_guided_backprop_abs_ci": (0.0, 0.2), "cnn_guided_gradcam_abs": 0.1,
    ...     "cnn_guided_gradcam_abs_ci": (0.0, 0.2)}).verdict
    'differs'
    """
    gbp = mean_and_interval(measured, "cnn_guided_backprop_abs")
    ggc = mean_and_interval(measured, "cnn_guided_gradcam_abs")
    gbp_div, mlp_gbp = take(measured, "cnn_guided_backprop_div", "mlp_guided_backprop_abs")
    return Claim(
        "Data randomization: Guided Backprop and Guided GradCAM still show the digit (fail)",
        paper="the maps of the random-label model still look like those of the true-label "
              "model",
        source=_SOURCE,
        measured=f"CNN spearman_abs guided_backprop {fmt_interval(*gbp)} (signed "
                 f"{gbp_div:.2f}), guided_gradcam {fmt_interval(*ggc)}; MLP guided_backprop "
                 f"{mlp_gbp:.2f}",
        agrees=all_of(interval_above(gbp[1], 0.5), interval_above(ggc[1], 0.5)),
        setting="Guided GradCAM in between on the CNN; Guided Backprop changes on the MLP")


def input_times_stay_abs(measured: dict) -> Claim:
    """Gradient ⊙ Input and IG keep their absolute maps: CNN abs Spearman above 0.5 (whole
    interval) for both. Both: agrees; neither: differs; else partly. (Their signed maps,
    which the paper's figures do not show here, are reported, not ruled on.)

    Examples
    --------
    >>> input_times_stay_abs(agreeing_example() | {"cnn_integrated_gradients_abs": 0.45,
    ...     "cnn_integrated_gradients_abs_ci": (0.4, 0.55)}).verdict
    'partly'
    """
    methods = ("gradient_x_input", "integrated_gradients")
    values = {m: mean_and_interval(measured, f"cnn_{m}_abs") for m in methods}
    signed = dict(zip(methods, take(measured, *(f"cnn_{m}_div" for m in methods))))
    (input_only,) = take(measured, "input_only_abs")
    return Claim(
        "Data randomization: Gradient ⊙ Input and IG keep the digit (input product)",
        paper="the maps of the two models look similar; high rank correlation in absolute "
              "value",
        source=_SOURCE,
        measured="; ".join(f"{m} abs {fmt_interval(*values[m])}, signed {signed[m]:.2f}"
                           for m in methods) + f" (x⊙u vs x⊙v: abs {input_only:.2f})",
        agrees=all_of(*(interval_above(values[m][1], 0.5) for m in methods)),
        setting=_SETTING)


def claims(measured: dict) -> list[Claim]:
    """The chapter's claims, in the order the chapter discusses them."""
    return [memorization(measured), gradient_family_changes(measured),
            guided_methods_stay(measured), input_times_stay_abs(measured)]


def agreeing_example() -> dict:
    """A ``measured`` dict whose numbers agree with every claim (for examples and tests)."""
    m = dict(cnn_random_train=0.99, cnn_random_test=0.11, mlp_random_train=0.98,
             mlp_random_test=0.1, n_random=1000, mlp_guided_backprop_abs=0.3,
             input_only_abs=0.9)
    for method, a, d in [("gradient", 0.3, 0.0), ("smoothgrad", 0.3, 0.0),
                         ("gradcam", 0.2, 0.1), ("guided_backprop", 0.9, 0.8),
                         ("guided_gradcam", 0.6, 0.4), ("gradient_x_input", 0.9, 0.1),
                         ("integrated_gradients", 0.9, 0.1)]:
        for short, mean in (("abs", a), ("div", d), ("abs_control", a)):
            m[f"cnn_{method}_{short}"] = mean
            m[f"cnn_{method}_{short}_ci"] = (mean - 0.05, mean + 0.05)
    return m
