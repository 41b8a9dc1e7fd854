"""Argument checks for the whole library, in one place and one message style.

Every public function checks its arguments before any work and raises here, with a message
that names the argument, the value it got, what is allowed and, for a misspelt name, the
closest valid one. The checks return the value in its clean form (an ``int``, a ``float``,
a tuple of names), so callers write ``n = check_int("n", n, minimum=1)``.

Examples
--------
>>> check_int("n_steps", 0, minimum=1)
Traceback (most recent call last):
...
ValueError: n_steps must be an int >= 1, got 0
>>> check_choice("mode", "cascade", ("cascading", "independent"))
Traceback (most recent call last):
...
ValueError: mode='cascade' is not known; did you mean 'cascading'? choose one of 'cascading', 'independent'
"""
from __future__ import annotations

import difflib
import math
import numbers
from typing import Iterable, Sequence

__all__ = ["check_flag", "check_int", "check_real", "check_choice", "check_choices",
           "check_images", "check_device", "parse_methods", "as_unit_images", "closest"]


def closest(value, choices: Iterable) -> str | None:
    """The choice closest to a misspelt string ``value``, or None.

    Examples
    --------
    >>> closest("gausian", ["gaussian", "uniform"])
    'gaussian'
    """
    if not isinstance(value, str):
        return None
    names = [c for c in choices if isinstance(c, str)]
    match = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    return match[0] if match else None


def _listing(choices: Iterable) -> str:
    return ", ".join(repr(c) for c in choices)


def check_flag(name: str, value) -> bool:
    """A boolean option: True or False, never a truthy string or number.

    Examples
    --------
    >>> check_flag("cache", "no")
    Traceback (most recent call last):
    ...
    TypeError: cache must be True or False, got 'no'
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_int(name: str, value, minimum: int | None = 0, maximum: int | None = None) -> int:
    """An integer (not a bool) within ``[minimum, maximum]``.

    Examples
    --------
    >>> check_int("seed", 3)
    3
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    if not ok:
        if minimum is not None and maximum is not None:
            allowed = f"an int from {minimum} to {maximum}"
        elif minimum is not None:
            allowed = f"an int >= {minimum}"
        elif maximum is not None:
            allowed = f"an int <= {maximum}"
        else:
            allowed = "an int"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_real(name: str, value, minimum: float | None = None, maximum: float | None = None,
               *, inclusive: bool = True, why: str = "") -> float:
    """A finite real number (not a bool), optionally bounded below and above.

    ``inclusive=False`` makes the lower bound strict. ``why`` is appended to the message
    (what the number means).

    Examples
    --------
    >>> check_real("std", float("inf"), 0.0)
    Traceback (most recent call last):
    ...
    ValueError: std must be a finite number >= 0.0, got inf
    """
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))
    if ok and minimum is not None:
        ok = value >= minimum if inclusive else value > minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>=' if inclusive else '>'} {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        text = " and ".join(bounds)
        raise ValueError(f"{name} must be a finite number{' ' + text if text else ''}"
                         f"{' (' + why + ')' if why else ''}, got {value!r}")
    return float(value)


def check_choice(name: str, value, choices: Sequence):
    """One of ``choices``; a misspelt string gets the closest valid one suggested."""
    try:
        known = value in choices
    except TypeError:  # unhashable values in a set of choices
        known = False
    if not known:
        guess = closest(value, choices)
        hint = f"did you mean {guess!r}? " if guess else ""
        raise ValueError(f"{name}={value!r} is not known; {hint}choose one of "
                         f"{_listing(choices)}")
    return value


def check_choices(name: str, values, choices: Sequence, *, unique: bool = True) -> tuple:
    """A non-empty list of names from ``choices`` (one name is a list of one).

    Examples
    --------
    >>> check_choices("metrics", "ssim", ("ssim", "hog"))
    ('ssim',)
    >>> check_choices("metrics", ["ssim", "pearson"], ("ssim", "hog"))
    Traceback (most recent call last):
    ...
    ValueError: metrics=['pearson'] not known; choose among 'ssim', 'hog'
    """
    if isinstance(values, str):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be a name or a list of names from {_listing(choices)}, "
                        f"got {type(values).__name__}") from None
    unknown = [v for v in values if not isinstance(v, str) or v not in choices]
    if unknown or not values:
        guess = closest(unknown[0], choices) if unknown else None
        hint = f" (did you mean {guess!r}?)" if guess else ""
        raise ValueError(f"{name}={unknown or list(values)!r} not known{hint}; choose among "
                         f"{_listing(choices)}")
    if unique and len(set(values)) != len(values):
        raise ValueError(f"{name} lists a name twice: {list(values)}; give each once")
    return values


def check_images(x, name: str = "x"):
    """A non-empty, finite, floating-point batch of images N x C x H x W (a torch tensor).

    Returns it detached (the caller's tensor is never changed).

    Examples
    --------
    >>> import torch
    >>> check_images(torch.zeros(3, 28, 28))
    Traceback (most recent call last):
    ...
    ValueError: x must be a non-empty batch of images N x C x H x W (the similarity metrics compare 2-D maps); got shape (3, 28, 28). For one image use x[None]
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of model inputs (N x C x H x W), got "
                        f"{type(x).__name__}; convert with torch.as_tensor({name})")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (the preprocessed model "
                        f"input), got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty batch of images N x C x H x W (the similarity metrics "
            f"compare 2-D maps); got shape {tuple(x.shape)}. For one image use {name}[None]")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or infinite values; the model input must be finite")
    return x.detach()


def check_device(device):
    """A torch device; None means CUDA when available, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"device={device!r} is not a torch device; use None (CUDA when "
                         "available), 'cpu' or 'cuda'") from err


def parse_methods(methods) -> dict:
    """``{name: settings dict}`` from a method name, a list of names or a dict name -> settings.

    Names are checked against the method registry (:data:`sanity_lib.saliency.REGISTRY`);
    a misspelt or aliased name gets the method it most likely means suggested.

    Examples
    --------
    >>> parse_methods(["gradient", "smoothgrad"])
    {'gradient': {}, 'smoothgrad': {}}
    >>> parse_methods({"smoothgrad": {"n_samples": 8}})
    {'smoothgrad': {'n_samples': 8}}
    """
    from sanity_lib import saliency

    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, dict):
        items = list(methods.items())
    else:
        try:
            items = [(m, {}) for m in methods]
        except TypeError:
            raise TypeError(
                "methods must be a list of method names or a dict name -> settings dict, got "
                f"{type(methods).__name__}") from None
    if not items:
        raise ValueError(f"methods is empty; pass at least one of {saliency.METHODS}")
    out = {}
    for name, settings in items:
        if not isinstance(name, str) or name not in saliency.REGISTRY:
            close = saliency._registry.closest_names(str(name), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown method {name!r} in methods; {hint}valid names are "
                f"{', '.join(saliency.REGISTRY)}")
        if name in out:
            raise ValueError(f"method {name!r} appears twice in methods; give it once")
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise TypeError(f"the settings of method {name!r} must be a dict, e.g. "
                            f"{{'{name}': {{'batch_size': 8}}}}; got {type(settings).__name__}")
        out[name] = dict(settings)
    return out


def as_unit_images(x01, name: str = "x01"):
    """Images for a model's ``preprocess``: floats in [0, 1]; 8-bit pixels are converted.

    A ``uint8`` tensor (0..255, as images load from disk) is divided by 255; any other
    integer or bool tensor is refused, since its scale is unknown.

    Examples
    --------
    >>> import torch
    >>> as_unit_images(torch.tensor([0, 255], dtype=torch.uint8)).tolist()
    [0.0, 1.0]
    """
    import torch

    if not isinstance(x01, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images in [0, 1], got "
                        f"{type(x01).__name__}; convert with torch.as_tensor({name})")
    if x01.dtype == torch.uint8:
        return x01.to(torch.get_default_dtype()) / 255.0
    if not x01.is_floating_point():
        raise TypeError(f"{name} must hold floats in [0, 1] (or uint8 pixels 0..255), got "
                        f"dtype {x01.dtype}; convert with {name}.float() / 255 for 8-bit "
                        "values")
    return x01
