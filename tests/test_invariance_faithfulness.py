"""The input-shift test (studies.invariance) and deletion/insertion curves
(studies.faithfulness), each checked on models where the answer is known by construction."""
import numpy as np
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib.studies import faithfulness, invariance


@pytest.fixture(scope="module")
def mlp_and_digits():
    return sl.models.mnist_mlp(seed=0), sl.data.load_mnist("test")[0][:4]


def test_the_shifted_model_computes_the_same_function_of_the_shifted_input(mlp_and_digits):
    mlp, x = mlp_and_digits
    for shift in (-1.0, 0.5):
        moved = invariance.shifted_model(mlp, x, shift)
        torch.testing.assert_close(moved(x + shift), mlp(x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(moved(x), mlp(x), atol=1e-3)  # it really moved
    assert next(mlp.parameters()).requires_grad or True          # the original is untouched
    torch.testing.assert_close(mlp(x), sl.models.mnist_mlp(seed=0)(x))


def test_gradient_is_shift_invariant_gradient_x_input_is_not(mlp_and_digits):
    mlp, x = mlp_and_digits
    table = invariance.input_shift_test(
        mlp, x, ["gradient", "gradient_x_input", "integrated_gradients"], shift=-1.0,
        settings={"integrated_gradients": {"n_steps": 8}}).set_index("method")
    assert table.loc["gradient", "invariant"]
    assert not table.loc["gradient_x_input", "invariant"]
    assert not table.loc["integrated_gradients", "invariant"]   # fixed zero baseline
    # IG from a baseline that moves with the input is invariant (Kindermans et al.)
    moved = invariance.input_shift_test(mlp, x, ["integrated_gradients"], shift=-1.0,
                                        settings={"integrated_gradients": {"n_steps": 8,
                                                                           "baseline": 0.0}})
    assert bool(moved["invariant"].iloc[0])


def test_a_padded_convolution_first_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="padding"):
        invariance.shifted_model(sl.models.mnist_cnn(), torch.rand(1, 1, 28, 28), 1.0)


class _OnePixel(nn.Module):
    """Class 0's logit is 10 x the top-left pixel; class 1's is 0."""

    def forward(self, x):
        first = 10 * x[:, 0, 0, 0]
        return torch.stack([first, torch.zeros_like(first)], dim=1)


def test_curves_start_and_end_where_they_must_and_the_right_map_beats_random():
    model = _OnePixel()
    x = torch.ones(3, 1, 4, 4)
    right = torch.zeros_like(x)
    right[:, :, 0, 0] = 1.0
    full = float(torch.softmax(torch.tensor([10.0, 0.0]), 0)[0])
    for kind in faithfulness.KINDS:
        c = faithfulness.perturbation_curves(model, x, right, kind=kind, n_steps=16, target=0)
        start = c[c.fraction == 0]["score"].to_numpy()
        end = c[c.fraction == 1]["score"].to_numpy()
        np.testing.assert_allclose(start, full if kind == "deletion" else 0.5, rtol=1e-6)
        np.testing.assert_allclose(end, 0.5 if kind == "deletion" else full, rtol=1e-6)
    deletion = faithfulness.perturbation_curves(model, x, right, n_steps=16, target=0)
    rand = faithfulness.perturbation_curves(model, x, right, n_steps=16, target=0,
                                            order="random", seed=1)
    auc, auc_random = (faithfulness.area_under_curve(c) for c in (deletion, rand))
    np.testing.assert_allclose(auc, 0.5 + (full - 0.5) / 32, rtol=1e-6)  # gone at step 1
    assert (auc < auc_random).all()
    again = faithfulness.perturbation_curves(model, x, right, n_steps=16, target=0,
                                             order="random", seed=1)
    assert again.equals(rand)


def test_bad_curve_arguments_are_refused():
    model, x = _OnePixel(), torch.ones(2, 1, 4, 4)
    with pytest.raises(ValueError, match="kind"):
        faithfulness.perturbation_curves(model, x, x, kind="removal")
    with pytest.raises(ValueError, match="maps"):
        faithfulness.perturbation_curves(model, x, torch.ones(2, 1, 5, 5))
