"""Deletion and insertion curves: does a map rank first the pixels the model relies on?

The randomization tests ask whether a map depends on the model. Faithfulness measures ask
whether it ranks the pixels by how much the model's score depends on them (reviewer 3 asked
how the two relate). The classic pair (Samek et al. 2017; Petsiuk et al. 2018):

- **deletion**: remove pixels, most important first (set them to the baseline), and follow
  the explained class's probability. A faithful map makes it fall fast: a *small* area under
  the curve.
- **insertion**: start from the baseline image and put pixels back, most important first. A
  faithful map makes the probability rise fast: a *large* area.

Each curve is read against the **random-order null**: the same procedure with the pixels in
random order (:func:`perturbation_curves` with ``order="random"``), which any map should beat.

Examples
--------
>>> import torch, sanity_lib as sl
>>> model, x = sl.models.mnist_cnn(seed=0), torch.rand(2, 1, 28, 28)
>>> maps = sl.saliency.explain(model, x, "gradient")
>>> curves = perturbation_curves(model, x, maps, kind="deletion", n_steps=4)
>>> sorted(curves.columns)
['fraction', 'image', 'kind', 'score']
>>> area_under_curve(curves).shape
(2,)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from sanity_lib._validation import check_choice, check_int

__all__ = ["perturbation_curves", "area_under_curve", "KINDS"]

#: The two curves.
KINDS = ("deletion", "insertion")


def _ranking(maps: torch.Tensor, order: str, seed: int) -> torch.Tensor:
    """Pixel indices (H * W per image), most important first."""
    importance = maps.detach().abs().sum(dim=1).reshape(maps.shape[0], -1).double()
    if order == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([torch.randperm(importance.shape[1], generator=gen)
                            for _ in range(maps.shape[0])])
    # stable: ties (e.g. an all-zero background) keep the pixels' order
    return torch.argsort(-importance, dim=1, stable=True)


def perturbation_curves(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, *,
                        kind: str = "deletion", n_steps: int = 20, baseline: float = 0.0,
                        target=None, order: str = "map", seed: int = 0) -> pd.DataFrame:
    """The explained class's probability as pixels are deleted (or inserted) in map order.

    Parameters
    ----------
    model : torch.nn.Module
        Returns class scores; the probability is their softmax.
    x : tensor, N x C x H x W
        The model's (preprocessed) input.
    maps : tensor, N x C' x H x W
        Saliency maps of x (C' = C or 1); a pixel's importance is its absolute value summed
        over channels.
    kind : {"deletion", "insertion"}
    n_steps : int, default 20
        The curve has ``n_steps + 1`` points, fractions 0, 1/n, ..., 1 of the pixels.
    baseline : float, default 0.0
        The value a deleted (or not yet inserted) pixel takes, in the model's input space.
    target : None, int or N ints
        The class followed; None is each image's argmax on x.
    order : {"map", "random"}
        ``"random"`` ignores the maps: the null every map should beat.
    seed : int
        Seed of the random order.

    Returns
    -------
    pandas.DataFrame
        Columns ``image, kind, fraction, score``.
    """
    check_choice("kind", kind, KINDS)
    check_choice("order", order, ("map", "random"))
    n_steps = check_int("n_steps", n_steps, minimum=1)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError("x must be an N x C x H x W tensor of images")
    if (not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != x.shape[0]
            or maps.shape[2:] != x.shape[2:]):
        raise ValueError(f"maps must be N x C x H x W with x's N, H and W {tuple(x.shape)}, "
                         f"got {tuple(maps.shape) if isinstance(maps, torch.Tensor) else maps!r}")
    n, _, h, w = x.shape
    rank = _ranking(maps, order, seed)
    with torch.no_grad():
        if target is None:
            target = model(x).argmax(1)
        target = torch.as_tensor(target).reshape(-1).expand(n)
        rows = []
        for k in range(n_steps + 1):
            m = round(k * h * w / n_steps)
            chosen = torch.zeros(n, h * w, dtype=torch.bool)
            chosen.scatter_(1, rank[:, :m], True)
            chosen = chosen.reshape(n, 1, h, w).to(x.device)
            if kind == "deletion":
                xk = torch.where(chosen, torch.full_like(x, baseline), x)
            else:
                xk = torch.where(chosen, x, torch.full_like(x, baseline))
            prob = model(xk).softmax(1).gather(1, target.to(x.device)[:, None])[:, 0]
            rows += [{"image": i, "kind": kind, "fraction": k / n_steps, "score": float(p)}
                     for i, p in enumerate(prob.cpu())]
    return pd.DataFrame(rows, columns=["image", "kind", "fraction", "score"])


def area_under_curve(curves: pd.DataFrame) -> np.ndarray:
    """Per image, the area under its curve (trapezoid rule over the fractions).

    Examples
    --------
    >>> curves = pd.DataFrame({"image": [0, 0, 0], "kind": "deletion",
    ...                        "fraction": [0.0, 0.5, 1.0], "score": [1.0, 0.5, 0.0]})
    >>> area_under_curve(curves)
    array([0.5])
    """
    out = []
    for _, group in curves.sort_values(["image", "fraction"]).groupby("image"):
        f, s = group["fraction"].to_numpy(), group["score"].to_numpy()
        out.append(float(np.sum((f[1:] - f[:-1]) * (s[1:] + s[:-1]) / 2)))
    return np.asarray(out)
