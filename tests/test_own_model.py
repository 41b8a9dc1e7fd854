"""The helpers around the two tests for a reader's own model (chapter 8): train_cached,
list_modules, group_problems, preflight and verdict, in their homes since own_model was split.

Each test compares with an independent computation (hooks written here, sums of numel, a
verdict worked out by hand from known similarities) or checks that a bad input is named.
"""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib.checks import SanityCheckResult


def _tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))


def _data(n=40):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 4


# ----------------------------------------------------------------------------- train_cached

def test_train_cached_trains_once_then_loads_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    x, y = _data()
    first, h1 = sl.training.train_cached(_tiny(), x, y, name="tiny", epochs=2, batch_size=8)
    assert not first.training and h1.epochs == 2

    def no_training(*args, **kwargs):
        raise AssertionError("train() must not run when the checkpoint is cached")

    monkeypatch.setattr(sl.training, "train", no_training)
    second, h2 = sl.training.train_cached(_tiny(), x, y, name="tiny", epochs=2, batch_size=8)
    for (k, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), k
    assert h2.train_loss == h1.train_loss
    # another setting, other initial weights or other labels: a new entry, so it trains
    for kwargs in (dict(model=_tiny(), labels=y, lr=5e-3), dict(model=_tiny(seed=1), labels=y),
                   dict(model=_tiny(), labels=y.flip(0))):
        model, labels = kwargs.pop("model"), kwargs.pop("labels")
        with pytest.raises(AssertionError, match="must not run"):
            sl.training.train_cached(model, x, labels, name="tiny", epochs=2, batch_size=8,
                                   **kwargs)


def test_train_cached_matches_plain_training_and_permutes_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path))
    x, y = _data()
    plain = _tiny()
    sl.training.train(plain, x, y, epochs=1, batch_size=8, permute_labels=True, progress=False)
    cached, history = sl.training.train_cached(_tiny(), x, y, name="perm", epochs=1,
                                             batch_size=8, permute_labels=True)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                 cached.state_dict().values()))
    assert history.permutation is not None
    assert sorted(history.training_labels(y).tolist()) == sorted(y.tolist())


def test_train_cached_names_bad_arguments():
    x, y = _data()
    with pytest.raises(TypeError, match="epochs="):
        sl.training.train_cached(_tiny(), x, y, name="t", cache=False)
    with pytest.raises(TypeError, match="name must be"):
        sl.training.train_cached(_tiny(), x, y, name="", epochs=1, cache=False)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        sl.training.train_cached("model", x, y, name="t", epochs=1, cache=False)


# ----------------------------------------------------------------------------- list_modules

def test_list_modules_counts_parameters_and_shapes_like_a_manual_forward():
    model = sl.models.mnist_cnn()
    x = torch.rand(3, 1, 28, 28)
    table = sl.models.list_modules(model, x)
    for name, module in model.named_children():
        assert table.loc[name, "parameters"] == sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        conv1 = model.conv1(x[:1])
    assert table.loc["conv1", "output"] == tuple(conv1.shape[1:])
    assert table.loc["logits", "output"] == (10,)
    order = table["call_order"].dropna().tolist()
    assert order == sorted(order)
    assert set(table.index) == {n for n, _ in model.named_children()}
    deeper = sl.models.list_modules(nn.Sequential(nn.Sequential(nn.Linear(2, 2))), depth=2)
    assert list(deeper.index) == ["0", "0.0"] and list(deeper["depth"]) == [1, 2]
    with pytest.raises(ValueError, match="depth must be"):
        sl.models.list_modules(model, depth=0)


# ----------------------------------------------------------------------------- group_problems

def test_group_problems_names_each_typical_slip():
    model = sl.models.mnist_cnn()
    x = torch.rand(2, 1, 28, 28)
    good = ["conv1", "conv2", "fc1", "logits"]
    assert sl.models.group_problems(model, good, x) == []
    reversed_ = sl.models.group_problems(model, good[::-1], x)
    assert len(reversed_) == 1 and "not in forward order" in reversed_[0]
    missing = sl.models.group_problems(model, ["conv1", "fc1", "logits"], x)
    n_conv2 = sum(p.numel() for p in model.conv2.parameters())
    assert len(missing) == 1 and "'conv2'" in missing[0] and f"{n_conv2:,}" in missing[0]
    net = nn.Sequential(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), nn.Linear(3, 2))
    overlap = sl.models.group_problems(net, ["0", "0.0", "1"])
    assert len(overlap) == 1 and "overlap" in overlap[0]
    unknown = sl.models.group_problems(model, ["conv1", "conv3"])
    assert "no submodule 'conv3'" in unknown[0]


# ----------------------------------------------------------------------------- preflight

class _Leaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


class _Noisy(_Leaky):
    def forward(self, x):
        return super().forward(x) + torch.randn(x.shape[0], 3)


def test_preflight_finds_methods_that_cannot_explain_a_leaky_model():
    torch.manual_seed(0)
    model = _Leaky().eval()
    x = torch.rand(4, 1, 8, 8)
    report = sl.checks.preflight(model, x, ["gradient", "guided_backprop", "guided_gradcam",
                                            "gradcam"])
    assert report.loc["method gradient", "status"] == "ok"
    assert report.loc["method gradcam", "status"] == "ok"
    assert report.loc["method guided_backprop", "status"] == "problem"
    assert "LeakyReLU" in report.loc["method guided_backprop", "detail"]
    assert report.attrs["methods"] == ["gradient", "gradcam"]
    with pytest.raises(sl.saliency.UnsupportedModelError):   # the report tells the truth
        sl.saliency.explain(model, x, "guided_backprop")


def test_preflight_flags_mode_randomness_pixels_accuracy_and_collapse():
    torch.manual_seed(0)
    model = _Leaky().train()
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1)
    model.train()
    report = sl.checks.preflight(model, x, ["gradient"], labels=predicted)
    assert report.loc["eval mode", "status"] == "warning"
    assert model.training  # the model passed in is left as it was
    assert report.loc["accuracy", "status"] == "ok" and "100.0%" in report.loc["accuracy",
                                                                                "detail"]
    wrong = (predicted + 1) % 3
    assert sl.checks.preflight(model.eval(), x, ["gradient"],
                               labels=wrong).loc["accuracy", "status"] == "problem"
    noisy = sl.checks.preflight(_Noisy().eval(), x, ["gradient"])
    assert noisy.loc["deterministic", "status"] == "problem"
    model.preprocess = lambda pixels: (pixels - 0.5) / 0.5
    assert sl.checks.preflight(model, x, ["gradient"]).loc["input", "status"] == "warning"
    constant = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    collapsed = sl.checks.preflight(constant, x, ["gradient"])
    assert collapsed.loc["predictions", "status"] == "warning"
    assert "1 distinct" in collapsed.loc["predictions", "detail"]
    bad = sl.checks.preflight(model, x[0], ["gradient"])
    assert bad.loc["input", "status"] == "problem"


# ----------------------------------------------------------------------------- verdict

LAYERS = ["original", "logits", "layer4", "stem"]
FLOOR = {"spearman_abs": 0.1, "spearman_diverging": 0.0}
MEANS = {  # method -> mean similarity (abs) at logits, layer4, stem
    "gradient": (0.3, 0.2, 0.1),
    "guided_backprop": (0.95, 0.9, 0.4),
    "gradcam": (0.6, 0.56, 0.2),       # retained at layer4: 0.511, interval straddles 0.5
    "gradient_x_input": (0.9, 0.9, 0.9),
}


def _cascading(means=MEANS, shift=0.0):
    rows = []
    gen = np.random.default_rng(0)
    for method, values in means.items():
        for step, mean in enumerate(values, start=1):
            for metric in FLOOR:
                noise = gen.normal(0, 0.05, 6)
                for image, value in enumerate(mean + shift + noise - noise.mean()):
                    rows.append((method, step, LAYERS[step], image, metric, value))
    table = pd.DataFrame(rows, columns=["method", "step", "layer", "image", "metric", "value"])
    return SanityCheckResult(
        table=table, maps={}, layers=LAYERS, noise_floor=dict(FLOOR),
        targets=torch.zeros(len(LAYERS), 6, dtype=torch.long),
        settings={"test": "model_randomization", "mode": "cascading", "methods": list(means),
                  "metrics": list(FLOOR)})


def test_verdict_rescales_by_the_noise_floor_and_judges_at_the_chosen_step():
    v = sl.checks.verdict(_cascading(), by="layer4").set_index("method")
    for method, values in MEANS.items():
        retained = (values[1] - FLOOR["spearman_abs"]) / (1 - FLOOR["spearman_abs"])
        assert v.loc[method, "retained"] == pytest.approx(retained)
        assert v.loc[method, "mean"] == pytest.approx(values[1])
        assert v.loc[method, "last"] == pytest.approx(values[2])
    assert v["verdict"].to_dict() == {"gradient": "passes", "guided_backprop": "fails",
                                      "gradcam": "cannot tell", "gradient_x_input": "fails"}
    # the same rule and numbers as the result's own verdict
    own = _cascading().verdict(at="layer4").set_index("method")
    pd.testing.assert_frame_equal(v[own.columns], own)
    assert v.loc["gradient", "first_below"] == "logits"
    assert v.loc["guided_backprop", "first_below"] == "stem"
    assert v.loc["gradient_x_input", "first_below"] == "never"
    by_number = sl.checks.verdict(_cascading(), by=2)
    assert by_number["verdict"].tolist() == v["verdict"].tolist()
    # judged at the last step, Guided Backprop passes: the step matters
    assert sl.checks.verdict(_cascading(), by="stem").set_index("method").loc[
        "guided_backprop", "verdict"] == "passes"


def test_verdict_over_several_results_keeps_only_agreeing_verdicts():
    shifted = _cascading(shift=0.1)  # gradcam clearly fails here (retained 0.62)
    v = sl.checks.verdict([_cascading(), shifted], by="layer4").set_index("method")
    assert v.loc["gradient", "verdict"] == "passes"
    assert v.loc["guided_backprop", "verdict"] == "fails"
    assert shifted.verdict(at="layer4").set_index("method").loc["gradcam", "verdict"] == "fails"
    assert v.loc["gradcam", "verdict"] == "cannot tell"     # the two results disagree
    assert v.loc["gradcam", "retained_low"] < 0.5 < v.loc["gradcam", "retained_high"]
    assert v.loc["gradient", "spread"] == pytest.approx(0.1 / 0.9)
    assert (v["results"] == 2).all()


def test_verdict_names_bad_arguments():
    r = _cascading()
    with pytest.raises(ValueError, match="by='fc'"):
        sl.checks.verdict(r, by="fc")
    with pytest.raises(ValueError, match="step number 1..3"):
        sl.checks.verdict(r, by=0)
    with pytest.raises(ValueError, match="metric='ssim' is not in this result"):
        sl.checks.verdict(r, metric="ssim")
    with pytest.raises(ValueError, match="threshold"):
        sl.checks.verdict(r, threshold=1.5)
    with pytest.raises(TypeError, match="SanityCheckResult"):
        sl.checks.verdict([r.table])
    other = _cascading({"gradient": (0.3, 0.2, 0.1)})
    with pytest.raises(ValueError, match="do not share"):
        sl.checks.verdict([r, other])
