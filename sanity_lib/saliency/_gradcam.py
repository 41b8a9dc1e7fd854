"""GradCAM: which layer, and the map itself (Captum's LayerGradCam, upsampled bilinearly)."""
import difflib

import torch
import torch.nn.functional as F
from torch import nn

from ._inputs import Probe, module_names

__all__ = ["resolve_layer", "gradcam"]


def _groups(model):
    """sanity_lib's layer groups, or None where they cannot be had for this model."""
    try:
        from sanity_lib.models import layer_groups
    except ImportError:
        return None
    try:
        return layer_groups(model)
    except (TypeError, ValueError, NotImplementedError, AttributeError, KeyError):
        return None


# Modules that may sit between a convolution and the block's output: normalization, then the
# nonlinearity. GradCAM explains the block's rectified output, as Selvaraju et al. and the paper
# (Inception's Mixed_7c) do, not the raw convolution, whose weighted sum can be negative
# everywhere and give an all-zero map.
_NORMALIZATIONS = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)
_NONLINEARITIES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
                   nn.SiLU, nn.Mish, nn.Hardswish, nn.Softplus, nn.Tanh)


def _after_its_nonlinearity(names, module, probe: Probe):
    """The nonlinearity module that directly follows ``module`` in the forward pass (past any
    normalization), when there is one that runs once; else ``module`` itself."""
    chosen = module
    position = probe.order.index(module)
    for following in probe.order[position + 1:]:
        if probe.output_ndim.get(following) != 4:
            break
        if isinstance(following, _NONLINEARITIES) and probe.calls.get(following, 0) == 1:
            chosen = following
        elif not isinstance(following, _NORMALIZATIONS):
            break
    return names[chosen], chosen


def _default_layer(model, probe: Probe):
    """The last layer group with a 4-D output, else the last Conv2d that ran; in both cases
    taken after the nonlinearity module that follows it, if any (the MNIST CNN's ``act2``
    after ``conv2``). A nonlinearity written as a function call (``F.relu``) is not a module
    and cannot be seen: pass ``layer=`` there."""
    names = module_names(model)
    groups = _groups(model) or []
    ran = [m for _, m in groups if probe.output_ndim.get(m) == 4]
    if ran:
        return _after_its_nonlinearity(names, ran[-1], probe)
    convs = [m for m in probe.order if isinstance(m, nn.Conv2d) and probe.output_ndim.get(m) == 4]
    if convs:
        return _after_its_nonlinearity(names, convs[-1], probe)
    raise ValueError(
        "gradcam needs a convolutional layer (one with an N x C x h x w output), and this "
        "model ran none; pass layer= a submodule or its dotted name"
    )


def resolve_layer(model: nn.Module, layer, probe: Probe):
    """(name, module) of the layer to explain at; checks it runs once and gives 4-D maps."""
    names = module_names(model)
    if layer is None:
        name, module = _default_layer(model, probe)
    elif isinstance(layer, nn.Module):
        if layer not in names:
            raise ValueError(
                f"layer is a {type(layer).__name__} that is not part of this model; pass one "
                "of its own submodules (e.g. model.conv2, not a copy) or a dotted name"
            )
        name, module = names[layer], layer
    else:
        group_map = dict(_groups(model) or [])
        if layer in group_map:
            name, module = layer, group_map[layer]
        else:
            try:
                name, module = layer, model.get_submodule(layer)
            except AttributeError:
                options = list(group_map) + [n for n in names.values() if n]
                close = difflib.get_close_matches(layer, options, n=3, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"layer={layer!r} is not a submodule of {type(model).__name__}; {hint}"
                    f"expected a dotted name from model.named_modules(), e.g. "
                    f"{[n for n in names.values() if n][-5:]}"
                ) from None
    calls = probe.calls.get(module, 0)
    if calls == 0:
        raise ValueError(f"layer {name!r} does not run in the model's forward pass")
    if calls > 1:
        raise ValueError(
            f"layer {name!r} runs {calls} times in one forward pass, so its GradCAM map is "
            "ambiguous; choose a layer that is used once"
        )
    if probe.output_ndim.get(module) != 4:
        raise ValueError(
            f"gradcam needs a layer whose output is N x C x h x w; layer {name!r} "
            f"({type(module).__name__}) gives a {probe.output_ndim.get(module)}-D output"
        )
    return name, module


def gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """ReLU(sum_k alpha_k A^k), alpha_k the spatial mean of dS/dA^k, upsampled to x's size.

    No normalization happens here, so an all-zero map stays zero (never NaN).
    """
    from captum.attr import LayerGradCam

    cam = LayerGradCam(model, layer).attribute(
        x.detach(), target=target.to(x.device), relu_attributions=True,
    )
    # Bilinear weights are non-negative, so the upsampled map stays >= 0.
    return F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
