"""Toy models for the paper's section 5 analyses ("why do methods fail?").

- :func:`linear_model`: ``f(x) = w . x + b``. Gradient and SmoothGrad both return ``w``,
  whatever the input; Gradient x Input and Integrated Gradients (zero baseline) return
  ``x * w``, which looks like the input.
- :func:`one_conv_model`: one 3 x 3 convolution -> ReLU -> sum over all positions and
  channels. Even with random weights its input gradient at a pixel depends only on
  which units around it are active, so gradient maps look like edge maps.
  ``init="sobel"`` makes it an actual edge detector (L1 Sobel magnitude), for the
  reviewers' comparison with real edge detectors.

Both return N x 1 outputs (explain ``target=0``), take inputs as they are
(``preprocess`` is the identity) and define ``layer_group_names``.
"""
from __future__ import annotations

import torch
from numpy.typing import ArrayLike
from torch import nn

from sanity_lib._validation import as_unit_images, check_choice, check_int

__all__ = ["LinearModel", "OneConvModel", "ConvStackModel", "SumPool", "linear_model",
           "one_conv_model", "conv_stack_model",
           "SOBEL_X", "SOBEL_Y"]

# Sobel kernels as cross-correlation filters (what Conv2d computes): SOBEL_X responds to
# intensity increasing to the right (vertical edges), SOBEL_Y to it increasing downwards.
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T.contiguous()


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class LinearModel(nn.Module):
    """``f(x) = w . x + b`` over the flattened input; output N x 1.

    The weight lives in ``self.linear`` (an ``nn.Linear`` over ``w.numel()`` inputs),
    so layer randomization treats it like any other layer.
    """

    layer_group_names = ("linear",)

    def __init__(self, weight: torch.Tensor, bias: float = 0.0):
        super().__init__()
        weight = torch.as_tensor(weight, dtype=torch.float32)
        self.input_shape = tuple(weight.shape)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(weight.numel(), 1)
        with torch.no_grad():
            self.linear.weight.copy_(weight.reshape(1, -1))
            self.linear.bias.fill_(float(bias))

    @property
    def weight(self) -> torch.Tensor:
        """The weight ``w`` in the input's shape (a view of the linear layer's weight)."""
        return self.linear.weight.view(self.input_shape)

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """Identity: the model reads its input as given."""
        x01 = as_unit_images(x01)
        return _identity(x01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"linear_model expects inputs of shape N x {' x '.join(map(str, self.input_shape))} "
                f"(the weight's shape), got {tuple(x.shape)}"
            )
        return self.linear(self.flatten(x))


class SumPool(nn.Module):
    """Sum over every position and channel: N x C x H x W -> N x 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=tuple(range(1, x.dim()))).unsqueeze(1)


class OneConvModel(nn.Module):
    """conv 3 x 3 ('same' padding) -> ReLU -> sum pooling; output N x 1."""

    layer_group_names = ("conv",)

    def __init__(self, in_channels: int = 1, out_channels: int = 16, bias: bool = True,
                 padding_mode: str = "zeros"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias,
                              padding_mode=padding_mode)
        self.act = nn.ReLU()
        self.pool = SumPool()

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """Identity: the model reads its input as given."""
        x01 = as_unit_images(x01)
        return _identity(x01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.conv(x)))


class ConvStackModel(nn.Module):
    """``depth`` times (conv 3 x 3, 'same' padding -> ReLU), then sum pooling; output N x 1."""

    def __init__(self, in_channels: int = 1, channels: int = 16, depth: int = 3):
        super().__init__()
        widths = [in_channels] + [channels] * depth
        self.convs = nn.ModuleList(nn.Conv2d(a, b, kernel_size=3, padding=1)
                                   for a, b in zip(widths, widths[1:]))
        # one ReLU module per layer, so that every rectifier is its own module
        self.acts = nn.ModuleList(nn.ReLU() for _ in range(depth))
        self.pool = SumPool()
        self.layer_group_names = tuple(f"convs.{i}" for i in range(depth))

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """Identity: the model reads its input as given."""
        x01 = as_unit_images(x01)
        return _identity(x01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.acts):
            x = act(conv(x))
        return self.pool(x)


def conv_stack_model(depth: int = 3, *, in_channels: int = 1, channels: int = 16,
                     seed: int | None = 0) -> ConvStackModel:
    """A random stack of ``depth`` conv 3 x 3 -> ReLU layers, then sum pooling.

    The one-layer model of the paper's section 5.2 (:func:`one_conv_model`) cannot tell Guided
    Backprop from the gradient: the sum pooling sends +1 back to every ReLU, so the guided
    clamp (zero the negative gradients) never acts and the two maps are identical. With
    ``depth >= 2`` the gradient reaching every ReLU but the last has passed through random
    weights and has both signs, so the clamp acts: this is the smallest model on which the
    paper's account of Guided Backprop on random networks can be seen.

    Parameters
    ----------
    depth : int, default 3
        Number of conv -> ReLU layers (1 is :func:`one_conv_model`'s architecture).
    in_channels : int, default 1
        Input channels (1 for MNIST, 3 for photos).
    channels : int, default 16
        Filters of every layer.
    seed : int or None, default 0
        Seed of PyTorch's default initialization (None: the global random state).

    Returns
    -------
    ConvStackModel
        In eval mode, output N x 1.

    Examples
    --------
    >>> import sanity_lib as sl
    >>> x = torch.rand(2, 1, 12, 12)
    >>> one, deep = conv_stack_model(1), conv_stack_model(3)
    >>> grad, guided = (sl.saliency.explain(one, x, m) for m in ("gradient", "guided_backprop"))
    >>> torch.equal(grad, guided)                         # one layer: the clamp never acts
    True
    >>> grad, guided = (sl.saliency.explain(deep, x, m) for m in ("gradient", "guided_backprop"))
    >>> torch.equal(grad, guided)
    False
    """
    depth = check_int("depth", depth, minimum=1)
    channels = check_int("channels", channels, minimum=1)
    in_channels = check_int("in_channels", in_channels, minimum=1)
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = ConvStackModel(in_channels, channels, depth)
    return model.eval()


def linear_model(weight: torch.Tensor | ArrayLike, *, bias: float = 0.0) -> LinearModel:
    """The linear model ``f(x) = w . x + b`` of the paper's section 5.1.

    Parameters
    ----------
    weight : tensor-like
        ``w``, in the shape of one input (e.g. 1 x 28 x 28); inputs are N x that shape.
    bias : float
        ``b``; it changes no gradient.

    Returns
    -------
    LinearModel
        In eval mode, output N x 1.

    Examples
    --------
    >>> w = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    >>> model = linear_model(w, bias=1.0)
    >>> model(torch.ones(1, 2, 2))
    tensor([[0.5000]], grad_fn=<AddmmBackward0>)
    """
    return LinearModel(weight, bias).eval()


def one_conv_model(kernel: torch.Tensor | ArrayLike | None = None, *, in_channels: int = 1,
                   out_channels: int | None = None, seed: int | None = 0, init: str = "random",
                   padding_mode: str = "zeros") -> OneConvModel:
    """One 3 x 3 conv layer -> ReLU -> sum pooling (the paper's section 5.2 model).

    Parameters
    ----------
    kernel : tensor-like, optional
        Filters to use, shape ``out_channels x in_channels x 3 x 3`` (or ``3 x 3`` for a
        single filter); the bias is then zero. Overrides ``init``.
    in_channels : int
        Input channels (1 for MNIST, 3 for photos).
    out_channels : int, optional
        Number of filters. Default 16 for ``init="random"``, 4 for ``init="sobel"``
        (which needs exactly 4).
    seed : int or None
        Seed of the random initialization (None: global random state).
    init : {"random", "sobel"}
        ``"random"``: PyTorch's default initialization (weights and bias).
        ``"sobel"``: the filters ``+Sx, -Sx, +Sy, -Sy`` applied to the channel mean, no
        bias. Since ``relu(g) + relu(-g) = |g|``, the output is the L1 Sobel gradient
        magnitude summed over the image: an edge detector.
    padding_mode : {"zeros", "replicate", "reflect", "circular"}
        How the convolution pads the border (output keeps the input's size). With
        "zeros" (PyTorch's and TensorFlow's default) the image border itself acts as an
        edge; "replicate" avoids that, useful when comparing with edge detectors.

    Returns
    -------
    OneConvModel
        In eval mode, output N x 1.

    Examples
    --------
    >>> model = one_conv_model(init="sobel", padding_mode="replicate")
    >>> flat = torch.ones(1, 1, 8, 8)
    >>> step = torch.zeros(1, 1, 8, 8); step[..., 4:] = 1.0
    >>> model(flat).item(), model(step).item()  # 8 rows x 2 columns x |Sx| = 4
    (0.0, 64.0)
    """
    if init not in ("random", "sobel"):
        raise ValueError(f"init={init!r} is not known; choose 'random' or 'sobel'")
    check_choice("padding_mode", padding_mode, ("zeros", "replicate", "reflect", "circular"))
    if in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if kernel is not None:
        kernel = torch.as_tensor(kernel, dtype=torch.float32)
        if kernel.dim() == 2:
            kernel = kernel[None, None].expand(1, in_channels, 3, 3)
        if kernel.dim() != 4 or tuple(kernel.shape[1:]) != (in_channels, 3, 3):
            raise ValueError(
                f"kernel must have shape out_channels x {in_channels} x 3 x 3 (or 3 x 3), "
                f"got {tuple(kernel.shape)}"
            )
        if out_channels is not None and out_channels != kernel.shape[0]:
            raise ValueError(
                f"out_channels={out_channels} disagrees with the kernel's {kernel.shape[0]} "
                "filters; leave out_channels out"
            )
        model = OneConvModel(in_channels, kernel.shape[0], bias=False,
                             padding_mode=padding_mode)
        with torch.no_grad():
            model.conv.weight.copy_(kernel)
        return model.eval()
    if init == "sobel":
        if out_channels not in (None, 4):
            raise ValueError(
                f'init="sobel" builds exactly 4 filters (+Sx, -Sx, +Sy, -Sy); got '
                f"out_channels={out_channels}; leave it out"
            )
        filters = torch.stack([SOBEL_X, -SOBEL_X, SOBEL_Y, -SOBEL_Y])  # 4 x 3 x 3
        kernel = filters[:, None].expand(4, in_channels, 3, 3) / in_channels
        return one_conv_model(kernel, in_channels=in_channels, padding_mode=padding_mode)
    out_channels = 16 if out_channels is None else out_channels
    if out_channels < 1:
        raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = OneConvModel(in_channels, out_channels, bias=True, padding_mode=padding_mode)
    return model.eval()
