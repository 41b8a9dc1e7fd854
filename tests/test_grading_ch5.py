"""The checks of chapter 5's exercise notebook accept right answers and name the usual mistakes.

Right answers are written here independently of sanity_lib: Integrated Gradients by hand (right,
left and midpoint sums), the x * u correlations with numpy draws and scipy, the Sobel magnitude
with a Conv2d, F.conv2d and shifted slices, the edge agreement and its mismatched-image null
with scipy's spearmanr or ranks from argsort. Each exercise has a catalogue of wrong answers (the
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


# ----------------------------------------------------------------------------- ex4

def spearman_rows(a, b):
    """scipy's Spearman of each image's pixels in a with the same image's pixels in b."""
    return np.array([stats.spearmanr(x.ravel(), y.ravel())[0]
                     for x, y in zip(np.asarray(a), np.asarray(b))])


def pearson_rows(a, b):
    return np.array([np.corrcoef(x.ravel(), y.ravel())[0, 1]
                     for x, y in zip(np.asarray(a), np.asarray(b))])


def spearman_by_argsort(a, b):
    """Spearman as the Pearson correlation of ranks from a double argsort, in torch (no ties
    in the check's edge maps, so no averaging of tied ranks is needed)."""
    ra, rb = (t.flatten(1).argsort(1).argsort(1).double() for t in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


def batch_spearman(a, b):
    """One rank correlation over every pixel of the batch, repeated for each image."""
    return np.full(len(a), stats.spearmanr(np.asarray(a).ravel(), np.asarray(b).ravel())[0])


def map_edges(maps):
    return sobel_by_conv(maps.abs()[:, None]).detach()


def image_edges(gray):
    return sobel_by_conv(gray).detach()


def next_image(edges):
    return torch.roll(edges, -1, dims=0)          # row i holds image (i + 1) mod N


def make_edge_excess(corr=spearman_rows, of_map=map_edges, of_image=image_edges,
                     partner=next_image, excess=lambda same, other: same - other,
                     one_image=True):
    """An `edge_excess` built from its parts; each wrong answer below swaps one part."""
    def edge_excess(maps, gray):
        if one_image and maps.shape[0] < 2:
            raise ValueError("the mismatched-image null needs at least two images")
        m, e = of_map(maps), of_image(gray)
        same, other = corr(m, e), corr(m, partner(e))
        return {"same": same, "mismatched": other, "excess": excess(same, other)}
    return edge_excess


def mean_over_other_images(maps, gray):
    if len(maps) < 2:
        raise ValueError("one image has no other image")
    m, e = map_edges(maps), image_edges(gray)
    n = len(maps)
    table = np.array([[stats.spearmanr(m[i].ravel(), e[j].ravel())[0] for j in range(n)]
                      for i in range(n)])
    same = np.diag(table)
    other = (table.sum(1) - same) / (n - 1)
    return {"same": same, "mismatched": other, "excess": same - other}


def as_lists(maps, gray):
    return {k: [float(v) for v in values]
            for k, values in make_edge_excess()(maps, gray).items()}


def shifted_together(maps, gray):
    m, e = map_edges(maps), image_edges(gray)
    same = spearman_rows(m, e)
    other = spearman_rows(next_image(m), next_image(e))
    return {"same": same, "mismatched": other, "excess": same - other}


def by_edge_agreement(maps, gray):
    import sanity_lib as sl

    table = sl.studies.failures.edge_agreement(maps, gray, measures="sobel_edges",
                                               pairing=["same", "mismatched"])
    same, other = (table[table["pairing"] == p]["value"].to_numpy()
                   for p in ("same", "mismatched"))
    return {"same": same, "mismatched": other, "excess": same - other}


def by_library_edge_maps(maps, gray):
    import sanity_lib as sl

    edges = sl.studies.failures.edge_maps
    return make_edge_excess(of_map=lambda m: edges(m.abs(), "sobel"),
                            of_image=lambda g: edges(g, "sobel"))(maps, gray)


def by_skimage_sobel(maps, gray):
    from skimage.filters import sobel

    def sobel_each(batch):
        return np.stack([sobel(x) for x in batch.double().numpy()])

    return make_edge_excess(of_map=lambda m: sobel_each(m.abs()),
                            of_image=lambda g: sobel_each(g[:, 0]),
                            partner=lambda e: np.roll(e, -1, axis=0))(maps, gray)


def changes_maps(maps, gray):
    maps.abs_()
    return make_edge_excess()(maps, gray)


def asserts_two_images(maps, gray):
    assert len(maps) > 1
    return make_edge_excess(one_image=False)(maps, gray)


def without(key):
    def answer(maps, gray):
        out = make_edge_excess()(maps, gray)
        del out[key]
        return out
    return answer


def with_value(key, value):
    def answer(maps, gray):
        return {**make_edge_excess()(maps, gray), key: value(len(maps))}
    return answer


EX4_RIGHT = [
    ("Sobel conv, scipy's spearmanr, image i + 1", make_edge_excess()),
    ("image i - 1 (torch.roll by +1)", make_edge_excess(
        partner=lambda e: torch.roll(e, 1, dims=0))),
    ("null averaged over every other image", mean_over_other_images),
    ("ranks by double argsort, in torch", make_edge_excess(corr=spearman_by_argsort)),
    ("Sobel by shifted slices", make_edge_excess(
        of_map=lambda m: sobel_by_slicing(m.abs()[:, None]), of_image=sobel_by_slicing)),
    ("lists of floats", as_lists),
]

EX4_WRONG = [
    ("|map| against Sobel(image): no edges of the map", make_edge_excess(
        of_map=lambda m: m.abs()), "You correlated \\|map\\| itself"),
    ("edges of the signed map", make_edge_excess(
        of_map=lambda m: sobel_by_conv(m[:, None]).detach()), "Sobel magnitude of the signed map"),
    ("Pearson instead of Spearman", make_edge_excess(corr=pearson_rows), "Pearson"),
    ("map edges against the image itself", make_edge_excess(of_image=lambda g: g[:, 0]),
     "with the image itself"),
    ("one correlation for the whole batch", make_edge_excess(corr=batch_spearman),
     "over the whole batch"),
    ("Sobel padded with zeros", make_edge_excess(
        of_map=lambda m: torch.sqrt((conv_layer("zeros")(m.abs()[:, None]) ** 2).sum(1) / 2),
        of_image=lambda g: torch.sqrt((conv_layer("zeros")(g) ** 2).sum(1) / 2)),
     "pad the border with zeros"),
    ("null against the image's own edges", make_edge_excess(partner=lambda e: e),
     "null compares each map with its own image's edges"),
    ("maps and images shifted together", shifted_together,
     "shifted the maps and the images together"),
    ("null against a random image", make_edge_excess(
        partner=lambda e: torch.rand(e.shape, generator=torch.Generator().manual_seed(0))),
     "'mismatched' values are not the rank correlation"),
    ("one image paired with itself", make_edge_excess(one_image=False), "With one image"),
    ("assert instead of ValueError", asserts_two_images, "raised AssertionError"),
    ("excess with the wrong sign", make_edge_excess(excess=lambda s, o: o - s), "wrong sign"),
    ("unpaired: difference of the means", make_edge_excess(
        excess=lambda s, o: s.mean() - o.mean()), "unpaired difference of means"),
    ("unpaired: the mean of the means, per image", make_edge_excess(
        excess=lambda s, o: np.full(len(s), s.mean() - o.mean())), "difference of the two means"),
    ("unpaired: each image minus the mean null", make_edge_excess(
        excess=lambda s, o: s - o.mean()), "\\*mean\\* of the null"),
    ("excess as a ratio", make_edge_excess(excess=lambda s, o: s / o), "'excess' is not same"),
    ("made-up numbers", lambda m, g: {k: np.full(len(m), v) for k, v in
                                      (("same", 0.4), ("mismatched", 0.1), ("excess", 0.3))},
     "'same' values are not the rank correlation"),
    ("the library's edge_agreement", by_edge_agreement, "calls sanity_lib.studies.failures"),
    ("the library's edge_maps", by_library_edge_maps, "calls sanity_lib.studies.failures"),
    ("scikit-image's sobel", by_skimage_sobel, "calls skimage.filters"),
    ("missing key", without("excess"), "no key 'excess'"),
    ("a tuple, not a dict", lambda m, g: tuple(make_edge_excess()(m, g).values()),
     "should return a dict"),
    ("one value short", with_value("same", lambda n: np.zeros(n - 1)), "one per image"),
    ("NaN", with_value("mismatched", lambda n: np.full(n, np.nan)), "NaN or inf"),
    ("a string", with_value("excess", lambda n: "positive"),
     "torch tensor or a numpy array of numbers"),
    ("changes maps in place", changes_maps, "changed its argument `maps` in place"),
    ("raises inside", lambda m, g: torch.cat([m, g]), "raised RuntimeError"),
    ("None", None, "function `edge_excess` itself"),
    ("a string as the answer", "edge_excess", "function `edge_excess` itself"),
    ("a tensor as the answer", torch.zeros(3), "function `edge_excess` itself"),
    ("wrong signature", lambda maps: maps, "cannot be called as edge_excess"),
]


@pytest.mark.parametrize("answer", [a for _, a in EX4_RIGHT], ids=[i for i, _ in EX4_RIGHT])
def test_ex4_accepts_right_edge_excess(answer):
    assert "correct" in check("ch5_ex4", answer)


@pytest.mark.parametrize("answer, message", [w[1:] for w in EX4_WRONG],
                         ids=[w[0] for w in EX4_WRONG])
def test_ex4_rejects_wrong_answers_and_says_why(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch5_ex4", answer)


def prepare_ex2(factory, context):
    """For tools that replay the catalogue: the answer built from an independent right one."""
    x = grey_seen_by_effnet()
    return factory({"measured": x_times_random(x), "predicted": predicted(x)}), context
