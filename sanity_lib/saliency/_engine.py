"""explain(): one call for every saliency method, batched, leaving the model as it was.

**One engine.** A method with a shared path (its registry record names ``shares``) is
computed by the fused engine of :func:`~sanity_lib.saliency.explain_all`, the same code the
sanity checks' sweeps run, so a map from ``explain`` and a map from a sweep are one
computation. The other methods (IG-SmoothGrad, DeepLift, LRP) run their registry
record's ``plan`` (``_methods.py``) chunk by chunk.

**One reference.** :func:`reference` runs every method's ``plan``, which computes it
independently of the fused engine (through Captum where Captum has the method: Saliency,
InputXGradient, IntegratedGradients, LayerGradCam). The tests hold the engine to it, and
:func:`explain_each` makes it an explainer for a whole sweep."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ._inputs import (argmax_target, check_input, check_model,
                      check_target, eval_mode, probe)
from ._registry import REGISTRY
from ._settings import check_settings, resolve_method

__all__ = ["explain", "explain_each", "reference"]


def explain(model: nn.Module, x: torch.Tensor, method: str,
            target: int | Sequence[int] | torch.Tensor | None = None,
            **settings: Any) -> torch.Tensor:
    """A saliency map of ``model`` at each image of ``x``, by one of :data:`METHODS`.

    Parameters
    ----------
    model : torch.nn.Module
        Returns N x K class scores (logits; N x 1 for a single output). Computed in eval
        mode; its mode, weights, hooks and ``requires_grad`` flags are left as they were.
    x : tensor, N x C x H x W (or N x D for models that start with a Linear)
        The model's input, already preprocessed (``model.preprocess(x01)``); finite.
    method : str
        One of :data:`METHODS`: ``"gradient"``, ``"gradient_x_input"``,
        ``"integrated_gradients"``, ``"smoothgrad"``, ``"vargrad"``,
        ``"integrated_gradients_smoothgrad"``, ``"guided_backprop"``, ``"gradcam"``,
        ``"guided_gradcam"``, ``"deeplift"``, ``"lrp_epsilon"``.
    target : None, int, or N ints
        The explained class. None (the paper's choice) explains each image's argmax
        class under ``model`` itself, so a randomized model explains its own top class.
        A single-output model (N x 1) has ``target=0``.
    **settings
        Keyword settings; the defaults are the paper's (see :data:`DEFAULT_SETTINGS`).
        A setting that the method does not take raises TypeError.

        Every method:
            ``batch_size=32``: the most inputs (images x noise samples x IG steps) the
            model sees in one forward/backward pass; lower it when memory is short.
            ``progress=False``: show a progress bar over the batches.
        ``integrated_gradients``:
            ``n_steps=50``; ``baseline=0.0`` (all zeros *in the model's input space*,
            i.e. after ``preprocess``: mid-gray for inputs scaled to [-1, 1]), a number,
            or a tensor broadcastable to x; ``integration="gausslegendre"`` (Captum's
            quadrature rule; also ``"riemann_middle"``, ``"riemann_left"``,
            ``"riemann_right"``; the reference code averaged gradients at evenly spaced
            points; ``"gausslegendre_quadratic"``, Gauss-Legendre with nodes denser near the
            baseline, where a trained network's score changes most. Captum's
            ``"riemann_trapezoid"`` is refused: its weights sum to (n - 1) / n);
            ``internal_batch_size=None``
            (rows per pass, default ``batch_size``).
        ``smoothgrad`` / ``vargrad``:
            ``n_samples=50``, ``noise_level=0.15`` (noise std ``noise_level *
            (max(x_i) - min(x_i))`` per image), ``seed=0``. VarGrad is the population
            variance (divide by n) of the same noisy gradients SmoothGrad averages; see
            :func:`smoothgrad_noise` for the exact noise.
        ``integrated_gradients_smoothgrad``:
            SmoothGrad over IG (IG from the same baseline to each noisy copy), with the
            settings of both.
        ``guided_backprop``:
            Guided at every rectifier, however it is written (module, functional,
            in place, ReLU6, reused modules); raises :class:`UnsupportedModelError` for
            rectifiers without a guided rule (LeakyReLU, PReLU, ELU, custom autograd
            Functions). ``smooth="plain"``: warns for smooth activations, which it passes
            through as plain backprop (a network without rectifiers gets the plain
            gradient); ``smooth="guided"``: the guided clamp at them too, ``s'(z) *
            max(grad, 0)`` (also for ``guided_gradcam``).
        ``gradcam`` / ``guided_gradcam``:
            ``layer=None``: the last layer group (:func:`sanity_lib.models.layer_groups`)
            with a 4-D output, failing that the last ``nn.Conv2d`` that runs, taken after the
            nonlinearity module that follows it (past any normalization), as the paper and
            Selvaraju et al. explain a block's rectified output: EfficientNet's head, the
            MNIST CNN's ``act2`` (the ReLU after ``conv2``). Or a submodule or its dotted name.
        ``deeplift``:
            ``baseline=0.0`` as for IG. Captum's DeepLift (rescale rule).
        ``lrp_epsilon``:
            ``epsilon=1e-9``: Captum's LRP with the epsilon rule on every layer.

    Returns
    -------
    tensor
        Same shape as ``x``, batch first, on x's device, no grad. ``"gradcam"`` gives
        N x 1 x H x W: ReLU of the weighted channel sum, upsampled bilinearly to x's
        size and not normalized (an all-zero map stays zero, never NaN).

    Raises
    ------
    ValueError, TypeError
        Unknown method (with the closest name), a setting the method does not take, bad
        setting values, x of the wrong rank or channel count, NaN/inf in x, a target out
        of range, an unknown GradCAM layer.
    UnsupportedModelError (a ValueError)
        The method cannot explain this model, e.g. Guided Backprop through a LeakyReLU,
        or DeepLift / LRP through layers Captum has no rule for (ReLU6, reused modules).

    Examples
    --------
    >>> import torch
    >>> from sanity_lib.models import mnist_cnn
    >>> model = mnist_cnn()
    >>> x = torch.rand(2, 1, 28, 28)
    >>> explain(model, x, "gradient").shape
    torch.Size([2, 1, 28, 28])
    >>> explain(model, x, "smoothgrad", n_samples=4).shape
    torch.Size([2, 1, 28, 28])
    >>> explain(model, x, "gradcam").shape
    torch.Size([2, 1, 28, 28])
    """
    method = resolve_method(method)
    check_settings(method, settings)
    if REGISTRY[method].shares:
        from ._shared import explain_all

        return explain_all(model, x, {method: settings}, target=target)[method]
    return reference(model, x, method, target, **settings)


def reference(model: nn.Module, x: torch.Tensor, method: str,
              target: int | Sequence[int] | torch.Tensor | None = None,
              **settings: Any) -> torch.Tensor:
    """A method's map computed by its registry ``plan``, independently of the fused engine.

    The same arguments, checks and result as :func:`explain`; where :func:`explain` runs a
    method through the fused engine, this runs the method's own plan (Captum's
    implementation where Captum has one; ``_methods.py``), one chunk of images at a time.
    It is slower and exists to check the engine: ``explain(...)`` and ``reference(...)``
    agree up to float rounding for every method (``tests/test_fast_sweep.py``).

    Examples
    --------
    >>> import torch
    >>> from sanity_lib.models import mnist_cnn
    >>> model, x = mnist_cnn(), torch.rand(2, 1, 28, 28)
    >>> torch.allclose(reference(model, x, "gradient"), explain(model, x, "gradient"),
    ...                atol=1e-6)
    True
    """
    method = resolve_method(method)
    opts = check_settings(method, settings)
    check_model(model)
    x = check_input(model, x)
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        x = x.detach().clone()  # never touch the caller's tensor
        n_outputs = probe(model, x[:1], check_gradient=True).output_shape[1]
        targets = check_target(target, x.shape[0], n_outputs)
        fn, step = REGISTRY[method].plan(model, x, opts)
        starts = range(0, x.shape[0], step)
        if opts["progress"]:
            starts = tqdm(starts, desc=method, unit="batch")
        parts = []
        for start in starts:
            xb = x[start:start + step]
            tb = argmax_target(model, xb) if targets is None else targets[start:start + step]
            parts.append(fn(xb, tb, start).detach())
    return torch.cat(parts)


def explain_each(model: nn.Module, x: torch.Tensor,
                 methods: str | Mapping[str, Mapping[str, Any] | None] | Sequence[str],
                 target: int | Sequence[int] | torch.Tensor | None = None,
                 ) -> dict[str, torch.Tensor]:
    """Several methods' maps, one :func:`reference` call per method (no shared passes).

    The same contract as :func:`explain_all` (an *explainer* for the sanity checks); slower,
    but each map comes from the method's own plan, independent of the fused engine, which
    makes a whole sweep run with it the reference the default sweep is tested against.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor
    methods : dict of str to dict, or sequence of str
        Method names and their :func:`explain` settings.
    target : None, int, or N ints

    Returns
    -------
    dict of str to tensor

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> maps = explain_each(mnist_cnn(), torch.rand(2, 1, 28, 28), ["gradient", "gradcam"])
    >>> sorted(maps), tuple(maps["gradcam"].shape)
    (['gradcam', 'gradient'], (2, 1, 28, 28))
    """
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, dict):
        methods = {m: {} for m in methods}
    return {m: reference(model, x, m, target, **dict(s or {})) for m, s in methods.items()}
