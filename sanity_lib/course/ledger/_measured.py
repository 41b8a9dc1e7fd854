"""Reading a chapter's ``measured`` dict: every key a rule needs, or an error naming it."""
from __future__ import annotations

import math

__all__ = ["take", "finite", "mean_and_interval", "count_text"]


def take(measured: dict, *names: str):
    """The entries ``names`` of ``measured``: numbers as floats, intervals as float pairs.

    A ledger rule reads its numbers through this function, so that a chapter which forgets to
    measure one gets an error naming the key, not a ``NaN`` verdict.

    Parameters
    ----------
    measured : dict
        The chapter's flat dict of measurements (str -> number or (low, high)).
    *names : str
        The keys the rule needs.

    Returns
    -------
    tuple
        One float, or one ``(low, high)`` tuple of floats, per name, in order.

    Raises
    ------
    KeyError
        When a name is missing (the message names it and lists the keys present).
    ValueError
        When an entry is neither a number nor a pair of numbers.

    Examples
    --------
    >>> take({"a": 1, "b": (0.2, 0.4)}, "a", "b")
    (1.0, (0.2, 0.4))
    >>> take({"a": 1}, "c")
    Traceback (most recent call last):
    ...
    KeyError: "measured lacks 'c' (it has: 'a')"
    """
    if not isinstance(measured, dict):
        raise TypeError(f"measured must be a dict of the chapter's numbers, not "
                        f"{type(measured).__name__}")
    out = []
    for name in names:
        if name not in measured:
            have = ", ".join(repr(k) for k in sorted(measured)) or "nothing"
            raise KeyError(f"measured lacks {name!r} (it has: {have})")
        value = measured[name]
        try:
            if isinstance(value, (tuple, list)):
                if len(value) != 2:
                    raise TypeError
                value = (float(value[0]), float(value[1]))
            else:
                value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"measured[{name!r}] must be a number or a (low, high) pair, not "
                             f"{value!r}") from None
        out.append(value)
    return tuple(out)


def finite(name: str, value: float) -> float:
    """``value`` if it is a finite number, else a ValueError naming ``name``.

    Examples
    --------
    >>> finite("accuracy", 0.99)
    0.99
    """
    if not math.isfinite(value):
        raise ValueError(f"measured[{name!r}] is {value!r}: a NaN measurement cannot support "
                         "or contradict a claim")
    return value


def mean_and_interval(measured: dict, key: str) -> tuple:
    """``(mean, (low, high))`` of ``key``: the mean under ``key``, its interval under
    ``key + "_ci"``; both required, the mean finite.

    Examples
    --------
    >>> mean_and_interval({"gbp": 0.9, "gbp_ci": (0.85, 0.95)}, "gbp")
    (0.9, (0.85, 0.95))
    """
    mean, ci = take(measured, key, f"{key}_ci")
    return finite(key, mean), ci


def count_text(measured: dict, key: str, what: str) -> str:
    """How many inputs a claim's numbers are over, for its ``setting``: ``"8 photos"`` from
    ``measured["n_photos"] == 8``, or just ``what`` when the chapter does not say.

    Examples
    --------
    >>> count_text({"n_photos": 8}, "n_photos", "photos"), count_text({}, "n_photos", "photos")
    ('8 photos', 'photos')
    """
    return f"{int(measured[key])} {what}" if key in measured else what
