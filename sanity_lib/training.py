"""Train the paper's MNIST networks, seeded and cached.

Two levels:

- :func:`train` fits any classifier to images and labels, in place, and returns a
  :class:`TrainingHistory`. ``permute_labels=True`` trains on one seeded random
  permutation of the labels: the network can then only memorise, which is the model the
  data randomization test (paper section 5) explains.
- :func:`trained_mnist_model` builds the paper's CNN or MLP, trains it on the embedded MNIST
  training split with a recipe chosen to be quick on a laptop CPU, and caches the checkpoint
  under a key made of the *full* configuration, so the book, the exercises and the tests
  train each model once.

Training is deterministic on the CPU: the same seed gives bit-identical weights, because
the initial weights, the label permutation and every shuffle come from their own seeded
``torch.Generator`` (the global random state is neither used nor changed).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from sanity_lib import _cache
from sanity_lib._validation import check_choice, check_flag, check_int, check_real

__all__ = ["TrainingHistory", "train", "evaluate", "trained_mnist_model",
           "mnist_training_data", "RECIPES", "RECIPE_VERSION", "OPTIMIZERS", "SCHEDULES",
           "AUGMENTATIONS"]

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "linear")
AUGMENTATIONS = ("none", "shift", "affine")
MAX_SHIFT = 2          # pixels, for "shift" and "affine"
MAX_ROTATION = 10.0    # degrees, for "affine"
MAX_SCALING = 0.1      # relative, for "affine"
ARCHS = ("cnn", "mlp")
LABELS = ("true", "random")

# Bump this whenever the training code changes what a given configuration produces, so
# checkpoints trained by an older recipe are not mistaken for new ones.
RECIPE_VERSION = "mnist-recipe-1"

# Defaults per (arch, labels), measured on the embedded split (8,000 training and 2,000 test
# digits). ``n_train`` None means the whole training split. See trained_mnist_model.
RECIPES = {
    ("cnn", "true"): dict(epochs=6, batch_size=128, lr=2e-3, optimizer="adam",
                          schedule="linear", augment="affine", label_smoothing=0.1,
                          target_accuracy=None, n_train=None),
    ("mlp", "true"): dict(epochs=6, batch_size=128, lr=1e-3, optimizer="adam",
                          schedule="linear", augment="none", label_smoothing=0.1,
                          target_accuracy=None, n_train=None),
    ("cnn", "random"): dict(epochs=40, batch_size=16, lr=5e-4, optimizer="adam",
                            schedule="constant", augment="none", label_smoothing=0.0,
                            target_accuracy=0.97, n_train=1000),
    ("mlp", "random"): dict(epochs=40, batch_size=16, lr=5e-4, optimizer="adam",
                            schedule="constant", augment="none", label_smoothing=0.0,
                            target_accuracy=0.97, n_train=1000),
}


@dataclass
class TrainingHistory:
    """What happened during :func:`train`, one entry per epoch.

    Attributes
    ----------
    train_loss : list of float
        Mean cross-entropy over the epoch's batches (on the labels trained with).
    train_accuracy : list of float
        Fraction of the epoch's training images classified as their (possibly permuted)
        label, measured on the fly while the weights change.
    eval_accuracy : list of float
        Accuracy on ``eval_data`` after each epoch; empty when no eval data was given.
    permutation : torch.Tensor or None
        The index permutation applied to the labels (the model was trained on
        ``labels[permutation]``), or None when the true labels were used.
    seconds : float
        Wall-clock time the training took (for a cached model: when it was trained).

    Examples
    --------
    >>> h = TrainingHistory(train_loss=[0.5], train_accuracy=[0.9])
    >>> h.epochs, h.training_labels(torch.tensor([3, 1])).tolist()
    (1, [3, 1])
    """

    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    eval_accuracy: list = field(default_factory=list)
    permutation: torch.Tensor | None = None
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def training_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels the model was trained on, given the original ones."""
        return labels if self.permutation is None else labels[self.permutation]

    def to_dict(self) -> dict:
        """Plain lists and numbers, safe for ``torch.load(..., weights_only=True)``."""
        return {
            "train_loss": [float(v) for v in self.train_loss],
            "train_accuracy": [float(v) for v in self.train_accuracy],
            "eval_accuracy": [float(v) for v in self.eval_accuracy],
            "permutation": None if self.permutation is None else self.permutation.tolist(),
            "seconds": float(self.seconds),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingHistory":
        """The inverse of :meth:`to_dict`."""
        perm = data["permutation"]
        return cls(
            train_loss=[float(v) for v in data["train_loss"]],
            train_accuracy=[float(v) for v in data["train_accuracy"]],
            eval_accuracy=[float(v) for v in data["eval_accuracy"]],
            permutation=None if perm is None else torch.tensor(perm, dtype=torch.long),
            seconds=float(data["seconds"]),
        )


def _generator(seed: int, stream: str) -> torch.Generator:
    """An independent generator per purpose, so e.g. the label permutation does not
    depend on how many epochs are trained."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _check_data(images, labels, what: str = "images/labels") -> None:
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(f"{what} must be torch tensors, got {type(images).__name__} and "
                        f"{type(labels).__name__}; convert with torch.as_tensor")
    if labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{what}: expected labels of shape (N,) matching N images, got "
                         f"images {tuple(images.shape)} and labels {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError(f"{what}: no images given")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"{what}: labels must be integer class indices, got {labels.dtype}")


def _random_shift(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image (N x C x H x W) by its own random whole-pixel offset,
    zero-filled."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=gen)
    rows = (torch.arange(h) + dy)[:, None, :, None]   # n x 1 x h x 1
    cols = (torch.arange(w) + dx)[:, None, None, :]   # n x 1 x 1 x w
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, chans, rows, cols]


def _warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each image at ``theta @ (x, y, 1)`` (N x 2 x 3, in grid_sample's coordinates
    from -1 to 1), bilinear, zero outside the image."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _random_affine(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rotate (up to MAX_ROTATION degrees), scale (up to MAX_SCALING) and shift (up to
    MAX_SHIFT pixels) each image at random: the classic MNIST augmentation."""
    n, _, h, w = images.shape
    angle = (torch.rand(n, generator=gen) * 2 - 1) * MAX_ROTATION * torch.pi / 180
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * MAX_SCALING
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * MAX_SHIFT
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, 0, 2] = shift[:, 0] * 2 / w   # pixels -> grid units (the image spans 2)
    theta[:, 1, 2] = shift[:, 1] * 2 / h
    return _warp(images, theta)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int = 1000) -> float:
    """Fraction of ``images`` that ``model`` assigns to their ``labels``.

    The model's train/eval mode is restored afterwards.

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> acc = evaluate(mnist_cnn(), torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    >>> 0.0 <= acc <= 1.0
    True
    """
    _check_data(images, labels)
    check_int("batch_size", batch_size, minimum=1)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                logits = model(images[start:start + batch_size])
                correct += (logits.argmax(1) == labels[start:start + batch_size]).sum().item()
    finally:
        model.train(was_training)
    return correct / len(images)


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
          batch_size: int = 128, lr: float = 1e-3, optimizer: str = "adam",
          schedule: str = "linear", augment: str = "none", label_smoothing: float = 0.0,
          target_accuracy: float | None = None, permute_labels: bool = False, seed: int = 0,
          progress: bool = True,
          eval_data: tuple[torch.Tensor, torch.Tensor] | None = None) -> TrainingHistory:
    """Train a classifier in place with cross-entropy; return its history.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of ``images`` to logits. Changed in place, left in eval mode.
    images, labels : torch.Tensor
        Training inputs (N x ...) and integer class labels (N,).
    epochs : int
        Passes over the data (the most, when ``target_accuracy`` is given).
    batch_size : int
        Images per step; the last, smaller batch of an epoch is kept.
    lr : float
        (Peak) learning rate.
    optimizer : {"adam", "sgd"}
        Adam, or SGD with Nesterov momentum 0.9.
    schedule : {"linear", "constant"}
        "linear" decays the learning rate linearly from ``lr`` to 0 over all steps, which
        reaches a given accuracy in fewer epochs than a constant rate.
    augment : {"none", "shift", "affine"}
        Random changes of every training image, drawn anew each epoch from the seed:
        "shift" translates by up to 2 whole pixels in each direction; "affine" also
        rotates by up to 10 degrees and scales by up to 10 % (bilinear). Both fill with
        zeros and need images shaped N x C x H x W. With 8,000 digits the CNN otherwise
        overfits.
    label_smoothing : float
        Spread this much of each target's probability over all classes (0: plain
        cross-entropy); a mild regulariser.
    target_accuracy : float, optional
        Stop after the first epoch whose training accuracy (``history.train_accuracy``)
        reaches this fraction: the paper trains its random-label networks "until training
        accuracy > 95 %". None always runs all ``epochs``.
    permute_labels : bool
        Train on one seeded random permutation of ``labels`` (the data randomization test).
        The label counts stay the same; which image has which label becomes random.
    seed : int
        Seeds the permutation and the shuffling; same seed (and same initial weights)
        gives bit-identical weights on the CPU.
    progress : bool
        Show a tqdm progress bar with the loss and accuracy; False silences it.
    eval_data : tuple (images, labels), optional
        Evaluated after every epoch (``history.eval_accuracy``).

    Returns
    -------
    TrainingHistory

    Examples
    --------
    >>> from sanity_lib.models import mnist_mlp
    >>> x, y = torch.rand(64, 1, 28, 28), torch.arange(64) % 10
    >>> model = mnist_mlp(seed=0)
    >>> history = train(model, x, y, epochs=2, batch_size=32, progress=False)
    >>> history.epochs, model.training
    (2, False)
    """
    _check_data(images, labels)
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("schedule", schedule, SCHEDULES)
    check_choice("augment", augment, AUGMENTATIONS)
    if augment != "none" and images.ndim != 4:
        raise ValueError(f"augment={augment!r} needs images shaped N x C x H x W, got "
                         f"{tuple(images.shape)}; use augment='none'")
    if not (isinstance(label_smoothing, (int, float)) and 0 <= label_smoothing < 1):
        raise ValueError(f"label_smoothing must be a number in [0, 1), got "
                         f"{label_smoothing!r}")
    check_real("lr", lr, 0.0, inclusive=False, why="the learning rate")
    if target_accuracy is not None and not (isinstance(target_accuracy, (int, float))
                                            and 0 < target_accuracy <= 1):
        raise ValueError(f"target_accuracy must be None or a fraction in (0, 1], got "
                         f"{target_accuracy!r}")
    if eval_data is not None:
        if not (isinstance(eval_data, (tuple, list)) and len(eval_data) == 2):
            raise TypeError("eval_data must be a pair (images, labels) or None")
        _check_data(*eval_data, what="eval_data")

    labels = labels.long()
    permutation = None
    if permute_labels:
        permutation = torch.randperm(len(labels), generator=_generator(seed, "labels"))
        labels = labels[permutation]
    shuffle_gen = _generator(seed, "shuffle")
    augment_gen = _generator(seed, "augment")

    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    n = len(labels)
    steps_per_epoch = -(-n // batch_size)
    total_steps = epochs * steps_per_epoch
    if schedule == "linear":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / total_steps)
    else:
        sched = None

    history = TrainingHistory(permutation=permutation)
    bar = tqdm(total=total_steps, desc="training", unit="batch", disable=not progress,
               leave=False)
    start_time = time.perf_counter()
    model.train()
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=shuffle_gen)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                batch = images[idx]
                if augment == "shift":
                    batch = _random_shift(batch, MAX_SHIFT, augment_gen)
                elif augment == "affine":
                    batch = _random_affine(batch, augment_gen)
                logits = model(batch)
                loss = F.cross_entropy(logits, labels[idx], label_smoothing=label_smoothing)
                if not bool(torch.isfinite(loss)):
                    # Stop before the weights turn to NaN (and before anything is cached).
                    raise FloatingPointError(
                        f"the training loss became {loss.item()} at epoch {epoch + 1}, batch "
                        f"{start // batch_size + 1}: training diverged; lower lr (now {lr}) "
                        "or check the data for NaN or huge values")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += loss.item() * len(idx)
                correct += (logits.detach().argmax(1) == labels[idx]).sum().item()
                bar.update(1)
            history.train_loss.append(loss_sum / n)
            history.train_accuracy.append(correct / n)
            postfix = {"loss": f"{loss_sum / n:.3f}", "acc": f"{correct / n:.3f}"}
            if eval_data is not None:
                history.eval_accuracy.append(evaluate(model, *eval_data))
                model.train()
                postfix["eval_acc"] = f"{history.eval_accuracy[-1]:.3f}"
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            bar.set_postfix(postfix)
            if target_accuracy is not None and correct / n >= target_accuracy:
                break
    finally:
        bar.close()
        model.eval()
    history.seconds = time.perf_counter() - start_time
    return history


# --------------------------------------------------------------------------------------
# The paper's MNIST models, trained once and cached


def _builder(arch: str):
    from sanity_lib.models.mnist import mnist_cnn, mnist_mlp

    return {"cnn": mnist_cnn, "mlp": mnist_mlp}[arch]


def _subset_indices(n_total: int, n_train: int | None) -> torch.Tensor:
    """The first ``n_train`` images of one fixed random order of the training split.

    The order is drawn once from a generator seeded with 0, whatever the model's seed, so
    every model trained on a subset of a given size sees the same images; the indices are
    sorted so the subset keeps the split's order.
    """
    if n_train is None or n_train == n_total:
        return torch.arange(n_total)
    order = torch.randperm(n_total, generator=torch.Generator().manual_seed(0))
    return order[:n_train].sort().values


def _resolve(arch: str, labels: str, recipe: str | None = None, **overrides) -> dict:
    """The recipe of (arch, recipe or labels), with the given non-None settings replacing
    its own."""
    check_choice("arch", arch, ARCHS)
    check_choice("labels", labels, LABELS)
    if recipe is not None:
        check_choice("recipe", recipe, LABELS)
    recipe = dict(RECIPES[(arch, recipe or labels)])
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    check_int("epochs", recipe["epochs"], minimum=1)
    check_int("batch_size", recipe["batch_size"], minimum=1)
    check_choice("optimizer", recipe["optimizer"], OPTIMIZERS)
    check_choice("schedule", recipe["schedule"], SCHEDULES)
    check_choice("augment", recipe["augment"], AUGMENTATIONS)
    if recipe["n_train"] is not None:
        check_int("n_train", recipe["n_train"], minimum=1)
    if not (isinstance(recipe["lr"], (int, float)) and recipe["lr"] > 0):
        raise ValueError(f"lr must be a positive number, got {recipe['lr']!r}")
    target = recipe["target_accuracy"]
    if target is not None and not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise ValueError(f"target_accuracy must be a fraction in (0, 1], got {target!r}")
    smoothing = recipe["label_smoothing"]
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        raise ValueError(f"label_smoothing must be a number in [0, 1), got {smoothing!r}")
    return recipe


def mnist_training_data(arch: str = "cnn", labels: str = "true", *, recipe: str | None = None,
                        n_train: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded MNIST training images and their *true* labels, exactly as
    :func:`trained_mnist_model` trains the given configuration on them.

    With ``labels="random"`` the default recipe uses a fixed subset of the training split
    (see :func:`trained_mnist_model`); the labels the model memorised are
    ``history.training_labels(labels)``. ``recipe`` is :func:`trained_mnist_model`'s.

    Examples
    --------
    >>> x, y = mnist_training_data("cnn", "random")
    >>> x.shape[1:], len(x) == len(y) == RECIPES[("cnn", "random")]["n_train"]
    (torch.Size([1, 28, 28]), True)
    """
    from sanity_lib.data import load_mnist

    recipe = _resolve(arch, labels, recipe, n_train=n_train)
    images, targets = load_mnist("train")
    if recipe["n_train"] is not None and recipe["n_train"] > len(targets):
        raise ValueError(f"n_train={recipe['n_train']} is more than the {len(targets)} "
                         "training images; use n_train=None for all of them")
    index = _subset_indices(len(targets), recipe["n_train"])
    return images[index], targets[index]


def _restore(model: nn.Module, entry) -> TrainingHistory:
    """Load a cached entry into ``model``; raises (ValueError, KeyError) when it does not fit."""
    state = entry["state_dict"]
    expected = model.state_dict()
    if set(state) != set(expected):
        missing, extra = set(expected) - set(state), set(state) - set(expected)
        raise ValueError(f"missing keys {sorted(missing)[:3]}, unexpected keys "
                         f"{sorted(extra)[:3]}")
    for key, tensor in expected.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != tensor.shape:
            got = getattr(state[key], "shape", type(state[key]).__name__)
            raise ValueError(f"{key} has shape {tuple(got)}, the model needs "
                             f"{tuple(tensor.shape)}")
    history = TrainingHistory.from_dict(entry["history"])
    model.load_state_dict(state, strict=True)
    return history


def _checkpoint(model: nn.Module, history: TrainingHistory) -> dict:
    """What the cache stores of a trained model: its weights and its plain history."""
    return {"state_dict": model.state_dict(), "history": history.to_dict()}


def trained_mnist_model(arch: str = "cnn", labels: str = "true", *, activation: str = "relu",
                        seed: int = 0, epochs: int | None = None, cache: bool = True,
                        progress: bool = True, batch_size: int | None = None,
                        lr: float | None = None, optimizer: str | None = None,
                        schedule: str | None = None, augment: str | None = None,
                        label_smoothing: float | None = None,
                        target_accuracy: float | None = None,
                        n_train: int | None = None,
                        recipe: str | None = None) -> tuple[nn.Module, TrainingHistory]:
    """The paper's MNIST CNN or MLP, trained on the embedded MNIST training split.

    The first call trains the model (seconds to a minute on a laptop CPU) and saves the
    checkpoint in the sanity_lib cache; later calls with the same configuration load it.
    The cache key holds the *full* configuration: architecture, activation, labels, seed,
    every training setting, the number of training images, a fingerprint of the training
    data and :data:`RECIPE_VERSION`, so changing any of them trains a new model. A damaged
    cache file, or one whose weights do not fit the model, is reported with a warning and
    retrained.

    Parameters
    ----------
    arch : {"cnn", "mlp"}
        The paper's CNN (conv-pool-conv-pool-fc1024-fc10) or MLP (2500-1500-500-10).
    labels : {"true", "random"}
        "random" trains on one seeded permutation of the labels, for the data
        randomization test; the network can only memorise.
    activation : {"relu", "softplus", "shifted_softplus", "tanh", "gelu"}
        Nonlinearity of the hidden layers (the paper: ReLU).
    seed : int
        Seeds the initial weights, the label permutation and the shuffling.
    epochs, batch_size, lr, optimizer, schedule, augment, label_smoothing : optional
        Override the recipe in :data:`RECIPES` (None keeps the recipe's value); see
        :func:`train` for their meaning.
    target_accuracy : float, optional
        Stop once an epoch's training accuracy reaches it (the random-label recipes use
        0.97, with ``epochs`` as the most); 1.0 runs all epochs unless every image fits.
    n_train : int, optional
        Train on this many images of a fixed random subset of the training split (see
        Notes); None keeps the recipe's choice.
    recipe : {"true", "random"}, optional
        Whose recipe in :data:`RECIPES` to start from; None (the default) takes ``labels``'
        own. ``labels="true", recipe="random"`` is the data randomization test's
        *same-recipe control*: true labels, trained exactly like the random-label network
        (the same 1,000 digits, batch size, learning rate, no augmentation or smoothing, and
        the same stopping rule), so that it differs from that network only in its labels.
    cache : bool
        False always trains and neither reads nor writes the cache.
    progress : bool
        Show a progress bar while training.

    Returns
    -------
    model : torch.nn.Module
        The trained model, in eval mode.
    history : TrainingHistory
        Per-epoch loss and accuracy on the labels trained with, and accuracy on the
        embedded test split (true labels) in ``eval_accuracy``; for a cached model, those
        of its training run.

    Raises
    ------
    ValueError
        For an unknown ``arch``, ``labels``, ``optimizer`` or ``schedule``, or a
        non-positive ``epochs``, ``batch_size`` or ``n_train``.
    OSError
        When the cache folder cannot be written; set ``SANITY_LIB_CACHE`` to another
        folder or pass ``cache=False``.

    Notes
    -----
    The recipes (:data:`RECIPES`) were tuned on the embedded split (8,000 training and
    2,000 test digits, a sixth of MNIST's training set) for a short training on a laptop
    CPU; the paper does not give its own.

    - True labels, all 8,000 training digits, Adam with a learning rate decaying linearly
      to 0 and label smoothing 0.1. The CNN trains 6 epochs at lr 2e-3 on randomly
      rotated, scaled and shifted digits (``augment="affine"``): without it, it overfits
      the small training set and stays below 98 % test accuracy. The MLP trains 6 epochs
      at lr 1e-3 without augmentation. Expect about 98.5 % (CNN) and 97 % (MLP) test
      accuracy, against the paper's 99.2 % and 98.7 % with 60,000 digits.
    - Random labels: **a fixed subset of 1,000 training digits** (the first 1,000 of one
      random order of the split, the same for every seed; the paper used all of MNIST).
      Memorising random labels takes many small steps; a thousand digits make the point
      (training accuracy above 95 %, test accuracy at chance) in a fraction of the time.
      Adam at a constant learning rate of 5e-4, batches of 16, until an epoch's training
      accuracy reaches 97 % (at most 40 epochs). With only 100 digits per class, the
      random permutation happens to correlate a little with the true classes, so test
      accuracy can sit a few points above 10 %.

    Examples
    --------
    >>> model, history = trained_mnist_model("cnn", progress=False)  # doctest: +SKIP
    >>> history.train_accuracy[-1] > 0.95  # doctest: +SKIP
    True
    """
    from sanity_lib.data import load_mnist

    check_flag("cache", cache)
    check_flag("progress", progress)
    recipe = _resolve(arch, labels, recipe, epochs=epochs, batch_size=batch_size, lr=lr,
                      optimizer=optimizer, schedule=schedule, augment=augment,
                      label_smoothing=label_smoothing, target_accuracy=target_accuracy,
                      n_train=n_train)
    model = _builder(arch)(activation=activation, seed=seed)  # checks activation
    images, targets = mnist_training_data(arch, labels, n_train=recipe["n_train"])
    config = {
        "kind": "trained_mnist_model",
        "recipe_version": RECIPE_VERSION,
        "arch": arch,
        "activation": activation,
        "labels": labels,
        "seed": seed,
        "epochs": recipe["epochs"],
        "batch_size": recipe["batch_size"],
        "lr": float(recipe["lr"]),
        "optimizer": recipe["optimizer"],
        "schedule": recipe["schedule"],
        "augment": recipe["augment"],
        "label_smoothing": float(recipe["label_smoothing"]),
        "target_accuracy": recipe["target_accuracy"],
        "n_train": len(targets),
        "data_fingerprint": [_cache.fingerprint(images), _cache.fingerprint(targets)],
    }
    def run():
        history = train(model, images, targets, epochs=recipe["epochs"],
                        batch_size=recipe["batch_size"], lr=recipe["lr"],
                        optimizer=recipe["optimizer"], schedule=recipe["schedule"],
                        augment=recipe["augment"], label_smoothing=recipe["label_smoothing"],
                        target_accuracy=recipe["target_accuracy"],
                        permute_labels=labels == "random",
                        seed=seed, progress=progress, eval_data=load_mnist("test"))
        return history

    history = _cache.cached("checkpoints", config, run, enabled=cache, what="checkpoint",
                            dump=lambda h: _checkpoint(model, h),
                            load=lambda entry: _restore(model, entry))
    return model.eval(), history


# ----------------------------------------------------------------------------- your own model

# Bump when what train_cached stores, or how it trains, changes.
_TRAIN_CACHED_FORMAT = 2


def _key_value(value):
    """A setting as the cache key sees it: tensors by fingerprint, containers element-wise
    (never a truncated repr, which two different tensors can share)."""
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    if isinstance(value, torch.Tensor):
        return {"tensor": _cache.fingerprint(value)}
    if isinstance(value, (tuple, list)):
        return [_key_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _key_value(v) for k, v in sorted(value.items())}
    return repr(value)


def train_cached(model, images, labels, *, name, cache=True, progress=False, **settings):
    """Train ``model`` in place with :func:`sanity_lib.training.train`, once; later calls load.

    The checkpoint is cached under a key made of ``name``, the model's architecture and
    *initial* weights (:func:`sanity_lib.checks.fingerprint`), fingerprints of ``images`` and
    ``labels``, and every training setting, so changing any of them trains anew and a
    rebuild with the same ones only loads the weights.

    Parameters
    ----------
    model : torch.nn.Module
        Untrained (freshly built with a fixed seed, so its fingerprint is stable). Trained
        or loaded in place and left in eval mode.
    images, labels : torch.Tensor
        Training inputs and integer labels, as for :func:`sanity_lib.training.train`.
    name : str
        A short label for the run (part of the key), e.g. ``"resnet10-true"``.
    cache : bool, default True
        False always trains and stores nothing.
    progress : bool, default False
        The training progress bar.
    **settings
        Passed on to :func:`sanity_lib.training.train` (``epochs`` is required; e.g.
        ``permute_labels=True`` for the data randomization test).

    Returns
    -------
    model : torch.nn.Module
        The same object, trained, in eval mode.
    history : sanity_lib.TrainingHistory

    Raises
    ------
    TypeError
        ``model`` is not a module or ``name`` not a string; bad training settings raise as
        in :func:`sanity_lib.training.train`.
    OSError
        The cache folder cannot be written (set ``SANITY_LIB_CACHE`` or pass ``cache=False``).

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> from sanity_lib.training import train_cached
    >>> torch.manual_seed(0)                                  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    >>> x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    >>> net, history = train_cached(net, x, y, name="demo", epochs=1, cache=False)
    >>> history.epochs, net.training
    (1, False)
    """
    from sanity_lib._cache import fingerprint

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string (a label for this training run), "
                        f"got {name!r}")
    check_flag("cache", cache)
    if "epochs" not in settings:
        raise TypeError("train_cached needs epochs=, the number of passes over the data "
                        "(and any other setting of sanity_lib.training.train)")
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError("images and labels must be torch tensors; convert with torch.as_tensor")

    def run():
        return train(model, images, labels, progress=progress, **settings)

    if not cache:
        return model, run()
    config = {
        "kind": "own_model.train_cached", "format": _TRAIN_CACHED_FORMAT,
        "recipe_version": RECIPE_VERSION, "name": name,
        "model": f"{type(model).__module__}.{type(model).__qualname__}",
        "initial_fingerprint": fingerprint(model),
        "images": fingerprint(images), "labels": fingerprint(labels),
        # which parameters train: a frozen layer is another training run
        "trainable": [n for n, p in model.named_parameters() if p.requires_grad],
        "settings": {k: _key_value(v) for k, v in sorted(settings.items())},
    }

    def load(entry):
        history = TrainingHistory.from_dict(entry["history"])
        model.load_state_dict(entry["state_dict"])
        return history

    history = _cache.cached("checkpoints", config, run, what="checkpoint", load=load,
                            dump=lambda h: _checkpoint(model, h))
    return model.eval(), history
