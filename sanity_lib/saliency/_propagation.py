"""DeepLift and epsilon-LRP through Captum, on a copy of the model, after checking that
Captum's rules cover every nonlinearity the model computes.

Captum applies these rules to *modules* of known types. A nonlinearity of another type
(``nn.ReLU6``), one written functionally (``F.relu`` in ``forward``) or one module used
twice would silently be treated as linear (DeepLift) or break relevance conservation
(LRP). So a probe forward pass records, for every torch function call, the autograd node
it created and the innermost module running, and the model is refused with a message
naming the culprit. Captum also writes attributes and rules onto the modules it
explains, so it only ever sees a deep copy.

Captum has no general alpha-beta rule, so :func:`lrp_alpha_beta` is ours: the same copy,
the same kind of check (with its own list of layers it has a rule for), and a backward pass
in which every affine layer hands its inputs their alpha-beta share of the relevance.
"""
import copy
import warnings

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from sanity_lib._validation import check_real

from ._inputs import UnsupportedModelError, module_names

__all__ = ["prepare_copy", "check_deeplift", "check_lrp", "deeplift", "lrp_epsilon", "lrp_zplus",
           "check_alpha_beta", "check_lrp_alpha_beta", "lrp_alpha_beta", "alpha_beta_relevance"]

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

    def raise_if_any(self, method, supported, whose="Captum's rules do"):
        if not self.groups:
            return
        lines = []
        for kind, places in self.groups.items():
            more = f" and {len(places) - 3} more" if len(places) > 3 else ""
            shown = ", ".join(places[:3]) + more
            lines.append(f"{kind}: {shown}")
        raise UnsupportedModelError(
            f"{method}: {whose} not cover this model. " + "; ".join(lines)
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

    problems = _layerwise_problems(
        model, x1, "LRP",
        lambda leaf: _lrp_ruled(leaf) or type(leaf) in SUPPORTED_NON_LINEAR_LAYERS)
    problems.raise_if_any(
        method, ", ".join(t.__name__ for t in SUPPORTED_LAYERS_WITH_RULES)
        + ", " + ", ".join(t.__name__ for t in SUPPORTED_NON_LINEAR_LAYERS)
        + " and Flatten, Unflatten, Identity")


def _layerwise_problems(model, x1, rule, has_rule):
    """What a layer-by-layer rule cannot follow: a leaf that runs without a rule
    (``has_rule(leaf)`` false), a leaf run twice, and code between the layers that does
    more than reshape, select, ReLU or max-pool."""
    names = module_names(model)
    calls, counts = _record(model, x1)
    problems = _Problems()
    for leaf in _leaves(model):
        n = counts.get(leaf, 0)
        if n and not has_rule(leaf):
            problems.add(f"no {rule} rule for {type(leaf).__name__}", repr(names[leaf]))
        elif n > 1:
            problems.add("module used more than once per forward pass",
                         f"{_describe(names, leaf)} x{n}")
    for func, node, module in calls:
        between = module is None or bool(list(module.children()))
        if between and node not in _LRP_PASSTHROUGH_NODES:
            problems.add(f"functional {func} between layers (make it a supported module)",
                         f"in {_describe(names, module)}")
    return problems


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


# ----------------------------------------------------------------------------- LRP alpha-beta

# Layers the alpha-beta rule handles. Affine ones (subclasses too, e.g. a Conv2d that pads
# in its forward) split their contributions; the rest hand relevance on as the gradient
# does: ReLU to where it let the input through, max pooling to the winner, Dropout (eval),
# Flatten, Unflatten and Identity unchanged.
_AB_WEIGHTED = (nn.Linear, nn.Conv2d)
_AB_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_AB_POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_AB_PASSTHROUGH = (nn.ReLU, nn.MaxPool2d, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                   nn.Dropout3d) + _LRP_PASSTHROUGH_MODULES
_AB_SUPPORTED = ("Linear, Conv2d (and subclasses), BatchNorm1d, BatchNorm2d (with running "
                 "statistics), AvgPool2d, AdaptiveAvgPool2d, MaxPool2d, ReLU, Dropout, "
                 "Flatten, Unflatten, Identity")


def check_alpha_beta(alpha, beta) -> tuple:
    """The checked ``(alpha, beta)`` of the alpha-beta rule, as floats.

    The rule conserves relevance only when ``alpha - beta = 1`` (checked to 1e-9), and
    reads as "positive evidence minus negative evidence" only with ``alpha >= 1`` and
    ``beta >= 0``; anything else raises ValueError.

    Examples
    --------
    >>> check_alpha_beta(2, 1)
    (2.0, 1.0)
    >>> check_alpha_beta(2.0, 0.0)
    Traceback (most recent call last):
    ...
    ValueError: the LRP alpha-beta rule needs alpha - beta = 1 (only then is relevance conserved), got alpha=2.0, beta=0.0
    """
    alpha = check_real("alpha", alpha, 1.0,
                       why="the LRP alpha-beta rule's weight of positive contributions")
    beta = check_real("beta", beta, 0.0,
                      why="the LRP alpha-beta rule's weight of negative contributions")
    if abs(alpha - beta - 1.0) > 1e-9:
        raise ValueError(
            "the LRP alpha-beta rule needs alpha - beta = 1 (only then is relevance "
            f"conserved), got alpha={alpha!r}, beta={beta!r}")
    return alpha, beta


def _ab_ruled(leaf) -> bool:
    if isinstance(leaf, _AB_WEIGHTED):
        return True
    if type(leaf) in _AB_NORMS:
        # In eval mode batch norm is affine only if it normalizes with running statistics.
        return leaf.running_mean is not None and leaf.running_var is not None
    return type(leaf) in _AB_POOLS + _AB_PASSTHROUGH


def check_lrp_alpha_beta(model: nn.Module, x1: torch.Tensor,
                         method: str = "lrp_alpha_beta") -> None:
    """Every leaf that runs must be one the alpha-beta rule knows (:data:`_AB_SUPPORTED`),
    each used once, and the code between them may only reshape, select, ReLU or max-pool.

    Raises :class:`UnsupportedModelError` naming every culprit, grouped by kind, as
    :func:`check_lrp` does for Captum's rules.
    """
    problems = _layerwise_problems(model, x1, "LRP alpha-beta", _ab_ruled)
    problems.raise_if_any(method, _AB_SUPPORTED, whose="the alpha-beta rule does")


def _ab_parts(module):
    """``(pos, neg, bias)`` of an affine layer: ``pos(t)`` and ``neg(t)`` apply its linear
    part with only the positive or only the negative weights, ``bias(a)`` is its bias
    term as an output-shaped map (None without one). ``neg`` is None for average pooling,
    whose weights are all positive."""
    if type(module) in _AB_POOLS:
        return module, None, None
    if type(module) in _AB_NORMS:
        # Eval-mode batch norm: y = scale * x + shift per channel, channel dimension 1.
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach()
        shift = -module.running_mean * scale
        if module.bias is not None:
            shift = shift + module.bias.detach()

        def per_channel(v, t):
            return v.view((1, -1) + (1,) * (t.dim() - 2))
        return ((lambda t: t * per_channel(scale.clamp(min=0), t)),
                (lambda t: t * per_channel(scale.clamp(max=0), t)),
                (lambda a: per_channel(shift, a).expand_as(a)))
    from torch.func import functional_call

    # Through the module's own forward, so a subclass's padding or reshaping is kept.
    weight = module.weight.detach()
    no_bias = {} if module.bias is None else {"bias": torch.zeros_like(module.bias)}

    def linear(w):
        return lambda t: functional_call(module, {"weight": w, **no_bias}, (t,))
    bias = None
    if module.bias is not None:
        def bias(a):
            return functional_call(module, {"weight": torch.zeros_like(weight),
                                            "bias": module.bias.detach()}, (a,))
    return linear(weight.clamp(min=0)), linear(weight.clamp(max=0)), bias


def _alpha_beta_step(parts, alpha, beta, busy, a, relevance):
    """The input relevance of one affine layer, given its input ``a`` and the relevance
    of its outputs: R_j = sum_k (alpha z_jk+ / z_k+ - beta z_jk- / z_k-) R_k."""
    pos, neg, bias = parts
    busy[0] = True  # the module runs again below; its hook must leave those runs alone
    try:
        with torch.enable_grad():
            # a_j w_jk > 0 when both are positive or both negative, and < 0 otherwise.
            p = a.detach().clamp(min=0).requires_grad_(True)
            n = a.detach().clamp(max=0).requires_grad_(True)
            up = pos(p) + neg(n) if neg is not None else pos(p)
            down = neg(p) + pos(n) if neg is not None else pos(n)
            z_up, z_down = up.detach(), down.detach()
            if bias is not None:  # b+ joins z+ and b- joins z-; either absorbs relevance
                b = bias(a.detach()).detach()
                z_up, z_down = z_up + b.clamp(min=0), z_down + b.clamp(max=0)
            has_up, has_down = z_up > 0, z_down < 0
            both = has_up & has_down
            # A unit whose contributions all have one sign passes all its relevance along
            # them (alpha or beta of nothing would create or destroy relevance); a unit
            # with no contributions at all passes none (0/0 -> 0).
            c_up = torch.where(both, torch.full_like(z_up, alpha), has_up.to(z_up.dtype))
            c_down = torch.where(both, torch.full_like(z_down, beta),
                                 -has_down.to(z_down.dtype))
            s_up = c_up * relevance / torch.where(has_up, z_up, torch.ones_like(z_up))
            s_down = c_down * relevance / torch.where(has_down, z_down,
                                                      torch.ones_like(z_down))
            # d/da_j of sum_k z_jk s_k is w_jk s_k summed over k: times a_j, each input's
            # share, for both signs of a_j at once.
            total = (up * s_up).sum() - (down * s_down).sum()
            g_p, g_n = torch.autograd.grad(total, (p, n))
    finally:
        busy[0] = False
    return p.detach() * g_p + n.detach() * g_n


class _RelevanceGate(torch.autograd.Function):
    """The layer's output unchanged on the way forward; on the way back, what arrives is
    the relevance of the outputs, and what leaves is the relevance of the input."""

    @staticmethod
    def forward(ctx, a, y, step):
        ctx.save_for_backward(a)
        ctx.step = step
        return y.clone()

    @staticmethod
    def backward(ctx, relevance):
        (a,) = ctx.saved_tensors
        return ctx.step(a, relevance), None, None


def alpha_beta_relevance(model: nn.Module, x: torch.Tensor, target, alpha: float,
                         beta: float) -> torch.Tensor:
    """The alpha-beta relevance of ``x``, for a model already copied and checked.

    :func:`lrp_alpha_beta` without the copy and the checks (the method's plan does both
    once for all chunks); ``alpha`` and ``beta`` must already be checked.
    """
    busy = [False]
    handles = []

    def gate(module, inputs, output):
        if busy[0]:
            return None
        step = lambda a, r, parts=_ab_parts(module): _alpha_beta_step(  # noqa: E731
            parts, alpha, beta, busy, a, r)
        return _RelevanceGate.apply(inputs[0], output.detach(), step)

    for leaf in _leaves(model):
        if isinstance(leaf, _AB_WEIGHTED) or type(leaf) in _AB_NORMS + _AB_POOLS:
            handles.append(leaf.register_forward_hook(gate))
    target = torch.as_tensor(target, device=x.device).long().reshape(-1)
    target = target.expand(x.shape[0]) if target.numel() == 1 else target
    leaf_x = x.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = model(leaf_x)
            rows = torch.arange(x.shape[0], device=x.device)
            # The relevance the output starts with: the target logit, nothing elsewhere
            # (Captum's LRP starts the same way).
            start = torch.zeros_like(out)
            start[rows, target] = out.detach()[rows, target]
            (relevance,) = torch.autograd.grad(out, leaf_x, grad_outputs=start)
    finally:
        for handle in handles:
            handle.remove()
    return relevance.detach()


def lrp_alpha_beta(model: nn.Module, x: torch.Tensor, target, alpha: float = 2.0,
                   beta: float = 1.0) -> torch.Tensor:
    """LRP with the alpha-beta rule at every affine layer (Bach et al. 2015; Montavon et
    al. 2017).

    The relevance starts as the target logit (zero at the other outputs) and is passed
    back layer by layer. At a layer with inputs ``a_j``, weights ``w_jk`` and outputs
    ``k``, the contributions ``z_jk = a_j w_jk`` are split by sign, and input ``j`` gets

        R_j = sum_k (alpha * z_jk+ / z_k+  -  beta * z_jk- / z_k-) * R_k,

    with ``z_k+`` (``z_k-``) the sum of the positive (negative) contributions to ``k``.
    Inputs of either sign are split correctly (``a+ w+`` and ``a- w-`` are positive).
    The bias: its positive part joins ``z_k+`` and its negative part ``z_k-``, so it takes
    its share of the relevance and that share is lost; without biases relevance is
    conserved exactly, the map summing to the target logit (``alpha - beta = 1``). A unit
    whose contributions all have one sign passes all its relevance along them (the
    plain rule ``z_jk / z_k``; otherwise alpha, or minus beta, times it would create or
    destroy relevance), and a unit with no contributions passes none (0/0 -> 0). ReLU
    and max pooling pass relevance as the gradient does (to the inputs they kept),
    reshaping and eval-mode dropout unchanged; average pooling and eval-mode batch norm
    count as affine layers (pooling with only positive weights). ``alpha=1, beta=0`` is
    the z+ rule, which agrees with Captum's (:func:`lrp_zplus`) on inputs >= 0 and
    biases >= 0; Captum keeps a negative bias in ``z_k+``, and splits weights, not
    contributions, so negative inputs differ.

    Parameters
    ----------
    model : torch.nn.Module
        Built from the layers above (the library's MNIST MLP and CNN are); explained on
        an eval-mode deep copy, so the model itself is not touched.
    x : tensor
        The input batch, N x ...
    target : int or N ints
        The explained class of each image.
    alpha, beta : float
        ``alpha >= 1``, ``beta >= 0``, ``alpha - beta = 1``.

    Returns
    -------
    tensor
        The relevance, shaped like ``x``, no grad.

    Raises
    ------
    ValueError
        Bad ``alpha`` / ``beta``.
    UnsupportedModelError
        A layer the rule does not cover (e.g. ``nn.Tanh``, a functional op between layers,
        a module used twice).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    >>> x = torch.randn(5, 4)
    >>> relevance = lrp_alpha_beta(net, x, target=0, alpha=2.0, beta=1.0)
    >>> torch.allclose(relevance.sum(1), net(x)[:, 0], atol=1e-5)  # conserved
    True
    """
    alpha, beta = check_alpha_beta(alpha, beta)
    clone = prepare_copy(model, "lrp_alpha_beta")
    check_lrp_alpha_beta(clone, x[:1])
    return alpha_beta_relevance(clone, x, target, alpha, beta)
