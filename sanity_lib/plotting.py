"""Figures of the sanity checks: similarity curves and map grids, as in the paper.

Plain data in, a matplotlib ``Figure`` out. :class:`sanity_lib.checks.SanityCheckResult`
calls these for you (``result.plot_curves()``, ``result.plot_grid()``); call them directly
to draw a table you built or filtered yourself.

Figures are created through ``matplotlib.pyplot`` (so they show in a notebook at the end of
the cell) and never shown or saved here. In a notebook, end the line with ``;`` or assign the
figure (``fig = result.plot_curves()``) so it is not displayed twice; in a script,
``fig.savefig(...)``.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from sanity_lib.saliency._registry import REGISTRY, method_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_curves", "plot_grid", "plot_maps", "METRIC_LABELS", "METHOD_LABELS"]

#: Axis labels of the similarity metrics.
METRIC_LABELS = {
    "spearman_abs": "Spearman rank correlation (absolute value)",
    "spearman_diverging": "Spearman rank correlation (signed)",
    "ssim": "SSIM",
    "hog": "HOG feature correlation",
}
#: How the built-in methods are written in legends and row labels (from the method registry;
#: figures ask the registry itself, so a method registered later gets its label too).
METHOD_LABELS = {name: spec.label for name, spec in REGISTRY.items()}
BANDS = ("ci", "std", "iqr", None)
_ABS_CMAP = "gray"
_DIVERGING_CMAP = "RdBu_r"


def _label(name: str) -> str:
    return method_label(name)


def _check_table(table):
    needed = ["method", "step", "image", "metric", "value"]
    if not isinstance(table, pd.DataFrame) or any(c not in table.columns for c in needed):
        raise TypeError(f"table must be a pandas DataFrame with the columns {needed} "
                        "(SanityCheckResult.table)")


def _pick_methods(available, methods, what):
    if methods is None:
        return list(available)
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    unknown = [m for m in methods if m not in available]
    if unknown or not methods:
        raise ValueError(f"methods={unknown or methods!r} not in this {what}; it holds "
                         f"{list(available)}")
    return methods


def _band(values: np.ndarray, band):
    """values: steps x images -> (low, high) per step, NaN left out. Call with warnings off."""
    if band == "ci":
        from sanity_lib.checks.statistics import bootstrap_interval

        bounds = np.array([bootstrap_interval(row)[1:] for row in values]).reshape(-1, 2)
        return bounds[:, 0], bounds[:, 1]
    if band == "std":
        mean = np.nanmean(values, axis=1)
        count = np.sum(~np.isnan(values), axis=1)
        std = np.nanstd(values, axis=1, ddof=1) if values.shape[1] > 1 else np.zeros(len(mean))
        std = np.where(count > 1, std, 0.0)
        return mean - std, mean + std
    return np.nanpercentile(values, 25, axis=1), np.nanpercentile(values, 75, axis=1)


def plot_curves(table: pd.DataFrame, layers: Sequence[str],
                metric: str | Sequence[str] = "spearman_abs", *,
                noise_floor: Mapping[str, float] | None = None,
                ax: Axes | Sequence[Axes] | None = None, band: str | None = "ci",
                methods: Sequence[str] | None = None, title: str | None = None,
                xlabel: str = "step",
                nulls: Mapping[str, Mapping[str, float]] | None = None,
                method_nulls: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
                ) -> Figure:
    """Similarity to the original map along the randomization steps (paper, Figs. 2-3).

    For each method, the mean over images of ``metric`` at every step is drawn as a line
    with markers, with a shaded band: ``band="ci"`` is the 95% bootstrap interval of the
    mean over images (how well the mean is known), ``"std"`` mean +- one sample standard
    deviation and ``"iqr"`` the interquartile range (25th to 75th percentile; both show how
    the images spread), None none. NaN values (constant maps) are left out. The x axis shows
    ``layers`` in randomization order, starting at "original", where every curve is 1 (a map
    is identical to itself). A dashed grey line marks the noise floor of the metric when
    given, dotted lines the other nulls of ``nulls``, and a null that differs by method
    (``method_nulls``) is one short dash per method, in its colour, right of the last step.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``method, step, image, metric, value`` (``SanityCheckResult.table``), steps
        numbered from 1.
    layers : list of str
        The step names, ``layers[0]`` the original.
    metric : str or list of str, default "spearman_abs"
        One panel per metric.
    noise_floor : dict of str to float, optional
    ax : matplotlib Axes or sequence of them, optional
        One per metric; by default a new figure with one panel per metric.
    band : {"ci", "std", "iqr", None}, default "ci"
    methods : list of str, optional
        Subset and order of the methods; default all, in table order.
    title : str, optional
        Panel title; the metric is added when there are several panels.
    xlabel : str, default "step"
    nulls : dict of str to dict of str to float, optional
        More reference levels to draw: ``{label: {metric: level}}``, e.g. the input-only
        level (:meth:`SanityCheckResult.null_level`).
    method_nulls : dict of str to dict of str to dict of str to float, optional
        Nulls with one level per method: ``{label: {metric: {method: level}}}``, e.g. the
        mismatched-image null.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> table = pd.DataFrame({"method": "gradient", "step": [1, 1, 2, 2], "layer": "",
    ...                       "image": [0, 1, 0, 1], "metric": "ssim",
    ...                       "value": [0.5, 0.7, 0.1, 0.2]})
    >>> fig = plot_curves(table, ["original", "logits", "fc1"], metric="ssim",
    ...                   noise_floor={"ssim": 0.0})
    >>> len(fig.axes)
    1
    """
    import matplotlib.pyplot as plt

    _check_table(table)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    present = list(dict.fromkeys(table["metric"]))
    unknown = [m for m in metrics if m not in present]
    if unknown or not metrics:
        raise ValueError(f"metric={unknown or metrics!r} not in the table; it holds {present}")
    if band not in BANDS:
        raise ValueError(f"band={band!r} is not known; choose 'ci', 'std', 'iqr' or None")
    methods = _pick_methods(list(dict.fromkeys(table["method"])), methods, "table")
    layers = [str(name) for name in layers]
    n_steps = len(layers) - 1
    if n_steps < 1 or int(table["step"].max()) > n_steps:
        raise ValueError(f"layers ({len(layers)} names) must name step 0 (the original) and "
                         f"every step in the table (up to {int(table['step'].max())})")

    if ax is None:
        width = max(5.0, 0.5 * len(layers) + 3.0)
        fig, axes = plt.subplots(1, len(metrics), figsize=(width * len(metrics), 4.2),
                                 squeeze=False, layout="constrained")
        axes = list(axes[0])
    else:
        axes = [ax] if not isinstance(ax, (list, tuple, np.ndarray)) else list(np.ravel(ax))
        if len(axes) != len(metrics):
            raise ValueError(f"ax holds {len(axes)} Axes but {len(metrics)} metrics were asked "
                             "for; pass one Axes per metric")
        fig = axes[0].figure

    steps = np.arange(len(layers))
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for panel, name in zip(axes, metrics):
        rows = table[table["metric"] == name]
        lowest = 0.0
        for i, method in enumerate(methods):
            sub = rows[rows["method"] == method]
            if sub.empty:
                continue
            wide = sub.pivot_table(index="step", columns="image", values="value",
                                   aggfunc="first", dropna=False)
            wide = wide.reindex(range(1, n_steps + 1))
            values = wide.to_numpy(dtype=np.float64)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps
                mean = np.concatenate([[1.0], np.nanmean(values, axis=1)])
                color = colors[i % len(colors)]
                panel.plot(steps, mean, marker="o", markersize=4, lw=1.8, color=color,
                           label=_label(method))
                if band is not None:
                    low, high = _band(values, band)
                    panel.fill_between(steps, np.concatenate([[1.0], low]),
                                       np.concatenate([[1.0], high]), color=color, alpha=0.18,
                                       lw=0)
                    lowest = min(lowest, np.nanmin(np.concatenate([[1.0], low])))
                lowest = min(lowest, np.nanmin(mean))
        if noise_floor is not None and name in noise_floor:
            floor = float(noise_floor[name])
            panel.axhline(floor, ls="--", lw=1.2, color="0.45",
                          label="noise floor" + _level_text(floor, len(metrics)))
        for j, (label, levels) in enumerate((nulls or {}).items()):
            if name in levels and np.isfinite(levels[name]):
                panel.axhline(float(levels[name]), ls=":", lw=1.4, color=f"{0.25 + 0.15 * j}",
                              label=label + _level_text(float(levels[name]), len(metrics)))
                lowest = min(lowest, float(levels[name]))
        right = n_steps + 0.3
        for j, (label, by_metric) in enumerate((method_nulls or {}).items()):
            levels = by_metric.get(name, {})
            at = n_steps + 0.35 + 0.3 * j
            for i, method in enumerate(methods):
                level = levels.get(method)
                if level is not None and np.isfinite(level):
                    panel.plot([at], [level], marker="_", markersize=14, mew=2.6,
                               color=colors[i % len(colors)], ls="none")
                    lowest = min(lowest, float(level))
            if levels:
                # One legend entry per null: the colour says which method a dash belongs to.
                panel.plot([], [], marker="_", markersize=12, mew=2.6, color="0.3",
                           ls="none", label=f"{label}\n(dashes at right, in each method's colour)")
                right = at + 0.25
        panel.set_xticks(steps)
        panel.set_xticklabels(layers, rotation=45, ha="right", rotation_mode="anchor")
        panel.set_xlim(-0.3, right)
        panel.set_ylim(min(-0.1, lowest - 0.05), 1.05)
        panel.set_ylabel(METRIC_LABELS.get(name, name))
        panel.set_xlabel(xlabel)
        panel.grid(True, alpha=0.3)
        if title and len(metrics) > 1:
            panel.set_title(f"{title}\n{METRIC_LABELS.get(name, name)}", fontsize=10)
        elif title:
            panel.set_title(title)
    # One legend, outside the last panel: inside, it would hide curves and the null dashes.
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                    framealpha=0.85, borderaxespad=0.0)
    return fig


def _level_text(level: float, panels: int) -> str:
    """' (0.42)' for a legend entry; nothing when the one legend serves several panels,
    whose levels differ."""
    if panels > 1:
        return ""
    return f" ({0.0 if abs(level) < 0.005 else level:.2f})"


def _display_image(img: torch.Tensor) -> np.ndarray:
    """C x H x W model input -> H x W (x 3) in [0, 1] for display, by a per-image min-max
    rescale (this undoes any per-image affine preprocessing such as (x - 0.5) / 0.5)."""
    arr = img.detach().to("cpu", torch.float64).numpy()
    lo, hi = arr.min(), arr.max()
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if arr.shape[0] == 1:
        return arr[0]
    if arr.shape[0] == 3:
        return arr.transpose(1, 2, 0)
    return arr.mean(axis=0)


def _resolve_steps(steps, layers):
    if steps is None:
        return list(range(len(layers)))
    if isinstance(steps, (str, numbers.Integral)):
        steps = [steps]
    out = []
    for s in steps:
        if isinstance(s, str):
            if s not in layers:
                raise ValueError(f"steps entry {s!r} is not a layer of this result; layers are "
                                 f"{layers}")
            out.append(layers.index(s))
        elif isinstance(s, numbers.Integral) and not isinstance(s, bool) and 0 <= s < len(layers):
            out.append(int(s))
        else:
            raise ValueError(f"steps entry {s!r} must be a step number 0..{len(layers) - 1} or "
                             f"a layer name from {layers}")
    if not out:
        raise ValueError("steps is empty; pass at least one step")
    return out


def plot_grid(maps: Mapping[str, torch.Tensor], layers: Sequence[str], *, image: int = 0,
              mode: str = "abs", methods: Sequence[str] | None = None,
              steps: Sequence[int | str] | None = None, inputs: torch.Tensor | None = None,
              cmap: str | None = None, targets: torch.Tensor | None = None) -> Figure:
    """A grid of saliency maps of one image: methods in rows, steps in columns.

    Each map is normalized as the similarity metrics see it
    (:func:`sanity_lib.similarity.normalize`): ``mode="abs"`` to [0, 1], drawn with a
    sequential colormap (default ``"gray"``, as the paper); ``mode="diverging"`` to
    [-1, 1], drawn with a diverging colormap (default ``"RdBu_r"``, red positive, blue
    negative) on the symmetric range ``vmin=-1, vmax=1`` so white is exactly 0. The input
    image (min-max rescaled for display) comes first, in the top row; one colorbar serves
    all maps.

    Parameters
    ----------
    maps : dict of str to torch.Tensor
        Method -> ``(steps + 1) x N x C x H x W`` (``SanityCheckResult.maps``).
    layers : list of str
        Step names, index 0 the original.
    image : int, default 0
    mode : {"abs", "diverging"}, default "abs"
    methods : list of str, optional
        Rows; default all.
    steps : list of int or str, optional
        Columns as step numbers or layer names; default every step.
    inputs : torch.Tensor, optional
        N x C x H x W inputs; when given, the image is shown first.
    cmap : str, optional
    targets : torch.Tensor, optional
        ``(steps + 1) x N`` explained classes; shown under the column titles.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> maps = {"gradient": torch.randn(3, 2, 1, 28, 28)}
    >>> fig = plot_grid(maps, ["original", "logits", "fc1"], mode="diverging")
    >>> len(fig.axes)           # 3 maps and a colorbar
    4
    """
    import matplotlib.pyplot as plt

    from sanity_lib import similarity

    if not isinstance(maps, dict) or not maps:
        raise TypeError("maps must be a non-empty dict method -> tensor "
                        "(steps + 1) x N x C x H x W (SanityCheckResult.maps)")
    if mode not in ("abs", "diverging"):
        raise ValueError(f"mode={mode!r} is not known; choose 'abs' or 'diverging'")
    methods = _pick_methods(list(maps), methods, "result")
    layers = [str(name) for name in layers]
    steps = _resolve_steps(steps, layers)
    first = maps[methods[0]]
    n_images = first.shape[1]
    if (isinstance(image, bool) or not isinstance(image, numbers.Integral)
            or not 0 <= image < n_images):
        raise ValueError(f"image={image!r} must be an index 0..{n_images - 1}")
    for m in methods:
        if maps[m].dim() != 5 or maps[m].shape[0] != len(layers):
            raise ValueError(f"maps[{m!r}] must be (steps + 1) x N x C x H x W with "
                             f"{len(layers)} steps, got shape {tuple(maps[m].shape)}")

    if mode == "abs":
        cmap, vmin, vmax = cmap or _ABS_CMAP, 0.0, 1.0
        bar_label = "normalized |saliency|"
    else:
        cmap, vmin, vmax = cmap or _DIVERGING_CMAP, -1.0, 1.0
        bar_label = "normalized saliency (signed)"

    offset = 1 if inputs is not None else 0
    nrows, ncols = len(methods), len(steps) + offset
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.55 * ncols + 1.2, 1.6 * nrows + 0.7),
                             squeeze=False, layout="constrained")
    if inputs is not None:
        shown = _display_image(inputs[image])
        axes[0, 0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        axes[0, 0].set_title("input", fontsize=9)
        axes[0, 0].set_xticks([])
        axes[0, 0].set_yticks([])
        for r in range(1, nrows):
            axes[r, 0].remove()
    picture = None
    map_axes = []
    for r, m in enumerate(methods):
        norm = similarity.normalize(maps[m][steps, image], mode)  # S x H x W
        for c, step in enumerate(steps):
            panel = axes[r, c + offset]
            picture = panel.imshow(norm[c].numpy(), cmap=cmap, vmin=vmin, vmax=vmax,
                                   interpolation="nearest")
            panel.set_xticks([])
            panel.set_yticks([])
            map_axes.append(panel)
            if r == 0:
                head = layers[step]
                if targets is not None:
                    head += f"\nclass {int(targets[step, image])}"
                panel.set_title(head, fontsize=9)
            if c == 0:
                panel.set_ylabel(_label(m), fontsize=9)
    fig.colorbar(picture, ax=map_axes, shrink=0.8, label=bar_label)
    return fig


_MAP_COLORS = {"abs": (_ABS_CMAP, 0.0, 1.0, "normalized |saliency|"),
               "diverging": (_DIVERGING_CMAP, -1.0, 1.0, "normalized saliency (signed)")}


def plot_maps(maps: Mapping[str, torch.Tensor | tuple[torch.Tensor, str]],
              inputs: torch.Tensor | None = None, *,
              columns: Sequence[tuple[int, str]] | None = None,
              modes: str | Sequence[str] = "abs", titles: Sequence[str] | None = None,
              row_labels: Mapping[str, str] | None = None, title: str | None = None,
              size: float = 1.7) -> Figure:
    """Saliency maps of several methods and images: one row per method, one column per view.

    Each column is an ``(image index, mode)`` pair, so one figure can show the paper's
    absolute-value view (``"abs"``: normalized to [0, 1], gray) next to the signed view
    (``"diverging"``: normalized to [-1, 1], red positive, blue negative, white 0), with
    :func:`sanity_lib.similarity.normalize` (the paper's normalizations). A row may fix its
    own view instead (``{"gradient (signed)": (maps, "diverging")}``), for figures that
    compare the views row by row. The inputs, when given, fill the top row; each view gets
    one colour bar.

    Parameters
    ----------
    maps : dict of str to tensor, or to (tensor, mode)
        Row name (a method, or any label) -> maps N x C x H x W (or N x H x W), batch first;
        with a mode, the row is drawn in that view in every column.
    inputs : tensor, optional
        N x C x H x W images in [0, 1] for the top row.
    columns : list of (int, str), optional
        The columns, as (image index, mode) pairs. Default: every image in each of ``modes``
        (every image once when every row fixes its own view).
    modes : str or sequence of str, default "abs"
        Used when ``columns`` is not given.
    titles : list of str, optional
        One per column; default the image index (and the mode when there are several).
    row_labels : dict of str to str, optional
        How to write a row's name; default the method registry's labels.
    title : str, optional
        A title over the whole figure.
    size : float, default 1.7
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import torch
    >>> from sanity_lib import models, saliency
    >>> model, x = models.mnist_cnn(), torch.rand(2, 1, 28, 28)
    >>> maps = {m: saliency.explain(model, x, m) for m in ("gradient", "guided_backprop")}
    >>> fig = plot_maps(maps, x, modes=("abs", "diverging"))
    >>> len(fig.axes)   # 3 rows x 4 columns, and two colour bars
    14
    >>> fig = plot_maps({"abs": (maps["gradient"], "abs"),
    ...                  "signed": (maps["gradient"], "diverging")}, x, title="Gradient")
    >>> len(fig.axes)   # 3 rows x 2 images, and two colour bars
    8
    """
    import matplotlib.pyplot as plt

    from sanity_lib import similarity
    from sanity_lib._validation import check_choice, check_choices, check_int, check_real

    views = ("abs", "diverging")
    if not isinstance(maps, dict) or not maps:
        raise TypeError("maps must be a non-empty dict: row name -> maps (N x C x H x W), e.g. "
                        "{'gradient': explain(model, x, 'gradient')}")
    rows, n = {}, None
    for name, value in maps.items():
        m, row_mode = value if isinstance(value, tuple) and len(value) == 2 else (value, None)
        if row_mode is not None:
            check_choice(f"the mode of row {name!r}", row_mode, views)
        if not isinstance(m, torch.Tensor) or m.dim() not in (3, 4) or m.shape[0] == 0:
            raise TypeError(f"maps[{name!r}] must be a tensor N x C x H x W or N x H x W, got "
                            f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m)}")
        if n is not None and m.shape[0] != n:
            raise ValueError(f"every entry of maps must hold the same images; maps[{name!r}] "
                             f"holds {m.shape[0]}, the others {n}")
        n = m.shape[0]
        rows[name] = (m.detach().cpu() if m.dim() == 4 else m.detach().cpu()[:, None], row_mode)
    by_row = all(mode is not None for _, mode in rows.values())
    if columns is None:
        modes = ("abs",) if by_row else check_choices("modes", modes, views)
        columns = [(i, mode) for i in range(n) for mode in modes]
        several = len(modes) > 1
        default_titles = [f"image {i}" + (f"\n{mode}" if several else "") for i, mode in columns]
    else:
        columns = list(columns)
        if not columns:
            raise ValueError("columns is empty; give (image index, mode) pairs, e.g. [(0, 'abs')]")
        for item in columns:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise TypeError(f"each column must be an (image index, mode) pair, got {item!r}")
            check_int("image index", item[0], minimum=0, maximum=n - 1)
            check_choice("mode", item[1], views)
        default_titles = [f"image {i}" for i, _ in columns]
    titles = default_titles if titles is None else list(titles)
    if len(titles) != len(columns):
        raise ValueError(f"titles holds {len(titles)} names for {len(columns)} columns")
    check_real("size", size, 0.0, inclusive=False)
    if inputs is not None:
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or inputs.shape[0] != n:
            raise ValueError(f"inputs must be a tensor N x C x H x W with the maps' {n} images")
    labels = dict(row_labels or {})

    top = 1 if inputs is not None else 0
    fig, axes = plt.subplots(len(rows) + top, len(columns), squeeze=False, layout="constrained",
                             figsize=(size * len(columns) + 0.8, size * (len(rows) + top) + 0.6))
    drawn = {}  # mode -> [(row, column, picture)]
    for j, ((i, column_mode), text) in enumerate(zip(columns, titles)):
        axes[0, j].set_title(text, fontsize=9)
        if inputs is not None:
            picture = inputs[i].detach().cpu().permute(1, 2, 0).squeeze(-1).numpy()
            axes[0, j].imshow(picture, cmap="gray")
        for r, (m, row_mode) in enumerate(rows.values(), start=top):
            mode = row_mode or column_mode
            cmap, low, high, _ = _MAP_COLORS[mode]
            shown = similarity.normalize(m[i:i + 1], mode)[0].numpy()
            drawn.setdefault(mode, []).append((r, j, axes[r, j].imshow(
                shown, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")))
    if inputs is not None:
        axes[0, 0].set_ylabel("input", fontsize=9)
    for r, name in enumerate(rows, start=top):
        axes[r, 0].set_ylabel(labels.get(name, _label(name)), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for mode, pictures in drawn.items():
        if by_row:  # a colour bar to the right of the rows drawn in this view
            where = sorted({r for r, _, _ in pictures})
            fig.colorbar(pictures[0][2], ax=[axes[r, -1] for r in where], location="right",
                         shrink=0.9, label=_MAP_COLORS[mode][3])
        else:       # under the columns drawn in this view
            where = sorted({j for _, j, _ in pictures})
            fig.colorbar(pictures[0][2], ax=[axes[-1, j] for j in where], location="bottom",
                         shrink=0.9, aspect=12 * len(where) ** 0.5, label=_MAP_COLORS[mode][3])
    if title:
        fig.suptitle(title)
    return fig
