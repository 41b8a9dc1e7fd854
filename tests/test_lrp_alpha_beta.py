"""LRP with the alpha-beta rule (ours: Captum has no general alpha-beta rule).

Held to three independent things: Captum's z+ rule (the case alpha = 1, beta = 0), a
NumPy computation of the rule written out with loops over inputs and outputs, and
relevance conservation on bias-free networks. Then the bad settings, the models it must
refuse, and the registry, ``explain`` and a sanity check that run it.
"""
import numpy as np
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib import grading
from sanity_lib.saliency import (DEFAULT_SETTINGS, METHODS, REGISTRY, UnsupportedModelError,
                                 explain, lookup, method_table)
from sanity_lib.saliency._propagation import lrp_alpha_beta

torch.set_num_threads(1)

RULES = [(1.0, 0.0), (2.0, 1.0), (3.0, 2.0)]


def mnist_model(kind, bias="keep"):
    """The library's MNIST MLP or CNN, untrained, seeded; biases kept, made |b| or zeroed."""
    model = sl.models.mnist_mlp(seed=0) if kind == "mlp" else sl.models.mnist_cnn(seed=0)
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                if bias == "abs":
                    module.bias.abs_()
                elif bias == "zero":
                    module.bias.zero_()
    return model


def digits(n=3, seed=0):
    """[0, 1] images with about half the pixels exactly 0, as the background of a digit."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=gen)
    return x * (torch.rand(n, 1, 28, 28, generator=gen) > 0.5)


# ------------------------------------------------------------ alpha = 1, beta = 0 is z+

@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_alpha_1_beta_0_is_captums_z_plus_rule(kind):
    """On inputs >= 0 and biases >= 0 the two agree exactly: the same output relevance
    (the target logit), the same split of the positive contributions, the bias in z+.
    The biases are made |b|: Captum keeps a negative bias in z+ too, ours puts it in z-."""
    model, x = mnist_model(kind, bias="abs"), digits()
    ours = explain(model, x, "lrp_alpha_beta", alpha=1.0, beta=0.0)
    captum = explain(model, x, "lrp_zplus")
    scale = captum.abs().max()
    assert scale > 0
    torch.testing.assert_close(ours, captum, rtol=1e-5, atol=1e-5 * float(scale))
    # ... and the biases matter: they absorb relevance, so the map sums to less.
    logit = model(x).max(1).values
    assert (ours.sum((1, 2, 3)) < logit - 1e-3 * logit.abs()).all()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_the_negative_bias_goes_to_z_minus_not_to_z_plus_as_in_captum(kind):
    """With the stock (mixed-sign) biases, z+ differs from Captum's only by where the
    negative biases go; zeroing them makes the two agree again."""
    model, x = mnist_model(kind), digits()
    ours = explain(model, x, "lrp_alpha_beta", alpha=1.0, beta=0.0)
    captum = explain(model, x, "lrp_zplus")
    assert (ours - captum).abs().max() > 1e-3 * captum.abs().max()
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.clamp_(min=0)
    torch.testing.assert_close(explain(model, x, "lrp_alpha_beta", alpha=1.0, beta=0.0),
                               explain(model, x, "lrp_zplus"), rtol=1e-5,
                               atol=1e-5 * float(captum.abs().max()))


# ------------------------------------------------------------ the rule, written out

def numpy_alpha_beta_layer(a, w, b, relevance, alpha, beta):
    """R_j = sum_k (alpha z_jk+ / z_k+ - beta z_jk- / z_k-) R_k with z_jk = a_j w_kj,
    b+ in z_k+ and b- in z_k-. A unit with contributions of one sign only passes all of
    R_k along them (z_jk / z_k); one with none passes nothing."""
    n_out, n_in = w.shape
    out = np.zeros(n_in)
    for k in range(n_out):
        z = [a[j] * w[k, j] for j in range(n_in)]
        z_up = sum(v for v in z if v > 0) + max(b[k], 0.0)
        z_down = sum(v for v in z if v < 0) + min(b[k], 0.0)
        if z_up > 0 and z_down < 0:
            c_up, c_down = alpha, beta
        elif z_up > 0:
            c_up, c_down = 1.0, 0.0
        elif z_down < 0:
            c_up, c_down = 0.0, -1.0
        else:
            continue
        for j in range(n_in):
            if z[j] > 0:
                out[j] += c_up * z[j] / z_up * relevance[k]
            elif z[j] < 0:
                out[j] -= c_down * z[j] / z_down * relevance[k]
    return out


def numpy_lrp(w1, b1, w2, b2, x, target, alpha, beta):
    """Linear -> ReLU -> Linear, one image at a time, forward and backward in NumPy."""
    maps = []
    for xi, t in zip(x, target):
        hidden = np.maximum(w1 @ xi + b1, 0.0)
        logits = w2 @ hidden + b2
        start = np.zeros_like(logits)
        start[t] = logits[t]
        r_hidden = numpy_alpha_beta_layer(hidden, w2, b2, start, alpha, beta)
        maps.append(numpy_alpha_beta_layer(xi, w1, b1, r_hidden, alpha, beta))
    return np.stack(maps)


def tiny_mlp(biases=False):
    """6 -> 5 -> 3 with mixed-sign weights; hidden unit 0 has only positive weights, so on
    an all-positive input it has no negative contributions (the one-sided case)."""
    gen = torch.Generator().manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(5, 6, generator=gen, dtype=torch.float64))
        model[0].weight[0].abs_()
        model[2].weight.copy_(torch.randn(3, 5, generator=gen, dtype=torch.float64))
        for layer in (model[0], model[2]):
            if biases:
                layer.bias.copy_(0.3 * torch.randn(layer.bias.shape, generator=gen,
                                                   dtype=torch.float64))
            else:
                layer.bias.zero_()
    x = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    x[0] = x[0].abs()                     # all positive: hidden unit 0 is one-sided
    return model, x


def _numpy_reference(model, x, target, alpha, beta):
    params = [p.detach().numpy() for p in (model[0].weight, model[0].bias,
                                           model[2].weight, model[2].bias)]
    return torch.from_numpy(numpy_lrp(*params, x.numpy(), target.numpy(), alpha, beta))


@pytest.mark.parametrize("alpha, beta", RULES)
@pytest.mark.parametrize("biases", [False, True])
def test_the_rule_equals_a_numpy_computation_layer_by_layer(alpha, beta, biases):
    model, x = tiny_mlp(biases)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    hidden = model[1](model[0](x))
    assert (hidden == 0).any() and (hidden > 0).any()            # dead and live units
    assert (model[0].weight[0] * x[0] > 0).all()                  # the one-sided unit
    want = _numpy_reference(model, x, target, alpha, beta)
    got = explain(model, x, "lrp_alpha_beta", target=target, alpha=alpha, beta=beta)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert torch.equal(got, lrp_alpha_beta(model, x, target, alpha=alpha, beta=beta))


def test_negative_inputs_split_by_contribution_not_by_weight():
    """z+ is a+ w+ + a- w-: with negative inputs the z+ rule is not Captum's w+ rule."""
    model, x = tiny_mlp()
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    got = explain(model, x, "lrp_alpha_beta", target=target, alpha=1.0, beta=0.0)
    torch.testing.assert_close(got, _numpy_reference(model, x, target, 1.0, 0.0))
    assert not torch.allclose(got, explain(model, x, "lrp_zplus", target=target), atol=1e-3)


# ------------------------------------------------------------ conservation

@pytest.mark.parametrize("alpha, beta", RULES)
@pytest.mark.parametrize("kind", ["tiny", "mlp", "cnn"])
def test_without_biases_the_relevance_sums_to_the_target_logit(kind, alpha, beta):
    if kind == "tiny":
        model, x = tiny_mlp()
    else:
        model, x = mnist_model(kind, bias="zero"), digits()
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    relevance = explain(model, x, "lrp_alpha_beta", alpha=alpha, beta=beta)
    sums = relevance.reshape(len(x), -1).sum(1)
    torch.testing.assert_close(sums, logits[torch.arange(len(x)), target],
                               rtol=1e-5, atol=1e-9)
    zplus = explain(model, x, "lrp_alpha_beta", alpha=1.0, beta=0.0)
    if kind != "tiny":   # inputs >= 0: z+ gives no negative relevance ...
        assert (zplus >= 0).all()
    if beta > 0:         # ... alpha-beta does, and it is a different map
        # (The untrained MLP's 2500 hidden units average the negative shares out at
        # every pixel; its map still differs from z+.)
        assert kind == "mlp" or (relevance < 0).any()
        assert not torch.allclose(relevance, zplus, atol=1e-3 * float(zplus.abs().max()))


def test_the_default_is_alpha_2_beta_1():
    model, x = mnist_model("cnn"), digits(2)
    default = explain(model, x, "lrp_alpha_beta")
    torch.testing.assert_close(default, explain(model, x, "lrp_alpha_beta", alpha=2, beta=1))
    target = model(x).argmax(1)
    torch.testing.assert_close(default, lrp_alpha_beta(model, x, target))


# ------------------------------------------------------------ what it refuses

@pytest.mark.parametrize("settings, match", [
    ({"alpha": 2.0, "beta": 0.0}, r"alpha-beta rule needs alpha - beta = 1.*alpha=2.0, beta=0.0"),
    ({"alpha": 1.5, "beta": 1.0}, r"alpha - beta = 1"),
    ({"beta": -1.0}, r"beta must be a finite number >= 0.0 \(the LRP alpha-beta rule"),
    ({"alpha": 0.5, "beta": -0.5}, r"alpha must be a finite number >= 1.0 \(the LRP alpha-beta"),
    ({"alpha": "2"}, r"alpha must be a finite number"),
    ({"alpha": 2.0, "beta": "1"}, r"beta must be a finite number"),
    ({"alpha": float("nan")}, r"alpha must be a finite number"),
    ({"alpha": True, "beta": 0.0}, r"alpha must be a finite number"),
])
def test_bad_settings_raise_value_error_naming_them(settings, match):
    model, x = tiny_mlp()
    with pytest.raises(ValueError, match=match):
        explain(model, x, "lrp_alpha_beta", **settings)
    with pytest.raises(ValueError, match=match):
        lrp_alpha_beta(model, x, 0, **{"alpha": 2.0, "beta": 1.0, **settings})


class _Functional(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.fc1, self.fc2, self.op = nn.Linear(4, 4), nn.Linear(4, 2), op

    def forward(self, x):
        return self.fc2(self.op(self.fc1(x), x))


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(4, 4), nn.Linear(4, 2), nn.ReLU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.act(x))))


@pytest.mark.parametrize("model, match", [
    (sl.models.mnist_mlp("tanh"), r"no LRP alpha-beta rule for Tanh: 'act1', 'act2', 'act3'"),
    (sl.models.mnist_cnn("gelu"), r"no LRP alpha-beta rule for GELU"),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU6(), nn.Linear(4, 2)), r"no LRP alpha-beta rule for ReLU6"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False),
                   nn.Flatten(), nn.Linear(2 * 26 * 26, 2)),   # batch statistics: not affine
     r"no LRP alpha-beta rule for BatchNorm2d"),
    (_Functional(lambda h, x: torch.tanh(h)), r"functional tanh between layers"),
    (_Functional(lambda h, x: h + x), r"functional add between layers"),
    (_Twice(), r"used more than once.*'act'.*x2"),
])
def test_models_the_rule_does_not_cover_are_refused(model, match):
    images = any(isinstance(m, nn.Conv2d) for m in model.modules()) or \
        isinstance(model, sl.models.MnistMLP)
    x = torch.rand(3, 1, 28, 28) if images else torch.randn(3, 4)
    model.eval()
    with pytest.raises(UnsupportedModelError,
                       match=r"lrp_alpha_beta: the alpha-beta rule does not cover this "
                             r"model\..*" + match + r".*Supported: Linear, Conv2d"):
        explain(model, x, "lrp_alpha_beta")
    with pytest.raises(UnsupportedModelError, match=match):
        lrp_alpha_beta(model, x, 0)


def test_captums_lrp_still_accepts_tanh_which_is_why_the_check_is_its_own():
    model = sl.models.mnist_mlp("tanh")
    assert explain(model, torch.rand(2, 1, 28, 28), "lrp_zplus").shape == (2, 1, 28, 28)


def test_batch_norm_dropout_and_average_pooling_are_covered():
    """Eval-mode batch norm and average pooling are affine layers of the rule; dropout in
    eval mode passes relevance on. Conserved without biases (BN's shift is a bias)."""
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, affine=False),
        nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 3, 3, padding=1, bias=False), nn.ReLU(),
        nn.Dropout(0.5), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 3, bias=False),
    ).double().eval()
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)        # a scale, but no shift
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    logits = model(x)
    relevance = explain(model, x, "lrp_alpha_beta")
    torch.testing.assert_close(relevance.sum((1, 2, 3)), logits.max(1).values)
    assert (relevance < 0).any()


# ------------------------------------------------------------ registry, explain, checks

def test_it_is_a_registered_method_with_its_settings():
    assert "lrp_alpha_beta" in METHODS and METHODS.index("lrp_alpha_beta") == len(METHODS) - 1
    spec = REGISTRY["lrp_alpha_beta"]
    assert (spec.label, spec.paper) == ("LRP-αβ", "not in the paper")
    assert spec.reference == "Bach et al. 2015; Montavon et al. 2017"
    assert dict(spec.settings) == {"alpha": 2.0, "beta": 1.0}
    assert dict(DEFAULT_SETTINGS["lrp_alpha_beta"]) == {"alpha": 2.0, "beta": 1.0,
                                                        "batch_size": 32, "progress": False}
    assert "lrp_alpha_beta" in list(method_table()["method"])
    assert "``lrp_alpha_beta``" in sl.saliency.__doc__
    # The name is this method's now; z+ keeps its own alpha-beta alias.
    assert lookup("lrp_alpha_beta") == lookup("LRP-αβ") == lookup("lrp_ab") == "lrp_alpha_beta"
    assert grading.method_name("LRP-αβ") == "lrp_alpha_beta"
    assert lookup("lrp_alpha1_beta0") == "lrp_zplus"
    assert "lrp_alpha_beta" not in REGISTRY["lrp_zplus"].aliases
    with pytest.raises(TypeError, match="takes no setting 'epsilon'"):
        explain(*tiny_mlp(), "lrp_alpha_beta", epsilon=1e-6)


def test_explain_batches_and_leaves_the_model_alone():
    model, x = mnist_model("cnn"), digits(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    whole = explain(model, x, "lrp_alpha_beta")
    chunks = explain(model, x, "lrp_alpha_beta", batch_size=2)
    torch.testing.assert_close(whole, chunks)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())
    assert not whole.requires_grad and whole.shape == x.shape


def test_it_runs_in_the_model_randomization_test():
    model, x = mnist_model("cnn"), digits(2)
    result = sl.model_randomization_test(model, x, {"lrp_alpha_beta": {"alpha": 3.0,
                                                                       "beta": 2.0}},
                                         progress=False)
    assert set(result.table["method"]) == {"lrp_alpha_beta"}
    torch.testing.assert_close(result.maps["lrp_alpha_beta"][0],
                               explain(model, x, "lrp_alpha_beta", alpha=3.0, beta=2.0))
    assert len(result.maps["lrp_alpha_beta"]) == 1 + len(model.layer_group_names)
