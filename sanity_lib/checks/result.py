"""What a sanity check returns: :class:`SanityCheckResult`, a table you can query.

The result keeps the tidy table of per-image similarities, the maps, the noise floor and the
full configuration, answers the questions the book and the graders ask (``mean``,
``curve``, ``first_step_below``, ``verdict``) and draws the paper's figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

__all__ = ["SanityCheckResult", "TABLE_COLUMNS"]

#: The columns of :attr:`SanityCheckResult.table`, in order.
TABLE_COLUMNS = ("method", "step", "layer", "image", "metric", "value")


@dataclass(repr=False)
class SanityCheckResult:
    """What a sanity check found: similarities, maps, and the figures of the paper.

    Attributes
    ----------
    table : pandas.DataFrame
        Tidy, columns ``method, step, layer, image, metric, value``: one row per method,
        randomized step (1, 2, ...), image and metric; ``value`` is the similarity (float64;
        NaN where a map was constant, e.g. an all-zero GradCAM). Step 0 (the original)
        has no rows.
    maps : dict of str to torch.Tensor
        Method -> tensor ``(steps + 1) x N x C x H x W`` on the CPU; index 0 is the
        original model's map (GradCAM: C = 1). Empty when run with ``keep_maps=False``.
    layers : list of str
        Step names: ``layers[0] == "original"``, then the randomized groups in order.
    noise_floor : dict of str to float
        Metric -> mean similarity of two independent Gaussian random maps of the maps'
        shape (:func:`sanity_lib.similarity.noise_floor`, 50 pairs): curves below it say
        nothing.
    targets : torch.Tensor
        int64, ``(steps + 1) x N``: the class explained at each step for each image.
    settings : dict
        The full configuration: test, mode, order, init, method settings, target, seeds,
        fingerprints of the model and the input, ...
    inputs : torch.Tensor or None
        The model input ``x`` (CPU), shown by :meth:`plot_grid`.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> model = sl.models.mnist_cnn()
    >>> x = torch.rand(2, 1, 28, 28)
    >>> result = sl.model_randomization_test(model, x, ["gradient"], progress=False)
    >>> result.layers
    ['original', 'logits', 'fc1', 'conv2', 'conv1']
    >>> len(result.table) == 1 * 4 * 2 * 4       # methods x steps x images x metrics
    True
    """

    table: pd.DataFrame
    maps: dict
    layers: list
    noise_floor: dict
    targets: torch.Tensor
    settings: dict
    inputs: torch.Tensor | None = field(default=None)

    # -- small conveniences
    @property
    def methods(self) -> list:
        """The methods compared, in the order given."""
        return list(self.settings["methods"])

    @property
    def metrics(self) -> list:
        """The similarity metrics in the table."""
        return list(self.settings["metrics"])

    @property
    def n_steps(self) -> int:
        """Number of randomized steps (``len(layers) - 1``)."""
        return len(self.layers) - 1

    def __repr__(self) -> str:
        test = self.settings.get("test", "?")
        what = self.settings.get("mode", "")
        n_images = int(self.targets.shape[1]) if self.targets.dim() == 2 else "?"
        return (f"SanityCheckResult(test={test!r}{', mode=' + repr(what) if what else ''}, "
                f"methods={self.methods}, layers={self.layers}, images={n_images}, "
                f"metrics={self.metrics}, rows={len(self.table)})")

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation and count of the similarity over images.

        Returns
        -------
        pandas.DataFrame
            Columns ``method, step, layer, metric, mean, std, n``; one row per method, step
            and metric, in the table's order. ``std`` is the sample standard deviation
            (ddof=1); ``n`` counts the images with a defined (non-NaN) value, and NaN values
            are left out of ``mean`` and ``std``.

        Examples
        --------
        >>> result.summary().columns.tolist()           # doctest: +SKIP
        ['method', 'step', 'layer', 'metric', 'mean', 'std', 'n']
        """
        grouped = self.table.groupby(["method", "step", "layer", "metric"], sort=False)["value"]
        out = grouped.agg(mean="mean", std="std", n="count").reset_index()
        return out

    def plot_curves(self, metric="spearman_abs", ax=None, band="std", methods=None):
        """The paper's Figures 2 and 3: similarity to the original map, step by step.

        One line per method (mean over images) with a shaded band (``band="std"``: mean +-
        one standard deviation over images; ``"iqr"``: the 25th to 75th percentile; None:
        no band), starting at 1 on "original"; a dashed line marks the noise floor.

        Parameters
        ----------
        metric : str or list of str, default "spearman_abs"
            One metric, or several for side-by-side panels.
        ax : matplotlib Axes or sequence of Axes, optional
            Where to draw (one per metric); by default a new figure.
        band : {"std", "iqr", None}
        methods : list of str, optional
            A subset of the methods, in the order to draw.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = result.plot_curves(["spearman_abs", "spearman_diverging"])  # doctest: +SKIP
        >>> fig.savefig("cascading.png")                                    # doctest: +SKIP
        """
        from sanity_lib import plotting

        return plotting.plot_curves(
            self.table, self.layers, metric=metric, noise_floor=self.noise_floor, ax=ax,
            band=band, methods=methods, title=_describe_test(self.settings),
            xlabel=_x_label(self.settings))

    def plot_grid(self, image=0, mode="abs", methods=None, steps=None, cmap=None):
        """The maps of one image: methods in rows, original then each step in columns.

        ``mode="abs"`` shows the paper's absolute-value maps (normalized to [0, 1],
        sequential colormap); ``"diverging"`` keeps the sign (normalized to [-1, 1],
        a diverging colormap centred on 0). The input image comes first.

        Parameters
        ----------
        image : int
            Which image of the batch.
        mode : {"abs", "diverging"}
        methods : list of str, optional
            Rows; default all methods.
        steps : list of int or str, optional
            Columns, as step numbers or layer names; default every step.
        cmap : str, optional
            Overrides the colormap ("gray" for abs, "RdBu_r" for diverging).

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = result.plot_grid(image=0, mode="diverging",
        ...                        steps=["original", "logits", "conv1"])  # doctest: +SKIP
        """
        from sanity_lib import plotting

        if not self.maps:
            raise ValueError("this result holds no maps (it was computed with keep_maps=False); "
                             "rerun the test with keep_maps=True to plot them")
        return plotting.plot_grid(self.maps, self.layers, image=image, mode=mode,
                                  methods=methods, steps=steps, inputs=self.inputs, cmap=cmap,
                                  targets=self.targets)

    # -- storage (plain tensors, lists and dicts, so it loads with weights_only=True)
    def _to_payload(self) -> dict:
        table = {
            "method": self.table["method"].astype(str).tolist(),
            "step": torch.tensor(self.table["step"].to_numpy(np.int64)),
            "layer": self.table["layer"].astype(str).tolist(),
            "image": torch.tensor(self.table["image"].to_numpy(np.int64)),
            "metric": self.table["metric"].astype(str).tolist(),
            "value": torch.tensor(self.table["value"].to_numpy(np.float64)),
        }
        return {"table": table, "maps": dict(self.maps), "layers": list(self.layers),
                "noise_floor": dict(self.noise_floor), "targets": self.targets,
                "settings": self.settings, "inputs": self.inputs}

    @classmethod
    def _from_payload(cls, payload: dict) -> "SanityCheckResult":
        t = payload["table"]
        table = _make_table(t["method"], t["step"].tolist(), t["layer"], t["image"].tolist(),
                            t["metric"], t["value"].numpy())
        return cls(table=table, maps=dict(payload["maps"]), layers=list(payload["layers"]),
                   noise_floor=dict(payload["noise_floor"]), targets=payload["targets"],
                   settings=payload["settings"], inputs=payload["inputs"])


def _make_table(method, step, layer, image, metric, value) -> pd.DataFrame:
    return pd.DataFrame({
        "method": pd.Series(list(method), dtype=str),
        "step": np.asarray(step, dtype=np.int64),
        "layer": pd.Series(list(layer), dtype=str),
        "image": np.asarray(image, dtype=np.int64),
        "metric": pd.Series(list(metric), dtype=str),
        "value": np.asarray(value, dtype=np.float64),
    }, columns=list(TABLE_COLUMNS))


def _describe_test(settings: dict) -> str:
    test = settings.get("test")
    if test == "data_randomization":
        return "Data randomization test"
    mode = settings.get("mode")
    order = str(settings.get("order", "top_down")).replace("_", "-")
    if mode == "cascading":
        return f"Cascading randomization ({order})"
    if mode == "independent":
        return "Independent randomization"
    if mode == "gaussian_noise":
        kind = "relative " if settings.get("relative") else ""
        return f"Gaussian noise, {kind}std {settings.get('std')} ({order})"
    return "Sanity check"


def _x_label(settings: dict) -> str:
    mode = settings.get("mode")
    if settings.get("test") == "data_randomization":
        return "model"
    if mode == "cascading":
        return "randomized down to layer (cumulative)"
    if mode == "independent":
        return "layer randomized (alone)"
    if mode == "gaussian_noise":
        return "noise added down to layer (cumulative)"
    return "step"
