"""SmoothGrad-style averaging over noisy copies of each image, computed in batches."""
import numpy as np
import torch

__all__ = ["smoothgrad_noise", "noisy_statistic", "Smoothed"]


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


class Smoothed:
    """An explainer averaged over noisy copies of the input: the noise wrapper of the sweeps.

    ``Smoothed(inner, n_samples, noise_level, seed)(model, x, methods, target)`` is, for every
    method, ``mean_s inner(model, x + noise_s, methods, target)[method]`` with the exact noise
    SmoothGrad uses (:func:`smoothgrad_noise`, the same draws for the same ``seed`` at every
    step of a sweep). Every noisy copy explains the same class, ``target``. Wrapping the
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

    def __init__(self, inner=None, n_samples: int = 10, noise_level: float = 0.1,
                 seed: int = 0, rows_per_call: int = 256):
        from sanity_lib._validation import check_int, check_real

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

    @property
    def cache_key(self) -> str:
        """What a cached sweep records of this explainer (see ``explainer=`` of the tests)."""
        inner = "default" if self.inner is None else getattr(
            self.inner, "cache_key", f"{self.inner.__module__}.{self.inner.__qualname__}")
        return (f"smoothed(n_samples={self.n_samples}, noise_level={self.noise_level!r}, "
                f"seed={self.seed}, inner={inner})")

    def __call__(self, model, x, methods, target):
        from sanity_lib.saliency._shared import explain_all

        inner = self.inner or (lambda m, rows, ms, t: explain_all(m, rows, ms, target=t))
        n = x.shape[0]
        target = torch.as_tensor(target, dtype=torch.long).reshape(-1)
        noise = smoothgrad_noise(x.detach().cpu(), self.n_samples, self.noise_level,
                                 self.seed).to(x.device, x.dtype)
        per_call = max(1, self.rows_per_call // n)  # noisy copies of the batch per call
        totals = {}
        for s0 in range(0, self.n_samples, per_call):
            eps = noise[s0:s0 + per_call]
            k = eps.shape[0]
            rows = (x.detach().unsqueeze(0) + eps).reshape((k * n,) + tuple(x.shape[1:]))
            maps = inner(model, rows, methods, target.repeat(k).to(x.device))
            for name, m in maps.items():
                part = m.detach().reshape((k, n) + tuple(m.shape[1:])).sum(0)
                totals[name] = part if name not in totals else totals[name] + part
        return {name: total / self.n_samples for name, total in totals.items()}
