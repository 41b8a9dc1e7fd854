"""noise_study: the sweep over noise levels and seeds, and the numbers read off its curves.

The shape and sensitivity measures are checked against curves whose answer is known by
construction (straight lines, the extreme concave and convex curves, exact parabolas) and
against numpy computations written here; the sweep against single calls of the library's
model_randomization_test and hand-made noisy models.
"""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib import noise_study as ns


def _curves(values_by_key, layers=None):
    """A mean_curves-style table from {(std, seed, method): [y0, y1, ...]}."""
    rows = []
    for (s, seed, method), ys in values_by_key.items():
        names = layers or ["original"] + [f"l{k}" for k in range(1, len(ys))]
        rows += [{"noise_std": s, "seed": seed, "method": method, "step": k, "layer": names[k],
                  "value": float(v)} for k, v in enumerate(ys)]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- concavity

def test_concavity_is_zero_on_lines_and_plus_minus_one_at_the_extremes():
    assert ns.concavity(np.linspace(1, 0.2, 6)) == pytest.approx(0.0, abs=1e-12)
    assert ns.concavity([1, 1, 1, 1, 1, 0.3]) == pytest.approx(1.0)
    assert ns.concavity([1, 0.3, 0.3, 0.3, 0.3, 0.3]) == pytest.approx(-1.0)


@pytest.mark.parametrize("n_steps", [2, 4, 7])
def test_concavity_matches_the_area_between_curve_and_chord(n_steps):
    # Independent computation: the signed area between the two piecewise-linear curves
    # (numpy's trapezoid rule on a fine grid), over the largest possible such area.
    rng = np.random.default_rng(n_steps)
    y = np.concatenate([[1.0], np.sort(rng.uniform(0.0, 1.0, n_steps))[::-1]])
    x = np.arange(n_steps + 1)
    fine = np.linspace(0, n_steps, 20001)
    curve = np.interp(fine, x, y)
    chord = np.interp(fine, [0, n_steps], [y[0], y[-1]])
    area = np.trapezoid(curve - chord, fine)
    largest = np.trapezoid(np.interp(fine, x, np.r_[np.full(n_steps, y[0]), y[-1]]) - chord, fine)
    assert ns.concavity(y) == pytest.approx(area / largest, abs=1e-6)


def test_concavity_sign_follows_the_curvature_of_parabolas():
    k = np.arange(5) / 4
    slow_then_fast = 1 - 0.8 * k ** 2         # second derivative < 0: concave
    fast_then_slow = 0.2 + 0.8 * (1 - k) ** 2  # second derivative > 0: convex
    assert ns.concavity(slow_then_fast) > 0.3
    assert ns.concavity(fast_then_slow) < -0.3
    # an exact parabola of the same drop: the two are mirror images
    assert ns.concavity(slow_then_fast) == pytest.approx(-ns.concavity(fast_then_slow))
    assert (ns.second_differences(slow_then_fast) < 0).all()
    assert (ns.second_differences(fast_then_slow) > 0).all()


def test_concavity_ignores_scale_and_offset_but_not_a_flat_curve():
    y = np.array([1.0, 0.9, 0.7, 0.2])
    assert ns.concavity(0.5 * y + 0.3) == pytest.approx(ns.concavity(y))
    assert np.isnan(ns.concavity([1.0, 0.99, 0.985, 0.98]))
    assert not np.isnan(ns.concavity([1.0, 0.99, 0.985, 0.98], min_drop=0.01))


def test_second_differences_match_numpy_diff():
    y = np.array([1.0, 0.8, 0.7, 0.1, 0.05])
    np.testing.assert_allclose(ns.second_differences(y), np.diff(y, n=2))


@pytest.mark.parametrize("bad", [[1.0, 0.5], [[1.0, 0.5, 0.2]], [1.0, np.nan, 0.1]])
def test_concavity_rejects_what_is_not_a_curve(bad):
    with pytest.raises(ValueError, match="curve|NaN"):
        ns.concavity(bad)


def test_concavity_rejects_a_bad_min_drop():
    with pytest.raises(ValueError, match="min_drop"):
        ns.concavity([1.0, 0.5, 0.1], min_drop=0)


# ----------------------------------------------------------------------------- tables

def test_curve_shapes_reads_concave_convex_and_flat():
    curves = _curves({
        (0.1, 0, "gradient"): [1.0, 0.97, 0.9, 0.7, 0.3],
        (0.1, 1, "gradient"): [1.0, 0.95, 0.88, 0.72, 0.35],
        (0.3, 0, "gradient"): [1.0, 0.3, 0.15, 0.1, 0.08],
        (0.3, 1, "gradient"): [1.0, 0.35, 0.2, 0.1, 0.1],
        (0.1, 0, "guided_backprop"): [1.0, 0.995, 0.99, 0.99, 0.985],
        (0.1, 1, "guided_backprop"): [1.0, 0.995, 0.99, 0.99, 0.98],
        (0.3, 0, "guided_backprop"): [1.0, 0.8, 0.6, 0.4, 0.2],
        (0.3, 1, "guided_backprop"): [1.0, 0.8, 0.6, 0.4, 0.2],
    })
    shapes = ns.curve_shapes(curves).set_index(["noise_std", "method"])
    assert shapes.loc[(0.1, "gradient"), "shape"] == "concave"
    assert shapes.loc[(0.1, "gradient"), "strict"] == "concave"
    assert shapes.loc[(0.3, "gradient"), "shape"] == "convex"
    assert shapes.loc[(0.1, "guided_backprop"), "shape"] == "flat"
    assert shapes.loc[(0.3, "guided_backprop"), "shape"] == "about straight"
    # kappa of the mean curve lies between the seeds' own
    row = shapes.loc[(0.1, "gradient")]
    assert row["kappa_min"] <= row["kappa"] <= row["kappa_max"]
    mean = np.mean([[1.0, 0.97, 0.9, 0.7, 0.3], [1.0, 0.95, 0.88, 0.72, 0.35]], axis=0)
    assert row["kappa"] == pytest.approx(ns.concavity(mean))


def test_sensitivity_is_the_area_above_the_curve_and_ranks_methods():
    curves = _curves({
        (0.2, 0, "a"): [1.0, 0.9, 0.8], (0.2, 1, "a"): [1.0, 0.7, 0.6],
        (0.2, 0, "b"): [1.0, 0.2, 0.0], (0.2, 1, "b"): [1.0, 0.4, 0.2],
        (0.2, 0, "c"): [1.0, 0.5, 0.5], (0.2, 1, "c"): [1.0, 0.5, 0.5],
    })
    out = ns.sensitivity(curves).set_index("method")
    per_seed_a = [1 - np.mean([0.9, 0.8]), 1 - np.mean([0.7, 0.6])]
    assert out.loc["a", "sensitivity"] == pytest.approx(np.mean(per_seed_a))
    assert out.loc["a", "seed_std"] == pytest.approx(np.std(per_seed_a, ddof=1))
    assert out.loc["c", "seed_std"] == 0.0
    assert out["rank"].to_dict() == {"b": 1, "c": 2, "a": 3}


def test_mean_curves_average_images_add_step_zero_and_skip_nan():
    table = pd.DataFrame({
        "method": "gradient", "step": [1, 1, 1, 2, 2, 2], "layer": ["x"] * 3 + ["y"] * 3,
        "image": [0, 1, 2] * 2, "metric": "spearman_diverging",
        "value": [0.9, 0.7, np.nan, 0.4, 0.2, 0.0], "noise_std": 0.1, "seed": 3})
    curves = ns.mean_curves(table, "spearman_diverging")
    assert curves["step"].tolist() == [0, 1, 2]
    assert curves["layer"].tolist() == ["original", "x", "y"]
    np.testing.assert_allclose(curves["value"], [1.0, 0.8, 0.2])
    assert (curves["seed"] == 3).all()
    with pytest.raises(ValueError, match="metric='ssim' is not in the table"):
        ns.mean_curves(table, "ssim")
    with pytest.raises(TypeError, match="columns"):
        ns.mean_curves(table.drop(columns="image"))


def test_seed_summary_matches_a_groupby_written_by_hand():
    rng = np.random.default_rng(0)
    values = {(s, seed, m): np.r_[1.0, np.sort(rng.uniform(0, 1, 3))[::-1]]
              for s in (0.1, 0.2) for seed in (0, 1, 2) for m in ("p", "q")}
    summary = ns.seed_summary(_curves(values)).set_index(["noise_std", "method", "step"])
    for s in (0.1, 0.2):
        for m in ("p", "q"):
            stack = np.stack([values[(s, seed, m)] for seed in (0, 1, 2)])
            np.testing.assert_allclose(summary.loc[(s, m), "mean"], stack.mean(0))
            np.testing.assert_allclose(summary.loc[(s, m), "seed_std"], stack.std(0, ddof=1))


# ----------------------------------------------------------------------------- weights

def test_weight_scales_reports_each_tensor_spread():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))
    with torch.no_grad():
        model[2].weight.mul_(7.0)
    table = ns.weight_scales(model)
    assert table[["layer", "tensor"]].values.tolist() == [
        ["0", "weight"], ["0", "bias"], ["2", "weight"], ["2", "bias"]]
    assert table.loc[0, "std"] == pytest.approx(model[0].weight.detach().double().numpy().std())
    assert table.loc[2, "std"] == pytest.approx(model[2].weight.detach().double().numpy().std())
    assert table.loc[0, "fan_in"] == 30 and table.loc[2, "fan_in"] == 20
    assert np.isnan(table.loc[1, "fan_in"])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ns.weight_scales("model")


# ----------------------------------------------------------------------------- sweep

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16),
                          nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, x


def test_noise_sweep_stacks_single_tests_per_std_and_seed(tiny):
    model, x = tiny
    sweep = ns.noise_sweep(model, x, ["gradient"], stds=[0.05, 0.5], seeds=[0, 1],
                           progress=False, metrics=["spearman_diverging"])
    assert sweep.stds == [0.05, 0.5] and sweep.seeds == [0, 1]
    assert sweep.layers == ["original", "5", "3", "1"]
    single = sl.model_randomization_test(model, x, ["gradient"], mode="gaussian_noise", std=0.5,
                                         seed=1, progress=False,
                                         metrics=["spearman_diverging"])
    part = sweep.table[(sweep.table["noise_std"] == 0.5) & (sweep.table["seed"] == 1)]
    np.testing.assert_allclose(part["value"].to_numpy(), single.table["value"].to_numpy())
    assert set(sweep.results_by_std(seed=1)) == {0.05, 0.5}
    # different seeds give different noise, hence different similarities
    other = sweep.table[(sweep.table["noise_std"] == 0.5) & (sweep.table["seed"] == 0)]
    assert not np.allclose(other["value"].to_numpy(), part["value"].to_numpy())


def test_more_noise_moves_the_maps_further(tiny):
    model, x = tiny
    sweep = ns.noise_sweep(model, x, ["gradient"], stds=[0.001, 1.0], seeds=[0, 1, 2],
                           progress=False, metrics=["spearman_diverging"])
    sens = ns.sensitivity(sweep.curves("spearman_diverging")).set_index("noise_std")
    assert sens.loc[0.001, "sensitivity"] < 0.05
    assert sens.loc[1.0, "sensitivity"] > 0.3


def test_relative_sweep_scales_noise_by_each_tensor(tiny):
    model, x = tiny
    sweep = ns.noise_sweep(model, x, ["gradient"], stds=[0.3], relative=True, progress=False,
                           metrics=["spearman_diverging"])
    assert sweep.relative and sweep.results[(0.3, 0)].settings["relative"] is True


def test_noise_sweep_rejects_bad_arguments(tiny):
    model, x = tiny
    with pytest.raises(ValueError, match="sets \\['std'\\] itself"):
        ns.noise_sweep(model, x, ["gradient"], stds=[0.1], std=0.1)
    with pytest.raises(ValueError, match="stds is empty"):
        ns.noise_sweep(model, x, ["gradient"], stds=[])
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        ns.noise_sweep(model, x, ["gradient"], stds=[-0.1])
    with pytest.raises(ValueError, match="repeated"):
        ns.noise_sweep(model, x, ["gradient"], stds=[0.1], seeds=[1, 1])
    with pytest.raises(TypeError, match="relative"):
        ns.noise_sweep(model, x, ["gradient"], stds=[0.1], relative="yes")


def test_accuracy_under_noise_matches_models_noised_by_hand(tiny):
    model, _ = tiny
    g = torch.Generator().manual_seed(5)
    images, labels = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 4, (40,), generator=g)
    acc = ns.accuracy_under_noise(model, images, labels, stds=[0.0, 0.4], seeds=[2])
    assert acc["layer"].tolist()[:5] == ["original", "5", "3", "1", "original"]
    assert acc[acc["noise_std"] == 0.0]["accuracy"].nunique() == 1
    # step 2 at std 0.4 is the model with noise on the last two linear layers
    noisy = [m for _, m in sl.randomization.gaussian_noise(model, 0.4, seed=2)][1]
    by_hand = (noisy(images).argmax(1) == labels).float().mean().item()
    row = acc[(acc["noise_std"] == 0.4) & (acc["step"] == 2)]
    assert row["accuracy"].item() == pytest.approx(by_hand)


def test_plot_noise_curves_draws_one_panel_per_std():
    import matplotlib

    matplotlib.use("Agg")
    curves = _curves({(s, seed, m): [1.0, 0.8 - s, 0.5 - s]
                      for s in (0.1, 0.2, 0.3) for seed in (0, 1) for m in ("a", "b")})
    fig = ns.plot_noise_curves(curves, noise_floor=0.0)
    axes = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in axes] == ["std 0.1", "std 0.2", "std 0.3"]
    # two method lines per panel plus the noise floor; the first line is the mean curve
    assert len(axes[0].lines) == 3
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), [1.0, 0.6, 0.3])
    with pytest.raises(ValueError, match="not in the curves"):
        ns.plot_noise_curves(curves, methods=["z"])


# ----------------------------------------------------------------------------- intervals

def _table(values):
    """A NoiseSweep-style table from values[seed, image, step - 1] of one std and method."""
    n_seeds, n_images, n_steps = values.shape
    rows = [{"method": "gradient", "step": k + 1, "layer": f"l{k + 1}", "image": i,
             "metric": "spearman_diverging", "value": float(values[seed, i, k]),
             "noise_std": 0.1, "seed": seed}
            for seed in range(n_seeds) for i in range(n_images) for k in range(n_steps)]
    return pd.DataFrame(rows)


def _bootstrap_by_hand(values, n_boot=2000, seed=0):
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return values.mean(), *np.percentile(means, [2.5, 97.5])


def test_curve_intervals_average_seeds_per_image_then_bootstrap_over_images():
    rng = np.random.default_rng(0)
    values = rng.uniform(-0.2, 0.9, size=(3, 40, 4))          # 3 seeds, 40 images, 4 steps
    got = ns.curve_intervals(_table(values))
    assert got["step"].tolist() == [0, 1, 2, 3, 4]
    assert got.iloc[0][["mean", "low", "high"]].tolist() == [1.0, 1.0, 1.0]
    assert (got["n_images"] == 40).all()                       # images, not image x seed
    for k in range(1, 5):
        per_image = values[:, :, k - 1].mean(axis=0)
        np.testing.assert_allclose(got.iloc[k][["mean", "low", "high"]].to_numpy(float),
                                   _bootstrap_by_hand(per_image))
    # the means are the seed_summary means of the image-mean curves
    summary = ns.seed_summary(ns.mean_curves(_table(values)))
    np.testing.assert_allclose(got["mean"], summary["mean"])


def test_more_images_give_narrower_curve_intervals():
    rng = np.random.default_rng(1)
    few = ns.curve_intervals(_table(rng.normal(0.5, 0.2, size=(1, 10, 2))))
    many = ns.curve_intervals(_table(rng.normal(0.5, 0.2, size=(1, 400, 2))))
    assert ((many["high"] - many["low"])[1:] < (few["high"] - few["low"])[1:] / 3).all()


def test_sensitivity_intervals_agree_with_sensitivity_and_image_sensitivity_by_hand():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.6, 0.9, (2, 30, 3)), rng.uniform(0.0, 0.4, (2, 30, 3))
    table = pd.concat([_table(a), _table(b).assign(method="guided_backprop")])
    per_image = ns.image_sensitivity(table)
    np.testing.assert_allclose(per_image[per_image["method"] == "gradient"]["sensitivity"],
                               (1 - a.mean(axis=0)).mean(axis=1))
    got = ns.sensitivity_intervals(table).set_index("method")
    plain = ns.sensitivity(ns.mean_curves(table)).set_index("method")
    np.testing.assert_allclose(got["sensitivity"], plain["sensitivity"])
    np.testing.assert_allclose(got["seed_std"], plain["seed_std"])
    assert got["rank"].to_dict() == {"gradient": 2, "guided_backprop": 1}
    mean, low, high = _bootstrap_by_hand((1 - b.mean(axis=0)).mean(axis=1))
    np.testing.assert_allclose(got.loc["guided_backprop", ["sensitivity", "low", "high"]]
                               .to_numpy(float), [mean, low, high])


def test_concavity_intervals_tell_concave_from_convex_and_straddle_zero_when_they_cannot():
    rng = np.random.default_rng(3)
    steps = np.arange(1, 5) / 4
    concave = np.clip(1 - steps ** 3 + rng.normal(0, 0.05, (1, 50, 4)), -1, 1)
    convex = np.clip((1 - steps) ** 3 + rng.normal(0, 0.05, (1, 50, 4)), -1, 1)
    # per image a concave or a convex curve, half and half: the mean is about straight
    mixed = np.concatenate([concave[:, :25], convex[:, :25]], axis=1)
    rows = {name: ns.concavity_intervals(_table(v)).iloc[0]
            for name, v in [("concave", concave), ("convex", convex), ("mixed", mixed)]}
    assert rows["concave"]["low"] > 0.2 and rows["convex"]["high"] < -0.2
    assert rows["mixed"]["low"] < 0 < rows["mixed"]["high"]
    for row in rows.values():
        assert row["low"] <= row["kappa"] <= row["high"] and row["n_images"] == 50


def test_concavity_intervals_of_a_flat_curve_are_nan():
    flat = np.full((1, 20, 3), 0.99)
    row = ns.concavity_intervals(_table(flat)).iloc[0]
    assert np.isnan(row["kappa"]) and np.isnan(row["low"]) and np.isnan(row["high"])


def test_plot_noise_curves_draws_the_interval_band_and_the_seed_bars():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(4)
    table = _table(rng.uniform(0.2, 0.8, size=(3, 25, 3)))
    intervals = ns.curve_intervals(table)
    fig = ns.plot_noise_curves(ns.mean_curves(table), intervals=intervals)
    ax = fig.axes[0]
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(intervals["low"].min())
    assert band[:, 1].max() == pytest.approx(intervals["high"].max())
    assert "95 % interval over 25 images" in ax.get_legend().get_title().get_text()
    assert "sd over 3 seeds" in ax.get_legend().get_title().get_text()
    with pytest.raises(ValueError, match="no rows for std 0.1 and 'gradient'"):
        ns.plot_noise_curves(ns.mean_curves(table), intervals=intervals.assign(method="x"))


def test_sensitivity_lead_pairs_each_method_with_its_closest_rival():
    rng = np.random.default_rng(5)
    tables = {m: rng.uniform(lo, lo + 0.3, (2, 40, 3))
              for m, lo in [("gradient", 0.1), ("integrated_gradients", 0.15),
                            ("guided_backprop", 0.6)]}
    table = pd.concat([_table(v).assign(method=m) for m, v in tables.items()])
    per_image = {m: (1 - v.mean(axis=0)).mean(axis=1) for m, v in tables.items()}
    most = ns.sensitivity_lead(table, "gradient").iloc[0]
    assert most["rival"] == "integrated_gradients"
    np.testing.assert_allclose(most[["lead", "low", "high"]].to_numpy(float),
                               _bootstrap_by_hand(per_image["gradient"]
                                                  - per_image["integrated_gradients"]))
    least = ns.sensitivity_lead(table, "guided_backprop", largest=False).iloc[0]
    assert least["rival"] == "integrated_gradients" and least["low"] > 0
    # the most sensitive method asked to be the least: its lead is clearly negative
    assert ns.sensitivity_lead(table, "gradient", largest=False).iloc[0]["high"] < 0
    with pytest.raises(ValueError, match="method='smoothgrad' is not in the table"):
        ns.sensitivity_lead(table, "smoothgrad")
