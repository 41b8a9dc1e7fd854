"""Chapter 6 (Gaussian noise on the parameters): the student report's claims against ours.

The paper has no noise experiment; the claims are those of the CS 689 student report that
proposed it (the course's seed document 004), on its setting: the MNIST MLP, absolute noise
of standard deviation 0.1, 0.2 and 0.3 added from the logits down, signed rank correlation.
The chapter's own extensions (the CNN, noise relative to each layer's weights) are not
claims of the report and stay in its text.

``claims(measured)`` reads, for every noise level ``s`` in :data:`STDS` and method ``m`` in
:data:`METHODS`: ``S_<s>_<m>`` (the sensitivity, the area above the mean curve),
``S_sd_<s>_<m>`` (its standard deviation over the noise seeds) and ``kappa_<s>_<m>`` (the
concavity index of the mean curve).

Examples
--------
>>> m = {f"S_{s}_{k}": s * (2 if k == "integrated_gradients" else 1) / (
...      4 if k == "guided_backprop" else 1) for s in STDS for k in METHODS}
>>> m |= {f"S_sd_{s}_{k}": 0.01 for s in STDS for k in METHODS}
>>> m |= {f"kappa_{s}_{k}": 0.5 if s == 0.1 else -0.5 for s in STDS for k in METHODS}
>>> [c.verdict for c in claims(m)]
['agrees', 'agrees', 'agrees', 'agrees', 'agrees']
"""
from __future__ import annotations

from . import Claim
from ._measured import finite, take

__all__ = ["STDS", "METHODS", "GRADIENT_BASED", "SHAPE_LEVEL", "claims", "needs",
           "first_at_every", "count_verdict"]

#: The report's noise levels and methods.
STDS = (0.1, 0.2, 0.3)
METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
           "guided_backprop")
#: The methods whose curves have a shape to read (Guided Backprop's is flat until fc1).
GRADIENT_BASED = METHODS[:4]
#: A curve is concave when its concavity index exceeds this, convex below minus this.
SHAPE_LEVEL = 0.1
SOURCE = "CS 689 student report (seed 004), noise test on the MNIST MLP"
SETTING = "10 digits, 3 noise seeds, IG 8 steps, SmoothGrad 8 samples"
SHORT = {"gradient": "G", "gradient_x_input": "G⊙I", "integrated_gradients": "IG",
         "smoothgrad": "SG", "guided_backprop": "GBP"}


def needs() -> list:
    """The keys :func:`claims` reads."""
    return [f"{kind}_{s}_{m}" for kind in ("S", "S_sd", "kappa") for s in STDS for m in METHODS]


def count_verdict(n: int, of: int) -> bool | None:
    """True if all ``of`` curves have the shape, False if none has, else None (partly).

    Examples
    --------
    >>> count_verdict(4, 4), count_verdict(0, 4), count_verdict(2, 4)
    (True, False, None)
    """
    return True if n == of else (False if n == 0 else None)


def first_at_every(sensitivity: dict, spread: dict, method: str, largest: bool = True,
                   margin: float = 0.02) -> bool | None:
    """Is ``method`` the most (``largest``) or least sensitive at every noise level?

    ``sensitivity`` and ``spread`` map ``(std, method)`` to the sensitivity and its standard
    deviation over seeds. True if the method is strictly first at every level; None if,
    where it is not, it is within the seed spread of the first (twice the larger standard
    deviation of the two, at least ``margin``); False otherwise.

    Examples
    --------
    >>> S = {(0.1, "a"): 0.5, (0.1, "b"): 0.49, (0.3, "a"): 0.9, (0.3, "b"): 0.95}
    >>> sd = dict.fromkeys(S, 0.01)
    >>> first_at_every(S, sd, "a"), first_at_every(S, sd, "b")
    (False, None)
    >>> S = {(0.1, "a"): 0.6, (0.1, "b"): 0.2}
    >>> sd = dict.fromkeys(S, 0.0)
    >>> first_at_every(S, sd, "a"), first_at_every(S, sd, "a", largest=False)
    (True, False)
    """
    verdict = True
    for s in sorted({s for s, _ in sensitivity}):
        here = {m: v for (t, m), v in sensitivity.items() if t == s}
        pick = (max if largest else min)(here, key=here.get)
        if pick == method:
            continue
        allowed = max(margin, 2 * max(spread[(s, pick)], spread[(s, method)]))
        if abs(here[pick] - here[method]) > allowed:
            return False
        verdict = None
    return verdict


def claims(measured: dict) -> list[Claim]:
    """Chapter 6's claims, with verdicts from ``measured`` (keys: :func:`needs`)."""
    keys = needs()
    m = {key: finite(key, value) for key, value in zip(keys, take(measured, *keys))}
    S = {(s, k): m[f"S_{s}_{k}"] for s in STDS for k in METHODS}
    sd = {(s, k): m[f"S_sd_{s}_{k}"] for s in STDS for k in METHODS}
    kappa = {(s, k): m[f"kappa_{s}_{k}"] for s in STDS for k in METHODS}

    def kappas(s):
        return ", ".join(f"{SHORT[k]} {kappa[(s, k)]:+.2f}" for k in METHODS)

    def leaders(largest):
        return " / ".join(SHORT[(max if largest else min)(
            METHODS, key=lambda k: S[(s, k)])] for s in STDS)

    rising = [S[(STDS[0], k)] < S[(STDS[1], k)] <= S[(STDS[2], k)] + 0.02 for k in METHODS]
    concave = sum(kappa[(STDS[0], k)] > SHAPE_LEVEL for k in GRADIENT_BASED)
    convex = sum(kappa[(STDS[-1], k)] < -SHAPE_LEVEL for k in GRADIENT_BASED)
    n = len(GRADIENT_BASED)
    return [
        Claim("Similarity falls as the noise grows (MLP, absolute 0.1 → 0.3)",
              paper="a clear trend of lower rank correlation at higher noise", source=SOURCE,
              measured="sensitivity S at 0.1 / 0.2 / 0.3: " + "; ".join(
                  f"{SHORT[k]} " + " / ".join(f"{S[(s, k)]:.2f}" for s in STDS)
                  for k in METHODS),
              agrees=count_verdict(sum(rising), len(METHODS)), setting=SETTING),
        Claim("At low noise (absolute 0.1) the curves are concave (MLP)",
              paper="concave at std 0.1", source=SOURCE,
              measured=f"concavity κ at 0.1: {kappas(0.1)} ({concave} of {n} gradient-based "
                       f"methods above +{SHAPE_LEVEL})",
              agrees=count_verdict(concave, n),
              setting="κ = signed area between curve and chord / its maximum; concave if "
                      f"κ > {SHAPE_LEVEL}"),
        Claim("At high noise (absolute 0.3) the curves are convex (MLP)",
              paper="increasingly convex at higher noise", source=SOURCE,
              measured=f"κ at 0.3: {kappas(0.3)} ({convex} of {n} gradient-based methods "
                       f"below -{SHAPE_LEVEL})",
              agrees=count_verdict(convex, n)),
        Claim("Integrated Gradients is the most sensitive method at every noise level (MLP)",
              paper="IG the most sensitive across all noise levels", source=SOURCE,
              measured=f"largest S at 0.1 / 0.2 / 0.3: {leaders(True)}; IG "
                       f"{S[(0.1, 'integrated_gradients')]:.2f} vs G⊙I "
                       f"{S[(0.1, 'gradient_x_input')]:.2f} at 0.1 (seed sd up to "
                       f"{max(sd.values()):.2f})",
              agrees=first_at_every(S, sd, "integrated_gradients")),
        Claim("Guided Backprop is the least sensitive method at every noise level (MLP)",
              paper="GBP the least sensitive across all noise levels", source=SOURCE,
              measured=f"smallest S at 0.1 / 0.2 / 0.3: {leaders(False)}; GBP "
                       + " / ".join(f"{S[(s, 'guided_backprop')]:.2f}" for s in STDS),
              agrees=first_at_every(S, sd, "guided_backprop", largest=False)),
    ]
