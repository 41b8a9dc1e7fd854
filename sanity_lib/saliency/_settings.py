"""Method names, their settings with the paper's defaults, and checks of both."""
import difflib
import math
import numbers
from types import MappingProxyType

import torch
from torch import nn

from . import _methods  # noqa: F401  (fills the registry)
from ._registry import REGISTRY, closest_names
from sanity_lib._validation import check_flag, check_int, check_real

__all__ = ["METHODS", "DEFAULT_SETTINGS", "INTEGRATION_RULES", "resolve_method", "check_settings"]

#: The built-in methods' canonical names, in the registry's order. (A method registered
#: later with :func:`~sanity_lib.saliency.register` works everywhere too; it is in REGISTRY.)
METHODS = tuple(REGISTRY)

from ._integration import INTEGRATION_RULES  # re-exported

# Settings every method takes.
_COMMON = {"batch_size": 32, "progress": False}

#: Method -> its settings with their defaults (the paper's), read-only.
DEFAULT_SETTINGS = MappingProxyType(
    {name: MappingProxyType({**m.settings, **_COMMON}) for name, m in REGISTRY.items()}
)


def default_settings(method: str) -> dict:
    """The settings of a registered method with their defaults (common ones included)."""
    return {**REGISTRY[method].settings, **_COMMON}


def resolve_method(method) -> str:
    """The canonical method name; case, spaces and hyphens are forgiven.

    Aliases (``"ig"``, ``"grad_cam"``) are not accepted here, so that tables and caches
    always carry one name per method, but the error suggests the method they mean.

    Examples
    --------
    >>> resolve_method("Guided-Backprop")
    'guided_backprop'
    >>> resolve_method("ig")
    Traceback (most recent call last):
    ...
    ValueError: method='ig' is not known; did you mean 'integrated_gradients'? ...
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, one of {tuple(REGISTRY)}; got "
                        f"{type(method).__name__}")
    key = method.strip().lower().replace("-", "_").replace(" ", "_")
    if key in REGISTRY:
        return key
    suggestions = closest_names(method)
    hint = f"did you mean {suggestions[0]!r}? " if suggestions else ""
    raise ValueError(f"method={method!r} is not known; {hint}choose one of {tuple(REGISTRY)}")


def _check_value(method, name, value):
    if name == "batch_size":
        return check_int(name, value, minimum=1)
    if name == "progress":
        return check_flag("progress", value)
    if name == "n_steps":
        return check_int(name, value, minimum=1)
    if name == "n_samples":
        # A variance needs two samples; a mean needs one.
        return check_int(name, value, minimum=2 if method == "vargrad" else 1)
    if name == "noise_level":
        return check_real(name, value, 0.0)
    if name == "seed":
        return check_int(name, value, minimum=0)
    if name == "epsilon":
        return check_real(name, value, 0.0, inclusive=False)
    if name == "internal_batch_size":
        return None if value is None else check_int(name, value, minimum=1)
    if name == "integration":
        if value == "riemann_trapezoid":
            raise ValueError(
                "integration='riemann_trapezoid' is not offered: Captum's trapezoid weights sum "
                "to (n_steps - 1) / n_steps, so the attributions lose that share of "
                f"f(x) - f(baseline); choose one of {INTEGRATION_RULES}"
            )
        if value not in INTEGRATION_RULES:
            raise ValueError(
                f"integration={value!r} is not known; choose one of {INTEGRATION_RULES}"
            )
        return value
    if name == "baseline":
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise TypeError(
            "baseline must be a finite number (a constant input, 0.0 = all zeros in the "
            f"model's input space) or a tensor broadcastable to x; got {value!r}"
        )
    if name == "smooth" and method in ("guided_backprop", "guided_gradcam"):
        from ._guided import SMOOTH_RULES

        if value not in SMOOTH_RULES:
            raise ValueError(
                f"smooth={value!r} is not known; choose 'plain' (gradients pass smooth "
                "activations unguided, as Springenberg et al. define GBP for ReLU networks) "
                "or 'guided' (the guided clamp s'(z) * max(grad, 0) at every activation)")
        return value
    if name == "layer":
        if value is None or isinstance(value, (str, nn.Module)):
            return value
        raise TypeError(
            "layer must be a submodule of the model or its dotted name (e.g. 'conv2' or "
            f"'features.3'), or None for the rectified output of the last convolutional layer; got {type(value).__name__}"
        )
    return value  # a registered method's own setting: its plan checks it


def check_settings(method: str, settings: dict) -> dict:
    """Defaults merged with the given settings, each checked; unknown names raise TypeError."""
    allowed = default_settings(method)
    for name in settings:
        if name not in allowed:
            owners = [m for m in REGISTRY if name in REGISTRY[m].settings]
            where = f" ({name!r} is a setting of {', '.join(owners)})" if owners else ""
            close = difflib.get_close_matches(name, list(allowed), n=1)
            guess = f"; did you mean {close[0]!r}?" if close and not owners else ""
            raise TypeError(
                f"method {method!r} takes no setting {name!r}{where}{guess}; its settings "
                f"are {sorted(allowed)}"
            )
    merged = dict(allowed)
    merged.update(settings)
    checked = {name: _check_value(method, name, value) for name, value in merged.items()}
    if checked.get("integration", "").startswith("riemann") and checked["n_steps"] < 2:
        raise ValueError(f"n_steps must be >= 2 for integration={checked['integration']!r}")
    return checked
