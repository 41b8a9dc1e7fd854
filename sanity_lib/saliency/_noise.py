"""SmoothGrad-style averaging over noisy copies of each image, computed in batches."""
import numpy as np
import torch

__all__ = ["smoothgrad_noise", "noisy_statistic"]


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


def smoothgrad_noise(x: torch.Tensor, n_samples: int = 50, noise_level: float = 0.15,
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
    return _noise(x, 0, n_samples, noise_level, seed)


def noisy_statistic(fn, x, target, start, opts, statistic="mean"):
    """Mean (or population variance) of ``fn`` over noisy copies of the images x.

    ``fn(rows, targets)`` explains a batch of rows; rows are stacked sample-major so one
    call handles up to ``batch_size`` (image, sample) pairs.
    """
    n = opts["n_samples"]
    noise = _noise(x, start, n, opts["noise_level"], opts["seed"])
    per_call = max(1, opts["batch_size"] // x.shape[0])  # samples per model call
    parts = []
    for s0 in range(0, n, per_call):
        eps = noise[s0:s0 + per_call]
        k = eps.shape[0]
        rows = (x.unsqueeze(0) + eps).reshape((k * x.shape[0],) + tuple(x.shape[1:]))
        attr = fn(rows, target.repeat(k))
        parts.append(attr.reshape((k,) + tuple(x.shape)))
    stacked = torch.cat(parts, dim=0)
    if statistic == "var":
        return stacked.var(dim=0, unbiased=False)
    return stacked.mean(dim=0)
