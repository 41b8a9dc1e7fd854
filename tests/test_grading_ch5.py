"""The checks of chapter 5's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of sanity_lib: Integrated Gradients by hand and by
Captum, the x * u correlations with numpy draws and scipy, the Sobel magnitude with a Conv2d and
with scikit-image.
"""
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from sanity_lib import data
from sanity_lib.course.grading import CheckFailed, check

SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- ex1

def gradients(model, points):
    points = points.detach().requires_grad_(True)
    return torch.autograd.grad(model(points)[:, 0].sum(), points)[0]


def mean_path_gradient(model, x, baseline, n_steps):
    return sum(gradients(model, baseline + (k / n_steps) * (x - baseline))
               for k in range(1, n_steps + 1)) / n_steps


def ig_right_riemann(model, x, baseline, n_steps):
    return (x - baseline) * mean_path_gradient(model, x, baseline, n_steps)


def ig_batched_midpoint(model, x, baseline, n_steps):
    alphas = (torch.arange(n_steps) + 0.5) / n_steps
    path = baseline[None] + alphas.view(-1, 1, 1, 1, 1) * (x - baseline)[None]
    grads = gradients(model, path.reshape(-1, *x.shape[1:])).view(n_steps, *x.shape)
    return (x - baseline) * grads.mean(0)


def ig_captum(model, x, baseline, n_steps):
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(x, baselines=baseline, target=0,
                                                n_steps=n_steps, method="riemann_left")


@pytest.mark.parametrize("answer", [ig_right_riemann, ig_batched_midpoint, ig_captum])
def test_ex1_accepts_right_integrated_gradients(answer):
    assert "correct" in check("ch5_ex1", answer)


@pytest.mark.parametrize("answer, message", [
    (mean_path_gradient, "forgot to multiply"),
    (lambda m, x, b, n: x * mean_path_gradient(m, x, b, n), "multiplied by x instead of"),
    (lambda m, x, b, n: n * ig_right_riemann(m, x, b, n), "summed the gradients"),
    (lambda m, x, b, n: (x - b) * gradients(m, x), "gradient at x only"),
    (lambda m, x, b, n: -ig_right_riemann(m, x, b, n), "wrong sign"),
    (lambda m, x, b, n: (x - b) * mean_path_gradient(m, x, torch.zeros_like(x), n),
     "path starts at 0"),
])
def test_ex1_names_the_usual_mistakes(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch5_ex1", answer)


def test_ex1_rejects_a_wrong_shape_and_a_non_function():
    with pytest.raises(CheckFailed, match="shape of the input"):
        check("ch5_ex1", lambda m, x, b, n: ig_right_riemann(m, x, b, n).sum(1))
    with pytest.raises(CheckFailed, match="function `integrated_gradients` itself"):
        check("ch5_ex1", torch.zeros(3))


def test_ex1_rejects_changing_the_input_in_place():
    def in_place(model, x, baseline, n_steps):
        out = ig_right_riemann(model, x, baseline, n_steps)
        x.sub_(baseline)
        return out

    with pytest.raises(CheckFailed, match="changed x or the baseline in place"):
        check("ch5_ex1", in_place)


# ----------------------------------------------------------------------------- ex2

def grey_seen_by_effnet():
    photos = data.sample_images(112).double()
    return ((photos * 255 - 127) / 128).mean(1).numpy()       # N x H x W, EfficientNet's input


def x_times_random(x, n_pairs=5, seed=11, how="spearman"):
    rng = np.random.default_rng(seed)
    values = np.zeros(x.shape[0])
    for _ in range(n_pairs):
        for i, img in enumerate(x):
            u, v = rng.standard_normal(img.shape), rng.standard_normal(img.shape)
            a, b = np.abs(img * u).ravel(), np.abs(img * v).ravel()
            if how == "spearman":
                values[i] += stats.spearmanr(a, b)[0] / n_pairs
            else:
                values[i] += stats.pearsonr(a, b)[0] / n_pairs
    return values


def predicted(x):
    logs = np.log(np.abs(x.reshape(x.shape[0], -1)))
    u = np.random.default_rng(0).standard_normal(1_000_000)
    return logs.var(1) / (logs.var(1) + np.log(np.abs(u)).var())


@pytest.fixture(scope="module")
def ex2_right():
    x = grey_seen_by_effnet()
    return {"measured": x_times_random(x), "predicted": predicted(x)}


def test_ex2_accepts_an_independent_computation(ex2_right):
    assert "correct" in check("ch5_ex2", ex2_right)
    as_tensors = {k: torch.tensor(v) for k, v in ex2_right.items()}
    assert "correct" in check("ch5_ex2", as_tensors)


def test_ex2_the_prediction_explains_the_measurement(ex2_right):
    """The point of the exercise: the log-variance ratio predicts the correlation."""
    np.testing.assert_allclose(ex2_right["measured"], ex2_right["predicted"], atol=0.08)


def test_ex2_names_the_usual_mistakes(ex2_right):
    x = grey_seen_by_effnet()
    signed = {**ex2_right, "measured": np.zeros(5) + 0.001}
    with pytest.raises(CheckFailed, match="compared the signed maps"):
        check("ch5_ex2", signed)
    pixels = data.sample_images(112).double().mean(1).numpy()
    with pytest.raises(CheckFailed, match="pixels in \\[0, 1\\]"):
        check("ch5_ex2", {**ex2_right, "measured": x_times_random(pixels, n_pairs=3)})
    with pytest.raises(CheckFailed, match="Pearson"):
        check("ch5_ex2", {**ex2_right, "measured": x_times_random(x, n_pairs=3, how="pearson")})
    logs = np.log(np.abs(x.reshape(5, -1)))
    with pytest.raises(CheckFailed, match="standard deviations"):
        check("ch5_ex2", {**ex2_right,
                          "predicted": logs.std(1) / (logs.std(1) + math.pi / math.sqrt(8))})
    with pytest.raises(CheckFailed, match="variance of \\|x\\|, not of log"):
        a = np.abs(x.reshape(5, -1))
        check("ch5_ex2", {**ex2_right, "predicted": a.var(1) / (a.var(1) + math.pi ** 2 / 8)})
    with pytest.raises(CheckFailed, match="share of the noise"):
        check("ch5_ex2", {**ex2_right, "predicted": 1 - ex2_right["predicted"]})


def test_ex2_rejects_malformed_answers(ex2_right):
    with pytest.raises(CheckFailed, match="'predicted' is missing"):
        check("ch5_ex2", {"measured": ex2_right["measured"]})
    with pytest.raises(CheckFailed, match="one number per photo"):
        check("ch5_ex2", {**ex2_right, "measured": ex2_right["measured"].mean()})
    with pytest.raises(CheckFailed, match="NaN or inf"):
        check("ch5_ex2", {**ex2_right, "predicted": np.full(5, -np.inf)})


# ----------------------------------------------------------------------------- ex3

def conv_layer(padding_mode="replicate", kernels=(SOBEL, SOBEL.T)):
    conv = nn.Conv2d(1, len(kernels), 3, padding=1, bias=False, padding_mode=padding_mode)
    with torch.no_grad():
        conv.weight.copy_(torch.stack(kernels)[:, None])
    return conv


def sobel_by_conv(gray):
    g = conv_layer()(gray)
    return torch.sqrt((g ** 2).sum(1) / 2) / 4


def sobel_by_skimage(gray):
    from skimage.filters import sobel

    return np.stack([sobel(g) for g in gray[:, 0].numpy()])[:, None]   # N x 1 x H x W is fine


@pytest.mark.parametrize("answer", [sobel_by_conv, sobel_by_skimage])
def test_ex3_accepts_right_sobel_magnitudes(answer):
    assert "correct" in check("ch5_ex3", answer)


@pytest.mark.parametrize("answer, message", [
    (lambda g: torch.sqrt((conv_layer()(g) ** 2).sum(1)), "4 sqrt\\(2\\) = 5.66 times too large"),
    (lambda g: torch.sqrt((conv_layer()(g) ** 2).sum(1)) / 4, "sqrt\\(2\\) times too large"),
    (lambda g: torch.sqrt((conv_layer()(g) ** 2).sum(1) / 2), "4 times too large"),
    (lambda g: conv_layer()(g).abs().sum(1) / (4 * math.sqrt(2)), "L1 magnitude"),
    (lambda g: conv_layer(kernels=(SOBEL,))(g).abs()[:, 0] / (4 * math.sqrt(2)),
     "only one kernel"),
    (lambda g: torch.sqrt((conv_layer("zeros")(g) ** 2).sum(1) / 2) / 4, "padded with zeros"),
])
def test_ex3_names_the_usual_mistakes(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch5_ex3", answer)


def test_ex3_rejects_a_wrong_size():
    no_padding = nn.Conv2d(1, 2, 3, bias=False)
    with torch.no_grad():
        no_padding.weight.copy_(torch.stack([SOBEL, SOBEL.T])[:, None])
    with pytest.raises(CheckFailed, match="padding=1"):
        check("ch5_ex3", lambda g: torch.sqrt((no_padding(g) ** 2).sum(1) / 2) / 4)
