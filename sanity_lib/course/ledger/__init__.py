"""The claims ledger's rules: from a chapter's measured numbers to "agrees", "partly", "differs".

Each chapter of the book measures numbers with the library (``result.mean(...)``,
``result.interval(...)``, ...) and hands them, as one flat dict, to its module here
(``ledger.ch3.claims(measured)``), which returns the chapter's :class:`Claim` records. The
rules live in this tested module, not in hidden cells of the book, so that a test can feed
each rule numbers that contradict the paper and see it say "differs".

Rules of the ledger
-------------------
- Every claim names where the paper says it (``source``: a figure or a section), and says
  only what the paper says. Reviewer requests and the book's own extensions are not paper
  claims (they belong in the chapter's text, not here).
- Every rule can return ``False`` ("differs"): a rule that cannot fail is a tautology.
- A rule reads an interval where it has one (:func:`interval_above`, :func:`interval_below`):
  "above 0.5" means the whole 95% interval is, "partly" when the interval straddles it.

Examples
--------
>>> c = Claim("GBP stays similar after the logits are randomized", paper="similar",
...           source="Fig. 2", measured="0.93 [0.90, 0.95]",
...           agrees=interval_above((0.90, 0.95), 0.5))
>>> c.verdict
'agrees'
>>> interval_above((0.40, 0.60), 0.5) is None, interval_above((0.1, 0.3), 0.5)
(True, False)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["Claim", "VERDICTS", "all_of", "interval_above", "interval_below", "fmt_interval"]


def __getattr__(name):
    """The chapters' rule modules (``ledger.ch1`` ...) load on first use."""
    import importlib

    if name.startswith("ch") and name[2:].isdigit():
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: How ``agrees`` reads.
VERDICTS = {True: "agrees", False: "differs", None: "partly"}


@dataclass(frozen=True)
class Claim:
    """One line of the reproduction report.

    Parameters
    ----------
    claim : str
        What is tested, in a few words.
    paper : str
        What the paper reports.
    source : str
        Where the paper says it: ``"Fig. 2"``, ``"Sec. 4.1"``, ...
    measured : str
        What the chapter measured, numbers with intervals and n.
    agrees : bool or None
        True (agrees), False (differs) or None (partly).
    setting : str, optional
        Where the chapter's setting differs from the paper's.
    """

    claim: str
    paper: str
    source: str
    measured: str
    agrees: bool | None
    setting: str = ""

    def __post_init__(self):
        for name in ("claim", "paper", "source", "measured"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"a claim needs a non-empty {name} (a str), not "
                                 f"{getattr(self, name)!r}")
        if self.agrees not in VERDICTS:
            raise ValueError(f"agrees must be True, False or None, not {self.agrees!r}")

    @property
    def verdict(self) -> str:
        """``"agrees"``, ``"differs"`` or ``"partly"``."""
        return VERDICTS[self.agrees]

    def as_dict(self) -> dict:
        """The record :func:`sanity_lib.course.claims.record_claims` stores."""
        return asdict(self)


def _finite(name, value) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}: a NaN measurement "
                         "cannot support or contradict a claim")
    return value


def interval_above(interval, level: float) -> bool | None:
    """True if the whole interval is above ``level``, False if all of it is at or below,
    None if it straddles ``level``.

    Examples
    --------
    >>> interval_above((0.6, 0.8), 0.5), interval_above((0.2, 0.4), 0.5)
    (True, False)
    """
    low, high = (_finite("interval", v) for v in interval)
    if low > high:
        raise ValueError(f"an interval is (low, high) with low <= high, not {interval!r}")
    level = _finite("level", level)
    if low > level:
        return True
    if high <= level:
        return False
    return None


def interval_below(interval, level: float) -> bool | None:
    """True if the whole interval is below ``level``, False if all of it is at or above,
    None if it straddles ``level``.

    Examples
    --------
    >>> interval_below((0.0, 0.1), 0.5), interval_below((0.45, 0.55), 0.5)
    (True, None)
    """
    above = interval_above(interval, level)
    return None if above is None else not above


def all_of(*parts: bool | None) -> bool | None:
    """Several conditions of one claim: True if all hold, False if none does, else None.

    Examples
    --------
    >>> all_of(True, True), all_of(False, False), all_of(True, False), all_of(True, None)
    (True, False, None, None)
    """
    if not parts:
        raise ValueError("all_of needs at least one condition")
    parts = [None if p is None else bool(p) for p in parts]
    if all(p is True for p in parts):
        return True
    if all(p is False for p in parts):
        return False
    return None


def fmt_interval(mean: float, interval, digits: int = 2) -> str:
    """``"0.93 [0.90, 0.95]"``: a mean and its 95% interval, for ``measured``.

    Examples
    --------
    >>> fmt_interval(0.934, (0.901, 0.951))
    '0.93 [0.90, 0.95]'
    """
    from sanity_lib.course.book import interval_text

    return interval_text(mean, *interval, digits=digits)
