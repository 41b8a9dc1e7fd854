"""The result's query API: mean, values, curve, first_step_below, nulls, verdict, intervals.

Each query is checked against an independent computation on a table built by hand (so the
expected numbers are known) and on a real sweep of the MNIST CNN.
"""
import numpy as np
import pytest
import scipy.stats
import torch

import sanity_lib as sl
from sanity_lib.checks import SanityCheckResult
from sanity_lib.checks.result import PASS_THRESHOLD, _make_table
from sanity_lib.checks.statistics import bootstrap_interval, paired_difference

N = 40


def _result(per_method_values, layers=("original", "logits", "fc1"), floor=0.0):
    """A result whose table holds the given per-image values: {method: steps x N array}."""
    cols = {c: [] for c in ("method", "step", "layer", "image", "metric", "value")}
    for method, values in per_method_values.items():
        for k, row in enumerate(values, start=1):
            cols["method"] += [method] * len(row)
            cols["step"] += [k] * len(row)
            cols["layer"] += [layers[k]] * len(row)
            cols["image"] += list(range(len(row)))
            cols["metric"] += ["spearman_abs"] * len(row)
            cols["value"] += list(row)
    n = len(next(iter(per_method_values.values()))[0])
    table = _make_table(*(cols[c] for c in cols))
    return SanityCheckResult(table=table, maps={}, layers=list(layers),
                             noise_floor={"spearman_abs": floor},
                             targets=torch.zeros(len(layers), n, dtype=torch.long),
                             settings={"test": "model_randomization",
                                       "methods": {m: {} for m in per_method_values},
                                       "metrics": ["spearman_abs"]})


@pytest.fixture(scope="module")
def made_up():
    rng = np.random.default_rng(0)
    return _result({
        "stays": [np.clip(0.9 + 0.02 * rng.standard_normal(N), -1, 1)] * 2,   # fails
        "changes": [0.05 + 0.02 * rng.standard_normal(N)] * 2,                # passes
        "unclear": [0.5 + 0.6 * rng.standard_normal(N)] * 2,                  # straddles
        "drops": [np.full(N, 0.8), np.full(N, 0.2)],
    })


def test_mean_and_values_match_the_table(made_up):
    t = made_up.table
    for method in made_up.methods:
        for step in (1, 2):
            expected = t[(t.method == method) & (t.step == step)].sort_values("image")["value"]
            np.testing.assert_array_equal(made_up.values(method, step), expected.to_numpy())
            assert made_up.mean(method, step) == pytest.approx(expected.mean())
    assert made_up.mean("drops", "fc1") == pytest.approx(0.2)   # by layer name
    assert made_up.mean("drops", 0) == 1.0                       # the original vs itself


def test_curve_has_one_row_per_step_with_the_values_behind_it(made_up):
    curve = made_up.curve("drops")
    assert curve["step"].tolist() == [0, 1, 2]
    assert curve["layer"].tolist() == ["original", "logits", "fc1"]
    np.testing.assert_allclose(curve["mean"], [1.0, 0.8, 0.2])
    assert all(len(v) == N for v in curve["values"])
    assert (curve["ci_low"] <= curve["mean"]).all() and (curve["mean"] <= curve["ci_high"]).all()


def test_first_step_below(made_up):
    assert made_up.first_step_below("drops", level=0.5) == 2
    assert made_up.first_step_below("drops", level=0.9) == 1
    assert made_up.first_step_below("stays", level=0.5) is None
    # 'unclear' has a mean near 0.5 but an interval reaching well above it
    mean = made_up.mean("unclear", 1)
    assert made_up.first_step_below("unclear", level=mean + 0.01) == 1
    assert made_up.first_step_below("unclear", level=mean + 0.01, confident=True) is None


def test_verdict_says_passes_fails_and_cannot_tell(made_up):
    v = made_up.verdict(at="logits").set_index("method")["verdict"]
    assert v["stays"] == "fails"
    assert v["changes"] == "passes"
    assert v["unclear"] == "cannot tell", "an interval that straddles the threshold decides nothing"


def test_verdict_rescales_by_the_null():
    # 0.6 similarity is "fails" against a 0 null but "passes" against a 0.5 null:
    # (0.6 - 0.5) / (1 - 0.5) = 0.2 < 0.5.
    values = [np.full(N, 0.6)]
    assert _result({"m": values}, layers=("original", "x")).verdict()["verdict"][0] == "fails"
    lifted = _result({"m": values}, layers=("original", "x"), floor=0.5).verdict()
    assert lifted["verdict"][0] == "passes" and lifted["retained"][0] == pytest.approx(0.2)
    assert PASS_THRESHOLD == 0.5


@pytest.mark.parametrize("call, match", [
    (lambda r: r.mean("gbp", 1), r"'gbp' means 'guided_backprop'|not in this result"),
    (lambda r: r.mean("drops", 7), "step must be a layer name"),
    (lambda r: r.mean("drops", "conv9"), "not a step of this result"),
    (lambda r: r.mean("drops", 1, "ssim"), "metric='ssim' is not in this result"),
    (lambda r: r.verdict(at=0), "at=0 is the original model"),
    (lambda r: r.verdict(threshold=1.5), "threshold must be a finite number"),
    (lambda r: r.verdict(null="iid"), "null=.iid. is not known"),
    (lambda r: r.null_level(kind="mismatched", method="drops"), "needs the maps"),
])
def test_bad_queries_say_what_is_wrong(made_up, call, match):
    with pytest.raises(ValueError, match=match):
        call(made_up)


def test_a_method_may_be_named_by_its_label_or_alias_and_a_typo_gets_the_closest_name():
    rng = np.random.default_rng(0)
    r = _result({"guided_backprop": [rng.uniform(size=N)] * 2,
                 "integrated_gradients": [rng.uniform(size=N)] * 2})
    for spelling in ("Guided Backprop", "gbp", "GUIDED_BACKPROP"):
        assert r.mean(spelling, 1) == r.mean("guided_backprop", 1)
        assert np.array_equal(r.curve(spelling)["mean"], r.curve("guided_backprop")["mean"])
    assert r.first_step_below("IG", level=2) == r.first_step_below("integrated_gradients",
                                                                   level=2)
    with pytest.raises(ValueError, match=r"method='guided_backprob' is not in this result "
                                         r"\(did you mean 'guided_backprop'\?\); it holds"):
        r.mean("guided_backprob", 1)
    with pytest.raises(ValueError, match=r"'gradient' is not in this result; it holds"):
        r.mean("gradient", 1)   # a real method, just not in this result: no guess
    with pytest.raises(ValueError, match=r"did you mean 'spearman_abs'\?"):
        r.mean("guided_backprop", 1, "spearman_ab")


def test_bootstrap_interval_agrees_with_scipy():
    x = np.random.default_rng(1).normal(0.3, 0.2, size=60)
    mean, low, high = bootstrap_interval(x, n_boot=4000)
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile",
                                confidence_level=0.95, random_state=2).confidence_interval
    assert mean == pytest.approx(x.mean())
    assert low == pytest.approx(ref.low, abs=0.01) and high == pytest.approx(ref.high, abs=0.01)
    assert bootstrap_interval(x) == bootstrap_interval(x), "seeded: the same interval twice"
    nan_mean, *_ = bootstrap_interval([np.nan, np.nan])
    assert np.isnan(nan_mean)
    assert bootstrap_interval([0.4]) == (0.4, 0.4, 0.4)


def test_paired_difference_sees_what_two_overlapping_intervals_hide():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, size=30)              # large spread between images
    a, b = base + 0.05, base                         # a is higher on every image
    _, a_low, a_high = bootstrap_interval(a)
    _, b_low, b_high = bootstrap_interval(b)
    assert a_low < b_high, "the two intervals overlap"
    diff, low, high = paired_difference(a, b)
    assert diff == pytest.approx(0.05) and low > 0
    with pytest.raises(ValueError, match="one value per image"):
        paired_difference([1, 2], [1, 2, 3])


def test_queries_on_a_real_sweep():
    x = sl.data.load_mnist("test")[0][:6]
    model = sl.models.mnist_cnn(seed=0)
    r = sl.model_randomization_test(model, x, ["gradient", "gradcam"], progress=False)
    summary = r.summary().set_index(["method", "step", "metric"])
    assert r.mean("gradient", 2, "ssim") == pytest.approx(summary.loc[("gradient", 2, "ssim"),
                                                                      "mean"])
    assert {"ci_low", "ci_high"} <= set(summary.columns)
    # the mismatched-image null, computed by hand: every map against every other image's
    maps = r.maps["gradcam"][0].flatten(1).numpy()
    by_hand = [scipy.stats.spearmanr(np.abs(maps[i]), np.abs(maps[j]))[0]
               for i in range(6) for j in range(6) if i != j]
    assert r.null_level("spearman_abs", "mismatched", method="gradcam") == pytest.approx(
        float(np.nanmean(by_hand)), abs=1e-4)  # float32 maps
    table = r.verdict(at="logits", null="mismatched")
    assert set(table["verdict"]) <= {"passes", "fails", "cannot tell"}
    assert (table["null"] != r.noise_floor["spearman_abs"]).any()


def test_input_only_null_is_what_the_input_alone_gives():
    """On digit-like inputs (zero background) x*u and x*v rank their pixels alike whatever u
    and v are; the level is recomputed here with scipy, independently of the library."""
    torch.manual_seed(0)
    x = torch.zeros(6, 1, 28, 28)
    x[:, :, 6:22, 9:19] = torch.rand(6, 1, 16, 10) + 0.5
    r = sl.model_randomization_test(sl.models.mnist_cnn(), x, ["gradient_x_input"],
                                    metrics=["spearman_abs"], progress=False)
    level = r.null_level("spearman_abs", "input_only")
    g = torch.Generator().manual_seed(0)
    u = torch.randn(x.shape, generator=g, dtype=torch.float64)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    a, b = (x.double() * u).abs(), (x.double() * v).abs()
    by_hand = np.mean([scipy.stats.spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(6)])
    assert level == pytest.approx(by_hand, abs=0.02)
    assert level > 0.5                        # far above the noise floor ...
    assert abs(r.null_level("spearman_abs")) < 0.05
    # ... and a full-frame input has no such level: noise everywhere ranks like noise
    r_full = sl.model_randomization_test(sl.models.mnist_cnn(), torch.rand(6, 1, 28, 28) + 0.5,
                                         ["gradient"], metrics=["spearman_abs"], progress=False)
    assert r_full.null_level("spearman_abs", "input_only") < 0.3


def test_curves_draw_the_bootstrap_interval_and_the_nulls(made_up):
    import matplotlib
    matplotlib.use("Agg")
    fig = made_up.plot_curves(methods=["unclear"], band="ci")
    ax = fig.axes[0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    _, low, high = bootstrap_interval(made_up.values("unclear", 1))
    std = np.std(made_up.values("unclear", 1), ddof=1)
    assert high - low < std                   # the interval of the mean, not the spread
    assert np.any(np.isclose(band, low)) and np.any(np.isclose(band, high))
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(label.startswith("noise floor") for label in labels)
    with pytest.raises(ValueError, match="nulls"):
        made_up.plot_curves(nulls=["seed"])
    import matplotlib.pyplot as plt
    plt.close("all")
