"""Chapter 7 ("Beyond the paper"): the paper's and the later papers' claims the chapter tests.

Only statements of a paper are claims here: Adebayo et al. (2018) on Guided Backprop under
cascading randomization and on the initialization scheme, Sixt et al. (2020) on the class
(in)dependence of modified-backprop maps, and Hedström et al. (2023) on their repairs of the
test. The chapter's answers to the reviewers' questions (bottom-up order, batch-norm
statistics, smooth activations) are not paper claims and stay in its text, as does the
noise ladder of Binder et al.'s argument: independent noise has a rank correlation of 0 by
construction, so "pure noise passes the MPRT" cannot fail and is no test.

Keys of ``measured`` (:data:`NEEDS`): ``gbp_logits``, ``gbp_fc1``, ``gbp_fc1_interval``
(a (low, high) pair), ``gbp_last`` (top-down on the MNIST CNN: after the logits, with both
dense layers random, and with every layer random), ``gbp_bu_conv1`` (bottom-up, conv1 alone:
shown, not judged), ``init_<scheme>_<method>`` (spearman_abs with logits and fc1 random, for
the paper's two schemes and :data:`INIT_METHODS`), ``class_gbp``, ``class_deeplift``
(signed similarity of the maps for the top class and the runner-up), ``rank_agreement``
(Spearman correlation of the top-down MPRT ranking with the eMPRT ranking).

Examples
--------
>>> m = dict(gbp_logits=0.94, gbp_fc1=0.83, gbp_fc1_interval=(0.80, 0.86), gbp_last=0.2,
...          gbp_bu_conv1=0.61, class_gbp=0.88, class_deeplift=-0.07, rank_agreement=0.49)
>>> m |= {f"init_{s}_{k}": v for s in SCHEMES
...       for k, v in zip(INIT_METHODS, (0.1, 0.9, 0.8))}
>>> [c.verdict for c in claims(m)]
['agrees', 'agrees', 'agrees', 'agrees']
"""
from __future__ import annotations

from . import Claim, all_of, interval_above
from ._measured import finite, take

__all__ = ["NEEDS", "SCHEMES", "INIT_METHODS", "FAILS_AT", "claims", "same_verdicts",
           "rankings_differ"]

#: The paper's initialization (truncated normal) and the one it says gives the same picture.
SCHEMES = ("truncated_normal", "uniform")
INIT_METHODS = ("gradient", "gradient_x_input", "guided_backprop")
#: A method fails the test when its mean spearman_abs with logits and fc1 random is at least this.
FAILS_AT = 0.5
NEEDS = (["gbp_logits", "gbp_fc1", "gbp_fc1_interval", "gbp_last", "gbp_bu_conv1"]
         + [f"init_{s}_{m}" for s in SCHEMES for m in INIT_METHODS]
         + ["class_gbp", "class_deeplift", "rank_agreement"])
SHORT = {"gradient": "grad", "gradient_x_input": "G⊙I", "guided_backprop": "GBP"}


def same_verdicts(first: dict, second: dict, level: float = FAILS_AT) -> bool | None:
    """Do two initializations give every method the same verdict (fails if >= ``level``)?

    True if all methods agree, False if none does, None if some do.

    Examples
    --------
    >>> same_verdicts({"a": 0.9, "b": 0.1}, {"a": 0.8, "b": 0.2})
    True
    >>> same_verdicts({"a": 0.9, "b": 0.1}, {"a": 0.2, "b": 0.7})
    False
    """
    same = [(first[m] >= level) == (second[m] >= level) for m in first]
    return True if all(same) else (False if not any(same) else None)


def rankings_differ(agreement: float, differ_below: float = 0.8,
                    same_above: float = 0.95) -> bool | None:
    """Do two rankings of methods differ, given their Spearman correlation?

    True below ``differ_below``, False above ``same_above`` (practically the same ranking),
    None in between.

    Examples
    --------
    >>> rankings_differ(0.49), rankings_differ(1.0), rankings_differ(0.9)
    (True, False, None)
    """
    if agreement < differ_below:
        return True
    return False if agreement > same_above else None


def claims(measured: dict) -> list[Claim]:
    """Chapter 7's claims, with verdicts from ``measured`` (keys: :data:`NEEDS`)."""
    values = dict(zip(NEEDS, take(measured, *NEEDS)))
    m = {k: v if isinstance(v, tuple) else finite(k, v) for k, v in values.items()}
    init = {s: {k: m[f"init_{s}_{k}"] for k in INIT_METHODS} for s in SCHEMES}
    low, high = m["gbp_fc1_interval"]

    def verdicts(s):
        return ", ".join(f"{SHORT[k]} {'fails' if v >= FAILS_AT else 'passes'} ({v:.2f})"
                         for k, v in init[s].items())

    return [
        Claim("Guided Backprop is invariant to the top layers and changes once the lower "
              "ones are randomized (MNIST CNN, top-down)",
              paper="GBP's maps stay similar while the top layers are randomized and change "
                    "only with the lower convolutional layers",
              source="Sec. 4 (cascading randomization), Figs. 2-3",
              measured=f"spearman_abs {m['gbp_logits']:.2f} after the logits, "
                       f"{m['gbp_fc1']:.2f} [{low:.2f}, {high:.2f}] after fc1, "
                       f"{m['gbp_last']:.2f} with every layer random (bottom-up, conv1 "
                       f"alone: {m['gbp_bu_conv1']:.2f})",
              agrees=all_of(interval_above((low, high), FAILS_AT),
                            m["gbp_last"] < m["gbp_fc1"] - 0.1),
              setting="20 MNIST digits, truncated-normal re-initialization"),
        Claim("A uniform re-initialization gives the same picture as the truncated normal",
              paper="truncated normal; uniform gives the same results",
              source="Sec. 4 and appendix (re-initialization)",
              measured=f"after fc1, truncated normal: {verdicts('truncated_normal')}; "
                       f"uniform: {verdicts('uniform')}",
              agrees=same_verdicts(init["truncated_normal"], init["uniform"]),
              setting="MNIST CNN, 20 digits; three more schemes in the chapter's table"),
        Claim("Guided Backprop's maps barely depend on the class explained, DeepLIFT's do",
              paper="modified backprop loses class sensitivity (proved for z+ rules, shown "
                    "for GBP); DeepLIFT keeps it",
              source="Sixt et al. 2020",
              measured=f"signed similarity of the maps for the top class and the runner-up: "
                       f"GBP {m['class_gbp']:.2f}, DeepLIFT {m['class_deeplift']:.2f}",
              agrees=all_of(m["class_gbp"] > 0.5, m["class_deeplift"] < 0.3),
              setting="MNIST CNN, 20 digits; LRP-ε only (no z+ rule in the library)"),
        Claim("Efficient MPRT ranks methods differently from the MPRT",
              paper="the repaired tests change which methods score well",
              source="Hedström et al. 2023",
              measured=f"Spearman correlation of the top-down MPRT and the eMPRT rankings of "
                       f"six methods: {m['rank_agreement']:.2f}",
              agrees=rankings_differ(m["rank_agreement"]),
              setting="MNIST CNN; smooth MPRT with N = 10 noisy copies (paper: 50)"),
    ]
