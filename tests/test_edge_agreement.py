"""sanity_lib.studies.failures.edge_agreement: edges of maps against edges of images.

Every measure is recomputed here from scipy and scikit-image, on arrays prepared here; the
reviewer's point (a blotchy map whose patch boundaries follow the image is invisible to a
rank correlation of |map| with the Sobel magnitude) is shown on a synthetic case; and the
references (the image itself, a random map, the mismatched-image null) are checked to sit
where they must.
"""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.feature import canny, hog
from skimage.filters import sobel
from skimage.metrics import structural_similarity

import sanity_lib as sl
from sanity_lib.studies import failures

LIBRARY = Path(sl.__file__).resolve().parent
MEASURES = ("sobel_edges", "hog", "ssim", "canny_auc")


@pytest.fixture(scope="module")
def photos():
    return sl.data.sample_images(64, names="all")          # 8 x 3 x 64 x 64, in [0, 1]


@pytest.fixture(scope="module")
def digits():
    return sl.data.load_mnist("test")[0][::50][:12]         # 12 digits of several classes


def values(table, method="maps", measure=None, pairing="same"):
    rows = table[(table["method"] == method) & (table["pairing"] == pairing)]
    if measure is not None:
        rows = rows[rows["measure"] == measure]
    return rows.sort_values("image")["value"].to_numpy()


def prepared(maps, images):
    """The documented preparation, written out: |map| summed over channels, divided by its
    99th percentile after subtracting its minimum, clipped to [0, 1]; the image made grey."""
    m = np.abs(maps.double().numpy()).sum(1)
    m = m - m.min(axis=(1, 2), keepdims=True)
    m = np.clip(m / np.percentile(m.reshape(len(m), -1), 99, axis=1)[:, None, None], 0, 1)
    return m, images.double().numpy().mean(1)


def regions(seed, size=48):
    """A synthetic image of flat regions (a disk, two rectangles on a background) and the
    labels of those regions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), dtype=int)
    cy, cx, r = rng.integers(14, size - 14, 2).tolist() + [int(rng.integers(6, 11))]
    labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = 1
    for k in (2, 3):
        y0, x0 = rng.integers(2, size - 20, 2)
        h, w = rng.integers(8, 18, 2)
        labels[y0:y0 + h, x0:x0 + w] = k
    brightness = np.array([0.15, 0.9, 0.55, 0.35])
    return brightness[labels], labels


# ----------------------------------------------------------------------------- each measure

def test_canny_auc_is_the_mann_whitney_u_over_n1_n0_ties_included(photos):
    g = torch.Generator().manual_seed(0)
    # three flat levels and zeros: most pixels tie with many others
    n, _, h, w = photos.shape
    maps = torch.randint(0, 4, (n, 1, h, w), generator=g).double() * (photos.mean(1, True) > 0.4)
    table = failures.edge_agreement(maps, photos, measures="canny_auc")
    m, gray = prepared(maps, photos)
    expected = []
    for mi, gi in zip(m, gray):
        edge = canny(gi, sigma=1.0)
        n1, n0 = edge.sum(), (~edge).sum()
        expected.append(stats.mannwhitneyu(mi[edge], mi[~edge]).statistic / (n1 * n0))
    np.testing.assert_allclose(values(table), expected, rtol=0, atol=1e-12)
    assert all(len(np.unique(mi)) <= 4 for mi in m)            # the ties were there


def test_canny_auc_counts_a_tie_one_half_by_brute_force():
    """Every (edge, non-edge) pixel pair compared by hand on a small image."""
    image = np.zeros((1, 1, 12, 12))
    image[..., 3:9, 3:9] = 1.0
    g = np.random.default_rng(3)
    a_map = g.integers(0, 3, (1, 1, 12, 12)).astype(float) + 1.0   # levels 1, 2, 3: ties
    got = values(failures.edge_agreement(a_map, image, measures="canny_auc"))[0]
    m, gray = prepared(torch.from_numpy(a_map), torch.from_numpy(image))
    edge = canny(gray[0])
    at, off = m[0][edge][:, None], m[0][~edge][None, :]
    assert got == pytest.approx(((at > off) + 0.5 * (at == off)).mean(), abs=1e-12)


def test_canny_auc_is_nan_without_edge_pixels_or_with_only_edges():
    ramp = np.tile(np.linspace(0.4, 0.45, 16), (2, 1, 16, 1))      # too gentle for Canny
    with pytest.warns(sl.similarity.ConstantMapWarning, match="canny_auc: 2"):
        table = failures.edge_agreement(np.random.default_rng(0).random((2, 1, 16, 16)), ramp)
    assert np.isnan(values(table, measure="canny_auc")).all()
    assert np.isfinite(values(table, measure="sobel_edges")).all()  # the ramp has Sobel edges
    ranks = np.arange(1.0, 10.0)[None]
    assert np.isnan(failures._canny_auc(ranks, np.ones((1, 9), bool)))[0]


@pytest.mark.parametrize("size, cell", [(28, 4), (224, 16)])
def test_ssim_hog_and_sobel_edges_equal_direct_scikit_image_calls(size, cell):
    images = (sl.data.load_mnist("test")[0][:3] if size == 28
              else sl.data.sample_images(224, names=["chelsea", "coffee", "rocket"]))
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(images.shape, generator=g) * images + 0.1 * torch.rand(images.shape,
                                                                               generator=g)
    table = failures.edge_agreement(maps, images, measures=["sobel_edges", "hog", "ssim"])
    m, gray = prepared(maps, images)
    want = {"sobel_edges": [], "hog": [], "ssim": []}
    for mi, gi in zip(m, gray):
        sm, si = sobel(mi), sobel(gi)
        want["sobel_edges"].append(stats.spearmanr(sm.ravel(), si.ravel())[0])
        want["ssim"].append(structural_similarity(sm / sm.max(), si / si.max(), win_size=5,
                                                  data_range=1.0))
        # the documented cells: 16 px on 224 px images, 4 px on 28 px digits; 3 x 3 blocks
        ha, hb = (hog(a, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(3, 3),
                      block_norm="L2-Hys") for a in (mi, gi))
        want["hog"].append(ha @ hb / (np.linalg.norm(ha) * np.linalg.norm(hb)))
    for measure, expected in want.items():
        np.testing.assert_allclose(values(table, measure=measure), expected, rtol=0,
                                   atol=1e-10, err_msg=measure)


def test_the_table_is_tidy_and_names_every_pairing(photos):
    maps = {"a": photos, "b": 1 - photos}
    table = failures.edge_agreement(maps, photos, pairing=("same", "mismatched"))
    assert list(table.columns) == ["method", "measure", "pairing", "image", "value"]
    assert len(table) == 2 * 4 * 2 * len(photos)
    assert set(table["measure"]) == set(MEASURES) == set(failures.EDGE_MEASURES)
    assert set(failures.MEASURE_LABELS) == set(MEASURES)
    one = failures.edge_agreement(maps["a"], photos, measures="hog", pairing="mismatched")
    np.testing.assert_allclose(values(one, pairing="mismatched"),
                               values(table, "a", "hog", "mismatched"))


def test_the_mismatched_pairing_averages_the_null_levels_offsets():
    """20 images: the 16 evenly spread offsets of SanityCheckResult.null_level, each map
    against the edges of image i - k, recomputed here pair by pair."""
    g = torch.Generator().manual_seed(4)
    images = torch.rand(20, 1, 24, 24, generator=g)
    maps = torch.rand(20, 1, 24, 24, generator=g)
    got = values(failures.edge_agreement(maps, images, measures="sobel_edges",
                                         pairing="mismatched"), pairing="mismatched")
    m, gray = prepared(maps, images)
    offsets = np.unique(np.linspace(1, 19, 16).round()).astype(int)
    assert len(offsets) == 16
    expected = [np.mean([stats.spearmanr(sobel(m[i]).ravel(), sobel(gray[(i - k) % 20]).ravel())[0]
                         for k in offsets]) for i in range(20)]
    np.testing.assert_allclose(got, expected, atol=1e-12)


# ----------------------------------------------------------------------------- the reviewer's point

def test_a_posterized_map_following_the_regions_scores_high_on_sobel_edges_only():
    """Flat patches whose levels have nothing to do with the brightness, but whose
    boundaries are the image's: |map| against the Sobel magnitude sees nothing (the map is
    large where the image is flat), Sobel against Sobel sees the boundaries."""
    images, maps = [], []
    for seed in range(4):
        image, labels = regions(seed)
        images.append(image)
        maps.append(np.array([1.0, 0.2, 0.6, 0.4])[labels])  # 4 flat levels, bright background
    images, maps = np.stack(images)[:, None], np.stack(maps)[:, None]
    old = failures.edge_similarity(maps, images, detectors="sobel")["value"].to_numpy()
    new = failures.edge_agreement(maps, images, pairing=("same", "mismatched"))
    same = values(new, measure="sobel_edges")
    assert (old < 0.1).all(), old
    assert (same > 0.9).all(), same
    assert (same - old > 0.8).all()
    assert values(new, measure="sobel_edges", pairing="mismatched").mean() < 0.4
    for measure in ("hog", "ssim"):              # they see the boundaries too
        same = values(new, measure=measure)
        assert (same > 0.85).all(), measure
        assert (same > values(new, measure=measure, pairing="mismatched") + 0.3).all(), measure


# ----------------------------------------------------------------------------- the references

@pytest.mark.parametrize("data", ["photos", "digits"])
def test_the_image_beats_a_random_map_which_sits_at_its_mismatched_null(photos, digits, data):
    images = photos if data == "photos" else digits
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(2))
    table = failures.edge_agreement({"image": images, "random": noise}, images,
                                    pairing=("same", "mismatched"))
    mean = table.groupby(["method", "measure", "pairing"])["value"].mean()
    for measure in MEASURES:
        # canny_auc asks whether the map is *bright* at Canny's edges: a digit is (its
        # strokes are two pixels wide), a photo hardly (about 0.54), so only the digits
        # have to beat noise clearly there
        margin = 0.01 if (data, measure) == ("photos", "canny_auc") else 0.1
        assert mean["image", measure, "same"] > mean["random", measure, "same"] + margin, measure
        # a map that ignores its image scores as it does against any other image
        assert abs(mean["random", measure, "same"]
                   - mean["random", measure, "mismatched"]) < 0.03, measure
    assert abs(mean["random", "sobel_edges", "same"]) < 0.05
    assert abs(mean["random", "ssim", "same"]) < 0.05
    assert abs(mean["random", "canny_auc", "same"] - 0.5) < 0.03


def test_maps_that_follow_their_images_beat_the_mismatched_pairing(photos, digits):
    g = torch.Generator().manual_seed(3)
    for images in (photos, digits):
        # edge-like maps of each image, corrupted by multiplicative noise
        maps = failures.edge_maps(images, "sobel")[:, None] * torch.rand(
            images.shape[0], 1, *images.shape[2:], generator=g, dtype=torch.float64)
        table = failures.edge_agreement(maps, images, pairing=("same", "mismatched"))
        for measure in MEASURES:
            same = values(table, measure=measure)
            other = values(table, measure=measure, pairing="mismatched")
            assert (same > other).all(), (measure, same, other)


# ----------------------------------------------------------------------------- bad input

def raised_in_the_library(info) -> bool:
    return LIBRARY in Path(str(info.traceback[-1].path)).resolve().parents


@pytest.mark.parametrize("call, error, match", [
    (lambda x: failures.edge_agreement(torch.rand(3, 1, 32, 32), x), ValueError,
     "one map per image, at the image's resolution"),
    (lambda x: failures.edge_agreement(torch.rand(2, 1, 64, 64), x), ValueError,
     "one map per image"),
    (lambda x: failures.edge_agreement(x, x, measures="sobel_edge"), ValueError,
     r"measures=\['sobel_edge'\] not known \(did you mean 'sobel_edges'\?\)"),
    (lambda x: failures.edge_agreement(x, x, measures=["hog", "hog"]), ValueError,
     "lists a name twice"),
    (lambda x: failures.edge_agreement(x, x, pairing="shuffled"), ValueError,
     "pairing=.*shuffled.*not known"),
    (lambda x: failures.edge_agreement(x[:1], x[:1], pairing="mismatched"), ValueError,
     "needs at least two images, got one"),
    (lambda x: failures.edge_agreement(x, 2 * x - 1), ValueError,
     r"pixels in \[0, 1\].*not the model's preprocessed input"),
    (lambda x: failures.edge_agreement({}, x), ValueError, "empty dict"),
    (lambda x: failures.edge_agreement([[0.0]], x), TypeError, "maps must be a torch tensor"),
    (lambda x: failures.edge_agreement(x, x, sigma=0), ValueError, "sigma must be"),
    (lambda x: failures.edge_agreement(x[:, :, :4, :4], x[:, :, :4, :4]), ValueError,
     "too small"),
    (lambda x: failures.edge_agreement(x, x, measures="ssim", win_size=4), ValueError,
     "win_size must be an odd integer"),
    (lambda x: failures.edge_agreement(x, x, measures="hog", pixels_per_cell=40), ValueError,
     "too small for HOG"),
])
def test_bad_edge_agreement_input_gets_a_clear_error(photos, call, error, match):
    with pytest.raises(error, match=match) as info:
        call(photos[:3])
    assert raised_in_the_library(info)


def test_a_constant_map_or_image_gives_nan_and_one_warning_not_a_crash(photos):
    x = photos[:3].clone()
    x[1] = 0.5                                                # an image without any edge
    maps = {"flat": torch.zeros_like(x), "image": x}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = failures.edge_agreement(maps, x, pairing=("same", "mismatched"))
    nan_warnings = [w for w in caught if issubclass(w.category, sl.similarity.ConstantMapWarning)]
    assert len(nan_warnings) == 1 and "are NaN" in str(nan_warnings[0].message)
    assert table.loc[table["method"] == "flat", "value"].isna().all()
    image_same = table[(table["method"] == "image") & (table["pairing"] == "same")]
    assert image_same.loc[image_same["image"] == 1, "value"].isna().all()
    assert image_same.loc[image_same["image"] != 1, "value"].notna().all()
    # the other maps' mismatched means leave the edgeless image out instead of turning NaN
    mismatched = table[(table["method"] == "image") & (table["pairing"] == "mismatched")]
    assert mismatched.loc[mismatched["image"] != 1, "value"].notna().all()
