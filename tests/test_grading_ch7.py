"""The checks of chapter 7's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of sanity_lib.studies.mprt (torch.histc, numpy loops),
so a check that merely agreed with the library would not pass them unless both are right. Each
exercise has a catalogue of wrong answers (the usual mistakes, answers that call the library,
results computed with the wrong model or settings, bad input), each of which must fail with a
message that says what is wrong.
"""

import copy

import numpy as np
import pytest
import scipy.stats
import torch

import sanity_lib as sl
from sanity_lib.course.grading import CheckFailed, check

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- answers

def entropy_histc(maps, n_bins=100):
    """Right: torch.histc per map over its own range, natural log."""
    out = []
    for row in maps.reshape(len(maps), -1).double():
        lo, hi = row.min().item(), row.max().item()
        if lo == hi:
            out.append(torch.tensor(0.0, dtype=torch.float64))
            continue
        counts = torch.histc(row, bins=n_bins, min=lo, max=hi)
        p = counts[counts > 0] / counts.sum()
        out.append(-(p * p.log()).sum())
    return torch.stack(out)


def entropy_numpy(maps, n_bins=100):
    """Right too: numpy loop with scipy, returned as a list."""
    return [scipy.stats.entropy(np.histogram(m.ravel(), bins=n_bins)[0])
            for m in np.asarray(maps)]


def score_histc(maps, randomized):
    h, hr = entropy_histc(maps), entropy_histc(randomized)
    return (hr - h) / h


def score_bits(maps, randomized):
    """Right: the ratio does not depend on the log base."""
    h = np.array([scipy.stats.entropy(np.histogram(m.ravel(), 100)[0], base=2)
                  for m in maps.numpy()])
    hr = np.array([scipy.stats.entropy(np.histogram(m.ravel(), 100)[0], base=2)
                   for m in randomized.numpy()])
    return torch.from_numpy((hr - h) / h)


# ----------------------------------------------------------------------------- ex1

def entropy_in_place(maps, n_bins=100):
    out = entropy_histc(maps, n_bins)
    maps.abs_()
    return out


EX1_RIGHT = [("torch.histc", entropy_histc), ("numpy and scipy, a list", entropy_numpy)]

EX1_WRONG = [
    ("bits", lambda m, n_bins=100: entropy_histc(m, n_bins) / np.log(2), "in bits"),
    ("10 bins", lambda m, n_bins=100: entropy_numpy(m, 10), "10 bins, numpy.histogram's default"),
    ("absolute values", lambda m, n_bins=100: entropy_numpy(np.abs(m.numpy()), n_bins),
     "absolute values"),
    ("the batch's range", lambda m, n_bins=100: [scipy.stats.entropy(np.histogram(
        r.ravel(), n_bins, range=(m.min().item(), m.max().item()))[0]) for r in m.numpy()],
     "whole batch's minimum"),
    ("values as probabilities",
     lambda m, n_bins=100: [scipy.stats.entropy(np.abs(r.ravel())) for r in m.numpy()],
     "values as probabilities"),
    ("256 bins", lambda m, n_bins=100: entropy_numpy(m, 256), "256 bins"),
    ("one number for the batch", lambda m, n_bins=100: entropy_histc(m, n_bins).mean(),
     "single number"),
    ("no n_bins argument", lambda m: entropy_histc(m), "no `n_bins` argument"),
    ("n_bins ignored", lambda m, n_bins=100: entropy_histc(m, 100), "n_bins=20"),
    ("the library's histogram_entropy",
     lambda m, n_bins=100: sl.studies.mprt.histogram_entropy(m, n_bins=n_bins),
     "calls sanity_lib.studies.mprt.histogram_entropy"),
    ("a made-up entropy", lambda m, n_bins=100: torch.full((len(m),), 3.0), "differ from"),
    ("changes the maps", entropy_in_place, "changed its argument `maps` in place"),
    ("None", None, "function `histogram_entropy` itself"),
    ("a string", "histogram_entropy", "function `histogram_entropy` itself"),
    ("wrong signature", lambda maps, randomized, n_bins=100: maps,
     "cannot be called as histogram_entropy"),
    ("raises inside", lambda m, n_bins=100: m.view(-1, 5), "raised RuntimeError"),
    ("returns None", lambda m, n_bins=100: None, "torch tensor or a numpy array of numbers"),
]


@pytest.mark.parametrize("answer", [r[1] for r in EX1_RIGHT], ids=[r[0] for r in EX1_RIGHT])
def test_ex1_accepts_right_entropies(answer):
    assert "correct" in check("ch7_ex1", answer)


@pytest.mark.parametrize("wrong, message", [w[1:] for w in EX1_WRONG],
                         ids=[w[0] for w in EX1_WRONG])
def test_ex1_rejects_wrong_answers_and_says_why(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch7_ex1", wrong)


def test_ex1_rejects_nan_for_a_constant_map():
    def nan_for_constant(maps, n_bins=100):
        out = []
        for r in maps.reshape(len(maps), -1).numpy():
            p = np.histogram(r, n_bins)[0] / r.size
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(np.nansum(-(p * np.log(p))) if r.max() > r.min() else np.nan)
        return np.array(out)

    with pytest.raises(CheckFailed, match="constant map puts everything in one bin"):
        check("ch7_ex1", nan_for_constant)


# ----------------------------------------------------------------------------- ex2

def score_in_place(maps, randomized):
    out = score_histc(maps, randomized)
    randomized.zero_()
    return out


EX2_RIGHT = [("torch.histc", score_histc), ("in bits", score_bits)]

EX2_WRONG = [
    ("wrong sign", lambda a, b: -score_histc(a, b), "wrong sign"),
    ("divided by the randomized entropy",
     lambda a, b: (entropy_histc(b) - entropy_histc(a)) / entropy_histc(b),
     "divided by the entropy of the randomized map"),
    ("not divided", lambda a, b: entropy_histc(b) - entropy_histc(a), "without dividing"),
    ("the ratio", lambda a, b: entropy_histc(b) / entropy_histc(a), "score plus 1"),
    ("absolute change", lambda a, b: score_histc(a, b).abs(), "absolute value of the change"),
    ("one score only", lambda a, b: score_histc(a, b)[:1], "one score per map"),
    ("the library's score", lambda a, b: sl.studies.mprt.efficient_mprt_score(a, b),
     "calls sanity_lib.studies.mprt.efficient_mprt_score"),
    ("a made-up score", lambda a, b: torch.zeros(len(a)), "differ from the expected"),
    ("changes its input", score_in_place, "changed its argument `randomized` in place"),
    ("None", None, "function `emprt_score` itself"),
    ("wrong signature", lambda maps: maps, "cannot be called as emprt_score"),
    ("raises inside", lambda a, b: a.view(-1, 5), "raised RuntimeError"),
    ("returns a string", lambda a, b: "0.3", "torch tensor or a numpy array of numbers"),
]


@pytest.mark.parametrize("answer", [r[1] for r in EX2_RIGHT], ids=[r[0] for r in EX2_RIGHT])
def test_ex2_accepts_right_scores_in_any_log_base(answer):
    assert "correct" in check("ch7_ex2", answer)


@pytest.mark.parametrize("wrong, message", [w[1:] for w in EX2_WRONG],
                         ids=[w[0] for w in EX2_WRONG])
def test_ex2_rejects_wrong_answers_and_says_why(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch7_ex2", wrong)


# ----------------------------------------------------------------------------- ex3

def _trained_cnn():
    return sl.training.trained_mnist_model("cnn", "true", progress=False)[0]


def _another_trained_cnn():
    """The trained CNN with a small change to one layer: the same predictions, other weights."""
    other = copy.deepcopy(_trained_cnn())
    with torch.no_grad():
        other.fc1.bias.add_(1e-3)
    return other


def _run(order, model=None, x=None, methods=("gradient", "guided_backprop"),
         init="truncated_normal", value=None):
    model = _trained_cnn() if model is None else model
    x = sl.data.load_mnist("test")[0][:3] if x is None else x
    result = sl.model_randomization_test(model, x, list(methods), order=order, init=init,
                                         metrics=["spearman_abs", "spearman_diverging"],
                                         progress=False, cache=False)
    if value is not None:
        t = result.table
        rows = (t.method == "guided_backprop") & (t.step == 1) & (t.metric == "spearman_abs")
        t.loc[rows, "value"] = value + np.array([-0.05, 0.0, 0.05])
    return result


@pytest.fixture(scope="module")
def sweeps():
    """Two small real results, with Guided Backprop's step-1 values set to known numbers, and
    results computed with what the exercise does not ask for."""
    return {
        "top_down": _run("top_down", value=0.7),
        "bottom_up": _run("bottom_up", value=0.4),
        "default init": _run("top_down", init="default", value=0.7),
        "another model": _run("bottom_up", model=_another_trained_cnn(), value=0.4),
        "untrained": _run("top_down", model=sl.models.mnist_cnn(seed=0), value=0.7),
        "other digits": _run("bottom_up", x=sl.data.load_mnist("test")[0][3:6], value=0.4),
        "no gradient": _run("top_down", methods=("guided_backprop",), value=0.7),
        "independent": sl.model_randomization_test(
            _trained_cnn(), sl.data.load_mnist("test")[0][:3],
            ["gradient", "guided_backprop"], mode="independent", init="truncated_normal",
            metrics=["spearman_abs", "spearman_diverging"], progress=False, cache=False),
    }


def measured(result, step=1, method="guided_backprop", metric="spearman_abs"):
    s = result.summary()
    return float(s[(s.method == method) & (s.step == step) & (s.metric == metric)]["mean"]
                 .iloc[0])


def test_ex3_accepts_the_measured_values(sweeps):
    td, bu = sweeps["top_down"], sweeps["bottom_up"]
    answer = {"top_down": measured(td) + 0.01, "bottom_up": round(measured(bu), 2),
              "changes_sooner": "bottom_up"}
    assert "correct" in check("ch7_ex3", answer, top_down=td, bottom_up=bu)


EX3_WRONG = [   # (id, edit of the right answer, expected phrase, which results to pass)
    ("the wrong order changes sooner", lambda a, td, bu: {**a, "changes_sooner": "top_down"},
     "changes more after one bottom_up", {}),
    ("the other order's value", lambda a, td, bu: {**a, "top_down": a["bottom_up"]},
     "is the other order's", {}),
    ("read at the last step", lambda a, td, bu: {**a, "bottom_up": measured(bu, step=4)},
     "read at the last step", {}),
    ("the gradient's value", lambda a, td, bu: {**a, "top_down": measured(td, method="gradient")},
     "the Gradient's", {}),
    ("the signed metric", lambda a, td, bu: {**a, "top_down": measured(
        td, metric="spearman_diverging")}, "signed \\(diverging\\)", {}),
    ("a made-up value", lambda a, td, bu: {**a, "top_down": a["top_down"] + 0.1},
     "is not Guided Backprop's mean", {}),
    ("keys missing", lambda a, td, bu: {"top_down": 0.9}, "keys 'top_down', 'bottom_up'", {}),
    ("not an order", lambda a, td, bu: {**a, "changes_sooner": "both"},
     "should be 'top_down' or", {}),
    ("a string as the value", lambda a, td, bu: {**a, "top_down": "high"}, "should be a number",
     {}),
    ("None", lambda a, td, bu: None, "should be a dict", {}),
    ("results swapped", lambda a, td, bu: a, "order='bottom_up', not 'top_down'",
     {"top_down": "bottom_up", "bottom_up": "top_down"}),
    ("bottom_up missing", lambda a, td, bu: a, "passed as top_down=... and bottom_up=",
     {"bottom_up": None}),
    ("the default init", lambda a, td, bu: a, "init='truncated_normal'",
     {"top_down": "default init"}),
    ("another model", lambda a, td, bu: a, "different models", {"bottom_up": "another model"}),
    ("other digits", lambda a, td, bu: a, "different digits", {"bottom_up": "other digits"}),
    ("without the gradient", lambda a, td, bu: a, "has no maps of \\['gradient'\\]",
     {"top_down": "no gradient"}),
    ("independent randomization", lambda a, td, bu: a, "mode='cascading'",
     {"top_down": "independent"}),
    ("an untrained CNN", lambda a, td, bu: a, "not the CNN trained on the true labels",
     {"top_down": "untrained"}),
]


@pytest.mark.parametrize("edit, message, which", [w[1:] for w in EX3_WRONG],
                         ids=[w[0] for w in EX3_WRONG])
def test_ex3_rejects_wrong_answers_and_says_why(sweeps, edit, message, which):
    td, bu = sweeps["top_down"], sweeps["bottom_up"]
    right = {"top_down": measured(td), "bottom_up": measured(bu), "changes_sooner": "bottom_up"}
    wrong = edit(right, td, bu)
    # only meaningful where the wrong value really differs from the right one
    for key in ("top_down", "bottom_up"):
        if isinstance(wrong, dict) and isinstance(wrong.get(key), float) \
                and wrong[key] != right[key]:
            assert abs(wrong[key] - right[key]) > 0.02
    context = {"top_down": td, "bottom_up": bu}
    for key, name in which.items():
        context[key] = None if name is None else sweeps[name]
    with pytest.raises(CheckFailed, match=message):
        check("ch7_ex3", wrong, **context)


# ----------------------------------------------------------------------------- ex4

EX4_RIGHT = [
    ("the gradient", {"debugging": "gradient", "avoid": ["guided_backprop", "guided_gradcam"]}),
    ("GradCAM, labels", {"debugging": "GradCAM", "avoid": [
        "Guided Backprop", "Guided GradCAM", "gradient_x_input", "integrated_gradients"]}),
    ("SmoothGrad, aliases", {"debugging": "smoothgrad",
                             "avoid": ["gbp", "guided_gradcam", "lrp_epsilon", "deeplift"]}),
    ("Integrated Gradients, signed", {"debugging": "integrated_gradients", "maps": "signed",
                                      "avoid": ["guided_backprop", "guided_gradcam"]}),
    ("Gradient x Input", {"debugging": "gradient_x_input",
                          "avoid": ["guided_backprop", "guided_gradcam"]}),
    ("DeepLIFT", {"debugging": "deeplift", "avoid": ["guided_backprop", "guided_gradcam"]}),
]

EX4_WRONG = [
    ("Guided Backprop", {"debugging": "guided_backprop", "avoid": ["guided_gradcam"]},
     "barely changes"),
    ("IG with abs maps", {"debugging": "integrated_gradients", "maps": "abs",
                          "avoid": ["guided_backprop", "guided_gradcam"]}, "only through its signed"),
    ("VarGrad", {"debugging": "vargrad", "avoid": ["guided_backprop"]}, "no evidence"),
    ("Guided GradCAM not avoided", {"debugging": "gradient", "avoid": ["guided_backprop"]},
     "leaves out guided_gradcam"),
    ("GradCAM avoided", {"debugging": "gradient",
                         "avoid": ["guided_backprop", "guided_gradcam", "gradcam"]},
     "You would avoid gradcam"),
    ("the pick avoided", {"debugging": "gradient",
                          "avoid": ["gradient", "guided_backprop", "guided_gradcam"]},
     "also list it to avoid"),
    ("a typo", {"debugging": "grad-kam", "avoid": []}, "not a method name I know"),
    ("a string", "gradient", "dict with keys 'debugging'"),
    ("None", None, "dict with keys 'debugging'"),
    ("avoid missing", {"debugging": "gradient"}, "dict with keys 'debugging'"),
]


@pytest.mark.parametrize("answer", [r[1] for r in EX4_RIGHT], ids=[r[0] for r in EX4_RIGHT])
def test_ex4_accepts_fit_choices(answer):
    assert "correct" in check("ch7_ex4", answer)


@pytest.mark.parametrize("answer, message", [w[1:] for w in EX4_WRONG],
                         ids=[w[0] for w in EX4_WRONG])
def test_ex4_explains_wrong_choices(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch7_ex4", answer)
