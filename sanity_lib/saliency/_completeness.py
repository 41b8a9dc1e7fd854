"""How complete an attribution is: does it sum to the score difference it explains?

Integrated Gradients (and DeepLift, LRP with its conservation rules) promise *completeness*:
the map's pixels sum to ``S_c(x) - S_c(x')``, the class score at the input minus the score at
the baseline. A quadrature with too few steps breaks the promise, and the relative error
says by how much: chapter 1 measures it at the step counts the book uses.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._inputs import check_baseline, check_input, check_model, check_target, eval_mode

__all__ = ["completeness_error"]


def completeness_error(model: nn.Module, x: torch.Tensor, maps: torch.Tensor,
                       target: int | Sequence[int] | torch.Tensor | None = None, *,
                       baseline: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Per image, ``|sum(map) - (S_c(x) - S_c(x'))| / |S_c(x) - S_c(x')|``.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor, N x ...
        The model's (preprocessed) input the maps explain.
    maps : tensor, x's shape
        Attributions, e.g. ``explain(model, x, "integrated_gradients")``.
    target : None, int, or N ints
        The explained class; None is each image's argmax, as in :func:`explain`.
    baseline : float or tensor, default 0.0
        The baseline the maps were computed from.

    Returns
    -------
    tensor of N floats (float64)
        0 for a complete map; 0.17 means the pixels miss the score difference by 17%.
        NaN where the score difference is 0 (nothing to explain).

    Examples
    --------
    >>> import torch
    >>> from sanity_lib.models import mnist_cnn
    >>> from sanity_lib.saliency import explain
    >>> model, x = mnist_cnn(), torch.rand(2, 1, 28, 28)
    >>> ig = explain(model, x, "integrated_gradients", n_steps=64)
    >>> bool((completeness_error(model, x, ig) < 0.05).all())
    True
    """
    check_model(model)
    x = check_input(model, x)
    if not isinstance(maps, torch.Tensor) or tuple(maps.shape) != tuple(x.shape):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a tensor of x's shape {tuple(x.shape)}, got {shape}")
    base = check_baseline(baseline, x)
    with torch.no_grad(), eval_mode(model):
        scores, base_scores = model(x), model(base.contiguous())
        targets = check_target(target, x.shape[0], scores.shape[1])
        if targets is None:  # the paper's choice, as in explain
            targets = scores.argmax(dim=1)
        rows = torch.arange(x.shape[0], device=scores.device)
        delta = (scores[rows, targets] - base_scores[rows, targets]).double()
    total = maps.detach().double().reshape(x.shape[0], -1).sum(1).to(delta.device)
    error = (total - delta).abs() / delta.abs()
    return torch.where(delta == 0, torch.full_like(error, float("nan")), error).cpu()
