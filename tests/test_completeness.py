"""completeness_error: the share by which an attribution misses the score difference."""
import pytest
import torch
from torch import nn

import sanity_lib as sl
from sanity_lib.saliency import completeness_error, explain


def _linear(w: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(w.numel(), 2, bias=True)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w.reshape(-1), -w.reshape(-1)]))
        model[1].bias.fill_(0.3)
    return model.eval()


def test_a_complete_map_has_no_error_and_an_empty_map_misses_everything():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 6, 6, generator=g, dtype=torch.float64)
    model = _linear(w)
    x = torch.randn(3, 1, 6, 6, generator=g, dtype=torch.float64)
    exact = x * w                       # IG of a linear model from a zero baseline
    target = model(x).argmax(1)
    exact = torch.where((target == 0).reshape(-1, 1, 1, 1), exact, -exact)
    assert completeness_error(model, x, exact).max() < 1e-12
    assert torch.allclose(completeness_error(model, x, torch.zeros_like(x)),
                          torch.ones(3, dtype=torch.float64))
    assert torch.allclose(completeness_error(model, x, 1.5 * exact),
                          torch.full((3,), 0.5, dtype=torch.float64))


def test_more_integration_steps_make_integrated_gradients_more_complete():
    model = sl.models.mnist_cnn(seed=0)
    x = sl.data.load_mnist("test")[0][:4]
    errors = [float(completeness_error(model, x, explain(
        model, x, "integrated_gradients", n_steps=n, integration="riemann_middle")).mean())
        for n in (2, 64)]
    assert errors[1] < errors[0]
    assert errors[1] < 0.05


def test_the_baseline_and_the_target_are_the_ones_the_map_used():
    model = sl.models.mnist_cnn(seed=0)
    x = sl.data.load_mnist("test")[0][:2]
    ig = explain(model, x, "integrated_gradients", baseline=0.5, target=3, n_steps=64)
    assert completeness_error(model, x, ig, target=3, baseline=0.5).max() < 0.05
    assert completeness_error(model, x, ig, target=3, baseline=0.0).max() > 0.05


@pytest.mark.parametrize("maps, match", [(torch.zeros(2, 1, 27, 28), "shape"),
                                         ("map", "tensor")])
def test_maps_of_the_wrong_shape_are_refused(maps, match):
    with pytest.raises(ValueError, match=match):
        completeness_error(sl.models.mnist_cnn(), torch.rand(2, 1, 28, 28), maps)


def test_the_quadratic_rule_is_exact_on_a_linear_model_and_matches_its_definition():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(1, 5, 5, generator=g, dtype=torch.float64)
    model = _linear(w)
    x = torch.randn(2, 1, 5, 5, generator=g, dtype=torch.float64)
    got = explain(model, x, "integrated_gradients", target=0, n_steps=6,
                  integration="gausslegendre_quadratic")
    torch.testing.assert_close(got, x * w, rtol=1e-6, atol=1e-9)  # float32 weights, as Captum
    # on a curved model: the definition, sum_i 2 t_i w_i grad(t_i^2 x) with numpy's nodes
    import numpy as np
    cnn = sl.models.mnist_cnn(seed=0).double()
    d = sl.data.load_mnist("test")[0][:2].double()
    t, wt = np.polynomial.legendre.leggauss(5)
    t, wt = (t + 1) / 2, wt / 2
    want = torch.zeros_like(d)
    for ti, wi in zip(t, wt):
        p = (float(ti) ** 2 * d).requires_grad_(True)
        cnn(p)[:, 7].sum().backward()
        want += 2 * float(ti) * float(wi) * p.grad
    for engine in (explain, sl.saliency.reference):
        got = engine(cnn, d, "integrated_gradients", target=7, n_steps=5,
                     integration="gausslegendre_quadratic")
        torch.testing.assert_close(got, d * want, rtol=1e-6, atol=1e-8)
