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

The linear-model analysis needs no helper: :func:`sanity_lib.models.linear_model` and
:func:`sanity_lib.saliency.explain` are enough (see the book's chapter 5).

Images here are **pixels in [0, 1]** (``sl.data.sample_images``, ``sl.data.load_mnist``),
N x C x H x W or N x H x W; colour images become grey by averaging their channels.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from sanity_lib._validation import check_choices, check_int

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "EDGE_DETECTORS", "DETECTOR_LABELS",
    "edge_maps", "edge_similarity", "input_times_random_correlation", "plot_edge_similarity",
]

#: The edge detectors :func:`edge_maps` knows.
EDGE_DETECTORS = ("sobel", "canny", "sobel_conv")
#: How the detectors are written in figures.
DETECTOR_LABELS = {
    "sobel": "Sobel magnitude",
    "canny": "Canny edges",
    "sobel_conv": "Sobel-initialized conv layer",
}
_TABLE_COLUMNS = ["method", "detector", "metric", "image", "value"]
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
                    sigma: float = 1.0) -> pd.DataFrame:
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

    Returns
    -------
    pandas.DataFrame
        Tidy, one row per (method, detector, metric, image): columns ``method`` (the dict
        key, or ``"maps"`` for a single batch), ``detector``, ``metric``, ``image`` (the
        index in the batch) and ``value``. NaN where a map is constant.

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

    detectors = check_choices("detectors", detectors, EDGE_DETECTORS)
    metrics = check_choices("metrics", metrics, similarity.METRICS)
    named = maps if isinstance(maps, dict) else {"maps": maps}
    if not named:
        raise ValueError("maps is an empty dict; pass at least one batch of maps")
    pixels = _as_images(images)
    n, _, h, w = pixels.shape
    edges = {d: edge_maps(pixels, d, sigma=sigma).numpy() for d in detectors}
    parts = []
    for name, batch in named.items():
        arr = _as_images(batch, name=f"maps[{name!r}]" if isinstance(maps, dict) else "maps")
        if arr.shape[0] != n or arr.shape[2:] != (h, w):
            raise ValueError(
                f"maps {name!r} have shape {tuple(arr.shape)} but the images have "
                f"{tuple(pixels.shape)}; pass one map per image, at the image's resolution"
            )
        for metric in metrics:
            reduced = _reduce_channels(arr, metric)
            for detector, edge in edges.items():
                value = similarity.compare(reduced, edge, metric)[metric].numpy()
                parts.append(pd.DataFrame({
                    "method": name, "detector": detector, "metric": metric,
                    "image": np.arange(n), "value": value,
                }))
    return pd.concat(parts, ignore_index=True)[_TABLE_COLUMNS]


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
                         title: str | None = None) -> Figure:
    """Edge similarity per method, one dot per image, grouped (coloured) by model.

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

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> x = torch.rand(3, 1, 16, 16)
    >>> fig = plot_edge_similarity(edge_similarity({"image": x}, x))
    """
    import matplotlib.pyplot as plt

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
                  bbox_to_anchor=(1.01, 1.0), title="bar: mean\ndots: images",
                  title_fontsize=8)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig
