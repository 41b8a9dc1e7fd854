"""The checks of chapter 7's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of sanity_lib.studies.mprt (torch.histc, numpy loops),
so a check that merely agreed with the library would not pass them unless both are right.
"""

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

@pytest.mark.parametrize("answer", [entropy_histc, entropy_numpy, sl.studies.mprt.histogram_entropy])
def test_ex1_accepts_right_entropies(answer):
    assert "correct" in check("ch7_ex1", answer)


@pytest.mark.parametrize("wrong, message", [
    (lambda m, n_bins=100: entropy_histc(m, n_bins) / np.log(2), "in bits"),
    (lambda m, n_bins=100: entropy_numpy(m, 10), "10 bins, numpy.histogram's default"),
    (lambda m, n_bins=100: entropy_numpy(np.abs(m.numpy()), n_bins), "absolute values"),
    (lambda m, n_bins=100: [scipy.stats.entropy(np.histogram(
        r.ravel(), n_bins, range=(m.min().item(), m.max().item()))[0]) for r in m.numpy()],
     "whole batch's minimum"),
    (lambda m, n_bins=100: [scipy.stats.entropy(np.abs(r.ravel())) for r in m.numpy()],
     "values as probabilities"),
    (lambda m, n_bins=100: entropy_numpy(m, 256), "256 bins"),
    (lambda m, n_bins=100: entropy_histc(m, n_bins).mean(), "single number"),
    (lambda m: entropy_histc(m), "no `n_bins` argument"),
    (lambda m, n_bins=100: entropy_histc(m, 100), "n_bins=20"),
])
def test_ex1_names_the_mistake(wrong, message):
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

@pytest.mark.parametrize("answer", [score_histc, score_bits, sl.studies.mprt.efficient_mprt_score])
def test_ex2_accepts_right_scores_in_any_log_base(answer):
    assert "correct" in check("ch7_ex2", answer)


@pytest.mark.parametrize("wrong, message", [
    (lambda a, b: -score_histc(a, b), "wrong sign"),
    (lambda a, b: (entropy_histc(b) - entropy_histc(a)) / entropy_histc(b),
     "divided by the entropy of the randomized map"),
    (lambda a, b: entropy_histc(b) - entropy_histc(a), "without dividing"),
    (lambda a, b: entropy_histc(b) / entropy_histc(a), "score plus 1"),
    (lambda a, b: score_histc(a, b).abs(), "absolute value of the change"),
    (lambda a, b: score_histc(a, b)[:1], "one score per map"),
])
def test_ex2_names_the_mistake(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch7_ex2", wrong)


# ----------------------------------------------------------------------------- ex3

@pytest.fixture(scope="module")
def sweeps():
    """Two small real results, with Guided Backprop's step-1 values set to known numbers."""
    model = sl.models.mnist_cnn(seed=0)
    x = sl.data.load_mnist("test")[0][:3]
    kwargs = dict(metrics=["spearman_abs", "spearman_diverging"], progress=False)
    out = {}
    for order, value in (("top_down", 0.7), ("bottom_up", 0.4)):
        result = sl.model_randomization_test(model, x, ["gradient", "guided_backprop"],
                                             order=order, **kwargs)
        t = result.table
        rows = (t.method == "guided_backprop") & (t.step == 1) & (t.metric == "spearman_abs")
        t.loc[rows, "value"] = value + np.array([-0.05, 0.0, 0.05])
        out[order] = result
    return out


def measured(result, step=1, method="guided_backprop", metric="spearman_abs"):
    s = result.summary()
    return float(s[(s.method == method) & (s.step == step) & (s.metric == metric)]["mean"]
                 .iloc[0])


def test_ex3_accepts_the_measured_values(sweeps):
    td, bu = sweeps["top_down"], sweeps["bottom_up"]
    answer = {"top_down": measured(td) + 0.01, "bottom_up": round(measured(bu), 2),
              "changes_sooner": "bottom_up"}
    assert "correct" in check("ch7_ex3", answer, top_down=td, bottom_up=bu)


@pytest.mark.parametrize("edit, message", [
    (lambda a, td, bu: {**a, "changes_sooner": "top_down"}, "changes more after one bottom_up"),
    (lambda a, td, bu: {**a, "top_down": a["bottom_up"]}, "is the other order's"),
    (lambda a, td, bu: {**a, "bottom_up": measured(bu, step=4)}, "read at the last step"),
    (lambda a, td, bu: {**a, "top_down": measured(td, method="gradient")}, "the Gradient's"),
    (lambda a, td, bu: {**a, "top_down": measured(td, metric="spearman_diverging")},
     "signed \\(diverging\\)"),
    (lambda a, td, bu: {"top_down": 0.9}, "keys 'top_down', 'bottom_up'"),
    (lambda a, td, bu: {**a, "changes_sooner": "both"}, "should be 'top_down' or"),
])
def test_ex3_names_the_mistake(sweeps, edit, message):
    td, bu = sweeps["top_down"], sweeps["bottom_up"]
    right = {"top_down": measured(td), "bottom_up": measured(bu), "changes_sooner": "bottom_up"}
    wrong = edit(right, td, bu)
    # only meaningful where the wrong value really differs from the right one
    for key in ("top_down", "bottom_up"):
        if key in wrong and wrong[key] != right[key]:
            assert abs(wrong[key] - right[key]) > 0.02
    with pytest.raises(CheckFailed, match=message):
        check("ch7_ex3", wrong, top_down=td, bottom_up=bu)


def test_ex3_needs_both_results_in_their_own_order(sweeps):
    td, bu = sweeps["top_down"], sweeps["bottom_up"]
    answer = {"top_down": 0.7, "bottom_up": 0.4, "changes_sooner": "bottom_up"}
    with pytest.raises(CheckFailed, match="order='bottom_up', not 'top_down'"):
        check("ch7_ex3", answer, top_down=bu, bottom_up=td)
    with pytest.raises(CheckFailed, match="passed as top_down=... and bottom_up="):
        check("ch7_ex3", answer, top_down=td)


# ----------------------------------------------------------------------------- ex4

@pytest.mark.parametrize("answer", [
    {"debugging": "gradient", "avoid": ["guided_backprop", "guided_gradcam"]},
    {"debugging": "GradCAM", "avoid": ["Guided Backprop", "Guided GradCAM", "gradient_x_input",
                                       "integrated_gradients"]},
    {"debugging": "smoothgrad", "avoid": ["gbp", "guided_gradcam", "lrp_epsilon", "deeplift"]},
])
def test_ex4_accepts_fit_choices(answer):
    assert "correct" in check("ch7_ex4", answer)


@pytest.mark.parametrize("answer, message", [
    ({"debugging": "guided_backprop", "avoid": ["guided_gradcam"]}, "barely changes"),
    ({"debugging": "integrated_gradients", "avoid": ["guided_backprop"]}, "absolute maps"),
    ({"debugging": "vargrad", "avoid": ["guided_backprop"]}, "no evidence"),
    ({"debugging": "gradient", "avoid": ["guided_backprop"]}, "leaves out guided_gradcam"),
    ({"debugging": "gradient", "avoid": ["guided_backprop", "guided_gradcam", "gradcam"]},
     "You would avoid gradcam"),
    ({"debugging": "gradient", "avoid": ["gradient", "guided_backprop", "guided_gradcam"]},
     "also list it to avoid"),
    ({"debugging": "grad-kam", "avoid": []}, "not a method name I know"),
    ("gradient", "dict with keys 'debugging'"),
])
def test_ex4_explains_wrong_choices(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch7_ex4", answer)
