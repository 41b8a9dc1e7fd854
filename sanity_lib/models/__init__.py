"""The model zoo: the paper's MNIST networks, an ImageNet model that works offline,
Inception v3 for readers online, the toy models of the paper's analyses, and
:func:`layer_groups`, which names the layers that the randomization tests re-initialize.

Every model here is returned in eval mode and has

- ``model.preprocess(x01)``: maps images in [0, 1] to the model's input, and
- ``model.layer_group_names`` (or, for Inception v3, the paper's 17 stages via
  :func:`layer_groups`).

Examples
--------
>>> from sanity_lib import models
>>> [name for name, _ in models.layer_groups(models.mnist_mlp())]
['fc1', 'fc2', 'fc3', 'logits']
"""
from .analysis import (ConvStackModel, LinearModel, OneConvModel, conv_stack_model, linear_model,
                       one_conv_model)
from .efficientnet import EfficientNetLite0, efficientnet_lite0
from .groups import group_problems, layer_groups, list_modules
from .inception import INCEPTION_V3_GROUPS, InceptionV3, inception_v3
from .mnist import MnistCNN, MnistMLP, ShiftedSoftplus, mnist_cnn, mnist_mlp

__all__ = [
    "efficientnet_lite0",
    "inception_v3",
    "mnist_cnn",
    "mnist_mlp",
    "linear_model",
    "one_conv_model",
    "conv_stack_model",
    "layer_groups",
    "list_modules",
    "group_problems",
    "EfficientNetLite0",
    "InceptionV3",
    "MnistCNN",
    "MnistMLP",
    "ShiftedSoftplus",
    "LinearModel",
    "OneConvModel",
    "ConvStackModel",
    "INCEPTION_V3_GROUPS",
]
