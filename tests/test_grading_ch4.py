"""The checks of chapter 4's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of the library's own code (plain torch and
numpy), and the results that ex3/ex4 judge are built by hand with known similarities on real
MNIST test digits, so a check that only agreed with one implementation would not pass them.
Each exercise has a catalogue of wrong answers (typical mistakes, made-up numbers such as the
chance level typed in, answers computed on the wrong model, data or settings, bad input),
each of which must fail with a message that says what is wrong.
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

@pytest.fixture(scope="module")
def random_cnn():
    model, history = sl.training.trained_mnist_model("cnn", labels="random", progress=False)
    return model, history


@pytest.fixture(scope="module")
def test_set():
    return sl.data.load_mnist("test")


def _accuracy_by_hand(model, images, labels):
    with torch.no_grad():
        return (model(images).argmax(1) == labels).double().mean().item()


def test_ex2_accepts_the_measured_accuracy_however_written(random_cnn, test_set):
    model, history = random_cnn
    acc = _accuracy_by_hand(model, *test_set)
    assert abs(acc - 0.1) > ch4.ACCURACY_TOLERANCE   # so that typing 0.1 is told apart
    for answer in (acc, 100 * acc, torch.tensor(acc), np.float32(acc), round(100 * acc, 1),
                   history.eval_accuracy[-1]):
        assert "correct" in check("ch4_ex2", answer, model=model)


def test_ex2_recomputes_on_the_test_data_it_is_given(random_cnn, test_set):
    model, _ = random_cnn
    images, labels = test_set[0][:300], test_set[1][:300]
    acc = _accuracy_by_hand(model, images, labels)
    assert "correct" in check("ch4_ex2", acc, model=model, test_data=(images, labels))
    full = _accuracy_by_hand(model, *test_set)
    if abs(full - acc) > ch4.ACCURACY_TOLERANCE:
        with pytest.raises(CheckFailed, match="is not what the random-label model scores"):
            check("ch4_ex2", full, model=model, test_data=(images, labels))


def test_ex2_rejects_made_up_and_misread_numbers(random_cnn, test_set):
    model, history = random_cnn
    acc = _accuracy_by_hand(model, *test_set)
    counts = torch.bincount(test_set[1]).double()
    majority = (counts.max() / counts.sum()).item()
    cases = [
        (0.1, r"10\.0% is the chance level .* not what you measured"),
        (10, r"10\.0% is the chance level"),
        (history.train_accuracy[-1], r"accuracy on the \*training\* labels"),
        (1.0, r"accuracy on the \*training\* labels"),
        (0.0, r"systematically \*wrong\*"),
        (acc + 0.01, "is not what the random-label model scores"),
        (acc - 0.005, "is not what the random-label model scores"),
        (0.5, "is not what the random-label model scores"),
    ]
    if abs(majority - acc) > ch4.ACCURACY_TOLERANCE:
        cases.append((majority, "the share of the most frequent class"))
    for answer, message in cases:
        with pytest.raises(CheckFailed, match=message):
            check("ch4_ex2", answer, model=model)


def test_ex2_rejects_the_wrong_model(random_cnn, test_set):
    true_cnn, _ = sl.training.trained_mnist_model("cnn", labels="true", progress=False)
    with pytest.raises(CheckFailed, match="it learned the digits"):
        check("ch4_ex2", _accuracy_by_hand(true_cnn, *test_set), model=true_cnn)
    untrained = sl.models.mnist_cnn(seed=0)    # at chance on the test digits, memorized nothing
    acc = _accuracy_by_hand(untrained, *test_set)
    assert acc < 0.3
    with pytest.raises(CheckFailed, match="shuffled training labels .* not the random-label "
                                          "network"):
        check("ch4_ex2", acc, model=untrained)
    # another untrained architecture, with its own accuracy typed in: refused the same way
    mlp = sl.models.mnist_mlp(seed=3)
    with pytest.raises(CheckFailed, match="shuffled training labels"):
        check("ch4_ex2", _accuracy_by_hand(mlp, *test_set), model=mlp)


def test_ex2_memorization_check_uses_the_labels_the_network_was_trained_on(random_cnn):
    model, history = random_cnn
    images, shuffled = ch4.shuffled_training_set()
    true_images, true_labels = sl.training.mnist_training_data("cnn", "random")
    assert torch.equal(images, true_images)
    assert torch.equal(shuffled, history.training_labels(true_labels))
    assert _accuracy_by_hand(model, images, shuffled) >= ch4.MEMORIZED


@pytest.mark.parametrize("answer, context, message", [
    ("ten percent", {}, "should be a number, got a str"),
    (None, {}, "should be a number, got None"),
    ([0.1], {}, "should be a number, got a list"),
    (150, {}, "is not an accuracy"),
    (-0.1, {}, "is not an accuracy"),
    (float("nan"), {}, "is not an accuracy"),
    (0.1, {"model": None}, "needs the random-label model, passed as model=...; got None"),
    (0.1, {"model": "random_cnn"}, "got a str"),
    (0.1, {"test_data": "x_test"}, r"test_data= should be a pair \(images, labels\)"),
    (0.1, {"test_data": (torch.zeros(5, 3), torch.zeros(5))}, "Evaluating the model you passed"),
], ids=["str", "None", "list", "150", "negative", "nan", "no model", "str model",
        "str test data", "wrong shape"])
def test_ex2_refuses_bad_input_in_plain_words(random_cnn, answer, context, message):
    context = {"model": random_cnn[0], **context}
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex2", answer, **context)


# ----------------------------------------------------------------------------- ex3 / ex4

DIGITS, LABELS = sl.data.load_mnist("test")
METHODS = {m: {} for m in sl.checks.DEFAULT_METHODS}
METHODS.update(gradcam={"layer": "act2"}, guided_gradcam={"layer": "act2"})


def _digits(per_class=4):
    pick = torch.cat([torch.nonzero(LABELS == c).flatten()[:per_class] for c in range(10)])
    return DIGITS[pick], LABELS[pick]


def _result(means, per_class=4, inputs=None, true_pred=None, random_pred=None, **settings):
    """A data randomization result whose per-method means are ``means[method] = (abs, div)``,
    with spread over the images around them, on real test digits: the first network
    predicts the true labels, the second random ones (unless told otherwise)."""
    x, y = _digits(per_class)
    if inputs is not None:
        x = inputs
    n = len(x)
    gen = np.random.default_rng(0)
    rows = []
    for method, (abs_mean, div_mean) in means.items():
        for metric, mean in (("spearman_abs", abs_mean), ("spearman_diverging", div_mean)):
            noise = gen.normal(0, 0.05, n)
            for image, value in enumerate(mean + noise - noise.mean()):
                rows.append((method, 1, "random labels", image, metric, value))
    table = pd.DataFrame(rows, columns=["method", "step", "layer", "image", "metric", "value"])
    true_pred = y[:n] if true_pred is None else true_pred
    if random_pred is None:
        random_pred = torch.from_numpy(gen.integers(0, 10, n))
    full = {"test": "data_randomization", "model": "MnistCNN",
            "model_fingerprint": "a" * 24, "random_label_model": "MnistCNN",
            "random_label_model_fingerprint": "b" * 24, "target": "argmax",
            "methods": {m: METHODS.get(m, {}) for m in means},
            "metrics": ["spearman_abs", "spearman_diverging", "ssim", "hog"]}
    full.update(settings)
    return SanityCheckResult(
        table=table, maps={}, layers=["original", "random labels"],
        noise_floor={"spearman_abs": 0.0, "spearman_diverging": 0.0},
        targets=torch.stack([true_pred, random_pred]).long(), settings=full, inputs=x)


MEANS = {"gradient": (0.2, 0.05), "gradient_x_input": (0.95, 0.1),
         "integrated_gradients": (0.93, 0.12), "smoothgrad": (0.22, 0.03),
         "guided_backprop": (0.505, 0.3), "gradcam": (0.8, 0.8), "guided_gradcam": (0.1, 0.3),
         # intervals that straddle the threshold (the rule cannot tell), so either answer is
         # right and the catalogue below stays about the clear cases
         "integrated_gradients_smoothgrad": (0.495, 0.1)}


def test_the_fake_result_straddles_where_it_says():
    calls = _result(MEANS).verdict().set_index("method")["verdict"]
    assert calls["guided_backprop"] == calls["integrated_gradients_smoothgrad"] == "cannot tell"
    assert calls["gradcam"] == "fails" and calls["gradient"] == "passes"


@pytest.mark.parametrize("answer", [
    ["gradient_x_input", "integrated_gradients", "gradcam"],
    ["Gradient x Input", "IG", "gradcam", "guided_backprop"],   # GBP is near the threshold
    ("integrated_gradients", "gradient_x_input", "grad_cam"),
])
def test_ex3_accepts_the_clearly_similar_methods(answer):
    assert "correct" in check("ch4_ex3", answer, result=_result(MEANS))


def test_ex3_accepts_more_digits_and_the_original_class_as_target():
    ex3 = ["gradient_x_input", "integrated_gradients", "gradcam"]
    assert "correct" in check("ch4_ex3", ex3, result=_result(MEANS, per_class=6))
    x, y = _digits()
    original = _result(MEANS, random_pred=y, target="original")  # both rows: the true class
    assert "correct" in check("ch4_ex3", ex3, result=original)


@pytest.mark.parametrize("answer, message", [
    (["gradient_x_input", "gradcam"], "You left out integrated_gradients"),
    ([], "You left out"),
    (["gradient_x_input", "integrated_gradients", "gradcam", "gradient"], "You named gradient"),
    (list(sl.checks.DEFAULT_METHODS), "You named gradient"),
    (["gradient_x_input", "integrated_gradients", "gradcam", "vargrad"],
     "not among the methods of your result"),
    (["gradient_x_input", "integrated_gradients", "gradcam", "sailency maps"],
     "not a method name I know"),
    (42, "should be a list of method names"),
])
def test_ex3_rejects_wrong_lists(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex3", answer, result=_result(MEANS))


def _without(method):
    return {m: v for m, v in MEANS.items() if m != method}


X, Y = _digits()
WRONG_RESULTS = [
    ("no result", None, "needs the result you computed, passed as result=...; got None"),
    ("a str", "result", "got a str"),
    ("model test", _result(MEANS, test="model_randomization"),
     "comes from the 'model_randomization' test"),
    ("no smoothgrad", _result(_without("smoothgrad")), r"has no maps of \['smoothgrad'\]"),
    ("gradcam layer", _result(MEANS, methods={**METHODS, "gradcam": {}}),
     "gradcam maps of your result were computed with layer=None; the exercise asks for "
     "layer='act2'"),
    ("IG steps", _result(MEANS, methods={**METHODS, "integrated_gradients": {"n_steps": 8}}),
     "n_steps=8"),
    ("one metric", _result(MEANS, metrics=["spearman_abs"]), "spearman_diverging"),
    ("MLP", _result(MEANS, model="MnistMLP"), "model='MnistMLP'"),
    ("same model twice", _result(MEANS, random_label_model_fingerprint="a" * 24),
     "compares a network with itself"),
    ("swapped", _result(MEANS, true_pred=torch.from_numpy(
        np.random.default_rng(1).integers(0, 10, 40)), random_pred=Y),
     "first network .* classifies only .* not the CNN trained on the true labels"),
    ("two true-label models", _result(MEANS, random_pred=Y),
     "second network .* classifies 100% of the digits correctly: it learned the digits"),
    ("untrained first", _result(MEANS, true_pred=torch.full((40,), 7)),
     "classifies only 10%"),
    ("one digit per class", _result(MEANS, per_class=1), "holds 10 image"),
    ("not MNIST", _result(MEANS, inputs=torch.rand(40, 1, 28, 28)),
     "40 of the 40 images .* are not MNIST test digits"),
    ("one class", _result(MEANS, inputs=DIGITS[LABELS == 1][:40]),
     r"\[0, 40, 0, 0, 0, 0, 0, 0, 0, 0\] digits per class"),
    ("fixed target", _result(MEANS, target=[1] * 40),
     "target=\\[1, .* does not record what the networks predicted"),
]


@pytest.mark.parametrize("exercise", ["ch4_ex3", "ch4_ex4"])
@pytest.mark.parametrize("result, message", [(r, m) for _, r, m in WRONG_RESULTS],
                         ids=[name for name, _, _ in WRONG_RESULTS])
def test_ex3_ex4_refuse_a_result_that_cannot_answer(exercise, result, message):
    with pytest.raises(CheckFailed, match=message):
        check(exercise, ["gradient_x_input", "integrated_gradients"], result=result)


def test_ex3_on_a_real_run_where_both_models_are_the_same():
    """Explaining the same network twice: every method's maps are identical, so every method
    'stays similar'; the check refuses the result instead of grading a list against it."""
    model = sl.models.mnist_cnn(seed=0)
    x, _ = _digits()
    methods = ["gradient", "gradient_x_input", "guided_backprop"]
    result = sl.data_randomization_test(model, model, x, methods, progress=False)
    with pytest.raises(CheckFailed, match="has no maps of"):
        check("ch4_ex3", methods, result=result)


def test_ex4_accepts_similar_in_abs_but_not_in_sign():
    result = _result(MEANS)
    # GBP: abs near the threshold, diverging clearly low -> optional; gradcam similar in both.
    for answer in (["gradient_x_input", "integrated_gradients"],
                   ["gradient_x_input", "integrated_gradients", "guided_backprop"],
                   ("IG", "Gradient ⊙ Input")):
        assert "correct" in check("ch4_ex4", answer, result=result)


@pytest.mark.parametrize("answer, message", [
    (["gradient_x_input"], "You left out integrated_gradients"),
    ([], "You left out"),
    (["gradient_x_input", "integrated_gradients", "gradcam"],
     "You named gradcam, but its maps stay similar with the sign kept too"),
    (["gradient_x_input", "integrated_gradients", "gradient"],
     "You named gradient, but its maps already differ in absolute value"),
    ("gradient_x_input", "You left out integrated_gradients"),
    (None, "should be a list of method names"),
])
def test_ex4_rejects_wrong_lists(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex4", answer, result=_result(MEANS))


# ----------------------------------------------------------------------------- ex5

def _compare(a, b, x, method, *, mode="abs", target_of=None, reduce=None, same=False):
    """The comparison step, written the way a student would, with one thing changed."""
    maps_a = sl.saliency.explain(a, x, method)
    if target_of is not None:
        with torch.no_grad():
            classes = target_of(x).argmax(1)
        maps_b = sl.saliency.explain(b, x, method, target=classes)
    else:
        maps_b = maps_a if same else sl.saliency.explain(b, x, method)
    rho = sl.similarity.spearman(maps_a, maps_b, mode=mode)
    return reduce(rho) if reduce else rho


def ex5_right(true_model, random_model, x, method="gradient"):
    return _compare(true_model, random_model, x, method)


def ex5_swapped_numpy(true_model, random_model, x, method="gradient"):
    """The other order (rank correlation is symmetric), returned as a numpy array."""
    return _compare(random_model, true_model, x, method).numpy()


def ex5_scipy(true_model, random_model, x, method="gradient"):
    import scipy.stats

    a = sl.similarity.normalize(sl.saliency.explain(true_model, x, method), "abs")
    b = sl.similarity.normalize(sl.saliency.explain(random_model, x, method), "abs")
    return [scipy.stats.spearmanr(np.ravel(u), np.ravel(v)).statistic for u, v in zip(a, b)]


def ex5_calls_the_test(true_model, random_model, x, method="gradient"):
    r = sl.data_randomization_test(true_model, random_model, x, [method], progress=False)
    return r.values(method, 1, "spearman_abs")


EX5_RIGHT = [ex5_right, ex5_swapped_numpy, ex5_scipy]
EX5_WRONG = [   # (id, answer, expected phrase)
    ("calls the test", ex5_calls_the_test, "calls sanity_lib.checks.data_randomization_test"),
    ("a network with itself", lambda t, r, x, method="gradient": _compare(t, r, x, method,
                                                                          same=True),
     "compared a network's maps with themselves"),
    ("signed maps", lambda t, r, x, method="gradient": _compare(t, r, x, method,
                                                                mode="diverging"),
     "mode='diverging'"),
    ("the true-label network's class", lambda t, r, x, method="gradient": _compare(
        t, r, x, method, target_of=t), "its own top class"),
    ("the mean only", lambda t, r, x, method="gradient": _compare(t, r, x, method,
                                                                  reduce=torch.mean),
     "one rank correlation per image"),
    ("the method ignored", lambda t, r, x, method="gradient": _compare(t, r, x, "gradient"),
     "method='guided_backprop' your values differ"),
    ("a string", lambda t, r, x, method="gradient": "0.3", "tensor or a numpy array"),
    ("None returned", lambda t, r, x, method="gradient": None, "tensor or a numpy array"),
    ("the wrong signature", lambda t, x: None, "my_data_comparison"),
]


@pytest.mark.parametrize("answer", EX5_RIGHT, ids=[f.__name__ for f in EX5_RIGHT])
def test_ex5_accepts_correct_comparisons(answer):
    assert "correct" in check("ch4_ex5", answer)


@pytest.mark.parametrize("answer, message", [w[1:] for w in EX5_WRONG],
                         ids=[w[0] for w in EX5_WRONG])
def test_ex5_rejects_wrong_comparisons_and_says_why(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex5", answer)


# ----------------------------------------------------------------------------- ex6

SAME_MEANS = {m: (a + d, b) for (m, (a, b)), d in zip(MEANS.items(),
                                                    [0.03, 0.0, 0.0, -0.02, 0.01, 0.004,
                                                     -0.05, 0.02])}


def _same_class(**settings):
    """ex3's fake result again, with target='original' (both rows: the true class) and means
    moved by known shifts."""
    return _result(SAME_MEANS, random_pred=Y, target="original", **settings)


def _shift_by_hand():
    return {m: SAME_MEANS[m][0] - MEANS[m][0] for m in MEANS}


def test_ex6_the_fake_shift_is_what_was_built_in():
    for m, value in ch4.class_shift(_result(MEANS), _same_class()).items():
        assert value == pytest.approx(_shift_by_hand()[m], abs=1e-9)


@pytest.mark.parametrize("answer", [
    _shift_by_hand(),
    {m: round(v, 3) for m, v in _shift_by_hand().items()},
    {**{m: np.float32(v) for m, v in _shift_by_hand().items() if m not in ("gradient_x_input",
                                                                          "gradcam")},
     "Gradient x Input": 0.0, "grad-cam": 0.004},          # aliases and numpy numbers
    {m: torch.tensor(v) for m, v in _shift_by_hand().items()},
])
def test_ex6_accepts_the_shift_however_written(answer):
    assert "correct" in check("ch4_ex6", answer, result=_result(MEANS), same_class=_same_class())


def _replace(**changes):
    return {**_shift_by_hand(), **changes}


@pytest.mark.parametrize("answer, message", [
    ({m: -v for m, v in _shift_by_hand().items()}, "gradient: your shift -0.030 has the wrong sign"),
    ({m: SAME_MEANS[m][0] for m in MEANS}, "is same_class's mean itself"),
    ({m: abs(v) for m, v in _shift_by_hand().items()}, "smoothgrad: .* has the wrong sign"),
    ({m: 0.0 for m in MEANS}, "gradient: your shift \\+0.000 .*measured: \\+0.030"),
    ({"gradient": 0.03}, "has no entry for"),
    (_replace(gradcam=-0.1), "gradcam: your shift -0.100 is not what your results give"),
    (_replace(gradcam="small"), "gradcam: 'small' is not a number"),
    (_replace(gradcam=float("nan")), "gradcam: nan is not a number"),
    ({**_shift_by_hand(), "vargrad": 0.0}, "not among the methods of your result"),
    ([0.03, 0.0], "should be a dict"),
    (None, "should be a dict"),
])
def test_ex6_rejects_wrong_shifts(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex6", answer, result=_result(MEANS), same_class=_same_class())


def test_ex6_names_the_signed_shift():
    """A signed (spearman_diverging) shift is named as such: the fake moves only abs."""
    same = _result({m: (a + 0.1, b + 0.2) for m, (a, b) in MEANS.items()},
                   random_pred=Y, target="original")
    signed = {m: 0.2 for m in MEANS}
    with pytest.raises(CheckFailed, match="is the shift of spearman_diverging"):
        check("ch4_ex6", signed, result=_result(MEANS), same_class=same)


@pytest.mark.parametrize("same_class, message", [
    (None, "passed as same_class=...; got None"),
    (_result(SAME_MEANS), "same_class was run with target='argmax': each network explains its "
                          "own top class"),
    (_same_class(model_fingerprint="c" * 24), "different true-label networks"),
    (_same_class(random_label_model_fingerprint="c" * 24), "different random-label networks"),
    (_result(SAME_MEANS, random_pred=_digits(5)[1], target="original", per_class=5),
     "explain different digits"),
    (_same_class(methods={**METHODS, "smoothgrad": {"n_samples": 50, "noise_level": 0.3}}),
     "smoothgrad maps of same_class were computed with"),
    (_same_class(test="model_randomization"), "comes from the 'model_randomization' test"),
    (_result(_without("gradcam"), random_pred=Y, target="original"), "has no maps of"),
])
def test_ex6_refuses_a_same_class_result_that_changes_something_else(same_class, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex6", _shift_by_hand(), result=_result(MEANS), same_class=same_class)


def test_ex6_validates_result_like_ex3():
    with pytest.raises(CheckFailed, match="compares a network with itself"):
        check("ch4_ex6", _shift_by_hand(),
              result=_result(MEANS, random_label_model_fingerprint="a" * 24),
              same_class=_same_class())


# ----------------------------------------------------------------------------- ex7

CEILING_MEANS = {m: (min(a + g, 1.0), b) for (m, (a, b)), g in zip(
    MEANS.items(), [0.34, 0.005, 0.005, 0.41, 0.2, 0.09, 0.19, 0.18])}


def _ceiling(**settings):
    """Two trained networks compared (the second predicts the true labels too)."""
    return _result(CEILING_MEANS, random_pred=Y, **settings)


def _gap_by_hand():
    return {m: CEILING_MEANS[m][0] - MEANS[m][0] for m in MEANS}


def test_ex7_the_fake_gap_is_what_was_built_in():
    for m, (mean, low, high) in ch4.ceiling_gap(_result(MEANS), _ceiling()).items():
        assert mean == pytest.approx(_gap_by_hand()[m], abs=1e-9)
        assert low <= mean <= high


@pytest.mark.parametrize("answer", [
    _gap_by_hand(),
    {m: round(v, 3) for m, v in _gap_by_hand().items()},
    {("IG" if m == "integrated_gradients" else m): np.float64(v)
     for m, v in _gap_by_hand().items()},
])
def test_ex7_accepts_the_gap_however_written(answer):
    assert "correct" in check("ch4_ex7", answer, control=_result(MEANS), ceiling=_ceiling())


@pytest.mark.parametrize("answer, message", [
    ({m: -v for m, v in _gap_by_hand().items()}, "gradient: your gap -0.340 has the wrong sign"),
    ({m: MEANS[m][0] for m in MEANS}, "gradient: .* is the control's similarity itself"),
    ({m: 1 - MEANS[m][0] for m in MEANS}, "gradient: your gap \\+0.800 is the distance to 1"),
    ({m: CEILING_MEANS[m][0] for m in MEANS}, "gradient: .* is the ceiling itself"),
    ({m: 0.5 for m in MEANS}, "gradient: your gap \\+0.500 is not what your results give"),
    ({"gradient": 0.34}, "has no entry for"),
    (["gradient"], "should be a dict"),
])
def test_ex7_rejects_wrong_gaps(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex7", answer, control=_result(MEANS), ceiling=_ceiling())


@pytest.mark.parametrize("control, ceiling, message", [
    (None, _ceiling(), "passed as control=...; got None"),
    (_result(MEANS), None, "passed as ceiling=...; got None"),
    (_result(MEANS), _result(CEILING_MEANS),       # the second network learned nothing
     "second network of ceiling classifies only .* both learned the digits"),
    (_result(MEANS, random_pred=Y), _ceiling(),     # control against a trained network
     "second network of control classifies 100% .* not the random-label network"),
    (_result(MEANS), _ceiling(model_fingerprint="c" * 24),
     "start from different true-label networks"),
    (_result(MEANS), _result(CEILING_MEANS, random_pred=_digits(5)[1], per_class=5),
     "explain different digits"),
    (_result(MEANS), _ceiling(random_label_model_fingerprint="a" * 24),
     "compares a network with itself"),
    (_result(MEANS), _ceiling(target="original"), "target='original'"),
    (_result(MEANS, true_pred=torch.full((40,), 7)), _ceiling(),
     "first network of control classifies only 10%"),
    (_result(MEANS), _ceiling(methods={**METHODS, "gradcam": {}}), "layer=None"),
])
def test_ex7_refuses_results_that_cannot_answer(control, ceiling, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch4_ex7", _gap_by_hand(), control=control, ceiling=ceiling)
