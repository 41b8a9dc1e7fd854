"""The checks of chapter 4's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of the library's own code (plain torch and
numpy), and the results that ex3/ex4 judge are built by hand with known similarities, so a
check that only agreed with one implementation would not pass them.
"""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib.checks import SanityCheckResult
from sanity_lib.course.grading import CheckFailed, check
from sanity_lib.course.grading import ch4


# ----------------------------------------------------------------------------- ex1

def permute_torch(images, labels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return images, labels[torch.randperm(len(labels), generator=gen)]


def permute_numpy_labels_only(images, labels, seed=0):
    """Right too: numpy's permutation, returning only the labels (the images untouched)."""
    return np.random.default_rng(seed).permutation(np.asarray(labels))


def shuffle_both_independently(images, labels, seed=0):
    """Right too: images and labels each reordered by its own permutation, so the pairs
    are random although the images moved."""
    gen = torch.Generator().manual_seed(seed)
    p, q = torch.randperm(len(labels), generator=gen), torch.randperm(len(labels), generator=gen)
    return images[p], labels[q]


@pytest.mark.parametrize("answer", [permute_torch, permute_numpy_labels_only,
                                    shuffle_both_independently])
def test_ex1_accepts_seeded_permutations(answer):
    assert "correct" in check("ch4_ex1", answer)


def test_ex1_accepts_a_permutation_of_real_mnist_labels():
    x, y = sl.data.load_mnist("test")
    ch4.check_label_permutation(permute_torch, x[:1000], y[:1000])


def uniform_labels(images, labels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return images, torch.randint(0, 10, labels.shape, generator=gen)


def images_with_labels(images, labels, seed=0):
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return images[perm], labels[perm]


def same_labels(images, labels, seed=0):
    return images, labels.clone()


def shifted_labels(images, labels, seed=0):
    return images, labels.roll(seed + 1)


def unseeded(images, labels, seed=0):
    return images, labels[torch.randperm(len(labels))]


def seed_ignored(images, labels, seed=0):
    return permute_torch(images, labels, seed=42)


def shuffles_in_place(images, labels, seed=0):
    np.random.default_rng(seed).shuffle(labels.numpy())
    return images, labels


def no_seed_argument(images, labels):
    return permute_torch(images, labels)


@pytest.mark.parametrize("answer, message", [
    (uniform_labels, "not a permutation of the old ones: the number of images per class"),
    (images_with_labels, "moved the images together with their labels"),
    (same_labels, "Every image still has its original label"),
    (shifted_labels, r"Only 0\.\d% of the images got another label"),
    (unseeded, "not reproducible"),
    (seed_ignored, "ignores `seed`"),
    (shuffles_in_place, "in place"),
    (no_seed_argument, "does not take a `seed` argument"),
])
def test_ex1_rejects_typical_mistakes(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex1", answer)


def test_ex1_rejects_a_permutation_that_keeps_labels_tied_to_the_old_ones():
    """Swapping the labels within pairs of neighbours changes most labels only at class
    boundaries; a permutation inside each half of the data keeps the old class strongly."""
    def within_halves(images, labels, seed=0):
        gen = torch.Generator().manual_seed(seed)
        n = len(labels) // 2
        perm = torch.cat([torch.randperm(n, generator=gen),
                          n + torch.randperm(len(labels) - n, generator=gen)])
        return images, labels[perm]

    with pytest.raises(CheckFailed, match="still depend on the old ones"):
        check("ch4_ex1", within_halves)


# ----------------------------------------------------------------------------- ex2

class _LabelReader(nn.Module):
    """A 'model' that reads the label written into each image: 100 % test accuracy."""

    def forward(self, x):
        value = x.flatten(1).mean(1, keepdim=True) * 10
        return -(value - torch.arange(10.0)).abs()


def _toy_test_set(n=500):
    """Random images with random labels: no model can beat chance on them."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _readable_test_set(n=500):
    """Images with their label written into them, for :class:`_LabelReader`."""
    labels = torch.arange(n) % 10
    images = (labels.float() / 10).view(-1, 1, 1, 1).expand(n, 1, 28, 28).clone()
    return images, labels


def _accuracy_by_hand(model, images, labels):
    with torch.no_grad():
        return (model(images).argmax(1) == labels).double().mean().item()


def test_ex2_accepts_the_measured_accuracy_as_fraction_or_percentage():
    images, labels = _toy_test_set()
    model = sl.models.mnist_mlp(seed=3)  # untrained: about chance on any labels
    acc = _accuracy_by_hand(model, images, labels)
    assert acc < 0.3
    for answer in (acc, 100 * acc, torch.tensor(acc)):
        assert "correct" in check("ch4_ex2", answer, model=model,
                                  test_data=(images, labels))


def test_ex2_accepts_chance_when_the_model_is_at_chance():
    images, labels = _toy_test_set()
    model = sl.models.mnist_mlp(seed=3)
    assert abs(_accuracy_by_hand(model, images, labels) - 0.1) <= 2 * ch4.ACCURACY_TOLERANCE
    assert "correct" in check("ch4_ex2", 0.1, model=model, test_data=(images, labels))


@pytest.mark.parametrize("answer, message", [
    (1.0, "accuracy on the \\*training\\* labels"),
    (0.0, "systematically \\*wrong\\*"),
    ("ten percent", "should be a number"),
    (150, "is not an accuracy"),
])
def test_ex2_rejects_typical_mistakes(answer, message):
    images, labels = _toy_test_set()
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex2", answer, model=sl.models.mnist_mlp(seed=3), test_data=(images, labels))


def test_ex2_rejects_a_number_far_from_the_measured_accuracy():
    images, labels = _toy_test_set()
    model = sl.models.mnist_mlp(seed=3)
    acc = _accuracy_by_hand(model, images, labels)
    with pytest.raises(CheckFailed, match="is not what the random-label model scores"):
        check("ch4_ex2", acc + 0.3, model=model, test_data=(images, labels))


def test_ex2_rejects_the_true_label_model_and_a_missing_model():
    images, labels = _readable_test_set()
    assert _accuracy_by_hand(_LabelReader(), images, labels) == 1.0
    with pytest.raises(CheckFailed, match="it\nlearned the digits|it learned the digits"):
        check("ch4_ex2", 1.0, model=_LabelReader(), test_data=(images, labels))
    with pytest.raises(CheckFailed, match="needs the random-label model"):
        check("ch4_ex2", 0.1)


# ----------------------------------------------------------------------------- ex3 / ex4

def _result(means):
    """A data randomization result whose per-method means are ``means[method] = (abs, div)``,
    with spread over 8 images around them."""
    rows = []
    gen = np.random.default_rng(0)
    for method, (abs_mean, div_mean) in means.items():
        for metric, mean in (("spearman_abs", abs_mean), ("spearman_diverging", div_mean)):
            noise = gen.normal(0, 0.05, 8)
            for image, value in enumerate(mean + noise - noise.mean()):
                rows.append((method, 1, "random labels", image, metric, value))
    table = pd.DataFrame(rows, columns=["method", "step", "layer", "image", "metric", "value"])
    return SanityCheckResult(
        table=table, maps={}, layers=["original", "random labels"],
        noise_floor={"spearman_abs": 0.0, "spearman_diverging": 0.0},
        targets=torch.zeros(2, 8, dtype=torch.long),
        settings={"test": "data_randomization", "methods": list(means),
                  "metrics": ["spearman_abs", "spearman_diverging"]})


MEANS = {"gradient": (0.2, 0.05), "gradient_x_input": (0.95, 0.1),
         "integrated_gradients": (0.93, 0.12), "guided_backprop": (0.52, 0.3),
         "gradcam": (0.8, 0.8)}


@pytest.mark.parametrize("answer", [
    ["gradient_x_input", "integrated_gradients", "gradcam"],
    ["Gradient x Input", "IG", "gradcam", "guided_backprop"],   # GBP is near the threshold
    ("integrated_gradients", "gradient_x_input", "grad_cam"),
])
def test_ex3_accepts_the_clearly_similar_methods(answer):
    assert "correct" in check("ch4_ex3", answer, result=_result(MEANS))


@pytest.mark.parametrize("answer, message", [
    (["gradient_x_input", "gradcam"], "You left out integrated_gradients"),
    (["gradient_x_input", "integrated_gradients", "gradcam", "gradient"], "You named gradient"),
    (["gradient_x_input", "integrated_gradients", "gradcam", "vargrad"],
     "not among the methods of your result"),
    (["gradient_x_input", "integrated_gradients", "gradcam", "sailency maps"],
     "not a method name I know"),
    (42, "should be a list of method names"),
])
def test_ex3_rejects_wrong_lists(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex3", answer, result=_result(MEANS))


def test_ex3_needs_a_data_randomization_result():
    with pytest.raises(CheckFailed, match="needs your result"):
        check("ch4_ex3", ["gradient"])
    other = _result(MEANS)
    other.settings["test"] = "model_randomization"
    with pytest.raises(CheckFailed, match="comes from another test"):
        check("ch4_ex3", ["gradient"], result=other)


def test_ex3_on_a_real_run_where_both_models_are_the_same():
    """Explaining the same network twice: every method's maps are identical, so every
    method 'stays similar'."""
    model = sl.models.mnist_mlp(seed=0)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    methods = ["gradient", "gradient_x_input", "guided_backprop"]
    result = sl.data_randomization_test(model, model, x, methods, progress=False)
    assert "correct" in check("ch4_ex3", methods, result=result)
    with pytest.raises(CheckFailed, match="You left out gradient"):
        check("ch4_ex3", ["gradient_x_input", "guided_backprop"], result=result)


def test_ex4_accepts_similar_in_abs_but_not_in_sign():
    result = _result(MEANS)
    # GBP: abs near the threshold, diverging clearly low -> optional; gradcam similar in both.
    for answer in (["gradient_x_input", "integrated_gradients"],
                   ["gradient_x_input", "integrated_gradients", "guided_backprop"]):
        assert "correct" in check("ch4_ex4", answer, result=result)


@pytest.mark.parametrize("answer, message", [
    (["gradient_x_input"], "You left out integrated_gradients"),
    (["gradient_x_input", "integrated_gradients", "gradcam"],
     "You named gradcam, but its maps stay similar with the sign kept too"),
    (["gradient_x_input", "integrated_gradients", "gradient"],
     "You named gradient, but its maps already differ in absolute value"),
])
def test_ex4_rejects_wrong_lists(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex4", answer, result=_result(MEANS))
