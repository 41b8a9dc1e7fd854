"""The checks of chapter 3's exercise notebook accept correct answers and reject the typical
wrong ones with a message that says what is wrong."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib.checks import SanityCheckResult
from sanity_lib.course.grading import CheckFailed, check
from sanity_lib.course.grading import ch3

# ----------------------------------------------------------------------------- ex1


def _hand_written_cascading(model, init="default", seed=0):
    """A correct loop written differently from the solution: the global RNG and each
    submodule's own reset_parameters, a list instead of a generator."""
    work = copy.deepcopy(model)
    out = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for name, group in list(sl.models.layer_groups(work))[::-1]:
            for module in group.modules():
                if hasattr(module, "reset_parameters") and next(
                        module.parameters(recurse=False), None) is not None:
                    module.reset_parameters()
            out.append((name, copy.deepcopy(work)))
    return out


def test_ex1_accepts_the_library_and_an_independent_loop():
    assert check("ch3_ex1", sl.randomization.cascading).endswith("correct. Well done!")
    assert check("ch3_ex1", _hand_written_cascading).endswith("correct. Well done!")


def test_ex1_rejects_independent_randomization():
    with pytest.raises(CheckFailed, match="independent randomization, not cascading"):
        check("ch3_ex1", sl.randomization.independent)


def test_ex1_rejects_bottom_up_order():
    with pytest.raises(CheckFailed, match="bottom-up"):
        check("ch3_ex1", lambda m: sl.randomization.cascading(m, order="bottom_up"))


def test_ex1_rejects_mutating_the_original():
    def in_place(model, init="default", seed=0):
        for name, group in reversed(sl.models.layer_groups(model)):
            sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
            yield name, copy.deepcopy(model)

    with pytest.raises(CheckFailed, match="changed the model it was given"):
        check("ch3_ex1", in_place)


def test_ex1_rejects_yielding_the_given_model():
    def same_object(model, init="default", seed=0):
        for name, group in reversed(sl.models.layer_groups(model)):
            sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
            yield name, model

    with pytest.raises(CheckFailed, match="the very model you were given"):
        check("ch3_ex1", same_object)


def test_ex1_rejects_one_shared_working_copy():
    def shared(model, init="default", seed=0):
        work = copy.deepcopy(model)
        for name, group in reversed(sl.models.layer_groups(work)):
            sl.randomization.randomize_module(group, init=init, seed=seed, prefix=name)
            yield name, work

    with pytest.raises(CheckFailed, match="changed after it was yielded"):
        check("ch3_ex1", shared)


def test_ex1_rejects_a_loop_that_only_resets_the_group_module_itself():
    # nn.Sequential has no parameters of its own: on the block model nothing changes
    def shallow(model, init="default", seed=0):
        work = copy.deepcopy(model)
        for name, group in reversed(sl.models.layer_groups(work)):
            with torch.no_grad():
                for p in group.parameters(recurse=False):
                    p.normal_()
                if isinstance(group, nn.Linear):
                    group.weight.normal_()
            yield name, copy.deepcopy(work)

    with pytest.raises(CheckFailed, match=r"conv blocks.*missing: \['block2'\]"):
        check("ch3_ex1", shallow)


def test_ex1_rejects_weights_only():
    def weights_only(model, init="default", seed=0):
        work = copy.deepcopy(model)
        for name, group in reversed(sl.models.layer_groups(work)):
            with torch.no_grad():
                for pname, p in group.named_parameters():
                    if pname.endswith("weight") and p.dim() > 1:
                        p.normal_()
            yield name, copy.deepcopy(work)

    with pytest.raises(CheckFailed, match="only some of the parameters"):
        check("ch3_ex1", weights_only)


def test_ex1_rejects_non_functions_and_wrong_items():
    with pytest.raises(CheckFailed, match="should be your function"):
        check("ch3_ex1", [("logits", sl.models.mnist_cnn())])
    with pytest.raises(CheckFailed, match="not a pair"):
        check("ch3_ex1", lambda m: iter([copy.deepcopy(m)]))


# ----------------------------------------------------------------------------- results


def _fake_result(values, layers, n_images=3, mode="cascading"):
    """A SanityCheckResult whose spearman_abs curves are ``values[method]``: one value per
    step (the same for every image) or one list per image."""
    rng = np.random.default_rng(0)
    rows = []
    for method, curves in values.items():
        if not isinstance(curves[0], list):
            curves = [curves] * n_images
        for i, curve in enumerate(curves):
            for k, v in enumerate(curve, start=1):
                for metric in ("spearman_abs", "spearman_diverging"):
                    rows.append((method, k, layers[k], i, metric,
                                 v if metric == "spearman_abs" else rng.uniform()))
    table = pd.DataFrame(rows, columns=["method", "step", "layer", "image", "metric", "value"])
    settings = {"test": "model_randomization", "mode": mode, "order": "top_down",
                "methods": {m: {} for m in values},
                "metrics": ["spearman_abs", "spearman_diverging"]}
    return SanityCheckResult(table=table, maps={}, layers=list(layers), noise_floor={},
                             targets=torch.zeros(len(layers), n_images, dtype=torch.long),
                             settings=settings)


MNIST_LAYERS = ["original", "logits", "fc1", "conv2", "conv1"]
MNIST_VALUES = {  # spearman_abs per step, shaped like the paper's MNIST findings
    "gradient": [0.45, 0.27, 0.20, 0.40],
    "gradient_x_input": [0.99, 0.99, 0.99, 0.99],
    "integrated_gradients": [0.99, 0.98, 0.99, 0.99],
    "guided_backprop": [0.91, 0.84, 0.61, 0.60],
    "gradcam": [0.43, 0.28, 0.40, 0.40],
    "guided_gradcam": [0.50, 0.45, 0.50, 0.50],   # near the threshold: either way
}


# ----------------------------------------------------------------------------- ex2


def test_ex2_accepts_the_clear_failures_with_or_without_the_borderline_method():
    result = _fake_result(MNIST_VALUES, MNIST_LAYERS)
    clear = ["gradient_x_input", "integrated_gradients", "guided_backprop"]
    assert check("ch3_ex2", clear, result=result).endswith("Well done!")
    assert check("ch3_ex2", clear + ["guided_gradcam"], result=result).endswith("Well done!")
    # display names and short names are understood
    assert check("ch3_ex2", ["Gradient ⊙ Input", "IG", "Guided Backprop"], result=result)


def test_ex2_rejects_a_missing_and_an_extra_method():
    result = _fake_result(MNIST_VALUES, MNIST_LAYERS)
    with pytest.raises(CheckFailed, match=r"left out guided_backprop \(.*0\.84"):
        check("ch3_ex2", ["gradient_x_input", "integrated_gradients"], result=result)
    with pytest.raises(CheckFailed, match=r"named gradient \(.*0\.27.*it passes"):
        check("ch3_ex2", ["gradient", "gradient_x_input", "integrated_gradients",
                          "guided_backprop"], result=result)
    with pytest.raises(CheckFailed, match="not a method name"):
        check("ch3_ex2", ["guided backpropagation!!"], result=result)


def test_ex2_needs_the_cascading_result():
    with pytest.raises(CheckFailed, match="result="):
        check("ch3_ex2", ["guided_backprop"])
    independent = _fake_result(MNIST_VALUES, MNIST_LAYERS, mode="independent")
    with pytest.raises(CheckFailed, match="not a top-down cascading"):
        check("ch3_ex2", ["guided_backprop"], result=independent)


def test_ex2_reads_the_same_numbers_as_an_independent_computation():
    # A real (small) sweep, and the same similarity computed by hand from its parts.
    model = sl.models.mnist_cnn(seed=0)
    digits, labels = sl.data.load_mnist("test")
    x = digits[torch.cat([torch.nonzero(labels == c)[:1, 0] for c in range(6)])]
    methods = ["gradient", "gradient_x_input", "guided_backprop"]
    result = sl.model_randomization_test(model, x, methods, init="truncated_normal",
                                         metrics=["spearman_abs"], progress=False)
    _, randomized = list(sl.randomization.cascading(model, init="truncated_normal"))[1]
    expected = {}
    for method in methods:
        before = sl.saliency.explain(model, x, method)
        after = sl.saliency.explain(randomized, x, method)
        expected[method] = float(sl.similarity.spearman(before, after, "abs").mean())
    must, may, values = ch3.failing_methods(result)
    for method in methods:
        assert values[method] == pytest.approx(expected[method], abs=1e-6)
    answer = sorted(m for m, v in expected.items() if v >= ch3.FAIL_THRESHOLD)
    assert check("ch3_ex2", answer, result=result)


# ----------------------------------------------------------------------------- ex3

EN_LAYERS = ["original", "logits", "head", "stage7", "stage6", "stage5", "stage4", "stage3",
             "stage2", "stage1", "stem"]
EN_VALUES = {
    "gradient": [0.46, 0.40, 0.35, 0.29, 0.19, 0.10, 0.07, 0.05, 0.02, 0.0],
    "guided_backprop": [1.00, 0.99, 0.98, 0.85, 0.62, 0.30, 0.10, 0.05, 0.02, 0.0],
}


def test_ex3_window_comes_from_the_data():
    result = _fake_result(EN_VALUES, EN_LAYERS)
    assert ch3.change_layers(result) == ["stage6", "stage5", "stage4"]
    # shift the drop two groups later: the accepted layers move with it
    later = {m: v[:3] + [0.99, 0.99] + v[3:-2] for m, v in EN_VALUES.items()}
    assert ch3.change_layers(_fake_result(later, EN_LAYERS)) == ["stage4", "stage3", "stage2"]


def test_ex3_accepts_layers_in_the_window():
    result = _fake_result(EN_VALUES, EN_LAYERS)
    for layer in ["stage6", "stage5", "stage4"]:
        assert check("ch3_ex3", layer, result=result).endswith("Well done!")


def test_ex3_rejects_too_early_and_too_late():
    result = _fake_result(EN_VALUES, EN_LAYERS)
    with pytest.raises(CheckFailed, match="has not changed yet.*1.00"):
        check("ch3_ex3", "logits", result=result)   # the gradient's answer, not GBP's
    with pytest.raises(CheckFailed, match="too late"):
        check("ch3_ex3", "stem", result=result)
    with pytest.raises(CheckFailed, match="not one of the sweep's randomized layers"):
        check("ch3_ex3", "Mixed_6b", result=result)
    with pytest.raises(CheckFailed, match="layer name"):
        check("ch3_ex3", 4, result=result)


def test_ex3_per_image_windows_widen_what_is_accepted():
    # one of three images changes a step earlier than the others: the explorer shows one
    # image, so stage7 becomes acceptable although the mean there is still high
    early = [1.00, 0.99, 0.80, 0.40, 0.30, 0.20, 0.10, 0.05, 0.02, 0.0]
    gbp = [early, EN_VALUES["guided_backprop"], EN_VALUES["guided_backprop"]]
    result = _fake_result({"gradient": EN_VALUES["gradient"], "guided_backprop": gbp},
                          EN_LAYERS)
    mean_stage7 = (0.80 + 2 * 0.98) / 3
    assert mean_stage7 > ch3.CHANGE_START
    assert ch3.change_layers(result)[0] == "stage7"
    assert check("ch3_ex3", "stage7", result=result)
    with pytest.raises(CheckFailed, match="has not changed yet"):
        check("ch3_ex3", "head", result=result)
