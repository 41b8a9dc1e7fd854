"""A verdict over one or several finished results, judged at one step chosen in advance.

There is one rule in this course, :func:`~sanity_lib.checks.result.call_from_interval`:
rescale the mean similarity and its 95 % bootstrap interval so that the null is 0 and
identical maps are 1, then a method *fails* when the whole interval keeps at least half,
*passes* when all of it is below half, and the answer is *cannot tell* otherwise.
:meth:`SanityCheckResult.verdict` applies it to one result; :func:`verdict` applies it to
each of several results (seeds, image sets) and keeps a method's call only where all of them
agree, adding the step at which each curve fell below the threshold.

A verdict is a summary, not a proof: passing is necessary, not sufficient (a method that
returns noise passes), and the numbers depend on the metric, on absolute vs signed maps and
on the step you judge at. The book's chapter 8 discusses each of these.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sanity_lib._validation import check_real

from .result import PASS_THRESHOLD, VERDICTS
from .statistics import LEVEL

if TYPE_CHECKING:
    from .result import SanityCheckResult

__all__ = ["verdict", "VERDICTS", "DEFAULT_THRESHOLD"]

#: A method fails when at least this fraction of the way from the null to identical maps is
#: left at the judged step, across its whole interval (:data:`~.result.PASS_THRESHOLD`).
DEFAULT_THRESHOLD = PASS_THRESHOLD


def _one_verdict(result, metric, by, threshold, null, level) -> pd.DataFrame:
    if metric not in result.metrics:
        raise ValueError(f"metric={metric!r} is not in this result; it has {result.metrics}")
    step = result.step_index(by, name="by", first=1)
    table = result.verdict(at=step, metric=metric, threshold=threshold, null=null,
                           level=level)
    below, last = [], []
    for method, null_value in zip(table["method"], table["null"]):
        # the threshold on the metric's own scale: threshold of the way from null to 1
        k = result.first_step_below(method, metric,
                                    level=null_value + threshold * (1.0 - null_value))
        below.append("never" if k is None else result.layers[k])
        last.append(result.mean(method, result.n_steps, metric))
    table.insert(table.columns.get_loc("verdict"), "first_below", below)
    table.insert(table.columns.get_loc("verdict"), "last", last)
    return table


def verdict(results: SanityCheckResult | Sequence[SanityCheckResult], *,
            metric: str = "spearman_abs", by: int | str = 1,
            threshold: float = DEFAULT_THRESHOLD, null: str = "noise_floor",
            level: float = LEVEL) -> pd.DataFrame:
    """Passes, fails or cannot tell per method, judged at one step chosen in advance.

    For each method, the mean similarity (over images) between the original map and the
    map at step ``by``, and its bootstrap interval, are rescaled so that the null (by
    default the metric's noise floor) is 0 and identical maps are 1::

        retained = (mean - null) / (1 - null)

    A method **fails** when even ``retained_low`` is at least ``threshold`` (its maps stayed
    similar although the model was randomized), **passes** when ``retained_high`` is below
    ``threshold``, and the answer is **cannot tell** when the interval straddles the
    threshold (more images narrow it) or the maps were constant. This is the rule of
    :meth:`SanityCheckResult.verdict`; choose ``by`` *before* looking at the curves: for a
    cascading test, the step after which the model certainly computes something else (e.g.
    with its top two groups random); for the data randomization test, step 1.

    Parameters
    ----------
    results : SanityCheckResult or sequence of them
        Several results (e.g. randomization seeds, or image sets) are judged one by one; a
        method's verdict is kept only where all agree, otherwise "cannot tell".
    metric : str, default "spearman_abs"
    by : int or str, default 1
        The step to judge at: a step number (1 = the first randomized step) or a layer name.
    threshold : float, default :data:`DEFAULT_THRESHOLD` (0.5)
    null : {"noise_floor", "mismatched", "input_only"}, default "noise_floor"
        What "unrelated maps" means (:meth:`SanityCheckResult.null_level`).
    level : float, default 0.95
        The confidence level of the bootstrap interval.

    Returns
    -------
    pandas.DataFrame
        One row per method: the columns of :meth:`SanityCheckResult.verdict` (``method, at,
        metric, mean, ci_low, ci_high, n, null, retained, retained_low, retained_high``),
        then ``first_below`` (the first step whose mean is below the threshold, "never" if
        none), ``last`` (the mean at the last step) and ``verdict``. With several results
        the numbers are means over them, the interval is the envelope of theirs (lowest
        low, highest high), ``spread`` is max - min of ``retained``, ``results`` their
        number, and ``first_below`` the latest one.

    Raises
    ------
    ValueError
        An unknown metric or step, a threshold outside (0, 1), or results that do not share
        methods and steps.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> r = sl.model_randomization_test(sl.models.mnist_cnn(), torch.rand(3, 1, 28, 28),
    ...                                 ["gradient"], progress=False)
    >>> table = sl.checks.verdict(r, by="fc1")
    >>> table.loc[0, "verdict"] in sl.checks.VERDICTS
    True
    """
    from sanity_lib.checks import SanityCheckResult

    if isinstance(results, SanityCheckResult):
        results = [results]
    results = list(results)
    if not results or not all(isinstance(r, SanityCheckResult) for r in results):
        raise TypeError("results must be a SanityCheckResult or a list of them (from "
                        "sl.model_randomization_test / sl.data_randomization_test)")
    threshold = check_real("threshold", threshold, 0.0, 1.0, inclusive=False)
    first = results[0]
    for r in results[1:]:
        if r.methods != first.methods or list(r.layers) != list(first.layers):
            raise ValueError("the results do not share methods and steps; judge results of "
                             "the same test, run with different seeds or images")
    tables = [_one_verdict(r, metric, by, threshold, null, level) for r in results]
    if len(tables) == 1:
        return tables[0]
    layers = list(first.layers)
    rows = []
    for i, method in enumerate(first.methods):
        per = [t.iloc[i] for t in tables]
        calls = {p["verdict"] for p in per}
        retained = [p["retained"] for p in per]
        belows = [p["first_below"] for p in per]
        row = {"method": method, "at": per[0]["at"], "metric": metric}
        for column in ("mean", "null", "retained", "last"):
            row[column] = float(np.mean([p[column] for p in per]))
        row["ci_low"] = float(min(p["ci_low"] for p in per))
        row["ci_high"] = float(max(p["ci_high"] for p in per))
        row["retained_low"] = float(min(p["retained_low"] for p in per))
        row["retained_high"] = float(max(p["retained_high"] for p in per))
        row["n"] = int(sum(p["n"] for p in per))
        row["first_below"] = ("never" if "never" in belows else max(belows, key=layers.index))
        row["verdict"] = calls.pop() if len(calls) == 1 else "cannot tell"
        row["spread"] = float(np.max(retained) - np.min(retained))
        row["results"] = len(per)
        rows.append(row)
    columns = list(tables[0].columns) + ["spread", "results"]
    return pd.DataFrame(rows)[columns]
