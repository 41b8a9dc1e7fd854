"""Packages whose submodules load on first use (``import sanity_lib`` stays quick).

Examples
--------
>>> getattr_, dir_ = lazy_package("sanity_lib", ["data"], shortcuts={"d": "data"})
>>> getattr_("d").__name__
'sanity_lib.data'
>>> sorted(dir_())
['d', 'data']
"""
from __future__ import annotations

import importlib

__all__ = ["lazy_package"]


def lazy_package(package: str, submodules, *, shortcuts: dict | None = None,
                 attributes: dict | None = None, extra_names=()):
    """The module-level ``__getattr__`` and ``__dir__`` of a lazily loading package.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    submodules : sequence of str
        Submodules reachable as attributes (``package.name``), imported on first use.
    shortcuts : dict of str to str, optional
        Short names for deeper modules: ``{"grading": "course.grading"}``.
    attributes : dict of str to str, optional
        Names taken from a submodule: ``{"model_randomization_test": "checks"}``.
    extra_names : sequence of str
        Further names ``dir()`` lists (defined in the package itself).

    Returns
    -------
    (__getattr__, __dir__)
    """
    submodules = tuple(submodules)
    shortcuts = dict(shortcuts or {})
    attributes = dict(attributes or {})

    def __getattr__(name):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name in shortcuts:
            return importlib.import_module(f"{package}.{shortcuts[name]}")
        if name in attributes:
            return getattr(importlib.import_module(f"{package}.{attributes[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted({*submodules, *shortcuts, *attributes, *extra_names})

    return __getattr__, __dir__
