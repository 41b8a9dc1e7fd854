"""Method names, their settings with the paper's defaults, and checks of both."""
import difflib
import math
import numbers
from types import MappingProxyType

import torch
from torch import nn

__all__ = ["METHODS", "DEFAULT_SETTINGS", "INTEGRATION_RULES", "resolve_method", "check_settings"]

METHODS = (
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "smoothgrad",
    "vargrad",
    "integrated_gradients_smoothgrad",
    "guided_backprop",
    "gradcam",
    "guided_gradcam",
    "deeplift",
    "lrp_epsilon",
)

# Captum's names for the quadrature rules of Integrated Gradients. Captum 0.9's
# "riemann_trapezoid" is left out on purpose: its weights sum to (n - 1) / n, so it
# loses 1/n of the attribution (2% at 50 steps) and breaks completeness.
INTEGRATION_RULES = ("gausslegendre", "riemann_middle", "riemann_left", "riemann_right")

_COMMON = {"batch_size": 32, "progress": False}
_NOISE = {"n_samples": 50, "noise_level": 0.15, "seed": 0}
_IG = {"n_steps": 50, "baseline": 0.0, "integration": "gausslegendre",
       "internal_batch_size": None}

_DEFAULTS = {
    "gradient": {},
    "gradient_x_input": {},
    "integrated_gradients": _IG,
    "smoothgrad": _NOISE,
    "vargrad": _NOISE,
    "integrated_gradients_smoothgrad": {**_NOISE, **_IG},
    "guided_backprop": {},
    "gradcam": {"layer": None},
    "guided_gradcam": {"layer": None},
    "deeplift": {"baseline": 0.0},
    "lrp_epsilon": {"epsilon": 1e-9},
}
DEFAULT_SETTINGS = MappingProxyType(
    {name: MappingProxyType({**settings, **_COMMON}) for name, settings in _DEFAULTS.items()}
)

# Short names people type; used only to suggest the real name in an error.
_ALIASES = {
    "ig": "integrated_gradients", "sg": "smoothgrad", "gbp": "guided_backprop",
    "saliency": "gradient", "vanilla_gradient": "gradient", "input_x_gradient": "gradient_x_input",
    "grad_cam": "gradcam", "guided_grad_cam": "guided_gradcam", "lrp": "lrp_epsilon",
    "deep_lift": "deeplift", "smooth_grad": "smoothgrad", "var_grad": "vargrad",
    "ig_smoothgrad": "integrated_gradients_smoothgrad",
}


def resolve_method(method) -> str:
    """The canonical method name; case, spaces and hyphens are forgiven."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, one of {METHODS}; got {type(method).__name__}")
    key = method.strip().lower().replace("-", "_").replace(" ", "_")
    if key in METHODS:
        return key
    candidates = list(METHODS) + list(_ALIASES)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    if key in _ALIASES:
        close.insert(0, key)
    suggestions = list(dict.fromkeys(_ALIASES.get(c, c) for c in close))
    hint = f"did you mean {suggestions[0]!r}? " if suggestions else ""
    raise ValueError(f"method={method!r} is not known; {hint}choose one of {METHODS}")


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _real(name, value, minimum, inclusive=True):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= minimum if inclusive else value > minimum
    if not ok:
        bound = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be a finite number {bound} {minimum}, got {value!r}")
    return float(value)


def _check_value(method, name, value):
    if name == "batch_size":
        return _positive_int(name, value)
    if name == "progress":
        if not isinstance(value, bool):
            raise TypeError(f"progress must be True or False, got {value!r}")
        return value
    if name == "n_steps":
        return _positive_int(name, value)
    if name == "n_samples":
        # A variance needs two samples; a mean needs one.
        return _positive_int(name, value, minimum=2 if method == "vargrad" else 1)
    if name == "noise_level":
        return _real(name, value, 0.0)
    if name == "seed":
        return _positive_int(name, value, minimum=0)
    if name == "epsilon":
        return _real(name, value, 0.0, inclusive=False)
    if name == "internal_batch_size":
        return None if value is None else _positive_int(name, value)
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
    if name == "layer":
        if value is None or isinstance(value, (str, nn.Module)):
            return value
        raise TypeError(
            "layer must be a submodule of the model or its dotted name (e.g. 'conv2' or "
            f"'features.3'), or None for the last convolutional layer; got {type(value).__name__}"
        )
    raise AssertionError(f"no check for setting {name!r}")  # pragma: no cover


def check_settings(method: str, settings: dict) -> dict:
    """Defaults merged with the given settings, each checked; unknown names raise TypeError."""
    allowed = DEFAULT_SETTINGS[method]
    for name in settings:
        if name not in allowed:
            owners = [m for m in METHODS if name in DEFAULT_SETTINGS[m]]
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
