"""Tests for sanity_lib.randomization: cascading / independent randomization and noise."""
import copy

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from sanity_lib import randomization as R
from sanity_lib.models import efficientnet_lite0, mnist_cnn, mnist_mlp

torch.set_num_threads(1)

CNN_GROUPS = ["conv1", "conv2", "fc1", "logits"]  # input -> output


# ----------------------------------------------------------------------------- helpers

def bits(t):
    """The raw bytes of a tensor: equal bits, not just equal values (0.0 vs -0.0)."""
    return t.detach().contiguous().flatten().view(torch.uint8)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def group_of(name):
    return name.split(".")[0]


def changed_groups(original, randomized):
    """Groups where every parameter tensor changed; asserts the others are bit-identical."""
    changed = set()
    ref = dict(original.named_parameters())
    by_group = {}
    for name, p in randomized.named_parameters():
        by_group.setdefault(group_of(name), []).append(not same_bits(p, ref[name]))
    for group, flags in by_group.items():
        assert all(flags) or not any(flags), f"group {group} only partly changed: {flags}"
        if all(flags):
            changed.add(group)
    return changed


class TinyBN(nn.Module):
    """A small CNN with batch norm whose running statistics are far from 0 / 1."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.flatten(self.pool(self.block2(self.block1(x)))))


@pytest.fixture
def bn_model():
    torch.manual_seed(0)
    model = TinyBN().train()
    with torch.no_grad():
        for _ in range(5):  # running statistics of shifted, scaled inputs
            model(3 * torch.randn(8, 3, 6, 6) + 2)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # "trained" affine parameters
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1.0, 1.0)
    return model.eval()


@pytest.fixture(scope="module")
def cnn():
    return mnist_cnn(seed=0)


# ----------------------------------------------------------------------------- order

def test_top_down_goes_from_logits_to_input_and_bottom_up_reverses(cnn):
    assert [n for n, _ in R.cascading(cnn)] == ["logits", "fc1", "conv2", "conv1"]
    assert [n for n, _ in R.cascading(cnn, order="bottom_up")] == CNN_GROUPS
    assert R.randomization_order(cnn) == ["logits", "fc1", "conv2", "conv1"]
    assert R.randomization_order(mnist_mlp(), "bottom_up") == ["fc1", "fc2", "fc3", "logits"]
    assert [n for n, _ in R.independent(cnn)] == ["logits", "fc1", "conv2", "conv1"]
    assert [n for n, _ in R.independent(cnn, order="bottom_up")] == CNN_GROUPS


@pytest.mark.parametrize("order", ["top_down", "bottom_up"])
@pytest.mark.parametrize("init", ["default", "truncated_normal", "permutation"])
def test_cascading_randomizes_exactly_the_first_k_groups(cnn, order, init):
    expected = CNN_GROUPS[::-1] if order == "top_down" else CNN_GROUPS
    steps = list(R.cascading(cnn, order=order, init=init, seed=1))  # all kept at once
    assert len({id(m) for _, m in steps}) == len(steps)  # new models, not one reused
    for k, (name, model) in enumerate(steps, start=1):
        assert name == expected[k - 1]
        assert changed_groups(cnn, model) == set(expected[:k])
        assert not model.training


def test_a_group_keeps_its_randomized_weights_at_later_steps(cnn):
    steps = dict(R.cascading(cnn, init="normal"))
    for later in ("fc1", "conv2", "conv1"):
        assert same_bits(steps[later].logits.weight, steps["logits"].logits.weight)


def test_independent_changes_exactly_one_group_with_cascadings_weights(cnn):
    cascade = dict(R.cascading(cnn, init="uniform", seed=4))
    full = cascade["conv1"]  # the last top-down step: everything randomized
    for name, model in R.independent(cnn, init="uniform", seed=4):
        assert changed_groups(cnn, model) == {name}
        for pname, p in getattr(model, name).named_parameters():
            assert same_bits(p, getattr(full, name).get_parameter(pname))


# ----------------------------------------------------------------------------- no mutation

@pytest.mark.parametrize("make_steps", [
    lambda m: R.cascading(m, init="normal", batchnorm="reset"),
    lambda m: R.cascading(m, init="permutation", order="bottom_up"),
    lambda m: R.independent(m, init="default", batchnorm="reset"),
    lambda m: R.gaussian_noise(m, std=0.5),
    lambda m: R.gaussian_noise(m, std=0.5, relative=True, order="bottom_up"),
], ids=["cascading", "cascading-perm", "independent", "noise", "noise-relative"])
def test_the_given_model_is_never_changed(bn_model, make_steps):
    model = bn_model.train()  # a model in train mode must stay in train mode
    calls = []
    handle = model.block1.register_forward_hook(lambda *args: calls.append(1))
    before = snapshot(model)
    hooks_before = (dict(model._forward_hooks), dict(model.block1._forward_hooks))
    x = torch.randn(2, 3, 6, 6)

    steps = list(make_steps(model))

    assert len(steps) == 3
    for _, randomized in steps:
        assert not randomized.training and all(not m.training for m in randomized.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:  # weights and buffers (running stats, num_batches_tracked)
        assert same_bits(before[key], after[key]), key
    assert model.training and all(m.training for m in model.modules())
    assert (dict(model._forward_hooks), dict(model.block1._forward_hooks)) == hooks_before
    model.eval()(x)
    assert len(calls) == 1  # the hook still fires, once
    handle.remove()


# ----------------------------------------------------------------------------- seeds

def test_same_seed_same_weights_different_seed_different_weights(cnn):
    for make in (lambda s: R.cascading(cnn, init="default", seed=s),
                 lambda s: R.gaussian_noise(cnn, std=0.1, seed=s)):
        a, b, c = list(make(7)), list(make(7)), list(make(8))
        for (_, ma), (_, mb), (_, mc) in zip(a, b, c):
            for (name, pa), pb, pc in zip(ma.named_parameters(), mb.parameters(),
                                          mc.parameters()):
                assert same_bits(pa, pb), name
        # seed 8 draws new values for every randomized tensor
        for (name, pa), pc in zip(a[-1][1].named_parameters(), c[-1][1].parameters()):
            assert not torch.equal(pa, pc), name


def test_layers_of_the_same_shape_get_different_weights():
    twins = nn.Sequential(nn.Linear(50, 50), nn.Linear(50, 50))
    for init in ("default", "normal", "permutation"):
        R.randomize_module(twins, init=init, seed=0)
        assert not torch.equal(twins[0].weight, twins[1].weight), init
    with torch.no_grad():
        twins[1].weight.copy_(twins[0].weight)
    R.add_gaussian_noise(twins, std=0.1)
    assert not torch.equal(twins[0].weight, twins[1].weight)


def test_a_groups_weights_do_not_depend_on_the_order_or_on_other_groups(cnn):
    top = list(R.cascading(cnn, init="truncated_normal", seed=2))
    bottom = list(R.cascading(cnn, init="truncated_normal", seed=2, order="bottom_up"))
    # conv1 is randomized last top-down and first bottom-up: the same weights
    assert same_bits(top[-1][1].conv1.weight, bottom[0][1].conv1.weight)
    # fully randomized, both orders give the same network
    for p, q in zip(top[-1][1].parameters(), bottom[-1][1].parameters()):
        assert same_bits(p, q)
    # and randomize_module on that layer alone, named as in the model, agrees
    alone = R.randomize_module(copy.deepcopy(cnn.fc1), init="truncated_normal", seed=2,
                               prefix="fc1")
    assert same_bits(alone.weight, top[-1][1].fc1.weight)


def test_renamed_groups_yield_their_names_and_the_same_weights(cnn):
    plain = list(R.cascading(cnn, init="normal", groups=["conv1", "logits"]))
    renamed = list(R.cascading(cnn, init="normal", groups=[("first", "conv1"),
                                                           ("top", "logits")]))
    assert [n for n, _ in plain] == ["logits", "conv1"]
    assert [n for n, _ in renamed] == ["top", "first"]
    assert changed_groups(cnn, renamed[-1][1]) == {"conv1", "logits"}
    for (_, a), (_, b) in zip(plain, renamed):
        for p, q in zip(a.parameters(), b.parameters()):
            assert same_bits(p, q)


def test_the_global_random_state_is_neither_used_nor_changed(cnn):
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        results.append([m for _, m in R.cascading(cnn, init="default")])
        assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(results[0][-1].parameters(), results[1][-1].parameters()):
        assert same_bits(p, q)


# ----------------------------------------------------------------------------- init schemes

def test_init_schemes_are_listed():
    assert list(R.init_schemes()) == list(R.INIT_SCHEMES) == [
        "default", "normal", "truncated_normal", "uniform", "permutation"]


def test_truncation_factor_is_the_std_of_a_two_sigma_truncated_normal():
    assert R.TRUNCATED_NORMAL_STD_FACTOR == pytest.approx(scipy.stats.truncnorm(-2, 2).std(),
                                                          rel=1e-12)


def _fresh(init, fan_in=2000, out=500, seed=3):
    layer = R.randomize_module(nn.Linear(fan_in, out), init=init, seed=seed)
    return layer.weight.detach().double().numpy().ravel(), layer.bias.detach()


def test_truncated_normal_is_cut_at_two_sigma_with_he_std():
    w, bias = _fresh("truncated_normal")
    std = np.sqrt(2 / 2000)
    sigma = std / scipy.stats.truncnorm(-2, 2).std()  # scale of the underlying normal
    assert np.abs(w).max() <= 2 * sigma
    assert np.abs(w).max() > 0.999 * 2 * sigma  # truncated at 2 sigma, not narrower
    assert w.std() == pytest.approx(std, rel=0.01)
    assert scipy.stats.kstest(w, scipy.stats.truncnorm(-2, 2, scale=sigma).cdf).statistic < 0.005
    assert torch.all(bias == 0)


def test_normal_is_he_normal_and_not_truncated():
    w, bias = _fresh("normal")
    std = np.sqrt(2 / 2000)
    assert w.std() == pytest.approx(std, rel=0.01)
    assert np.abs(w).max() > 4 * std  # the tails are there
    assert scipy.stats.kstest(w, scipy.stats.norm(scale=std).cdf).statistic < 0.005
    assert torch.all(bias == 0)


def test_uniform_is_he_uniform():
    w, bias = _fresh("uniform")
    bound = np.sqrt(6 / 2000)
    assert np.abs(w).max() <= bound
    assert w.std() == pytest.approx(np.sqrt(2 / 2000), rel=0.01)
    assert scipy.stats.kstest(w, scipy.stats.uniform(-bound, 2 * bound).cdf).statistic < 0.005
    assert torch.all(bias == 0)


def test_default_is_pytorchs_kaiming_uniform_for_linear():
    original = nn.Linear(1000, 300)
    layer = R.randomize_module(copy.deepcopy(original), init="default", seed=5)
    w, b = layer.weight.detach().double().numpy().ravel(), layer.bias.detach()
    bound = 1 / np.sqrt(1000)
    assert np.abs(w).max() <= bound
    assert scipy.stats.kstest(w, scipy.stats.uniform(-bound, 2 * bound).cdf).statistic < 0.01
    assert b.abs().max() <= bound and b.abs().min() > 0  # redrawn, not zeroed
    assert not torch.equal(layer.weight, original.weight)
    assert not torch.equal(layer.bias, original.bias)


def test_default_runs_the_layers_own_reset_parameters():
    class Marked(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(4, 3))

        def reset_parameters(self):
            nn.init.constant_(self.w, 7.0)

    assert torch.all(R.randomize_module(Marked(), init="default").w == 7.0)


@pytest.mark.parametrize("init", ["normal", "truncated_normal", "uniform"])
def test_conv_weights_scale_with_inputs_times_kernel_area(init):
    conv = R.randomize_module(nn.Conv2d(64, 128, 5), init=init, seed=0)  # fan_in 64 * 25
    assert float(conv.weight.detach().std()) == pytest.approx(np.sqrt(2 / 1600), rel=0.02)
    depthwise = R.randomize_module(nn.Conv2d(256, 256, 3, groups=256), init=init, seed=0)  # 1 * 9
    assert float(depthwise.weight.detach().std()) == pytest.approx(np.sqrt(2 / 9), rel=0.08)


def test_permutation_shuffles_the_trained_values():
    original = nn.Linear(300, 200)
    layer = R.randomize_module(copy.deepcopy(original), init="permutation", seed=0)
    for p, q in ((layer.weight, original.weight), (layer.bias, original.bias)):
        assert p.shape == q.shape
        assert torch.equal(p.flatten().sort().values, q.flatten().sort().values)
        assert (p == q).float().mean() < 0.02  # almost every value moved


def test_parameters_without_a_fan_in_restart_from_their_own_default():
    model = nn.Sequential(nn.Linear(10, 10), nn.PReLU(10))
    with torch.no_grad():
        model[1].weight.fill_(-3.0)
    R.randomize_module(model, init="normal")
    assert torch.all(model[1].weight == 0.25)  # PReLU's own initial slope

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    with pytest.raises(ValueError, match="reset_parameters.*permutation"):
        R.randomize_module(Odd(), init="normal")
    with pytest.raises(ValueError, match="reset_parameters"):
        R.randomize_module(Odd(), init="default")


# ----------------------------------------------------------------------------- batch norm

def _bns(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("init", ["default", "normal", "permutation"])
def test_batchnorm_keep_leaves_running_statistics_alone(bn_model, init):
    *_, (_, randomized) = R.cascading(bn_model, init=init, batchnorm="keep")
    for new, old in zip(_bns(randomized), _bns(bn_model)):
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            assert same_bits(getattr(new, buf), getattr(old, buf))
        if init == "permutation":
            assert torch.equal(new.weight.sort().values, old.weight.sort().values)
            assert not torch.equal(new.weight, old.weight)
        else:  # trainable affine parameters restart as in a new layer (TF's beta = 0)
            assert torch.all(new.weight == 1) and torch.all(new.bias == 0)


@pytest.mark.parametrize("init", ["default", "permutation"])
def test_batchnorm_reset_returns_the_layer_to_its_new_state(bn_model, init):
    keep = dict(R.independent(bn_model, init=init, batchnorm="keep"))
    reset = dict(R.independent(bn_model, init=init, batchnorm="reset"))
    fresh = nn.BatchNorm2d(8)
    new = reset["block1"].block1[1]
    for buf in ("running_mean", "running_var", "num_batches_tracked"):
        assert same_bits(getattr(new, buf), getattr(fresh, buf))
    assert torch.all(new.weight == 1) and torch.all(new.bias == 0)
    # the other block's batch norm is not in the randomized group: untouched
    assert same_bits(reset["block1"].block2[1].running_var, bn_model.block2[1].running_var)
    # and the choice changes what the network computes
    x = torch.randn(4, 3, 6, 6)
    assert not torch.allclose(keep["block1"](x), reset["block1"](x), atol=1e-3)


def test_efficientnet_keep_and_reset_on_a_real_batchnorm_network():
    model = efficientnet_lite0(pretrained=True)
    steps = {policy: dict(R.independent(model, init="truncated_normal", batchnorm=policy,
                                        groups=["stem", "head"]))
             for policy in ("keep", "reset")}
    old_bn = _bns(model.stem)
    assert len(old_bn) == 1 and not torch.all(old_bn[0].running_var == 1)
    kept_bn, reset_bn = _bns(steps["keep"]["stem"].stem), _bns(steps["reset"]["stem"].stem)
    assert same_bits(kept_bn[0].running_var, old_bn[0].running_var)
    assert same_bits(kept_bn[0].running_mean, old_bn[0].running_mean)
    assert torch.all(reset_bn[0].running_var == 1) and torch.all(reset_bn[0].running_mean == 0)
    # only the stem was randomized in that model: the head is still the trained one
    for p, q in zip(steps["keep"]["stem"].head.parameters(), model.head.parameters()):
        assert same_bits(p, q)
    x = model.preprocess(torch.rand(1, 3, 64, 64))
    assert not torch.allclose(steps["keep"]["stem"](x), steps["reset"]["stem"](x))


# ----------------------------------------------------------------------------- noise

def test_zero_noise_changes_no_bit(cnn):
    model = copy.deepcopy(cnn)
    with torch.no_grad():
        model.logits.weight[0] = -0.0  # x + 0.0 would flip these sign bits
    for _, noisy in R.gaussian_noise(model, std=0.0):
        for p, q in zip(noisy.parameters(), model.parameters()):
            assert same_bits(p, q)
    for _, noisy in R.gaussian_noise(model, std=0, relative=True):
        assert same_bits(noisy.logits.weight, model.logits.weight)


def test_noise_has_the_requested_std_and_cascades_from_the_top(cnn):
    s = 0.05
    steps = list(R.gaussian_noise(cnn, std=s, seed=0))
    for k, (name, model) in enumerate(steps, start=1):
        assert changed_groups(cnn, model) == set(CNN_GROUPS[::-1][:k])
    delta = (steps[1][1].fc1.weight - cnn.fc1.weight).detach().double().numpy().ravel()
    assert delta.std() == pytest.approx(s, rel=0.01)
    assert abs(delta.mean()) < 0.01 * s
    assert scipy.stats.kstest(delta, scipy.stats.norm(scale=s).cdf).statistic < 0.005
    # noise is added once per group: the logits keep their step-1 noise afterwards
    for _, model in steps[1:]:
        assert same_bits(model.logits.weight, steps[0][1].logits.weight)


def test_noise_scales_with_std_on_the_same_draws(cnn):
    one = dict(R.gaussian_noise(cnn, std=0.1, seed=3))["conv1"]
    two = dict(R.gaussian_noise(cnn, std=0.2, seed=3))["conv1"]
    for p, q, orig in zip(one.parameters(), two.parameters(), cnn.parameters()):
        torch.testing.assert_close(q - orig, 2 * (p - orig), rtol=0, atol=1e-6)


def test_relative_noise_follows_each_tensors_own_std():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Linear(2000, 2000)
            self.second = nn.Linear(2000, 10)

    torch.manual_seed(0)
    model = Two()
    with torch.no_grad():  # weights and biases on very different scales
        model.first.weight.mul_(0.01)
        model.first.bias.mul_(100.0)
    s = 0.3
    *_, (_, noisy) = R.gaussian_noise(model, std=s, relative=True, seed=1)
    for name in ("weight", "bias"):
        p, q = getattr(model.first, name), getattr(noisy.first, name)
        expected = s * float(p.detach().double().std(correction=0))
        tolerance = 0.01 if name == "weight" else 0.08  # 4 million vs 2000 values
        assert float((q - p).detach().double().std()) == pytest.approx(expected, rel=tolerance)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, match", [
    (lambda m: R.cascading(m, init="xavier"), "init='xavier'.*truncated_normal.*permutation"),
    (lambda m: R.independent(m, init="Normal"), "init='Normal'.*'normal'"),
    (lambda m: R.cascading(m, order="sideways"), "order='sideways'.*top_down.*bottom_up"),
    (lambda m: R.gaussian_noise(m, 0.1, order="up"), "order='up'.*bottom_up"),
    (lambda m: R.cascading(m, batchnorm="freeze"), "batchnorm='freeze'.*keep.*reset"),
    (lambda m: R.independent(m, batchnorm=None), "batchnorm=None.*keep.*reset"),
    (lambda m: R.gaussian_noise(m, std=-0.1), "std must be .*>= 0"),
    (lambda m: R.gaussian_noise(m, std=float("nan")), "std must be a finite"),
    (lambda m: R.cascading(m, groups=["conv1", "nope"]), "nope"),
    (lambda m: R.randomize_module(m, init="zeros"), "init='zeros'.*uniform"),
])
def test_bad_arguments_fail_at_call_time_with_the_valid_values(cnn, call, match):
    with pytest.raises(ValueError, match=match):
        call(cnn)  # no iteration needed: checked before the first step


@pytest.mark.parametrize("call", [
    lambda m: R.cascading(m, seed="0"),
    lambda m: R.gaussian_noise(m, std="0.1"),
    lambda m: R.gaussian_noise(m, std=0.1, relative="yes"),
    lambda m: R.cascading(m.state_dict()),
])
def test_wrong_types_raise_type_error(cnn, call):
    with pytest.raises(TypeError, match="seed|std|relative|torch.nn.Module"):
        call(cnn)


def test_the_default_scheme_is_the_papers_truncated_normal_everywhere(cnn):
    # chapter 3: PyTorch's own draws collapse EfficientNet-Lite0, so no call falls back to them
    import inspect

    from sanity_lib import checks
    from sanity_lib.studies import mprt

    assert R.DEFAULT_INIT == "truncated_normal"
    for fn in (R.cascading, R.independent, R.randomize_module, mprt.fully_randomized,
               mprt.efficient_mprt, mprt.smooth_mprt):
        assert inspect.signature(fn).parameters["init"].default == "truncated_normal", fn
    # the sweep leaves it unset (gaussian noise uses none) and fills in the same default
    assert inspect.signature(checks.model_randomization_test).parameters["init"].default is None
    default = [m.state_dict() for _, m in R.cascading(cnn)]
    explicit = [m.state_dict() for _, m in R.cascading(cnn, init="truncated_normal")]
    pytorch = [m.state_dict() for _, m in R.cascading(cnn, init="default")]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(default, explicit) for k in a)
    assert not torch.equal(default[0]["logits.weight"], pytorch[0]["logits.weight"])


# ------------------------------------------------------------- batch-norm recalibration

def test_recalibrate_batchnorm_takes_the_statistics_of_the_inputs(bn_model):
    """Each layer's running mean and variance become those of its own input over x,
    computed here by hand from the layers before it; nothing else changes."""
    model = copy.deepcopy(bn_model)
    params = {k: v.clone() for k, v in model.named_parameters()}
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(10, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    assert R.recalibrate_batchnorm(model, x) is model and not model.training
    with torch.no_grad():
        z1 = model.block1[0](x)                      # the first batch norm's input
        # the second's: in the calibrating pass the first normalizes by its batch statistics
        bn1 = model.block1[1]
        normalized = (z1 - z1.mean(dim=(0, 2, 3), keepdim=True)) / torch.sqrt(
            z1.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + bn1.eps)
        after1 = torch.relu(normalized * bn1.weight.view(1, -1, 1, 1)
                            + bn1.bias.view(1, -1, 1, 1))
        z2 = model.block2[0](after1)
    for bn, z in ((model.block1[1], z1), (model.block2[1], z2)):
        torch.testing.assert_close(bn.running_mean, z.mean(dim=(0, 2, 3)))
        torch.testing.assert_close(bn.running_var, z.var(dim=(0, 2, 3), unbiased=True))
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]), k
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == momenta
    with pytest.raises(ValueError, match="at least two inputs"):
        R.recalibrate_batchnorm(model, x[:1])


def test_recalibrate_in_the_test_matches_doing_it_by_hand(bn_model):
    """model_randomization_test(batchnorm="recalibrate") explains each randomized copy after
    re-estimating its statistics on the explained inputs, and differs from "keep"."""
    import sanity_lib as sl

    x = 3 * torch.randn(6, 3, 6, 6, generator=torch.Generator().manual_seed(4)) + 2
    result = sl.model_randomization_test(bn_model, x, ["gradient"], mode="independent",
                                         batchnorm="recalibrate", progress=False)
    kept = sl.model_randomization_test(bn_model, x, ["gradient"], mode="independent",
                                       progress=False)
    for k, (name, randomized) in enumerate(R.independent(bn_model), start=1):
        by_hand = sl.saliency.explain(R.recalibrate_batchnorm(randomized, x), x, "gradient",
                                      target=result.targets[k])
        torch.testing.assert_close(result.maps["gradient"][k], by_hand)
    assert not torch.allclose(result.maps["gradient"][1], kept.maps["gradient"][1])
    assert result.settings["batchnorm"] == "recalibrate"
