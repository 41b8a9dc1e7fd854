"""The checks of chapter 3's exercise notebook accept correct answers and reject the typical
wrong ones with a message that says what is wrong.

Each exercise has a catalogue of wrong answers (the usual mistakes, answers that call the
library instead of writing the loop, results computed on the wrong model, data or settings,
answers that leave out what the exercise asks for, bad input), each of which must fail with a
message naming the problem, and correct alternatives written differently from the solution,
which must pass. The results of ex2/ex3 are built by hand with known similarities, on real
MNIST test digits, so the checks' own reading of a result is tested against numbers set here.
"""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib._cache import fingerprint
from sanity_lib.checks import SanityCheckResult
from sanity_lib.course.grading import CheckFailed, check
from sanity_lib.course.grading import ch3

# ----------------------------------------------------------------------------- ex1


def solution_style(model, init="default", seed=0):
    """The notebook's solution: one working copy, randomize_module, a copy per step."""
    work = copy.deepcopy(model)
    for name, group in reversed(sl.models.layer_groups(work)):
        sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
        yield name, copy.deepcopy(work).eval()


def new_default_signature(model, init="truncated_normal", seed=0):
    """Right too: the signature with the library's coming default; the check passes init."""
    yield from solution_style(model, init=init, seed=seed)


def no_defaults(model, init, seed):
    """Right too: no defaults at all (the check passes init and seed by keyword)."""
    return list(solution_style(model, init=init, seed=seed))


def hand_written(model, init="default", seed=0):
    """Right too, written without randomize_module: the global RNG seeded in a forked
    state, each submodule's own reset_parameters for "default" and torch's truncated normal
    otherwise, a list instead of a generator."""
    work = copy.deepcopy(model)
    out = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for name, group in list(sl.models.layer_groups(work))[::-1]:
            for module in group.modules():
                own = list(module.parameters(recurse=False))
                if not own:
                    continue
                if init == "default" and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                else:
                    with torch.no_grad():
                        for p in own:
                            nn.init.trunc_normal_(p, std=0.05, a=-0.1, b=0.1)
            out.append((name, copy.deepcopy(work)))
    return out


@pytest.mark.parametrize("answer", [solution_style, new_default_signature, no_defaults,
                                    hand_written])
def test_ex1_accepts_correct_loops(answer):
    assert check("ch3_ex1", answer).endswith("correct. Well done!")


def test_ex1_passes_init_by_keyword_and_never_relies_on_the_signature_default():
    calls = []

    def recording(model, init="default", seed=0):
        calls.append(init)
        yield from solution_style(model, init=init, seed=seed)

    check("ch3_ex1", recording)
    assert ch3.EX1_INIT in calls and ch3.EX1_OTHER_INIT in calls
    assert calls[0] == ch3.EX1_INIT != "default"


# --- the wrong answers

def wrapper_of_the_library(model, init="default", seed=0):
    return sl.randomization.cascading(model, init=init, seed=seed)


def yields_from_the_library(model, init="default", seed=0):
    yield from sl.randomization.cascading(model, init=init, seed=seed)


def library_step_by_step(model, init="default", seed=0):
    """The library's loop, copied step by step: still the library's loop."""
    for name, randomized in sl.randomization.cascading(model, init=init, seed=seed):
        yield name, copy.deepcopy(randomized)


def independent_by_hand(model, init="default", seed=0):
    for name, _ in reversed(sl.models.layer_groups(model)):
        work = copy.deepcopy(model)
        sl.randomization.randomize_module(work.get_submodule(name), init=init, seed=seed,
                                          prefix=name)
        yield name, work


def bottom_up(model, init="default", seed=0):
    work = copy.deepcopy(model)
    for name, group in sl.models.layer_groups(work):
        sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
        yield name, copy.deepcopy(work)


def in_place(model, init="default", seed=0):
    for name, group in reversed(sl.models.layer_groups(model)):
        sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
        yield name, copy.deepcopy(model)


def in_place_list(model, init="default", seed=0):
    return list(in_place(model, init=init, seed=seed))


def same_object(model, init="default", seed=0):
    for name, group in reversed(sl.models.layer_groups(model)):
        sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
        yield name, model


def shared_working_copy(model, init="default", seed=0):
    work = copy.deepcopy(model)
    for name, group in reversed(sl.models.layer_groups(work)):
        sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
        yield name, work


def group_module_only(model, init="default", seed=0):
    # nn.Sequential has no parameters of its own: on the block model nothing changes
    work = copy.deepcopy(model)
    for name, group in reversed(sl.models.layer_groups(work)):
        with torch.no_grad():
            for p in group.parameters(recurse=False):
                p.normal_()
            if isinstance(group, nn.Linear):
                group.weight.normal_()
        yield name, copy.deepcopy(work)


def weights_only(model, init="default", seed=0):
    work = copy.deepcopy(model)
    for name, group in reversed(sl.models.layer_groups(work)):
        with torch.no_grad():
            for pname, p in group.named_parameters():
                if pname.endswith("weight") and p.dim() > 1:
                    p.normal_()
        yield name, copy.deepcopy(work)


def ignores_init(model, init="default", seed=0):
    yield from solution_style(model, init="default", seed=seed)


def fixed_init(model, init="default", seed=0):
    yield from solution_style(model, init="truncated_normal", seed=seed)


def ignores_seed(model, init="default", seed=0):
    yield from solution_style(model, init=init, seed=0)


def unseeded(model, init="default", seed=0):
    work = copy.deepcopy(model)
    for name, group in reversed(sl.models.layer_groups(work)):
        for module in group.modules():
            if next(module.parameters(recurse=False), None) is not None:
                module.reset_parameters()
        yield name, copy.deepcopy(work)


def skips_the_logits(model, init="default", seed=0):
    steps = list(solution_style(model, init=init, seed=seed))
    return steps[1:]


def only_the_logits(model, init="default", seed=0):
    return list(solution_style(model, init=init, seed=seed))[:1]


def no_init_argument(model, seed=0):
    yield from solution_style(model, seed=seed)


def raises(model, init="default", seed=0):
    for name, group in reversed(sl.models.layer_groups(model)):
        sl.randomization.randomize_module(group, init="xavier", seed=seed, prefix=name)
        yield name, model


def returns_nothing(model, init="default", seed=0):
    list(solution_style(model, init=init, seed=seed))


def models_only(model, init="default", seed=0):
    return [m for _, m in solution_style(model, init=init, seed=seed)]


@pytest.mark.parametrize("answer, message", [
    (sl.randomization.cascading, "calls sanity_lib.randomization.cascading"),
    (wrapper_of_the_library, "calls sanity_lib.randomization.cascading"),
    (yields_from_the_library, "calls sanity_lib.randomization.cascading"),
    (library_step_by_step, "calls sanity_lib.randomization.cascading"),
    (sl.randomization.independent, "calls sanity_lib.randomization.independent"),
    (independent_by_hand, "independent randomization, not cascading"),
    (bottom_up, "bottom-up"),
    (in_place, "changed the model it was given"),
    (in_place_list, "changed its argument `model` in place"),
    (same_object, "the very model you were given"),
    (shared_working_copy, "changed after it was yielded"),
    (group_module_only, r"conv blocks.*missing: \['block2'\]"),
    (weights_only, "only some of the parameters"),
    (ignores_init, "ignores `init`"),
    (fixed_init, "ignores `init`"),
    (ignores_seed, "ignores `seed`"),
    (unseeded, "not reproducible"),
    (skips_the_logits, r"expected the layer groups from the logits down"),
    (only_the_logits, r"your steps are named \['logits'\]"),
    (no_init_argument, r"cannot be called as my_cascading\(model, init="),
    (raises, "raised ValueError"),
    (returns_nothing, "returned None, not something to loop over"),
    (models_only, "not a pair"),
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", "?"))
def test_ex1_rejects_wrong_loops(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch3_ex1", answer)


@pytest.mark.parametrize("answer, message", [
    ([("logits", sl.models.mnist_cnn())], "should be your function"),
    (None, "should be your function, got None"),
    ("my_cascading", "should be your function, got a str"),
    (sl.models.mnist_cnn(), "should be your function, got a model \\(MnistCNN\\)"),
])
def test_ex1_refuses_bad_input_in_plain_words(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch3_ex1", answer)


# ----------------------------------------------------------------------------- results

DIGITS, LABELS = sl.data.load_mnist("test")
MNIST_LAYERS = ["original", "logits", "fc1", "conv2", "conv1"]
MNIST_VALUES = {  # spearman_abs per step, shaped like the paper's MNIST findings
    "gradient": [0.45, 0.27, 0.20, 0.40],
    "gradient_x_input": [0.99, 0.99, 0.99, 0.99],
    "integrated_gradients": [0.99, 0.98, 0.99, 0.99],
    "smoothgrad": [0.40, 0.25, 0.20, 0.30],
    "guided_backprop": [0.91, 0.84, 0.61, 0.60],
    "gradcam": [0.43, 0.28, 0.40, 0.40],
    "guided_gradcam": [0.50, 0.49, 0.50, 0.50],   # near the threshold: either way
    "integrated_gradients_smoothgrad": [0.55, 0.52, 0.5, 0.5],   # near it too
}


def _digits(per_class):
    pick = torch.cat([torch.nonzero(LABELS == c)[:per_class, 0] for c in range(10)])
    return DIGITS[pick], LABELS[pick]


def _fake_result(values, layers, *, inputs=None, predicted=None, n_images=3, spread=0.0,
                 **settings):
    """A SanityCheckResult whose spearman_abs curves are ``values[method]``: one value per
    step (the same for every image, give or take an even ``spread`` whose mean is 0) or one
    list per image; ``settings`` override the exercise's."""
    n = n_images if inputs is None else len(inputs)
    rng = np.random.default_rng(0)
    offsets = np.linspace(-spread, spread, n)
    rows = []
    for method, curves in values.items():
        if not isinstance(curves[0], list):
            curves = [[v + offset for v in curves] for offset in offsets]
        for i, curve in enumerate(curves):
            for k, v in enumerate(curve, start=1):
                for metric in ("spearman_abs", "spearman_diverging"):
                    rows.append((method, k, layers[k], i, metric,
                                 v if metric == "spearman_abs" else rng.uniform()))
    table = pd.DataFrame(rows, columns=["method", "step", "layer", "image", "metric", "value"])
    full = {"test": "model_randomization", "mode": "cascading", "order": "top_down",
            "init": "truncated_normal", "target": "argmax",
            "methods": {m: {} for m in values},
            "metrics": ["spearman_abs", "spearman_diverging", "ssim", "hog"]}
    full.update(settings)
    predicted = torch.zeros(n, dtype=torch.long) if predicted is None else predicted
    return SanityCheckResult(table=table, maps={}, layers=list(layers),
                             noise_floor={"spearman_abs": 0.0, "spearman_diverging": 0.0},
                             targets=predicted.repeat(len(layers), 1), settings=full,
                             inputs=inputs)


def mnist_result(values=MNIST_VALUES, per_class=2, trained=True, **settings):
    x, y = _digits(per_class)
    predicted = y if trained else torch.full_like(y, 3)
    settings = {"model": "MnistCNN", **settings}
    return _fake_result(values, MNIST_LAYERS, inputs=x, predicted=predicted, spread=0.1,
                        **settings)


# ----------------------------------------------------------------------------- ex2

CLEAR = ["gradient_x_input", "integrated_gradients", "guided_backprop"]


@pytest.mark.parametrize("answer", [
    CLEAR,
    CLEAR + ["guided_gradcam"],                               # the borderline method
    ["Gradient ⊙ Input", "IG", "Guided Backprop"],            # display names, short names
    tuple(reversed(CLEAR)),
])
def test_ex2_accepts_the_clear_failures(answer):
    assert check("ch3_ex2", answer, result=mnist_result()).endswith("Well done!")


def test_ex2_judges_by_the_interval_not_by_a_margin():
    """0.55 over digits that agree (interval about 0.52 to 0.58) fails for sure: it must be
    named. 0.56 over digits that disagree widely may be named or not: the rule cannot tell."""
    tight = mnist_result({**MNIST_VALUES, "gradcam": [0.43, 0.55, 0.40, 0.40]})
    with pytest.raises(CheckFailed, match="left out gradcam"):
        check("ch3_ex2", CLEAR + ["guided_gradcam"], result=tight)
    x, y = _digits(2)
    loose_values = {**MNIST_VALUES, "gradcam": [[0.43, 0.56 + d, 0.40, 0.40]
                                               for d in np.linspace(-0.4, 0.4, 20)]}
    loose = _fake_result(loose_values, MNIST_LAYERS, inputs=x, predicted=y, spread=0.1,
                         model="MnistCNN")
    assert loose.verdict(at="fc1").set_index("method").loc["gradcam", "verdict"] == \
        "cannot tell"
    for answer in (CLEAR, CLEAR + ["gradcam"]):
        assert check("ch3_ex2", answer, result=loose).endswith("Well done!")


def test_ex2_accepts_more_digits_and_the_original_class_as_target():
    assert check("ch3_ex2", CLEAR, result=mnist_result(per_class=3))
    assert check("ch3_ex2", CLEAR, result=mnist_result(target="original"))


@pytest.mark.parametrize("answer, message", [
    (["gradient_x_input", "integrated_gradients"], r"left out guided_backprop \(.*0\.84"),
    (CLEAR + ["gradient"], r"named gradient \(.*0\.27.*it passes"),
    (list(sl.checks.DEFAULT_METHODS), r"named gradcam \(.*, gradient \(.*, smoothgrad \("),
    ([], "left out"),
    (["guided backpropagation!!"], "not a method name"),
    (["vargrad"] + CLEAR, "not among the methods of your result"),
    (42, "should be a list of method names"),
])
def test_ex2_rejects_wrong_lists(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch3_ex2", answer, result=mnist_result())


def _only(methods):
    return {m: v for m, v in MNIST_VALUES.items() if m in methods}


@pytest.mark.parametrize("result, message", [
    (None, "needs the result you computed, passed as result=...; got None"),
    ("mnist_result", "got a str"),
    (mnist_result(test="data_randomization"), "comes from the 'data_randomization' test"),
    (mnist_result(mode="independent"), "used mode='independent'; the exercise asks for "
                                       "mode='cascading'"),
    (mnist_result(order="bottom_up"), "order='bottom_up'; the exercise asks for order='top_down'"),
    (mnist_result(init="default"), "init='default'; the exercise asks for "
                                   "init='truncated_normal'"),
    (mnist_result(model="MnistMLP"), "model='MnistMLP'"),
    (mnist_result(_only(["gradient", "gradient_x_input", "guided_backprop"])),
     r"has no maps of \['integrated_gradients', 'smoothgrad', 'integrated_gradients_smoothgrad', "
     r"'gradcam', 'guided_gradcam'\]"),
    (mnist_result(methods={**{m: {} for m in MNIST_VALUES},
                           "integrated_gradients": {"n_steps": 10}}),
     "integrated_gradients maps of your result were computed with n_steps=10"),
    (mnist_result(methods={**{m: {} for m in MNIST_VALUES}, "smoothgrad": {"n_samples": 5}}),
     "smoothgrad maps of your result were computed with n_samples=5"),
    (mnist_result(metrics=["spearman_abs"]), r"no \['spearman_diverging'\] values"),
    (mnist_result(trained=False), r"classifies 2 of its 20 digit\(s\) correctly \(10%\): it "
                                  "is not the CNN trained"),
    (mnist_result(per_class=1), "holds 10 image"),
    (mnist_result(target=3), "target=3: it does not record what the network predicted"),
], ids=["none", "str", "data test", "independent", "bottom-up", "default init", "MLP",
        "three methods", "IG steps", "SmoothGrad samples", "one metric", "untrained",
        "one digit per class", "fixed target"])
def test_ex2_refuses_a_result_that_cannot_answer(result, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch3_ex2", CLEAR, result=result)


def test_ex2_refuses_a_partial_sweep_and_other_images():
    partial = _fake_result({m: v[:2] for m, v in MNIST_VALUES.items()}, MNIST_LAYERS[:3],
                           inputs=_digits(2)[0], predicted=_digits(2)[1], model="MnistCNN")
    with pytest.raises(CheckFailed, match=r"missing: \['conv2', 'conv1'\]"):
        check("ch3_ex2", CLEAR, result=partial)
    noise = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    other = _fake_result(MNIST_VALUES, MNIST_LAYERS, inputs=noise, model="MnistCNN")
    with pytest.raises(CheckFailed, match="20 of the 20 images .* are not MNIST test digits"):
        check("ch3_ex2", CLEAR, result=other)
    x, y = _digits(2)
    uneven = _fake_result(MNIST_VALUES, MNIST_LAYERS, inputs=torch.cat([x[:18], x[:2]]),
                          predicted=torch.cat([y[:18], y[:2]]), model="MnistCNN")
    with pytest.raises(CheckFailed, match=r"\[4, 2, 2, 2, 2, 2, 2, 2, 2, 0\] digits per class"):
        check("ch3_ex2", CLEAR, result=uneven)


def test_ex2_reads_the_same_numbers_as_an_independent_computation():
    # A real (small) sweep, and the same similarity computed by hand from its parts.
    model = sl.models.mnist_cnn(seed=0)
    x = _digits(1)[0][:6]
    methods = ["gradient", "gradient_x_input", "guided_backprop"]
    result = sl.model_randomization_test(model, x, methods, init="truncated_normal",
                                         metrics=["spearman_abs"], progress=False)
    _, randomized = list(sl.randomization.cascading(model, init="truncated_normal"))[1]
    expected = {}
    for method in methods:
        before = sl.saliency.explain(model, x, method)
        after = sl.saliency.explain(randomized, x, method)
        expected[method] = float(sl.similarity.spearman(before, after, "abs").mean())
    _, _, values = ch3.failing_methods(result)
    for method in methods:
        assert values[method] == pytest.approx(expected[method], abs=1e-6)
    # ... but that result is not the exercise's: three methods of an untrained CNN
    answer = sorted(m for m, v in expected.items() if v >= ch3.FAIL_THRESHOLD)
    floor = result.noise_floor["spearman_abs"]
    must, may, _ = ch3.failing_methods(result)
    for method in methods:   # the rule, by hand: the interval rescaled by the floor
        low, high = ((v - floor) / (1 - floor) for v in result.interval(method, "fc1"))
        assert (method in must) == (low >= 0.5)
        assert (method in may) == (low < 0.5 <= high)
    with pytest.raises(CheckFailed, match="has no maps of"):
        check("ch3_ex2", answer, result=result)


# ----------------------------------------------------------------------------- ex3

EN_LAYERS = ["original", "logits", "head", "stage7", "stage6", "stage5", "stage4", "stage3",
             "stage2", "stage1", "stem"]
EN_VALUES = {
    "gradient": [0.46, 0.40, 0.35, 0.29, 0.19, 0.10, 0.07, 0.05, 0.02, 0.0],
    "guided_backprop": [1.00, 0.99, 0.98, 0.85, 0.62, 0.30, 0.10, 0.05, 0.02, 0.0],
}


@pytest.fixture(scope="module")
def en_fingerprint():
    return fingerprint(sl.models.efficientnet_lite0())


def en_result(en_fingerprint, values=EN_VALUES, layers=EN_LAYERS, **settings):
    settings = {"model": "EfficientNetLite0", "model_fingerprint": en_fingerprint,
                "metrics": ["spearman_abs", "spearman_diverging"], **settings}
    return _fake_result(values, layers, **settings)


def test_ex3_window_comes_from_the_data(en_fingerprint):
    result = en_result(en_fingerprint)
    assert ch3.change_layers(result) == ["stage6", "stage5", "stage4"]
    assert ch3.change_layers(result, "gradient") == ["logits"]
    # shift the drop two groups later: the accepted layers move with it
    later = {m: v[:3] + [0.99, 0.99] + v[3:-2] for m, v in EN_VALUES.items()}
    assert ch3.change_layers(en_result(en_fingerprint, later)) == ["stage4", "stage3",
                                                                  "stage2"]


@pytest.mark.parametrize("answer", [
    {"guided_backprop": "stage6", "gradient": "logits"},
    {"guided_backprop": "stage5", "gradient": "logits"},
    {"Guided Backprop": " stage4 ", "grad": "logits"},           # spellings, spaces
    {"gradient": "logits", "gbp": "stage5"},
])
def test_ex3_accepts_layers_in_the_windows(en_fingerprint, answer):
    assert check("ch3_ex3", answer, result=en_result(en_fingerprint)).endswith("Well done!")


GOOD_EX3 = {"guided_backprop": "stage5", "gradient": "logits"}


@pytest.mark.parametrize("answer, message", [
    ("stage5", "should be a dict with the layer for each of the two methods, got a str"),
    ({"guided_backprop": "stage5"}, r"no layer for \['gradient'\]"),
    ({"gradient": "logits"}, r"no layer for \['guided_backprop'\]"),
    ({"guided_backprop": "logits", "gradient": "logits"},
     "At 'logits' Guided Backprop's map has not changed yet.*1.00"),
    ({"guided_backprop": "stem", "gradient": "logits"}, "'stem' is too late for guided_backprop"),
    ({"guided_backprop": "stage5", "gradient": "stage5"}, "'stage5' is too late for gradient"),
    ({"guided_backprop": "Mixed_6b", "gradient": "logits"},
     "not one of the sweep's randomized layers"),
    ({"guided_backprop": 4, "gradient": "logits"}, "should be a layer name"),
    ({**GOOD_EX3, "smoothgrad": "logits"}, "smoothgrad is not among the methods of your result"),
    ({**GOOD_EX3, "backprop!!": "logits"}, "not a method name I know"),
    ({"guided_backprop": "stage5", "gbp": "stage6", "gradient": "logits"}, "names "
                                                                           "guided_backprop twice"),
    (None, "should be a dict"),
])
def test_ex3_rejects_wrong_answers(en_fingerprint, answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch3_ex3", answer, result=en_result(en_fingerprint))


def test_ex3_per_image_windows_widen_what_is_accepted(en_fingerprint):
    # one of three images changes a step earlier than the others: the explorer shows one
    # image, so stage7 becomes acceptable although the mean there is still high
    early = [1.00, 0.99, 0.80, 0.40, 0.30, 0.20, 0.10, 0.05, 0.02, 0.0]
    gbp = [early, EN_VALUES["guided_backprop"], EN_VALUES["guided_backprop"]]
    result = en_result(en_fingerprint, {"gradient": EN_VALUES["gradient"],
                                        "guided_backprop": gbp})
    mean_stage7 = (0.80 + 2 * 0.98) / 3
    assert mean_stage7 > ch3.CHANGE_START
    assert ch3.change_layers(result)[0] == "stage7"
    assert check("ch3_ex3", {"guided_backprop": "stage7", "gradient": "logits"}, result=result)
    with pytest.raises(CheckFailed, match="has not changed yet"):
        check("ch3_ex3", {"guided_backprop": "head", "gradient": "logits"}, result=result)


def test_ex3_refuses_a_result_that_cannot_answer(en_fingerprint):
    cases = [
        (None, "needs the result you computed"),
        (en_result(en_fingerprint, mode="independent"), "mode='independent'"),
        (en_result(en_fingerprint, init="default"), "init='default'"),
        (en_result(en_fingerprint, order="bottom_up"), "order='bottom_up'"),
        (en_result(en_fingerprint, model="MnistCNN"), "model='MnistCNN'"),
        (en_result(en_fingerprint, {"guided_backprop": EN_VALUES["guided_backprop"]}),
         r"has no maps of \['gradient'\]"),
        (en_result(en_fingerprint, metrics=["spearman_abs"]), "spearman_diverging"),
        (en_result("0123456789abcdef01234567"), "not computed on the ImageNet-trained "
                                                "EfficientNet-Lite0"),
        # three layers of ten: a sweep stopped at stage7 cannot show where GBP changes
        (en_result(en_fingerprint, {m: v[:3] for m, v in EN_VALUES.items()}, EN_LAYERS[:4]),
         r"missing: \['stage6', 'stage5', 'stage4', 'stage3', 'stage2', 'stage1', 'stem'\]"),
        (en_result(en_fingerprint, {m: v[3:6] for m, v in EN_VALUES.items()},
                   ["original", "stage6", "stage5", "stage4"]), "missing: "),
    ]
    for result, message in cases:
        with pytest.raises(CheckFailed, match=message):
            check("ch3_ex3", GOOD_EX3, result=result)


# ----------------------------------------------------------------------------- ex4

def _curve(model, x, method, seed, *, against="original", mode="abs", target=None,
           order="top_down", average=torch.mean, first=True):
    """The similarity curve, written the way a student would, with one thing changed."""
    original = sl.saliency.explain(model, x, method)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    curve, previous = ([("original", 1.0)] if first else []), original
    for name, randomized in sl.randomization.cascading(model, seed=seed, order=order):
        maps = sl.saliency.explain(randomized, x, method,
                                   target=predicted if target == "original" else None)
        base = {"original": original, "previous": previous, "itself": maps}[against]
        curve.append((name, float(average(sl.similarity.spearman(base, maps, mode=mode)))))
        previous = maps
    return curve


def ex4_right(model, x, method="gradient", seed=0):
    return _curve(model, x, method, seed)


def ex4_compare_and_tensors(model, x, method="gradient", seed=0):
    """With sl.similarity.compare, 0-d tensors as values, a tuple of tuples."""
    original = sl.saliency.explain(model, x, method)
    steps = [("original", torch.tensor(1.0))]
    for name, randomized in sl.randomization.cascading(model, seed=seed):
        values = sl.similarity.compare(original, sl.saliency.explain(randomized, x, method),
                                       ["spearman_abs"])["spearman_abs"]
        steps.append((name, values.mean()))
    return tuple(steps)


def ex4_scipy_per_image(model, x, method="gradient", seed=0):
    """Normalized by the library, ranked and correlated by scipy, one image at a time."""
    import scipy.stats

    original = sl.similarity.normalize(sl.saliency.explain(model, x, method), "abs")
    out = [("original", 1.0)]
    for name, randomized in sl.randomization.cascading(model, seed=seed):
        maps = sl.similarity.normalize(sl.saliency.explain(randomized, x, method), "abs")
        rhos = [scipy.stats.spearmanr(np.ravel(a), np.ravel(b)).statistic
                for a, b in zip(original, maps)]
        out.append((name, np.mean(rhos)))
    return out


def ex4_calls_the_test(model, x, method="gradient", seed=0):
    result = sl.model_randomization_test(model, x, [method], seed=seed, progress=False,
                                         metrics=["spearman_abs"])
    curve = result.curve(method)
    return list(zip(curve["layer"], curve["mean"]))


def ex4_in_place(model, x, method="gradient", seed=0):
    original = sl.saliency.explain(model, x, method)
    out = [("original", 1.0)]
    for name, group in reversed(sl.models.layer_groups(model)):   # no copy: the model changes
        sl.randomization.randomize_module(group, seed=seed, prefix=name)
        maps = sl.saliency.explain(model, x, method)
        out.append((name, float(sl.similarity.spearman(original, maps).mean())))
    return out


def ex4_raises(model, x, method="gradient", seed=0):
    raise KeyError("layer")


EX4_RIGHT = [ex4_right, ex4_compare_and_tensors, ex4_scipy_per_image]

EX4_WRONG = [   # (id, answer, expected phrase)
    ("calls the test", ex4_calls_the_test, "calls sanity_lib.checks.model_randomization_test"),
    ("each step against the one before",
     lambda m, x, method="gradient", seed=0: _curve(m, x, method, seed, against="previous"),
     "with the maps of the step before"),
    ("signed maps", lambda m, x, method="gradient", seed=0: _curve(m, x, method, seed,
                                                                   mode="diverging"),
     "mode='diverging'"),
    ("the trained model's class", lambda m, x, method="gradient", seed=0: _curve(
        m, x, method, seed, target="original"), "explain the class the \\*trained\\* model"),
    ("bottom-up", lambda m, x, method="gradient", seed=0: _curve(m, x, method, seed,
                                                                 order="bottom_up"),
     "bottom-up"),
    ("the method ignored", lambda m, x, method="gradient", seed=0: _curve(m, x, "gradient",
                                                                          seed),
     "method='guided_backprop' and seed=1 your curve differs"),
    ("the seed ignored", lambda m, x, method="gradient", seed=0: _curve(m, x, method, 0),
     "seed=1 your curve differs"),
    ("the median", lambda m, x, method="gradient", seed=0: _curve(m, x, method, seed,
                                                                  average=torch.median),
     "your curve differs from the cascading test's"),
    ("maps compared with themselves", lambda m, x, method="gradient", seed=0: _curve(
        m, x, method, seed, against="itself"), "your curve differs"),
    ("no step 0", lambda m, x, method="gradient", seed=0: _curve(m, x, method, seed,
                                                                 first=False),
     "should start with step 0"),
    ("a dict", lambda m, x, method="gradient", seed=0: dict(_curve(m, x, method, seed)),
     "not a list of \\(layer_name, mean\\) pairs"),
    ("the per-image values", lambda m, x, method="gradient", seed=0: [
        ("original", 1.0), ("logits", torch.ones(4))], "is a tensor"),
    ("randomized in place", ex4_in_place, "changed|came back"),
    ("an error inside", ex4_raises, "KeyError"),
    ("None", None, "should be your function|got None"),
]


@pytest.mark.parametrize("answer", EX4_RIGHT, ids=[f.__name__ for f in EX4_RIGHT])
def test_ex4_accepts_correct_curves(answer):
    assert "correct" in check("ch3_ex4", answer)


@pytest.mark.parametrize("answer, message", [w[1:] for w in EX4_WRONG],
                         ids=[w[0] for w in EX4_WRONG])
def test_ex4_rejects_wrong_curves_and_says_why(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch3_ex4", answer)
