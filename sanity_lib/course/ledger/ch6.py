"""Chapter 6 (Gaussian noise on the parameters): the student report's claims against ours.

The paper has no noise experiment; the claims are those of the CS 689 student report that
proposed it (the course's seed document 004), on its setting: the MNIST MLP, absolute noise
of standard deviation 0.1, 0.2 and 0.3 added from the logits down, signed rank correlation.
The chapter's own extensions (the CNN, noise relative to each layer's weights) are not
claims of the report and stay in its text.

``claims(measured)`` reads, for every noise level ``s`` in :data:`STDS` and method ``m`` in
:data:`METHODS`: ``S_<s>_<m>`` (the sensitivity, the area above the mean curve) and
``S_<s>_<m>_ci`` (its 95 % interval over the digits); for the methods in
:data:`GRADIENT_BASED`, ``kappa_<s>_<m>`` (the concavity index of the mean curve) and
``kappa_<s>_<m>_ci`` (its interval over the digits); and, per level,
``ig_lead_<s>`` and ``gbp_lead_<s>``: the 95 % intervals of the paired per-digit differences
"Integrated Gradients minus the most sensitive other method" and "the least sensitive other
method minus Guided Backprop" (above 0: the claimed method is first). ``n_digits``, when
given, goes into the settings.

Examples
--------
>>> m = {}
>>> for s in STDS:
...     for k in METHODS:
...         v = s * (2 if k == "integrated_gradients" else 1) / (4 if k == "guided_backprop" else 1)
...         m |= {f"S_{s}_{k}": v, f"S_{s}_{k}_ci": (v - 0.01, v + 0.01)}
...         m |= {f"kappa_{s}_{k}": 0.5 if s == 0.1 else -0.5}
...         m |= {f"kappa_{s}_{k}_ci": (0.4, 0.6) if s == 0.1 else (-0.6, -0.4)}
...     m |= {f"ig_lead_{s}": (0.05, 0.1), f"gbp_lead_{s}": (0.05, 0.1)}
>>> [c.verdict for c in claims(m)]
['agrees', 'agrees', 'agrees', 'agrees', 'agrees']
"""
from __future__ import annotations

from . import Claim, all_of, fmt_interval, interval_above
from ._measured import count_text, mean_and_interval, take

__all__ = ["STDS", "METHODS", "GRADIENT_BASED", "SHAPE_LEVEL", "claims", "needs",
           "rises", "ahead_at_every"]

#: The report's noise levels and methods.
STDS = (0.1, 0.2, 0.3)
METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
           "guided_backprop")
#: The methods whose curves have a shape to read (Guided Backprop's is flat until fc1).
GRADIENT_BASED = METHODS[:4]
#: A curve is concave when its concavity index exceeds this, convex below minus this.
SHAPE_LEVEL = 0.1
SOURCE = "CS 689 student report (seed 004), noise test on the MNIST MLP"
SETTING = "3 noise seeds, IG 8 steps, SmoothGrad 8 samples"
SHORT = {"gradient": "G", "gradient_x_input": "G⊙I", "integrated_gradients": "IG",
         "smoothgrad": "SG", "guided_backprop": "GBP"}


def needs() -> list:
    """The keys :func:`claims` reads."""
    return ([f"S_{s}_{m}{ci}" for s in STDS for m in METHODS for ci in ("", "_ci")]
            + [f"kappa_{s}_{m}{ci}" for s in STDS for m in GRADIENT_BASED
               for ci in ("", "_ci")]
            + [f"{who}_lead_{s}" for who in ("ig", "gbp") for s in STDS])


def rises(low_noise: tuple, high_noise: tuple) -> bool | None:
    """Does a sensitivity rise from the lowest to the highest noise level?

    Each argument is ``(mean, (low, high))``. True if the high-noise interval lies wholly
    above the low-noise one; False if the mean did not rise at all; None if it rose by less
    than the intervals can tell.

    Examples
    --------
    >>> rises((0.2, (0.1, 0.3)), (0.6, (0.5, 0.7))), rises((0.5, (0.4, 0.6)), (0.5, (0.4, 0.6)))
    (True, False)
    >>> rises((0.2, (0.1, 0.3)), (0.25, (0.15, 0.35))) is None
    True
    """
    (low_mean, (_, low_high)), (high_mean, (high_low, _)) = low_noise, high_noise
    if high_mean <= low_mean:
        return False
    return True if high_low > low_high else None


def ahead_at_every(leads: list) -> bool | None:
    """Is a method ahead of every other at every noise level?

    ``leads`` holds, per level, the 95 % interval of the paired per-digit difference between
    the method and its closest rival (positive: ahead). True if every interval is above 0;
    False if one lies wholly below 0 (a rival is ahead there); None otherwise (a shared
    place).

    Examples
    --------
    >>> ahead_at_every([(0.02, 0.05), (0.1, 0.2)]), ahead_at_every([(0.02, 0.05), (-0.2, -0.1)])
    (True, False)
    >>> ahead_at_every([(0.02, 0.05), (-0.01, 0.03)]) is None
    True
    """
    verdicts = [interval_above(lead, 0.0) for lead in leads]
    if any(v is False and lead[1] < 0 for v, lead in zip(verdicts, leads)):
        return False
    return True if all(v is True for v in verdicts) else None


def claims(measured: dict) -> list[Claim]:
    """Chapter 6's claims, with verdicts from ``measured`` (keys: :func:`needs`)."""
    S = {(s, k): mean_and_interval(measured, f"S_{s}_{k}") for s in STDS for k in METHODS}
    kappa = {(s, k): mean_and_interval(measured, f"kappa_{s}_{k}")
             for s in STDS for k in GRADIENT_BASED}
    def intervals(who):
        keys = [f"{who}_lead_{s}" for s in STDS]
        values = take(measured, *keys)
        for key, value in zip(keys, values):
            if not isinstance(value, tuple):
                raise ValueError(f"measured[{key!r}] must be a (low, high) interval of paired "
                                 f"differences, not {value!r}")
        return list(values)

    ig_lead, gbp_lead = intervals("ig"), intervals("gbp")
    setting = f"{count_text(measured, 'n_digits', 'digits')}, {SETTING}"

    def kappas(s):
        return ", ".join(f"{SHORT[k]} {fmt_interval(*kappa[(s, k)])}" for k in GRADIENT_BASED)

    def leaders(largest):
        return " / ".join(SHORT[(max if largest else min)(
            METHODS, key=lambda k: S[(s, k)][0])] for s in STDS)

    def leads(intervals):
        return " / ".join(f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in intervals)

    low, high = STDS[0], STDS[-1]
    return [
        Claim("Similarity falls as the noise grows (MLP, absolute 0.1 → 0.3)",
              paper="a clear trend of lower rank correlation at higher noise", source=SOURCE,
              measured="sensitivity S at 0.1 / 0.3: " + "; ".join(
                  f"{SHORT[k]} {fmt_interval(*S[(low, k)])} / {fmt_interval(*S[(high, k)])}"
                  for k in METHODS),
              agrees=all_of(*(rises(S[(low, k)], S[(high, k)]) for k in METHODS)),
              setting=setting),
        Claim("At low noise (absolute 0.1) the curves are concave (MLP)",
              paper="concave at std 0.1", source=SOURCE,
              measured=f"concavity κ at 0.1 [95 % interval over digits]: {kappas(low)}",
              agrees=all_of(*(interval_above(kappa[(low, k)][1], SHAPE_LEVEL)
                              for k in GRADIENT_BASED)),
              setting="κ = signed area between curve and chord / its maximum; concave if "
                      f"the whole interval is above {SHAPE_LEVEL}"),
        Claim("At high noise (absolute 0.3) the curves are convex (MLP)",
              paper="increasingly convex at higher noise", source=SOURCE,
              measured=f"κ at 0.3: {kappas(high)}",
              agrees=all_of(*(interval_above(tuple(-v for v in reversed(kappa[(high, k)][1])),
                                             SHAPE_LEVEL) for k in GRADIENT_BASED)),
              setting=f"convex if the whole interval is below -{SHAPE_LEVEL}"),
        Claim("Integrated Gradients is the most sensitive method at every noise level (MLP)",
              paper="IG the most sensitive across all noise levels", source=SOURCE,
              measured=f"largest S at 0.1 / 0.2 / 0.3: {leaders(True)}; IG minus the most "
                       f"sensitive other method, paired over digits: {leads(ig_lead)}",
              agrees=ahead_at_every(ig_lead)),
        Claim("Guided Backprop is the least sensitive method at every noise level (MLP)",
              paper="GBP the least sensitive across all noise levels", source=SOURCE,
              measured=f"smallest S at 0.1 / 0.2 / 0.3: {leaders(False)}; the least "
                       f"sensitive other method minus GBP: {leads(gbp_lead)}",
              agrees=ahead_at_every(gbp_lead)),
    ]
