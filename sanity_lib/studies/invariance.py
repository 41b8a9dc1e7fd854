"""Kindermans et al.'s input-shift test: does a map change when only the input's offset does?

Kindermans et al. (2019, "The (un)reliability of saliency methods") shift every input by a
constant vector ``c`` and compensate in the first layer's bias, ``b' = b - W c``, so the
shifted network computes *exactly* the same function of the shifted input:
``f'(x + c) = f(x)`` for every ``x``. The two networks differ in nothing a prediction can
see, so a method that explains the function should give the same map. The gradient does
(``W`` is unchanged); gradient x input does not (its map is ``(x + c) * grad``), nor does
Integrated Gradients from a fixed zero baseline; IG from the shifted baseline does.

This is a second kind of sanity check beside the paper's two: the paper's tests ask whether
a map changes when the model does; this one asks whether a map stays when nothing that
matters changes.

Examples
--------
>>> import torch, sanity_lib as sl
>>> mlp = sl.models.mnist_mlp(seed=0)
>>> x = torch.rand(3, 1, 28, 28)
>>> table = input_shift_test(mlp, x, ["gradient", "gradient_x_input"], shift=1.0)
>>> bool(table.set_index("method").loc["gradient", "max_abs_difference"] < 1e-5)
True
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from sanity_lib._validation import check_real

__all__ = ["shifted_model", "input_shift_test"]


def _first_affine(model: nn.Module, x: torch.Tensor):
    """The first module that runs and touches the input: it must be a Linear (or a Conv2d
    without padding, where a constant shift is a constant change of every output)."""
    order = []
    handles = [m.register_forward_hook(lambda m, i, o: order.append(m))
               for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    params = [m for m in order if any(True for _ in m.parameters(recurse=False))]
    if not params:
        raise ValueError("the model has no layer with parameters; nothing to compensate in")
    first = params[0]
    if isinstance(first, nn.Linear) and first.bias is not None:
        return first
    if (isinstance(first, nn.Conv2d) and first.bias is not None
            and not isinstance(first.padding, str) and all(p == 0 for p in first.padding)):
        return first
    raise ValueError(
        f"the input-shift test compensates the shift in the first layer's bias, which needs a "
        f"Linear with a bias (or an unpadded Conv2d with a bias) as the first layer; this "
        f"model starts with {type(first).__name__}"
        + (" with padding, where zero padding would see the shift at the borders"
           if isinstance(first, nn.Conv2d) else "")
        + ". Use e.g. sl.models.mnist_mlp(), the network Kindermans et al. used")


def shifted_model(model: nn.Module, x: torch.Tensor, shift: float | torch.Tensor) -> nn.Module:
    """A copy of ``model`` that computes on ``x + shift`` what ``model`` computes on ``x``.

    Parameters
    ----------
    model : torch.nn.Module
        Its first layer with parameters must be a Linear with a bias (or an unpadded Conv2d).
    x : tensor
        One batch of the model's input (a forward pass finds the first layer).
    shift : float or tensor of one image's shape
        The constant added to every input.

    Returns
    -------
    torch.nn.Module
        In eval mode; the original is untouched.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> mlp, x = sl.models.mnist_mlp(seed=0), torch.rand(2, 1, 28, 28)
    >>> moved = shifted_model(mlp, x, 0.5)
    >>> torch.allclose(moved(x + 0.5), mlp(x), atol=1e-5)
    True
    """
    if not isinstance(shift, torch.Tensor):
        shift = check_real("shift", shift)
    work = copy.deepcopy(model).eval()
    first = _first_affine(work, x)
    c = torch.as_tensor(shift, dtype=x.dtype).expand_as(x[:1])
    with torch.no_grad():
        # The first layer's response to the constant c, without its bias: W c.
        bias = first.bias.detach().clone()
        first.bias.zero_()
        response = {}
        handle = first.register_forward_hook(lambda m, i, o: response.setdefault("out", o))
        try:
            work(c)
        finally:
            handle.remove()
        wc = response["out"][0]
        if isinstance(first, nn.Conv2d):
            if not torch.allclose(wc, wc.mean(dim=(1, 2), keepdim=True), atol=1e-5):
                raise ValueError("shift must be the same at every pixel for a Conv2d first layer")
            wc = wc.mean(dim=(1, 2))
        first.bias.copy_(bias - wc)
    return work


def input_shift_test(model: nn.Module, x: torch.Tensor, methods: Sequence[str], *,
                     shift: float | torch.Tensor = 1.0, target=None,
                     settings: dict | None = None) -> pd.DataFrame:
    """Maps of ``model`` on ``x`` against maps of the compensated model on ``x + shift``.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor
        Preprocessed input.
    methods : sequence of str
        Method names (:data:`sanity_lib.saliency.METHODS`).
    shift : float or tensor, default 1.0
        The constant shift (Kindermans et al. shift MNIST from [0, 1] to [-1, 0]: -1.0).
    target : None, int or N ints
        The class explained; None is each image's argmax (the same for both networks,
        since they compute the same scores).
    settings : dict of str to dict, optional
        Settings per method, e.g. ``{"integrated_gradients": {"baseline": 1.0}}`` (a
        baseline is an input, so it is shifted too for the shifted network).

    Returns
    -------
    pandas.DataFrame
        One row per method: ``max_abs_difference`` (the largest pixel difference, relative to
        the largest pixel of the original map), ``spearman_abs`` and ``spearman_diverging``
        (mean over images), ``invariant`` (max_abs_difference below 1e-3). Both networks
        run on float64 copies, so that rounding in the compensated bias cannot flip a ReLU.
    """
    from sanity_lib import saliency, similarity

    settings = dict(settings or {})
    # Both networks run in float64: in float32 the compensated bias b - W c is off by rounding,
    # enough to flip ReLU units whose pre-activation lies within rounding of 0 and to move
    # even the (exactly invariant) gradient by about 1e-3 of its largest pixel.
    model = copy.deepcopy(model).double().eval()
    x = x.detach().double()
    if isinstance(shift, torch.Tensor):
        shift = shift.double()
    moved = shifted_model(model, x, shift)
    c = torch.as_tensor(shift, dtype=x.dtype)
    scores = model(x).detach()
    if not torch.allclose(moved(x + c).detach(), scores, rtol=1e-4,
                          atol=1e-4 * float(scores.abs().max())):
        raise RuntimeError("the compensated model does not reproduce the scores; "
                           "please report this with the model")
    if target is None:
        target = scores.argmax(1)
    rows = []
    for method in methods:
        opts = dict(settings.get(method, {}))
        moved_opts = dict(opts)
        if "baseline" in opts:
            moved_opts["baseline"] = opts["baseline"] + c
        a = saliency.explain(model, x, method, target=target, **opts)
        b = saliency.explain(moved, x + c, method, target=target, **moved_opts)
        scale = float(a.abs().max()) or 1.0
        diff = float((a - b).abs().max()) / scale
        sims = similarity.compare(a, b, ["spearman_abs", "spearman_diverging"])
        rows.append({"method": method, "max_abs_difference": diff,
                     "spearman_abs": float(sims["spearman_abs"].mean()),
                     "spearman_diverging": float(sims["spearman_diverging"].mean()),
                     "invariant": diff < 1e-3})
    return pd.DataFrame(rows)
