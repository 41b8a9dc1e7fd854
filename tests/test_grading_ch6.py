"""The checks of chapter 6's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of the library (plain torch and numpy), so a
check that only agreed with ``sanity_lib.randomization`` would not pass them unless the
library is right too. ex3 and ex4 are fed measurements with known values.
"""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib.course.grading import CheckFailed, check
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


def test_ex1_accepts_the_library():
    def with_library(model, layer, std, seed=0):
        out = copy.deepcopy(model)
        sl.randomization.add_gaussian_noise(out.get_submodule(layer), std, seed=seed)
        return out

    assert "correct" in check("ch6_ex1", with_library)


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


@pytest.mark.parametrize("answer, match", [
    (_noise_with(lambda p, s, g: p * (1 + s * torch.randn(p.shape, generator=g))), "multiplicative"),
    (mutates, "changed the model it was given"),
    (all_layers, "outside the layer"),
    (weights_only, "biases included"),
    (_noise_with(lambda p, s, g: p + s * p.std() * torch.randn(p.shape, generator=g)), "relative"),
    (_noise_with(lambda p, s, g: p + s ** 0.5 * torch.randn(p.shape, generator=g)), "variance"),
    (_noise_with(lambda p, s, g: p + s * 3 ** 0.5 * (2 * torch.rand(p.shape, generator=g) - 1)),
     "Gaussian"),
    (unseeded, "same seed gave different noise"),
])
def test_ex1_rejects_typical_mistakes(answer, match):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex1", answer)


def test_ex1_rejects_what_is_not_a_function():
    with pytest.raises(CheckFailed, match="function itself"):
        check("ch6_ex1", 0.1)


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


@pytest.mark.parametrize("answer, match", [
    (noisy_copy, "absolute noise"),
    (pooled, "pooled"),
    (_noise_with(lambda p, s, g: p * (1 + s * torch.randn(p.shape, generator=g))), "multiplicative"),
    (_noise_with(lambda p, s, g: p + s * p.pow(2).mean().sqrt() * torch.randn(p.shape, generator=g)),
     "root mean square"),
    (_noise_with(lambda p, s, g: p + s * p.abs().max() * torch.randn(p.shape, generator=g)),
     "largest absolute"),
])
def test_ex2_rejects_typical_mistakes(answer, match):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex2", answer)


# ----------------------------------------------------------------------------- ex3

def _fake_results(rho):
    """{std: SanityCheckResult} whose step-1 signed correlation of image 0 is rho[method][std]."""
    stds = sorted(next(iter(rho.values())))
    out = {}
    for s in stds:
        rows = []
        for method, values in rho.items():
            for step, value in ((1, values[s]), (2, values[s] / 2)):
                rows.append({"method": method, "step": step, "layer": ["", "logits", "fc1"][step],
                             "image": 0, "metric": "spearman_diverging", "value": value})
        out[s] = sl.SanityCheckResult(
            table=pd.DataFrame(rows), maps={}, layers=["original", "logits", "fc1"],
            noise_floor={"spearman_diverging": 0.0}, targets=torch.zeros(3, 1, dtype=torch.long),
            settings={"methods": list(rho), "mode": "gaussian_noise", "std": s})
    return out


RHO = {"gradient": {0.01: 0.98, 0.03: 0.7, 0.1: 0.45, 0.3: 0.1},
       "integrated_gradients": {0.01: 0.95, 0.03: 0.2, 0.1: 0.1, 0.3: 0.05},
       "guided_backprop": {0.01: 0.99, 0.03: 0.97, 0.1: 0.9, 0.3: 0.85}}


@pytest.mark.parametrize("answer", [
    {"gradient": 0.1, "integrated_gradients": 0.03, "guided_backprop": None},
    {"gradient": 0.3, "guided_backprop": None},   # 0.45 at 0.1 is borderline: both accepted
])
def test_ex3_accepts_answers_in_the_measured_range(answer):
    assert "correct" in check("ch6_ex3", answer, results=_fake_results(RHO), image=0)


@pytest.mark.parametrize("answer, match", [
    ({"gradient": 0.03}, "still much like the original"),
    ({"integrated_gradients": 0.1}, "already destroyed at std 0.03"),
    ({"guided_backprop": 0.3}, "still much like the original"),
    ({"gradient": None}, "never destroyed"),
    ({"gradient": 0.2}, "not one of the explorer's noise levels"),
    ({"smoothgrad": 0.1}, "no maps of"),
])
def test_ex3_rejects_answers_outside_the_measured_range(answer, match):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex3", answer, results=_fake_results(RHO), image=0)


def test_ex3_reads_real_results_per_image():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    stds = [0.001, 0.03, 0.3, 3.0]
    results = {s: sl.model_randomization_test(model, x, ["gradient"], mode="gaussian_noise",
                                              std=s, progress=False,
                                              metrics=["spearman_diverging"]) for s in stds}
    # the right answer, computed from the maps themselves with numpy
    rho = {}
    for s, r in results.items():
        a, b = r.maps["gradient"][0, 1, 0].numpy(), r.maps["gradient"][1, 1, 0].numpy()
        ra, rb = a.ravel().argsort().argsort(), b.ravel().argsort().argsort()
        rho[s] = np.corrcoef(ra, rb)[0, 1]
    assert rho[0.001] > 0.99
    first = next(s for s in stds if rho[s] < 0.45)
    assert "correct" in check("ch6_ex3", {"gradient": first}, results=results, image=1)
    with pytest.raises(CheckFailed, match="still much like"):
        check("ch6_ex3", {"gradient": 0.001}, results=results, image=1)


def test_ex3_needs_the_results():
    with pytest.raises(ValueError, match="results="):
        check("ch6_ex3", {"gradient": 0.1})


# ----------------------------------------------------------------------------- ex4

def _fake_sweep(values):
    """A NoiseSweep whose mean curves are values[(std, seed, method)] (steps 1, 2)."""
    rows = []
    for (s, seed, method), ys in values.items():
        for step, v in enumerate(ys, start=1):
            rows.append({"method": method, "step": step, "layer": f"l{step}", "image": 0,
                         "metric": "spearman_diverging", "value": v, "noise_std": s,
                         "seed": seed})
    results = {(s, seed): None for s, seed, _ in values}
    return NoiseSweep(table=pd.DataFrame(rows), results=results, relative=False,
                      layers=["original", "l1", "l2"])


SWEEP = _fake_sweep({
    **{(s, seed, "integrated_gradients"): [0.5 - s, 0.2 - s] for s in (0.1, 0.3) for seed in (0, 1)},
    **{(s, seed, "gradient_x_input"): [0.51 - s, 0.21 - s + 0.002 * seed]
       for s in (0.1, 0.3) for seed in (0, 1)},
    **{(s, seed, "gradient"): [0.7 - s, 0.5 - s] for s in (0.1, 0.3) for seed in (0, 1)},
    **{(s, seed, "guided_backprop"): [0.98, 0.9 - s] for s in (0.1, 0.3) for seed in (0, 1)},
})


@pytest.mark.parametrize("most", ["integrated_gradients", "gradient_x_input"])
def test_ex4_accepts_the_measured_extremes_and_ties(most):
    answer = {"most_sensitive": most, "least_sensitive": "guided_backprop"}
    assert "correct" in check("ch6_ex4", answer, sweep=SWEEP)


@pytest.mark.parametrize("answer, match", [
    ({"most_sensitive": "guided_backprop", "least_sensitive": "integrated_gradients"},
     "clearly the most sensitive"),
    ({"most_sensitive": "integrated_gradients", "least_sensitive": "gradient"},
     "clearly the least sensitive"),
    ({"most_sensitive": "ig", "least_sensitive": "guided_backprop"}, "not one of the sweep"),
    ({"most": "integrated_gradients"}, "keys"),
])
def test_ex4_rejects_wrong_readings(answer, match):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex4", answer, sweep=SWEEP)


# ----------------------------------------------------------------------------- ex5

def concavity_numpy(curve):
    """Right: the signed area between curve and chord (numpy's trapezoid rule), normalized."""
    y = np.asarray(curve, dtype=float)
    x = np.arange(y.size)
    chord = np.interp(x, [0, x[-1]], [y[0], y[-1]])
    area = np.trapezoid(y - chord, x)
    return area / ((x[-1] - 1) * (y[0] - y[-1]) / 2)


def test_ex5_accepts_a_right_answer():
    assert "correct" in check("ch6_ex5", concavity_numpy)


@pytest.mark.parametrize("answer, match", [
    (lambda y: -concavity_numpy(y), "wrong sign"),
    (lambda y: concavity_numpy(y) / 2, "half the right one"),
    (lambda y: concavity_numpy(y) * (len(y) - 2) * (y[0] - y[-1]) / 2, "raw area"),
    (lambda y: 0.0, "should be"),
])
def test_ex5_rejects_typical_mistakes(answer, match):
    with pytest.raises(CheckFailed, match=match):
        check("ch6_ex5", answer)
