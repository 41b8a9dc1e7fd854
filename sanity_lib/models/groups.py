"""Layer groups: the units a randomization test re-initializes, ordered input -> output.

A "layer group" is a named submodule: one layer (``conv1``), or a block of layers that
the paper randomizes together (Inception's ``Mixed_6b``, EfficientNet's ``stage4``).
"""
import difflib

from torch import nn

__all__ = ["layer_groups"]


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _resolve(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        pass
    available = [name for name, _ in model.named_modules() if name]
    close = difflib.get_close_matches(path, available, n=5, cutoff=0.5)
    top = [name for name, _ in model.named_children()]
    hint = f"close matches: {close}; " if close else ""
    raise ValueError(
        f"{type(model).__name__} has no submodule {path!r}; {hint}"
        f"its top-level submodules are {top} (use dotted paths such as 'block.0' "
        "for nested ones)"
    )


def _is_inception3(model: nn.Module) -> bool:
    try:
        from torchvision.models import Inception3
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    return isinstance(model, Inception3)


def _explicit(model: nn.Module, groups) -> list:
    if isinstance(groups, str):
        groups = [groups]
    members = {id(m) for m in model.modules()}
    result = []
    for item in groups:
        if isinstance(item, str):
            result.append((item, _resolve(model, item)))
        elif (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], str)):
            result.append((item[0], _resolve(model, item[1])))
        elif (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], nn.Module)):
            name, module = item
            if id(module) not in members:
                raise ValueError(
                    f"groups entry {name!r} is a module that is not part of the model; "
                    "pass modules of this model (e.g. model.fc1), not copies"
                )
            result.append((name, module))
        else:
            raise TypeError(
                "groups must be a list of submodule names (e.g. ['conv1', 'fc1']), of "
                f"(name, path) or of (name, module) pairs; got the entry {item!r}"
            )
    if not result:
        raise ValueError("groups is empty; pass at least one submodule name")
    names = [name for name, _ in result]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"groups names must be unique; repeated: {duplicates}")
    return result


def layer_groups(model: nn.Module, groups=None) -> list:
    """The model's layer groups as ``[(name, module), ...]``, ordered input -> output.

    Where the groups come from, first match wins:

    1. ``groups``, when given: submodule names (dotted paths such as ``"features.3"``),
       ``(name, path)`` pairs to rename them (``("Logits", "fc")``) or
       ``(name, module)`` pairs, taken in the order given.
    2. ``model.layer_group_names``, which every ``sanity_lib`` model defines
       (e.g. ``("conv1", "conv2", "fc1", "logits")`` for the MNIST CNN).
    3. torchvision's ``Inception3``: the paper's 17 stages, ``Conv2d_1a_3x3`` ...
       ``Mixed_7c`` and ``Logits`` (the ``fc`` layer); the auxiliary head is not a stage.
    4. Any other model: its top-level children that hold parameters, in registration
       order. This assumes that the order in which ``__init__`` assigned the submodules
       is the order ``forward`` uses them, true for ``nn.Sequential`` and most models;
       when it is not, pass ``groups=`` in forward order.

    Parameters
    ----------
    model : nn.Module
    groups : list of str, (str, str) or (str, nn.Module), optional

    Returns
    -------
    list of (str, nn.Module)
        The modules themselves (not copies): changing them changes the model.

    Raises
    ------
    ValueError
        For an unknown submodule name (the message lists close matches), or a model
        without parameterized children and no ``groups``.
    TypeError
        For ``groups`` entries that are neither names nor (name, module) pairs.

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> [name for name, _ in layer_groups(mnist_cnn())]
    ['conv1', 'conv2', 'fc1', 'logits']
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> [name for name, _ in layer_groups(net)]
    ['0', '2']
    >>> [name for name, _ in layer_groups(net, groups=["2"])]
    ['2']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if groups is not None:
        return _explicit(model, groups)
    names = getattr(model, "layer_group_names", None)
    if names is not None:
        return [(name, _resolve(model, name)) for name in names]
    if _is_inception3(model):
        from .inception import INCEPTION_V3_GROUPS

        return [(name, _resolve(model, path)) for name, path in INCEPTION_V3_GROUPS]
    result = [(name, child) for name, child in model.named_children() if _has_parameters(child)]
    if not result:
        raise ValueError(
            f"{type(model).__name__} has no top-level submodule with parameters, so its "
            "layer groups cannot be guessed (parameters held directly by the model, or a "
            "model without parameters); pass them in forward order, e.g. "
            "layer_groups(model, groups=['encoder.conv', 'head'])"
        )
    return result
