"""Tests for sanity_lib.checks (the two sanity checks) and sanity_lib.plotting.

Most tests use the MNIST CNN, freshly initialized with a fixed seed: the mechanics of the
tests (which model is explained at which step, for which class, compared how) do not need a
trained network, and training would dominate the run time. Every expected number is
recomputed independently from the building blocks (randomization -> explain -> compare).
The last test checks the paper's qualitative finding on the pretrained EfficientNet-Lite0.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import sanity_lib as sl  # noqa: E402
from sanity_lib import randomization, saliency, similarity  # noqa: E402
from sanity_lib.checks import TABLE_COLUMNS, SanityCheckResult, fingerprint  # noqa: E402
from sanity_lib.models import mnist_cnn  # noqa: E402

torch.set_num_threads(1)

METRICS = list(similarity.METRICS)
CNN_TOP_DOWN = ["original", "logits", "fc1", "conv2", "conv1"]
METHODS = ["gradient", "guided_backprop"]
N_IMAGES = 3


@pytest.fixture(scope="module")
def digits():
    x, _ = sl.data.load_mnist("test")
    return x[:N_IMAGES].clone()


@pytest.fixture(scope="module")
def model():
    return mnist_cnn(seed=0)


@pytest.fixture(scope="module")
def result(model, digits):
    return sl.model_randomization_test(model, digits, METHODS, progress=False)


@pytest.fixture(scope="module")
def cascade(model):
    """The randomized models, straight from the randomization module (same seed)."""
    return list(randomization.cascading(model, seed=0))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def argmax(m, x):
    with torch.no_grad():
        return m(x).argmax(dim=1)


# ----------------------------------------------------------------------------- the table

def test_table_has_tidy_columns_dtypes_and_one_row_per_combination(result):
    table = result.table
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert pd.api.types.is_integer_dtype(table["step"])
    assert pd.api.types.is_integer_dtype(table["image"])
    assert table["value"].dtype == np.float64
    for col in ("method", "layer", "metric"):
        assert pd.api.types.is_string_dtype(table[col]), col
    n_steps = len(CNN_TOP_DOWN) - 1
    assert len(table) == len(METHODS) * n_steps * N_IMAGES * len(METRICS)
    # every combination exactly once
    assert not table.duplicated(["method", "step", "image", "metric"]).any()
    assert set(table["method"]) == set(METHODS)
    assert set(table["metric"]) == set(METRICS)
    assert sorted(set(table["image"])) == list(range(N_IMAGES))
    assert sorted(set(table["step"])) == list(range(1, n_steps + 1))  # step 0 is no row


def test_steps_and_layer_names_follow_the_randomization_order(result, model):
    assert result.layers == CNN_TOP_DOWN
    assert result.layers[1:] == randomization.randomization_order(model)
    for step, layer in result.table.groupby("step")["layer"].unique().items():
        assert list(layer) == [result.layers[step]]


def test_values_equal_an_independent_recomputation(result, model, digits, cascade):
    """Every value = compare(explain(original), explain(randomized step k, its argmax))."""
    for method in METHODS:
        original_map = saliency.explain(model, digits, method)
        assert torch.allclose(result.maps[method][0], original_map)
        for k, (layer, randomized) in enumerate(cascade, start=1):
            assert layer == result.layers[k]
            maps = saliency.explain(randomized, digits, method, target=argmax(randomized, digits))
            assert torch.allclose(result.maps[method][k], maps)
            expected = similarity.compare(original_map, maps, METRICS)
            for metric in METRICS:
                rows = result.table.query("method == @method and step == @k and metric == @metric")
                got = rows.sort_values("image")["value"].to_numpy()
                np.testing.assert_allclose(got, expected[metric].numpy(), rtol=1e-9, atol=1e-12)


def test_maps_targets_noise_floor_and_settings(result, model, digits):
    steps = len(CNN_TOP_DOWN)
    for method in METHODS:
        assert result.maps[method].shape == (steps, N_IMAGES, 1, 28, 28)
        assert result.maps[method].device.type == "cpu"
    assert result.targets.shape == (steps, N_IMAGES)
    assert result.targets.dtype == torch.long
    assert torch.equal(result.targets[0], argmax(model, digits))
    assert result.noise_floor == similarity.noise_floor((1, 28, 28), metrics=METRICS, seed=0)
    assert result.settings["mode"] == "cascading" and result.settings["target"] == "argmax"
    assert result.settings["model_fingerprint"] == fingerprint(model)
    assert torch.equal(result.inputs, digits)


def test_the_given_model_is_not_changed(digits):
    model = mnist_cnn(seed=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sl.model_randomization_test(model, digits[:1], ["gradient"], metrics=["ssim"], progress=False)
    assert model.training  # its mode is kept
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_summary_is_mean_and_std_over_images(result):
    summary = result.summary()
    assert list(summary.columns) == ["method", "step", "layer", "metric", "mean", "std", "n",
                                     "ci_low", "ci_high"]
    assert (summary["ci_low"] <= summary["mean"] + 1e-12).all()
    assert len(summary) == len(METHODS) * (len(CNN_TOP_DOWN) - 1) * len(METRICS)
    row = summary.query("method == 'guided_backprop' and step == 2 and metric == 'ssim'")
    values = result.table.query(
        "method == 'guided_backprop' and step == 2 and metric == 'ssim'")["value"].to_numpy()
    assert row["mean"].item() == pytest.approx(values.mean())
    assert row["std"].item() == pytest.approx(values.std(ddof=1))
    assert row["n"].item() == N_IMAGES and row["layer"].item() == "fc1"


# ----------------------------------------------------------------------------- targets

def test_argmax_target_follows_the_randomized_model(result, digits, cascade):
    for k, (_, randomized) in enumerate(cascade, start=1):
        assert torch.equal(result.targets[k], argmax(randomized, digits))
    # randomizing changes the predicted class of some image at some step
    assert (result.targets[1:] != result.targets[0]).any()


def test_original_target_keeps_the_original_class(model, digits, cascade, result):
    kept = sl.model_randomization_test(model, digits, ["gradient"], target="original",
                                       metrics=["spearman_diverging"], progress=False)
    assert (kept.targets == kept.targets[0]).all()
    assert torch.equal(kept.targets[0], result.targets[0])
    changed = next(k for k in range(1, 5) if (result.targets[k] != result.targets[0]).any())
    randomized = cascade[changed - 1][1]
    expected = saliency.explain(randomized, digits, "gradient", target=kept.targets[0])
    assert torch.allclose(kept.maps["gradient"][changed], expected)
    # and it is a different map from the one for the randomized model's own argmax
    assert not torch.allclose(kept.maps["gradient"][changed], result.maps["gradient"][changed])


def test_fixed_target_classes(model, digits):
    fixed = sl.model_randomization_test(model, digits, ["gradient"], target=[1, 2, 7],
                                        metrics=["spearman_abs"], progress=False)
    assert fixed.targets.tolist() == [[1, 2, 7]] * len(CNN_TOP_DOWN)
    assert torch.allclose(fixed.maps["gradient"][0],
                          saliency.explain(model, digits, "gradient", target=[1, 2, 7]))


# ----------------------------------------------------------------------------- other modes

def test_independent_bottom_up_matches_the_randomization_module(model, digits):
    res = sl.model_randomization_test(model, digits, ["gradient"], mode="independent",
                                      order="bottom_up", init="truncated_normal", seed=4,
                                      metrics=["spearman_abs"], progress=False)
    assert res.layers == ["original", "conv1", "conv2", "fc1", "logits"]
    steps = list(randomization.independent(model, order="bottom_up", init="truncated_normal",
                                           seed=4))
    original = saliency.explain(model, digits, "gradient")
    for k in (1, 4):
        randomized = steps[k - 1][1]
        maps = saliency.explain(randomized, digits, "gradient")
        expected = similarity.compare(original, maps, ["spearman_abs"])["spearman_abs"]
        got = res.table.query("step == @k").sort_values("image")["value"].to_numpy()
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-9)


def test_gaussian_noise_of_zero_leaves_every_map_identical(model, digits):
    res = sl.model_randomization_test(model, digits[:2], ["gradient", "guided_backprop"],
                                      mode="gaussian_noise", std=0.0, progress=False)
    assert res.layers == CNN_TOP_DOWN
    np.testing.assert_allclose(res.table["value"].to_numpy(), 1.0, atol=1e-9)
    noisy = sl.model_randomization_test(model, digits[:2], ["gradient"], mode="gaussian_noise",
                                        std=0.5, relative=True, metrics=["spearman_abs"],
                                        progress=False)
    assert (noisy.table["value"] < 0.99).all()
    assert noisy.settings["std"] == 0.5 and noisy.settings["relative"] is True


def test_constant_maps_give_nan_with_one_warning_and_are_left_out_of_summaries(model, digits):
    """An all-zero map (e.g. GradCAM of a dead randomized network) has no rank correlation."""
    calls = []

    def dead_after_step_2(m, x, methods, target):
        calls.append(list(methods))
        maps = saliency.explain_each(m, x, methods, target=target)
        return {k: torch.zeros_like(v) if len(calls) > 3 else v  # steps 3 and 4
                for k, v in maps.items()}

    with pytest.warns(similarity.ConstantMapWarning, match="gradient at step 3") as caught:
        res = sl.model_randomization_test(model, digits, ["gradient"], progress=False,
                                          explainer=dead_after_step_2)
    assert len([w for w in caught if issubclass(w.category, similarity.ConstantMapWarning)]) == 1
    late = res.table.query("step >= 3")
    assert late.query("metric != 'ssim'")["value"].isna().all()
    assert late.query("metric == 'ssim'")["value"].notna().all()  # SSIM stays defined
    assert res.table.query("step < 3")["value"].notna().all()
    summary = res.summary().set_index(["step", "metric"])
    assert summary.loc[(3, "spearman_abs"), "n"] == 0 and summary.loc[(2, "hog"), "n"] == N_IMAGES
    fig = res.plot_curves("spearman_abs")
    y = fig.axes[0].get_lines()[0].get_ydata()
    assert np.isfinite(y[:3]).all() and np.isnan(y[3:]).all()


# ----------------------------------------------------------------------------- data test

def test_data_randomization_compares_the_two_models(digits):
    true_model, random_model = mnist_cnn(seed=0), mnist_cnn(seed=1)  # stand-ins for training
    res = sl.data_randomization_test(true_model, random_model, digits, METHODS,
                                     metrics=["spearman_abs", "ssim"], progress=False)
    assert res.layers == ["original", "random labels"]
    assert len(res.table) == len(METHODS) * 1 * N_IMAGES * 2
    assert set(res.table["step"]) == {1} and set(res.table["layer"]) == {"random labels"}
    assert torch.equal(res.targets[1], argmax(random_model, digits))
    for method in METHODS:
        a = saliency.explain(true_model, digits, method)
        b = saliency.explain(random_model, digits, method)
        expected = similarity.compare(a, b, ["spearman_abs", "ssim"])
        for metric in ("spearman_abs", "ssim"):
            got = res.table.query("method == @method and metric == @metric")["value"]
            np.testing.assert_allclose(got.to_numpy(), expected[metric].numpy(), rtol=1e-9)
    kept = sl.data_randomization_test(true_model, random_model, digits, ["gradient"],
                                      target="original", metrics=["ssim"], progress=False)
    assert torch.equal(kept.targets[1], kept.targets[0])
    assert torch.equal(kept.targets[0], argmax(true_model, digits))


# ----------------------------------------------------------------------------- settings

def test_method_settings_are_passed_to_the_explainer(model, digits):
    calls = []
    real = saliency.explain

    def spy(m, x, methods, target):
        calls.append(methods)
        return saliency.explain_each(m, x, methods, target=target)

    methods = {"smoothgrad": {"n_samples": 2, "seed": 3}, "gradcam": {"layer": model.conv1}}
    res = sl.model_randomization_test(model, digits, methods, metrics=["spearman_abs"],
                                      progress=False, explainer=spy)
    # a module setting is passed by name, so it finds the same layer in every copy
    assert calls == [{"smoothgrad": {"n_samples": 2, "seed": 3},
                      "gradcam": {"layer": "conv1"}}] * 5  # original + 4 steps
    assert torch.allclose(res.maps["smoothgrad"][0],
                          real(model, digits, "smoothgrad", n_samples=2, seed=3))
    assert not torch.allclose(res.maps["smoothgrad"][0],
                              real(model, digits, "smoothgrad", n_samples=2, seed=4))
    assert torch.allclose(res.maps["gradcam"][0], real(model, digits, "gradcam", layer="conv1"))
    assert res.settings["methods"]["smoothgrad"] == {"n_samples": 2, "seed": 3}


# ----------------------------------------------------------------------------- cache

class CountingExplainer:
    """The default explainer, counting its calls; cacheable through its cache_key."""

    cache_key = "counting-default"

    def __init__(self):
        self.calls = 0

    def __call__(self, model, x, methods, target):
        self.calls += 1
        return sl.checks.default_explainer(model, x, methods, target)


def test_cache_returns_the_stored_result_and_misses_on_any_change(model, digits, monkeypatch,
                                                                  tmp_path):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    counting = CountingExplainer()
    kwargs = dict(metrics=["spearman_abs", "hog"], progress=False, cache=True,
                  explainer=counting)
    first = sl.model_randomization_test(model, digits, METHODS, **kwargs)
    assert list((tmp_path / "sweeps").glob("*.pt")) and counting.calls == 5

    second = sl.model_randomization_test(model, digits, METHODS, **kwargs)
    assert counting.calls == 5, "a cached result was recomputed"
    pd.testing.assert_frame_equal(second.table, first.table)
    assert second.layers == first.layers and second.noise_floor == first.noise_floor
    assert torch.equal(second.targets, first.targets) and torch.equal(second.inputs, first.inputs)
    assert all(torch.equal(second.maps[m], first.maps[m]) for m in METHODS)
    assert second.settings == first.settings

    changed_model = mnist_cnn(seed=0)
    with torch.no_grad():
        changed_model.logits.bias[0] += 1e-3
    for args, extra in [
        ((model, digits, METHODS), {"seed": 1}),
        ((model, digits, METHODS), {"target": "original"}),
        ((model, digits, {"gradient": {}, "guided_backprop": {"batch_size": 1}}), {}),
        ((model, digits[:2], METHODS), {}),
        ((changed_model, digits, METHODS), {}),
    ]:
        before = counting.calls
        sl.model_randomization_test(*args, **{**kwargs, **extra})
        assert counting.calls > before, f"a changed call {extra or args[0]} hit the cache"
    # Edited library code (a saliency method, a metric) is another result too.
    from sanity_lib.checks import sweep

    real = sweep.code_fingerprint
    monkeypatch.setattr(sweep, "code_fingerprint", lambda parts: real(parts) + "-edited")
    before = counting.calls
    sl.model_randomization_test(model, digits, METHODS, **kwargs)
    assert counting.calls > before, "a sweep of older library code was served"
    monkeypatch.setattr(sweep, "code_fingerprint", real)
    # Another explainer is another result.
    other = CountingExplainer()
    other.cache_key = "another-explainer"
    sl.model_randomization_test(model, digits, METHODS, **{**kwargs, "explainer": other})
    assert other.calls == 5


def test_cache_with_an_explainer_that_has_no_key_is_refused(model, digits):
    with pytest.raises(ValueError, match="cache_key attribute"):
        sl.model_randomization_test(model, digits, ["gradient"], progress=False, cache=True,
                                    explainer=lambda m, x, methods, target: {})


def test_an_explainer_that_returns_the_wrong_thing_is_reported(model, digits):
    with pytest.raises(TypeError, match="must return a dict with the maps of every method"):
        sl.model_randomization_test(model, digits, ["gradient", "gradcam"], progress=False,
                                    explainer=lambda m, x, methods, target: {"gradient": x})
    with pytest.raises(TypeError, match="one map per image"):
        sl.model_randomization_test(model, digits, ["gradient"], progress=False,
                                    explainer=lambda m, x, methods, target: {"gradient": x[:1]})


def test_cached_data_randomization_result(digits, monkeypatch, tmp_path):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    a, b = mnist_cnn(seed=0), mnist_cnn(seed=1)
    counting = CountingExplainer()
    kwargs = dict(metrics=["ssim"], progress=False, cache=True, explainer=counting)
    first = sl.data_randomization_test(a, b, digits, ["gradient"], **kwargs)
    assert counting.calls == 2
    second = sl.data_randomization_test(a, b, digits, ["gradient"], **kwargs)
    assert counting.calls == 2
    pd.testing.assert_frame_equal(second.table, first.table)
    sl.data_randomization_test(a, mnist_cnn(seed=2), digits, ["gradient"], **kwargs)
    assert counting.calls == 4


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(mode="bottom_up"), ValueError, "mode='bottom_up' is not known"),
    (dict(methods=["gradient", "gbp_typo"]), ValueError,
     "unknown method 'gbp_typo'.*guided_backprop"),
    (dict(mode="gaussian_noise"), ValueError, "needs std="),
    (dict(std=0.1), ValueError, "only used with mode='gaussian_noise'"),
    (dict(target="label"), ValueError, "target='label' is not known"),
    (dict(target=[1, 2]), ValueError, "2 classes but x holds 3 images"),
    (dict(metrics=["pearson"]), ValueError, "not known; choose among"),
    (dict(methods={"smoothgrad": 2}), TypeError, "settings of method 'smoothgrad' must be a dict"),
    (dict(order="sideways"), ValueError, "order='sideways' is not known"),
    (dict(init="xavier"), ValueError, "init='xavier' is not known"),
    (dict(groups=["conv9"]), ValueError, "no submodule 'conv9'"),
    (dict(mode="gaussian_noise", std=0.1, init="normal"), ValueError,
     "not used by mode='gaussian_noise'"),
])
def test_bad_inputs_raise_clear_errors_before_any_work(model, digits, kwargs, error, match):
    kwargs = {"methods": ["gradient"], "explainer": lambda *a, **k: 1 / 0, **kwargs}
    with pytest.raises(error, match=match):
        sl.model_randomization_test(model, digits, progress=False, **kwargs)


def test_bad_x_raises(model, digits):
    with pytest.raises(ValueError, match="N x C x H x W"):
        sl.model_randomization_test(model, digits[0], ["gradient"], progress=False)
    with pytest.raises(TypeError, match="torch.Tensor"):
        sl.model_randomization_test(model, digits.numpy(), ["gradient"], progress=False)


# ----------------------------------------------------------------------------- plots

def test_plot_curves_draws_one_line_per_method_and_the_noise_floor(result):
    fig = result.plot_curves("spearman_diverging")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["Gradient", "Guided Backprop"] and labels[2].startswith("noise floor")
    lines = {line.get_label(): line for line in ax.get_lines()}
    floor = lines[labels[2]]
    assert floor.get_linestyle() == "--"
    assert np.allclose(floor.get_ydata(), result.noise_floor["spearman_diverging"])
    # the curve starts at 1 on "original" and then follows the mean over images
    y = lines["Guided Backprop"].get_ydata()
    means = (result.table.query("method == 'guided_backprop' and metric == 'spearman_diverging'")
             .groupby("step")["value"].mean())
    np.testing.assert_allclose(y, [1.0] + means.tolist())
    assert [t.get_text() for t in ax.get_xticklabels()] == CNN_TOP_DOWN
    assert ax.get_xticklabels()[1].get_rotation() == 45
    assert "Spearman" in ax.get_ylabel() and ax.get_xlabel() and ax.get_title()
    assert len(ax.collections) == len(METHODS)  # one shaded band per method
    two = result.plot_curves(["ssim", "hog"], band=None)
    assert len(two.axes) == 2 and len(two.axes[1].collections) == 0
    assert two.axes[1].get_ylabel() == "HOG feature correlation"


def _legend_entry(ax, start):
    """The legend entry whose text starts with ``start`` (the legend sits on the last panel)."""
    texts = [t.get_text() for t in ax.figure.axes[-1].get_legend().get_texts()]
    found = [t for t in texts if t.startswith(start)]
    assert len(found) == 1, texts
    return found[0]


def test_plot_curves_draws_every_null_that_fits(model, digits):
    """"auto": the mismatched-image null as one dash per method, in the method's colour,
    right of the last step, at null_level's value; the input-only level as a dotted line
    once a method multiplies by the input; the noise floor dashed."""
    res = sl.model_randomization_test(model, digits, ["gradient", "gradient_x_input"],
                                      progress=False)
    fig = res.plot_curves("spearman_abs")
    ax = fig.axes[0]
    dashes = [line for line in ax.get_lines() if line.get_marker() == "_" and
              len(line.get_xdata()) == 1]
    assert len(dashes) == 2
    curves = {line.get_label(): line for line in ax.get_lines()}
    for dash, method in zip(dashes, res.methods):
        assert dash.get_xdata()[0] > len(res.layers) - 1  # right of the last step
        assert dash.get_color() == curves[sl.plotting.METHOD_LABELS[method]].get_color()
        assert dash.get_ydata()[0] == pytest.approx(
            res.null_level("spearman_abs", "mismatched", method=method))
    assert ax.get_xlim()[1] > dashes[0].get_xdata()[0]  # the dashes are inside the panel
    input_only = curves[_legend_entry(ax, "input only")]
    assert input_only.get_linestyle() == ":"
    assert input_only.get_ydata()[0] == pytest.approx(res.null_level("spearman_abs",
                                                                      "input_only"))
    assert _legend_entry(ax, "mismatched-image null")
    # nothing is drawn that does not fit: the gradient alone has no input-only level, and
    # () draws no null at all
    alone = res.plot_curves("ssim", methods=["gradient"]).axes[0]
    labels = [t.get_text() for t in alone.get_legend().get_texts()]
    assert not any(t.startswith("input only") for t in labels)
    assert sum(line.get_marker() == "_" for line in alone.get_lines()) == 2  # dash + key
    bare = res.plot_curves("ssim", nulls=()).axes[0]
    assert [t.get_text() for t in bare.get_legend().get_texts()] == [
        "Gradient", "Gradient ⊙ Input"]
    with pytest.raises(ValueError, match="nulls"):
        res.plot_curves("ssim", nulls=["mismatch"])


def test_several_panels_share_one_legend_without_per_panel_levels(result):
    fig = result.plot_curves(["ssim", "hog"])
    assert fig.axes[0].get_legend() is None
    assert _legend_entry(fig.axes[1], "noise floor") == "noise floor"  # levels differ


def test_null_levels_are_computed_once(model, digits, monkeypatch):
    res = sl.model_randomization_test(model, digits, ["gradient"], progress=False)
    first = res.null_level("ssim", "mismatched", method="gradient")
    calls = []
    monkeypatch.setattr(similarity, "compare", lambda *a, **k: calls.append(1))
    assert res.null_level("ssim", "mismatched", method="gradient") == first
    assert not calls


def test_plot_curves_draws_into_given_axes_and_rejects_unknown_metrics(result):
    fig, ax = plt.subplots()
    assert result.plot_curves("ssim", ax=ax) is fig
    with pytest.raises(ValueError, match="not in the table"):
        result.plot_curves("psnr")


def test_plot_grid_layout_colormaps_and_values(result):
    fig = result.plot_grid(image=1, mode="abs")
    n_maps = len(METHODS) * len(CNN_TOP_DOWN)
    assert len(fig.axes) == n_maps + 1 + 1  # maps, the input image, the colorbar
    pictures = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    maps = pictures[1:]  # the input comes first
    assert all(p.get_clim() == (0.0, 1.0) and p.get_cmap().name == "gray" for p in maps)
    expected = similarity.normalize(result.maps["guided_backprop"][:, 1], "abs")
    np.testing.assert_allclose(maps[len(CNN_TOP_DOWN) + 2].get_array(), expected[2].numpy(),
                               rtol=1e-6)
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes[:len(CNN_TOP_DOWN) + 1]]
    assert titles == ["input"] + CNN_TOP_DOWN

    div = result.plot_grid(mode="diverging", methods=["gradient"], steps=["original", "conv1"])
    pictures = [ax.get_images()[0] for ax in div.axes if ax.get_images()]
    assert len(pictures) == 3  # the input and two steps
    for p in pictures[1:]:
        assert p.get_clim() == (-1.0, 1.0)  # symmetric: white is exactly zero
        assert p.get_cmap().name == "RdBu_r"
    assert pictures[2].get_array().min() < 0 < pictures[2].get_array().max()
    colorbar = div.axes[-1]
    assert "signed" in colorbar.get_ylabel()


def test_plot_grid_needs_maps(model, digits):
    res = sl.model_randomization_test(model, digits, ["gradient"], metrics=["ssim"],
                                      keep_maps=False, progress=False)
    assert res.maps == {}
    with pytest.raises(ValueError, match="keep_maps=True"):
        res.plot_grid()


def test_result_repr_is_short(result):
    text = repr(result)
    assert isinstance(result, SanityCheckResult) and len(text) < 400 and "cascading" in text


# ----------------------------------------------------------------------------- the paper

@pytest.mark.slow
def test_paper_finding_on_efficientnet_gradient_changes_guided_backprop_does_not():
    """Adebayo et al., Fig. 2: once the logits are re-initialized, the gradient map changes
    (its signed rank correlation with the original collapses), while Guided Backprop's map
    stays almost identical through the top layers and only changes when the lower layers
    are randomized.

    Measured (seed 0, chelsea/coffee/rocket/motorcycle, target="argmax"), mean over images:
    gradient spearman_diverging 0.211 at step 1 (logits), 0.015 at step 2 (head);
    guided_backprop spearman_abs 0.998 at step 1, 0.987 at step 3 (stage7), 0.007 at the
    last step (stem). The gradient's step-1 value is not 0: the argmax of the randomized
    logits picks the random row best aligned with the image's features (with
    target="original" it is 0.0 +- 0.2).
    """
    model = sl.models.efficientnet_lite0(pretrained=True)
    x = model.preprocess(sl.data.sample_images(224, names=["chelsea", "coffee", "rocket",
                                                           "motorcycle"]))
    res = sl.model_randomization_test(model, x, ["gradient", "guided_backprop"],
                                      metrics=["spearman_abs", "spearman_diverging"],
                                      progress=False)
    assert res.layers[:4] == ["original", "logits", "head", "stage7"]
    assert res.layers[-1] == "stem"
    mean = res.summary().set_index(["method", "step", "metric"])["mean"]
    last = len(res.layers) - 1
    gbp_abs = [mean["guided_backprop", k, "spearman_abs"] for k in range(1, last + 1)]
    grad_div = [mean["gradient", k, "spearman_diverging"] for k in range(1, last + 1)]
    # gradient: far from its original map as soon as the logits are random ...
    assert grad_div[0] < 0.4
    assert mean["guided_backprop", 1, "spearman_diverging"] > 0.95
    # ... and at the noise floor one block further down
    assert abs(grad_div[1]) < 0.15
    # guided backprop: unchanged by the top layers ...
    assert min(gbp_abs[:3]) > 0.9
    # ... and only gone once every layer is random
    assert gbp_abs[-1] < 0.3 and gbp_abs[-1] < 0.5 * gbp_abs[0]
