"""The method registry: one record per saliency method, the single place that describes it.

Everything else reads the registry: :data:`~sanity_lib.saliency.METHODS` and
:data:`~sanity_lib.saliency.DEFAULT_SETTINGS`, :func:`~sanity_lib.saliency.explain` (through
each record's ``plan``), the shared passes of a sweep (through ``shares``), the labels of the
plots, the method table of the docs, and the names the graders accept (through ``aliases``).
Adding a method is one :func:`register` call in ``_methods.py`` plus its tests; see
``CONTRIBUTING.md``.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Method", "REGISTRY", "PAPER_ROLES", "SHARED_PASSES", "register", "method_key",
           "lookup", "method_label", "method_table"]

#: What the paper does with a method: shown in its Figure 2 (and tested), tested elsewhere in
#: the paper, only defined in its appendix, or not in the paper at all.
PAPER_ROLES = ("figure 2", "tested", "appendix", "not in the paper")
#: The pass families the fused sweep engine (``_shared.py``) shares between methods: one
#: plain backward, one guided backward, the Integrated Gradients path, the noisy copies.
SHARED_PASSES = ("plain", "guided", "integrated", "noise")


@dataclass(frozen=True)
class Method:
    """One saliency method, as the library knows it.

    Attributes
    ----------
    name : str
        The canonical name (snake case), used in tables, caches and :func:`explain`.
    label : str
        How plots and tables write it.
    computes : str
        One line: what the map is.
    settings : mapping
        The method's own settings and their defaults (the paper's); ``batch_size`` and
        ``progress`` are added to every method.
    plan : callable
        ``plan(model, x, opts) -> (fn, images_per_chunk)`` where ``fn(x_chunk, targets,
        start)`` returns the chunk's maps; how :func:`explain` computes the method.
    paper : str
        One of :data:`PAPER_ROLES`.
    shares : tuple of str
        The pass families of :data:`SHARED_PASSES` the fused sweep engine computes this
        method from; empty when it has no shared path (then :func:`explain` computes it).
    aliases : tuple of str
        Other names people write (``"ig"``, ``"grad_cam"``); accepted by the graders and
        suggested in error messages.
    reference : str
        Where the method comes from (author, year).

    Examples
    --------
    >>> from sanity_lib.saliency import REGISTRY
    >>> REGISTRY["integrated_gradients"].label
    'Integrated Gradients'
    >>> REGISTRY["guided_gradcam"].shares
    ('plain', 'guided')
    """

    name: str
    label: str
    computes: str
    settings: Mapping[str, object]
    plan: Callable
    paper: str
    shares: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    reference: str = ""

    def __post_init__(self):
        if self.name != method_key(self.name):
            raise ValueError(f"method name {self.name!r} must be snake case, e.g. "
                             f"{method_key(self.name)!r}")
        if self.paper not in PAPER_ROLES:
            raise ValueError(f"paper={self.paper!r} is not one of {PAPER_ROLES}")
        unknown = set(self.shares) - set(SHARED_PASSES)
        if unknown:
            raise ValueError(f"shares names unknown pass families {sorted(unknown)}; "
                             f"use {SHARED_PASSES}")
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))


#: name -> :class:`Method`, in the order methods were registered (the docs' order).
REGISTRY: dict[str, Method] = {}


def method_key(text: str) -> str:
    """A spelling-insensitive key: lower case, ``-``, spaces and ``⊙``/``×``/``*`` unified.

    Examples
    --------
    >>> method_key("Gradient ⊙ Input")
    'gradient_x_input'
    >>> method_key(" Guided-GradCAM ")
    'guided_gradcam'
    """
    key = text.strip().lower()
    for symbol in ("⊙", "×", "*"):
        key = key.replace(symbol, "x")
    key = key.replace("-", "_").replace(" ", "_")
    while "__" in key:
        key = key.replace("__", "_")
    return key


def register(method: Method) -> Method:
    """Add ``method`` to :data:`REGISTRY`; its name, label and aliases must be new.

    Examples
    --------
    >>> from sanity_lib.saliency import REGISTRY, register
    >>> register(REGISTRY["gradient"])
    Traceback (most recent call last):
    ...
    ValueError: a method named 'gradient' is already registered
    """
    if method.name in REGISTRY:
        raise ValueError(f"a method named {method.name!r} is already registered")
    taken = _names()
    for spelling in (method.label, *method.aliases):
        owner = taken.get(method_key(spelling))
        if owner is not None:
            raise ValueError(f"{spelling!r} already names method {owner!r}")
    REGISTRY[method.name] = method
    return method


def _names() -> dict[str, str]:
    """Every accepted spelling's key -> canonical name."""
    names = {}
    for m in REGISTRY.values():
        for spelling in (m.name, m.label, *m.aliases):
            names.setdefault(method_key(spelling), m.name)
    return names


def lookup(text: object) -> str | None:
    """The canonical name for a method's name, label or alias; None if it names none.

    This is the forgiving reading the graders use for what a student typed.

    Examples
    --------
    >>> lookup("IG"), lookup("Guided Backprop"), lookup("grad-cam"), lookup("nope")
    ('integrated_gradients', 'guided_backprop', 'gradcam', None)
    """
    if not isinstance(text, str):
        return None
    return _names().get(method_key(text))


def closest_names(text: str, n: int = 3) -> list[str]:
    """Canonical names of the methods whose spellings are closest to ``text``."""
    names = _names()
    key = method_key(text)
    close = difflib.get_close_matches(key, list(names), n=n, cutoff=0.5)
    if key in names:
        close.insert(0, key)
    return list(dict.fromkeys(names[c] for c in close))


def method_label(name: str) -> str:
    """How plots write a method (its registry label; unknown names are returned as given).

    Examples
    --------
    >>> method_label("gradient_x_input")
    'Gradient ⊙ Input'
    """
    method = REGISTRY.get(name)
    return method.label if method is not None else name


def method_table() -> pd.DataFrame:
    """The registry as a table: one row per method, for the docs and the book.

    Returns
    -------
    pandas.DataFrame
        Columns ``method, label, paper, computes, settings, aliases``.

    Examples
    --------
    >>> table = method_table()
    >>> table.loc[table["method"] == "vargrad", "paper"].item()
    'appendix'
    """
    import pandas as pd

    rows = [{"method": m.name, "label": m.label, "paper": m.paper, "computes": m.computes,
             "settings": ", ".join(f"{k}={v!r}" for k, v in m.settings.items()) or "none",
             "aliases": ", ".join(m.aliases)}
            for m in REGISTRY.values()]
    return pd.DataFrame(rows, columns=["method", "label", "paper", "computes", "settings",
                                       "aliases"])


def rst_table() -> str:
    """The method table as reStructuredText, for the module docstring of ``saliency``."""
    rows = [(f"``{m.name}``", m.computes) for m in REGISTRY.values()]
    width = max(len(r[0]) for r in rows)
    rule = "=" * width + "  " + "=" * max(len(r[1]) for r in rows)
    lines = [rule, f"{'method':<{width}}  what it computes", rule]
    lines += [f"{a:<{width}}  {b}" for a, b in rows]
    lines.append(rule)
    return "\n".join(lines)
