"""Saliency maps: one call, :func:`explain`, for every method the paper tests (and two more).

======================================  ==============================================
method                                  what it computes
======================================  ==============================================
``gradient``                            dS_c/dx, signed (Captum ``Saliency``, abs=False)
``gradient_x_input``                    x * dS_c/dx
``integrated_gradients``                (x - x') * mean over the path of the gradient
``smoothgrad``                          mean gradient over noisy copies of x
``vargrad``                             variance of those noisy gradients
``integrated_gradients_smoothgrad``     SmoothGrad over Integrated Gradients
``guided_backprop``                     backprop with negative gradients zeroed at every
                                        rectifier
``gradcam``                             ReLU(sum_k alpha_k A^k) at the last conv block,
                                        N x 1 x H x W
``guided_gradcam``                      guided_backprop * upsampled gradcam
``deeplift``                            Captum DeepLift (rescale rule), zero baseline
``lrp_epsilon``                         Captum LRP, epsilon rule on every layer
======================================  ==============================================

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
from ._engine import explain
from ._guided import SaliencyWarning, guided_rectifiers
from ._inputs import UnsupportedModelError
from ._noise import smoothgrad_noise
from ._settings import DEFAULT_SETTINGS, INTEGRATION_RULES, METHODS

__all__ = [
    "METHODS",
    "DEFAULT_SETTINGS",
    "INTEGRATION_RULES",
    "explain",
    "smoothgrad_noise",
    "guided_rectifiers",
    "SaliencyWarning",
    "UnsupportedModelError",
]
