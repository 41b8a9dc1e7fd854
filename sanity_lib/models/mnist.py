"""The paper's two MNIST architectures (Adebayo et al. 2018, section 3 and appendix).

Every activation is its own module and nothing works in place, so hooks and the guided
backpropagation wrapper see every rectifier, and randomizing a layer touches one module.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from sanity_lib._validation import as_unit_images

class ShiftedSoftplus(nn.Softplus):
    """softplus(z) - ln 2: softplus moved down to pass through 0, as ReLU and tanh do.

    Its derivative is softplus's (the logistic sigmoid). With PyTorch's default
    initialization the paper's CNN does not learn with plain softplus: every layer adds the
    offset ln 2 to each unit, and the input-dependent part of the logits is drowned (chapter
    7 measures it). The shifted version trains like tanh. It subclasses ``nn.Softplus``, so
    the guided clamp (``smooth="guided"``) and GradCAM see a smooth activation; Captum's
    DeepLIFT looks rules up by exact module type and has none for it, and the library's
    DeepLIFT refuses such a model rather than treat the activation as linear.

    Examples
    --------
    >>> float(ShiftedSoftplus()(torch.zeros(1)))
    0.0
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) - math.log(2.0)


ACTIVATIONS = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "shifted_softplus": ShiftedSoftplus,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"activation={name!r} is not known; choose one of {sorted(ACTIVATIONS)}"
        ) from None


class MnistCNN(nn.Module):
    """conv5x5(32) -> maxpool -> conv5x5(64) -> maxpool -> fc1024 -> fc10.

    'same' padding as in the TensorFlow original, so a 28 x 28 digit leaves the second
    pooling as 64 x 7 x 7. Inputs are images in [0, 1], shape N x 1 x 28 x 28.
    """

    layer_group_names = ("conv1", "conv2", "fc1", "logits")

    def __init__(self, activation: str = "relu"):
        super().__init__()
        self.activation_name = activation
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5, padding=2)
        self.act1 = _activation(activation)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.act2 = _activation(activation)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 7 * 7, 1024)
        self.act3 = _activation(activation)
        self.logits = nn.Linear(1024, 10)

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """The network reads [0, 1] pixels directly: preprocessing is the identity."""
        x01 = as_unit_images(x01)
        return x01

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        x = self.act3(self.fc1(self.flatten(x)))
        return self.logits(x)


class MnistMLP(nn.Module):
    """784 -> 2500 -> 1500 -> 500 -> 10, the paper's multilayer perceptron."""

    layer_group_names = ("fc1", "fc2", "fc3", "logits")

    def __init__(self, activation: str = "relu"):
        super().__init__()
        self.activation_name = activation
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, 2500)
        self.act1 = _activation(activation)
        self.fc2 = nn.Linear(2500, 1500)
        self.act2 = _activation(activation)
        self.fc3 = nn.Linear(1500, 500)
        self.act3 = _activation(activation)
        self.logits = nn.Linear(500, 10)

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """The network reads [0, 1] pixels directly: preprocessing is the identity."""
        x01 = as_unit_images(x01)
        return x01

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.fc1(self.flatten(x)))
        x = self.act2(self.fc2(x))
        x = self.act3(self.fc3(x))
        return self.logits(x)


def mnist_cnn(activation: str = "relu", *, seed: int | None = 0) -> MnistCNN:
    """The paper's MNIST CNN, freshly initialized (train it with ``sanity_lib.training``).

    Parameters
    ----------
    activation : {"relu", "softplus", "shifted_softplus", "tanh", "gelu"}
        The nonlinearity after each hidden layer; the paper uses ReLU.
    seed : int or None
        Seed for the initial weights, so two calls give the same network. None keeps
        the global random state.

    Examples
    --------
    >>> model = mnist_cnn()
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return MnistCNN(activation).eval()


def mnist_mlp(activation: str = "relu", *, seed: int | None = 0) -> MnistMLP:
    """The paper's MNIST multilayer perceptron, freshly initialized.

    Examples
    --------
    >>> mnist_mlp()(torch.zeros(3, 1, 28, 28)).shape
    torch.Size([3, 10])
    """
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return MnistMLP(activation).eval()
