"""explain(): one call for every saliency method, batched, leaving the model as it was."""
import torch
from tqdm.auto import tqdm

from . import _gradcam, _guided, _noise, _propagation
from ._inputs import (argmax_target, check_baseline, check_input, check_model, check_target,
                      eval_mode, probe)
from ._settings import check_settings, resolve_method

__all__ = ["explain"]


def _leaf(x):
    # A fresh leaf that already requires grad: Captum then neither warns nor flips flags.
    return x.detach().requires_grad_(True)


def _gradient(model, x, target):
    from captum.attr import Saliency

    return Saliency(model).attribute(_leaf(x), target=target.to(x.device), abs=False)


def _gradient_x_input(model, x, target):
    from captum.attr import InputXGradient

    return InputXGradient(model).attribute(_leaf(x), target=target.to(x.device))


def _integrated_gradients(model, x, target, baseline, opts):
    from captum.attr import IntegratedGradients

    internal = opts["internal_batch_size"] or opts["batch_size"]
    return IntegratedGradients(model).attribute(
        _leaf(x), baselines=baseline, target=target.to(x.device), n_steps=opts["n_steps"],
        method=opts["integration"],
        # Captum needs room for at least one step of every image in the batch.
        internal_batch_size=max(internal, x.shape[0]),
    )


def _plan(method, model, x, opts):
    """(fn(x_chunk, target_chunk, start) -> attributions, images per chunk)."""
    bs = opts["batch_size"]
    if method == "gradient":
        return (lambda xb, tb, s: _gradient(model, xb, tb)), bs
    if method == "gradient_x_input":
        return (lambda xb, tb, s: _gradient_x_input(model, xb, tb)), bs
    if method in ("integrated_gradients", "integrated_gradients_smoothgrad", "deeplift"):
        baseline = check_baseline(opts["baseline"], x)
    if method == "integrated_gradients":
        def ig(xb, tb, s):
            return _integrated_gradients(model, xb, tb, baseline[s:s + len(xb)].contiguous(),
                                         opts)
        return ig, bs
    noisy_chunk = max(1, bs // opts.get("n_samples", 1))
    if method in ("smoothgrad", "vargrad"):
        statistic = "var" if method == "vargrad" else "mean"

        def noisy_gradient(xb, tb, s):
            return _noise.noisy_statistic(lambda rows, t: _gradient(model, rows, t),
                                          xb, tb, s, opts, statistic)
        return noisy_gradient, noisy_chunk
    if method == "integrated_gradients_smoothgrad":
        def noisy_ig(xb, tb, s):
            base = baseline[s:s + len(xb)].contiguous()

            def ig(rows, t):
                copies = rows.shape[0] // base.shape[0]  # rows are sample-major
                reps = base.repeat((copies,) + (1,) * (base.dim() - 1))
                return _integrated_gradients(model, rows, t, reps, opts)
            return _noise.noisy_statistic(ig, xb, tb, s, opts, "mean")
        return noisy_ig, noisy_chunk
    if method == "guided_backprop":
        return (lambda xb, tb, s: _guided.guided_backprop(model, xb, tb, warn=s == 0)), bs
    if method in ("gradcam", "guided_gradcam"):
        if x.dim() != 4:
            raise ValueError(
                f"{method} needs image input N x C x H x W; got x of shape {tuple(x.shape)}"
            )
        _, layer = _gradcam.resolve_layer(model, opts["layer"], probe(model, x[:1], True))
        if method == "gradcam":
            return (lambda xb, tb, s: _gradcam.gradcam(model, layer, xb, tb)), bs

        def guided_gradcam(xb, tb, s):
            guided = _guided.guided_backprop(model, xb, tb, warn=s == 0)
            return guided * _gradcam.gradcam(model, layer, xb, tb)
        return guided_gradcam, bs
    clone = _propagation.prepare_copy(model, method)
    if method == "deeplift":
        _propagation.check_deeplift(clone, x[:1])
        # Captum's DeepLift runs inputs and baselines as one batch of twice the size.
        return (lambda xb, tb, s: _propagation.deeplift(
            clone, xb, tb, baseline[s:s + len(xb)].contiguous())), max(1, bs // 2)
    if method == "lrp_epsilon":
        _propagation.check_lrp(clone, x[:1])
        return (lambda xb, tb, s: _propagation.lrp_epsilon(clone, xb, tb, opts["epsilon"])), bs
    raise AssertionError(method)  # pragma: no cover


def explain(model, x, method, target=None, **settings):
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
            points. Captum's ``"riemann_trapezoid"`` is refused: its weights sum to
            (n - 1) / n); ``internal_batch_size=None``
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
            none. Guided at every rectifier, however it is written (module, functional,
            in place, ReLU6, reused modules); raises :class:`UnsupportedModelError` for
            rectifiers without a guided rule (LeakyReLU, PReLU, ELU, custom autograd
            Functions) and warns for smooth activations, which it passes through as plain
            backprop (a network without rectifiers gets the plain gradient).
        ``gradcam`` / ``guided_gradcam``:
            ``layer=None``: the last layer group (:func:`sanity_lib.models.layer_groups`)
            with a 4-D output, e.g. EfficientNet's head or the MNIST CNN's conv2; failing
            that, the last ``nn.Conv2d`` that runs. Or a submodule or its dotted name.
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
    opts = check_settings(method, settings)
    check_model(model)
    x = check_input(model, x)
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        x = x.detach().clone()  # never touch the caller's tensor
        n_outputs = probe(model, x[:1]).output_shape[1]
        targets = check_target(target, x.shape[0], n_outputs)
        fn, step = _plan(method, model, x, opts)
        starts = range(0, x.shape[0], step)
        if opts["progress"]:
            starts = tqdm(starts, desc=method, unit="batch")
        parts = []
        for start in starts:
            xb = x[start:start + step]
            tb = argmax_target(model, xb) if targets is None else targets[start:start + step]
            parts.append(fn(xb, tb, start).detach())
    return torch.cat(parts)
