"""Chapter 3 (model parameter randomization): the paper's cascading-randomization verdicts.

The chapter hands in means and 95% bootstrap intervals over images from its
:class:`~sanity_lib.checks.SanityCheckResult` objects (``result.mean``, ``result.interval``):

==================================================  ==============================================
key                                                 what it is
==================================================  ==============================================
``<method>_<layer>_<abs|div>``                      EfficientNet-Lite0, cascading: Spearman (abs /
                                                    signed) to the original map once the network
                                                    is random down to ``layer``
``<method>_<layer>_<abs|div>_ci``                   its bootstrap interval (low, high)
``mnist_<method>_<layer>_abs`` (and ``_ci``)        the same on the MNIST CNN
``gradcam_original_logits_abs``                     GradCAM after the logits with the original
                                                    label as target (instead of the argmax)
``gbp_first_below_half``                            first step whose mean GBP Spearman (abs) is
                                                    below 0.5 (``result.first_step_below``), or
                                                    None if none is
``stage6_step``                                     the step number of ``stage6``
``n_photos``, ``n_digits`` (optional)               how many photos and MNIST digits the
                                                    intervals are over (shown in ``setting``)
==================================================  ==============================================

The similarity of two independent random maps (the noise floor) is not a claim here: their
rank correlation is 0 by construction.

Examples
--------
>>> m = agreeing_example()
>>> [c.verdict for c in claims(m)]
['agrees', 'agrees', 'agrees', 'agrees', 'agrees', 'agrees']
"""
from __future__ import annotations

from . import Claim, all_of, fmt_interval, interval_above, interval_below
from ._measured import count_text, finite, mean_and_interval, take

__all__ = ["claims", "gradient_passes", "gradcam_passes", "gbp_top_invariant",
           "guided_gradcam_like_gbp", "input_times_abs_only", "mnist_gbp_dense",
           "agreeing_example"]


def _setting(measured):
    photos = count_text(measured, "n_photos", "photos")
    return f"EfficientNet-Lite0, {photos}, truncated-normal init, BN statistics kept"


def _step(measured, key):
    if key not in measured:
        raise KeyError(f"measured lacks {key!r} (it has: "
                       f"{', '.join(repr(k) for k in sorted(measured))})")
    value = measured[key]
    if value is None:
        return None
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"measured[{key!r}] must be a step number or None, not {value!r}")
    return int(value)


def gradient_passes(measured: dict) -> Claim:
    """The gradient changes once the logits are random: abs Spearman below 0.6 and signed
    below 0.3 after the logits step (whole intervals: agrees; no part: differs; else partly).

    Examples
    --------
    >>> m = agreeing_example() | {"gradient_logits_abs": 0.9,
    ...                           "gradient_logits_abs_ci": (0.85, 0.95),
    ...                           "gradient_logits_div": 0.8, "gradient_logits_div_ci": (0.7, 0.9)}
    >>> gradient_passes(m).verdict
    'differs'
    """
    a, a_ci = mean_and_interval(measured, "gradient_logits_abs")
    d, d_ci = mean_and_interval(measured, "gradient_logits_div")
    (stem,) = take(measured, "gradient_stem_abs")
    return Claim(
        "Gradient changes as soon as the logits are randomized (EfficientNet)",
        paper="the gradient passes: its maps change once the top layer is randomized",
        source="Sec. 4 (cascading randomization), Figs. 2-3",
        measured=f"spearman_abs {fmt_interval(a, a_ci)} after logits, {stem:.2f} fully "
                 f"random; signed {fmt_interval(d, d_ci)} after logits",
        agrees=all_of(interval_below(a_ci, 0.6), interval_below(d_ci, 0.3)),
        setting=_setting(measured))


def gradcam_passes(measured: dict) -> Claim:
    """GradCAM changes with the top layers: abs Spearman below 0.5 after the logits and after
    stage 7 (both intervals below: agrees; neither: differs; else partly).

    Examples
    --------
    >>> m = agreeing_example() | {"gradcam_stage7_abs": 0.8, "gradcam_stage7_abs_ci": (0.7, 0.9),
    ...                           "gradcam_logits_abs": 0.9, "gradcam_logits_abs_ci": (0.8, 0.95)}
    >>> gradcam_passes(m).verdict
    'differs'
    """
    top, top_ci = mean_and_interval(measured, "gradcam_logits_abs")
    s7, s7_ci = mean_and_interval(measured, "gradcam_stage7_abs")
    (original,) = take(measured, "gradcam_original_logits_abs")
    return Claim(
        "GradCAM changes as soon as the top layers are randomized (EfficientNet)",
        paper="GradCAM passes: its maps change once the top layers are randomized",
        source="Sec. 4 (cascading randomization), Figs. 2-3",
        measured=f"spearman_abs {fmt_interval(top, top_ci)} after logits, "
                 f"{fmt_interval(s7, s7_ci)} after stage7 (argmax target); {original:.2f} "
                 "after logits with the original label",
        agrees=all_of(interval_below(top_ci, 0.5), interval_below(s7_ci, 0.5)),
        setting="argmax target (the paper's code), which re-aligns GradCAM with the object "
                "after the logits step")


def gbp_top_invariant(measured: dict) -> Claim:
    """Guided Backprop keeps its map (abs Spearman above 0.9, whole interval) with logits,
    head and stage 7 random, and first falls below 0.5 at stage 6 or deeper, but does fall
    (the paper's third version: it changes once lower layers are random). Both: agrees;
    neither: differs; else partly.

    Examples
    --------
    >>> m = agreeing_example()
    >>> gbp_top_invariant(m | {"gbp_first_below_half": 1, "guided_backprop_stage7_abs": 0.3,
    ...                        "guided_backprop_stage7_abs_ci": (0.2, 0.4)}).verdict
    'differs'
    >>> gbp_top_invariant(m | {"gbp_first_below_half": None}).verdict   # never changes
    'partly'
    """
    s7, s7_ci = mean_and_interval(measured, "guided_backprop_stage7_abs")
    first = _step(measured, "gbp_first_below_half")
    stage6 = _step(measured, "stage6_step")
    where = "never" if first is None else f"step {first}"
    return Claim(
        "Guided Backprop is invariant to the top layers, changes only when lower layers are "
        "randomized (EfficientNet)",
        paper="GBP maps stay similar while the top layers are randomized and change once the "
              "lower convolutional layers are",
        source="Sec. 4 (cascading randomization), Figs. 2-3",
        measured=f"spearman_abs {fmt_interval(s7, s7_ci)} with logits, head and stage7 random; "
                 f"first mean below 0.5: {where} (stage6 is step {stage6})",
        agrees=all_of(interval_above(s7_ci, 0.9), first is not None and first >= stage6),
        setting=_setting(measured))


def guided_gradcam_like_gbp(measured: dict) -> Claim:
    """Guided GradCAM keeps its map (abs Spearman above 0.7, whole interval) with logits,
    head and stage 7 random; straddling 0.7 is partly, below it differs.

    Examples
    --------
    >>> guided_gradcam_like_gbp(agreeing_example() | {"guided_gradcam_stage7_abs": 0.2,
    ...     "guided_gradcam_stage7_abs_ci": (0.1, 0.3)}).verdict
    'differs'
    """
    s7, s7_ci = mean_and_interval(measured, "guided_gradcam_stage7_abs")
    (stem,) = take(measured, "guided_gradcam_stem_abs")
    return Claim(
        "Guided GradCAM behaves like Guided Backprop (EfficientNet)",
        paper="Guided GradCAM, like GBP, stays similar while the top layers are randomized",
        source="Sec. 4 (cascading randomization), Figs. 2-3",
        measured=f"spearman_abs {fmt_interval(s7, s7_ci)} after stage7, {stem:.2f} fully random",
        agrees=interval_above(s7_ci, 0.7),
        setting=_setting(measured))


def input_times_abs_only(measured: dict) -> Claim:
    """Gradient ⊙ Input keeps its absolute map but not its signs: after the logits its abs
    Spearman is more than twice its signed one (EfficientNet), and on MNIST its abs Spearman
    stays above 0.8 (whole interval) with every layer random. Both: agrees; neither:
    differs; else partly.

    Examples
    --------
    >>> input_times_abs_only(agreeing_example() | {"gradient_x_input_logits_div": 0.6,
    ...     "mnist_gradient_x_input_conv1_abs": 0.2,
    ...     "mnist_gradient_x_input_conv1_abs_ci": (0.1, 0.3)}).verdict
    'differs'
    """
    names = [f"{m}_logits_{k}" for m in ("gradient_x_input", "integrated_gradients")
             for k in ("abs", "div")]
    gxi_a, gxi_d, ig_a, ig_d = (finite(n, v) for n, v in zip(names, take(measured, *names)))
    mn, mn_ci = mean_and_interval(measured, "mnist_gradient_x_input_conv1_abs")
    return Claim(
        "Gradient ⊙ Input and IG look unchanged in abs but change in the signed maps",
        paper="Gradient ⊙ Input and IG maps look similar in absolute value after "
              "randomization, while their signed maps change",
        source="Sec. 4 (cascading randomization), Figs. 2-3",
        measured=f"EfficientNet after logits: abs {gxi_a:.2f} / {ig_a:.2f}, signed "
                 f"{gxi_d:.2f} / {ig_d:.2f} (grad⊙input / IG); MNIST fully random: "
                 f"grad⊙input abs {fmt_interval(mn, mn_ci)}",
        agrees=all_of(gxi_a > 2 * gxi_d, interval_above(mn_ci, 0.8)),
        setting="IG with 8 steps on EfficientNet (paper: 50); "
                f"{count_text(measured, 'n_digits', 'MNIST digits')}")


def mnist_gbp_dense(measured: dict) -> Claim:
    """On the MNIST CNN with logits and fc1 random, Guided Backprop keeps its map (abs
    Spearman above 0.7) while the gradient's falls below 0.5 (whole intervals). Both: agrees;
    neither: differs; else partly.

    Examples
    --------
    >>> mnist_gbp_dense(agreeing_example() | {"mnist_guided_backprop_fc1_abs": 0.3,
    ...     "mnist_guided_backprop_fc1_abs_ci": (0.2, 0.4), "mnist_gradient_fc1_abs": 0.8,
    ...     "mnist_gradient_fc1_abs_ci": (0.7, 0.9)}).verdict
    'differs'
    """
    gbp, gbp_ci = mean_and_interval(measured, "mnist_guided_backprop_fc1_abs")
    grad, grad_ci = mean_and_interval(measured, "mnist_gradient_fc1_abs")
    return Claim(
        "MNIST CNN: Guided Backprop insensitive to the dense layers",
        paper="on the MNIST CNN, Guided Backprop, like Gradient ⊙ Input and IG, stays similar "
              "under cascading randomization, while the gradient changes",
        source="Sec. 4 (cascading randomization on MNIST) and appendix",
        measured=f"spearman_abs after logits+fc1: GBP {fmt_interval(gbp, gbp_ci)}, gradient "
                 f"{fmt_interval(grad, grad_ci)}",
        agrees=all_of(interval_above(gbp_ci, 0.7), interval_below(grad_ci, 0.5)),
        setting="CNN trained on the 8,000 embedded digits; "
                f"{count_text(measured, 'n_digits', 'test digits')}")


def claims(measured: dict) -> list[Claim]:
    """The chapter's claims, in the order the chapter discusses them."""
    return [gradient_passes(measured), gradcam_passes(measured), gbp_top_invariant(measured),
            guided_gradcam_like_gbp(measured), input_times_abs_only(measured),
            mnist_gbp_dense(measured)]


def agreeing_example() -> dict:
    """A ``measured`` dict whose numbers agree with every claim (for examples and tests)."""
    def mi(mean, half=0.03):
        return mean, (mean - half, mean + half)

    m = {}
    for key, mean in [("gradient_logits_abs", 0.4), ("gradient_logits_div", 0.1),
                      ("gradcam_logits_abs", 0.3), ("gradcam_stage7_abs", 0.1),
                      ("guided_backprop_stage7_abs", 0.97), ("guided_gradcam_stage7_abs", 0.9),
                      ("mnist_gradient_x_input_conv1_abs", 0.95),
                      ("mnist_guided_backprop_fc1_abs", 0.9), ("mnist_gradient_fc1_abs", 0.2)]:
        m[key], m[f"{key}_ci"] = mi(mean)
    m |= dict(gradient_stem_abs=0.2, gradcam_original_logits_abs=0.1,
              guided_gradcam_stem_abs=0.0, gradient_x_input_logits_abs=0.6,
              gradient_x_input_logits_div=0.1, integrated_gradients_logits_abs=0.6,
              integrated_gradients_logits_div=0.1, gbp_first_below_half=5, stage6_step=4)
    return m
