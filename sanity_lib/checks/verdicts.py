"""A verdict over one or several finished results, judged at one step chosen in advance.

:func:`verdict` reads results (seeds, image sets) of the same test and keeps a method's call
only where all of them agree. It rescales the mean similarity by the noise floor and calls
"pass", "fail" or "borderline" with a fixed margin around :data:`DEFAULT_THRESHOLD`.
:meth:`SanityCheckResult.verdict` reads one result with a bootstrap interval instead of a
margin ("passes", "fails", "cannot tell") and against a choice of nulls.

A verdict is a summary, not a proof: passing is necessary, not sufficient (a method that
returns noise passes), and the numbers depend on the metric, on absolute vs signed maps and
on the step you judge at. The book's chapter 8 discusses each of these.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .result import PASS_THRESHOLD

if TYPE_CHECKING:
    from .result import SanityCheckResult

__all__ = ["verdict", "VERDICTS", "DEFAULT_THRESHOLD", "DEFAULT_MARGIN"]

#: The verdicts of :func:`verdict`.
VERDICTS = ("pass", "fail", "borderline")
#: A method fails when at least this fraction of the way from the noise floor to identical
#: maps is left at the judged step (the same rule as :data:`PASS_THRESHOLD`).
DEFAULT_THRESHOLD = PASS_THRESHOLD
#: Within this distance of the threshold the verdict is "borderline".
DEFAULT_MARGIN = 0.05


def _one_verdict(result, metric, by, threshold, margin):
    if metric not in result.metrics:
        raise ValueError(f"metric={metric!r} is not in this result; it has {result.metrics}")
    layers = list(result.layers)
    if isinstance(by, str):
        if by not in layers[1:]:
            raise ValueError(f"by={by!r} is not a step of this result; choose one of "
                             f"{layers[1:]} (or a step number 1..{len(layers) - 1})")
        step = layers.index(by)
    elif isinstance(by, numbers.Integral) and not isinstance(by, bool) and \
            1 <= by <= len(layers) - 1:
        step = int(by)
    else:
        raise ValueError(f"by must be a layer name or a step number 1..{len(layers) - 1}, "
                         f"got {by!r}")
    floor = float(result.noise_floor[metric])
    s = result.summary()
    s = s[s["metric"] == metric]
    rows = []
    for method in result.methods:
        sm = s[s["method"] == method].set_index("step")
        mean = float(sm.loc[step, "mean"])
        retained = (mean - floor) / (1.0 - floor)
        curve = [(int(k), float(v)) for k, v in sm["mean"].items()]
        below = [k for k, v in curve if (v - floor) / (1.0 - floor) < threshold]
        if np.isnan(retained):
            call = "borderline"
        elif retained >= threshold + margin:
            call = "fail"
        elif retained < threshold - margin:
            call = "pass"
        else:
            call = "borderline"
        rows.append({"method": method, "metric": metric, "at": layers[step],
                     "mean": mean, "std": float(sm.loc[step, "std"]),
                     "noise_floor": floor, "retained": retained,
                     "first_below": layers[below[0]] if below else "never",
                     "last": float(curve[-1][1]), "verdict": call})
    return pd.DataFrame(rows)


def verdict(results: SanityCheckResult | Sequence[SanityCheckResult], *,
            metric: str = "spearman_abs", by: int | str = 1,
            threshold: float = DEFAULT_THRESHOLD, margin: float = DEFAULT_MARGIN) -> pd.DataFrame:
    """Pass or fail per method, judged at one step chosen in advance, against the noise floor.

    For each method, the mean similarity (over images) between the original map and the
    map at step ``by`` is rescaled so that the metric's noise floor is 0 and identical maps
    are 1::

        retained = (mean - noise_floor) / (1 - noise_floor)

    A method **fails** when ``retained >= threshold + margin`` (its maps stayed similar
    although the model was randomized), **passes** when ``retained < threshold - margin``,
    and is **borderline** in between (or when its maps were constant, NaN). Choose ``by``
    *before* looking at the curves: for a cascading test, the step after which the model
    certainly computes something else (e.g. with its top two groups random); for the data
    randomization test, step 1.

    Parameters
    ----------
    results : SanityCheckResult or sequence of them
        Several results (e.g. randomization seeds, or image sets) are judged one by one; a
        method's verdict is kept only where all agree, otherwise "borderline".
    metric : str, default "spearman_abs"
    by : int or str, default 1
        The step to judge at: a step number (1 = the first randomized step) or a layer name.
    threshold : float, default :data:`DEFAULT_THRESHOLD`
    margin : float, default :data:`DEFAULT_MARGIN`

    Returns
    -------
    pandas.DataFrame
        One row per method: ``method, metric, at, mean, std, noise_floor, retained,
        first_below`` (the first step whose mean is below the threshold, "never" if none),
        ``last`` (the mean at the last step) and ``verdict``. With several results, the
        numbers are means over them, plus ``spread`` (max - min of ``retained``) and
        ``results``; ``first_below`` is the latest one.

    Raises
    ------
    ValueError
        An unknown metric or step, a threshold outside (0, 1), a negative margin, or results
        that do not share methods and steps.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> from sanity_lib.checks import verdict
    >>> r = sl.model_randomization_test(sl.models.mnist_cnn(), torch.rand(3, 1, 28, 28),
    ...                                 ["gradient"], progress=False)   # doctest: +SKIP
    >>> verdict(r, by="fc1")[["method", "retained", "verdict"]]          # doctest: +SKIP
    """
    from sanity_lib.checks import SanityCheckResult

    if isinstance(results, SanityCheckResult):
        results = [results]
    results = list(results)
    if not results or not all(isinstance(r, SanityCheckResult) for r in results):
        raise TypeError("results must be a SanityCheckResult or a list of them (from "
                        "sl.model_randomization_test / sl.data_randomization_test)")
    if not (isinstance(threshold, numbers.Real) and 0 < threshold < 1):
        raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
    if not (isinstance(margin, numbers.Real) and 0 <= margin < threshold):
        raise ValueError(f"margin must be a number in [0, threshold), got {margin!r}")
    first = results[0]
    for r in results[1:]:
        if r.methods != first.methods or list(r.layers) != list(first.layers):
            raise ValueError("the results do not share methods and steps; judge results of "
                             "the same test, run with different seeds or images")
    tables = [_one_verdict(r, metric, by, threshold, margin) for r in results]
    if len(tables) == 1:
        return tables[0]
    layers = list(first.layers)
    rows = []
    for i, method in enumerate(first.methods):
        per = [t.iloc[i] for t in tables]
        calls = {p["verdict"] for p in per}
        retained = [p["retained"] for p in per]
        belows = [p["first_below"] for p in per]
        latest = ("never" if "never" in belows else
                  max(belows, key=layers.index))
        rows.append({"method": method, "metric": metric, "at": per[0]["at"],
                     "mean": float(np.mean([p["mean"] for p in per])),
                     "std": float(np.mean([p["std"] for p in per])),
                     "noise_floor": float(np.mean([p["noise_floor"] for p in per])),
                     "retained": float(np.mean(retained)),
                     "first_below": latest,
                     "last": float(np.mean([p["last"] for p in per])),
                     "verdict": calls.pop() if len(calls) == 1 else "borderline",
                     "spread": float(np.max(retained) - np.min(retained)),
                     "results": len(per)})
    return pd.DataFrame(rows)
