"""Chapter 5 ("Why methods fail"): the paper's section 6 analyses against what we measure.

``claims(measured)`` takes the flat dict of numbers chapter 5 measures (the keys of
:data:`NEEDS`) and returns its :class:`~sanity_lib.course.ledger.Claim` records. Only what
section 6 of Adebayo et al. (2018, arXiv v3) says is a claim here. The chapter's other results
stay in its text: the Sobel-initialized layer the reviewers asked for, and two tautologies of
the random-vector argument (``u`` against ``v``, and the signed correlation of ``x * u`` with
``x * v``, are 0 by construction).

How "looks like an edge detector" is read in numbers (:func:`edge_like`): on photos, where an
image's edges and its brightness come apart, a map is edge-like (True) if its rank correlation
with the Sobel magnitude reaches what another edge detector (Canny) scores against Sobel; not
edge-like (False) if it stays at the noise floor; "partly" in between.

Examples
--------
>>> edge_like(0.50, 0.60, floor=0.0, reference=0.45), edge_like(0.04, 0.14, 0.0, 0.45)
(True, None)
"""
from __future__ import annotations

from . import Claim, all_of
from ._measured import finite, take

__all__ = ["NEEDS", "claims", "dominated", "edge_like"]

#: What the chapter measures: key -> what it is.
NEEDS = {
    "n_photos": "how many photos (every colour photo that ships offline)",
    "linear_gradient_dev": "largest |gradient - w| of the linear model, 200 digits",
    "linear_smoothgrad_dev": "largest |SmoothGrad - w|",
    "linear_ig_dev": "largest |IG - x * w|",
    "linear_random_gradient_abs": "gradient, fitted vs random w: mean spearman_abs",
    "linear_random_ig_abs": "IG, fitted vs random w: mean spearman_abs",
    "ig_x_mnist": "rho(|IG|, |x|), MNIST", "ig_w_mnist": "rho(|IG|, |w|), MNIST",
    "ig_x_photos": "rho(|IG|, |x|), photos", "ig_w_photos": "rho(|IG|, |w|), photos",
    "xuv_abs_mnist": "x*u vs x*v, mean spearman_abs, MNIST",
    "xuv_abs_photos": "x*u vs x*v, mean spearman_abs, photos in [-1, 1]",
    "conv_photos_min": "random conv layer, gradient vs Sobel, photos: lowest seed mean",
    "conv_photos_max": "... highest seed mean",
    "conv_mnist_min": "the same on MNIST, lowest", "conv_mnist_max": "highest",
    "digit_sobel": "the digit itself vs its Sobel magnitude",
    "random_net_photos_min": "fully randomized EfficientNet-Lite0, lowest method mean vs Sobel",
    "random_net_photos_max": "... highest",
    "random_net_mnist_min": "fully randomized MNIST CNN, lowest", "random_net_mnist_max": "highest",
    "floor_photos": "random Gaussian mask vs Sobel, photos (the noise floor)",
    "canny_sobel_photos": "Canny vs Sobel on the photos (one edge map against another)",
}


def edge_like(low: float, high: float, floor: float, reference: float) -> bool | None:
    """Are maps whose edge correlations span ``[low, high]`` edge-like?

    True if even the lowest reaches ``reference`` (what one edge detector scores against
    another), False if even the highest is at or below ``floor`` (a random mask's score),
    None in between.

    Examples
    --------
    >>> edge_like(-0.02, 0.0, floor=0.003, reference=0.45)
    False
    """
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    if low >= reference:
        return True
    if high <= floor:
        return False
    return None


def dominated(by_input: float, by_weights: float, level: float = 0.9) -> bool | None:
    """Does the input dominate a map, given its rank correlations with |x| and with |w|?

    True if the map ranks pixels almost as the input does (above ``level``), False if it
    follows the weights at least as much as the input, None in between (shared).

    Examples
    --------
    >>> dominated(0.99, 0.40), dominated(0.68, 0.62), dominated(0.30, 0.70)
    (True, None, False)
    """
    if by_input > level:
        return True
    if by_input <= by_weights:
        return False
    return None


def claims(measured: dict) -> list[Claim]:
    """Chapter 5's claims, with verdicts from ``measured`` (keys: :data:`NEEDS`).

    Examples
    --------
    >>> m = dict.fromkeys(NEEDS, 0.0)
    >>> m.update(xuv_abs_mnist=0.99, xuv_abs_photos=0.41, ig_x_mnist=0.99, ig_w_mnist=0.3)
    >>> [c.verdict for c in claims(m)][:3]
    ['agrees', 'partly', 'agrees']
    """
    m = {key: finite(key, value) for key, value in zip(NEEDS, take(measured, *NEEDS))}
    n_photos = f"{m['n_photos']:.0f}"
    exact = 1e-4  # float32 rounding of a closed form
    return [
        Claim("Linear model: the gradient and SmoothGrad return w, whatever the input",
              paper="both give the weights w",
              source="Sec. 6.3 (analysis for simple models: linear)",
              measured=f"largest difference from w over 200 digits: gradient "
                       f"{m['linear_gradient_dev']:.1e}, SmoothGrad "
                       f"{m['linear_smoothgrad_dev']:.1e}; fitted vs random w: gradient "
                       f"spearman_abs {m['linear_random_gradient_abs']:.2f}",
              agrees=all_of(m["linear_gradient_dev"] < exact,
                            m["linear_smoothgrad_dev"] < exact),
              setting="ridge-regression 'is it a 3?' weights, 200 MNIST test digits"),
        Claim("Linear model: IG with a zero baseline is x ⊙ w, dominated by the input",
              paper="IG gives x ⊙ w, in which the input dominates",
              source="Sec. 6.3 (analysis for simple models: linear)",
              measured=f"largest |IG - x ⊙ w| {m['linear_ig_dev']:.1e}; ρ(|IG|, |x|) "
                       f"{m['ig_x_mnist']:.2f} vs ρ(|IG|, |w|) {m['ig_w_mnist']:.2f} (MNIST), "
                       f"{m['ig_x_photos']:.2f} vs {m['ig_w_photos']:.2f} (photos); fitted vs "
                       f"random w: IG spearman_abs {m['linear_random_ig_abs']:.2f}",
              agrees=all_of(m["linear_ig_dev"] < exact,
                            dominated(m["ig_x_mnist"], m["ig_w_mnist"]),
                            dominated(m["ig_x_photos"], m["ig_w_photos"])),
              setting=f"ridge-regression weights on 200 digits; a random w on {n_photos} photos"),
        Claim("x ⊙ u and x ⊙ v stay rank-correlated for independent random u, v",
              paper="highly rank-correlated in absolute value",
              source="Sec. 6.2 (element-wise input-gradient products)",
              measured=f"mean spearman_abs {m['xuv_abs_mnist']:.2f} (MNIST), "
                       f"{m['xuv_abs_photos']:.2f} (photos in [-1, 1])",
              agrees=all_of(m["xuv_abs_mnist"] > 0.9, m["xuv_abs_photos"] > 0.2),
              setting=f"200 MNIST digits and {n_photos} photos, 3 random pairs each"),
        Claim("A random 3 x 3 conv layer's gradient looks like an edge map",
              paper="the maps look like the output of an edge detector (visually)",
              source="Sec. 6.3 (analysis for simple models: one conv layer)",
              measured=f"ρ with Sobel on photos {m['conv_photos_min']:.2f} to "
                       f"{m['conv_photos_max']:.2f} over 5 seeds (noise floor "
                       f"{m['floor_photos']:.3f}, Canny vs Sobel "
                       f"{m['canny_sobel_photos']:.2f}); MNIST {m['conv_mnist_min']:.2f} to "
                       f"{m['conv_mnist_max']:.2f} (the digit itself {m['digit_sobel']:.2f})",
              agrees=edge_like(m["conv_photos_min"], m["conv_photos_max"], m["floor_photos"],
                               m["canny_sobel_photos"]),
              setting="16 filters, PyTorch's default initialization"),
        Claim("The maps of fully randomized networks look like edge maps",
              paper="they resemble the output of an edge detector", source="Sec. 1 and Sec. 6.3",
              measured=f"ρ with Sobel, five methods: {m['random_net_photos_min']:.2f} to "
                       f"{m['random_net_photos_max']:.2f} (EfficientNet-Lite0, photos; floor "
                       f"{m['floor_photos']:.3f}), {m['random_net_mnist_min']:.2f} to "
                       f"{m['random_net_mnist_max']:.2f} (MNIST CNN)",
              agrees=edge_like(m["random_net_photos_min"], m["random_net_photos_max"],
                               m["floor_photos"], m["canny_sobel_photos"]),
              setting=f"EfficientNet-Lite0 on {n_photos} photos (truncated normal, batch-norm "
                      "statistics re-estimated on the photos; IG 8 steps, SmoothGrad 8 "
                      "samples); "
                      "MNIST CNN on 100 digits (IG 16 steps, SmoothGrad 10 samples)"),
    ]
