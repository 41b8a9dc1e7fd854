"""Model parameter randomization: the engine behind the paper's first sanity check.

Adebayo et al. (2018, section 4) re-initialize a trained network one block of layers at a
time and ask whether a saliency map notices. This module produces those randomized networks:

- :func:`cascading` re-initializes the blocks cumulatively, from the logits down (the paper)
  or from the input up (``order="bottom_up"``, which the reviewers asked about);
- :func:`independent` re-initializes one block at a time, the rest stay trained;
- :func:`gaussian_noise` adds zero-mean Gaussian noise instead, cascading from the top
  (the student report's variant, ``PAPER.md`` section 8).

Each yields ``(layer_name, randomized_model)`` pairs. Every yielded model is a fresh deep
copy in eval mode; the model you pass in is never changed (weights, buffers, train/eval
mode, hooks). The blocks come from :func:`sanity_lib.models.layer_groups`.

Reproducibility
---------------
The results do not depend on PyTorch's global random state, which is left as it was
(``"default"`` borrows the global CPU generator under ``torch.random.fork_rng``). Every module
(a ``Linear``, a ``Conv2d``, ...) gets its own stream, seeded from ``(seed, the module's
qualified name in the model)``. So the same seed gives bit-identical weights, a different
seed gives different ones, and a block is randomized identically whether it comes first
(bottom-up), last (top-down), or alone (:func:`independent`).

Initialization schemes (``init=``)
----------------------------------
The default is ``"truncated_normal"`` (:data:`DEFAULT_INIT`), the paper's scheme. PyTorch's
own ``"default"`` draws are much smaller than the trained weights of a deep network and make
EfficientNet-Lite0's logits collapse to almost constant values, which no saliency map could
then be expected to track (chapter 3 of the book shows it); ask for it explicitly.

``fan_in`` is a weight's inputs per output unit: ``in_features`` for ``Linear``,
``in_channels / groups * kernel area`` for convolutions (PyTorch's definition).

``"default"``
    Each layer's own ``reset_parameters()``, i.e. what PyTorch draws for a new layer
    (for ``Linear`` and ``Conv``: weights and biases uniform in ``+-1/sqrt(fan_in)``),
    run under this module's seeded stream.
``"normal"``
    Weights ``N(0, 2/fan_in)`` (He / Kaiming normal); biases 0.
``"truncated_normal"``
    Weights from ``N(0, s^2)`` cut at ``+-2 s`` (values outside are redrawn, as in
    TensorFlow's ``truncated_normal``) with ``s = sqrt(2/fan_in) / 0.8796``, so that the
    weights' standard deviation is ``sqrt(2/fan_in)``. This is TensorFlow's
    variance-scaling initializer, the one the paper's Inception v3 code re-ran. Biases 0.
``"uniform"``
    Weights ``U(-sqrt(6/fan_in), +sqrt(6/fan_in))`` (He uniform); biases 0.
``"permutation"``
    Every parameter tensor (biases included) keeps its trained values in new, randomly
    shuffled positions: the same histogram, the learned structure gone.

The three drawn schemes share one variance, ``2/fan_in``, so comparing them changes the
*shape* of the distribution and nothing else. A fixed standard deviation (0.01, or the
0.1 of the paper's MNIST code) would instead shrink or blow up activations depending on
layer width, which mixes scale into the comparison. Zero biases follow TensorFlow's
default bias initializer (the paper's MNIST code used the constant 0.1 instead).

Normalization layers
--------------------
The affine weight and bias of BatchNorm, LayerNorm, GroupNorm, ... are trainable
parameters, so every scheme re-initializes them the way a new layer starts: weight 1,
bias 0 (``"permutation"`` shuffles them instead). This is what the reference code did:
TF-slim's Inception v3 batch norm has a trainable ``beta`` (re-initialized to 0) and no
``gamma`` (fixed at 1). Running statistics are buffers, not parameters; ``batchnorm=``
decides what happens to them:

- ``"keep"`` (the reference code): running mean, variance and batch count survive, so
  randomized layers still see the trained network's normalization.
- ``"reset"`` (Quantus' MPRT): layers that track running statistics return to their
  freshly constructed state, running mean 0, variance 1, count 0, weight 1, bias 0,
  whatever ``init`` says. In eval mode such a layer then passes its input on almost
  unchanged (divided by ``sqrt(1 + eps)``).

Both can leave a deep randomized network *collapsed*, its output nearly the same for every
input: random weights scale activations differently from trained ones, so the kept
statistics no longer normalize them, and EfficientNet-Lite0's ReLU6 saturates (chapter 5).
:func:`recalibrate_batchnorm` re-estimates the statistics of the randomized network on
inputs, which keeps it input-dependent; ``model_randomization_test(...,
batchnorm="recalibrate")`` does that after every step, on the inputs it explains.
"""
from __future__ import annotations

import copy
import hashlib
import math
import numbers
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from sanity_lib._validation import check_choice, check_flag

__all__ = [
    "INIT_SCHEMES", "DEFAULT_INIT", "ORDERS", "BATCHNORM_POLICIES", "TRUNCATED_NORMAL_STD_FACTOR",
    "init_schemes", "randomization_order",
    "cascading", "independent", "gaussian_noise",
    "randomize_module", "add_gaussian_noise", "recalibrate_batchnorm",
]

_INIT_DESCRIPTIONS = {
    "default": "each layer's own PyTorch reset_parameters(), seeded",
    "normal": "weights N(0, 2/fan_in), biases 0",
    "truncated_normal": "weights truncated normal (cut at 2 sigma), std sqrt(2/fan_in), biases 0",
    "uniform": "weights U(-sqrt(6/fan_in), sqrt(6/fan_in)), biases 0",
    "permutation": "trained values of each tensor shuffled into new positions",
}
INIT_SCHEMES = tuple(_INIT_DESCRIPTIONS)
# The paper's scheme, and the one under which a randomized deep network still computes
# something (PyTorch's "default" collapses EfficientNet-Lite0; chapter 3).
DEFAULT_INIT = "truncated_normal"
ORDERS = ("top_down", "bottom_up")
BATCHNORM_POLICIES = ("keep", "reset")

# Standard deviation of a standard normal truncated to [-2, 2]; dividing by it makes the
# truncated draws come out with the intended standard deviation (TensorFlow does the same).
TRUNCATED_NORMAL_STD_FACTOR = 0.87962566103423978

_NORM_LAYERS = tuple(
    cls for cls in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
        nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", None),
    ) if cls is not None
)


def init_schemes() -> dict[str, str]:
    """The initialization schemes ``init=`` accepts, each with a one-line description.

    Examples
    --------
    >>> list(init_schemes())
    ['default', 'normal', 'truncated_normal', 'uniform', 'permutation']
    """
    return dict(_INIT_DESCRIPTIONS)


# --------------------------------------------------------------------------- validation

def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    return int(seed)


def _check_std(std):
    if isinstance(std, bool) or not isinstance(std, numbers.Real):
        raise TypeError(f"std must be a number, got {std!r} ({type(std).__name__})")
    std = float(std)
    if not math.isfinite(std) or std < 0:
        raise ValueError(f"std must be a finite number >= 0 (the noise's standard "
                         f"deviation), got {std!r}")
    return std


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


# --------------------------------------------------------------------------- streams

def _derive_seed(*parts) -> int:
    # A stable hash (unlike hash(), which Python salts per process) of the parts, so a
    # module's stream depends only on the seed and its own name.
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _fan_in(shape) -> int:
    return shape[1] * math.prod(shape[2:])


# --------------------------------------------------------------------------- one module

def _has_running_stats(module) -> bool:
    return (callable(getattr(module, "reset_running_stats", None))
            and getattr(module, "running_mean", None) is not None)


def _seeded_reset(module, qualname, seed, init):
    """Run ``module.reset_parameters()`` with the global CPU generator seeded, then restore it."""
    reset = getattr(module, "reset_parameters", None)
    if not callable(reset):
        what = ("parameters" if init == "default"
                else "parameters with no fan-in (neither weights nor biases)")
        raise ValueError(
            f"module {qualname!r} ({type(module).__name__}) has {what} but no "
            f"reset_parameters(), so init={init!r} cannot re-initialize it; use "
            f"init='permutation' or randomize it yourself")
    # reset_parameters draws from the global generator of the parameters' device; running
    # it on a CPU copy gives the same weights on every device (and one code path to test).
    target = copy.deepcopy(module).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        target.reset_parameters()
    for p, q in zip(module.parameters(), target.parameters()):
        p.copy_(q)


def _draw(init, shape, generator):
    """Fresh float32 CPU weights for a tensor of ``shape`` (at least 2-D)."""
    std = math.sqrt(2.0 / _fan_in(shape))
    out = torch.empty(shape)
    if init == "normal":
        return out.normal_(0.0, std, generator=generator)
    if init == "truncated_normal":
        s = std / TRUNCATED_NORMAL_STD_FACTOR
        return nn.init.trunc_normal_(out, 0.0, s, -2 * s, 2 * s, generator=generator)
    bound = math.sqrt(3.0) * std  # uniform
    return out.uniform_(-bound, bound, generator=generator)


def _randomize_unit(module, qualname, init, seed, batchnorm):
    """Re-initialize the parameters that ``module`` owns directly (not its children's)."""
    if batchnorm == "reset" and _has_running_stats(module):
        module.reset_parameters()  # running stats to 0/1 and affine to 1/0; uses no RNG
        return
    params = dict(module.named_parameters(recurse=False))
    if not params:
        return
    unit_seed = _derive_seed("init", seed, qualname)
    if init == "permutation":
        gen = _generator(unit_seed)
        for p in params.values():
            order = torch.randperm(p.numel(), generator=gen).to(p.device)
            p.copy_(p.detach().flatten()[order].view_as(p))
        return
    if isinstance(module, _NORM_LAYERS):
        for name, p in params.items():
            # as a freshly constructed layer (and TF's beta/gamma initializers)
            p.fill_(1.0 if name == "weight" else 0.0)
        return
    if init == "default":
        _seeded_reset(module, qualname, unit_seed, init)
        return
    others = [n for n, p in params.items() if p.dim() < 2 and not n.endswith("bias")]
    if others:
        # e.g. PReLU's slope: no fan-in to scale by, so it restarts from its own default
        _seeded_reset(module, qualname, _derive_seed("init-other", seed, qualname), init)
    gen = _generator(unit_seed)
    for name, p in params.items():
        if p.dim() >= 2:
            if p.numel():
                p.copy_(_draw(init, p.shape, gen))
        elif name.endswith("bias"):
            p.zero_()


def _noise_unit(module, qualname, std, relative, seed):
    gen = _generator(_derive_seed("noise", seed, qualname))
    for p in module.parameters(recurse=False):
        # Always draw, even where the scale is 0, so the draws never depend on std or on
        # the weights: noise at std 0.2 is exactly twice the noise at std 0.1.
        z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        scale = std * float(p.detach().double().std(correction=0)) if relative else std
        if scale > 0:  # std 0 leaves every bit alone (x + 0.0 would turn -0.0 into 0.0)
            p.add_((z * scale).to(p))


def _units(module, prefix):
    return [(f"{prefix}.{name}" if prefix and name else prefix or name, m)
            for name, m in module.named_modules()]


def randomize_module(module: nn.Module, *, init: str = DEFAULT_INIT, seed: int = 0,
                     batchnorm: str = "keep", prefix: str = "") -> nn.Module:
    """Re-initialize every parameter of ``module`` and its submodules, **in place**.

    The building block of :func:`cascading` and :func:`independent`. Each submodule draws
    from its own stream seeded by ``(seed, prefix + its name)``; with ``prefix`` set to the
    module's name in the model, the result is bit-identical to that block's step in
    :func:`cascading`. The global random state is untouched.

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place; pass ``copy.deepcopy(module)`` to keep the original.
    init : {"truncated_normal", "default", "normal", "uniform", "permutation"}
        Default ``"truncated_normal"`` (the paper's). See the module documentation (``init_schemes()`` lists them).
    seed : int
        Same seed, same weights.
    batchnorm : {"keep", "reset"}
        What happens to running statistics of batch-norm layers (module documentation).
    prefix : str
        The module's qualified name in its model, used to seed each submodule's stream.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> layer = nn.Linear(1000, 10)
    >>> _ = randomize_module(layer, init="uniform", seed=0)
    >>> bool(layer.weight.abs().max() <= (6 / 1000) ** 0.5), bool((layer.bias == 0).all())
    (True, True)
    """
    _check_model(module)
    check_choice("init", init, INIT_SCHEMES)
    check_choice("batchnorm", batchnorm, BATCHNORM_POLICIES)
    seed = _check_seed(seed)
    with torch.no_grad():
        for qualname, m in _units(module, prefix):
            _randomize_unit(m, qualname, init, seed, batchnorm)
    return module


def add_gaussian_noise(module: nn.Module, std: float, *, relative: bool = False, seed: int = 0,
                       prefix: str = "") -> nn.Module:
    """Add zero-mean Gaussian noise to every parameter of ``module``, **in place**.

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place; pass ``copy.deepcopy(module)`` to keep the original.
    std : float
        Standard deviation of the noise, ``>= 0``; ``0`` changes nothing, bit for bit.
    relative : bool
        If True, each parameter tensor ``p`` gets noise of standard deviation
        ``std * p.std(correction=0)`` (its own spread: weights and biases separately, a
        constant tensor gets none). If False, every tensor gets noise of standard
        deviation ``std``.
    seed : int
        Same seed, same noise. Different ``std`` values reuse the same standard-normal
        draws, so the noise simply scales with ``std``.
    prefix : str
        The module's qualified name in its model, used to seed each submodule's stream.

    Returns
    -------
    torch.nn.Module
        ``module`` itself. Buffers (batch-norm running statistics) are not touched.

    Examples
    --------
    >>> layer = nn.Linear(1000, 1000)
    >>> before = layer.weight.detach().clone()
    >>> _ = add_gaussian_noise(layer, std=0.1)
    >>> round(float((layer.weight.detach() - before).std()), 2)
    0.1
    """
    _check_model(module)
    std = _check_std(std)
    relative = check_flag("relative", relative)
    seed = _check_seed(seed)
    with torch.no_grad():
        for qualname, m in _units(module, prefix):
            _noise_unit(m, qualname, std, relative, seed)
    return module


# --------------------------------------------------------------------------- groups

def _resolve_groups(model, groups, order):
    """``[(group name, [qualified names of its modules]), ...]`` in the requested order."""
    from sanity_lib.models import layer_groups  # lazy: models imports heavy things

    check_choice("order", order, ORDERS)
    qualnames = {}
    for name, m in model.named_modules(remove_duplicate=False):
        qualnames.setdefault(id(m), name)
    resolved = []
    for group_name, group_module in layer_groups(model, groups=groups):
        members = []
        for m in group_module.modules():
            if id(m) in qualnames:
                members.append(qualnames[id(m)])
            elif (next(m.parameters(recurse=False), None) is not None
                  or _has_running_stats(m)):
                raise ValueError(
                    f"layer group {group_name!r} holds a {type(m).__name__} that is not "
                    f"part of the model; groups must name the model's own submodules")
        resolved.append((group_name, list(dict.fromkeys(members))))
    if order == "top_down":
        resolved.reverse()
    return resolved


def randomization_order(model: nn.Module, order: str = "top_down", *,
                        groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
                        ) -> list[str]:
    """The layer names :func:`cascading` (and friends) will yield, in that order.

    Handy for a progress bar or a plot's axis before any randomization runs.

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> randomization_order(mnist_cnn())
    ['logits', 'fc1', 'conv2', 'conv1']
    """
    _check_model(model)
    return [name for name, _ in _resolve_groups(model, groups, order)]


def _copy(model):
    try:
        return copy.deepcopy(model)
    except Exception as err:  # deepcopy reports problems with many exception types
        raise TypeError(
            f"could not deep-copy the model ({type(err).__name__}: {err}); a model that "
            f"stores tensors from a forward pass (e.g. attributes set in forward) cannot "
            f"be copied: clear them first") from err


def _apply(model, members, step):
    with torch.no_grad():
        for qualname in members:
            step(model.get_submodule(qualname), qualname)


def _snapshot(model):
    return _copy(model).eval()


def _cascade(model, plan, step):
    work = _copy(model)
    for group_name, members in plan:
        _apply(work, members, step)
        yield group_name, _snapshot(work)


def _one_at_a_time(model, plan, step):
    for group_name, members in plan:
        work = _copy(model)
        _apply(work, members, step)
        yield group_name, work.eval()


def _reinit_plan(model, init, seed, groups, batchnorm, order):
    """The validated groups of :func:`cascading`/:func:`independent` and their one step."""
    _check_model(model)
    check_choice("init", init, INIT_SCHEMES)
    check_choice("batchnorm", batchnorm, BATCHNORM_POLICIES)
    seed = _check_seed(seed)
    plan = _resolve_groups(model, groups, order)

    def step(module, qualname):
        _randomize_unit(module, qualname, init, seed, batchnorm)

    return plan, step


def cascading(model: nn.Module, *, order: str = "top_down", init: str = DEFAULT_INIT, seed: int = 0,
              groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
              batchnorm: str = "keep") -> Iterator[tuple[str, nn.Module]]:
    """Re-initialize the layer groups cumulatively: the paper's cascading randomization.

    Step ``k`` has the first ``k`` groups re-initialized and the rest trained. With
    ``order="top_down"`` (the paper) the logits go first; with ``"bottom_up"`` the layer
    nearest the input does. Arguments are checked when you call this, before any step.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model. Never changed.
    order : {"top_down", "bottom_up"}
    init : {"truncated_normal", "default", "normal", "uniform", "permutation"}
        How to re-initialize; default ``"truncated_normal"``, the paper's (module documentation; ``init_schemes()`` lists them).
    seed : int
        Same seed, same weights; a group's new weights do not depend on the order.
    groups : list, optional
        Passed to :func:`sanity_lib.models.layer_groups`; by default the model's own
        ``layer_group_names``, else its top-level children with parameters.
    batchnorm : {"keep", "reset"}
        Keep the trained running statistics of batch-norm layers (the reference code)
        or reset them to mean 0, variance 1 (Quantus).

    Yields
    ------
    layer_name : str
        The group randomized at this step.
    randomized_model : torch.nn.Module
        A new deep copy, in eval mode, yours to keep or change.

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> model = mnist_cnn()
    >>> [name for name, _ in cascading(model)]
    ['logits', 'fc1', 'conv2', 'conv1']
    """
    return _cascade(model, *_reinit_plan(model, init, seed, groups, batchnorm, order))


def independent(model: nn.Module, *, init: str = DEFAULT_INIT, seed: int = 0,
                groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
                batchnorm: str = "keep",
                order: str = "top_down") -> Iterator[tuple[str, nn.Module]]:
    """Re-initialize one layer group at a time, the others trained: independent randomization.

    Takes the same arguments as :func:`cascading`; a group gets exactly the weights it
    gets there, so the two tests differ only in what stays trained.

    Yields
    ------
    layer_name : str
        The only group randomized in this model.
    randomized_model : torch.nn.Module
        A new deep copy, in eval mode.

    Examples
    --------
    >>> from sanity_lib.models import mnist_mlp
    >>> [name for name, _ in independent(mnist_mlp(), order="bottom_up")]
    ['fc1', 'fc2', 'fc3', 'logits']
    """
    return _one_at_a_time(model, *_reinit_plan(model, init, seed, groups, batchnorm, order))


def gaussian_noise(model: nn.Module, std: float, *, relative: bool = False, seed: int = 0,
                   groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
                   order: str = "top_down") -> Iterator[tuple[str, nn.Module]]:
    """Add zero-mean Gaussian noise to the parameters, cascading from the top.

    The student report's variant of the test (``PAPER.md`` section 8): instead of
    re-initializing, step ``k`` adds noise to the first ``k`` groups (each group gets its
    noise once, when its turn comes). Small noise should barely move a faithful map,
    large noise should move it a lot.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model. Never changed.
    std : float
        Standard deviation of the noise, ``>= 0``; ``0`` yields exact copies.
    relative : bool
        If True, the noise on each parameter tensor ``p`` (weights and biases separately)
        has standard deviation ``std * p.std(correction=0)``, so ``std`` reads as a
        fraction of that tensor's own spread and wide and narrow layers are hit alike.
    seed : int
        Same seed, same noise. The underlying standard-normal draws do not depend on
        ``std``, so curves for several noise levels differ only in the level.
    groups : list, optional
        As in :func:`cascading`.
    order : {"top_down", "bottom_up"}

    Yields
    ------
    layer_name : str
    noisy_model : torch.nn.Module
        A new deep copy, in eval mode. Batch-norm running statistics are left as trained.

    Examples
    --------
    >>> from sanity_lib.models import mnist_mlp
    >>> steps = list(gaussian_noise(mnist_mlp(), std=0.1))
    >>> [name for name, _ in steps]
    ['logits', 'fc3', 'fc2', 'fc1']
    """
    _check_model(model)
    std = _check_std(std)
    relative = check_flag("relative", relative)
    seed = _check_seed(seed)
    plan = _resolve_groups(model, groups, order)

    def step(module, qualname):
        _noise_unit(module, qualname, std, relative, seed)

    return _cascade(model, plan, step)


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Re-estimate the running statistics of every batch-norm layer on ``x``, in place.

    Each layer that tracks running statistics forgets them and takes the mean and variance
    of its own input over ``x`` (one forward pass in train mode with a cumulative average).
    Weights, biases and the layers' affine parameters are untouched, and the model is
    returned in eval mode. Use it on a randomized network whose kept statistics (trained
    for other weights) would collapse its output.

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor
        A batch of inputs, as the model takes them (at least two).

    Returns
    -------
    torch.nn.Module
        ``model`` itself, in eval mode.

    Examples
    --------
    >>> bn = nn.BatchNorm1d(2)
    >>> _ = recalibrate_batchnorm(bn, torch.tensor([[1.0, 10.0], [3.0, 30.0]]))
    >>> bn.running_mean.tolist(), bn.training
    ([2.0, 20.0], False)
    """
    _check_model(model)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 2:
        raise ValueError("x must be a batch of at least two inputs to estimate batch-norm "
                         f"statistics from, got {getattr(x, 'shape', type(x).__name__)}")
    layers = [m for m in model.modules() if _has_running_stats(m)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one pass gives the statistics of x
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum
        model.eval()
    return model
