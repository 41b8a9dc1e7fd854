"""Layer groups: the units a randomization test re-initializes, ordered input -> output.

A "layer group" is a named submodule: one layer (``conv1``), or a block of layers that
the paper randomizes together (Inception's ``Mixed_6b``, EfficientNet's ``stage4``).
"""
from __future__ import annotations

import difflib
import numbers
import warnings
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

__all__ = ["layer_groups", "list_modules", "group_problems", "in_forward_order"]


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
    for name, module in result:
        if not _has_parameters(module):
            raise ValueError(
                f"group {name!r} ({type(module).__name__}) holds no parameters, so randomizing "
                "it would change nothing (a step identical to the one before); remove it or "
                "name the layer with the weights")
    _warn_tied(result)
    return result


def _warn_tied(groups: list) -> None:
    """Say so when two groups share parameters (tied weights): randomizing one changes both."""
    owner = {}
    for name, module in groups:
        for p in module.parameters():
            first = owner.setdefault(id(p), name)
            if first != name:
                warnings.warn(
                    f"groups {first!r} and {name!r} share parameters (tied weights, or one "
                    "group inside the other): randomizing one also randomizes the other",
                    UserWarning, stacklevel=4)
                return


def in_forward_order(model: nn.Module, groups: Sequence[str | tuple[str, str | nn.Module]] | None,
                     x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """``groups`` resolved and sorted by when the forward pass first runs each of them.

    The randomization tests go from the last group down (top-down) or from the first up, so
    the order must be the model's, not the order a list happened to be written in. Groups
    given in another order are reordered, with a warning that names both orders.

    Raises
    ------
    ValueError
        A group that does not run in the forward pass on ``x``.

    Examples
    --------
    >>> import torch
    >>> from sanity_lib.models import mnist_cnn
    >>> import warnings; warnings.simplefilter("ignore")
    >>> [n for n, _ in in_forward_order(mnist_cnn(), ["logits", "conv1"], torch.rand(1, 1, 28, 28))]
    ['conv1', 'logits']
    """
    resolved = layer_groups(model, groups=groups)
    called = _forward_order(model, x)
    rank = {id(m): i for i, (m, _) in enumerate(called)}
    firsts = []
    for name, module in resolved:
        calls = [rank[id(s)] for s in module.modules() if id(s) in rank]
        if not calls:
            raise ValueError(f"group {name!r} does not run in the model's forward pass on x; "
                             "remove it from groups")
        firsts.append(min(calls))
    ordered = [g for _, g in sorted(zip(firsts, resolved), key=lambda t: t[0])]
    if [n for n, _ in ordered] != [n for n, _ in resolved]:
        warnings.warn(
            f"groups were listed as {[n for n, _ in resolved]}, but the forward pass runs them "
            f"as {[n for n, _ in ordered]}; using the forward order (input -> output), so that "
            "order='top_down' starts at the output", UserWarning, stacklevel=3)
    return ordered


def layer_groups(model: nn.Module,
                 groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
                 ) -> list[tuple[str, nn.Module]]:
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


# ----------------------------------------------------------------------------- choosing groups

def _forward_order(model, x):
    """Modules in the order of their first call in one forward pass of ``x[:1]``."""
    order, handles = [], []
    seen = set()

    def hook(module, args, output):
        if id(module) not in seen:
            seen.add(id(module))
            order.append((module, output))

    for m in model.modules():
        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order


def list_modules(model: nn.Module, x: torch.Tensor | None = None, *,
                 depth: int = 1) -> pd.DataFrame:
    """The model's submodules up to ``depth``: candidates for layer groups.

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor, optional
        A batch of model inputs; with it, the table gets each module's output shape (for
        one image) and is sorted by the order the forward pass calls the modules.
    depth : int, default 1
        1 lists the top-level children, 2 also their children, and so on.

    Returns
    -------
    pandas.DataFrame
        Index ``name`` (dotted path, usable in ``layer_groups(model, groups=[...])``),
        columns ``type``, ``parameters`` (the module's own and its children's), ``depth``
        and, with ``x``, ``output`` (shape without the batch dimension; "" for modules that
        do not run) and ``call_order`` (None for modules that do not run).

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> list_modules(mnist_cnn())["parameters"].to_dict()["conv1"]
    832
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    rows = []
    for name, module in model.named_modules():
        level = name.count(".") + 1
        if not name or level > depth:
            continue
        rows.append({"name": name, "type": type(module).__name__,
                     "parameters": sum(p.numel() for p in module.parameters()),
                     "depth": level, "module": module})
    table = pd.DataFrame(rows, columns=["name", "type", "parameters", "depth", "module"])
    if x is not None:
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError("x must be a batch of model inputs (a tensor N x ...), got "
                             f"{type(x).__name__}")
        called = _forward_order(model, x)
        rank = {id(m): i for i, (m, _) in enumerate(called)}
        shapes = {id(m): (tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else "")
                  for m, out in called}
        table["output"] = [shapes.get(id(m), "") for m in table["module"]]
        table["call_order"] = pd.array([rank.get(id(m)) for m in table["module"]],
                                       dtype="Int64")
        table = table.sort_values("call_order", kind="stable", na_position="last")
    return table.drop(columns="module").set_index("name")


def group_problems(model: nn.Module, groups: Sequence[str | tuple[str, str | nn.Module]],
                   x: torch.Tensor | None = None) -> list[str]:
    """What is wrong with a choice of layer groups for the randomization tests, in words.

    A good grouping for :func:`sanity_lib.model_randomization_test` names modules of the
    model, in forward order (cascading randomization goes from the *last* group down),
    without overlaps (a module inside two groups would be randomized twice), and together
    they hold every parameter, so that the last cascading step leaves nothing trained.

    Parameters
    ----------
    model : torch.nn.Module
    groups : list
        As for :func:`sanity_lib.models.layer_groups`: names, ``(name, path)`` or
        ``(name, module)`` pairs.
    x : torch.Tensor, optional
        Model inputs; with them the forward order is checked too (the first call of each
        group in one forward pass).

    Returns
    -------
    list of str
        Empty when the grouping is fine; otherwise one plain sentence per problem.

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> group_problems(mnist_cnn(), ["conv1", "conv2", "fc1", "logits"])
    []
    >>> "'conv2' are in no group" in group_problems(mnist_cnn(), ["conv1", "fc1", "logits"])[0]
    True
    """
    try:
        with warnings.catch_warnings():  # overlaps are reported below, in words
            warnings.simplefilter("ignore", UserWarning)
            resolved = layer_groups(model, groups=groups)
    except (TypeError, ValueError) as err:
        return [str(err)]
    problems = []
    names = {m: n for n, m in model.named_modules()}
    # overlaps: one group inside another
    for i, (a, ma) in enumerate(resolved):
        inside_a = {id(m) for m in ma.modules()}
        for b, mb in resolved[i + 1:]:
            if id(mb) in inside_a or id(ma) in {id(m) for m in mb.modules()}:
                problems.append(f"groups {a!r} and {b!r} overlap (one contains the other), "
                                "so its parameters would be re-initialized twice; keep one")
    # coverage: every parameter in some group
    covered = {id(p) for _, m in resolved for p in m.parameters()}
    missing = {}
    for pname, p in model.named_parameters():
        if id(p) not in covered:
            owner = pname.rsplit(".", 1)[0] if "." in pname else "<model>"
            missing[owner] = missing.get(owner, 0) + p.numel()
    if missing:
        listed = ", ".join(f"{k!r}" for k in list(missing)[:6])
        more = " ..." if len(missing) > 6 else ""
        problems.append(f"parameters of {listed}{more} are in no group "
                        f"({sum(missing.values()):,} values): the last cascading step would "
                        "leave them trained; add them to a group, or say why they stay")
    # forward order
    if x is not None:
        called = _forward_order(model, x)
        rank = {id(m): i for i, (m, _) in enumerate(called)}
        firsts = []
        for gname, m in resolved:
            calls = [rank[id(s)] for s in m.modules() if id(s) in rank]
            if not calls:
                problems.append(f"group {gname!r} ({names.get(m, '?')}) does not run in the "
                                "forward pass; remove it")
            else:
                firsts.append((min(calls), gname))
        order = [g for _, g in sorted(firsts)]
        given = [g for _, g in firsts]
        if given != order:
            problems.append(f"the groups are not in forward order: the forward pass runs "
                            f"{order}, you listed {given}. List them input -> output; "
                            "cascading randomization starts from the last one (the logits)")
    return problems
