"""Chapter 1 (saliency methods): what the paper says about the methods, against our maps.

The chapter measures, on EfficientNet-Lite0 (three photos; the edge comparison on every
offline photo) and the MNIST CNN (five digits):

=====================================  =====================================================
key                                    what it is
=====================================  =====================================================
``rho_input_<m>``                      rank correlation of ``|map|`` with ``|x|`` (photos),
                                       for m in gradient, gradient_x_input,
                                       integrated_gradients
``on_ink_<m>``                         share of ``|map|`` on the MNIST strokes, same m
``smoothness_gradient``,               correlation of horizontally neighbouring pixels of the
``smoothness_smoothgrad``              signed maps (0 for white noise)
``negative_share_<m>``                 share of the signed map's mass that is negative, for
                                       m in gradient, gradient_x_input,
                                       integrated_gradients, guided_backprop
``edge_own_<m>``, ``edge_other_<m>``   rank correlation of ``|map|`` with the Sobel magnitude
                                       of its own / another photo, for m in
                                       guided_backprop, guided_gradcam, smoothgrad
``edge_gap_guided_backprop``,          Guided Backprop's own-minus-another difference, photo
``edge_gap_guided_backprop_ci``        by photo, and its 95 % interval; ``n_edge_photos``
                                       (optional) how many photos
``accuracy``, ``n_test``               the MNIST CNN's test accuracy and test-set size
=====================================  =====================================================

Examples
--------
>>> m = {f"rho_input_{k}": v for k, v in [("gradient", 0.1), ("gradient_x_input", 0.6),
...                                       ("integrated_gradients", 0.6)]}
>>> m |= {f"on_ink_{k}": v for k, v in [("gradient", 0.4), ("gradient_x_input", 1.0),
...                                     ("integrated_gradients", 1.0)]}
>>> m |= dict(smoothness_gradient=0.1, smoothness_smoothgrad=0.5, accuracy=0.99, n_test=2000)
>>> m |= {f"negative_share_{k}": 0.5 for k in ("gradient", "gradient_x_input",
...                                            "integrated_gradients", "guided_backprop")}
>>> m |= {f"edge_{w}_{k}": v for k in ("guided_backprop", "guided_gradcam", "smoothgrad")
...       for w, v in (("own", 0.3), ("other", 0.1))}
>>> m |= {"edge_gap_guided_backprop": 0.2, "edge_gap_guided_backprop_ci": (0.15, 0.25)}
>>> [c.verdict for c in claims(m)]
['agrees', 'agrees', 'agrees', 'agrees', 'agrees']
"""
from __future__ import annotations

from . import Claim, all_of
from ._measured import count_text, finite, mean_and_interval, take

__all__ = ["claims", "input_structure", "smoothgrad_less_noisy", "sign_hidden",
           "edge_resemblance", "mnist_accuracy", "PAPER_ACCURACY"]

#: The MNIST CNN's test accuracy the paper reports.
PAPER_ACCURACY = 0.992

_INPUT_METHODS = ("gradient", "gradient_x_input", "integrated_gradients")
_LABEL = {"gradient": "gradient", "gradient_x_input": "grad⊙input",
          "integrated_gradients": "IG", "guided_backprop": "GBP",
          "guided_gradcam": "Guided GradCAM", "smoothgrad": "SmoothGrad"}


def input_structure(measured: dict) -> Claim:
    """Gradient ⊙ Input follows the input: more rank-correlated with ``|x|`` than the gradient
    (by more than 0.2) on the photos, and (almost) all of its mass on the MNIST strokes where
    the gradient's is not.

    Examples
    --------
    >>> m = {f"{p}_{k}": 0.5 for p in ("rho_input", "on_ink") for k in _INPUT_METHODS}
    >>> input_structure(m).verdict          # Gradient ⊙ Input no closer to |x| than the gradient
    'differs'
    """
    rho = dict(zip(_INPUT_METHODS, take(measured, *(f"rho_input_{m}" for m in _INPUT_METHODS))))
    ink = dict(zip(_INPUT_METHODS, take(measured, *(f"on_ink_{m}" for m in _INPUT_METHODS))))
    for name, value in [*rho.items(), *ink.items()]:
        finite(name, value)
    return Claim(
        "Gradient ⊙ Input and IG inherit the structure of the input",
        paper="maps that multiply the gradient by the input are dominated by the input's "
              "structure, most visibly on sparse inputs such as MNIST",
        source="Sec. 6.2 (element-wise input-gradient products)",
        measured="rank corr. of |map| with |x| on photos: "
                 + ", ".join(f"{_LABEL[m]} {rho[m]:.2f}" for m in _INPUT_METHODS)
                 + "; share of |map| on MNIST strokes: "
                 + ", ".join(f"{_LABEL[m]} {ink[m]:.2f}" for m in _INPUT_METHODS),
        agrees=all_of(rho["gradient_x_input"] > rho["gradient"] + 0.2,
                      ink["gradient_x_input"] > 0.95 > ink["gradient"]))


def smoothgrad_less_noisy(measured: dict) -> Claim:
    """SmoothGrad's signed maps are smoother pixel to pixel than the gradient's: agrees above
    the gradient by more than 0.1, partly above it by less, differs at or below it.

    Examples
    --------
    >>> smoothgrad_less_noisy({"smoothness_gradient": 0.3,
    ...                        "smoothness_smoothgrad": 0.2}).verdict
    'differs'
    """
    grad, sg = take(measured, "smoothness_gradient", "smoothness_smoothgrad")
    finite("smoothness_gradient", grad), finite("smoothness_smoothgrad", sg)
    return Claim(
        "SmoothGrad reduces the gradient's pixel-level noise",
        paper="SmoothGrad seeks to alleviate the noise of gradient maps by averaging over "
              "noisy copies of the input",
        source="Sec. 2 (overview of methods)",
        measured=f"neighbour correlation of signed maps: gradient {grad:.2f}, "
                 f"SmoothGrad {sg:.2f}",
        agrees=True if sg > grad + 0.1 else (None if sg > grad else False),
        setting="20 samples instead of 50; EfficientNet-Lite0")


def sign_hidden(measured: dict) -> Claim:
    """The signed maps of the gradient, Gradient ⊙ Input and IG carry both signs in
    substance: each method's negative share lies between 0.3 and 0.7. Agrees if all three do,
    differs if none does, partly otherwise.

    Examples
    --------
    >>> m = {f"negative_share_{k}": 0.02 for k in ("gradient", "gradient_x_input",
    ...                                          "integrated_gradients", "guided_backprop")}
    >>> sign_hidden(m).verdict              # nearly non-negative maps: nothing is hidden
    'differs'
    """
    names = (*_INPUT_METHODS, "guided_backprop")
    share = dict(zip(names, take(measured, *(f"negative_share_{m}" for m in names))))
    for name, value in share.items():
        finite(f"negative_share_{name}", value)
    return Claim(
        "Absolute-value maps hide the sign of the attribution",
        paper="the absolute-value visualization discards the sign; Gradient ⊙ Input and IG "
              "look alike in absolute value while their signed maps differ",
        source="Sec. 3 (visualization) and Fig. 2",
        measured="negative share of |map|: "
                 + ", ".join(f"{_LABEL[m]} {share[m]:.2f}"
                             for m in ("gradient", "integrated_gradients", "guided_backprop")),
        agrees=all_of(*(0.3 <= share[m] <= 0.7 for m in _INPUT_METHODS)))


def edge_resemblance(measured: dict) -> Claim:
    """Guided Backprop's map follows its own photo's edges more than another photo's, read
    from the paired difference's 95 % interval: agrees when all of it is above 0.1, differs
    when none of it is above 0 (no more like its own edges than another photo's), partly
    otherwise.

    Examples
    --------
    >>> m = {f"edge_{w}_{k}": 0.2 for k in ("guided_backprop", "guided_gradcam", "smoothgrad")
    ...      for w in ("own", "other")}
    >>> m |= {"edge_gap_guided_backprop": 0.0, "edge_gap_guided_backprop_ci": (-0.05, 0.04)}
    >>> edge_resemblance(m).verdict         # no more like its own edges than another photo's
    'partly'
    >>> edge_resemblance(m | {"edge_gap_guided_backprop_ci": (-0.05, -0.01)}).verdict
    'differs'
    """
    methods = ("guided_backprop", "guided_gradcam", "smoothgrad")
    own = dict(zip(methods, take(measured, *(f"edge_own_{m}" for m in methods))))
    other = dict(zip(methods, take(measured, *(f"edge_other_{m}" for m in methods))))
    gap, (low, high) = mean_and_interval(measured, "edge_gap_guided_backprop")
    return Claim(
        "Some saliency maps resemble edge detector outputs (confirmation bias)",
        paper="Guided Backprop and Guided GradCAM maps look like the output of an edge "
              "detector (visual comparison)",
        source="Fig. 1",
        measured="by eye yes; rank corr. of |map| with own / another photo's Sobel magnitude: "
                 + ", ".join(f"{_LABEL[m]} {own[m]:.2f} / {other[m]:.2f}" for m in methods)
                 + f"; GBP own minus another, paired: {gap:+.2f} [{low:+.2f}, {high:+.2f}]",
        agrees=True if low > 0.1 else (False if high <= 0 else None),
        setting=f"{count_text(measured, 'n_edge_photos', 'photos')}, pixel-level Spearman "
                "only; a teaser, chapter 5 measures it properly")


def mnist_accuracy(measured: dict) -> Claim:
    """The MNIST CNN's test accuracy: agrees within one percentage point of the paper's
    99.2 %, partly above 95 %, differs below.

    Examples
    --------
    >>> mnist_accuracy({"accuracy": 0.90, "n_test": 2000}).verdict
    'differs'
    """
    accuracy, n = take(measured, "accuracy", "n_test")
    finite("accuracy", accuracy)
    return Claim(
        "MNIST CNN test accuracy",
        paper=f"{PAPER_ACCURACY * 100:.1f} % (full MNIST)",
        source="Sec. 5 and appendix (the MNIST CNN)",
        measured=f"{accuracy * 100:.1f} % on {n:.0f} embedded test digits",
        agrees=True if accuracy >= PAPER_ACCURACY - 0.01 else (
            None if accuracy > 0.95 else False),
        setting="trained on the 8,000 embedded training digits with a short recipe")


def claims(measured: dict) -> list[Claim]:
    """The chapter's claims, in the order the chapter discusses them."""
    return [input_structure(measured), smoothgrad_less_noisy(measured),
            sign_hidden(measured), edge_resemblance(measured), mnist_accuracy(measured)]
