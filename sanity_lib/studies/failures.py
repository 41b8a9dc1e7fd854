"""Why do saliency methods fail? The analyses of the paper's section 5, with numbers.

Adebayo et al. (2018) explain the failures they found with two toy cases, and their
reviewers asked for numbers instead of pictures. This module measures both:

- **Input times a random vector.** :func:`input_times_random_correlation` compares
  ``x * u`` with ``x * v`` for independent random ``u`` and ``v``: two maps that share
  nothing but the input. Their rank correlation in absolute value stays high, while ``u``
  and ``v`` themselves are uncorrelated, so any "input times something" map (Gradient x
  Input, Integrated Gradients with a zero baseline) inherits the input's structure.
- **Edge detectors.** :func:`edge_maps` runs real edge detectors on images (scikit-image's
  Sobel magnitude and Canny, and a convolution layer holding the Sobel filters) and
  :func:`edge_similarity` measures how much saliency maps resemble them, in a tidy table
  that :func:`plot_edge_similarity` draws with its spread over images.
  :func:`edge_agreement` compares the *edges* of the maps with the image's edges (Sobel
  with Sobel, HOG, SSIM, and the ROC AUC of the map at Canny's edge pixels), next to a
  mismatched-image null: a blotchy map whose patch boundaries follow the image scores high
  there, where a rank correlation of ``|map|`` with the Sobel magnitude cannot see it.

The linear-model analysis needs no helper: :func:`sanity_lib.models.linear_model` and
:func:`sanity_lib.saliency.explain` are enough (see the book's chapter 5).

Images here are **pixels in [0, 1]** (``sl.data.sample_images``, ``sl.data.load_mnist``),
N x C x H x W or N x H x W; colour images become grey by averaging their channels.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from sanity_lib._validation import check_choice, check_choices, check_int, check_real

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "EDGE_DETECTORS", "DETECTOR_LABELS", "EDGE_MEASURES", "MEASURE_LABELS", "PAIRINGS",
    "edge_maps", "edge_similarity", "edge_agreement", "input_times_random_correlation",
    "plot_edge_similarity",
]

#: The edge detectors :func:`edge_maps` knows.
EDGE_DETECTORS = ("sobel", "canny", "sobel_conv")
#: How the detectors are written in figures.
DETECTOR_LABELS = {
    "sobel": "Sobel magnitude",
    "canny": "Canny edges",
    "sobel_conv": "Sobel-initialized conv layer",
}
#: What :func:`edge_agreement` measures: edges of the map against edges of the image.
EDGE_MEASURES = ("sobel_edges", "hog", "ssim", "canny_auc")
#: How the measures are written in tables and figures.
MEASURE_LABELS = {
    "sobel_edges": "Spearman, Sobel of map vs Sobel of image",
    "hog": "cosine of HOG descriptors",
    "ssim": "SSIM of the Sobel magnitudes",
    "canny_auc": "ROC AUC of the map at Canny edges",
}
#: Whose edges a map meets in :func:`edge_agreement`: its own image's, or other images'.
PAIRINGS = ("same", "mismatched")
_TABLE_COLUMNS = ["method", "detector", "metric", "image", "value"]
_AGREEMENT_COLUMNS = ["method", "measure", "pairing", "image", "value"]
_RANDOM_COLUMNS = ["pair", "image", "maps", "metric", "value"]
_RANDOM_PAIRS = ("x*u vs x*v", "u vs v")


# ----------------------------------------------------------------------------- checks

def _as_images(images, name="images"):
    """float64 numpy N x C x H x W from a tensor or array, N x C x H x W or N x H x W."""
    if isinstance(images, torch.Tensor):
        arr = images.detach().to("cpu", torch.float64).numpy()
    elif isinstance(images, np.ndarray) and (np.issubdtype(images.dtype, np.number)
                                             and not np.iscomplexobj(images)):
        arr = images.astype(np.float64, copy=False)
    else:
        raise TypeError(
            f"{name} must be a torch tensor or a numpy array of pixels in [0, 1], got "
            f"{type(images).__name__}; e.g. sl.data.sample_images(224) or sl.data.load_mnist()[0]"
        )
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or 0 in arr.shape:
        raise ValueError(
            f"{name} must be a non-empty batch N x C x H x W or N x H x W, got shape "
            f"{tuple(arr.shape)}; for one image use {name}[None]"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _maps_by_name(maps, pixels):
    """``{name: float64 N x C x H x W array}`` from one batch of maps (named ``"maps"``) or
    a dict of them, each checked to hold one map per image of ``pixels`` at its size."""
    named = maps if isinstance(maps, dict) else {"maps": maps}
    if not named:
        raise ValueError("maps is an empty dict; pass at least one batch of maps")
    n, _, h, w = pixels.shape
    out = {}
    for name, batch in named.items():
        arr = _as_images(batch, name=f"maps[{name!r}]" if isinstance(maps, dict) else "maps")
        if arr.shape[0] != n or arr.shape[2:] != (h, w):
            raise ValueError(
                f"maps {name!r} have shape {tuple(arr.shape)} but the images have "
                f"{tuple(pixels.shape)}; pass one map per image, at the image's resolution"
            )
        out[name] = arr
    return out


# ----------------------------------------------------------------------------- edge maps

def _sobel_conv(gray):
    """|Gx| + |Gy| through the Sobel-initialized conv layer (before its sum pooling)."""
    from sanity_lib.models import one_conv_model

    model = one_conv_model(init="sobel", in_channels=1, padding_mode="replicate").double()
    with torch.no_grad():
        x = torch.from_numpy(gray)[:, None]
        return model.act(model.conv(x)).sum(dim=1).numpy()


def edge_maps(images: torch.Tensor | np.ndarray, kind: str = "sobel", *,
              sigma: float = 1.0) -> torch.Tensor:
    """Edge maps of images by a classic edge detector, one H x W map per image.

    Every detector sees the grey image: the mean of the colour channels.

    ``"sobel"``
        ``skimage.filters.sobel``: the gradient magnitude
        ``sqrt((Gx**2 + Gy**2) / 2) / 4``, where ``Gx`` and ``Gy`` are the responses to the
        3 x 3 Sobel kernels (``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` and its transpose); the
        border is padded by repeating the edge pixel (scipy's ``mode="reflect"``).
    ``"canny"``
        ``skimage.feature.canny(gray, sigma=sigma)`` with its default thresholds: 1 on the
        thin edge lines it finds, 0 elsewhere.
    ``"sobel_conv"``
        The activations of :func:`sanity_lib.models.one_conv_model` with ``init="sobel"``
        (padding ``"replicate"``), summed over its four channels before the sum pooling:
        ``relu(Gx) + relu(-Gx) + relu(Gy) + relu(-Gy) = |Gx| + |Gy|``, the L1 Sobel
        magnitude. Since ``L2 <= L1 <= sqrt(2) L2``, it lies between ``4 sqrt(2)`` and
        ``8`` times the ``"sobel"`` map: a conv layer with ReLUs *is* an edge detector.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        Pixels in [0, 1], N x C x H x W or N x H x W (not the model's preprocessed input:
        edges of the photo, not of its normalization).
    kind : {"sobel", "canny", "sobel_conv"}
    sigma : float, default 1.0
        Width of the Gaussian that Canny smooths with first; only used by ``"canny"``.

    Returns
    -------
    torch.Tensor
        float64, N x H x W, non-negative.

    Raises
    ------
    ValueError
        Unknown ``kind``, a ``sigma`` that is not positive, a batch of the wrong rank.

    Examples
    --------
    >>> step = torch.zeros(1, 1, 8, 8); step[..., 4:] = 1.0      # a vertical edge
    >>> edge_maps(step, "sobel")[0, 0]
    tensor([0.0000, 0.0000, 0.0000, 0.7071, 0.7071, 0.0000, 0.0000, 0.0000],
           dtype=torch.float64)
    >>> edge_maps(step, "sobel_conv")[0, 0]                      # 4 sqrt(2) times as large
    tensor([0., 0., 0., 4., 4., 0., 0., 0.], dtype=torch.float64)
    """
    (kind,) = check_choices("kind", kind, EDGE_DETECTORS)
    if (isinstance(sigma, bool) or not isinstance(sigma, numbers.Real)
            or not np.isfinite(sigma) or sigma <= 0):
        raise ValueError(f"sigma must be a positive number (Canny's smoothing), got {sigma!r}")
    gray = _as_images(images).mean(axis=1)
    if kind == "sobel":
        from skimage.filters import sobel

        out = np.stack([sobel(g) for g in gray])
    elif kind == "canny":
        from skimage.feature import canny

        out = np.stack([canny(g, sigma=float(sigma)) for g in gray]).astype(np.float64)
    else:
        out = _sobel_conv(gray)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------- comparison

def _reduce_channels(arr, metric):
    """One H x W map per image before the metric's own normalization: the signed channel
    sum for the diverging rank correlation, the sum of absolute values otherwise (the two
    give exactly :func:`sanity_lib.similarity.normalize`'s maps)."""
    return arr.sum(axis=1) if metric == "spearman_diverging" else np.abs(arr).sum(axis=1)


def edge_similarity(maps: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray],
                    images: torch.Tensor | np.ndarray, *,
                    detectors: str | Sequence[str] = ("sobel", "canny"),
                    metrics: str | Sequence[str] = ("spearman_abs",),
                    sigma: float = 1.0, pairing: str = "same") -> pd.DataFrame:
    """How much saliency maps look like the edge maps of their images, per image.

    Each saliency map is compared with the edge map (:func:`edge_maps`) of its own image by
    the paper's similarity metrics (:func:`sanity_lib.similarity.compare`): by default
    Spearman's rank correlation of the absolute-value maps, the paper's headline metric.
    A value near 1 says the map is large exactly where the detector finds edges; compare it
    with the value a random map gets (pass one, e.g. ``{"random": torch.randn_like(x)}``),
    the noise floor, and with the image itself (``{"image": x01}``), which tells how much of
    the resemblance any map that looks like the input would get.

    Parameters
    ----------
    maps : torch.Tensor, numpy.ndarray or dict of str to those
        Saliency maps, N x C x H x W (or N x H x W); a dict names several (e.g. one per
        method). Their channels are reduced as :func:`sanity_lib.similarity.normalize` does.
    images : torch.Tensor or numpy.ndarray
        The N images the maps explain, as pixels in [0, 1] (N x C x H x W or N x H x W),
        same H x W as the maps.
    detectors : str or sequence of str, default ("sobel", "canny")
        From :data:`EDGE_DETECTORS`.
    metrics : str or sequence of str, default ("spearman_abs",)
        From :data:`sanity_lib.similarity.METRICS`. ``"spearman_diverging"`` ranks the
        *signed* maps against the (non-negative) edge map.
    sigma : float, default 1.0
        Canny's smoothing, passed to :func:`edge_maps`.
    pairing : {"same", "mismatched"}, default "same"
        ``"mismatched"`` is the null: the map of image ``i`` against the edges of image
        ``i - k``, averaged over the offsets ``k`` of :func:`edge_agreement`'s mismatched
        null. A map that resembles edges whatever the image scores as high there.

    Returns
    -------
    pandas.DataFrame
        Tidy, one row per (method, detector, metric, image): columns ``method`` (the dict
        key, or ``"maps"`` for a single batch), ``detector``, ``metric``, ``image`` (the
        index in the batch, the map's) and ``value``. NaN where a map is constant.

    Raises
    ------
    ValueError
        Unknown detector or metric, maps and images of different sizes or counts.
    TypeError
        Maps or images that are not tensors or arrays.

    Examples
    --------
    >>> step = torch.zeros(2, 1, 16, 16); step[..., 8:] = 1.0
    >>> table = edge_similarity({"edges": edge_maps(step, "sobel"), "image": step}, step,
    ...                         detectors="sobel")
    >>> table.groupby("method")["value"].mean().round(2).to_dict()   # brightness is no edge
    {'edges': 1.0, 'image': 0.0}
    """
    from sanity_lib import similarity
    from sanity_lib.checks.result import mismatched_shifts

    detectors = check_choices("detectors", detectors, EDGE_DETECTORS)
    metrics = check_choices("metrics", metrics, similarity.METRICS)
    check_choice("pairing", pairing, PAIRINGS)
    pixels = _as_images(images)
    n = len(pixels)
    if pairing == "mismatched" and n < 2:
        raise ValueError("pairing='mismatched' holds each map against the edges of another "
                         "image: it needs at least two images, got one")
    edges = {d: edge_maps(pixels, d, sigma=sigma).numpy() for d in detectors}
    shifts = [0] if pairing == "same" else mismatched_shifts(n)
    parts = []
    for name, arr in _maps_by_name(maps, pixels).items():
        for metric in metrics:
            reduced = _reduce_channels(arr, metric)
            for detector, edge in edges.items():
                per_shift = np.stack([similarity.compare(reduced, np.roll(edge, k, axis=0),
                                                         metric)[metric].numpy()
                                      for k in shifts])
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
                    value = np.nanmean(per_shift, axis=0)
                parts.append(pd.DataFrame({
                    "method": name, "detector": detector, "metric": metric,
                    "image": np.arange(len(pixels)), "value": value,
                }))
    return pd.concat(parts, ignore_index=True)[_TABLE_COLUMNS]


# ----------------------------------------------------------------------------- edges vs edges

def _unit_maps(arr, percentile):
    """One abs map per image in [0, 1]: the channel sum of |map| (``_reduce_channels``)
    normalized as :func:`sanity_lib.similarity.normalize` does for the abs metrics."""
    from sanity_lib import similarity

    reduced = _reduce_channels(arr, "spearman_abs")
    return similarity.normalize(reduced, "abs", percentile=percentile).numpy()


def _unit_scale(edge):
    """Each N x H x W edge map divided by its maximum (all-zero maps stay zero)."""
    top = edge.reshape(edge.shape[0], -1).max(axis=1)[:, None, None]
    return np.divide(edge, top, out=np.zeros_like(edge), where=top > 0)


def _edge_features(unit, measures, ppc, sobel=None, canny=None):
    """What the measures need of N x H x W maps in [0, 1], computed once per batch.

    The map side passes neither ``sobel`` nor ``canny`` (its Sobel magnitude is computed,
    and its pixels ranked for the AUC); the image side passes its Sobel magnitude and, for
    ``"canny_auc"``, its Canny edges."""
    from skimage.filters import sobel as sobel_filter

    from sanity_lib import similarity

    if sobel is None:
        sobel = np.stack([sobel_filter(u) for u in unit])
    n = len(unit)
    # A flat patch gets a Sobel magnitude of 1e-17 or so from rounding, not 0; ranked, that
    # noise would break the ties that make two flat patches agree. Edges weaker than 1e-12
    # of the map's strongest are taken as none.
    top = sobel.reshape(n, -1).max(axis=1)[:, None, None]
    sobel = np.where(sobel > 1e-12 * top, sobel, 0.0)
    feats = {"unit": unit, "sobel": sobel, "flat": np.ptp(sobel.reshape(n, -1), axis=1) == 0}
    if "ssim" in measures:
        feats["sobel01"] = _unit_scale(sobel)
    if "hog" in measures:
        # The library's one HOG (the "hog" metric's settings); it checks the size too.
        feats["hog"] = similarity._hog_np(unit, ppc, 9, 3, "L2-Hys")
    if "canny_auc" in measures and canny is not None:
        feats["canny"] = canny.reshape(n, -1) > 0
    elif "canny_auc" in measures:
        from scipy.stats import rankdata

        # average ranks: pixels of equal value (the clipped top 1 %, flat patches) tie
        feats["ranks"] = rankdata(unit.reshape(n, -1), method="average", axis=1)
    return feats


def _roll(feats, k):
    """The image features of image i - k at position i (``np.roll``, as the mismatched null
    of :meth:`SanityCheckResult.null_level` pairs them)."""
    return {key: np.roll(value, k, axis=0) for key, value in feats.items()}


def _canny_auc(ranks, edges):
    """ROC AUC of the map at Canny edge pixels against the rest, from the map's ranks:
    Mann-Whitney U / (n1 n0), U = (sum of the edge pixels' ranks) - n1 (n1 + 1) / 2."""
    n1 = edges.sum(axis=1).astype(np.float64)
    n0 = edges.shape[1] - n1
    u = np.where(edges, ranks, 0.0).sum(axis=1) - n1 * (n1 + 1) / 2
    out = np.full(len(n1), np.nan)
    ok = (n1 > 0) & (n0 > 0)  # no edge pixel, or only edges: nothing to rank against
    out[ok] = u[ok] / (n1[ok] * n0[ok])
    return out


def _agreement(m, e, measure, win_size):
    """One measure between map features ``m`` and image features ``e``, pair by pair."""
    from sanity_lib import similarity

    n = len(m["unit"])
    if measure == "sobel_edges":
        value = similarity._spearman_np(m["sobel"].reshape(n, -1), e["sobel"].reshape(n, -1))[0]
    elif measure == "hog":
        num = (m["hog"] * e["hog"]).sum(axis=1)
        den = np.linalg.norm(m["hog"], axis=1) * np.linalg.norm(e["hog"], axis=1)
        value = np.divide(num, den, out=np.full(n, np.nan), where=den > 0)
    elif measure == "ssim":
        value = similarity._ssim_np(m["sobel01"], e["sobel01"], win_size, False, 1.0, {})
    else:
        value = _canny_auc(m["ranks"], e["canny"])
    # No edge at all in the map (a constant map) or in the image: nothing to agree on.
    return np.where(m["flat"] | e["flat"], np.nan, value)


def edge_agreement(maps: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray],
                   images: torch.Tensor | np.ndarray, *,
                   measures: str | Sequence[str] = EDGE_MEASURES,
                   pairing: str | Sequence[str] = "same",
                   sigma: float = 1.0, percentile: float = 99.0,
                   pixels_per_cell: int | tuple[int, int] | None = None,
                   win_size: int = 5) -> pd.DataFrame:
    """Do the *edges* of saliency maps fall on the edges of their images? Four measures.

    :func:`edge_similarity` ranks ``|map|`` against the Sobel magnitude of the image: it
    asks whether the map is *large* where the image has edges. A map made of flat patches
    whose boundaries follow the image's edges (a posterized, blotchy map) is not large there
    and scores low, although it is plainly shaped by the edges. These measures compare
    edges with edges instead. Each map is reduced to one H x W map per image and normalized
    as the abs metrics do (sum of ``|map|`` over channels, :func:`sanity_lib.similarity.normalize`
    with ``mode="abs"``: in [0, 1]); each image is made grey (mean of its channels).

    ``"sobel_edges"``
        Spearman's rank correlation of ``skimage.filters.sobel`` of the normalized map with
        the Sobel magnitude of the image (:func:`edge_maps` ``"sobel"``).
    ``"hog"``
        Cosine similarity of the ``skimage.feature.hog`` descriptors of the normalized map
        and of the grey image, with the library's HOG settings (those of the ``"hog"``
        metric): 9 orientations, blocks of 3 x 3 cells, ``"L2-Hys"``, and cells of
        :func:`sanity_lib.similarity.auto_pixels_per_cell` pixels, which scale with the
        image: 16 x 16 (the paper's) from 112 pixels a side up (14 x 14 cells at 224), the
        shorter side // 7 below (4 x 4 at 28, 7 x 7 cells). HOG counts are non-negative, so
        the cosine of unrelated images is well above 0: read it against the mismatched null.
    ``"ssim"``
        ``skimage.metrics.structural_similarity`` of the two Sobel magnitudes, each divided
        by its own maximum (so in [0, 1], 0 still meaning "no edge" and only the edges'
        relative strength compared), with ``data_range=1`` and the paper's uniform
        ``win_size`` x ``win_size`` window (5 x 5), as the ``"ssim"`` metric uses.
    ``"canny_auc"``
        ``skimage.feature.canny(gray, sigma)`` (:func:`edge_maps` ``"canny"``) is binary:
        a rank correlation with it is mostly ties. Instead, the ROC AUC that the normalized
        map is larger at a Canny edge pixel than at a non-edge pixel, ties counting one half:
        the Mann-Whitney ``U / (n1 n0)``. 0.5 is chance, 1 every edge pixel above every other.
        Like :func:`edge_similarity` it asks whether the map is *large* at the edges, so the
        posterized map of the example, dark on the image's bright squares, scores below 0.5.

    ``pairing="mismatched"`` is the null: the map of image ``i`` against the edges of image
    ``i - k`` (mod N), averaged over the same offsets ``k`` as the mismatched-image null of
    :meth:`sanity_lib.checks.result.SanityCheckResult.null_level` (every offset for up to 17
    images, 16 evenly spread ones for more). A map that merely looks edge-like, whatever the
    image, scores as high there as with its own image.

    Parameters
    ----------
    maps : torch.Tensor, numpy.ndarray or dict of str to those
        Saliency maps, N x C x H x W (or N x H x W); a dict names several (e.g. one per method).
    images : torch.Tensor or numpy.ndarray
        The N images the maps explain, as pixels in [0, 1] (not the model's preprocessed
        input), N x C x H x W or N x H x W, at the maps' H x W; at least 5 pixels a side.
    measures : str or sequence of str, default all of :data:`EDGE_MEASURES`
    pairing : {"same", "mismatched"} or a sequence of both, default "same"
        ``"mismatched"`` needs at least two images.
    sigma : float, default 1.0
        Canny's smoothing.
    percentile : float, default 99
        Passed to :func:`sanity_lib.similarity.normalize`.
    pixels_per_cell : int, (int, int) or None, default None
        HOG cell size; None scales it with the image as described above.
    win_size : int, default 5
        SSIM's window: odd, from 3 to the shorter side.

    Returns
    -------
    pandas.DataFrame
        Tidy, one row per (method, measure, pairing, image): columns ``method`` (the dict
        key, or ``"maps"`` for a single batch), ``measure``, ``pairing``, ``image`` (the
        map's index in the batch) and ``value`` (for ``"mismatched"``, the mean over the
        offsets). NaN where the map or the image is constant (no edge to compare) and, for
        ``"canny_auc"``, where Canny finds no edge pixel or only edges; one
        :class:`sanity_lib.similarity.ConstantMapWarning` per call then says how many.

    Raises
    ------
    ValueError
        Unknown measure or pairing, maps and images of different sizes or counts, images
        outside [0, 1], ``"mismatched"`` with one image, images too small for HOG or SSIM.
    TypeError
        Maps or images that are not tensors or arrays.

    Examples
    --------
    >>> x = torch.zeros(2, 1, 32, 32); x[0, :, 8:20, 8:20] = 1.0; x[1, :, 12:28, 4:16] = 1.0
    >>> patches = 1.0 - 0.5 * x            # flat patches, bright where the image is dark
    >>> edge_similarity(patches, x, detectors="sobel")["value"].round(2).tolist()  # |map|
    [-0.3, -0.25]
    >>> t = edge_agreement(patches, x, measures=["sobel_edges", "ssim"],
    ...                    pairing=["same", "mismatched"])
    >>> means = t.groupby(["pairing", "measure"])["value"].mean().round(2)
    >>> means["same"].to_dict(), means["mismatched"].to_dict()  # edges agree; the null
    ({'sobel_edges': 1.0, 'ssim': 1.0}, {'sobel_edges': -0.03, 'ssim': 0.39})
    """
    from sanity_lib import similarity
    from sanity_lib.checks.result import mismatched_shifts

    measures = check_choices("measures", measures, EDGE_MEASURES)
    pairings = check_choices("pairing", pairing, PAIRINGS)
    sigma = check_real("sigma", sigma, 0.0, inclusive=False, why="Canny's smoothing")
    pixels = _as_images(images)
    n, _, h, w = pixels.shape
    if pixels.min() < -1e-6 or pixels.max() > 1 + 1e-6:
        raise ValueError(
            f"images must be pixels in [0, 1], got values from {pixels.min():.3g} to "
            f"{pixels.max():.3g}; pass the photos (e.g. sl.data.sample_images(224)), not the "
            "model's preprocessed input"
        )
    if "mismatched" in pairings and n < 2:
        raise ValueError("pairing='mismatched' holds each map against the edges of another "
                         "image: it needs at least two images, got one")
    if min(h, w) < 5:
        raise ValueError(f"images of {h} x {w} pixels are too small to compare edges; "
                         "they need at least 5 pixels a side")
    batches = _maps_by_name(maps, pixels)
    gray = pixels.mean(axis=1)
    canny = edge_maps(pixels, "canny", sigma=sigma).numpy() if "canny_auc" in measures else None
    image_feats = _edge_features(gray, measures, pixels_per_cell,
                                 sobel=edge_maps(pixels, "sobel").numpy(), canny=canny)
    shifts = mismatched_shifts(n)
    parts = []
    for name, arr in batches.items():
        map_feats = _edge_features(_unit_maps(arr, percentile), measures, pixels_per_cell)
        for kind in pairings:
            for measure in measures:
                if kind == "same":
                    value = _agreement(map_feats, image_feats, measure, win_size)
                else:
                    per_shift = np.stack([_agreement(map_feats, _roll(image_feats, int(k)),
                                                     measure, win_size) for k in shifts])
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
                        value = np.nanmean(per_shift, axis=0)
                parts.append(pd.DataFrame({"method": name, "measure": measure, "pairing": kind,
                                           "image": np.arange(n), "value": value}))
    table = pd.concat(parts, ignore_index=True)[_AGREEMENT_COLUMNS]
    missing = table[table["value"].isna()]
    if len(missing):
        counts = missing.groupby("measure", sort=False).size()
        warnings.warn(
            f"edge_agreement: {len(missing)} of {len(table)} values are NaN (per measure: "
            f"{', '.join(f'{k}: {v}' for k, v in counts.items())}): a constant map or image "
            "has no edge to compare and, for canny_auc, Canny found no edge pixel or only "
            "edges; leave them out (the table's NaN) or look at those maps",
            similarity.ConstantMapWarning, stacklevel=2,
        )
    return table


# ----------------------------------------------------------------------------- x * random

def input_times_random_correlation(x: torch.Tensor | np.ndarray, *, n_pairs: int = 5,
                                   seed: int = 0) -> pd.DataFrame:
    """Rank correlation of ``x * u`` with ``x * v`` for independent random ``u`` and ``v``.

    The paper's section 5 argument, measured: for each of ``n_pairs`` pairs, ``u`` and ``v``
    are drawn independently from the standard normal distribution, with the shape of ``x``
    and from a ``torch.Generator`` seeded by ``(seed, pair)``. The maps ``x * u`` and
    ``x * v`` share nothing but ``x``; the table gives their Spearman rank correlation per
    image, in absolute value (``spearman_abs``) and signed (``spearman_diverging``), next to
    the same numbers for ``u`` against ``v`` (the noise floor, about 0).

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray
        N x C x H x W (or N x H x W) inputs, in whatever space the maps multiply them in
        (e.g. a model's preprocessed input).
    n_pairs : int, default 5
        Independent (u, v) pairs per image.
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns ``pair``, ``image``, ``maps`` (``"x*u vs x*v"`` or ``"u vs v"``),
        ``metric`` (``"spearman_abs"``, ``"spearman_diverging"``) and ``value``.

    Notes
    -----
    Why the abs correlation stays high: the rank of ``|x_i u_i|`` is the rank of
    ``log|x_i| + log|u_i|``, and the two maps share the first term. The more the magnitude
    of the input varies from pixel to pixel compared with ``log|u|`` (standard deviation
    about 1.1), the higher the correlation; MNIST digits, whose background is exactly 0
    (a tie at the bottom of both maps), come close to 1. The signed maps have independent
    signs, so their correlation is about 0.

    Examples
    --------
    >>> x = torch.zeros(4, 1, 28, 28); x[:, :, 8:20, 8:20] = 1.0    # a bright square
    >>> table = input_times_random_correlation(x, n_pairs=2)
    >>> means = table.groupby(["maps", "metric"])["value"].mean()
    >>> bool(means["x*u vs x*v", "spearman_abs"] > 0.4), bool(abs(means["u vs v",
    ...      "spearman_abs"]) < 0.1)
    (True, True)
    """
    from sanity_lib import similarity

    arr = _as_images(x, "x")
    n_pairs = check_int("n_pairs", n_pairs, 1)
    seed = check_int("seed", seed, 0)
    xt = torch.from_numpy(arr)
    n = arr.shape[0]
    parts = []
    for pair in range(n_pairs):
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, pair])
                                                .generate_state(1)[0]))
        u = torch.randn(xt.shape, generator=gen, dtype=torch.float64)
        v = torch.randn(xt.shape, generator=gen, dtype=torch.float64)
        for label, (a, b) in zip(_RANDOM_PAIRS, ((xt * u, xt * v), (u, v))):
            scores = similarity.compare(a, b, ("spearman_abs", "spearman_diverging"))
            for metric, value in scores.items():
                parts.append(pd.DataFrame({"pair": pair, "image": np.arange(n), "maps": label,
                                           "metric": metric, "value": value.numpy()}))
    return pd.concat(parts, ignore_index=True)[_RANDOM_COLUMNS]


# ----------------------------------------------------------------------------- figure

def plot_edge_similarity(table: pd.DataFrame, *, detector: str = "sobel",
                         metric: str = "spearman_abs", groups: str = "model",
                         floor: float | None = None, ax: Axes | None = None,
                         methods: Sequence[str] | None = None,
                         title: str | None = None,
                         mismatched: pd.DataFrame | None = None) -> Figure:
    """Edge similarity per method, one dot per image, grouped (coloured) by model.

    Each group's bar is the mean over the images, its whisker the 95 % bootstrap interval of
    the mean; a hollow diamond marks the mismatched-image null when ``mismatched`` is given.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`edge_similarity`, with an extra column named by ``groups`` (e.g. added
        with ``table.assign(model="random conv")`` before concatenating several tables); if
        it has no such column, all rows form one group.
    detector, metric : str
        Which rows to draw.
    groups : str, default "model"
        The column whose values get one colour each, in order of appearance.
    floor : float, optional
        Draw a dashed line at this value (e.g. the mean of a random map's rows).
    ax : matplotlib Axes, optional
    methods : list of str, optional
        Methods (x positions) in the order to draw; default all, in order of appearance.
    title : str, optional
    mismatched : pandas.DataFrame, optional
        The same table computed with ``pairing="mismatched"`` (:func:`edge_similarity`):
        its mean per group and method is drawn as a hollow diamond.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> x = torch.rand(3, 1, 16, 16)
    >>> fig = plot_edge_similarity(edge_similarity({"image": x}, x),
    ...                            mismatched=edge_similarity({"image": x}, x,
    ...                                                       pairing="mismatched"))
    """
    import matplotlib.pyplot as plt

    from sanity_lib.checks.statistics import bootstrap_interval
    from sanity_lib.plotting import METRIC_LABELS, _label

    needed = set(_TABLE_COLUMNS)
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise TypeError(f"table must be a DataFrame with the columns {sorted(needed)} "
                        "(what edge_similarity returns)")
    rows = table[(table["detector"] == detector) & (table["metric"] == metric)]
    if rows.empty:
        raise ValueError(
            f"table has no rows for detector={detector!r} and metric={metric!r}; it has "
            f"detectors {sorted(table['detector'].unique())} and metrics "
            f"{sorted(table['metric'].unique())}"
        )
    if groups not in rows.columns:
        rows = rows.assign(**{groups: ""})
    null_rows = None
    if mismatched is not None:
        if not isinstance(mismatched, pd.DataFrame) or not needed <= set(mismatched.columns):
            raise TypeError("mismatched must be a DataFrame like table (edge_similarity(..., "
                            "pairing='mismatched'))")
        null_rows = mismatched[(mismatched["detector"] == detector)
                               & (mismatched["metric"] == metric)]
        if groups not in null_rows.columns:
            null_rows = null_rows.assign(**{groups: ""})
    group_names = list(dict.fromkeys(rows[groups]))
    if methods is None:
        methods = list(dict.fromkeys(rows["method"]))
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(methods) + 2), 4),
                               layout="constrained")
    else:
        fig = ax.figure
    width = 0.8 / max(1, len(group_names))
    rng = np.random.default_rng(0)  # jitter only; fixed so two builds draw the same figure
    labelled = set()
    for i, method in enumerate(methods):
        at_method = rows[rows["method"] == method]
        # the groups that have this method, centred on its tick (references stand alone)
        present = [g for g in group_names if (at_method[groups] == g).any()]
        for k, group in enumerate(present):
            j = group_names.index(group)
            values = at_method.loc[at_method[groups] == group, "value"].dropna().to_numpy()
            if values.size == 0:
                continue
            color = f"C{j}"
            centre = i + width * (k + 0.5 - len(present) / 2)
            jitter = rng.uniform(-0.3, 0.3, values.size) * width
            ax.scatter(centre + jitter, values, s=9, color=color, alpha=0.45, linewidths=0)
            ax.hlines(values.mean(), centre - 0.4 * width, centre + 0.4 * width, color=color,
                      lw=2.5, label=None if group in labelled else group)
            labelled.add(group)
            _, low, high = bootstrap_interval(values)
            ax.vlines(centre, low, high, color=color, lw=1.3)
            if null_rows is not None:
                null = null_rows.loc[(null_rows["method"] == method)
                                     & (null_rows[groups] == group), "value"].dropna()
                if len(null):
                    ax.plot(centre, null.mean(), marker="D", ms=5, mfc="white", mec=color,
                            mew=1.3, ls="none", label=None if "null" in labelled
                            else "mismatched-image null")
                    labelled.add("null")
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label="noise floor")
    ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels([_label(m) for m in methods], rotation=20, ha="right")
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)}\nwith the {DETECTOR_LABELS[detector]}"
                  if detector in DETECTOR_LABELS else METRIC_LABELS.get(metric, metric))
    handles, labels = ax.get_legend_handles_labels()
    if any(labels):
        seen = dict(zip(labels, handles))
        order = [g for g in group_names if g in seen] + [k for k in seen if k not in group_names]
        ax.legend([seen[k] for k in order], order, fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0),
                  title="bar: mean, whisker:\n95 % interval; dots: images",
                  title_fontsize=8)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig
