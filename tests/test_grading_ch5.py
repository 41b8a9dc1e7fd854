"""The checks of chapter 5's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of sanity_lib: Integrated Gradients by hand (right,
left and midpoint sums), the x * u correlations with numpy draws and scipy, the Sobel magnitude
with a Conv2d, F.conv2d and shifted slices. Each exercise has a catalogue of wrong answers (the
usual mistakes, answers that call the library instead of doing the work, made-up numbers, bad
input), each of which must fail with a message that says what is wrong.
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


def ig_fixed_steps(model, x, baseline, n_steps):
    return ig_right_riemann(model, x, baseline, 64)          # ignores n_steps


def ig_sl_explain(model, x, baseline, n_steps):
    import sanity_lib as sl

    return sl.saliency.explain(model, x, "integrated_gradients", target=0, baseline=baseline,
                               n_steps=n_steps)


def ig_in_place(model, x, baseline, n_steps):
    out = ig_right_riemann(model, x, baseline, n_steps)
    x.sub_(baseline)
    return out


def ig_raises(model, x, baseline, n_steps):
    raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (5x28 and 784x32)")


def ig_changes_model(model, x, baseline, n_steps):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.0)
            p.add_(1.0)
    return ig_right_riemann(model, x, baseline, n_steps)


EX1_RIGHT = [
    ("right Riemann sum, one point at a time", ig_right_riemann),
    ("midpoint rule, all points in one batch", ig_batched_midpoint),
    ("left Riemann sum", lambda m, x, b, n: (x - b) * sum(
        gradients(m, b + (k / n) * (x - b)) for k in range(n)) / n),
    ("numpy array of the right map", lambda m, x, b, n: ig_right_riemann(m, x, b, n).numpy()),
]

EX1_WRONG = [
    ("average gradient only", mean_path_gradient, "forgot to multiply"),
    ("times x instead of x - x'", lambda m, x, b, n: x * mean_path_gradient(m, x, b, n),
     "multiplied by x instead of"),
    ("summed, not averaged", lambda m, x, b, n: n * ig_right_riemann(m, x, b, n),
     "summed the gradients"),
    ("gradient at x only", lambda m, x, b, n: (x - b) * gradients(m, x), "gradient at x only"),
    ("wrong sign", lambda m, x, b, n: -ig_right_riemann(m, x, b, n), "wrong sign"),
    ("path from 0", lambda m, x, b, n: (x - b) * mean_path_gradient(m, x, torch.zeros_like(x), n),
     "path starts at 0"),
    ("Captum's IntegratedGradients", ig_captum, "calls captum"),
    ("the library's explain", ig_sl_explain, "calls sanity_lib.saliency"),
    ("ignores n_steps", ig_fixed_steps, "ignores its `n_steps`"),
    ("made-up map", lambda m, x, b, n: torch.rand_like(x), "differ from Integrated Gradients"),
    ("changes x in place", ig_in_place, "changed its argument `x` in place"),
    ("changes the model", ig_changes_model, "changed its argument `model` in place"),
    ("wrong shape", lambda m, x, b, n: ig_right_riemann(m, x, b, n).sum(1),
     "shape of the input"),
    ("not a function", torch.zeros(3), "function `integrated_gradients` itself"),
    ("None", None, "function `integrated_gradients` itself"),
    ("a string", "integrated_gradients", "function `integrated_gradients` itself"),
    ("wrong signature", lambda model, x: x, "cannot be called as integrated_gradients"),
    ("raises inside", ig_raises, "raised RuntimeError"),
    ("returns None", lambda m, x, b, n: None, "returned NoneType"),
]


@pytest.mark.parametrize("answer", [a for _, a in EX1_RIGHT], ids=[i for i, _ in EX1_RIGHT])
def test_ex1_accepts_right_integrated_gradients(answer):
    assert "correct" in check("ch5_ex1", answer)


@pytest.mark.parametrize("answer, message", [w[1:] for w in EX1_WRONG],
                         ids=[w[0] for w in EX1_WRONG])
def test_ex1_rejects_wrong_answers_and_says_why(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch5_ex1", answer)


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


def _abs_x():
    return np.abs(grey_seen_by_effnet().reshape(5, -1))


def _logs():
    return np.log(_abs_x())


EX2_WRONG = [   # (id, factory of the answer from the right one, expected phrase)
    ("signed maps", lambda r: {**r, "measured": np.zeros(5) + 0.001}, "compared the signed maps"),
    ("pixels in [0, 1]", lambda r: {**r, "measured": x_times_random(
        data.sample_images(112).double().mean(1).numpy(), n_pairs=3)}, "pixels in \\[0, 1\\]"),
    ("Pearson", lambda r: {**r, "measured": x_times_random(grey_seen_by_effnet(), n_pairs=3,
                                                           how="pearson")}, "Pearson"),
    ("prediction copied as the measurement",
     lambda r: {"measured": r["predicted"], "predicted": r["predicted"]},
     "are the prediction, not a measurement"),
    ("made-up plausible measurement", lambda r: {**r, "measured": r["measured"] + 0.03},
     "are not what x \\* u"),
    ("standard deviations", lambda r: {**r, "predicted": _logs().std(1) / (
        _logs().std(1) + math.pi / math.sqrt(8))}, "standard deviations"),
    ("variance of |x|", lambda r: {**r, "predicted": _abs_x().var(1) / (
        _abs_x().var(1) + math.pi ** 2 / 8)}, "variance of \\|x\\|, not of log"),
    ("share of the noise", lambda r: {**r, "predicted": 1 - r["predicted"]}, "share of the noise"),
    ("made-up prediction", lambda r: {**r, "predicted": r["predicted"] + 0.04}, "Your predictions"),
    ("missing key", lambda r: {"measured": r["measured"]}, "'predicted' is missing"),
    ("one number", lambda r: {**r, "measured": r["measured"].mean()}, "one number per photo"),
    ("infinite", lambda r: {**r, "predicted": np.full(5, -np.inf)}, "NaN or inf"),
    ("None", lambda r: None, "should be a dict"),
    ("a string", lambda r: {**r, "measured": "0.5"}, "torch tensor or a numpy array of numbers"),
]


@pytest.mark.parametrize("factory, message", [w[1:] for w in EX2_WRONG],
                         ids=[w[0] for w in EX2_WRONG])
def test_ex2_rejects_wrong_answers_and_says_why(ex2_right, factory, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch5_ex2", factory(ex2_right))


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


def sobel_by_slicing(gray):
    """The same computation without a Conv2d: shifted copies of the edge-padded image."""
    g = torch.nn.functional.pad(gray[:, 0:1], (1, 1, 1, 1), mode="replicate")[:, 0]
    gx = sum(SOBEL[i, j] * g[:, i:i + gray.shape[2], j:j + gray.shape[3]]
             for i in range(3) for j in range(3))
    gy = sum(SOBEL.T[i, j] * g[:, i:i + gray.shape[2], j:j + gray.shape[3]]
             for i in range(3) for j in range(3))
    return torch.sqrt((gx ** 2 + gy ** 2) / 2) / 4


def sobel_by_functional(gray):
    k = torch.stack([SOBEL, SOBEL.T])[:, None]
    padded = torch.nn.functional.pad(gray, (1, 1, 1, 1), mode="replicate")
    g = torch.nn.functional.conv2d(padded, k)
    return torch.sqrt((g ** 2).sum(1) / 2) / 4


def sobel_by_scipy(gray):
    from scipy import ndimage

    return np.stack([np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1)) / (4 * math.sqrt(2))
                     for g in gray[:, 0].double().numpy()])


def sobel_by_library(gray):
    import sanity_lib as sl

    return sl.studies.failures.edge_maps(gray, "sobel")


def sobel_in_place(gray):
    out = sobel_by_conv(gray)
    gray.mul_(2.0)
    return out


def sobel_no_padding(gray):
    conv = nn.Conv2d(1, 2, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([SOBEL, SOBEL.T])[:, None])
    return torch.sqrt((conv(gray) ** 2).sum(1) / 2) / 4


EX3_RIGHT = [
    ("nn.Conv2d with padding_mode='replicate'", sobel_by_conv),
    ("F.conv2d on an edge-padded image", sobel_by_functional),
    ("shifted slices, no convolution layer", sobel_by_slicing),
    ("N x 1 x H x W numpy", lambda g: sobel_by_conv(g)[:, None].numpy()),
]

EX3_WRONG = [
    ("L2 not rescaled", lambda g: torch.sqrt((conv_layer()(g) ** 2).sum(1)),
     "4 sqrt\\(2\\) = 5.66 times too large"),
    ("missing / 2", lambda g: torch.sqrt((conv_layer()(g) ** 2).sum(1)) / 4,
     "sqrt\\(2\\) times too large"),
    ("missing / 4", lambda g: torch.sqrt((conv_layer()(g) ** 2).sum(1) / 2), "4 times too large"),
    ("L1 magnitude", lambda g: conv_layer()(g).abs().sum(1) / (4 * math.sqrt(2)),
     "L1 magnitude"),
    ("one kernel", lambda g: conv_layer(kernels=(SOBEL,))(g).abs()[:, 0] / (4 * math.sqrt(2)),
     "only one kernel"),
    ("zero padding", lambda g: torch.sqrt((conv_layer("zeros")(g) ** 2).sum(1) / 2) / 4,
     "padded with zeros"),
    ("torch's reflect padding", lambda g: torch.sqrt((conv_layer("reflect")(g) ** 2).sum(1) / 2)
     / 4, "torch's padding_mode='reflect' mirrors around the edge pixel and skips it"),
    ("circular padding", lambda g: torch.sqrt((conv_layer("circular")(g) ** 2).sum(1) / 2) / 4,
     "'circular' wraps"),
    ("no padding", sobel_no_padding, "padding=1"),
    ("skimage.filters.sobel", sobel_by_skimage, "calls skimage.filters"),
    ("scipy.ndimage.sobel", sobel_by_scipy, "calls scipy.ndimage"),
    ("the library's edge maps", sobel_by_library, "calls sanity_lib.studies.failures"),
    ("made-up map", lambda g: torch.rand(g.shape[0], g.shape[2], g.shape[3]),
     "differs from skimage.filters.sobel"),
    ("changes its input", sobel_in_place, "changed its argument `gray` in place"),
    ("None", None, "function `sobel_magnitude` itself"),
    ("a tensor", torch.zeros(2, 3), "function `sobel_magnitude` itself"),
    ("wrong signature", lambda gray, kernel: gray, "cannot be called as sobel_magnitude"),
    ("raises inside", lambda g: g[:, 0] @ torch.ones(3), "raised RuntimeError"),
    ("returns a string", lambda g: "edges", "returned str"),
]


@pytest.mark.parametrize("answer", [a for _, a in EX3_RIGHT], ids=[i for i, _ in EX3_RIGHT])
def test_ex3_accepts_right_sobel_magnitudes(answer):
    assert "correct" in check("ch5_ex3", answer)


@pytest.mark.parametrize("answer, message", [w[1:] for w in EX3_WRONG],
                         ids=[w[0] for w in EX3_WRONG])
def test_ex3_rejects_wrong_answers_and_says_why(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch5_ex3", answer)


def prepare_ex2(factory, context):
    """For tools that replay the catalogue: the answer built from an independent right one."""
    x = grey_seen_by_effnet()
    return factory({"measured": x_times_random(x), "predicted": predicted(x)}), context
