"""Chapter 8 ("Your own model"): the paper's findings, checked on a model of the reader's own.

The chapter runs the paper's two tests on a torchvision ResNet-10 trained on MNIST (and the
cascading test on EfficientNet-Lite0) and judges every method with
:func:`sanity_lib.checks.verdict`, the course's one rule
(:func:`sanity_lib.checks.call_from_interval`): a method *fails* when the whole 95 % interval
of its ``retained`` similarity (the mean similarity rescaled so that the noise floor is 0 and
identical maps 1) is at least 0.5, *passes* when all of it is below 0.5, and "cannot tell"
otherwise. :func:`judge` is that rule; a claim agrees when every method has the verdict the
paper reports, differs when one has the opposite verdict, and is "partly" otherwise
(:func:`expect`). The chapter's seed-to-seed check is its own extension, not a claim.

Keys of ``measured`` (:func:`needs`), each a ``(retained_low, retained_high)`` interval:
``cascading_<m>_abs`` and ``cascading_<m>_div`` (after the logits and ``layer4``, absolute
and signed), ``data_<m>_abs`` (the data randomization test), ``effnet_<m>``
(EfficientNet-Lite0 after the logits, head and stage7), each for the methods the claims
name; and two numbers, ``memorized`` and ``random_test`` (the random-label network's
accuracy on its training labels and on the test digits, as fractions). Optional:
``n_digits`` and ``n_photos``, how many inputs the intervals are over (shown in ``setting``).

Examples
--------
>>> judge((0.8, 0.9)), judge((0.1, 0.2)), judge((0.45, 0.55))
('fails', 'passes', 'cannot tell')
>>> expect({"gradient": (0.1, 0.2), "guided_backprop": (0.8, 0.9)},
...        {"gradient": "passes", "guided_backprop": "fails"})
True
"""
from __future__ import annotations

from sanity_lib.checks.result import PASS_THRESHOLD, call_from_interval

from . import Claim, all_of
from ._measured import count_text, finite, take

__all__ = ["judge", "expect", "needs", "claims"]

OPPOSITE = {"passes": "fails", "fails": "passes"}
SOURCE_MRT = "Sec. 4 (cascading randomization), Figs. 2-3"
SOURCE_DRT = "Sec. 5 (data randomization)"
SETTING = ("torchvision ResNet-10 trained 2 epochs on 2,000 digits; {digits}; IG 8 steps, "
           "SmoothGrad 8 samples; GradCAM at layer3")
LABEL = {"gradient": "gradient", "gradcam": "GradCAM", "guided_backprop": "GBP",
         "gradient_x_input": "G⊙I", "integrated_gradients": "IG"}

RETAINED = "retained spearman_abs (95 % interval)"

_CASCADE = ("gradient", "gradcam", "guided_backprop", "gradient_x_input", "integrated_gradients")
_DATA = ("gradient", "gradcam", "guided_backprop", "gradient_x_input")
_EFFNET = ("gradient", "guided_backprop")


def judge(interval, threshold: float = PASS_THRESHOLD) -> str:
    """``"fails"``, ``"passes"`` or ``"cannot tell"`` for a ``(low, high)`` retained interval:
    the rule of :func:`sanity_lib.checks.verdict`.

    Examples
    --------
    >>> judge((0.52, 0.6)), judge((0.3, 0.49)), judge((0.49, 0.52))
    ('fails', 'passes', 'cannot tell')
    """
    low, high = interval
    return call_from_interval(low, high, threshold)


def expect(retained: dict, wanted: dict) -> bool | None:
    """True if every method gets the wanted verdict, False if one gets the opposite one,
    None otherwise (a method the rule cannot tell, and no contradiction).

    Examples
    --------
    >>> expect({"a": (0.8, 0.9), "b": (0.45, 0.6)}, {"a": "fails", "b": "fails"}) is None
    True
    >>> expect({"a": (0.8, 0.9), "b": (0.1, 0.2)}, {"a": "fails", "b": "fails"})
    False
    """
    got = {m: judge(retained[m]) for m in wanted}
    if all(got[m] == wanted[m] for m in wanted):
        return True
    if any(got[m] == OPPOSITE[wanted[m]] for m in wanted):
        return False
    return None


def needs() -> list:
    """The keys :func:`claims` reads."""
    return ([f"cascading_{m}_{s}" for m in _CASCADE for s in ("abs", "div")]
            + [f"data_{m}_abs" for m in _DATA] + [f"effnet_{m}" for m in _EFFNET]
            + ["memorized", "random_test"])


def claims(measured: dict) -> list[Claim]:
    """Chapter 8's claims, with verdicts from ``measured`` (keys: :func:`needs`)."""
    keys = needs()
    m = dict(zip(keys, take(measured, *keys)))
    for key in ("memorized", "random_test"):
        m[key] = finite(key, m[key])
    for key in keys[:-2]:
        if not (isinstance(m[key], tuple) and len(m[key]) == 2):
            raise ValueError(f"measured[{key!r}] must be a (retained_low, retained_high) "
                             f"interval, not {m[key]!r}: take it from sl.checks.verdict")
        m[key] = tuple(finite(key, v) for v in m[key])
    setting = SETTING.format(digits=count_text(measured, "n_digits", "test digits"))
    photos = count_text(measured, "n_photos", "photos")

    def part(prefix, methods, suffix=""):
        return {k: m[f"{prefix}_{k}{suffix}"] for k in methods}

    def shown(values):
        return ", ".join(f"{LABEL[k]} [{low:.2f}, {high:.2f}] ({judge((low, high))})"
                         for k, (low, high) in values.items())

    top = part("cascading", ("gradient", "gradcam"), "_abs")
    gbp = part("cascading", ("guided_backprop",), "_abs")
    products = ("gradient_x_input", "integrated_gradients")
    prod_abs, prod_div = part("cascading", products, "_abs"), part("cascading", products, "_div")
    data = part("data", _DATA, "_abs")
    effnet = part("effnet", _EFFNET)
    return [
        Claim("Gradient and GradCAM change under cascading randomization (ResNet-10)",
              paper="the maps change as soon as the top layers are randomized",
              source=SOURCE_MRT,
              measured=f"{RETAINED} after logits + layer4: {shown(top)}",
              agrees=expect(top, {"gradient": "passes", "gradcam": "passes"}), setting=setting),
        Claim("Guided Backprop is invariant to the top layers (ResNet-10)",
              paper="GBP stays similar until the lower layers are randomized", source=SOURCE_MRT,
              measured=f"{RETAINED} after logits + layer4: {shown(gbp)}",
              agrees=expect(gbp, {"guided_backprop": "fails"}), setting=setting),
        Claim("Gradient ⊙ Input and IG look unchanged in absolute value but their signed maps "
              "change (ResNet-10)",
              paper="absolute maps similar, signed maps change", source=SOURCE_MRT,
              measured=f"retained (95 % interval) after logits + layer4, abs: "
                       f"{shown(prod_abs)}; signed: {shown(prod_div)}",
              agrees=all_of(expect(prod_abs, dict.fromkeys(products, "fails")),
                            expect(prod_div, dict.fromkeys(products, "passes"))),
              setting=setting),
        Claim("A network fits permuted labels, with test accuracy at chance (ResNet-10)",
              paper="training accuracy above 95 %, test accuracy at chance", source=SOURCE_DRT,
              measured=f"memorized {m['memorized']:.1%} of its shuffled labels, test accuracy "
                       f"{m['random_test']:.1%}",
              agrees=all_of(m["memorized"] > 0.95, m["random_test"] < 0.15),
              setting="300 digits memorized instead of 60,000"),
        Claim("Data randomization: gradient and GradCAM pass, Guided Backprop fails (ResNet-10)",
              paper="gradient and GradCAM maps change; GBP's stay similar", source=SOURCE_DRT,
              measured=f"{RETAINED}: {shown(data)}",
              agrees=expect(data, {"gradient": "passes", "gradcam": "passes",
                                   "guided_backprop": "fails"}), setting=setting),
        Claim("Same recipe on EfficientNet-Lite0: Guided Backprop fails, the gradient passes",
              paper="GBP invariant to the top layers; the gradient changes", source=SOURCE_MRT,
              measured=f"{RETAINED} after logits, head, stage7: {shown(effnet)}",
              agrees=expect(effnet, {"guided_backprop": "fails", "gradient": "passes"}),
              setting=photos),
    ]
