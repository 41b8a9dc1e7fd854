"""Uncertainty for sanity-check numbers: bootstrap intervals over images.

A similarity averaged over a handful of images is a noisy number. Every mean the results
report comes with a percentile bootstrap interval over the images (resampled with
replacement, seeded, so two runs give the same interval), and two methods are compared on
their per-image differences (paired), not by two overlapping intervals.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from sanity_lib._validation import check_int, check_real

__all__ = ["bootstrap_interval", "paired_difference", "N_BOOTSTRAP", "LEVEL"]

#: Bootstrap resamples per interval (enough for stable 95% percentile bounds).
N_BOOTSTRAP = 2000
#: The default coverage of an interval.
LEVEL = 0.95


def _clean(values, name="values") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[~np.isnan(arr)]


def bootstrap_interval(values: ArrayLike, *, level: float = LEVEL, n_boot: int = N_BOOTSTRAP,
                       seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval; NaN values are left out.

    Parameters
    ----------
    values : array-like of float
        One number per image (e.g. the similarity of each image's maps).
    level : float, default 0.95
        Coverage of the interval, in (0, 1).
    n_boot : int, default 2000
        Bootstrap resamples.
    seed : int, default 0

    Returns
    -------
    (mean, low, high) : tuple of float
        NaN for all three when no value is defined; ``low == high == mean`` for one value
        (one image has no spread to resample).

    Examples
    --------
    >>> mean, low, high = bootstrap_interval([0.1, 0.2, 0.3, 0.4])
    >>> round(mean, 2), low <= mean <= high
    (0.25, True)
    """
    level = check_real("level", level, 0.0, 1.0, inclusive=False)
    if level >= 1.0:
        raise ValueError(f"level must be below 1 (e.g. 0.95), got {level!r}")
    n_boot = check_int("n_boot", n_boot, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    arr = _clean(values)
    if arr.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(n_boot, arr.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return mean, float(low), float(high)


def paired_difference(a: ArrayLike, b: ArrayLike, *, level: float = LEVEL,
                      n_boot: int = N_BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """Mean per-image difference ``a - b`` with its bootstrap interval (a paired comparison).

    Use it to say whether one method's similarity is higher than another's on the *same*
    images: the interval excluding 0 says so, two overlapping intervals of the means do not.

    Examples
    --------
    >>> diff, low, high = paired_difference([0.9, 0.8, 0.85], [0.1, 0.2, 0.15])
    >>> low > 0
    True
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold one value per image each, for the same images; "
                         f"got {a.size} and {b.size} values")
    return bootstrap_interval(a - b, level=level, n_boot=n_boot, seed=seed)
