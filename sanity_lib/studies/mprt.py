"""Two repairs of the model parameter randomization test (MPRT): smooth MPRT and efficient MPRT.

Hedström et al. (2023, "Sanity checks revisited") point at two weak spots of the MPRT of
Adebayo et al. (2018) and propose a fix for each:

- **Smooth MPRT** (:func:`smooth_mprt`). Gradient-based maps of a trained network are noisy,
  and the noise alone makes a map "change" under randomization. Averaging every explanation
  over noisy copies of the input (:func:`smooth_explain`) removes most of that noise before
  the maps are compared. The comparison is otherwise the MPRT's: cascading randomization
  (bottom-up by default, as the authors recommend), each step's map against the original.
- **Efficient MPRT** (:func:`efficient_mprt`). Instead of comparing maps pixel by pixel over
  many randomization steps, compare the *complexity* of one map of the trained model with one
  map of the fully randomized model. Complexity is the discrete (histogram) entropy of the map
  (:func:`histogram_entropy`); the score is its relative rise,
  ``(H(e_rand) - H(e)) / H(e)`` (:func:`efficient_mprt_score`). A map that explains the model
  should become noisier, so higher is better, 0 means no change.

Choices, and where they differ from Quantus (``quantus.SmoothMPRT``, ``quantus.EfficientMPRT``):

- Noise: every one of the ``n_samples`` copies is noisy, standard deviation
  ``noise_level * (max(x_i) - min(x_i))`` per image (:func:`sanity_lib.saliency.smoothgrad_noise`),
  the same draws at every randomization step. Quantus makes the last of its samples
  noise-free (``noise_free_last=True`` does the same), and draws new noise for every model
  (and for the reference map of the trained model, so its "original" score is below 1).
  With our choice, the smooth gradient *is* SmoothGrad at that noise level.
- Target: ``"argmax"`` (each model explains its own top class, as this book's MPRT) or
  ``"original"``; Quantus explains the given label (:func:`smooth_mprt` takes the labels
  as ``target=``).
- Randomization: ``init`` (default ``"truncated_normal"``); Quantus runs every layer's
  ``reset_parameters()``, which is ``init="default"`` (seeded differently). The scheme
  matters: on the book's MNIST CNN it flips the sign of the gradient's eMPRT score.
- Entropy: natural logarithm (nats), ``numpy.histogram`` with ``n_bins`` equal-width bins
  spanning each map's own minimum to maximum, over all of the map's values (signed, no
  normalization: eMPRT's defaults). The score is a ratio of entropies, so it does not depend
  on the base of the logarithm. Here the bin count is fixed (100, the paper's default and
  Quantus'). Quantus can also pick one per batch by a rule (clamped to 10 ... 200); its
  square-root, Sturges and Rice rules count a map's dimensions instead of its values and
  always give 10.

Examples
--------
>>> import torch, sanity_lib as sl
>>> model = sl.models.mnist_cnn()
>>> x = torch.rand(2, 1, 28, 28)
>>> efficient_mprt(model, x, ["gradient"]).columns.tolist()
['method', 'image', 'entropy_original', 'entropy_randomized', 'score']
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from sanity_lib._validation import check_flag, check_images, check_int, check_real, parse_methods
from sanity_lib.randomization import DEFAULT_INIT
from sanity_lib.similarity import ConstantMapWarning

if TYPE_CHECKING:
    from sanity_lib.checks import SanityCheckResult

__all__ = [
    "N_BINS", "histogram_entropy", "efficient_mprt_score", "fully_randomized",
    "efficient_mprt", "smooth_explain", "smooth_mprt",
]

#: eMPRT's number of histogram bins (Hedström et al. 2023).
N_BINS = 100
_METRICS = ("spearman_abs", "spearman_diverging", "ssim", "hog")
_TARGETS = ("argmax", "original")
# The most (image, noise sample) rows handed to one explain() call.
_ROWS_PER_CALL = 256


# ----------------------------------------------------------------------------- checks

def _check_noise_level(noise_level):
    return check_real("noise_level", noise_level, 0.0,
                      why="a fraction of each image's value range; the paper uses 0.1")


def _check_target(target):
    if not (isinstance(target, str) and target in _TARGETS):
        raise ValueError(f"target={target!r} is not known; use 'argmax' (each model explains its "
                         "own top class) or 'original' (the trained model's class throughout)")
    return target


def _as_float64_rows(maps, name):
    if isinstance(maps, torch.Tensor):
        arr = maps.detach().to("cpu", torch.float64).numpy()
    elif isinstance(maps, np.ndarray) and np.issubdtype(maps.dtype, np.number):
        arr = maps.astype(np.float64, copy=False)
    else:
        raise TypeError(f"{name} must be a torch tensor or numpy array of maps (batch first), "
                        f"got {type(maps).__name__}")
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch of maps, batch first (N x ...); got "
                         f"shape {arr.shape}. For one map use map[None]")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values; an entropy needs finite maps")
    return arr.reshape(arr.shape[0], -1)


def _argmax(model, x):
    with torch.no_grad():
        return torch.cat([model(x[i:i + 64]).argmax(1) for i in range(0, len(x), 64)])


# ----------------------------------------------------------------------------- efficient MPRT

def histogram_entropy(maps: torch.Tensor | np.ndarray, *, n_bins: int = N_BINS) -> torch.Tensor:
    """Discrete entropy (in nats) of each map's histogram of values.

    Each map's values (all channels and pixels, signed, as given) are sorted into ``n_bins``
    equal-width bins spanning that map's minimum to maximum (``numpy.histogram``); the bin
    counts, divided by their total, are the probabilities ``p_k`` of
    ``H = -sum_k p_k log p_k`` (natural logarithm; empty bins add nothing). A constant map
    has entropy 0; a map spread evenly over all bins has the maximum, ``log(n_bins)``.

    Parameters
    ----------
    maps : torch.Tensor or numpy.ndarray, N x ...
        A batch of saliency maps, batch first.
    n_bins : int, default 100
        Number of bins (Hedström et al. use 100).

    Returns
    -------
    torch.Tensor
        float64, shape N.

    Examples
    --------
    >>> histogram_entropy(torch.zeros(1, 28, 28)).item()          # constant: one bin
    0.0
    >>> m = torch.arange(100.0).reshape(1, 10, 10)                 # one value per bin
    >>> round(histogram_entropy(m).item(), 4), round(float(np.log(100)), 4)
    (4.6052, 4.6052)
    """
    n_bins = check_int("n_bins", n_bins, 1)
    rows = _as_float64_rows(maps, "maps")
    out = np.empty(rows.shape[0])
    for i, row in enumerate(rows):
        counts, _ = np.histogram(row, bins=n_bins)
        p = counts[counts > 0] / counts.sum()
        out[i] = float(-(p * np.log(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    return torch.from_numpy(out)


def efficient_mprt_score(maps: torch.Tensor | np.ndarray,
                         randomized_maps: torch.Tensor | np.ndarray, *,
                         n_bins: int = N_BINS) -> torch.Tensor:
    """eMPRT's score per image: the relative rise of the histogram entropy.

    ``(H(randomized_maps[i]) - H(maps[i])) / H(maps[i])`` with :func:`histogram_entropy`.
    Positive: the map got more complex (noisier) when the model was randomized, as a map
    that explains the model should; 0: no change; higher is better. A constant original map
    (entropy 0) gives NaN, with a warning.

    Parameters
    ----------
    maps : torch.Tensor or numpy.ndarray, N x ...
        Maps of the trained model.
    randomized_maps : same shape
        Maps of the same inputs under the fully randomized model.
    n_bins : int, default 100

    Returns
    -------
    torch.Tensor
        float64, shape N.

    Examples
    --------
    >>> sparse = torch.zeros(1, 10, 10); sparse[0, 0, :3] = 1.0     # low entropy
    >>> spread = torch.arange(100.0).reshape(1, 10, 10)              # high entropy
    >>> up, down = efficient_mprt_score(sparse, spread), efficient_mprt_score(spread, sparse)
    >>> bool(up > 0), bool(down < 0)
    (True, True)
    """
    a = _as_float64_rows(maps, "maps")
    b = _as_float64_rows(randomized_maps, "randomized_maps")
    if a.shape != b.shape:
        raise ValueError(f"maps and randomized_maps must have the same shape, got "
                         f"{tuple(maps.shape)} and {tuple(randomized_maps.shape)}")
    h = histogram_entropy(a, n_bins=n_bins)
    h_rand = histogram_entropy(b, n_bins=n_bins)
    constant = h == 0
    if bool(constant.any()):
        warnings.warn(f"{int(constant.sum())} original map(s) are constant (entropy 0): their "
                      "eMPRT score is undefined and reported as NaN", ConstantMapWarning,
                      stacklevel=2)
    safe = torch.where(constant, torch.ones_like(h), h)
    return torch.where(constant, torch.full_like(h, float("nan")), (h_rand - h) / safe)


def fully_randomized(model: nn.Module, *, init: str = DEFAULT_INIT, seed: int = 0,
                     batchnorm: str = "keep") -> nn.Module:
    """A copy of ``model`` with every parameter re-initialized: the last MPRT step.

    The same weights as the last step of :func:`sanity_lib.randomization.cascading` with the
    same ``init``, ``seed`` and ``batchnorm`` (in either order), whenever the model's layer
    groups hold all its parameters. The model given is not changed.

    Parameters
    ----------
    model : torch.nn.Module
    init, seed, batchnorm
        As in :func:`sanity_lib.randomization.cascading`.

    Returns
    -------
    torch.nn.Module
        A new model, in eval mode.

    Examples
    --------
    >>> import sanity_lib as sl
    >>> model = sl.models.mnist_cnn()
    >>> rand = fully_randomized(model, init="normal")
    >>> bool((rand.conv1.weight != model.conv1.weight).all())
    True
    """
    from sanity_lib import randomization

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return randomization.randomize_module(copy.deepcopy(model), init=init, seed=seed,
                                          batchnorm=batchnorm).eval()


def efficient_mprt(model: nn.Module, x: torch.Tensor,
                   methods: Sequence[str] | Mapping[str, Mapping[str, Any] | None], *,
                   init: str = DEFAULT_INIT, batchnorm: str = "keep", target: str = "argmax",
                   n_bins: int = N_BINS, seed: int = 0) -> pd.DataFrame:
    """Efficient MPRT (Hedström et al. 2023): entropy of each map before and after randomizing.

    For every method, explains ``x`` under ``model`` and under :func:`fully_randomized`
    ``(model)`` and scores each image with :func:`efficient_mprt_score`. Two explanations per
    method and image, instead of one per randomization step.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model. Not changed.
    x : torch.Tensor
        N x C x H x W model inputs (preprocessed).
    methods : list of str or dict of str to dict
        Names from :data:`sanity_lib.saliency.METHODS`, or ``{name: settings}`` passed to
        :func:`sanity_lib.saliency.explain`.
    init, batchnorm, seed
        How to randomize (:func:`sanity_lib.randomization.cascading`).
    target : {"argmax", "original"}
        The randomized model explains its own top class (as the book's MPRT) or the trained
        model's.
    n_bins : int, default 100

    Returns
    -------
    pandas.DataFrame
        Columns ``method, image, entropy_original, entropy_randomized, score`` (entropies
        in nats), one row per method and image. ``df.groupby("method").score.mean()`` ranks
        the methods: higher is better.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> table = efficient_mprt(sl.models.mnist_cnn(), torch.rand(3, 1, 28, 28),
    ...                        ["gradient", "guided_backprop"], init="normal")
    >>> table.shape
    (6, 5)
    """
    from sanity_lib import saliency

    x = check_images(x)
    methods = parse_methods(methods)
    target = _check_target(target)
    n_bins = check_int("n_bins", n_bins, 1)
    randomized = fully_randomized(model, init=init, seed=seed, batchnorm=batchnorm)
    was_training = model.training
    model.eval()
    try:
        t_orig = _argmax(model, x)
        t_rand = t_orig if target == "original" else _argmax(randomized, x)
        rows = []
        for name, settings in methods.items():
            e = saliency.explain(model, x, name, target=t_orig, **settings)
            e_rand = saliency.explain(randomized, x, name, target=t_rand, **settings)
            h = histogram_entropy(e, n_bins=n_bins)
            h_rand = histogram_entropy(e_rand, n_bins=n_bins)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                score = efficient_mprt_score(e, e_rand, n_bins=n_bins)
            if bool(torch.isnan(score).any()):
                warnings.warn(f"method {name!r}: some maps of the trained model are constant, "
                              "their score is NaN", ConstantMapWarning, stacklevel=2)
            rows.append(pd.DataFrame({
                "method": name, "image": np.arange(len(x)),
                "entropy_original": h.numpy(), "entropy_randomized": h_rand.numpy(),
                "score": score.numpy()}))
    finally:
        model.train(was_training)
    return pd.concat(rows, ignore_index=True)


# ----------------------------------------------------------------------------- smooth MPRT

def _smoother(inner, n_samples, noise_level, seed, noise_free_last):
    """The averaging explainer of :func:`smooth_explain` and :func:`smooth_mprt`."""
    from sanity_lib import saliency

    return saliency.Smoothed(inner, n_samples=n_samples, noise_level=noise_level, seed=seed,
                             rows_per_call=_ROWS_PER_CALL, noise_free_last=noise_free_last)


def smooth_explain(model: nn.Module, x: torch.Tensor, method: str, *, n_samples: int = 10,
                   noise_level: float = 0.1, seed: int = 0,
                   target: int | Sequence[int] | torch.Tensor | None = None,
                   noise_free_last: bool = False, **settings: Any) -> torch.Tensor:
    """A saliency map averaged over ``n_samples`` noisy copies of each input (sMPRT's denoising).

    ``mean_s explain(model, x + noise_s, method)``, with Gaussian noise of standard deviation
    ``noise_level * (max(x_i) - min(x_i))`` per image (the exact draws of
    :func:`sanity_lib.saliency.smoothgrad_noise` with this ``seed``). Every noisy copy
    explains the same class: ``target``, or by default the model's top class for the clean
    input. For ``method="gradient"`` this is SmoothGrad with ``noise_level``.

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor
        N x ... model inputs.
    method : str
        One of :data:`sanity_lib.saliency.METHODS`.
    n_samples : int, default 10
        Noisy copies per image (Hedström et al. use 50; the cost grows linearly).
    noise_level : float, default 0.1
        The noise's standard deviation as a fraction of each image's value range (the paper's).
    seed : int, default 0
        Same seed, same noise.
    target : None, int or N ints
        The explained class; None: each image's argmax under ``model`` for the clean input.
    noise_free_last : bool, default False
        True: the last of the ``n_samples`` copies is the clean input, as in Quantus'
        ``SmoothMPRT`` (Hedström et al.'s code); the others get the first ``n_samples - 1``
        draws of the default noise. The map is then ``((n_samples - 1) * noisy mean +
        explain(x)) / n_samples``, no longer SmoothGrad.
    **settings
        Passed to :func:`sanity_lib.saliency.explain` for every noisy copy.

    Returns
    -------
    torch.Tensor
        Shape of ``explain(model, x, method)``, the mean over the noisy copies.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> model, x = sl.models.mnist_cnn(), torch.rand(2, 1, 28, 28)
    >>> smooth = smooth_explain(model, x, "gradient", n_samples=4, noise_level=0.1)
    >>> sg = sl.saliency.explain(model, x, "smoothgrad", n_samples=4, noise_level=0.1)
    >>> torch.allclose(smooth, sg, atol=1e-6)
    True
    """
    from sanity_lib import saliency

    n_samples = check_int("n_samples", n_samples, 1)
    noise_level = _check_noise_level(noise_level)
    seed = check_int("seed", seed, 0)
    noise_free_last = check_flag("noise_free_last", noise_free_last)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError("x must be a floating-point torch.Tensor, batch first (N x ...)")
    x = x.detach()
    n = x.shape[0]
    if target is None:
        was_training = model.training
        model.eval()
        try:
            target = _argmax(model, x)
        finally:
            model.train(was_training)
    target = torch.as_tensor(target, dtype=torch.long).reshape(-1).cpu()
    if target.numel() == 1:
        target = target.expand(n).clone()
    if target.numel() != n:
        raise ValueError(f"target holds {target.numel()} classes but x holds {n} images; give "
                         "one class per image, a single int, or None")
    smooth = _smoother(saliency.explain_each, n_samples, noise_level, seed, noise_free_last)
    return smooth(model, x, {method: settings}, target)[method]


def smooth_mprt(model: nn.Module, x: torch.Tensor,
                methods: Sequence[str] | Mapping[str, Mapping[str, Any] | None], *,
                n_samples: int = 10, noise_level: float = 0.1, order: str = "bottom_up",
                init: str = DEFAULT_INIT, batchnorm: str = "keep",
                target: str | int | Sequence[int] | torch.Tensor = "argmax",
                metrics: Sequence[str] = _METRICS, seed: int = 0, progress: bool = True,
                keep_maps: bool = True, cache: bool = False,
                noise_free_last: bool = False) -> SanityCheckResult:
    """Smooth MPRT (Hedström et al. 2023): the cascading MPRT on denoised explanations.

    Every map, of the trained model and of each cascading step, is :func:`smooth_explain`'s
    average over ``n_samples`` noisy copies of the input (the same noise at every step), and
    each step's map is compared with the original one by the book's similarity metrics.
    The result reads like :func:`sanity_lib.model_randomization_test`'s.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model. Not changed.
    x : torch.Tensor
        N x C x H x W model inputs (preprocessed).
    methods : list of str or dict of str to dict
        Names from :data:`sanity_lib.saliency.METHODS`, or ``{name: settings}``.
    n_samples : int, default 10
        Noisy copies per image; the paper uses 50 (five times the cost).
    noise_level : float, default 0.1
        Noise standard deviation as a fraction of each image's value range (the paper's).
    order : {"bottom_up", "top_down"}, default "bottom_up"
        Hedström et al. recommend bottom-up; the original MPRT is top-down.
    init, batchnorm, seed
        As in :func:`sanity_lib.randomization.cascading`; ``seed`` also seeds the noise and
        the noise floor.
    target : "argmax", "original", int or N ints, default "argmax"
        Each model's own top class, the trained model's class at every step, or these
        classes at every step (e.g. the labels, as Quantus and Hedström et al.).
    metrics : sequence of str, default all four of :data:`sanity_lib.similarity.METRICS`
    progress : bool, default True
        A progress bar over the steps.
    keep_maps : bool, default True
        Keep the smoothed maps (``result.maps``) for ``plot_grid``.
    cache : bool, default False
        Store the result on disk (folder ``sweeps`` of :mod:`sanity_lib._cache`), keyed by
        the whole configuration and fingerprints of the model and of ``x``.
    noise_free_last : bool, default False
        Make the last noisy copy the clean input (:func:`smooth_explain`). With
        ``n_samples=50, noise_free_last=True, target=labels, init="default"`` and the
        default ``order="bottom_up"``, this is smooth MPRT as published and as
        ``quantus.SmoothMPRT`` computes it, up to the random draws (Quantus seeds the
        weights differently and draws new noise for every model) and the top 1 % that
        ``"spearman_abs"`` clips (about 1e-4 on a Spearman score);
        ``tests/test_quantus_crosscheck.py`` shows it.

    Returns
    -------
    sanity_lib.checks.SanityCheckResult
        ``settings["test"] == "smooth_model_randomization"``; ``.table``, ``.summary()``,
        ``.plot_curves()`` and ``.plot_grid()`` work as for the MPRT.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> result = smooth_mprt(sl.models.mnist_cnn(), torch.rand(2, 1, 28, 28), ["gradient"],
    ...                      n_samples=2, metrics=["spearman_abs"], progress=False)
    >>> result.layers
    ['original', 'conv1', 'conv2', 'fc1', 'logits']
    """
    from sanity_lib import randomization, similarity
    from sanity_lib.checks import model_randomization_test

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = check_images(x)
    methods = parse_methods(methods)
    n_samples = check_int("n_samples", n_samples, 1)
    noise_level = _check_noise_level(noise_level)
    seed = check_int("seed", seed, 0)
    if isinstance(target, str):
        target = _check_target(target)  # ints: checked by model_randomization_test
    for name, value, choices in (("order", order, randomization.ORDERS),
                                 ("init", init, randomization.INIT_SCHEMES),
                                 ("batchnorm", batchnorm, randomization.BATCHNORM_POLICIES)):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name}={value!r} is not known; choose one of {list(choices)}")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in similarity.METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics={unknown or metrics!r} not known; choose among "
                         f"{', '.join(similarity.METRICS)}")
    for name, value in (("progress", progress), ("keep_maps", keep_maps), ("cache", cache)):
        check_flag(name, value)
    noise_free_last = check_flag("noise_free_last", noise_free_last)
    # Smooth MPRT is the model randomization test with a smoothing explainer.
    explainer = _smoother(None, n_samples, noise_level, seed, noise_free_last)
    result = model_randomization_test(
        model, x, methods, mode="cascading", order=order, init=init, batchnorm=batchnorm,
        target=target, metrics=metrics, seed=seed, progress=progress, keep_maps=keep_maps,
        cache=cache, explainer=explainer)
    result.settings.update(test="smooth_model_randomization", n_samples=n_samples,
                           noise_level=noise_level, noise_free_last=noise_free_last)
    return result
