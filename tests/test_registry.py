"""The method registry is the single description of every saliency method.

Everything that lists or names methods reads it (METHODS, defaults, explain's plans, the fused
engine's shared passes, plot labels, the docs table, the graders' names), and adding a method
is one register() call: proven here by adding one and running it through explain, a sweep, a
plot and a grader.
"""
import pytest
import torch

import sanity_lib as sl
from sanity_lib import grading, plotting, saliency
from sanity_lib.models import mnist_cnn
from sanity_lib.saliency import REGISTRY, Method, lookup, method_key, register
from sanity_lib.saliency._shared import SHARED_METHODS


def test_every_method_has_one_record_and_everything_reads_it():
    assert tuple(REGISTRY) == saliency.METHODS
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert dict(saliency.DEFAULT_SETTINGS[name]) == {**spec.settings, "batch_size": 32,
                                                         "progress": False}
        assert plotting.METHOD_LABELS[name] == spec.label
        assert f"``{name}``" in saliency.__doc__ and spec.computes in saliency.__doc__
    assert set(SHARED_METHODS) == {m for m, spec in REGISTRY.items() if spec.shares}
    assert list(saliency.method_table()["method"]) == list(REGISTRY)


def test_the_paper_roles_are_the_papers():
    assert REGISTRY["vargrad"].paper == "appendix"          # defined there, not tested
    assert "integrated_gradients_smoothgrad" in saliency.PAPER_METHODS   # tested by the paper
    assert set(sl.checks.DEFAULT_METHODS) == {m for m, s in REGISTRY.items()
                                              if s.paper == "figure 2"}


def test_every_name_label_and_alias_reads_back_as_its_method():
    seen = {}
    for name, spec in REGISTRY.items():
        for spelling in (name, spec.label, *spec.aliases):
            assert lookup(spelling) == name, spelling
            assert lookup(spelling.upper()) == name
            key = method_key(spelling)
            assert seen.setdefault(key, name) == name, f"{spelling!r} names two methods"
            assert grading.method_name(spelling) == name
    assert lookup("occlusion") is None and lookup(3) is None


def test_explain_suggests_the_method_an_alias_means():
    with pytest.raises(ValueError, match="did you mean 'integrated_gradients'"):
        saliency.explain(mnist_cnn(), torch.rand(1, 1, 28, 28), "ig")


def test_register_refuses_clashes():
    spec = REGISTRY["gradient"]
    with pytest.raises(ValueError, match="already registered"):
        register(spec)
    with pytest.raises(ValueError, match="already names method 'integrated_gradients'"):
        register(Method(name="another", label="Another", computes="-", settings={},
                        plan=spec.plan, paper="not in the paper", aliases=("ig",)))
    with pytest.raises(ValueError, match="snake case"):
        Method(name="Another One", label="x", computes="-", settings={}, plan=spec.plan,
               paper="not in the paper")
    with pytest.raises(ValueError, match="paper="):
        Method(name="another", label="x", computes="-", settings={}, plan=spec.plan,
               paper="figure 9")


# ----------------------------------------------------------------------------- a new method

def plan_gradient_sign(model, x, opts):
    """The sign of the gradient (the direction of a fast-gradient-sign attack)."""
    def fn(xb, tb, start):
        xb = xb.detach().requires_grad_(True)
        score = model(xb).gather(1, tb.to(xb.device)[:, None]).sum()
        (grad,) = torch.autograd.grad(score, xb)
        return torch.sign(grad) * opts["scale"]
    return fn, opts["batch_size"]


@pytest.fixture
def gradient_sign():
    spec = register(Method(name="gradient_sign", label="Gradient sign",
                           computes="sign(dS_c/dx)", settings={"scale": 1.0},
                           plan=plan_gradient_sign, paper="not in the paper",
                           aliases=("fgsm_direction",)))
    yield spec
    del REGISTRY["gradient_sign"]


def test_a_new_method_is_one_registry_entry(gradient_sign):
    model, x = mnist_cnn(seed=0), torch.rand(3, 1, 28, 28)
    maps = saliency.explain(model, x, "gradient_sign", scale=2.0)
    reference = saliency.explain(model, x, "gradient")
    assert torch.equal(maps, 2.0 * torch.sign(reference))
    with pytest.raises(TypeError, match="takes no setting 'n_steps'"):
        saliency.explain(model, x, "gradient_sign", n_steps=3)
    # through the sweep (the fused engine has no shared path for it: explain computes it)
    result = sl.model_randomization_test(model, x, ["gradient", "gradient_sign"],
                                         metrics=["spearman_diverging"], progress=False)
    assert set(result.table["method"]) == {"gradient", "gradient_sign"}
    assert torch.equal(result.maps["gradient_sign"][0], torch.sign(reference))
    fig = result.plot_curves("spearman_diverging")   # (|sign| is constant: no abs metric)
    assert "Gradient sign" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert grading.method_name("FGSM direction") == "gradient_sign"
