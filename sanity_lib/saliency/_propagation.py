"""DeepLift and epsilon-LRP through Captum, on a copy of the model, after checking that
Captum's rules cover every nonlinearity the model computes.

Captum applies these rules to *modules* of known types. A nonlinearity of another type
(``nn.ReLU6``), one written functionally (``F.relu`` in ``forward``) or one module used
twice would silently be treated as linear (DeepLift) or break relevance conservation
(LRP). So a probe forward pass records, for every torch function call, the autograd node
it created and the innermost module running, and the model is refused with a message
naming the culprit. Captum also writes attributes and rules onto the modules it
explains, so it only ever sees a deep copy.
"""
import copy
import warnings

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ._inputs import UnsupportedModelError, module_names

__all__ = ["prepare_copy", "check_deeplift", "check_lrp", "deeplift", "lrp_epsilon", "lrp_zplus"]

_NONLINEAR_NODES = {
    "ReluBackward", "HardtanhBackward", "ThresholdBackward", "ClampBackward", "ClampMinBackward",
    "ClampMaxBackward", "LeakyReluBackward", "PreluKernelBackward", "RreluWithNoiseBackward",
    "EluBackward", "CeluBackward", "GeluBackward", "SiluBackward", "MishBackward",
    "HardswishBackward", "HardsigmoidBackward", "SoftplusBackward", "TanhBackward",
    "SigmoidBackward", "LogSigmoidBackward", "SoftmaxBackward", "LogSoftmaxBackward",
    "MaxPool2DWithIndicesBackward", "MaxPool3DWithIndicesBackward", "AdaptiveMaxPool2DBackward",
    "AdaptiveMaxPool3DBackward", "MaximumBackward", "MinimumBackward", "AbsBackward",
}
# Between LRP's ruled layers only reshaping, selecting, ReLU and max pooling keep the
# relevance bookkeeping right (the latter two pass relevance to where the input was kept).
_LRP_PASSTHROUGH_NODES = {
    "ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward", "PermuteBackward",
    "TransposeBackward", "TBackward", "SqueezeBackward", "UnsqueezeBackward", "CatBackward",
    "StackBackward", "SplitBackward", "SplitWithSizesBackward", "UnbindBackward",
    "SelectBackward", "SliceBackward", "IndexBackward", "CloneBackward", "ToCopyBackward",
    "AliasBackward", "ReluBackward", "MaxPool2DWithIndicesBackward", "MaxPool3DWithIndicesBackward",
}
# Modules that only move values around; epsilon-LRP through them is the identity.
_LRP_PASSTHROUGH_MODULES = (nn.Flatten, nn.Unflatten, nn.Identity)


def prepare_copy(model: nn.Module, method: str) -> nn.Module:
    """An eval-mode deep copy with nothing in place (Captum hooks need the inputs)."""
    try:
        clone = copy.deepcopy(model)
    except Exception as error:  # deepcopy can fail in many ways; report the cause
        raise UnsupportedModelError(
            f"{method} runs Captum on a copy of the model (Captum writes onto the modules it "
            f"explains), and this model cannot be deep-copied: {error}"
        ) from error
    if not list(clone.children()):
        clone = nn.Sequential(clone)  # Captum looks at submodules only
    clone.eval()
    for module in clone.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    return clone


class _Recorder(TorchFunctionMode):
    """Records (function name, autograd node name, innermost running module)."""

    def __init__(self, stack):
        super().__init__()
        self.stack = stack
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Nodes that exist before the call: an op that hands back its input (dropout in
        # eval, an identity) made no node of its own and must not be blamed for one.
        before = {id(a.grad_fn) for a in list(args) + list(kwargs.values())
                  if isinstance(a, torch.Tensor) and a.grad_fn is not None}
        out = func(*args, **kwargs)
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        node = getattr(first, "grad_fn", None) if isinstance(first, torch.Tensor) else None
        if node is not None and id(node) not in before:
            self.calls.append((getattr(func, "__name__", repr(func)),
                               type(node).__name__.rstrip("0123456789"),
                               self.stack[-1] if self.stack else None))
        return out


def _record(model: nn.Module, x1: torch.Tensor):
    stack, counts, handles = [], {}, []

    def pre(module, inputs):
        stack.append(module)

    def post(module, inputs, output):
        if stack and stack[-1] is module:
            stack.pop()
        counts[module] = counts.get(module, 0) + 1

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    recorder = _Recorder(stack)
    try:
        with torch.enable_grad(), recorder:
            model(x1.detach().clone().requires_grad_(True))
    finally:
        for handle in handles:
            handle.remove()
    return recorder.calls, counts


def _describe(names, module):
    if module is None:
        return "the model's forward"
    return f"{names[module] or '<model>'!r} ({type(module).__name__})"


class _Problems:
    """Problems grouped by kind, so 33 ReLU6 modules make one line, not 33."""

    def __init__(self):
        self.groups = {}

    def add(self, kind, where):
        places = self.groups.setdefault(kind, [])
        if where not in places:
            places.append(where)

    def raise_if_any(self, method, supported):
        if not self.groups:
            return
        lines = []
        for kind, places in self.groups.items():
            more = f" and {len(places) - 3} more" if len(places) > 3 else ""
            shown = ", ".join(places[:3]) + more
            lines.append(f"{kind}: {shown}")
        raise UnsupportedModelError(
            f"{method}: Captum's rules do not cover this model. " + "; ".join(lines)
            + f". Supported: {supported}"
        )


def check_deeplift(model: nn.Module, x1: torch.Tensor) -> None:
    """Every nonlinearity must be one call of a module type Captum's DeepLift knows."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    supported = tuple(SUPPORTED_NON_LINEAR)
    names = module_names(model)
    calls, counts = _record(model, x1)
    problems = _Problems()
    for func, node, module in calls:
        if node in _NONLINEAR_NODES and type(module) not in supported:
            if module is not None and not list(module.children()) and \
                    type(module).__module__.startswith("torch.nn"):
                problems.add(f"no DeepLift rule for {type(module).__name__}",
                             repr(names[module]))
            else:
                problems.add(f"functional {func} (make it its own module)",
                             f"in {_describe(names, module)}")
    for module, n in counts.items():
        if type(module) in supported and n > 1:
            problems.add("module used more than once per forward pass (give each use its own "
                         "module)", f"{_describe(names, module)} x{n}")
    problems.raise_if_any(
        "deeplift", "linear layers, batch norm, pooling and the modules "
        + ", ".join(t.__name__ for t in supported))


def _leaves(model):
    return [m for m in model.modules() if not list(m.children())]


def _lrp_ruled(leaf):
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES

    # Subclasses too (e.g. a Conv2d with 'same' padding): the epsilon rule only needs
    # the layer to be affine, which a subclass that pads or reshapes still is.
    return isinstance(leaf, tuple(SUPPORTED_LAYERS_WITH_RULES) + _LRP_PASSTHROUGH_MODULES)


def check_lrp(model: nn.Module, x1: torch.Tensor, method: str = "lrp_epsilon") -> None:
    """Every leaf that runs must have an LRP rule in Captum, each used once, and
    the code between them may only reshape, select, ReLU or max-pool."""
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS

    names = module_names(model)
    calls, counts = _record(model, x1)
    problems = _Problems()
    for leaf in _leaves(model):
        n = counts.get(leaf, 0)
        if n and not _lrp_ruled(leaf) and type(leaf) not in SUPPORTED_NON_LINEAR_LAYERS:
            problems.add(f"no LRP rule for {type(leaf).__name__}", repr(names[leaf]))
        elif n > 1:
            problems.add("module used more than once per forward pass",
                         f"{_describe(names, leaf)} x{n}")
    for func, node, module in calls:
        between = module is None or bool(list(module.children()))
        if between and node not in _LRP_PASSTHROUGH_NODES:
            problems.add(f"functional {func} between layers (make it a supported module)",
                         f"in {_describe(names, module)}")
    problems.raise_if_any(
        method, ", ".join(t.__name__ for t in SUPPORTED_LAYERS_WITH_RULES)
        + ", " + ", ".join(t.__name__ for t in SUPPORTED_NON_LINEAR_LAYERS)
        + " and Flatten, Unflatten, Identity")


def deeplift(model: nn.Module, x, target, baseline):
    from captum.attr import DeepLift

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        return DeepLift(model).attribute(x.detach(), baselines=baseline, target=target.to(x.device))


def _lrp(model: nn.Module, x, target, make_rule):
    from captum.attr import LRP
    from captum.attr._core.lrp import SUPPORTED_NON_LINEAR_LAYERS

    # Captum deletes the rules after every call, so they are attached each time.
    for leaf in _leaves(model):
        if type(leaf) in SUPPORTED_NON_LINEAR_LAYERS:
            if hasattr(leaf, "rule"):
                del leaf.rule
        else:  # ruled layers, and leaves that never run (Captum insists on a rule)
            leaf.rule = make_rule()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        return LRP(model).attribute(x.detach(), target=target.to(x.device))


def lrp_epsilon(model: nn.Module, x, target, epsilon: float):
    """LRP with the epsilon rule at every layer (Bach et al. 2015)."""
    from captum.attr._utils.lrp_rules import EpsilonRule

    return _lrp(model, x, target, lambda: EpsilonRule(epsilon=epsilon))


def lrp_zplus(model: nn.Module, x, target):
    """LRP with the z+ rule, i.e. alpha = 1, beta = 0, at every layer (Montavon et al. 2017):
    relevance flows only along positive contributions ``a_j w_jk^+``."""
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule

    return _lrp(model, x, target, Alpha1_Beta0_Rule)
