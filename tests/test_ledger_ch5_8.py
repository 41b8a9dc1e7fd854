"""The claims ledger of chapters 5 to 8: every rule agrees, differs and (where it can) straddles.

Each test feeds a rule numbers that support the paper, numbers that contradict it, and
numbers in between, and checks the verdict; a chapter that forgets a number gets an error
naming it.
"""
import math

import pytest

from sanity_lib.course.ledger import ch5


def verdicts(module, measured):
    return {c.claim: c.verdict for c in module.claims(measured)}


def by_start(module, measured, start):
    """The verdict of the one claim whose text starts with ``start``."""
    found = [v for claim, v in verdicts(module, measured).items() if claim.startswith(start)]
    assert len(found) == 1, (start, list(verdicts(module, measured)))
    return found[0]


# --- chapter 5 -----------------------------------------------------------------------------

def ch5_agreeing():
    """Numbers with which every chapter-5 claim agrees with the paper."""
    m = dict.fromkeys(ch5.NEEDS, 0.0)
    m.update(linear_gradient_dev=0.0, linear_smoothgrad_dev=1.5e-8, linear_ig_dev=2.2e-8,
             linear_random_gradient_abs=0.04, linear_random_ig_abs=0.99,
             ig_x_mnist=0.99, ig_w_mnist=0.40, ig_x_photos=0.95, ig_w_photos=0.30,
             xuv_abs_mnist=0.99, xuv_abs_photos=0.41,
             conv_photos_min=0.50, conv_photos_max=0.60, conv_mnist_min=0.5, conv_mnist_max=0.8,
             digit_sobel=0.73, floor_photos=0.002, canny_sobel_photos=0.45,
             random_net_photos_min=0.46, random_net_photos_max=0.7,
             random_net_mnist_min=0.1, random_net_mnist_max=0.7)
    return m


def test_ch5_every_claim_can_agree_and_names_its_source():
    claims = ch5.claims(ch5_agreeing())
    assert [c.verdict for c in claims] == ["agrees"] * 5
    assert all(c.source.startswith("Sec.") for c in claims)
    assert not any("Sobel-initialized" in c.claim or "reviewer" in c.claim.lower()
                   for c in claims)


@pytest.mark.parametrize("change, start, verdict", [
    # the linear model's gradient is not w
    (dict(linear_gradient_dev=0.3, linear_smoothgrad_dev=0.2), "Linear model: the gradient",
     "differs"),
    (dict(linear_smoothgrad_dev=0.2), "Linear model: the gradient", "partly"),
    # IG is not x * w, and follows the weights
    (dict(linear_ig_dev=0.5, ig_x_mnist=0.3, ig_w_mnist=0.8, ig_x_photos=0.2, ig_w_photos=0.9),
     "Linear model: IG", "differs"),
    # the input and the weights share the photos' IG map (the chapter's case)
    (dict(ig_x_photos=0.68, ig_w_photos=0.62), "Linear model: IG", "partly"),
    (dict(xuv_abs_mnist=0.05, xuv_abs_photos=0.01), "x ⊙ u", "differs"),
    (dict(xuv_abs_photos=0.1), "x ⊙ u", "partly"),
    # a random layer whose gradient is at the noise floor is no edge detector
    (dict(conv_photos_min=-0.01, conv_photos_max=0.001), "A random 3 x 3", "differs"),
    (dict(conv_photos_min=0.04, conv_photos_max=0.14), "A random 3 x 3", "partly"),
    (dict(random_net_photos_min=-0.2, random_net_photos_max=0.0), "The maps of fully", "differs"),
    (dict(random_net_photos_min=0.10, random_net_photos_max=0.20), "The maps of fully",
     "partly"),
])
def test_ch5_rules_follow_the_numbers(change, start, verdict):
    assert by_start(ch5, {**ch5_agreeing(), **change}, start) == verdict


def test_ch5_edge_like_reads_the_floor_and_the_reference():
    assert ch5.edge_like(0.45, 0.5, floor=0.0, reference=0.45) is True
    assert ch5.edge_like(-0.1, 0.0, floor=0.0, reference=0.45) is False
    assert ch5.edge_like(0.0, 0.44, floor=0.0, reference=0.45) is None
    with pytest.raises(ValueError, match="must not exceed"):
        ch5.edge_like(0.5, 0.4, floor=0.0, reference=0.45)


def test_ch5_dominated():
    assert ch5.dominated(0.95, 0.2) is True
    assert ch5.dominated(0.5, 0.5) is False
    assert ch5.dominated(0.6, 0.5) is None


def test_ch5_missing_and_nan_numbers_are_named():
    m = ch5_agreeing()
    del m["canny_sobel_photos"]
    with pytest.raises(KeyError, match="canny_sobel_photos"):
        ch5.claims(m)
    with pytest.raises(ValueError, match="xuv_abs_mnist"):
        ch5.claims({**ch5_agreeing(), "xuv_abs_mnist": math.nan})


# --- chapter 6 -----------------------------------------------------------------------------

from sanity_lib.course.ledger import ch6  # noqa: E402


def ch6_agreeing():
    """IG most and GBP least sensitive, sensitivity rising, concave at 0.1, convex at 0.3,
    every interval narrow enough to tell."""
    m = {"n_digits": 100}
    for s in ch6.STDS:
        for k in ch6.METHODS:
            scale = {"integrated_gradients": 2.0, "guided_backprop": 0.25}.get(k, 1.0)
            m[f"S_{s}_{k}"] = s * scale
            m[f"S_{s}_{k}_ci"] = (s * scale - 0.01, s * scale + 0.01)
        for k in ch6.GRADIENT_BASED:
            kappa = {0.1: 0.5, 0.2: 0.0, 0.3: -0.5}[s]
            m[f"kappa_{s}_{k}"], m[f"kappa_{s}_{k}_ci"] = kappa, (kappa - 0.1, kappa + 0.1)
        m[f"ig_lead_{s}"] = m[f"gbp_lead_{s}"] = (0.05, 0.1)
    return m


def with_s(m, s, k, value, half=0.01):
    return {**m, f"S_{s}_{k}": value, f"S_{s}_{k}_ci": (value - half, value + half)}


def with_kappa(m, s, values, half=0.1):
    out = dict(m)
    for k, v in zip(ch6.GRADIENT_BASED, values):
        out[f"kappa_{s}_{k}"], out[f"kappa_{s}_{k}_ci"] = v, (v - half, v + half)
    return out


def test_ch6_every_claim_can_agree_and_names_the_report():
    claims = ch6.claims(ch6_agreeing())
    assert [c.verdict for c in claims] == ["agrees"] * 5
    assert all("student report" in c.source for c in claims)
    assert not any("CNN" in c.claim or "relative" in c.claim for c in claims)
    assert "100 digits, 3 noise seeds" in claims[0].setting


def test_ch6_falling_similarity():
    m = ch6_agreeing()
    flat = m
    for s in ch6.STDS:
        for k in ch6.METHODS:
            flat = with_s(flat, s, k, 0.5)
    assert by_start(ch6, flat, "Similarity falls") == "differs"
    one = with_s(m, 0.3, "gradient", 0.05)        # one method falls back at 0.3
    assert by_start(ch6, one, "Similarity falls") == "partly"
    # every method rises, but by less than the intervals can tell
    blurred = m
    for k in ch6.METHODS:
        blurred = with_s(blurred, 0.1, k, m[f"S_0.3_{k}"] - 0.01, half=0.2)
    assert by_start(ch6, blurred, "Similarity falls") == "partly"


@pytest.mark.parametrize("s, start, values, half, verdict", [
    (0.1, "At low noise", [-0.5] * 4, 0.1, "differs"),
    (0.1, "At low noise", [0.5, 0.5, -0.5, 0.0], 0.1, "partly"),
    (0.1, "At low noise", [0.3] * 4, 0.3, "partly"),      # concave mean, interval too wide
    (0.1, "At low noise", [0.05] * 4, 0.02, "differs"),   # clearly about straight
    (0.3, "At high noise", [0.5] * 4, 0.1, "differs"),
    (0.3, "At high noise", [-0.5, 0.0, -0.5, -0.5], 0.1, "partly"),
    (0.3, "At high noise", [-0.3] * 4, 0.3, "partly"),
])
def test_ch6_shapes(s, start, values, half, verdict):
    assert by_start(ch6, with_kappa(ch6_agreeing(), s, values, half), start) == verdict


def test_ch6_guided_backprops_shape_is_not_read():
    m = ch6_agreeing()
    m["kappa_0.1_guided_backprop"], m["kappa_0.1_guided_backprop_ci"] = -0.9, (-1.0, -0.8)
    assert by_start(ch6, m, "At low noise") == "agrees"
    assert "kappa_0.1_guided_backprop" not in ch6.needs()


def test_ch6_rankings_read_the_paired_differences():
    m = ch6_agreeing()
    # Gradient x Input and IG tied at 0.1: the paired difference straddles 0
    tied = {**m, "ig_lead_0.1": (-0.01, 0.02)}
    assert by_start(ch6, tied, "Integrated Gradients") == "partly"
    # a rival clearly ahead of IG at 0.3
    beaten = {**m, "ig_lead_0.3": (-0.2, -0.1)}
    assert by_start(ch6, beaten, "Integrated Gradients") == "differs"
    # Guided Backprop clearly not the least sensitive at any level
    reversed_ = {**m, **{f"gbp_lead_{s}": (-0.6, -0.5) for s in ch6.STDS}}
    assert by_start(ch6, reversed_, "Guided Backprop") == "differs"
    near = {**m, "gbp_lead_0.2": (-0.005, 0.01)}
    assert by_start(ch6, near, "Guided Backprop") == "partly"


def test_ch6_missing_number_is_named():
    m = ch6_agreeing()
    del m["kappa_0.2_smoothgrad_ci"]
    with pytest.raises(KeyError, match="kappa_0.2_smoothgrad_ci"):
        ch6.claims(m)
    with pytest.raises(ValueError, match="ig_lead_0.1"):
        ch6.claims({**ch6_agreeing(), "ig_lead_0.1": 0.3})


# --- the library's own warning for a constant map in efficient MPRT (chapter 7) -------------

def test_efficient_mprt_warns_with_the_librarys_constant_map_warning():
    """setup() prints ConstantMapWarning into the cell; a bare RuntimeWarning would hit stderr."""
    import torch

    from sanity_lib.similarity import ConstantMapWarning
    from sanity_lib.studies import mprt

    maps = torch.zeros(2, 1, 8, 8)
    maps[1, 0, 0, :4] = torch.arange(4.0)
    with pytest.warns(ConstantMapWarning, match="constant"):
        mprt.efficient_mprt_score(maps, torch.rand(2, 1, 8, 8))


# --- chapter 7 -----------------------------------------------------------------------------

from sanity_lib.course.ledger import ch7  # noqa: E402


def ch7_agreeing():
    m = dict(gbp_logits=0.94, gbp_fc1=0.83, gbp_fc1_interval=(0.81, 0.84), gbp_last=0.63,
             gbp_bu_conv1=0.61, class_gbp=0.88, class_deeplift=-0.07, rank_agreement=0.49)
    m.update({f"init_{s}_{k}": v for s in ch7.SCHEMES
              for k, v in zip(ch7.INIT_METHODS, (0.25, 0.99, 0.83))})
    return m


def test_ch7_every_claim_can_agree_and_has_a_source():
    claims = ch7.claims(ch7_agreeing())
    assert [c.verdict for c in claims] == ["agrees"] * 4
    assert [c.source.split()[0] for c in claims] == ["Sec.", "Sec.", "Sixt", "Hedström"]
    # the reviewers' questions and the tautological noise ladder are not in the ledger
    assert not any(w in c.claim.lower() for c in claims
                   for w in ("batch-norm", "rectifier", "noise"))


@pytest.mark.parametrize("change, start, verdict", [
    # GBP falls below 0.5 once the top layers are random: it is not invariant to them
    (dict(gbp_fc1=0.2, gbp_fc1_interval=(0.1, 0.3), gbp_last=0.19), "Guided Backprop is",
     "differs"),
    # invariant to the top, but unchanged with every layer random too
    (dict(gbp_last=0.80), "Guided Backprop is", "partly"),
    (dict(gbp_fc1_interval=(0.45, 0.9)), "Guided Backprop is", "partly"),
    # uniform flips every verdict
    ({f"init_uniform_{k}": v for k, v in zip(ch7.INIT_METHODS, (0.9, 0.1, 0.2))},
     "A uniform", "differs"),
    ({"init_uniform_guided_backprop": 0.3}, "A uniform", "partly"),
    (dict(class_gbp=0.1, class_deeplift=0.9), "Guided Backprop's maps", "differs"),
    (dict(class_deeplift=0.9), "Guided Backprop's maps", "partly"),
    (dict(rank_agreement=1.0), "Efficient MPRT", "differs"),
    (dict(rank_agreement=0.9), "Efficient MPRT", "partly"),
])
def test_ch7_rules_follow_the_numbers(change, start, verdict):
    assert by_start(ch7, {**ch7_agreeing(), **change}, start) == verdict


def test_ch7_missing_number_is_named():
    m = ch7_agreeing()
    del m["rank_agreement"]
    with pytest.raises(KeyError, match="rank_agreement"):
        ch7.claims(m)


# --- chapter 8 -----------------------------------------------------------------------------

from sanity_lib.course.ledger import ch8  # noqa: E402


def iv(value, half=0.05):
    """A retained similarity's 95 % interval around ``value``."""
    return (value - half, value + half)


def as_intervals(change):
    return {k: v if k in ("memorized", "random_test") else iv(v) for k, v in change.items()}


def ch8_agreeing():
    m = dict.fromkeys(ch8.needs(), iv(0.1))               # every map changed: all pass ...
    m.update(as_intervals({"cascading_guided_backprop_abs": 0.88,  # ... GBP, products fail
                           "cascading_gradient_x_input_abs": 0.94,
                           "cascading_integrated_gradients_abs": 0.94,
                           "data_guided_backprop_abs": 0.73, "data_gradient_x_input_abs": 0.94,
                           "effnet_guided_backprop": 0.94, "memorized": 0.97,
                           "random_test": 0.12}))
    return m


def test_ch8_every_claim_can_agree_and_has_a_source():
    claims = ch8.claims(ch8_agreeing())
    assert [c.verdict for c in claims] == ["agrees"] * 6
    assert all(c.source.startswith("Sec. ") for c in claims)
    assert not any("SmoothGrad" in c.claim or "seed" in c.claim for c in claims)


def test_ch8_judge_is_the_librarys_rule():
    import torch

    import sanity_lib as sl

    x = torch.rand(3, 1, 28, 28)
    r = sl.model_randomization_test(sl.models.mnist_cnn(), x, ["gradient"], progress=False)
    row = sl.checks.verdict(r, by="fc1").iloc[0]
    assert ch8.judge((row["retained_low"], row["retained_high"])) == row["verdict"]
    # and the rule reads the interval, not the point: 0.52 is "fails" only if all of it is
    assert ch8.judge((0.51, 0.53)) == "fails" and ch8.judge((0.45, 0.59)) == "cannot tell"


def test_ch8_refuses_a_point_where_an_interval_is_needed():
    m = {**ch8_agreeing(), "cascading_gradient_abs": 0.1}
    with pytest.raises(ValueError, match="cascading_gradient_abs.*interval"):
        ch8.claims(m)


@pytest.mark.parametrize("change, start, verdict", [
    ({"cascading_gradient_abs": 0.9, "cascading_gradcam_abs": 0.8}, "Gradient and GradCAM",
     "differs"),
    ({"cascading_gradcam_abs": 0.5}, "Gradient and GradCAM", "partly"),    # cannot tell
    ({"cascading_guided_backprop_abs": 0.1}, "Guided Backprop is", "differs"),
    ({"cascading_gradient_x_input_abs": 0.1, "cascading_integrated_gradients_abs": 0.1,
      "cascading_gradient_x_input_div": 0.9, "cascading_integrated_gradients_div": 0.9},
     "Gradient ⊙ Input", "differs"),
    ({"cascading_gradient_x_input_div": 0.9}, "Gradient ⊙ Input", "partly"),
    ({"memorized": 0.5, "random_test": 0.6}, "A network fits", "differs"),
    ({"random_test": 0.6}, "A network fits", "partly"),
    ({"data_guided_backprop_abs": 0.1}, "Data randomization", "differs"),
    ({"effnet_gradient": 0.9}, "Same recipe", "differs"),
    ({"effnet_gradient": 0.47}, "Same recipe", "partly"),
])
def test_ch8_rules_follow_the_numbers(change, start, verdict):
    assert by_start(ch8, {**ch8_agreeing(), **as_intervals(change)}, start) == verdict


def test_ch8_missing_number_is_named():
    m = ch8_agreeing()
    del m["effnet_gradient"]
    with pytest.raises(KeyError, match="effnet_gradient"):
        ch8.claims(m)


def test_ch8_settings_state_how_many_inputs_the_intervals_are_over():
    settings = [c.setting for c in ch8.claims({**ch8_agreeing(), "n_digits": 100,
                                              "n_photos": 8})]
    assert sum("100 test digits" in s for s in settings) == 4
    assert settings[-1] == "8 photos"
    assert "10 test digits" not in ch8.claims(ch8_agreeing())[0].setting
