"""The checks of chapter 6's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of the library (plain torch and numpy), so a
check that only agreed with ``sanity_lib.randomization`` would not pass them unless the
library is right too. ex3 and ex4 are fed measurements with known values and the settings a
real run records. Each exercise has a catalogue of wrong answers (the usual mistakes, answers
that call the library, results computed with the wrong settings, bad input), each of which
must fail with a message that says what is wrong.
"""
import copy

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib.course.grading import CheckFailed, check
from sanity_lib import noise_study
from sanity_lib.studies.noise import NoiseSweep


# ----------------------------------------------------------------------------- ex1

def noisy_copy(model, layer, std, seed=0):
    """Right: a deep copy, one generator, additive noise on every parameter of the layer."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dict(out.named_modules())[layer].parameters():
            p += std * torch.randn(p.shape, generator=g)
    return out


def noisy_copy_state_dict(model, layer, std, seed=0):
    """Right too: through the state dict, numpy's generator, float64 noise."""
    out = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    state = out.state_dict()
    for key in state:
        if key.startswith(layer + "."):
            noise = rng.normal(0.0, 1.0, size=tuple(state[key].shape)) * std
            state[key] = state[key] + torch.from_numpy(noise).to(state[key].dtype)
    out.load_state_dict(state)
    return out


@pytest.mark.parametrize("answer", [noisy_copy, noisy_copy_state_dict])
def test_ex1_accepts_right_answers(answer):
    assert "correct" in check("ch6_ex1", answer)


def with_library(model, layer, std, seed=0):
    out = copy.deepcopy(model)
    sl.randomization.add_gaussian_noise(out.get_submodule(layer), std, seed=seed)
    return out


def with_library_relative(model, layer, std, seed=0):
    out = copy.deepcopy(model)
    sl.randomization.add_gaussian_noise(out.get_submodule(layer), std, relative=True, seed=seed)
    return out


def raises(model, layer, std, seed=0):
    return model.get_submodule("layer_that_is_not_there")


def _noise_with(transform):
    def answer(model, layer, std, seed=0):
        out = copy.deepcopy(model)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in out.get_submodule(layer).parameters():
                p.copy_(transform(p, std, g))
        return out
    return answer


def mutates(model, layer, std, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.get_submodule(layer).parameters():
            p += std * torch.randn(p.shape, generator=g)
    return copy.deepcopy(model)


def all_layers(model, layer, std, seed=0):
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p += std * torch.randn(p.shape, generator=g)
    return out


def weights_only(model, layer, std, seed=0):
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = out.get_submodule(layer).weight
        w += std * torch.randn(w.shape, generator=g)
    return out


def unseeded(model, layer, std, seed=0):
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.get_submodule(layer).parameters():
            p += std * torch.randn(p.shape)
    return out


BAD_FUNCTIONS = [   # (id, answer, expected phrase): wrong kinds of answer for ex1 and ex2
    ("None", None, "function `add_(relative_)?noise` itself"),
    ("a number", 0.1, "function `add_(relative_)?noise` itself"),
    ("a string", "add_noise", "function `add_(relative_)?noise` itself"),
    ("wrong signature", lambda model, std: model, "cannot be called as add_(relative_)?noise"),
    ("raises inside", raises, "raised AttributeError"),
    ("returns None", lambda model, layer, std, seed=0: None, "returned NoneType"),
    ("returns the model itself", lambda model, layer, std, seed=0: model, "not a copy"),
]

EX1_WRONG = [
    ("multiplicative", _noise_with(lambda p, s, g: p * (1 + s * torch.randn(p.shape, generator=g))),
     "multiplicative"),
    ("changes the model given", mutates, "changed its argument `model` in place"),
    ("all layers", all_layers, "outside the layer"),
    ("weights only", weights_only, "biases included"),
    ("relative", _noise_with(lambda p, s, g: p + s * p.std() * torch.randn(p.shape, generator=g)),
     "relative"),
    ("std as variance", _noise_with(lambda p, s, g: p + s ** 0.5 * torch.randn(p.shape, generator=g)),
     "variance"),
    ("uniform noise", _noise_with(
        lambda p, s, g: p + s * 3 ** 0.5 * (2 * torch.rand(p.shape, generator=g) - 1)), "Gaussian"),
    ("unseeded", unseeded, "same seed gave different noise"),
    ("the library's add_gaussian_noise", with_library, "calls sanity_lib.randomization"),
    *BAD_FUNCTIONS,
]


@pytest.mark.parametrize("answer, match", [w[1:] for w in EX1_WRONG],
                         ids=[w[0] for w in EX1_WRONG])
def test_ex1_rejects_wrong_answers_and_says_why(answer, match):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex1", answer)


# ----------------------------------------------------------------------------- ex2

def relative_copy(model, layer, std, seed=0):
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.get_submodule(layer).parameters():
            p += std * p.std(unbiased=False) * torch.randn(p.shape, generator=g)
    return out


def relative_copy_bessel(model, layer, std, seed=0):
    """Right too: torch's default (Bessel-corrected) standard deviation."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.get_submodule(layer).parameters():
            p.add_(torch.randn(p.shape, generator=g) * (std * float(p.std())))
    return out


@pytest.mark.parametrize("answer", [relative_copy, relative_copy_bessel])
def test_ex2_accepts_right_answers(answer):
    assert "correct" in check("ch6_ex2", answer)


def pooled(model, layer, std, seed=0):
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    params = list(out.get_submodule(layer).parameters())
    scale = torch.cat([p.detach().flatten() for p in params]).std()
    with torch.no_grad():
        for p in params:
            p += std * scale * torch.randn(p.shape, generator=g)
    return out


EX2_WRONG = [
    ("absolute noise", noisy_copy, "absolute noise"),
    ("pooled spread", pooled, "pooled"),
    ("multiplicative", _noise_with(lambda p, s, g: p * (1 + s * torch.randn(p.shape, generator=g))),
     "multiplicative"),
    ("root mean square", _noise_with(
        lambda p, s, g: p + s * p.pow(2).mean().sqrt() * torch.randn(p.shape, generator=g)),
     "root mean square"),
    ("largest absolute value", _noise_with(
        lambda p, s, g: p + s * p.abs().max() * torch.randn(p.shape, generator=g)),
     "largest absolute"),
    ("the library's relative noise", with_library_relative, "calls sanity_lib.randomization"),
    ("changes the model given", mutates, "changed its argument `model` in place"),
    *BAD_FUNCTIONS,
]


@pytest.mark.parametrize("answer, match", [w[1:] for w in EX2_WRONG],
                         ids=[w[0] for w in EX2_WRONG])
def test_ex2_rejects_wrong_answers_and_says_why(answer, match):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex2", answer)


# ----------------------------------------------------------------------------- ex3

DIGITS, LABELS = sl.data.load_mnist("test")


def _fake_result(rows, methods, std, model="MnistCNN", relative=False, order="top_down",
                 mode="gaussian_noise", fingerprint="cnn", metrics=("spearman_diverging",),
                 layers=("original", "logits", "fc1"), trained=True):
    """A SanityCheckResult with the given table rows and the settings a real run records, on
    real test digits; its model predicted their labels (``trained``) or the next class."""
    steps = len(layers)
    n = int(pd.DataFrame(rows)["image"].max()) + 1 if rows else 1
    labels = LABELS[:n] if trained else (LABELS[:n] + 1) % 10
    return sl.SanityCheckResult(
        table=pd.DataFrame(rows), maps={}, layers=list(layers), inputs=DIGITS[:n],
        noise_floor={m: 0.0 for m in metrics}, targets=labels.repeat(steps, 1),
        settings={"test": "model_randomization", "methods": {m: {} for m in methods},
                  "metrics": list(metrics), "mode": mode, "std": std, "relative": relative,
                  "order": order, "model": model, "model_fingerprint": fingerprint,
                  "x_fingerprint": "digit"})


def _fake_results(rho, **settings):
    """{std: SanityCheckResult} whose step-1 signed correlation of image 0 is rho[method][std]."""
    stds = sorted(next(iter(rho.values())))
    out = {}
    for s in stds:
        rows = []
        for method, values in rho.items():
            for step, value in ((1, values[s]), (2, values[s] / 2)):
                rows.append({"method": method, "step": step, "layer": ["", "logits", "fc1"][step],
                             "image": 0, "metric": "spearman_diverging", "value": value})
        out[s] = _fake_result(rows, list(rho), s, **settings)
    return out


RHO = {"gradient": {0.01: 0.98, 0.03: 0.7, 0.1: 0.45, 0.3: 0.1},
       "integrated_gradients": {0.01: 0.95, 0.03: 0.2, 0.1: 0.1, 0.3: 0.05},
       "guided_backprop": {0.01: 0.99, 0.03: 0.97, 0.1: 0.9, 0.3: 0.85}}
RESULTS = _fake_results(RHO)
EX3_CONTEXT = {"results": RESULTS, "image": 0}


def _mixed_models():
    out = dict(RESULTS)
    out[0.3] = _fake_results(RHO, fingerprint="another model")[0.3]
    return out


EX3_RIGHT = [
    ("the measured thresholds", {"gradient": 0.1, "integrated_gradients": 0.03,
                                 "guided_backprop": None}),
    ("a borderline value is accepted on either side",   # 0.45 at 0.1 is borderline
     {"gradient": 0.3, "integrated_gradients": 0.03, "guided_backprop": None}),
    ("labels and aliases as keys", {"Gradient": 0.1, "IG": 0.03, "Guided Backprop": None}),
]

EX3_WRONG = [   # (id, answer, expected phrase, context)
    ("too small for the gradient", {**EX3_RIGHT[0][1], "gradient": 0.03},
     "still much like the original", {}),
    ("not the smallest for IG", {**EX3_RIGHT[0][1], "integrated_gradients": 0.1},
     "already destroyed at std 0.03", {}),
    ("Guided Backprop destroyed", {**EX3_RIGHT[0][1], "guided_backprop": 0.3},
     "still much like the original", {}),
    ("gradient never destroyed", {**EX3_RIGHT[0][1], "gradient": None}, "never destroyed", {}),
    ("a std not on the slider", {**EX3_RIGHT[0][1], "gradient": 0.2},
     "not one of the explorer's noise levels", {}),
    ("a method not in the results", {**EX3_RIGHT[0][1], "smoothgrad": 0.1},
     "not among the methods of your result", {}),
    ("one method only", {"gradient": 0.1}, "no entry for \\['integrated_gradients', "
                                           "'guided_backprop'\\]", {}),
    ("a string as std", {**EX3_RIGHT[0][1], "gradient": "0.1"}, "is not a noise std", {}),
    ("None", None, "should be a dict", {}),
    ("no results", EX3_RIGHT[0][1], "needs results=", {"results": None}),
    ("results of a cascading test", EX3_RIGHT[0][1], "mode='gaussian_noise'",
     {"results": _fake_results(RHO, mode="cascading")}),
    ("relative noise", EX3_RIGHT[0][1], "relative=False",
     {"results": _fake_results(RHO, relative=True)}),
    ("bottom-up order", EX3_RIGHT[0][1], "order='top_down'",
     {"results": _fake_results(RHO, order="bottom_up")}),
    ("the MLP instead of the CNN", EX3_RIGHT[0][1], "model='MnistCNN'",
     {"results": _fake_results(RHO, model="MnistMLP")}),
    ("a method left out of the run", EX3_RIGHT[0][1], "has no maps of \\['guided_backprop'\\]",
     {"results": _fake_results({k: v for k, v in RHO.items() if k != "guided_backprop"})}),
    ("no signed metric", EX3_RIGHT[0][1], "no \\['spearman_diverging'\\] values",
     {"results": _fake_results(RHO, metrics=("spearman_abs",))}),
    ("keys that are not the results' stds", EX3_RIGHT[0][1], "the keys must be the noise levels",
     {"results": {2 * k: v for k, v in RESULTS.items()}}),
    ("results from two models", EX3_RIGHT[0][1], "come from different models",
     {"results": _mixed_models()}),
    ("a list instead of the dict", EX3_RIGHT[0][1], "needs results=",
     {"results": list(RESULTS.values())}),
    ("an image that is not there", EX3_RIGHT[0][1], "image=3 is not one of", {"image": 3}),
    ("an untrained CNN", EX3_RIGHT[0][1], "not the CNN trained on the true labels",
     {"results": _fake_results(RHO, trained=False)}),
]


@pytest.mark.parametrize("answer", [r[1] for r in EX3_RIGHT], ids=[r[0] for r in EX3_RIGHT])
def test_ex3_accepts_answers_in_the_measured_range(answer):
    assert "correct" in check("ch6_ex3", answer, results=RESULTS, image=0)


@pytest.mark.parametrize("answer, match, context", [w[1:] for w in EX3_WRONG],
                         ids=[w[0] for w in EX3_WRONG])
def test_ex3_rejects_wrong_answers_and_says_why(answer, match, context):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex3", answer, **{**EX3_CONTEXT, **context})


def test_ex3_reads_real_results_per_image():
    model, _ = sl.training.trained_mnist_model("cnn", "true", progress=False)
    x = DIGITS[:2]
    stds = [0.001, 0.03, 0.3, 3.0]
    methods = {"gradient": {}, "integrated_gradients": {"n_steps": 2}, "guided_backprop": {}}
    results = {s: sl.model_randomization_test(model, x, methods, mode="gaussian_noise",
                                              std=s, progress=False, cache=False,
                                              metrics=["spearman_diverging"]) for s in stds}
    # the right answer, computed from the maps themselves with numpy
    rho = {m: {} for m in methods}
    for m in methods:
        for s, r in results.items():
            a, b = r.maps[m][0, 1, 0].numpy(), r.maps[m][1, 1, 0].numpy()
            # ties (the black background of a digit) share their average rank, as in the library
            rho[m][s] = scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic
    assert rho["gradient"][0.001] > 0.99
    right = {m: next((s for s in stds if rho[m][s] < 0.3), None) for m in methods}
    assert "correct" in check("ch6_ex3", right, results=results, image=1)
    with pytest.raises(CheckFailed, match="gradient: at std 0.001 its map is still much like"):
        check("ch6_ex3", {**right, "gradient": 0.001}, results=results, image=1)


# ----------------------------------------------------------------------------- ex4

def _fake_sweep(values, images=10, relative=False, model="MnistMLP", drop=(), trained=True):
    """A NoiseSweep whose mean curves are values[(std, seed, method)] (steps 1, 2), on
    ``images`` digits, with results that record the settings of a real sweep."""
    rows = []
    for (s, seed, method), ys in values.items():
        if method in drop:
            continue
        for step, v in enumerate(ys, start=1):
            for image in range(images):
                rows.append({"method": method, "step": step, "layer": f"l{step}",
                             "image": image, "metric": "spearman_diverging", "value": v,
                             "noise_std": s, "seed": seed})
    table = pd.DataFrame(rows)
    methods = [m for m in dict.fromkeys(m for _, _, m in values) if m not in drop]
    results = {}
    for s, seed, _ in values:
        part = table[(table.noise_std == s) & (table.seed == seed)].drop(
            columns=["noise_std", "seed"])
        results[(s, seed)] = _fake_result(part.to_dict("records"), methods, s, model=model,
                                          relative=relative, fingerprint="mlp",
                                          layers=("original", "l1", "l2"), trained=trained)
    return NoiseSweep(table=table, results=results, relative=relative,
                      layers=["original", "l1", "l2"])


VALUES = {
    **{(s, seed, "integrated_gradients"): [0.5 - s, 0.2 - s] for s in (0.1, 0.3) for seed in (0, 1)},
    **{(s, seed, "gradient_x_input"): [0.51 - s, 0.21 - s + 0.002 * seed]
       for s in (0.1, 0.3) for seed in (0, 1)},
    **{(s, seed, "gradient"): [0.7 - s, 0.5 - s] for s in (0.1, 0.3) for seed in (0, 1)},
    **{(s, seed, "smoothgrad"): [0.75 - s, 0.55 - s] for s in (0.1, 0.3) for seed in (0, 1)},
    **{(s, seed, "guided_backprop"): [0.98, 0.9 - s] for s in (0.1, 0.3) for seed in (0, 1)},
}
SWEEP = _fake_sweep(VALUES)
EX4_CONTEXT = {"sweep": SWEEP}

EX4_RIGHT = [
    ("the measured extremes", {"most_sensitive": "integrated_gradients",
                               "least_sensitive": "guided_backprop"}),
    ("a method tied with the most sensitive", {"most_sensitive": "gradient_x_input",
                                               "least_sensitive": "guided_backprop"}),
    ("aliases", {"most_sensitive": "IG", "least_sensitive": "Guided Backprop"}),
]

_RIGHT = EX4_RIGHT[0][1]
EX4_WRONG = [   # (id, answer, expected phrase, context)
    ("the ranking reversed", {"most_sensitive": "guided_backprop",
                              "least_sensitive": "integrated_gradients"},
     "clearly the most sensitive", {}),
    ("a middle method as the least sensitive", {"most_sensitive": "integrated_gradients",
                                                "least_sensitive": "gradient"},
     "clearly the least sensitive", {}),
    ("a method not in the sweep", {"most_sensitive": "gradcam",
                                   "least_sensitive": "guided_backprop"},
     "not among the methods of your result", {}),
    ("the same method twice", {"most_sensitive": "guided_backprop",
                               "least_sensitive": "guided_backprop"}, "both the most and", {}),
    ("a key missing", {"most": "integrated_gradients"}, "keys", {}),
    ("None", None, "should be a dict", {}),
    ("no sweep", _RIGHT, "needs sweep=", {"sweep": None}),
    ("a results dict instead of the sweep", _RIGHT, "needs sweep=",
     {"sweep": SWEEP.results_by_std()}),
    ("relative noise", _RIGHT, "relative noise", {"sweep": _fake_sweep(VALUES, relative=True)}),
    ("one noise level only", _RIGHT, "no noise level \\[0.3\\]",
     {"sweep": _fake_sweep({k: v for k, v in VALUES.items() if k[0] == 0.1})}),
    ("one seed only", _RIGHT, "1 seed",
     {"sweep": _fake_sweep({k: v for k, v in VALUES.items() if k[1] == 0})}),
    ("the CNN instead of the MLP", _RIGHT, "model='MnistMLP'",
     {"sweep": _fake_sweep(VALUES, model="MnistCNN")}),
    ("a method left out of the run", _RIGHT, "has no maps of \\['smoothgrad'\\]",
     {"sweep": _fake_sweep(VALUES, drop=("smoothgrad",))}),
    ("two digits instead of ten", _RIGHT, "holds 2 image",
     {"sweep": _fake_sweep(VALUES, images=2)}),
    ("an untrained MLP", _RIGHT, "not the MLP trained on the true labels",
     {"sweep": _fake_sweep(VALUES, trained=False)}),
]


@pytest.mark.parametrize("answer", [r[1] for r in EX4_RIGHT], ids=[r[0] for r in EX4_RIGHT])
def test_ex4_accepts_the_measured_extremes_and_ties(answer):
    assert "correct" in check("ch6_ex4", answer, sweep=SWEEP)


@pytest.mark.parametrize("answer, match, context", [w[1:] for w in EX4_WRONG],
                         ids=[w[0] for w in EX4_WRONG])
def test_ex4_rejects_wrong_answers_and_says_why(answer, match, context):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex4", answer, **{**EX4_CONTEXT, **context})


# ----------------------------------------------------------------------------- ex5

def concavity_numpy(curve):
    """Right: the signed area between curve and chord (numpy's trapezoid rule), normalized."""
    y = np.asarray(curve, dtype=float)
    x = np.arange(y.size)
    chord = np.interp(x, [0, x[-1]], [y[0], y[-1]])
    area = np.trapezoid(y - chord, x)
    return area / ((x[-1] - 1) * (y[0] - y[-1]) / 2)


def concavity_loop(curve):
    """Right too: a plain loop over the interior points, returning a 0-d tensor."""
    y = torch.as_tensor(curve, dtype=torch.float64)
    L = len(y) - 1
    gap = sum(y[k] - (y[0] + (y[L] - y[0]) * k / L) for k in range(1, L))
    return 2 * gap / ((L - 1) * (y[0] - y[L]))


def concavity_in_place(curve):
    value = concavity_numpy(curve)
    curve -= curve[0]
    return value


EX5_RIGHT = [("numpy trapezoid", concavity_numpy), ("a loop, as a 0-d tensor", concavity_loop)]

EX5_WRONG = [
    ("wrong sign", lambda y: -concavity_numpy(y), "wrong sign"),
    ("half", lambda y: concavity_numpy(y) / 2, "half the right one"),
    ("raw area", lambda y: concavity_numpy(y) * (len(y) - 2) * (y[0] - y[-1]) / 2, "raw area"),
    ("a made-up number", lambda y: 0.0, "should be"),
    ("the library's concavity", lambda y: noise_study.concavity(y),
     "calls sanity_lib.studies.noise"),
    ("changes the curve", concavity_in_place, "changed its argument `curve` in place"),
    ("one value per point", lambda y: y - y.mean(), "returned 7 numbers|returned [0-9]+ numbers"),
    ("returns None", lambda y: None, "torch tensor or a numpy array of numbers"),
    ("returns a string", lambda y: "0.5", "torch tensor or a numpy array of numbers"),
    ("None", None, "function `concavity_index` itself"),
    ("wrong signature", lambda curve, steps: 0.0, "cannot be called as concavity_index"),
    ("raises inside", lambda y: y[100], "raised IndexError"),
]


@pytest.mark.parametrize("answer", [r[1] for r in EX5_RIGHT], ids=[r[0] for r in EX5_RIGHT])
def test_ex5_accepts_right_answers(answer):
    assert "correct" in check("ch6_ex5", answer)


@pytest.mark.parametrize("answer, match", [w[1:] for w in EX5_WRONG],
                         ids=[w[0] for w in EX5_WRONG])
def test_ex5_rejects_wrong_answers_and_says_why(answer, match):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex5", answer)
