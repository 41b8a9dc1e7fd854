"""Chapter 2 (comparing maps): the paper's noise floors and its sign-blind metrics, measured.

What the chapter hands in (``measured``):

=====================================  =====================================================
key                                    what it is
=====================================  =====================================================
``floor_real_<metric>``                a real gradient map against a Gaussian mask, mean
                                       over the photos, for each of the four metrics
``floor_uniform_<metric>``             two Uniform[-1, 1] masks (224 x 224, one channel),
                                       mean over 50 pairs, for each metric
``floor_uniform3_hog``                 the same with 3-channel masks, HOG only
``xuv_abs_photos``, ``xuv_abs_mnist``  abs rank correlation of x*u with x*v (u, v random)
``xuv_diverging_photos``               the signed one, on the photos (reported, not ruled:
                                       it is 0 by construction)
``gxi_abs``, ``gxi_diverging``,        rank correlation of the gradient with gradient x
``gxi_diverging_min``                  input, abs and signed (mean over photos; signed min)
``n_photos`` (optional)                how many photos the photo numbers average over
=====================================  =====================================================

The rank correlations of independent random maps are 0 by construction, so no rule rests on
them: the noise-floor claims are judged by SSIM and HOG, whose floors are not 0 a priori.

Examples
--------
>>> metrics = ("spearman_abs", "spearman_diverging", "ssim", "hog")
>>> m = {f"floor_real_{k}": 0.001 for k in metrics}
>>> m |= {f"floor_uniform_{k}": v for k, v in zip(metrics, (0.0, 0.0, 0.005, 0.08))}
>>> m |= dict(floor_uniform3_hog=0.05, xuv_abs_photos=0.6, xuv_abs_mnist=0.95,
...           xuv_diverging_photos=0.0, gxi_abs=0.85, gxi_diverging=-0.5,
...           gxi_diverging_min=-0.9)
>>> [c.verdict for c in claims(m)]
['agrees', 'agrees', 'agrees', 'agrees']
"""
from __future__ import annotations

from . import Claim, all_of
from ._measured import count_text, finite, take

__all__ = ["claims", "real_map_floor", "uniform_floor", "input_times_random",
           "abs_hides_sign", "METRICS", "PAPER_REAL_FLOOR", "PAPER_UNIFORM_HOG"]

METRICS = ("spearman_abs", "spearman_diverging", "ssim", "hog")
#: The paper's noise floor of a real map against a random mask (all four metrics).
PAPER_REAL_FLOOR = 0.005
#: The paper's HOG correlation of two Uniform[-1, 1] masks.
PAPER_UNIFORM_HOG = 0.08


def _floors(measured, prefix):
    values = dict(zip(METRICS, take(measured, *(f"{prefix}_{m}" for m in METRICS))))
    return {k: finite(f"{prefix}_{k}", v) for k, v in values.items()}


def _fmt(values):
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())


def real_map_floor(measured: dict) -> Claim:
    """A real map against a Gaussian mask: SSIM and HOG within the paper's 0.005 of 0
    (agrees), within 0.03 (partly), or further (differs).

    Examples
    --------
    >>> m = {f"floor_real_{k}": 0.0 for k in METRICS} | {"floor_real_hog": 0.2}
    >>> real_map_floor(m).verdict
    'differs'
    """
    floor = _floors(measured, "floor_real")
    worst = max(abs(floor["ssim"]), abs(floor["hog"]))
    photos = count_text(measured, "n_photos", "photos")
    return Claim(
        "Noise floor: real map vs Gaussian mask",
        paper=f"≈ 0.000-{PAPER_REAL_FLOOR:.3f} for all four metrics (50 ImageNet images)",
        source="Sec. 3 (similarity metrics) and appendix",
        measured=_fmt(floor) + f" ({photos}, gradient); judged by SSIM and HOG, the rank "
                               "correlations of independent maps being 0 by construction",
        agrees=True if worst <= PAPER_REAL_FLOOR else (None if worst <= 0.03 else False),
        setting=f"EfficientNet-Lite0 on {photos} instead of Inception v3 on 50 images")


def uniform_floor(measured: dict) -> Claim:
    """Two Uniform[-1, 1] masks: HOG within 0.03 of the paper's 0.08 and SSIM below 0.02
    (agrees), one of the two (partly), neither (differs).

    Examples
    --------
    >>> m = {f"floor_uniform_{k}": 0.0 for k in METRICS} | {"floor_uniform3_hog": 0.0}
    >>> uniform_floor(m | {"floor_uniform_ssim": 0.1}).verdict    # HOG 0 and SSIM 0.1
    'differs'
    >>> uniform_floor(m).verdict                                  # SSIM 0 but HOG 0
    'partly'
    """
    floor = _floors(measured, "floor_uniform")
    (hog3,) = take(measured, "floor_uniform3_hog")
    return Claim(
        "Noise floor: two Uniform[-1, 1] masks",
        paper=f"HOG ≈ {PAPER_UNIFORM_HOG:.2f}, the others ≈ 0",
        source="Sec. 3 (similarity metrics) and appendix",
        measured=_fmt(floor) + " (224 × 224, one channel, 50 pairs)",
        agrees=all_of(abs(floor["hog"] - PAPER_UNIFORM_HOG) < 0.03, abs(floor["ssim"]) < 0.02),
        setting=f"224 px single-channel masks; 3-channel masks give HOG {hog3:.3f}")


def input_times_random(measured: dict) -> Claim:
    """x⊙u and x⊙v (u, v independent) stay rank-correlated in absolute value: above 0.5 on
    the photos and on MNIST (agrees), on one of them (partly), on neither (differs).

    Examples
    --------
    >>> input_times_random({"xuv_abs_photos": 0.1, "xuv_abs_mnist": 0.2,
    ...                     "xuv_diverging_photos": 0.0}).verdict
    'differs'
    """
    photos, mnist, signed = take(measured, "xuv_abs_photos", "xuv_abs_mnist",
                                 "xuv_diverging_photos")
    low = min(finite("xuv_abs_photos", photos), finite("xuv_abs_mnist", mnist))
    return Claim(
        "Input times a random vector: x⊙u and x⊙v stay rank-correlated (abs)",
        paper="x⊙u and x⊙v for independent random u, v remain highly rank-correlated",
        source="Sec. 6.2 (element-wise input-gradient products)",
        measured=f"spearman_abs {photos:.2f} (photos), {mnist:.2f} (MNIST); "
                 f"spearman_diverging {signed:.3f} (photos)",
        agrees=True if low > 0.5 else (None if max(photos, mnist) > 0.5 else False),
        setting=f"{count_text(measured, 'n_photos', 'photos')} in EfficientNet's [-1, 1] "
                f"input space; {count_text(measured, 'n_digits', 'MNIST digits')} in [0, 1]")


def abs_hides_sign(measured: dict) -> Claim:
    """Gradient and gradient ⊙ input: alike in absolute value (abs rank correlation above
    0.6) while the signed rank correlation is below 0.2. Both (agrees), one (partly), neither
    (differs).

    Examples
    --------
    >>> abs_hides_sign({"gxi_abs": 0.3, "gxi_diverging": 0.9, "gxi_diverging_min": 0.8}).verdict
    'differs'
    """
    a, d, d_min = take(measured, "gxi_abs", "gxi_diverging", "gxi_diverging_min")
    return Claim(
        "Absolute values hide sign changes (input-times-gradient maps)",
        paper="the absolute-value view hides sign changes: Gradient ⊙ Input and IG can look "
              "unchanged while their signed maps change",
        source="Sec. 3 (visualization) and Fig. 2",
        measured=f"gradient vs gradient ⊙ input: spearman_abs {a:.2f}, "
                 f"spearman_diverging {d:.2f} (min {d_min:.2f})",
        agrees=all_of(finite("gxi_abs", a) > 0.6, finite("gxi_diverging", d) < 0.2))


def claims(measured: dict) -> list[Claim]:
    """The chapter's claims, in the order the chapter discusses them."""
    return [real_map_floor(measured), uniform_floor(measured), input_times_random(measured),
            abs_hides_sign(measured)]
