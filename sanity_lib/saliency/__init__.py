"""Saliency maps: one call, :func:`explain`, for every method the paper tests (and two more).

{method_table}

Every method is one record of the registry (:data:`REGISTRY`, ``_methods.py``): its name,
label, aliases, default settings, how it is computed and which passes a sweep shares; the
table above is generated from it, as are :data:`METHODS`, :data:`DEFAULT_SETTINGS`, the plot
labels and the names the graders accept. ``CONTRIBUTING.md`` shows how to add a method.

Where Captum is wrong for this course, the wrapper is ours and is proven in tests:

- Guided Backprop is guided at *every* rectifier (``nn.ReLU6``, functional and in-place
  ``F.relu``, reused modules), not only at ``nn.ReLU`` modules; see ``_guided``.
- SmoothGrad's noise scales with each image's own range, as in the paper, and is
  reproducible (``seed``) whatever the batch size; see :func:`smoothgrad_noise`.
- DeepLift and LRP refuse models whose nonlinearities Captum's rules do not cover,
  instead of silently treating them as linear; see ``_propagation``.

Examples
--------
>>> import torch
>>> from sanity_lib.models import mnist_cnn
>>> maps = explain(mnist_cnn(), torch.rand(3, 1, 28, 28), "guided_backprop")
>>> maps.shape
torch.Size([3, 1, 28, 28])
"""
from ._completeness import completeness_error
from ._engine import explain, explain_each, reference
from ._guided import SaliencyWarning, guided_rectifiers
from ._inputs import UnsupportedModelError
from ._noise import Smoothed, smoothgrad_noise
from ._registry import (PAPER_ROLES, REGISTRY, Method, lookup, method_key, method_label,
                        method_table, register, rst_table)
from ._settings import DEFAULT_SETTINGS, INTEGRATION_RULES, METHODS
from ._shared import explain_all

__doc__ = __doc__.replace("{method_table}", rst_table())

#: The methods the paper tests (its Figure 2 and the others it reports), in registry order.
PAPER_METHODS = tuple(m for m, spec in REGISTRY.items() if spec.paper in ("figure 2", "tested"))

__all__ = [
    "METHODS",
    "PAPER_METHODS",
    "REGISTRY",
    "PAPER_ROLES",
    "Method",
    "register",
    "lookup",
    "method_key",
    "method_label",
    "method_table",
    "DEFAULT_SETTINGS",
    "INTEGRATION_RULES",
    "explain",
    "explain_all",
    "explain_each",
    "reference",
    "completeness_error",
    "smoothgrad_noise",
    "Smoothed",
    "guided_rectifiers",
    "SaliencyWarning",
    "UnsupportedModelError",
]
