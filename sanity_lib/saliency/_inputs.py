"""Checks of the model, the input batch, the target and the baseline; the model's mode;
and a probe forward pass that tells which modules run and what they output."""
import contextlib
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["UnsupportedModelError", "check_model", "check_input", "check_target",
           "check_baseline", "eval_mode", "Probe", "probe",
           "module_names"]


class UnsupportedModelError(ValueError):
    """The method cannot explain this model (e.g. Guided Backprop through a LeakyReLU)."""


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def module_names(model: nn.Module) -> dict:
    """Module -> its dotted path in the model ('' for the model itself)."""
    return {module: name for name, module in model.named_modules()}


def _first_layer(model):
    for name, module in model.named_modules():
        lazy = isinstance(module, nn.modules.lazy.LazyModuleMixin)
        if isinstance(module, _CONV + (nn.Linear,)) and not lazy:
            return name, module
    return None, None


def check_input(model: nn.Module, x) -> torch.Tensor:
    """x must be a finite floating-point batch that fits the model's first layer."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            "x must be a torch.Tensor, batch first (N x C x H x W for images); got "
            f"{type(x).__name__}. Convert with torch.as_tensor(x, dtype=torch.float32)"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point tensor (the model's preprocessed input); got dtype "
            f"{x.dtype}. Scale images to [0, 1] and apply model.preprocess first"
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(
            f"x must be a non-empty batch with the batch dimension first (e.g. N x C x H x W); "
            f"got shape {tuple(x.shape)}. For one image use x.unsqueeze(0)"
        )
    name, layer = _first_layer(model)
    if isinstance(layer, _CONV):
        rank = layer.weight.dim()
        dims = {3: "N x C x L", 4: "N x C x H x W", 5: "N x C x D x H x W"}[rank]
        if x.dim() != rank:
            extra = " For one image use x.unsqueeze(0)." if x.dim() == rank - 1 else ""
            raise ValueError(
                f"x must have {rank} dimensions ({dims}) for this model, whose first layer "
                f"{name!r} is a {type(layer).__name__}; got shape {tuple(x.shape)}.{extra}"
            )
        if x.shape[1] != layer.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels (shape {tuple(x.shape)}), but the model's first "
                f"layer {name!r} expects {layer.in_channels}; pass N x {layer.in_channels} x ... "
                "inputs (grayscale vs color?)"
            )
    elif isinstance(layer, nn.Linear):
        per_sample = int(np.prod(x.shape[1:]))
        if per_sample != layer.in_features and x.shape[-1] != layer.in_features:
            raise ValueError(
                f"x has {per_sample} values per sample (shape {tuple(x.shape)}), but the "
                f"model's first layer {name!r} is a Linear over {layer.in_features} features"
            )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ValueError(
            f"x contains {n_nan} NaN and {n_inf} infinite values; saliency maps need finite "
            "inputs (check the preprocessing, e.g. a division by a zero std)"
        )
    params = list(model.parameters()) + list(model.buffers())
    if params and params[0].device != x.device:
        raise ValueError(
            f"x is on {x.device} but the model is on {params[0].device}; move one of them, "
            f"e.g. x.to({str(params[0].device)!r})"
        )
    weights = [p for p in params if p.is_floating_point()]
    if weights and weights[0].dtype != x.dtype:
        raise TypeError(
            f"x is {x.dtype} but the model's weights are {weights[0].dtype}; convert one, "
            f"e.g. x.to({weights[0].dtype})"
        )
    return x


def check_target(target, n: int, n_outputs: int):
    """None (use the argmax) or an N-long int64 tensor of class indices."""
    if target is None:
        return None
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"target must be an int or N ints, got {target!r}")
    if isinstance(target, numbers.Integral):
        t = torch.full((n,), int(target), dtype=torch.long)
    else:
        try:
            t = torch.as_tensor(target)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"target must be None, an int or a sequence of N ints; got {type(target).__name__}"
            ) from None
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
        if t.dim() == 0:
            t = t.reshape(1).expand(n)
        if t.dim() != 1 or t.shape[0] != n:
            raise ValueError(
                f"target must be one int or one int per image (length {n}); got shape "
                f"{tuple(t.shape)}"
            )
        t = t.to(torch.long).cpu()
    bad = (t < 0) | (t >= n_outputs)
    if bool(bad.any()):
        wrong = t[bad][0].item()
        if n_outputs == 1:
            valid = "target must be 0"
        else:
            valid = f"a class index must be in 0..{n_outputs - 1}"
        raise ValueError(
            f"target={wrong} is out of range: the model has {n_outputs} output "
            f"column{'s' if n_outputs != 1 else ''}, so {valid}"
        )
    return t


def check_baseline(baseline, x: torch.Tensor) -> torch.Tensor:
    """The baseline as a (broadcast, so memory-free) view of x's shape, dtype and device."""
    if not isinstance(baseline, torch.Tensor):
        return torch.tensor(float(baseline), dtype=x.dtype, device=x.device).expand(x.shape)
    if not baseline.is_floating_point():
        baseline = baseline.to(x.dtype)
    try:
        full = torch.broadcast_to(baseline.to(device=x.device, dtype=x.dtype), x.shape)
    except RuntimeError:
        raise ValueError(
            f"baseline of shape {tuple(baseline.shape)} does not broadcast to x's shape "
            f"{tuple(x.shape)}; pass one image (e.g. C x H x W or 1 x C x H x W), one per "
            "image, or a number"
        ) from None
    if not bool(torch.isfinite(full).all()):
        raise ValueError("baseline contains NaN or infinite values")
    return full


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run in eval mode and give every submodule its own training flag back afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@dataclass
class Probe:
    """What one forward pass of the model did."""

    output_shape: tuple
    calls: dict = field(default_factory=dict)        # module -> number of calls
    output_ndim: dict = field(default_factory=dict)  # module -> ndim of its (first) output
    order: list = field(default_factory=list)        # modules in the order they finished


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _check_output(out, x1) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the model must return one tensor of class scores (N x K); it returned "
            f"{type(out).__name__}. Wrap it so that forward returns the logits"
        )
    if out.dim() != 2 or out.shape[0] != x1.shape[0]:
        raise ValueError(
            f"the model must return N x K class scores (N x 1 for a single output); for "
            f"{x1.shape[0]} input(s) it returned shape {tuple(out.shape)}"
        )
    return out


def _run(model: nn.Module, x1: torch.Tensor):
    """The model on a few inputs; torch's shape errors become one message about the input."""
    try:
        return model(x1)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if any(word in first for word in ("shape", "size", "dimension", "mat1", "channels")):
            raise ValueError(
                f"the model cannot run on x of shape {tuple(x1.shape)[1:]} per image ({first}); "
                "pass inputs of the size the model was built for (e.g. 1 x 28 x 28 for the "
                "MNIST networks, 3 x 224 x 224 for EfficientNet-Lite0), after model.preprocess"
            ) from err
        raise


def probe(model: nn.Module, x1: torch.Tensor, track_modules: bool = False,
          check_gradient: bool = False) -> Probe:
    """One forward pass on a few images; with ``track_modules``, temporary forward hooks
    (removed again) record every module's calls and output rank; with ``check_gradient``,
    the pass runs with autograd and the scores must be finite and reach back to the input."""
    result = Probe(output_shape=())
    handles = []
    if track_modules:
        def hook(module, inputs, output):
            result.calls[module] = result.calls.get(module, 0) + 1
            if module not in result.output_ndim:
                result.order.append(module)
                first = _first_tensor(output)
                result.output_ndim[module] = None if first is None else first.dim()

        handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        if check_gradient:
            with torch.enable_grad():
                leaf = x1.detach().clone().requires_grad_(True)
                out = _check_output(_run(model, leaf), leaf)
                _check_gradient(out, leaf)
        else:
            with torch.no_grad():
                out = _check_output(_run(model, x1), x1)
    finally:
        for handle in handles:
            handle.remove()
    result.output_shape = tuple(out.shape)
    return result


def _reaches(out: torch.Tensor, leaf: torch.Tensor) -> bool:
    """Whether the autograd graph of ``out`` leads back to ``leaf`` (a walk, no backward)."""
    if out.grad_fn is None:
        return False
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if getattr(node, "variable", None) is leaf:  # AccumulateGrad of the input
            return True
        stack.extend(child for child, _ in node.next_functions)
    return False


def _check_gradient(out: torch.Tensor, leaf: torch.Tensor) -> None:
    """The scores must be finite and depend on the input through autograd, or every
    gradient map would be silently NaN or zero."""
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            "the model's class scores hold NaN or infinite values for this input, so every "
            "saliency map would too; check the model's weights (e.g. a training run that "
            "diverged) and the input's range")
    if not _reaches(out, leaf):
        raise UnsupportedModelError(
            "the model's output does not depend on its input through autograd (no gradient "
            "reaches x), so gradient maps would be all zero; remove torch.no_grad(), "
            ".detach() or .numpy() round trips from forward")


def argmax_target(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Each image's top class under the model being explained (the paper's choice)."""
    with torch.no_grad():
        return model(x).argmax(dim=1).cpu()
