"""How similar are two saliency maps? The paper's four similarity metrics and their noise floor.

Adebayo et al. (2018) compare the map of a trained model with the map of a randomized one by

* the Spearman rank correlation of the maps normalized **with absolute values** ("abs") and
  **without** ("diverging", the sign kept);
* the structural similarity index (SSIM) of the maps rescaled to [0, 1];
* the correlation of their histograms of oriented gradients (HOG).

Every function takes a batch of maps, shape ``N x C x H x W`` or ``N x H x W`` (a torch tensor
or a numpy array; a 3-D input is always read as N maps of one channel), compares ``a[i]`` with
``b[i]`` and returns a float64 torch tensor of length N. :data:`METRICS` lists the names that
:func:`compare` and the library's result tables use. :func:`noise_floor` gives the similarity of
two *independent random* maps: the level under which a curve says nothing.

All numbers are computed in float64 numpy (scipy and scikit-image work there), so the
results match scipy and scikit-image called directly to rounding.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from sanity_lib._validation import check_choice, check_choices, check_flag, check_int, check_real

__all__ = [
    "METRICS", "MODES", "ConstantMapWarning",
    "normalize", "spearman", "ssim", "hog_correlation", "compare", "noise_floor",
    "auto_pixels_per_cell",
]

MODES = ("abs", "diverging")
#: The metric names used by :func:`compare` and in every result table of the library.
METRICS = ("spearman_abs", "spearman_diverging", "ssim", "hog")
HOG_METHODS = ("pearson", "spearman")
NOISE_KINDS = ("gaussian", "uniform")
#: The paper's HOG cell size (16 x 16 pixels on 224 / 299 pixel ImageNet maps).
PAPER_PIXELS_PER_CELL = 16
# The automatic HOG cell keeps at least this many cells along the shorter side of a map.
_MIN_CELLS_PER_SIDE = 7


class ConstantMapWarning(RuntimeWarning):
    """A map was constant (zero variance), so its correlation is undefined and reported as NaN."""


# ----------------------------------------------------------------------------- input checks

#: The block normalizations scikit-image's HOG offers.
HOG_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")

def _as_batch(maps, name):
    """Return ``maps`` as a float64 numpy array N x C x H x W, or raise naming ``name``."""
    if isinstance(maps, torch.Tensor):
        if maps.is_complex():
            raise TypeError(f"{name} must hold real numbers, got a complex tensor")
        arr = maps.detach().to("cpu", torch.float64).numpy()
    elif isinstance(maps, np.ndarray):
        real = np.issubdtype(maps.dtype, np.number) or maps.dtype == bool
        if not real or np.iscomplexobj(maps):
            raise TypeError(
                f"{name} must hold real numbers, got a numpy array of dtype {maps.dtype}")
        arr = maps.astype(np.float64, copy=False)
    else:
        raise TypeError(
            f"{name} must be a torch tensor or a numpy array of maps, got {type(maps).__name__}; "
            f"wrap it with torch.as_tensor({name})"
        )
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(
            f"{name} must be a batch of maps, shape N x C x H x W or N x H x W, got shape "
            f"{tuple(arr.shape)}; for a single H x W map pass {name}[None]"
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} holds no maps or empty ones (shape {tuple(arr.shape)}); "
                         "pass at least one map with at least one pixel")
    bad = ~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"{name} contains NaN or infinite values in {idx.size} of {arr.shape[0]} maps "
            f"(indices {idx[:10].tolist()}{' ...' if idx.size > 10 else ''}); a map that is "
            "NaN cannot be compared: fix the saliency method (e.g. a division by a zero max)"
        )
    return arr


def _as_pair(a, b):
    a_arr, b_arr = _as_batch(a, "a"), _as_batch(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"a and b must have the same shape, got a: {tuple(a_arr.shape)} and "
            f"b: {tuple(b_arr.shape)} (3-D inputs are read as N x 1 x H x W); compare the "
            "maps of the same images, computed at the same resolution"
        )
    return a_arr, b_arr


def _check_mode(mode, allow_none=False):
    if mode is None and allow_none:
        return
    if mode not in MODES:
        extra = " or None (no normalization)" if allow_none else ""
        raise ValueError(f"mode={mode!r} is not known; choose 'abs' or 'diverging'{extra}")


def _check_percentile(percentile):
    if (not isinstance(percentile, numbers.Real) or isinstance(percentile, bool)
            or not 0 < percentile <= 100):
        raise ValueError(f"percentile must be a number in (0, 100], got {percentile!r}")


def _single_channel(arr, name, why):
    if arr.shape[1] != 1:
        raise ValueError(
            f"{name} has {arr.shape[1]} channels but {why} needs one map per image; "
            "normalize it first (mode='abs' or 'diverging' sums over channels)"
        )
    return arr[:, 0]


# ----------------------------------------------------------------------------- normalization

def _normalize_np(arr, mode, percentile=99.0, subtract_min=True):
    """float64 N x C x H x W -> float64 N x H x W, the normalization of :func:`normalize`."""
    n, _, h, w = arr.shape
    if mode == "abs":
        s = np.abs(arr).sum(axis=1).reshape(n, h * w)
        if subtract_min:
            s = s - s.min(axis=1, keepdims=True)
        lo, hi = 0.0, 1.0
        top = s.max(axis=1, keepdims=True)
        scale = np.percentile(s, percentile, axis=1, keepdims=True)
    else:
        s = arr.sum(axis=1).reshape(n, h * w)
        lo, hi = -1.0, 1.0
        top = np.abs(s).max(axis=1, keepdims=True)
        scale = np.percentile(np.abs(s), percentile, axis=1, keepdims=True)
    # A map with fewer than (100 - percentile) % non-zero pixels has a zero percentile: fall back
    # to its maximum so it is not blown up to inf; an all-zero (constant) map stays all zero.
    scale = np.where(scale > 0, scale, top)
    out = np.divide(s, scale, out=np.zeros_like(s), where=scale > 0)
    return np.clip(out, lo, hi).reshape(n, h, w)


def normalize(maps: torch.Tensor | np.ndarray, mode: str, *, percentile: float = 99.0,
              subtract_min: bool = True) -> torch.Tensor:
    """Normalize saliency maps as the paper's reference code did before comparing them.

    ``mode="abs"`` (the "absolute value" maps, as the paper shows them)
        sum ``|map|`` over channels, subtract the per-image minimum, divide by the per-image
        ``percentile``-th percentile *of that min-subtracted map*, clip to [0, 1].
    ``mode="diverging"`` (sign kept)
        sum the map over channels, divide by the per-image ``percentile``-th percentile of
        ``|sum|``, clip to [-1, 1]. Zero stays zero and ``normalize(-m) == -normalize(m)``.

    Percentiles are ``np.percentile``'s default ("linear": interpolated between the two nearest
    order statistics) over the H x W pixels of each image. For the abs mode the order (first
    subtract the minimum, then take the percentile) is the one PAPER.md states; it equals the
    reference code's ``(s - min) / (p99(s) - min)`` because a percentile moves with a shift.

    Parameters
    ----------
    maps : torch.Tensor or numpy.ndarray
        N x C x H x W or N x H x W (3-D is read as N maps of one channel). No NaN or inf.
    mode : {"abs", "diverging"}
    percentile : float, default 99
        The paper's code clips the top 1 %. ``percentile=100`` divides by the maximum.
    subtract_min : bool, default True
        Abs mode only: subtract the per-image minimum first.

    Returns
    -------
    torch.Tensor
        N x H x W, in [0, 1] (abs) or [-1, 1] (diverging); float64 if ``maps`` was float64,
        else float32.

    Notes
    -----
    *MNIST variant.* For 2-D maps (MNIST) the reference code used ``|x| / max|x|`` and
    ``x / max|x|`` instead: that is ``normalize(m, "abs", percentile=100, subtract_min=False)``
    and ``normalize(m, "diverging", percentile=100)``. The library's default is the 99th
    percentile rule with min subtraction **for every map size**, MNIST included, so all curves
    are computed one way. Rank correlations barely differ (the two differ only by the ties the
    clipping of the top 1 % creates); SSIM values differ more. To reproduce the reference
    exactly, normalize with the variant yourself and pass ``mode=None`` to the metrics.

    *Reference code's diverging quirk.* The PAIR ``saliency`` package that the reference code
    calls takes the percentile of the *signed* map and returns ``clip((x + s) / (2 s), -1, 1)``,
    which sends 0 to 0.5 and clips only below ``-3 s``. We implement the symmetric rule that
    PAPER.md states; ranks are affected only through which pixels get clipped.

    *Degenerate maps.* If the percentile is 0 (fewer than 1 % non-zero pixels) we divide by the
    maximum instead (no inf); a constant map becomes all zeros (no NaN). The correlation
    metrics then report NaN for it with a :class:`ConstantMapWarning`.

    Raises
    ------
    ValueError
        Unknown ``mode``, a ``percentile`` outside (0, 100], wrong rank, NaN or inf in ``maps``.

    Examples
    --------
    >>> m = torch.tensor([[[[0.0, -2.0], [1.0, 4.0]]]])     # one 2 x 2 map, one channel
    >>> normalize(m, "abs", percentile=100)
    tensor([[[0.0000, 0.5000],
             [0.2500, 1.0000]]])
    >>> normalize(m, "diverging", percentile=100)
    tensor([[[ 0.0000, -0.5000],
             [ 0.2500,  1.0000]]])
    """
    _check_mode(mode)
    _check_percentile(percentile)
    arr = _as_batch(maps, "maps")
    out = _normalize_np(arr, mode, percentile, bool(subtract_min))
    is64 = getattr(maps, "dtype", None) in (torch.float64, np.float64)
    return torch.from_numpy(out if is64 else out.astype(np.float32))


def _prepare(arr, mode, percentile, name, why):
    """Normalized N x H x W float64 maps, or the raw single-channel maps for mode=None."""
    if mode is None:
        return _single_channel(arr, name, why)
    return _normalize_np(arr, mode, percentile)


# ----------------------------------------------------------------------------- correlations

def _rowwise_pearson(x, y):
    """Pearson correlation of each row of x with the same row of y (float64, N x D).

    Returns (r, constant) where constant marks rows in which x or y does not vary; r is NaN
    there. Constancy is tested exactly (max == min): a centred constant row can carry rounding
    noise of 1e-17 that would otherwise produce a meaningless correlation.
    """
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    num = (xc * yc).sum(axis=1)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    r = np.full(x.shape[0], np.nan)
    ok = ~constant
    r[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return r, constant


def _rank_rows(x):
    # Average ranks for ties, as scipy.stats.spearmanr: clipped maps tie at 0 and 1 a lot.
    return rankdata(x, method="average", axis=1)


def _spearman_np(x, y):
    n = x.shape[0]
    return _rowwise_pearson(_rank_rows(x.reshape(n, -1)), _rank_rows(y.reshape(n, -1)))


def _warn_constant(what, constant, stacklevel=3):
    """One warning per call, naming how many samples (and which) gave NaN."""
    if not constant.any():
        return
    idx = np.flatnonzero(constant)
    warnings.warn(
        f"{what}: {idx.size} of {constant.size} samples (indices {idx[:10].tolist()}"
        f"{' ...' if idx.size > 10 else ''}) compare a constant map (zero variance, e.g. an "
        "all-zero map), so their correlation is undefined and set to NaN; leave them out with "
        "torch.nanmean or look at those maps",
        ConstantMapWarning,
        stacklevel=stacklevel,
    )


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray,
             mode: str | None = "abs", *,
             percentile: float = 99.0) -> torch.Tensor:
    """Per-sample Spearman rank correlation between two batches of saliency maps.

    Both batches are normalized with :func:`normalize` (``mode``, ``percentile``), then for each
    sample the pixels are ranked (ties get their average rank, as ``scipy.stats.rankdata``) and
    the ranks correlated (Pearson). Equal to ``scipy.stats.spearmanr`` on each pair of
    flattened normalized maps.

    Parameters
    ----------
    a, b : torch.Tensor or numpy.ndarray
        Maps of the same shape, N x C x H x W or N x H x W.
    mode : {"abs", "diverging", None}, default "abs"
        "abs" compares where the map is large whatever its sign (the paper's headline
        numbers); "diverging" keeps the sign, so ``spearman(m, -m, "diverging")`` is -1 while
        ``spearman(m, -m, "abs")`` is 1. None ranks the raw values (all channels flattened).
    percentile : float, default 99
        Passed to :func:`normalize`.

    Returns
    -------
    torch.Tensor
        float64, length N, in [-1, 1]; NaN where a map is constant.

    Warns
    -----
    ConstantMapWarning
        (a RuntimeWarning) once per call when some samples gave NaN, naming how many.

    Examples
    --------
    >>> m = torch.randn(3, 1, 16, 16)
    >>> spearman(m, 2 * m + 1, mode=None)
    tensor([1., 1., 1.], dtype=torch.float64)
    >>> spearman(m, -m, mode="diverging")
    tensor([-1., -1., -1.], dtype=torch.float64)
    """
    _check_mode(mode, allow_none=True)
    _check_percentile(percentile)
    a_arr, b_arr = _as_pair(a, b)
    if mode is not None:
        a_arr = _normalize_np(a_arr, mode, percentile)
        b_arr = _normalize_np(b_arr, mode, percentile)
    r, constant = _spearman_np(a_arr, b_arr)
    _warn_constant(f"spearman(mode={mode!r})", constant)
    return torch.from_numpy(r)


# ----------------------------------------------------------------------------- SSIM

def _ssim_np(x, y, win_size, gaussian_weights, data_range, options):
    from skimage.metrics import structural_similarity

    h, w = x.shape[1:]
    if (not isinstance(win_size, numbers.Integral) or isinstance(win_size, bool)
            or win_size < 3 or win_size % 2 == 0 or win_size > min(h, w)):
        raise ValueError(
            f"win_size must be an odd integer >= 3 and at most the map's shorter side "
            f"({min(h, w)} px here), got {win_size!r}"
        )
    # scikit-image's SSIM works on one image at a time: a loop is the only way.
    return np.array([
        structural_similarity(xi, yi, win_size=win_size, gaussian_weights=gaussian_weights,
                              data_range=data_range, **options)
        for xi, yi in zip(x, y)
    ], dtype=np.float64)


def _ssim_ready(arr, mode, percentile, name):
    out = _prepare(arr, mode, percentile, name, "ssim with mode=None")
    # SSIM's constants assume a fixed range: bring diverging maps from [-1, 1] to [0, 1].
    return (out + 1.0) / 2.0 if mode == "diverging" else out


def ssim(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray,
         mode: str | None = "abs", *, win_size: int = 5,
         gaussian_weights: bool = False, data_range: float = 1.0, percentile: float = 99.0,
         **options: Any) -> torch.Tensor:
    """Per-sample structural similarity (scikit-image) of two batches of normalized maps.

    The maps are brought to [0, 1] first: ``mode="abs"`` uses :func:`normalize`'s abs maps,
    ``mode="diverging"`` the diverging maps rescaled from [-1, 1] by ``(x + 1) / 2``.
    Then ``skimage.metrics.structural_similarity(x, y, win_size=5, data_range=1.0,
    gaussian_weights=False)`` compares each pair (SSIM's K1 = 0.01, K2 = 0.03 and the sample
    covariance, scikit-image's defaults).

    The defaults follow the paper's text: a uniform **5 x 5** window and ``data_range=1.0``
    (the range of the normalized maps). The reference code used Gaussian weights instead;
    ``gaussian_weights=True`` selects them. Note that scikit-image then filters with a
    Gaussian of ``sigma=1.5`` (11 taps) whatever ``win_size`` is, and ``win_size`` only sets
    the border that is left out of the mean; pass ``sigma=`` to change the Gaussian.

    Parameters
    ----------
    a, b : torch.Tensor or numpy.ndarray
        Maps of the same shape, N x C x H x W or N x H x W, at least ``win_size`` pixels a side.
    mode : {"abs", "diverging", None}, default "abs"
        None uses the maps as given (one channel), on the scale ``data_range`` states.
    win_size : int, default 5
    gaussian_weights : bool, default False
    data_range : float, default 1.0
    percentile : float, default 99
        Passed to :func:`normalize`.
    **options
        Passed to ``structural_similarity`` (e.g. ``sigma``, ``K1``, ``K2``,
        ``use_sample_covariance``).

    Returns
    -------
    torch.Tensor
        float64, length N, in [-1, 1]. A constant map gives a finite SSIM (SSIM's constants
        keep it defined), not NaN.

    Examples
    --------
    >>> m = torch.rand(2, 3, 32, 32)
    >>> ssim(m, m)
    tensor([1., 1.], dtype=torch.float64)
    """
    _check_mode(mode, allow_none=True)
    _check_percentile(percentile)
    a_arr, b_arr = _as_pair(a, b)
    x = _ssim_ready(a_arr, mode, percentile, "a")
    y = _ssim_ready(b_arr, mode, percentile, "b")
    gaussian_weights = check_flag("gaussian_weights", gaussian_weights)
    data_range = check_real("data_range", data_range, 0.0, inclusive=False,
                            why="the value range of the maps (1.0 for maps in [0, 1])")
    return torch.from_numpy(_ssim_np(x, y, win_size, gaussian_weights, data_range, options))


# ----------------------------------------------------------------------------- HOG

def _pair_of_ints(value, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        value = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        value = ()
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return value


def auto_pixels_per_cell(height: int, width: int) -> int:
    """The HOG cell size used when ``pixels_per_cell=None``.

    The paper's 16 x 16 cells when the shorter side holds at least 7 of them (maps of 112
    pixels and more: 14 cells a side on 224 pixel maps); for smaller maps the largest cell
    that still leaves 7 cells a side, ``shorter_side // 7``. A 28 x 28 MNIST map gets 4 x 4
    cells (7 x 7 cells, 5 x 5 blocks of 3 x 3 cells); 16 x 16 cells would not fit scikit-image's
    3 x 3 cell block at all (it needs 48 pixels).

    Examples
    --------
    >>> auto_pixels_per_cell(224, 224), auto_pixels_per_cell(28, 28)
    (16, 4)
    """
    return max(1, min(PAPER_PIXELS_PER_CELL, min(height, width) // _MIN_CELLS_PER_SIDE))


def _hog_np(x, pixels_per_cell, orientations, cells_per_block, block_norm):
    """HOG feature vectors of N x H x W maps -> N x D float64."""
    from skimage.feature import hog

    h, w = x.shape[1:]
    if pixels_per_cell is None:
        ppc = (auto_pixels_per_cell(h, w),) * 2
    else:
        ppc = _pair_of_ints(pixels_per_cell, "pixels_per_cell")
    cpb = _pair_of_ints(cells_per_block, "cells_per_block")
    need = (ppc[0] * cpb[0], ppc[1] * cpb[1])
    if h < need[0] or w < need[1]:
        raise ValueError(
            f"maps of {h} x {w} pixels are too small for HOG with pixels_per_cell={ppc} and "
            f"cells_per_block={cpb} (one block needs {need[0]} x {need[1]} pixels); pass a smaller "
            "pixels_per_cell, or pixels_per_cell=None to pick one from the map size"
        )
    # scikit-image's hog works on one image at a time: a loop is the only way.
    return np.stack([
        hog(xi, orientations=orientations, pixels_per_cell=ppc, cells_per_block=cpb,
            block_norm=block_norm, feature_vector=True)
        for xi in x
    ]).astype(np.float64, copy=False)


def _correlate(fa, fb, method):
    if method == "pearson":
        return _rowwise_pearson(fa, fb)
    return _spearman_np(fa, fb)


def _check_hog_method(method):
    if method not in HOG_METHODS:
        raise ValueError(f"method={method!r} is not known; choose 'pearson' or 'spearman'")


def hog_correlation(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, *,
                    method: str = "pearson",
                    pixels_per_cell: int | tuple[int, int] | None = None,
                    mode: str | None = "abs", orientations: int = 9, cells_per_block: int = 3,
                    block_norm: str = "L2-Hys", percentile: float = 99.0) -> torch.Tensor:
    """Per-sample correlation of the HOG features of two batches of normalized maps.

    Each map is normalized (:func:`normalize`, ``mode``), described by
    ``skimage.feature.hog(map, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(3, 3),
    block_norm="L2-Hys")``, and the two feature vectors are correlated: Pearson as the paper
    says (default), or Spearman as its reference code computed (``method="spearman"``).

    Parameters
    ----------
    a, b : torch.Tensor or numpy.ndarray
        Maps of the same shape, N x C x H x W or N x H x W.
    method : {"pearson", "spearman"}, default "pearson"
    pixels_per_cell : int, (int, int) or None, default None
        None picks the paper's 16 x 16 cells for maps of at least 112 pixels a side, and
        ``shorter_side // 7`` below that: **4 x 4 for 28 x 28 MNIST maps**, where 16 x 16 cells
        do not fit (see :func:`auto_pixels_per_cell`). Too large a value raises a ValueError.
    mode : {"abs", "diverging", None}, default "abs"
        None uses the maps as given (one channel).
    orientations, cells_per_block, block_norm
        Passed to ``skimage.feature.hog`` (its defaults).
    percentile : float, default 99
        Passed to :func:`normalize`.

    Returns
    -------
    torch.Tensor
        float64, length N; NaN where a map has no gradient at all (constant map), with one
        :class:`ConstantMapWarning` per call.

    Notes
    -----
    HOG features are non-negative and share the layout of the block normalization, so even
    two independent random maps correlate a little: the paper found about 0.08 for two
    Uniform[-1, 1] masks; see :func:`noise_floor` for the value at your map size.

    Examples
    --------
    >>> m = torch.rand(2, 1, 28, 28)
    >>> hog_correlation(m, m)                    # 4 x 4 cells chosen for 28 x 28 maps
    tensor([1., 1.], dtype=torch.float64)
    """
    _check_hog_method(method)
    _check_mode(mode, allow_none=True)
    _check_percentile(percentile)
    a_arr, b_arr = _as_pair(a, b)
    x = _prepare(a_arr, mode, percentile, "a", "hog_correlation with mode=None")
    y = _prepare(b_arr, mode, percentile, "b", "hog_correlation with mode=None")
    orientations = check_int("orientations", orientations, minimum=1)
    check_choice("block_norm", block_norm, HOG_BLOCK_NORMS)
    feats = [_hog_np(m, pixels_per_cell, orientations, cells_per_block, block_norm) for m in (x, y)]
    r, constant = _correlate(*feats, method)
    _warn_constant(f"hog_correlation(method={method!r})", constant)
    return torch.from_numpy(r)


# ----------------------------------------------------------------------------- all at once

def compare(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray,
            metrics: str | Sequence[str] = METRICS, *,
            percentile: float = 99.0, win_size: int = 5, gaussian_weights: bool = False,
            pixels_per_cell: int | tuple[int, int] | None = None,
            hog_method: str = "pearson") -> dict[str, torch.Tensor]:
    """All of the paper's similarity metrics between two batches of maps, in one call.

    Each batch is normalized once per mode and shared between the metrics.

    ========================  ==========================================================
    name                      metric
    ========================  ==========================================================
    ``"spearman_abs"``        :func:`spearman` with ``mode="abs"``
    ``"spearman_diverging"``  :func:`spearman` with ``mode="diverging"``
    ``"ssim"``                :func:`ssim` on the abs maps (5 x 5 uniform window, range 1)
    ``"hog"``                 :func:`hog_correlation` on the abs maps (Pearson)
    ========================  ==========================================================

    Parameters
    ----------
    a, b : torch.Tensor or numpy.ndarray
        Maps of the same shape, N x C x H x W or N x H x W.
    metrics : str or sequence of str, default :data:`METRICS` (all four)
    percentile, win_size, gaussian_weights, pixels_per_cell, hog_method
        As in :func:`normalize`, :func:`ssim` and :func:`hog_correlation`.

    Returns
    -------
    dict of str to torch.Tensor
        metric name -> float64 tensor of length N, in the order asked for.

    Warns
    -----
    ConstantMapWarning
        At most once per call, listing the metrics that gave NaN.

    Examples
    --------
    >>> m = torch.randn(2, 3, 32, 32)
    >>> scores = compare(m, -m)
    >>> list(scores)
    ['spearman_abs', 'spearman_diverging', 'ssim', 'hog']
    >>> scores["spearman_abs"], scores["spearman_diverging"]
    (tensor([1., 1.], dtype=torch.float64), tensor([-1., -1.], dtype=torch.float64))
    """
    metrics = check_choices("metrics", metrics, METRICS)
    gaussian_weights = check_flag("gaussian_weights", gaussian_weights)
    _check_percentile(percentile)
    _check_hog_method(hog_method)
    a_arr, b_arr = _as_pair(a, b)
    norm = {}

    def normalized(mode):
        if mode not in norm:
            norm[mode] = (_normalize_np(a_arr, mode, percentile),
                          _normalize_np(b_arr, mode, percentile))
        return norm[mode]

    out, nan_notes = {}, []
    for name in metrics:
        constant = None
        if name.startswith("spearman_"):
            r, constant = _spearman_np(*normalized(name[len("spearman_"):]))
        elif name == "ssim":
            r = _ssim_np(*normalized("abs"), win_size, gaussian_weights, 1.0, {})
        else:
            feats = [_hog_np(m, pixels_per_cell, 9, 3, "L2-Hys") for m in normalized("abs")]
            r, constant = _correlate(*feats, hog_method)
        if constant is not None and constant.any():
            nan_notes.append(f"{name}: {int(constant.sum())}")
        out[name] = torch.from_numpy(r)
    if nan_notes:
        warnings.warn(
            f"compare: some of the {a_arr.shape[0]} samples compare a constant map (zero "
            f"variance, e.g. an all-zero map), so their correlation is NaN (NaN count per "
            f"metric: {', '.join(nan_notes)}); leave them out with torch.nanmean or look at "
            "those maps",
            ConstantMapWarning,
            stacklevel=2,
        )
    return out


def noise_floor(shape: tuple[int, ...], metrics: str | Sequence[str] = METRICS, *, n: int = 50,
                seed: int = 0, kind: str = "gaussian", return_std: bool = False,
                **compare_options: Any,
                ) -> dict[str, float] | tuple[dict[str, float], dict[str, float]]:
    """Mean similarity of independent random maps: the level a similarity curve cannot go below.

    Draws ``n`` pairs of independent random maps of ``shape`` (standard normal for
    ``kind="gaussian"``, Uniform[-1, 1] for ``kind="uniform"``, from
    ``numpy.random.default_rng(seed)``), compares each pair with :func:`compare` and averages.
    This is the paper's calibration (section 6 of PAPER.md): rank correlations and SSIM sit at
    about 0, the HOG correlation of two Uniform[-1, 1] masks at about 0.08 (224 px). Draw it
    on every similarity plot. (The paper's other calibration, a real map against a random
    mask, is ``compare(maps, torch.randn_like(maps))``.)

    Parameters
    ----------
    shape : tuple of int
        The shape of one map, (H, W) or (C, H, W), e.g. ``(3, 224, 224)`` or ``(28, 28)``.
    metrics : str or sequence of str, default :data:`METRICS`
    n : int, default 50
        Number of random pairs (the paper used 50 images).
    seed : int, default 0
    kind : {"gaussian", "uniform"}, default "gaussian"
    return_std : bool, default False
        Also return the standard deviation over the pairs.
    **compare_options
        Passed to :func:`compare` (``pixels_per_cell``, ``win_size``, ...).

    Returns
    -------
    dict of str to float, or (means, stds) when ``return_std`` is True.

    Examples
    --------
    >>> floor = noise_floor((28, 28), n=20)
    >>> abs(floor["spearman_abs"]) < 0.05
    True
    """
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) or (C, H, W) with positive sizes, got {shape!r}")
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind={kind!r} is not known; choose 'gaussian' or 'uniform'")
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (number of random pairs), got {n!r}")
    metrics = check_choices("metrics", metrics, METRICS)
    seed = check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    size = (2, n) + shape
    draws = rng.standard_normal(size) if kind == "gaussian" else rng.uniform(-1.0, 1.0, size)
    scores = compare(draws[0], draws[1], metrics, **compare_options)
    means = {name: float(v.mean()) for name, v in scores.items()}
    if not return_std:
        return means
    return means, {name: float(v.std()) for name, v in scores.items()}
