"""SmoothGrad-style averaging over noisy copies of each image, computed in batches.

One loop, :func:`noise_average`, serves every noisy method computed one at a time
(SmoothGrad, VarGrad, IG-SmoothGrad in :func:`~sanity_lib.saliency.explain`) and the
:class:`Smoothed` explainer (smooth MPRT). The fused sweep engine (``_shared.py``) draws the
same noise, image by image, so that its SmoothGrad and VarGrad equal these.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["smoothgrad_noise", "noise_average", "noisy_statistic", "Smoothed"]


def _image_seed(seed: int, index: int) -> int:
    # Independent streams per (seed, image): image i gets the same noise whatever the
    # batch size or the other images in the call.
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


def _noise(x: torch.Tensor, start: int, n_samples: int, noise_level: float, seed: int):
    """n_samples x N x ... noise for the images x (x[0] is image number ``start``)."""
    flat = x.detach().reshape(x.shape[0], -1)
    std = noise_level * (flat.amax(dim=1) - flat.amin(dim=1))   # per image
    draws = []
    for i in range(x.shape[0]):  # one generator per image (cheap: no model call here)
        gen = torch.Generator().manual_seed(_image_seed(seed, start + i))
        draws.append(torch.randn((n_samples,) + tuple(x.shape[1:]), generator=gen))
    noise = torch.stack(draws, dim=1).to(device=x.device, dtype=x.dtype)
    return noise * std.reshape((1, -1) + (1,) * (x.dim() - 1))


def smoothgrad_noise(x: torch.Tensor, *, n_samples: int = 50, noise_level: float = 0.15,
                     seed: int = 0) -> torch.Tensor:
    """The exact noise that SmoothGrad, VarGrad and IG-SmoothGrad add to each image.

    Gaussian, zero mean, standard deviation ``noise_level * (max(x_i) - min(x_i))`` per
    image ``x_i`` (the paper's sigma), drawn on the CPU (the same numbers on any device)
    from a stream that depends only on ``seed`` and the image's position in ``x``.

    Parameters
    ----------
    x : tensor, N x ...
        The batch passed to :func:`explain`.
    n_samples, noise_level, seed
        As in :func:`explain`.

    Returns
    -------
    tensor, n_samples x N x ...
        ``x + smoothgrad_noise(x)[s]`` is the s-th noisy copy of the batch.

    Examples
    --------
    >>> x = torch.zeros(2, 1, 4, 4); x[1, 0, 0, 0] = 10.0   # ranges 0 and 10
    >>> noise = smoothgrad_noise(x, n_samples=3, noise_level=0.1)
    >>> noise.shape, bool(noise[:, 0].eq(0).all())
    (torch.Size([3, 2, 1, 4, 4]), True)
    """
    from sanity_lib._validation import check_int, check_real

    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise TypeError(f"x must be a batch tensor (N x ...), got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.shape}")
    n_samples = check_int("n_samples", n_samples, minimum=1)
    noise_level = check_real("noise_level", noise_level, 0.0,
                             why="a fraction of each image's value range; the paper uses 0.15")
    seed = check_int("seed", seed, minimum=0)
    return _noise(x, 0, n_samples, noise_level, seed)


def noise_average(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | dict],
                  x: torch.Tensor, target: torch.Tensor, noise: torch.Tensor,
                  rows_per_call: int, statistic: str = "mean") -> torch.Tensor | dict:
    """Mean (or population variance) of ``fn`` over the noisy copies ``x + noise[s]``.

    Parameters
    ----------
    fn : callable
        ``fn(rows, targets)`` explains a batch of rows and returns a tensor or a dict of
        tensors (one per method), rows first.
    x : tensor, N x ...
    target : tensor of N ints
        Every noisy copy of image i explains ``target[i]``.
    noise : tensor, n_samples x N x ...
        E.g. :func:`smoothgrad_noise`.
    rows_per_call : int
        The most (sample, image) rows in one call of ``fn``; rows are stacked sample-major.
    statistic : {"mean", "var"}
        ``"var"`` divides by ``n_samples`` (VarGrad's population variance).

    Returns
    -------
    tensor or dict of tensors, like ``fn``'s output for x

    Examples
    --------
    >>> x = torch.zeros(2, 3)
    >>> noise = torch.stack([torch.ones(2, 3), -torch.ones(2, 3)])
    >>> noise_average(lambda rows, t: rows ** 2, x, torch.zeros(2), noise, 4)
    tensor([[1., 1., 1.],
            [1., 1., 1.]])
    """
    n_samples, n = noise.shape[0], x.shape[0]
    per_call = max(1, rows_per_call // n)  # noisy copies of the batch per call
    sums, parts = {}, {}
    for s0 in range(0, n_samples, per_call):
        eps = noise[s0:s0 + per_call]
        k = eps.shape[0]
        rows = (x.detach().unsqueeze(0) + eps).reshape((k * n,) + tuple(x.shape[1:]))
        out = fn(rows, target.repeat(k))
        single = not isinstance(out, dict)
        for name, m in ({"": out} if single else out).items():
            m = m.detach().reshape((k, n) + tuple(m.shape[1:]))
            if statistic == "var":
                parts.setdefault(name, []).append(m)
            else:
                sums[name] = m.sum(0) if name not in sums else sums[name] + m.sum(0)
    if statistic == "var":
        result = {name: torch.cat(p).var(dim=0, unbiased=False) for name, p in parts.items()}
    else:
        result = {name: total / n_samples for name, total in sums.items()}
    return result[""] if single else result


def noisy_statistic(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | dict],
                    x: torch.Tensor, target: torch.Tensor, start: int,
                    opts: Mapping[str, Any], statistic: str = "mean") -> torch.Tensor | dict:
    """:func:`noise_average` with SmoothGrad's noise for images ``start, start + 1, ...``
    (one chunk of :func:`explain`'s batch) and the settings ``opts`` of the method."""
    noise = _noise(x, start, opts["n_samples"], opts["noise_level"], opts["seed"])
    return noise_average(fn, x, target, noise, opts["batch_size"], statistic)


class Smoothed:
    """An explainer averaged over noisy copies of the input: the noise wrapper of the sweeps.

    ``Smoothed(inner, n_samples=..., noise_level=..., seed=...)(model, x, methods, target)``
    is, for every method, ``mean_s inner(model, x + noise_s, methods, target)[method]`` with
    the exact noise SmoothGrad uses (:func:`smoothgrad_noise`, the same draws for the same
    ``seed`` at every step of a sweep). Every noisy copy explains the same class, ``target``. Wrapping the
    gradient gives SmoothGrad; wrapping every method of a sweep gives the denoised maps of
    smooth MPRT (Hedström et al. 2023), and
    ``model_randomization_test(..., explainer=Smoothed(...))`` is smooth MPRT.

    Parameters
    ----------
    inner : callable, optional
        An explainer ``inner(model, x, methods, target) -> {method: maps}``; default the
        sweep's (:func:`sanity_lib.saliency.explain_all`).
    n_samples : int, default 10
    noise_level : float, default 0.1
        Standard deviation as a fraction of each image's value range.
    seed : int, default 0
    rows_per_call : int, default 256
        The most (image, noise sample) rows handed to ``inner`` at once; only memory and
        speed depend on it.
    noise_free_last : bool, default False
        True makes the last of the ``n_samples`` copies the clean input (the others keep the
        first ``n_samples - 1`` draws), as Quantus' ``SmoothMPRT`` does; it is then no
        longer SmoothGrad.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> model, x = sl.models.mnist_cnn(), torch.rand(2, 1, 28, 28)
    >>> smooth = Smoothed(sl.saliency.explain_each, n_samples=4, noise_level=0.1)
    >>> target = model(x).argmax(1)
    >>> maps = smooth(model, x, {"gradient": {}}, target)["gradient"]
    >>> sg = sl.saliency.explain(model, x, "smoothgrad", n_samples=4, noise_level=0.1)
    >>> torch.allclose(maps, sg, atol=1e-6)
    True
    """

    def __init__(self, inner: Callable[..., Mapping[str, torch.Tensor]] | None = None, *,
                 n_samples: int = 10, noise_level: float = 0.1, seed: int = 0,
                 rows_per_call: int = 256, noise_free_last: bool = False) -> None:
        from sanity_lib._validation import check_flag, check_int, check_real

        if inner is not None and not callable(inner):
            raise TypeError(f"inner must be an explainer (a callable), got "
                            f"{type(inner).__name__}")
        self.inner = inner
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.noise_level = check_real(
            "noise_level", noise_level, 0.0,
            why="a fraction of each image's value range; the paper uses 0.1")
        self.seed = check_int("seed", seed, minimum=0)
        self.rows_per_call = check_int("rows_per_call", rows_per_call, minimum=1)
        self.noise_free_last = check_flag("noise_free_last", noise_free_last)

    @property
    def cache_key(self) -> str:
        """What a cached sweep records of this explainer (see ``explainer=`` of the tests)."""
        inner = "default" if self.inner is None else getattr(
            self.inner, "cache_key", f"{self.inner.__module__}.{self.inner.__qualname__}")
        last = ", noise_free_last=True" if self.noise_free_last else ""  # old keys stay valid
        return (f"smoothed(n_samples={self.n_samples}, noise_level={self.noise_level!r}, "
                f"seed={self.seed}, inner={inner}{last})")

    def __call__(self, model: nn.Module, x: torch.Tensor,
                 methods: Mapping[str, Mapping[str, Any] | None] | Sequence[str],
                 target: int | Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        from sanity_lib.saliency._shared import explain_all

        inner = self.inner or (lambda m, rows, ms, t: explain_all(m, rows, ms, target=t))
        target = torch.as_tensor(target, dtype=torch.long).reshape(-1).to(x.device)
        noise = smoothgrad_noise(x.detach().cpu(), n_samples=self.n_samples,
                                 noise_level=self.noise_level, seed=self.seed)
        if self.noise_free_last:
            noise[-1] = 0.0
        noise = noise.to(x.device, x.dtype)
        return noise_average(lambda rows, t: inner(model, rows, methods, t), x, target,
                             noise, self.rows_per_call)
