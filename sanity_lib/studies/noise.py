"""The Gaussian-noise variant of the model randomization test, over noise levels and seeds.

A student report on the paper (``PAPER.md`` section 8) replaces re-initialization by
*additive* zero-mean Gaussian noise on the parameters, cascading from the logits down
(:func:`sanity_lib.randomization.gaussian_noise`), and reads three things off the curves of
similarity against the number of layers noised: similarity falls as the noise grows; some
methods fall faster than others (a *sensitivity* ranking); and the curves are concave at low
noise, convex at high noise. This module runs that study and turns those three readings into
numbers:

=================================  =========================================================
function                           what it gives
=================================  =========================================================
:func:`weight_scales`              the spread of every parameter tensor, layer by layer: how
                                   large a given noise std is next to the weights
:func:`noise_sweep`                one :func:`sanity_lib.model_randomization_test` per noise
                                   std and seed, gathered in one tidy table
:func:`mean_curves`                similarity vs step, averaged over images, per std and seed
                                   (step 0, the original model, included at 1)
:func:`seed_summary`               those curves averaged over seeds, with their spread
:func:`concavity`                  a curve's signed bow against its chord, in [-1, 1]
:func:`second_differences`         the discrete curvature of a curve, step by step
:func:`curve_shapes`               concave / convex / about straight, per std and method
:func:`sensitivity`                the area above each curve, and the methods ranked by it
:func:`curve_intervals`            the curves with 95 % bootstrap intervals over the images
:func:`image_sensitivity`          the sensitivity image by image, for paired comparisons
:func:`sensitivity_intervals`      the sensitivity with its interval over the images
:func:`sensitivity_lead`           a method against its closest rival, paired over images
:func:`concavity_intervals`        the concavity index with its interval over the images
:func:`accuracy_under_noise`       test accuracy of the noisy models, step by step
:func:`plot_noise_curves`          one panel per noise std, one line per method, bands
=================================  =========================================================

The shape criterion
-------------------
For a curve ``y_0, ..., y_L`` at equally spaced steps (``y_0 = 1``, the original model), the
*chord* joins its end points, ``c_k = y_0 + (y_L - y_0) k / L``. The **concavity index**

    kappa = 2 / ((L - 1) (y_0 - y_L)) * sum_{k=1}^{L-1} (y_k - c_k)

is the signed area between the curve and its chord (trapezoid rule, unit spacing), divided
by the largest area a falling curve with the same end points can have on either side. It is
+1 for a curve that stays at ``y_0`` until the last step and then drops (as concave as it
gets), -1 for one that drops at the first step and stays (as convex as it gets), and 0 for
a straight line. Positive means the curve bows *above* its chord: concave, "slow then
fast"; negative means below: convex, "fast then slow". It does not need every second
difference to have the same sign (the strict definition, which noisy curves seldom meet);
:func:`curve_shapes` reports both.

Examples
--------
>>> round(concavity([1.0, 0.95, 0.85, 0.6, 0.2]), 3)      # slow, then fast
0.5
>>> round(concavity([1.0, 0.3, 0.15, 0.1, 0.08]), 3)      # fast, then slow
-0.775
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from torch import nn

from sanity_lib._validation import check_flag

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "NoiseSweep", "weight_scales", "noise_sweep", "mean_curves", "seed_summary", "concavity",
    "second_differences", "curve_shapes", "sensitivity", "curve_intervals",
    "image_sensitivity", "sensitivity_intervals", "sensitivity_lead", "concavity_intervals",
    "accuracy_under_noise",
    "plot_noise_curves", "SHAPE_TOLERANCE", "MIN_DROP",
]

#: |kappa| below this reads as "about straight" in :func:`curve_shapes`.
SHAPE_TOLERANCE = 0.1
#: A curve that falls by less than this from step 0 to the last step is "flat": no shape.
MIN_DROP = 0.05

_CURVE_COLUMNS = ["noise_std", "seed", "method", "step", "layer", "value"]


# ----------------------------------------------------------------------------- validation

def _check_stds(stds):
    if isinstance(stds, numbers.Real):
        stds = [stds]
    try:
        stds = list(stds)
    except TypeError:
        raise TypeError(f"stds must be a list of numbers, got {type(stds).__name__}") from None
    if not stds:
        raise ValueError("stds is empty; pass the noise levels, e.g. stds=[0.1, 0.2, 0.3]")
    out = []
    for s in stds:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not np.isfinite(s) or s < 0:
            raise ValueError(f"stds must hold finite numbers >= 0, got {s!r}")
        out.append(float(s))
    if len(set(out)) != len(out):
        raise ValueError(f"stds has repeated values {out}; give each noise level once")
    return out


def _check_seeds(seeds):
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = [seeds]
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty; pass at least one seed, e.g. seeds=[0, 1, 2]")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"seeds must hold ints >= 0, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds has repeated values {seeds}; give each seed once")
    return [int(s) for s in seeds]


def _curve(values, name="values"):
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or y.size < 3:
        raise ValueError(f"{name} must be a 1-D curve of at least 3 points (step 0 to the last "
                         f"step), got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name} holds NaN or infinite values: {y.tolist()}")
    return y


def _check_columns(table, needed, what):
    if not isinstance(table, pd.DataFrame) or any(c not in table.columns for c in needed):
        raise TypeError(f"{what} must be a pandas DataFrame with the columns {needed}")


# ----------------------------------------------------------------------------- weights

def weight_scales(model: nn.Module,
                  groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
                  ) -> pd.DataFrame:
    """The spread of every parameter tensor of each layer group, input to output.

    Additive noise of standard deviation ``std`` means little or a lot depending on how
    large the weights are: ``std / std(weights)`` is the noise-to-signal ratio of a tensor.

    Parameters
    ----------
    model : torch.nn.Module
    groups : list, optional
        As in :func:`sanity_lib.models.layer_groups` (default: the model's own groups).

    Returns
    -------
    pandas.DataFrame
        One row per parameter tensor: ``layer`` (group), ``tensor`` (its name inside the
        group), ``shape``, ``numel``, ``fan_in`` (inputs per output unit; NaN for biases),
        ``std`` (population standard deviation, as relative noise uses) and ``rms``
        (root mean square).

    Examples
    --------
    >>> from sanity_lib.models import mnist_mlp
    >>> table = weight_scales(mnist_mlp())
    >>> table[["layer", "tensor", "fan_in"]].head(2).values.tolist()
    [['fc1', 'weight', 784.0], ['fc1', 'bias', nan]]
    """
    from sanity_lib.models import layer_groups

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rows = []
    for layer, module in layer_groups(model, groups=groups):
        for name, p in module.named_parameters():
            p = p.detach().double().cpu()
            fan_in = float(p.shape[1] * int(np.prod(p.shape[2:]))) if p.dim() >= 2 else np.nan
            rows.append({"layer": layer, "tensor": name, "shape": tuple(p.shape),
                         "numel": p.numel(), "fan_in": fan_in,
                         "std": float(p.std(correction=0)) if p.numel() else np.nan,
                         "rms": float(p.pow(2).mean().sqrt()) if p.numel() else np.nan})
    return pd.DataFrame(rows, columns=["layer", "tensor", "shape", "numel", "fan_in", "std",
                                       "rms"])


# ----------------------------------------------------------------------------- sweep

@dataclass(repr=False)
class NoiseSweep:
    """Many Gaussian-noise tests of one model: every noise std x every seed.

    Attributes
    ----------
    table : pandas.DataFrame
        The tables of all the tests stacked, with two more columns: ``noise_std`` and
        ``seed``. Columns ``method, step, layer, image, metric, value, noise_std, seed``.
    results : dict
        ``(noise_std, seed) -> SanityCheckResult``, with the maps when run with
        ``keep_maps=True``.
    relative : bool
        Whether ``noise_std`` is a fraction of each tensor's own spread.
    layers : list of str
        ``["original", <the groups in noising order>]``.

    Examples
    --------
    >>> sweep.results_by_std(seed=0)        # doctest: +SKIP
    {0.1: SanityCheckResult(...), 0.2: ..., 0.3: ...}
    """

    table: pd.DataFrame
    results: dict
    relative: bool
    layers: list

    @property
    def stds(self) -> list:
        """The noise levels, increasing."""
        return sorted({s for s, _ in self.results})

    @property
    def seeds(self) -> list:
        return sorted({seed for _, seed in self.results})

    @property
    def noise_floor(self) -> dict:
        """Metric -> noise floor (the same for every test: it depends on the maps' shape)."""
        return dict(next(iter(self.results.values())).noise_floor)

    def results_by_std(self, seed: int | None = None) -> dict:
        """``{noise_std: result}`` for one seed (default the first), as
        :func:`sanity_lib.course.widgets.noise_explorer` takes it."""
        seed = self.seeds[0] if seed is None else seed
        if seed not in self.seeds:
            raise ValueError(f"seed={seed!r} is not in this sweep; it has seeds {self.seeds}")
        return {s: self.results[(s, seed)] for s in self.stds}

    def curves(self, metric: str = "spearman_diverging") -> pd.DataFrame:
        """:func:`mean_curves` of this sweep's table."""
        return mean_curves(self.table, metric, layers=self.layers)

    def __repr__(self) -> str:
        kind = "relative" if self.relative else "absolute"
        return (f"NoiseSweep({kind} stds={self.stds}, seeds={self.seeds}, "
                f"methods={list(dict.fromkeys(self.table['method']))}, layers={self.layers}, "
                f"rows={len(self.table)})")


def noise_sweep(model: nn.Module, x: torch.Tensor,
                methods: Sequence[str] | Mapping[str, Mapping[str, Any] | None],
                stds: Sequence[float], seeds: Sequence[int] = (0,), *,
                relative: bool = False, progress: bool = True, **options: Any) -> NoiseSweep:
    """Run the Gaussian-noise test at every noise std with every seed.

    One :func:`sanity_lib.model_randomization_test` with ``mode="gaussian_noise"`` per
    (std, seed) pair; pass ``cache=True`` (through ``options``) so a rerun loads them.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model; never changed.
    x : torch.Tensor
        N x C x H x W model inputs.
    methods : list of str or dict
        As in :func:`sanity_lib.model_randomization_test`.
    stds : list of float
        Noise standard deviations (absolute, or fractions of each tensor's spread when
        ``relative=True``).
    seeds : list of int, default (0,)
        One noise draw per seed; the spread over seeds shows how much a curve owes to the
        particular draw.
    relative : bool, default False
    progress : bool, default True
        One ``tqdm.auto`` bar over the (std, seed) pairs.
    **options
        Passed to :func:`sanity_lib.model_randomization_test` (``metrics``, ``cache``,
        ``keep_maps``, ``target``, ``groups``, ``order``, ...), except ``mode``, ``std``,
        ``relative`` and ``seed``, which this function sets.

    Returns
    -------
    NoiseSweep

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> sweep = noise_sweep(sl.models.mnist_mlp(), torch.rand(2, 1, 28, 28), ["gradient"],
    ...                     stds=[0.01, 0.1], seeds=[0, 1], progress=False,
    ...                     metrics=["spearman_diverging"])
    >>> sweep.stds, sweep.seeds, sorted(sweep.table.columns)[:3]
    ([0.01, 0.1], [0, 1], ['image', 'layer', 'method'])
    """
    from tqdm.auto import tqdm

    from sanity_lib.checks import model_randomization_test

    taken = sorted({"mode", "std", "relative", "seed"} & set(options))
    if taken:
        raise ValueError(f"noise_sweep sets {taken} itself; pass stds=, seeds= and relative= "
                         "instead")
    stds, seeds = _check_stds(stds), _check_seeds(seeds)
    check_flag("relative", relative)
    results, tables = {}, []
    pairs = [(s, seed) for s in stds for seed in seeds]
    for s, seed in tqdm(pairs, desc="noise sweep", disable=not progress, leave=False):
        result = model_randomization_test(model, x, methods, mode="gaussian_noise", std=s,
                                          relative=relative, seed=seed, progress=False,
                                          **options)
        results[(s, seed)] = result
        tables.append(result.table.assign(noise_std=s, seed=seed))
    table = pd.concat(tables, ignore_index=True)
    return NoiseSweep(table=table, results=results, relative=relative,
                      layers=list(next(iter(results.values())).layers))


# ----------------------------------------------------------------------------- curves

def _metric_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of one metric of a sweep's table; a single test's table (no ``noise_std`` or
    ``seed`` column) reads as noise_std NaN, seed 0."""
    _check_columns(table, ["method", "step", "layer", "image", "metric", "value"], "table")
    if metric not in set(table["metric"]):
        raise ValueError(f"metric={metric!r} is not in the table; it holds "
                         f"{sorted(set(table['metric']))}")
    t = table[table["metric"] == metric]
    if "noise_std" not in t.columns:
        t = t.assign(noise_std=np.nan)
    if "seed" not in t.columns:
        t = t.assign(seed=0)
    return t


def mean_curves(table: pd.DataFrame, metric: str = "spearman_diverging", *,
                layers: Sequence[str] | None = None) -> pd.DataFrame:
    """Similarity against step, averaged over the images, for every std, seed and method.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`NoiseSweep.table` (columns ``method, step, layer, image, metric, value,
        noise_std, seed``). A single test's ``result.table`` works too (it is read as
        ``noise_std`` NaN, ``seed`` 0).
    metric : str, default "spearman_diverging"
        The report's metric (rank correlation without absolute values).
    layers : list of str, optional
        Step names; ``layers[0]`` names step 0 (default ``"original"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``noise_std, seed, method, step, layer, value``, with a step-0 row of value
        1 for every curve (a map is identical to itself), sorted by std, seed, method order
        and step. NaN similarities (constant maps) are left out of the means.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "gradient", "step": [1, 1, 2, 2], "layer": ["a", "a", "b", "b"],
    ...                   "image": [0, 1, 0, 1], "metric": "ssim", "value": [0.8, 0.6, 0.3, 0.1],
    ...                   "noise_std": 0.1, "seed": 0})
    >>> mean_curves(t, "ssim")["value"].round(2).tolist()
    [1.0, 0.7, 0.2]
    """
    t = _metric_rows(table, metric)
    methods = list(dict.fromkeys(t["method"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = (t.groupby(["noise_std", "seed", "method", "step", "layer"], dropna=False,
                           sort=False)["value"].mean().reset_index())
    first = "original" if layers is None else layers[0]
    starts = means[["noise_std", "seed", "method"]].drop_duplicates().assign(
        step=0, layer=first, value=1.0)
    out = pd.concat([starts, means], ignore_index=True)
    out["_m"] = out["method"].map({m: i for i, m in enumerate(methods)})
    out = out.sort_values(["noise_std", "seed", "_m", "step"], kind="stable").drop(columns="_m")
    out["step"] = out["step"].astype(np.int64)
    return out[_CURVE_COLUMNS].reset_index(drop=True)


def seed_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Average the curves of :func:`mean_curves` over seeds, with their spread.

    Returns
    -------
    pandas.DataFrame
        Columns ``noise_std, method, step, layer, mean, seed_std, n_seeds``: ``seed_std``
        is the sample standard deviation over seeds (ddof=1; 0 with one seed).

    Examples
    --------
    >>> c = pd.DataFrame({"noise_std": 0.1, "seed": [0, 0, 1, 1], "method": "gradient",
    ...                   "step": [0, 1, 0, 1], "layer": ["original", "a"] * 2,
    ...                   "value": [1.0, 0.5, 1.0, 0.7]})
    >>> seed_summary(c)[["step", "mean", "n_seeds"]].values.tolist()
    [[0.0, 1.0, 2.0], [1.0, 0.6, 2.0]]
    """
    _check_columns(curves, _CURVE_COLUMNS, "curves")
    methods = list(dict.fromkeys(curves["method"]))
    g = curves.groupby(["noise_std", "method", "step", "layer"], dropna=False, sort=False)
    out = g["value"].agg(mean="mean", seed_std="std", n_seeds="count").reset_index()
    out["seed_std"] = out["seed_std"].fillna(0.0)
    out["_m"] = out["method"].map({m: i for i, m in enumerate(methods)})
    out = out.sort_values(["noise_std", "_m", "step"], kind="stable").drop(columns="_m")
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- shape

def concavity(values: ArrayLike, *, min_drop: float = MIN_DROP) -> float:
    """The concavity index of a curve: its signed bow against its chord, in [-1, 1].

    See the module documentation: +1 is "flat, then a drop at the last step" (as concave
    as a falling curve gets), -1 "a drop at the first step, then flat" (as convex), 0 a
    straight line. Positive: the curve lies above its chord (concave, slow then fast).

    Parameters
    ----------
    values : sequence of float
        ``y_0 ... y_L`` at equally spaced steps, at least 3 points (step 0 included).
    min_drop : float, default :data:`MIN_DROP`
        A curve with ``y_0 - y_L < min_drop`` barely falls, and its shape is noise: NaN.

    Returns
    -------
    float
        kappa, or NaN for a curve that does not fall by ``min_drop``. A curve that is not
        monotone can leave [-1, 1].

    Examples
    --------
    >>> concavity([1.0, 0.75, 0.5, 0.25, 0.0])
    0.0
    >>> concavity([1.0, 1.0, 1.0, 1.0, 0.0]), concavity([1.0, 0.0, 0.0, 0.0, 0.0])
    (1.0, -1.0)
    >>> concavity([1.0, 0.99, 0.99])
    nan
    """
    y = _curve(values)
    if not (isinstance(min_drop, numbers.Real) and min_drop > 0):
        raise ValueError(f"min_drop must be a number > 0, got {min_drop!r}")
    n_steps = y.size - 1
    drop = y[0] - y[-1]
    if drop < min_drop:
        return float("nan")
    k = np.arange(1, n_steps)
    chord = y[0] - drop * k / n_steps
    return float(2.0 * np.sum(y[1:-1] - chord) / ((n_steps - 1) * drop))


def second_differences(values: ArrayLike) -> np.ndarray:
    """``y[k+1] - 2 y[k] + y[k-1]`` for k = 1 ... L-1: negative where the curve bends down
    (concave), positive where it bends up (convex).

    Examples
    --------
    >>> second_differences([1.0, 0.9, 0.6, 0.1]).round(2).tolist()
    [-0.2, -0.2]
    """
    y = _curve(values)
    return y[2:] - 2.0 * y[1:-1] + y[:-2]


def _verdict(kappa, tolerance):
    if np.isnan(kappa):
        return "flat"
    if kappa > tolerance:
        return "concave"
    if kappa < -tolerance:
        return "convex"
    return "about straight"


def _strict(d2, tol=1e-9):
    if np.all(d2 <= tol):
        return "concave"
    if np.all(d2 >= -tol):
        return "convex"
    return "mixed"


def curve_shapes(curves: pd.DataFrame, *, tolerance: float = SHAPE_TOLERANCE,
                 min_drop: float = MIN_DROP) -> pd.DataFrame:
    """Concave or convex? The shape of every (std, method) curve, averaged over seeds.

    Parameters
    ----------
    curves : pandas.DataFrame
        :func:`mean_curves` output (one curve per std, seed and method).
    tolerance : float, default :data:`SHAPE_TOLERANCE`
        ``|kappa| <= tolerance`` reads as "about straight".
    min_drop : float, default :data:`MIN_DROP`
        Passed to :func:`concavity`.

    Returns
    -------
    pandas.DataFrame
        One row per (``noise_std``, ``method``): ``kappa`` of the seed-mean curve,
        ``kappa_min`` and ``kappa_max`` over the seeds' own curves, ``drop`` (first minus
        last value of the mean curve), ``shape`` (from kappa: "concave", "convex", "about
        straight" or "flat") and ``strict`` (from the signs of the mean curve's second
        differences: "concave" if none is positive, "convex" if none is negative, else
        "mixed").

    Examples
    --------
    >>> c = pd.DataFrame({"noise_std": 0.1, "seed": 0, "method": "gradient",
    ...                   "step": range(5), "layer": list("oabcd"),
    ...                   "value": [1.0, 0.95, 0.85, 0.6, 0.2]})
    >>> curve_shapes(c)[["shape", "strict"]].values.tolist()
    [['concave', 'concave']]
    """
    _check_columns(curves, _CURVE_COLUMNS, "curves")
    rows = []
    summary = seed_summary(curves)
    for (s, method), part in summary.groupby(["noise_std", "method"], dropna=False, sort=False):
        y = part.sort_values("step")["mean"].to_numpy()
        per_seed = [concavity(c.sort_values("step")["value"].to_numpy(), min_drop=min_drop)
                    for _, c in curves[(curves["method"] == method)
                                       & ((curves["noise_std"] == s)
                                          | (pd.isna(s) & curves["noise_std"].isna()))]
                    .groupby("seed")]
        kappa = concavity(y, min_drop=min_drop)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanmin(per_seed), np.nanmax(per_seed)
        rows.append({"noise_std": s, "method": method, "kappa": kappa, "kappa_min": lo,
                     "kappa_max": hi, "drop": float(y[0] - y[-1]),
                     "shape": _verdict(kappa, tolerance),
                     "strict": _strict(second_differences(y))})
    return pd.DataFrame(rows, columns=["noise_std", "method", "kappa", "kappa_min",
                                       "kappa_max", "drop", "shape", "strict"])


# ----------------------------------------------------------------------------- sensitivity

def sensitivity(curves: pd.DataFrame) -> pd.DataFrame:
    """How fast each method's map moves away from the original: the area above its curve.

    For one curve ``y_0 = 1, y_1 ... y_L``, the sensitivity is ``mean_k (1 - y_k)`` over the
    noised steps ``k = 1 ... L``: 0 for a map that never changes, 1 for one that is unrelated
    to the original from the first step on (a diverging rank correlation can go below 0, so
    values up to 2 are possible).

    Returns
    -------
    pandas.DataFrame
        One row per (``noise_std``, ``method``): ``sensitivity`` (mean over seeds),
        ``seed_std`` (its spread over seeds, 0 with one seed) and ``rank`` (1 = the most
        sensitive method at that std).

    Examples
    --------
    >>> c = pd.DataFrame({"noise_std": 0.1, "seed": 0, "method": ["a"] * 3 + ["b"] * 3,
    ...                   "step": [0, 1, 2] * 2, "layer": ["o", "x", "y"] * 2,
    ...                   "value": [1.0, 0.8, 0.6, 1.0, 0.4, 0.2]})
    >>> sensitivity(c)[["method", "sensitivity", "rank"]].round(2).values.tolist()
    [['a', 0.3, 2], ['b', 0.7, 1]]
    """
    _check_columns(curves, _CURVE_COLUMNS, "curves")
    methods = list(dict.fromkeys(curves["method"]))
    noised = curves[curves["step"] > 0]
    per_seed = (noised.groupby(["noise_std", "method", "seed"], dropna=False, sort=False)
                ["value"].mean().rsub(1.0).reset_index(name="s"))
    out = (per_seed.groupby(["noise_std", "method"], dropna=False, sort=False)["s"]
           .agg(sensitivity="mean", seed_std="std").reset_index())
    out["seed_std"] = out["seed_std"].fillna(0.0)
    out["rank"] = (out.groupby("noise_std", dropna=False)["sensitivity"]
                   .rank(ascending=False, method="min").astype(np.int64))
    out["_m"] = out["method"].map({m: i for i, m in enumerate(methods)})
    out = out.sort_values(["noise_std", "_m"], kind="stable").drop(columns="_m")
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- intervals

def _image_curves(table: pd.DataFrame, metric: str):
    """``{(noise_std, method): (layers, V)}``, V an images x steps array (step 0 = 1) of each
    image's similarity averaged over the noise seeds (draws of the same noise, not more
    images), in the table's method order."""
    t = _metric_rows(table, metric)
    methods = list(dict.fromkeys(t["method"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_image = (t.groupby(["noise_std", "method", "step", "layer", "image"],
                               dropna=False, sort=False)["value"].mean().reset_index())
    out = {}
    for s in sorted(per_image["noise_std"].unique()):
        part = per_image[(per_image["noise_std"] == s)
                         | (pd.isna(s) & per_image["noise_std"].isna())]
        for method in methods:
            rows = part[part["method"] == method]
            wide = rows.pivot(index="image", columns="step", values="value").sort_index(axis=1)
            layers = rows.drop_duplicates("step").set_index("step")["layer"]
            values = np.column_stack([np.ones(len(wide)), wide.to_numpy(dtype=float)])
            out[s, method] = (layers.reindex(wide.columns).tolist(), values)
    return out


def curve_intervals(table: pd.DataFrame, metric: str = "spearman_diverging", *,
                    layers: Sequence[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """Similarity against step with its 95 % bootstrap interval over the images.

    Each image's similarity at a step is first averaged over the noise seeds; the mean and
    the percentile bootstrap interval (:func:`sanity_lib.checks.statistics.bootstrap_interval`)
    are then taken over the images. The seeds' own spread is in :func:`seed_summary`.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`NoiseSweep.table`.
    metric : str, default "spearman_diverging"
    layers : list of str, optional
        Step names; ``layers[0]`` names step 0 (default ``"original"``).
    seed : int, default 0
        Seed of the bootstrap resampling.

    Returns
    -------
    pandas.DataFrame
        Columns ``noise_std, method, step, layer, mean, low, high, n_images``, step 0 (the
        original model, similarity 1 with no spread) included.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "gradient", "step": 1, "layer": "a", "image": [0, 1, 2] * 2,
    ...                   "metric": "ssim", "value": [0.2, 0.4, 0.6, 0.4, 0.6, 0.8],
    ...                   "noise_std": 0.1, "seed": [0, 0, 0, 1, 1, 1]})
    >>> r = curve_intervals(t, "ssim").iloc[1]
    >>> round(float(r["mean"]), 2), bool(r["low"] <= r["mean"] <= r["high"]), int(r["n_images"])
    (0.5, True, 3)
    """
    from sanity_lib.checks.statistics import bootstrap_interval

    rows = []
    for (s, method), (names, values) in _image_curves(table, metric).items():
        names = [("original" if layers is None else layers[0])] + names
        for step in range(values.shape[1]):
            mean, low, high = bootstrap_interval(values[:, step], seed=seed)
            rows.append({"noise_std": s, "method": method, "step": step, "layer": names[step],
                         "mean": mean, "low": low, "high": high,
                         "n_images": int(np.isfinite(values[:, step]).sum())})
    return pd.DataFrame(rows, columns=["noise_std", "method", "step", "layer", "mean", "low",
                                       "high", "n_images"])


def image_sensitivity(table: pd.DataFrame, metric: str = "spearman_diverging") -> pd.DataFrame:
    """:func:`sensitivity` image by image: ``mean_k (1 - y_k)`` over the noised steps of each
    image's seed-averaged curve. Two methods are compared on the same images by the
    differences of these values (paired), not by their two means.

    Returns
    -------
    pandas.DataFrame
        Columns ``noise_std, method, image, sensitivity``; the images are numbered 0 ... N-1
        in the table's order.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "gradient", "step": [1, 2] * 2, "layer": ["a", "b"] * 2,
    ...                   "image": [0, 0, 1, 1], "metric": "ssim",
    ...                   "value": [0.8, 0.6, 0.4, 0.2], "noise_std": 0.1, "seed": 0})
    >>> image_sensitivity(t, "ssim")["sensitivity"].round(2).tolist()
    [0.3, 0.7]
    """
    rows = []
    for (s, method), (_, values) in _image_curves(table, metric).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_image = np.nanmean(1.0 - values[:, 1:], axis=1)
        rows += [{"noise_std": s, "method": method, "image": i, "sensitivity": float(v)}
                 for i, v in enumerate(per_image)]
    return pd.DataFrame(rows, columns=["noise_std", "method", "image", "sensitivity"])


def sensitivity_intervals(table: pd.DataFrame, metric: str = "spearman_diverging", *,
                          seed: int = 0) -> pd.DataFrame:
    """:func:`sensitivity` with its 95 % bootstrap interval over the images and the spread
    over seeds.

    Returns
    -------
    pandas.DataFrame
        One row per (``noise_std``, ``method``): ``sensitivity`` (the mean over images of
        :func:`image_sensitivity`), ``low``, ``high``, ``n_images``, ``seed_std`` (the sample
        standard deviation over seeds of each seed's sensitivity, 0 with one seed) and
        ``rank`` (1 = the most sensitive method at that std).

    Examples
    --------
    >>> t = pd.DataFrame({"method": "gradient", "step": [1, 2] * 2, "layer": ["a", "b"] * 2,
    ...                   "image": [0, 0, 1, 1], "metric": "ssim",
    ...                   "value": [0.8, 0.6, 0.4, 0.2], "noise_std": 0.1, "seed": 0})
    >>> r = sensitivity_intervals(t, "ssim").iloc[0]
    >>> [round(float(r[c]), 2) for c in ("sensitivity", "low", "high")], int(r["rank"])
    ([0.5, 0.3, 0.7], 1)
    """
    from sanity_lib.checks.statistics import bootstrap_interval

    per_image = image_sensitivity(table, metric)
    spread = sensitivity(mean_curves(table, metric)).set_index(["noise_std", "method"])
    rows = []
    for (s, method), part in per_image.groupby(["noise_std", "method"], dropna=False,
                                               sort=False):
        mean, low, high = bootstrap_interval(part["sensitivity"].to_numpy(), seed=seed)
        rows.append({"noise_std": s, "method": method, "sensitivity": mean, "low": low,
                     "high": high, "n_images": int(part["sensitivity"].notna().sum()),
                     "seed_std": float(spread.loc[(s, method), "seed_std"])})
    out = pd.DataFrame(rows, columns=["noise_std", "method", "sensitivity", "low", "high",
                                      "n_images", "seed_std"])
    out["rank"] = (out.groupby("noise_std", dropna=False)["sensitivity"]
                   .rank(ascending=False, method="min").astype(np.int64))
    return out


def sensitivity_lead(table: pd.DataFrame, method: str, metric: str = "spearman_diverging", *,
                     largest: bool = True, seed: int = 0) -> pd.DataFrame:
    """How far ``method`` is ahead of its closest rival, per noise level, paired over images.

    With ``largest=True`` the rival is the *other* method with the largest mean sensitivity
    and the lead is ``method - rival``; with ``largest=False`` it is the other method with
    the smallest and the lead is ``rival - method``. Either way a lead whose 95 % interval is
    above 0 says "``method`` is first here", one below 0 "the rival is", and one that
    straddles 0 "a shared place". The differences are taken image by image
    (:func:`image_sensitivity`, :func:`sanity_lib.checks.statistics.paired_difference`).

    Returns
    -------
    pandas.DataFrame
        One row per noise std: ``noise_std, rival, lead, low, high``.

    Examples
    --------
    >>> t = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "step": 1, "layer": "l",
    ...                   "image": [0, 1, 2] * 2, "metric": "ssim", "noise_std": 0.1,
    ...                   "seed": 0, "value": [0.2, 0.3, 0.1, 0.6, 0.7, 0.8]})
    >>> r = sensitivity_lead(t, "a", "ssim").iloc[0]
    >>> r["rival"], round(float(r["lead"]), 2), bool(r["low"] > 0)
    ('b', 0.5, True)
    """
    from sanity_lib.checks.statistics import paired_difference

    check_flag("largest", largest)
    per_image = image_sensitivity(table, metric)
    if method not in set(per_image["method"]):
        raise ValueError(f"method={method!r} is not in the table; it holds "
                         f"{list(dict.fromkeys(per_image['method']))}")
    rows = []
    for s, part in per_image.groupby("noise_std", dropna=False, sort=True):
        values = {m: g.sort_values("image")["sensitivity"].to_numpy()
                  for m, g in part.groupby("method", sort=False)}
        others = {m: np.nanmean(v) for m, v in values.items() if m != method}
        if not others:
            raise ValueError("sensitivity_lead needs at least two methods in the table")
        rival = (max if largest else min)(others, key=others.get)
        a, b = (values[method], values[rival]) if largest else (values[rival], values[method])
        lead, low, high = paired_difference(a, b, seed=seed)
        rows.append({"noise_std": s, "rival": rival, "lead": lead, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["noise_std", "rival", "lead", "low", "high"])


def concavity_intervals(table: pd.DataFrame, metric: str = "spearman_diverging", *,
                        n_boot: int = 2000, seed: int = 0,
                        min_drop: float = MIN_DROP) -> pd.DataFrame:
    """The concavity index of each mean curve with its 95 % bootstrap interval over images.

    The images are resampled with replacement, the seed-averaged curves of the resample
    averaged, and :func:`concavity` taken of that mean curve; the interval holds the middle
    95 % of those indices. An interval that straddles 0 cannot tell concave from convex.

    Returns
    -------
    pandas.DataFrame
        One row per (``noise_std``, ``method``): ``kappa`` (of the mean curve), ``low``,
        ``high`` (NaN where most resampled curves do not fall by ``min_drop``) and
        ``n_images``.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "gradient", "step": [1, 2, 3] * 2,
    ...                   "layer": list("abc") * 2, "image": [0, 0, 0, 1, 1, 1],
    ...                   "metric": "ssim", "value": [0.9, 0.8, 0.2, 0.95, 0.7, 0.3],
    ...                   "noise_std": 0.1, "seed": 0})
    >>> r = concavity_intervals(t, "ssim").iloc[0]
    >>> bool(r["kappa"] > 0), bool(r["low"] <= r["kappa"] <= r["high"])
    (True, True)
    """
    from sanity_lib._validation import check_int

    n_boot = check_int("n_boot", n_boot, minimum=1)
    rows = []
    rng_seed = check_int("seed", seed, minimum=0)
    for (s, method), (_, values) in _image_curves(table, metric).items():
        values = values[np.isfinite(values).all(axis=1)]
        kappa = concavity(values.mean(axis=0), min_drop=min_drop)
        rng = np.random.default_rng(rng_seed)
        picks = rng.integers(0, len(values), size=(n_boot, len(values)))
        boot = np.array([concavity(values[p].mean(axis=0), min_drop=min_drop)
                         for p in picks])
        low = high = float("nan")
        if np.isfinite(boot).mean() >= 0.5:
            low, high = np.nanpercentile(boot, [2.5, 97.5])
        rows.append({"noise_std": s, "method": method, "kappa": kappa, "low": float(low),
                     "high": float(high), "n_images": len(values)})
    return pd.DataFrame(rows, columns=["noise_std", "method", "kappa", "low", "high",
                                       "n_images"])


# ----------------------------------------------------------------------------- accuracy

def accuracy_under_noise(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         stds: Sequence[float], seeds: Sequence[int] = (0,), *,
                         relative: bool = False,
                         groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
                         ) -> pd.DataFrame:
    """Test accuracy of the noisy models of :func:`sanity_lib.randomization.gaussian_noise`.

    Tells how much of the *function* a given noise level destroys, which is what a
    saliency map should follow.

    Parameters
    ----------
    model : torch.nn.Module
        The trained classifier (never changed).
    images, labels : torch.Tensor
        Model inputs (N x ...) and their integer labels.
    stds, seeds, relative, groups
        As in :func:`noise_sweep`.

    Returns
    -------
    pandas.DataFrame
        Columns ``noise_std, seed, step, layer, accuracy``; step 0 is the original model.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    >>> acc = accuracy_under_noise(sl.models.mnist_mlp(), x, y, stds=[0.0])
    >>> acc["accuracy"].nunique()     # std 0 changes nothing
    1
    """
    from sanity_lib.randomization import gaussian_noise
    from sanity_lib.training import evaluate

    stds, seeds = _check_stds(stds), _check_seeds(seeds)
    rows = []
    base = evaluate(model, images, labels)
    for s in stds:
        for seed in seeds:
            rows.append({"noise_std": s, "seed": seed, "step": 0, "layer": "original",
                         "accuracy": base})
            for step, (layer, noisy) in enumerate(
                    gaussian_noise(model, s, relative=relative, seed=seed, groups=groups),
                    start=1):
                rows.append({"noise_std": s, "seed": seed, "step": step, "layer": layer,
                             "accuracy": evaluate(noisy, images, labels)})
    return pd.DataFrame(rows, columns=["noise_std", "seed", "step", "layer", "accuracy"])


# ----------------------------------------------------------------------------- figure

def _method_color(method, available):
    """One colour per method in every figure: its place in ``sl.saliency.METHODS``."""
    from sanity_lib.saliency import METHODS

    index = METHODS.index(method) if method in METHODS else available.index(method)
    return f"C{index % 10}"


def plot_noise_curves(curves: pd.DataFrame, metric_label: str = "similarity to the original map",
                      *, noise_floor: float | None = None, methods: Sequence[str] | None = None,
                      axes: Sequence[Axes] | None = None, title: str | None = None,
                      relative: bool = False,
                      intervals: pd.DataFrame | None = None) -> Figure:
    """One panel per noise std: similarity against layers noised, one line per method.

    Lines are the mean over seeds of the image-mean curves. Without ``intervals`` the band is
    +- one standard deviation over seeds (invisible with one seed); with them the band is the
    95 % interval over the images and the seeds' spread is drawn as error bars. A dashed grey
    line marks the noise floor.

    Parameters
    ----------
    curves : pandas.DataFrame
        :func:`mean_curves` output.
    metric_label : str
        The y-axis label.
    noise_floor : float, optional
    methods : list of str, optional
        Subset and order; default all, in the curves' order.
    axes : sequence of matplotlib Axes, optional
        One per noise std; default a new row of panels sharing the y axis.
    title : str, optional
        Figure title.
    relative : bool
        Label the panels "relative std" instead of "std".
    intervals : pandas.DataFrame, optional
        :func:`curve_intervals` of the same sweep and metric: bands over the images.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_noise_curves(sweep.curves("spearman_diverging"),     # doctest: +SKIP
    ...                         intervals=curve_intervals(sweep.table))
    """
    import matplotlib.pyplot as plt

    from sanity_lib.plotting import _label

    _check_columns(curves, _CURVE_COLUMNS, "curves")
    summary = seed_summary(curves)
    available = list(dict.fromkeys(summary["method"]))
    methods = available if methods is None else list(methods)
    unknown = [m for m in methods if m not in available]
    if unknown or not methods:
        raise ValueError(f"methods={unknown or methods!r} not in the curves; they hold "
                         f"{available}")
    stds = sorted(summary["noise_std"].unique())
    if axes is None:
        fig, axes = plt.subplots(1, len(stds), figsize=(3.6 * len(stds) + 1.2, 3.7),
                                 sharey=True, squeeze=False, layout="constrained")
        axes = axes[0]
    else:
        axes = list(np.atleast_1d(axes))
        if len(axes) != len(stds):
            raise ValueError(f"axes has {len(axes)} panels but the curves have {len(stds)} "
                             "noise levels; pass one Axes per std")
        fig = axes[0].figure
    n_seeds = int(summary["n_seeds"].max())
    if intervals is not None:
        _check_columns(intervals, ["noise_std", "method", "step", "low", "high", "n_images"],
                       "intervals")
    for ax, s in zip(axes, stds):
        part = summary[summary["noise_std"] == s]
        for j, method in enumerate(methods):
            c = part[part["method"] == method].sort_values("step")
            color = _method_color(method, available)
            ax.plot(c["step"], c["mean"], "o-", ms=4, color=color,
                    label=_label(method))
            if intervals is None:
                ax.fill_between(c["step"], c["mean"] - c["seed_std"],
                                c["mean"] + c["seed_std"], color=color, alpha=0.18, lw=0)
                continue
            band = intervals[(intervals["noise_std"] == s) & (intervals["method"] == method)]
            if band.empty:
                raise ValueError(f"intervals has no rows for std {s:g} and {method!r}; pass "
                                 "curve_intervals() of the same sweep")
            band = band.sort_values("step")
            ax.fill_between(band["step"], band["low"], band["high"], color=color, alpha=0.18,
                            lw=0)
            if n_seeds > 1:
                ax.errorbar(c["step"], c["mean"], yerr=c["seed_std"], fmt="none",
                            ecolor=color, elinewidth=1, capsize=2)
        if noise_floor is not None:
            ax.axhline(noise_floor, color="grey", ls="--", lw=1)
        layers = part.drop_duplicates("step").sort_values("step")["layer"].tolist()
        ax.set_xticks(range(len(layers)), layers, rotation=30)
        ax.set_title(f"{'relative ' if relative else ''}std {s:g}")
        ax.set_xlabel("noise added down to layer")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric_label)
    if intervals is not None:
        n_images = int(intervals["n_images"].max())
        legend_title = f"band: 95 % interval over {n_images} images" + (
            f"\nbars: ± sd over {n_seeds} seeds" if n_seeds > 1 else "")
    else:
        legend_title = f"mean ± sd over {n_seeds} seeds" if n_seeds > 1 else None
    # Outside the last panel: inside, it would hide the curves it names.
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), title=legend_title,
                    title_fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
