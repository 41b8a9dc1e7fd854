"""sanity_lib.studies.failures: edge detectors, edge similarity and the input-times-random analysis.

Edge maps are checked against scipy / scikit-image computed here, independently; the
similarity table against scipy's Spearman correlation; and the paper's section 5 findings
(input times noise stays correlated, a random conv layer's gradient resembles edges on
MNIST) against their noise floors.
"""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage, stats  # noqa: E402
from skimage.feature import canny  # noqa: E402

import sanity_lib as sl  # noqa: E402
from sanity_lib import analysis, data, models, saliency, similarity  # noqa: E402

SOBEL_KERNEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def photos():
    return data.sample_images(48, names=["chelsea", "coffee", "rocket"])


@pytest.fixture(scope="module")
def digits():
    return data.load_mnist("test")[0][:40]


def scipy_sobel_parts(gray, mode):
    """Responses to the two Sobel kernels, by scipy.ndimage.correlate."""
    gx = np.stack([ndimage.correlate(g, SOBEL_KERNEL, mode=mode) for g in gray])
    gy = np.stack([ndimage.correlate(g, SOBEL_KERNEL.T, mode=mode) for g in gray])
    return gx, gy


# ----------------------------------------------------------------------------- edge maps

def test_sobel_is_the_documented_magnitude_of_the_grey_image(photos):
    gray = photos.double().mean(1).numpy()
    gx, gy = scipy_sobel_parts(gray, mode="reflect")  # scipy's reflect repeats the edge pixel
    expected = np.sqrt((gx ** 2 + gy ** 2) / 2) / 4
    out = analysis.edge_maps(photos, "sobel")
    assert out.shape == (3, 48, 48) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_sobel_conv_is_the_l1_sobel_magnitude_with_replicated_border(photos):
    gray = photos.double().mean(1).numpy()
    gx, gy = scipy_sobel_parts(gray, mode="nearest")  # 'nearest' = torch's 'replicate'
    out = analysis.edge_maps(photos, "sobel_conv").numpy()
    np.testing.assert_allclose(out, np.abs(gx) + np.abs(gy), atol=1e-5)
    # between 4 sqrt(2) and 8 times skimage's L2 magnitude, as documented
    sobel = analysis.edge_maps(photos, "sobel").numpy()
    ratio = out[sobel > 1e-6] / sobel[sobel > 1e-6]
    assert ratio.min() >= 4 * np.sqrt(2) - 1e-6 and ratio.max() <= 8 + 1e-6


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_canny_matches_scikit_image_on_the_grey_image(photos, sigma):
    gray = photos.double().mean(1).numpy()
    expected = np.stack([canny(g, sigma=sigma) for g in gray]).astype(float)
    out = analysis.edge_maps(photos, "canny", sigma=sigma)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert set(np.unique(out.numpy())) <= {0.0, 1.0} and out.sum() > 0


def test_edge_maps_accept_gray_batches_and_numpy(digits):
    as_3d = analysis.edge_maps(digits[:, 0].numpy(), "sobel")
    as_4d = analysis.edge_maps(digits, "sobel")
    torch.testing.assert_close(as_3d, as_4d)


def test_edge_maps_reject_bad_arguments(digits):
    with pytest.raises(ValueError, match="kind=.*prewitt.*not known"):
        analysis.edge_maps(digits, "prewitt")
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        analysis.edge_maps(digits, "canny", sigma=0)
    with pytest.raises(TypeError, match="images must be a torch tensor or a numpy array"):
        analysis.edge_maps(digits.tolist(), "sobel")
    with pytest.raises(ValueError, match="N x C x H x W or N x H x W"):
        analysis.edge_maps(digits[0, 0], "sobel")
    bad = digits[:2].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        analysis.edge_maps(bad, "sobel")


# ----------------------------------------------------------------------------- similarity

def test_edge_similarity_is_spearman_of_the_normalized_maps(photos):
    maps = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * photos
    table = analysis.edge_similarity({"m": maps}, photos, detectors=("sobel", "canny"),
                                     metrics=("spearman_abs", "spearman_diverging"))
    assert list(table.columns) == ["method", "detector", "metric", "image", "value"]
    assert len(table) == 2 * 2 * 3
    gray = photos.double().mean(1).numpy()
    gx, gy = scipy_sobel_parts(gray, mode="reflect")
    sobel = np.sqrt((gx ** 2 + gy ** 2) / 2) / 4
    edges = {"sobel": sobel, "canny": np.stack([canny(g) for g in gray]).astype(float)}
    m = maps.double().numpy()
    for mode, reduced in [("abs", np.abs(m).sum(1)), ("diverging", m.sum(1))]:
        normalized_maps = similarity.normalize(reduced, mode).numpy()
        for detector, edge in edges.items():
            normalized_edges = similarity.normalize(edge, mode).numpy()
            expected = [stats.spearmanr(a.ravel(), b.ravel())[0]
                        for a, b in zip(normalized_maps, normalized_edges)]
            got = table[(table["detector"] == detector)
                        & (table["metric"] == f"spearman_{mode}")]
            np.testing.assert_allclose(got.sort_values("image")["value"], expected, atol=1e-10)


def test_edge_similarity_of_an_edge_map_with_itself_is_one(photos):
    sobel = analysis.edge_maps(photos, "sobel")
    table = analysis.edge_similarity(sobel, photos, detectors="sobel")
    assert (table["method"] == "maps").all()
    np.testing.assert_allclose(table["value"], 1.0)


def test_edge_similarity_ranks_real_detectors_above_noise(photos):
    """Two real edge detectors agree far above a random map's level."""
    noise = torch.randn(photos.shape, generator=torch.Generator().manual_seed(1))
    table = analysis.edge_similarity(
        {"sobel conv": analysis.edge_maps(photos, "sobel_conv"), "noise": noise}, photos,
        detectors=("sobel", "canny"))
    means = table.groupby(["method", "detector"])["value"].mean()
    assert means["sobel conv", "sobel"] > 0.97
    assert means["sobel conv", "canny"] > 0.2
    assert abs(means["noise", "sobel"]) < 0.05 and abs(means["noise", "canny"]) < 0.05


def test_edge_similarity_rejects_mismatched_maps(photos):
    with pytest.raises(ValueError, match="one map per image, at the image's resolution"):
        analysis.edge_similarity(torch.rand(3, 1, 32, 32), photos)
    with pytest.raises(ValueError, match="one map per image"):
        analysis.edge_similarity(torch.rand(2, 1, 48, 48), photos)
    with pytest.raises(ValueError, match="detectors=.*laplace.*not known"):
        analysis.edge_similarity(torch.rand(3, 1, 48, 48), photos, detectors=["laplace"])
    with pytest.raises(ValueError, match="metrics=.*pearson.*not known"):
        analysis.edge_similarity(torch.rand(3, 1, 48, 48), photos, metrics="pearson")
    with pytest.raises(ValueError, match="empty dict"):
        analysis.edge_similarity({}, photos)


# ----------------------------------------------------------------------------- the findings

def test_random_conv_gradient_resembles_sobel_on_mnist(digits):
    """Paper section 5.2: the gradient of one random conv layer looks like an edge map. On
    MNIST it correlates with the Sobel magnitude far above the noise floor, for several
    draws of a bias-free layer (TensorFlow's zero bias init)."""
    noise = torch.randn(digits.shape, generator=torch.Generator().manual_seed(3))
    floor = analysis.edge_similarity(noise, digits, detectors="sobel")["value"].mean()
    assert abs(floor) < 0.05
    for seed in range(3):
        model = models.one_conv_model(in_channels=1, seed=seed)
        with torch.no_grad():
            model.conv.bias.zero_()
        grad = saliency.explain(model, digits, "gradient")
        value = analysis.edge_similarity(grad, digits, detectors="sobel")["value"].mean()
        assert value > 0.6, (seed, value)


def test_input_times_maps_follow_the_input_not_the_edges_on_photos(photos):
    """Gradient x Input of the Sobel layer tracks brightness: its correlation with the
    photo itself is clearly higher than with the photo's Sobel magnitude."""
    model = models.one_conv_model(in_channels=3, init="sobel", padding_mode="replicate")
    gxi = saliency.explain(model, photos, "gradient_x_input")
    with_image = similarity.spearman(gxi, photos, "abs").mean().item()
    with_edges = analysis.edge_similarity(gxi, photos, detectors="sobel")["value"].mean()
    assert with_image > with_edges + 0.2


# ----------------------------------------------------------------------------- x * random

def test_input_times_random_correlation_on_mnist(digits):
    table = analysis.input_times_random_correlation(digits, n_pairs=2, seed=0)
    assert list(table.columns) == ["pair", "image", "maps", "metric", "value"]
    assert len(table) == 2 * 40 * 2 * 2
    means = table.groupby(["maps", "metric"])["value"].mean()
    assert means["x*u vs x*v", "spearman_abs"] > 0.9          # the paper's finding
    assert abs(means["x*u vs x*v", "spearman_diverging"]) < 0.05
    assert abs(means["u vs v", "spearman_abs"]) < 0.05        # the noise floor
    assert abs(means["u vs v", "spearman_diverging"]) < 0.05


def test_input_times_random_agrees_with_an_independent_monte_carlo(photos):
    """The mean abs correlation matches numpy draws and scipy's spearmanr, within the
    spread that 3 images x a few pairs allow."""
    table = analysis.input_times_random_correlation(photos, n_pairs=4, seed=0)
    ours = table.query("maps == 'x*u vs x*v' and metric == 'spearman_abs'")["value"].mean()
    rng = np.random.default_rng(123)
    x = photos.double().numpy()
    values = []
    for _ in range(4):
        u, v = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
        a = similarity.normalize(x * u, "abs").numpy()
        b = similarity.normalize(x * v, "abs").numpy()
        values += [stats.spearmanr(p.ravel(), q.ravel())[0] for p, q in zip(a, b)]
    assert ours > 0.15
    assert abs(ours - np.mean(values)) < 0.03


def test_input_times_random_is_seeded(digits):
    a = analysis.input_times_random_correlation(digits[:5], n_pairs=2, seed=4)
    b = analysis.input_times_random_correlation(digits[:5], n_pairs=2, seed=4)
    c = analysis.input_times_random_correlation(digits[:5], n_pairs=2, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["value"], c["value"])


def test_input_times_random_rejects_bad_arguments(digits):
    with pytest.raises(ValueError, match="n_pairs must be an int >= 1"):
        analysis.input_times_random_correlation(digits, n_pairs=0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        analysis.input_times_random_correlation(digits, seed=-1)
    with pytest.raises(TypeError, match="x must be a torch tensor"):
        analysis.input_times_random_correlation([1.0, 2.0])


# ----------------------------------------------------------------------------- figure

def test_plot_edge_similarity_draws_one_mean_bar_per_group_and_method(digits):
    maps = {"a": torch.rand(digits.shape), "b": digits}
    table = pd.concat([analysis.edge_similarity(maps, digits).assign(model="one"),
                       analysis.edge_similarity(maps, digits).assign(model="two")])
    fig = analysis.plot_edge_similarity(table, detector="canny", floor=0.0)
    ax = fig.axes[0]
    lines = [c.get_segments()[0] for c in ax.collections
             if type(c).__name__ == "LineCollection"]
    bars = [seg for seg in lines if seg[0, 1] == seg[1, 1]]
    whiskers = [seg for seg in lines if seg[0, 0] == seg[1, 0]]
    assert len(bars) == len(whiskers) == 2 * 2
    # each whisker is the 95 % bootstrap interval of its bar's mean
    values = table[(table["detector"] == "canny") & (table["model"] == "one")
                   & (table["method"] == "a")]["value"].to_numpy()
    mean, low, high = sl.checks.statistics.bootstrap_interval(values)
    assert bars[0][0, 1] == pytest.approx(mean)
    assert sorted(whiskers[0][:, 1]) == pytest.approx([low, high])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["one", "two", "noise floor"]
    assert "Canny" in ax.get_ylabel()


def test_the_mismatched_pairing_holds_each_map_against_other_images_edges(photos):
    """edge_similarity(pairing="mismatched"): map i against the edges of image i - k, averaged
    over every offset k for three images; recomputed here with scipy."""
    maps = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(4)) * photos
    table = analysis.edge_similarity({"m": maps}, photos, detectors="sobel",
                                     pairing="mismatched")
    assert list(table.columns) == ["method", "detector", "metric", "image", "value"]
    normalized_maps = similarity.normalize(maps.double().abs().sum(1), "abs").numpy()
    edges = similarity.normalize(analysis.edge_maps(photos, "sobel"), "abs").numpy()
    expected = [np.mean([stats.spearmanr(normalized_maps[i].ravel(),
                                         edges[(i - k) % 3].ravel())[0] for k in (1, 2)])
                for i in range(3)]
    np.testing.assert_allclose(table.sort_values("image")["value"], expected, atol=1e-10)
    # the image's own Sobel map against other images' edges is far below itself
    own = analysis.edge_maps(photos, "sobel")
    null = analysis.edge_similarity(own, photos, detectors="sobel", pairing="mismatched")
    assert null["value"].max() < 0.9
    with pytest.raises(ValueError, match="at least two images"):
        analysis.edge_similarity(own[:1], photos[:1], pairing="mismatched")
    with pytest.raises(ValueError, match="pairing"):
        analysis.edge_similarity(own, photos, pairing="other")


def test_plot_edge_similarity_marks_the_mismatched_null(digits):
    maps = {"a": torch.rand(digits.shape), "b": digits}
    same = analysis.edge_similarity(maps, digits, detectors="sobel")
    null = analysis.edge_similarity(maps, digits, detectors="sobel", pairing="mismatched")
    ax = analysis.plot_edge_similarity(same, mismatched=null).axes[0]
    diamonds = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert len(diamonds) == 2
    assert diamonds[1].get_ydata()[0] == pytest.approx(
        null[null["method"] == "b"]["value"].mean())
    assert "mismatched-image null" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(TypeError, match="mismatched must be a DataFrame"):
        analysis.plot_edge_similarity(same, mismatched=[0.1])


def test_plot_edge_similarity_explains_missing_rows(digits):
    table = analysis.edge_similarity(digits, digits, detectors="sobel")
    with pytest.raises(ValueError, match="no rows for detector='canny'"):
        analysis.plot_edge_similarity(table, detector="canny")
    with pytest.raises(TypeError, match="what edge_similarity returns"):
        analysis.plot_edge_similarity(table.drop(columns="detector"))
