"""Guided Backprop that is guided at every rectifier, however the model writes it.

Captum's ``GuidedBackprop`` hooks ``nn.ReLU`` modules only. ``nn.ReLU6`` (EfficientNet),
a functional or in-place ``F.relu`` (torchvision's Inception) and one ReLU module used
twice all escape it, and the result quietly becomes the plain gradient.

Here a :class:`torch.overrides.TorchFunctionMode` is active during the forward pass.
Every torch function call passes through it, whether it comes from a module
(``nn.ReLU`` calls ``F.relu``, ``nn.ReLU6`` calls ``F.hardtanh(x, 0, 6)``) or from the
model's own code, and each rectifier is replaced by :class:`_GuidedRectifier`: the same
forward, and a backward that passes ``grad * (grad > 0) * (0 < input < upper)``.

Rectifiers: ``relu``/``relu_`` (function or method), ``relu6``, ``hardtanh`` with
``min_val=0``, ``threshold(x, 0, 0)`` and ``clamp``/``clamp_min``/``clip`` with ``min=0``
(and a positive or no max).

Afterwards the autograd graph is walked as a safety net. A rectifier node that escaped
the mode (``torch.ops.aten.relu``, TorchScript, a C++ extension) raises, as do
rectifier-like ops with no agreed guided rule (LeakyReLU, PReLU, RReLU, ELU, SELU, CELU)
and custom autograd Functions, whose backward cannot be guided from outside. Smooth
activations (softplus, tanh, sigmoid, GELU, SiLU, ...) are not rectifiers: by default
(``smooth="plain"``) gradients pass through them as in plain backprop, with a
:class:`SaliencyWarning`, so on a network without rectifiers "Guided Backprop" is the
gradient. ``smooth="guided"`` applies the guided clamp at them too: the backward of
``y = s(z)`` becomes ``s'(z) * max(grad_y, 0)``, the same rule as at a ReLU, whose
derivative is the indicator ``z > 0``.
"""
import math
import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import BackwardCFunction
from torch.overrides import TorchFunctionMode

from ._inputs import UnsupportedModelError, module_names

__all__ = ["SaliencyWarning", "guided_backprop", "guided_rectifiers", "SMOOTH_RULES"]

#: What ``guided_backprop`` does at smooth activations (its ``smooth=`` setting).
SMOOTH_RULES = ("plain", "guided")


class SaliencyWarning(UserWarning):
    """A saliency map was computed, but with a caveat worth knowing."""


class _GuidedRectifier(torch.autograd.Function):
    """max(0, x) (or clamp(x, 0, upper)) whose backward is guided."""

    @staticmethod
    def forward(ctx, x, upper, inplace):
        if inplace:
            out = x.clamp_(min=0, max=upper)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0, max=upper)
        ctx.upper = upper
        # The output tells where the input was open (0 < x < upper), and unlike the
        # input it survives an in-place forward.
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        open_ = out > 0
        if ctx.upper is not None:
            open_ = open_ & (out < ctx.upper)
        return grad.clamp(min=0) * open_, None, None


class _GuidedSmooth(torch.autograd.Function):
    """A smooth elementwise activation whose backward is ``s'(z) * max(grad, 0)``."""

    @staticmethod
    def forward(ctx, x, func, kwargs):
        ctx.func, ctx.kwargs = func, kwargs
        ctx.save_for_backward(x)
        return func(x, **kwargs)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            # elementwise: the vector-Jacobian product with max(grad, 0) is s'(z) * max(grad, 0)
            (d,) = torch.autograd.grad(ctx.func(z, **ctx.kwargs), z, grad.clamp(min=0))
        return d, None, None


# Smooth elementwise activations the guided clamp can act at (smooth="guided").
_SMOOTH_FUNCS = {f for f in (
    F.softplus, torch.tanh, torch.Tensor.tanh, F.tanh, torch.sigmoid, torch.Tensor.sigmoid,
    F.sigmoid, F.gelu, F.silu, F.mish, F.elu, F.selu, F.celu, F.logsigmoid,
    *(getattr(torch._C._nn, name, None)
      for name in ("gelu", "softplus", "silu", "mish", "log_sigmoid", "elu")),
) if f is not None}


def _number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_nn = torch._C._nn
_HARDTANH = (("min_val", -1.0), ("max_val", 1.0))
_THRESHOLD = (("threshold", None), ("value", None))
_CLAMP = (("min", None), ("max", None))
# Every torch entry point of a rectifier: (functions, kind, the parameters after the
# input with their defaults, in place: True / False / the name of the inplace flag).
_TABLE = [
    ([F.relu], "relu", (("inplace", False),), "inplace"),
    ([torch.relu, torch.Tensor.relu], "relu", (), False),
    ([torch.relu_, torch.Tensor.relu_, F.relu_], "relu", (), True),
    ([F.relu6], "relu6", (("inplace", False),), "inplace"),
    ([getattr(_nn, "relu6", None)], "relu6", (), False),
    ([getattr(_nn, "relu6_", None)], "relu6", (), True),
    ([F.hardtanh], "hardtanh", _HARDTANH + (("inplace", False),), "inplace"),
    ([getattr(_nn, "hardtanh", None)], "hardtanh", _HARDTANH, False),
    ([F.hardtanh_, getattr(_nn, "hardtanh_", None)], "hardtanh", _HARDTANH, True),
    ([F.threshold], "threshold", _THRESHOLD + (("inplace", False),), "inplace"),
    ([torch.threshold], "threshold", _THRESHOLD, False),
    ([F.threshold_, torch.threshold_], "threshold", _THRESHOLD, True),
    ([torch.clamp, torch.clip, torch.Tensor.clamp, torch.Tensor.clip], "clamp", _CLAMP, False),
    ([torch.clamp_, torch.clip_, torch.Tensor.clamp_, torch.Tensor.clip_], "clamp", _CLAMP, True),
    ([torch.clamp_min, torch.Tensor.clamp_min], "clamp", _CLAMP[:1], False),
    ([torch.clamp_min_, torch.Tensor.clamp_min_], "clamp", _CLAMP[:1], True),
]
_RECTIFIERS = {func: (kind, params, inplace) for funcs, kind, params, inplace in _TABLE
               for func in funcs if func is not None}


def _as_rectifier(func, args, kwargs):
    """(input, upper, inplace) when this call is a rectifier, else None."""
    kind, params, inplace = _RECTIFIERS[func]
    kwargs = dict(kwargs)
    if args:
        x, rest = args[0], args[1:]
    else:
        x = kwargs.pop("input", kwargs.pop("self", None))
        rest = ()
    values = dict(params)
    values.update(zip([name for name, _ in params], rest))
    values.update(kwargs)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return None
    inplace = bool(values.get(inplace, False)) if isinstance(inplace, str) else inplace
    upper = None
    if kind == "relu6":
        upper = 6.0
    elif kind == "hardtanh":
        low, high = values["min_val"], values["max_val"]
        if not (_number(low) and low == 0 and _number(high) and high > 0):
            return None
        upper = high
    elif kind == "threshold":
        if not (_number(values["threshold"]) and values["threshold"] == 0
                and _number(values["value"]) and values["value"] == 0):
            return None
    elif kind == "clamp":
        low, high = values.get("min"), values.get("max")
        if not (_number(low) and low == 0):
            return None
        if high is not None and not (_number(high) and high > 0):
            return None
        upper = high
    if upper is not None and math.isinf(upper):
        upper = None
    return x, (None if upper is None else float(upper)), inplace


class guided_rectifiers(TorchFunctionMode):
    """Context manager: inside it, every rectifier in a forward pass is guided.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 3), nn.ReLU6(), nn.Linear(3, 1))
    >>> x = torch.randn(2, 3, requires_grad=True)
    >>> with guided_rectifiers() as mode:
    ...     out = net(x)
    >>> mode.n_guided
    1
    """

    def __init__(self, smooth: str = "plain"):
        super().__init__()
        self.smooth = smooth
        self.n_guided = 0
        self.n_smooth_guided = 0
        self.handwritten = set()  # rectifier-like calls it cannot guide (torch.where, x > 0)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RECTIFIERS:
            call = _as_rectifier(func, args, kwargs)
            if call is not None:
                self.n_guided += 1
                return _GuidedRectifier.apply(*call)
        if (self.smooth == "guided" and func in _SMOOTH_FUNCS and args
                and isinstance(args[0], torch.Tensor) and args[0].is_floating_point()
                and not kwargs.get("inplace", False)):
            bound = dict(kwargs)
            rest = args[1:]
            if rest:  # positional options (e.g. F.softplus(x, beta, threshold)): keep them
                func_, extra = func, rest
                call = lambda z, **kw: func_(z, *extra, **kw)  # noqa: E731
            else:
                call = func
            self.n_smooth_guided += 1
            return _GuidedSmooth.apply(args[0], call, bound)
        if func in _HANDWRITTEN and _looks_handwritten(func, args):
            self.handwritten.add(_HANDWRITTEN[func])
        return func(*args, **kwargs)


# Calls with which people write a rectifier by hand; the guided rule cannot see them.
_HANDWRITTEN = {
    torch.where: "torch.where", torch.Tensor.where: "torch.where",
    torch.maximum: "torch.maximum", torch.Tensor.maximum: "torch.maximum",
    torch.fmax: "torch.fmax",
    torch.gt: "a comparison with 0 (e.g. x * (x > 0))",
    torch.Tensor.gt: "a comparison with 0 (e.g. x * (x > 0))",
    torch.Tensor.__gt__: "a comparison with 0 (e.g. x * (x > 0))",
    torch.ge: "a comparison with 0 (e.g. x * (x >= 0))",
    torch.Tensor.ge: "a comparison with 0 (e.g. x * (x >= 0))",
    torch.Tensor.__ge__: "a comparison with 0 (e.g. x * (x >= 0))",
}


def _looks_handwritten(func, args) -> bool:
    """A hand-written rectifier acts on an activation (a tensor that carries a gradient)."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not any(t.requires_grad for t in tensors):
        return False
    if _HANDWRITTEN[func].startswith("a comparison"):
        return len(args) > 1 and _number(args[1]) and args[1] == 0
    return True


# Autograd node names (without the trailing version digit).
_UNGUIDABLE = {
    "LeakyReluBackward": "LeakyReLU", "PreluKernelBackward": "PReLU", "PreluBackward": "PReLU",
    "RreluWithNoiseBackward": "RReLU", "EluBackward": "ELU/SELU", "CeluBackward": "CELU",
    "DifferentiableGraphBackward": "a TorchScript graph",
}
_UNGUIDABLE_MODULES = {
    "LeakyReLU": (nn.LeakyReLU,), "PReLU": (nn.PReLU,), "RReLU": (nn.RReLU,),
    "ELU/SELU": (nn.ELU, nn.SELU), "CELU": (nn.CELU,),
}
_SMOOTH = {
    "SoftplusBackward": "Softplus", "TanhBackward": "Tanh", "SigmoidBackward": "Sigmoid",
    "GeluBackward": "GELU", "SiluBackward": "SiLU", "MishBackward": "Mish",
    "HardswishBackward": "Hardswish", "HardsigmoidBackward": "Hardsigmoid",
    "LogSigmoidBackward": "LogSigmoid", "SoftshrinkBackward": "Softshrink",
    "HardshrinkBackward": "Hardshrink",
}


def _saved(node, name):
    value = getattr(node, name, None)
    return value if _number(value) else None


def _walk(root):
    seen, stack = {}, [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node  # keeps the node alive, so ids stay unique
        yield node
        stack.extend(child for child, _ in node.next_functions)


def _graph_report(root):
    """Guided, escaped, unguidable and smooth nonlinearities in an autograd graph."""
    guided, escaped, unguidable, smooth = 0, set(), set(), set()
    for node in _walk(root):
        name = type(node).__name__.rstrip("0123456789")
        if isinstance(node, BackwardCFunction):
            cls = getattr(node, "_forward_cls", None)
            if cls is _GuidedRectifier:
                guided += 1
            elif cls is _GuidedSmooth:
                pass  # counted by the mode (smooth="guided")
            else:
                unguidable.add(f"the custom autograd Function {getattr(cls, '__qualname__', name)}")
        elif name == "ReluBackward":
            escaped.add(name)
        elif name == "HardtanhBackward":
            if _saved(node, "_saved_min_val") == 0:
                escaped.add(name)
            else:
                smooth.add("Hardtanh")
        elif name == "ThresholdBackward" and _saved(node, "_saved_threshold") == 0:
            escaped.add(name)
        elif name in ("ClampMinBackward", "ClampBackward") and _saved(node, "_saved_min") == 0:
            escaped.add(name)
        elif name in _UNGUIDABLE:
            unguidable.add(_UNGUIDABLE[name])
        elif name in _SMOOTH:
            smooth.add(_SMOOTH[name])
    return guided, escaped, unguidable, smooth


def _where(model, op_names):
    names = module_names(model)
    types = tuple(t for op in op_names for t in _UNGUIDABLE_MODULES.get(op, ()))
    found = [f"{names[m] or '<model>'!r} ({type(m).__name__})" for m in model.modules()
             if types and isinstance(m, types)]
    return f" (modules: {', '.join(found[:5])}{' ...' if len(found) > 5 else ''})" if found else ""


def guided_backprop(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                    warn: bool = True, smooth: str = "plain") -> torch.Tensor:
    """d(guided)S_target/dx for one batch; raises when a rectifier cannot be guided.

    ``smooth="guided"`` also clamps the gradient at smooth activations (see the module)."""
    x = x.detach().clone().requires_grad_(True)
    with guided_rectifiers(smooth) as mode:
        out = model(x)
    if out.grad_fn is None:
        return torch.zeros_like(x)
    guided, escaped, unguidable, smooth_found = _graph_report(out.grad_fn)
    if smooth == "guided":
        guided += mode.n_smooth_guided
        unguidable = {u for u in unguidable if "_GuidedSmooth" not in u}
    smooth = smooth_found
    if unguidable:
        ops = sorted(unguidable)
        raise UnsupportedModelError(
            f"guided_backprop cannot guide {', '.join(ops)}{_where(model, ops)}. Guided "
            "Backprop is defined for rectifiers (ReLU, ReLU6, clamp(min=0)); leaky or "
            "parametric rectifiers, exponential units and custom autograd Functions have no "
            "guided rule, and returning the plain gradient under the name GBP would mislead. "
            "Use nn.ReLU, or a method that does not modify backprop (e.g. 'gradient')"
        )
    if escaped:
        raise UnsupportedModelError(
            "guided_backprop found rectifiers it could not intercept "
            f"({', '.join(sorted(escaped))}: "
            "e.g. torch.ops.aten.relu, a TorchScript module or a C++ extension), so their "
            "gradients would not be guided. Call rectifiers through torch or torch.nn.functional "
            "(F.relu, nn.ReLU, ...), or use another method"
        )
    if warn and mode.handwritten:
        found = ", ".join(sorted(mode.handwritten))
        what = (f"only {guided} rectifier call(s) could be guided" if guided else
                "found no rectifier it can guide, so the map is the plain gradient")
        warnings.warn(
            f"guided_backprop {what}: the forward pass uses {found} on activations, which "
            "looks like a rectifier written by hand; Guided Backprop cannot see it and passes "
            "its gradient unguided. Write it as F.relu or nn.ReLU to guide it",
            SaliencyWarning, stacklevel=4)
    elif warn and (smooth or not guided):
        message = "guided_backprop: "
        if smooth:
            message += (
                f"the model's {', '.join(sorted(smooth))} activations are not rectifiers; "
                "Guided Backprop guides only rectifiers (ReLU, ReLU6, clamp(min=0)) and "
                "passes gradients through other activations as plain backprop does. "
            )
        message += (f"{guided} rectifier call(s) were guided." if guided else
                    "this model has no rectifier at all, so GBP equals the plain gradient.")
        warnings.warn(message, SaliencyWarning, stacklevel=4)
    score = out.gather(1, target.to(out.device)[:, None]).sum()
    (grad,) = torch.autograd.grad(score, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad
