"""Tests for sanity_lib.similarity, each against an independent computation.

The references below are written from the definitions in PAPER.md section 6 (one image at a
time, with np.percentile), and scipy / scikit-image are called directly.
"""
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage import data as skdata
from skimage import transform
from skimage.feature import hog
from skimage.metrics import structural_similarity

from sanity_lib import similarity as sim
from sanity_lib.similarity import (
    METRICS, ConstantMapWarning, auto_pixels_per_cell, compare, hog_correlation, noise_floor,
    normalize, spearman, ssim,
)

RNG = np.random.default_rng(1234)


def ref_normalize(maps, mode, q=99.0):
    """The paper's normalizations, image by image (maps: N x C x H x W numpy)."""
    out = []
    for img in np.asarray(maps, dtype=np.float64):
        if mode == "abs":
            s = np.abs(img).sum(axis=0)
            s = s - s.min()                        # first subtract the minimum ...
            out.append(np.clip(s / np.percentile(s, q), 0, 1))  # ... then its percentile
        else:
            s = img.sum(axis=0)
            out.append(np.clip(s / np.percentile(np.abs(s), q), -1, 1))
    return np.stack(out)


def structured_maps(n, c, h, w, offset=0.0):
    """Smooth-ish maps with a signed structure and noise, so clipping and signs matter."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.sin(6 * xx) * np.cos(4 * yy)
    return base + 0.7 * RNG.standard_normal((n, c, h, w)) + offset


def count(records, category):
    return sum(issubclass(r.category, category) for r in records)


# ----------------------------------------------------------------------------- normalize

@pytest.mark.parametrize("mode", ["abs", "diverging"])
@pytest.mark.parametrize("q", [99.0, 90.0, 100.0])
def test_normalize_matches_definition(mode, q):
    # offset 3: |map| summed over channels has a large minimum, so subtracting it before
    # or after taking the percentile gives different maps (a wrong order fails here).
    maps = structured_maps(4, 3, 20, 24, offset=3.0 if mode == "abs" else 0.0)
    got = normalize(torch.tensor(maps, dtype=torch.float64), mode, percentile=q)
    assert got.shape == (4, 20, 24) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref_normalize(maps, mode, q), rtol=0, atol=1e-12)
    if mode == "abs" and q == 99.0:
        wrong_order = []
        for img in maps:
            s = np.abs(img).sum(axis=0)
            wrong_order.append(np.clip((s - s.min()) / np.percentile(s, q), 0, 1))
        assert np.abs(got.numpy() - np.stack(wrong_order)).max() > 0.1


def test_normalize_mnist_variant_is_reference_2d_rule():
    maps = RNG.standard_normal((3, 28, 28))
    np.testing.assert_allclose(
        normalize(maps, "abs", percentile=100, subtract_min=False).numpy(),
        np.abs(maps) / np.abs(maps).max(axis=(1, 2), keepdims=True), atol=1e-6)
    np.testing.assert_allclose(
        normalize(maps, "diverging", percentile=100).numpy(),
        maps / np.abs(maps).max(axis=(1, 2), keepdims=True), atol=1e-6)


def test_normalize_input_forms_agree():
    maps = RNG.standard_normal((2, 1, 12, 12)).astype(np.float32)
    from_numpy = normalize(maps, "abs")
    from_torch = normalize(torch.from_numpy(maps).requires_grad_(), "abs")
    from_3d = normalize(maps[:, 0], "abs")
    assert from_numpy.dtype == torch.float32
    assert torch.equal(from_numpy, from_torch) and torch.equal(from_numpy, from_3d)
    assert from_numpy.min() == 0 and from_numpy.max() == 1


def test_normalize_degenerate_maps_stay_finite():
    maps = np.zeros((3, 28, 28))
    maps[1] = 2.5                                          # constant, not zero
    maps[2, 3, 4], maps[2, 10, 10], maps[2, 20, 1] = 1.0, -4.0, 2.0  # < 1 % non-zero pixels
    for mode in ("abs", "diverging"):
        assert np.isfinite(normalize(maps, mode).numpy()).all()
    assert (normalize(maps, "abs").numpy()[:2] == 0).all()       # no signal left: all zero
    diverging = normalize(maps, "diverging").numpy()
    assert (diverging[0] == 0).all() and (diverging[1] == 1).all()  # 2.5 / 2.5, sign kept
    # the 99th percentile of the sparse map is 0: it is divided by its maximum instead
    np.testing.assert_allclose(normalize(maps, "abs").numpy()[2], np.abs(maps[2]) / 4.0)
    np.testing.assert_allclose(normalize(maps, "diverging").numpy()[2], maps[2] / 4.0)


# ----------------------------------------------------------------------------- spearman

def tie_heavy_maps(n, h, w):
    """Maps full of exact ties: ReLU zeros, values rounded to one decimal, clipped top."""
    maps = np.maximum(structured_maps(n, 1, h, w), 0.0)
    maps[: n // 2] = np.round(maps[: n // 2], 1)
    return maps


@pytest.mark.parametrize("mode", ["abs", "diverging"])
@pytest.mark.parametrize("q", [99.0, 80.0])
def test_spearman_matches_scipy_with_many_ties(mode, q):
    a = tie_heavy_maps(6, 24, 24) - (0.2 if mode == "diverging" else 0.0)
    b = a + 0.4 * RNG.standard_normal(a.shape)
    b[:, :, :8] = a[:, :, :8]                          # shared region: many equal values
    na, nb = ref_normalize(a, mode, q), ref_normalize(b, mode, q)
    # the point of the test: the normalized maps are full of ties
    assert min(1 - np.unique(x).size / x.size for x in na) > 0.2
    expected = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(na, nb)]
    got = spearman(torch.tensor(a), torch.tensor(b), mode=mode, percentile=q)
    assert got.shape == (6,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_spearman_raw_multichannel_matches_scipy():
    a = np.round(RNG.standard_normal((3, 2, 10, 10)), 0)   # integers: heavy ties
    b = a + np.round(RNG.standard_normal(a.shape), 0)
    expected = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(spearman(a, b, mode=None).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("mode", [None, "abs", "diverging"])
def test_spearman_invariant_to_increasing_transforms(mode):
    m = structured_maps(3, 1, 16, 16)
    if mode == "abs":
        m = np.abs(m)      # |f(m)| is increasing in |m| only for f odd or m >= 0
    for transformed in (5.0 * m, m ** 3, np.sign(m) * np.sqrt(np.abs(m))):
        np.testing.assert_allclose(spearman(m, transformed, mode=mode).numpy(), 1.0, atol=1e-12)


def test_spearman_sign_flip_separates_abs_from_diverging():
    m = structured_maps(4, 3, 16, 16)
    np.testing.assert_allclose(spearman(m, -m, "abs").numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(spearman(m, -m, "diverging").numpy(), -1.0, atol=1e-12)


def test_input_times_random_vector_stays_rank_correlated_in_abs_only():
    # PAPER.md section 7: x * u and x * v inherit the input's structure in absolute value,
    # while their signed maps are unrelated.
    x = transform.resize(skdata.camera() / 255.0, (48, 48), anti_aliasing=True)
    u, v = RNG.standard_normal((2, 4, 48, 48))
    assert spearman(x * u, x * v, "abs").min() > 0.3
    assert spearman(x * u, x * v, "diverging").abs().max() < 0.1


def test_constant_map_gives_nan_and_exactly_one_warning():
    a = structured_maps(5, 3, 16, 16)
    b = a + RNG.standard_normal(a.shape)
    a[1] = 0.0                        # e.g. GradCAM after randomization
    b[3] = 7.0                        # constant, not zero
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        for mode in ("abs", "diverging", None):
            r = spearman(a, b, mode=mode)
            assert torch.isnan(r[[1, 3]]).all() and torch.isfinite(r[[0, 2, 4]]).all()
    # one warning per call and nothing else (no numpy divide-by-zero warning)
    assert len(records) == 3 and count(records, ConstantMapWarning) == 3
    assert issubclass(ConstantMapWarning, RuntimeWarning)
    with pytest.warns(RuntimeWarning, match=r"2 of 5 samples \(indices \[1, 3\]\).*NaN"):
        spearman(a, b)


# ----------------------------------------------------------------------------- ssim

@pytest.mark.parametrize("mode", ["abs", "diverging"])
def test_ssim_matches_skimage(mode):
    a = structured_maps(3, 3, 20, 20)
    b = a + RNG.standard_normal(a.shape)
    na, nb = ref_normalize(a, mode), ref_normalize(b, mode)
    if mode == "diverging":
        na, nb = (na + 1) / 2, (nb + 1) / 2
    for gaussian in (False, True):
        expected = [structural_similarity(x, y, win_size=5, data_range=1.0,
                                          gaussian_weights=gaussian) for x, y in zip(na, nb)]
        got = ssim(torch.tensor(a), torch.tensor(b), mode=mode, gaussian_weights=gaussian)
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    # the default is the paper's uniform 5 x 5 window, not scikit-image's 7 x 7 default
    default_7 = [structural_similarity(x, y, data_range=1.0) for x, y in zip(na, nb)]
    assert np.abs(ssim(a, b, mode=mode).numpy() - default_7).max() > 1e-3


def test_ssim_raw_maps_and_identity():
    a = RNG.uniform(0, 1, (2, 16, 16))
    b = RNG.uniform(0, 1, (2, 16, 16))
    expected = [structural_similarity(x, y, win_size=7, data_range=1.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(ssim(a, b, mode=None, win_size=7).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(ssim(a, a).numpy(), 1.0, atol=1e-12)


# ----------------------------------------------------------------------------- hog

def test_auto_pixels_per_cell():
    assert auto_pixels_per_cell(224, 224) == 16 == auto_pixels_per_cell(299, 299)
    assert auto_pixels_per_cell(28, 28) == 4
    assert auto_pixels_per_cell(64, 100) == 9


@pytest.mark.parametrize("size, ppc, expected_ppc", [(28, None, 4), (64, 16, 16), (30, 3, 3)])
def test_hog_correlation_matches_skimage(size, ppc, expected_ppc):
    a = structured_maps(3, 1, size, size)
    b = a + 1.5 * RNG.standard_normal(a.shape)
    na, nb = ref_normalize(a, "abs"), ref_normalize(b, "abs")
    fa = [hog(x, pixels_per_cell=(expected_ppc,) * 2, cells_per_block=(3, 3)) for x in na]
    fb = [hog(y, pixels_per_cell=(expected_ppc,) * 2, cells_per_block=(3, 3)) for y in nb]
    pearson = [np.corrcoef(x, y)[0, 1] for x, y in zip(fa, fb)]
    rank = [spearmanr(x, y)[0] for x, y in zip(fa, fb)]
    got_p = hog_correlation(a, b, pixels_per_cell=ppc)
    got_s = hog_correlation(a, b, method="spearman", pixels_per_cell=ppc)
    np.testing.assert_allclose(got_p.numpy(), pearson, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_s.numpy(), rank, rtol=0, atol=1e-12)
    assert np.abs(np.array(pearson) - rank).max() > 1e-3   # the two methods really differ


def test_hog_too_small_for_paper_cells_is_a_clear_error():
    a = RNG.standard_normal((2, 28, 28))
    with pytest.raises(ValueError, match=r"28 x 28 .*too small.*pixels_per_cell=\(16, 16\)"):
        hog_correlation(a, a, pixels_per_cell=16)


def test_hog_constant_map_nan_with_one_warning():
    a = RNG.standard_normal((3, 28, 28))
    b = a.copy()
    b[0] = 1.0
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        r = hog_correlation(a, b)
    assert torch.isnan(r[0]) and torch.allclose(r[1:], torch.ones(2, dtype=torch.float64))
    assert len(records) == 1 and count(records, ConstantMapWarning) == 1


# ----------------------------------------------------------------------------- compare

def test_compare_agrees_with_the_single_metrics():
    a = structured_maps(3, 3, 28, 28)
    b = a + RNG.standard_normal(a.shape)
    out = compare(a, b)
    assert tuple(out) == METRICS == ("spearman_abs", "spearman_diverging", "ssim", "hog")
    expected = {
        "spearman_abs": spearman(a, b, "abs"), "spearman_diverging": spearman(a, b, "diverging"),
        "ssim": ssim(a, b), "hog": hog_correlation(a, b),
    }
    for name in METRICS:
        assert out[name].shape == (3,)
        torch.testing.assert_close(out[name], expected[name], rtol=0, atol=1e-12)
    only = compare(a, b, metrics="ssim")
    assert list(only) == ["ssim"] and torch.equal(only["ssim"], out["ssim"])


def test_compare_constant_map_warns_once():
    a = RNG.standard_normal((3, 28, 28))
    b = a.copy()
    b[2] = 0.0
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        out = compare(a, b)
    assert len(records) == 1 and count(records, ConstantMapWarning) == 1
    assert "spearman_abs: 1" in str(records[0].message) and "hog: 1" in str(records[0].message)
    for name in ("spearman_abs", "spearman_diverging", "hog"):
        assert torch.isnan(out[name][2]) and not torch.isnan(out[name][:2]).any()
    assert torch.isfinite(out["ssim"]).all()          # SSIM stays defined for constant maps


# ----------------------------------------------------------------------------- noise floor

@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_noise_floor_small_maps(kind):
    means, stds = noise_floor((28, 28), n=50, kind=kind, return_std=True)
    assert set(means) == set(METRICS)
    for name in ("spearman_abs", "spearman_diverging", "ssim"):
        assert abs(means[name]) < 0.02, (name, means[name])
    # the null distribution of a rank correlation of D values has std 1 / sqrt(D - 1)
    for name in ("spearman_abs", "spearman_diverging"):
        assert 0.7 < stds[name] * np.sqrt(28 * 28 - 1) < 1.3, (name, stds[name])
    assert 0.0 < means["hog"] < 0.2


def test_noise_floor_hog_of_uniform_masks_at_224px_is_near_the_papers():
    # The paper: HOG correlation of two Uniform[-1, 1] masks ~ 0.08, the others ~ 0.
    # Measured with n=50: Pearson 0.090 (+-0.032 per pair), Spearman (the reference code's)
    # 0.080. A correlation without centring (cosine of non-negative HOG features) gives ~0.9,
    # the same map twice gives 1, so the bounds below catch those.
    means = noise_floor((224, 224), n=8, kind="uniform")
    for name in ("spearman_abs", "spearman_diverging", "ssim"):
        assert abs(means[name]) < 0.02, (name, means[name])
    assert 0.04 < means["hog"] < 0.15
    rank = noise_floor((224, 224), metrics="hog", n=8, kind="uniform", hog_method="spearman")
    assert 0.04 < rank["hog"] < 0.13


def test_noise_floor_is_seeded():
    first = noise_floor((2, 16, 16), n=5, seed=3)
    assert first == noise_floor((2, 16, 16), n=5, seed=3)
    assert first != noise_floor((2, 16, 16), n=5, seed=4)


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs_raise_clear_errors():
    a = RNG.standard_normal((2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"a and b must have the same shape.*\(3, 1, 16, 16\)"):
        spearman(a, RNG.standard_normal((3, 1, 16, 16)))
    with pytest.raises(ValueError, match=r"a must be a batch of maps.*\(16, 16\).*a\[None\]"):
        ssim(a[0, 0], a[0, 0])
    with pytest.raises(ValueError, match=r"b must be a batch of maps.*\(1, 2, 1, 16, 16\)"):
        hog_correlation(a, a[None])
    nan_b = a.copy()
    nan_b[1, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"b contains NaN.*indices \[1\]"):
        compare(a, nan_b)
    with pytest.raises(ValueError, match=r"maps contains NaN or infinite"):
        normalize(np.full((1, 4, 4), np.inf), "abs")
    with pytest.raises(ValueError, match=r"a holds no maps or empty ones \(shape \(0, 1, 16,"):
        spearman(a[:0], a[:0])
    with pytest.raises(TypeError, match=r"a must be a torch tensor or a numpy array"):
        spearman(a.tolist(), a)
    with pytest.raises(ValueError, match=r"mode='relu'.*'abs' or 'diverging'"):
        normalize(a, "relu")
    with pytest.raises(ValueError, match=r"'abs' or 'diverging' or None"):
        spearman(a, a, mode="signed")
    with pytest.raises(ValueError, match=r"percentile must be a number in \(0, 100\]"):
        normalize(a, "abs", percentile=150)
    with pytest.raises(ValueError, match=r"'spearman_abs', 'spearman_diverging', 'ssim', 'hog'"):
        compare(a, a, metrics=("spearman_abs", "pearson"))
    with pytest.raises(ValueError, match=r"method='kendall'.*'pearson' or 'spearman'"):
        hog_correlation(a, a, method="kendall")
    with pytest.raises(ValueError, match=r"win_size must be an odd integer"):
        ssim(a, a, win_size=4)
    with pytest.raises(ValueError, match=r"win_size .*16 px here.*got 17"):
        ssim(a, a, win_size=17)
    with pytest.raises(ValueError, match=r"a has 3 channels but ssim with mode=None"):
        ssim(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 8, 8)), mode=None)
    with pytest.raises(ValueError, match=r"kind='laplace'.*'gaussian' or 'uniform'"):
        noise_floor((8, 8), kind="laplace")
    with pytest.raises(ValueError, match=r"shape must be \(H, W\) or \(C, H, W\)"):
        noise_floor((64,))


def test_public_names_of_the_design_are_reachable():
    import sanity_lib as sl
    assert sl.similarity is sim
    for name in ("normalize", "spearman", "ssim", "hog_correlation", "compare", "noise_floor"):
        assert name in sim.__all__ and callable(getattr(sl.similarity, name))
