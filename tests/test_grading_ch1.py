"""The checks of chapter 1's exercise notebook: right answers pass, typical mistakes are named.

The right answers here are written independently of the solution notebook and of the library
(plain autograd, scipy), so a check that agreed with a wrong library would fail these tests.
"""
import numpy as np
import pytest
import torch
from scipy import stats
from skimage.color import rgb2gray
from skimage.filters import sobel

import sanity_lib as sl
from sanity_lib.course.grading import CheckFailed, check


# ----------------------------------------------------------------------------- helpers

def _autograd_gradient(model, x, target=None):
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    if target is None:
        target = out.argmax(dim=1)
    (grad,) = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), x)
    return grad


def _my_smoothgrad(model, x, n_samples=50, noise_level=0.15, seed=0, *, sigma_of=None,
                   reduce="mean"):
    """SmoothGrad with plain autograd; ``sigma_of`` and ``reduce`` let tests make mistakes."""
    gen = torch.Generator().manual_seed(seed + 12345)
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    if sigma_of is None:
        sigma = noise_level * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    else:
        sigma = sigma_of(x, noise_level)
    noise = torch.randn((n_samples,) + tuple(x.shape), generator=gen)
    noisy = (x + sigma.view(1, -1, 1, 1, 1) * noise).reshape((-1,) + tuple(x.shape[1:]))
    grads = _autograd_gradient(model, noisy, target.repeat(n_samples)).reshape(noise.shape)
    return {"mean": grads.mean(0), "sum": grads.sum(0), "var": grads.var(0)}[reduce]


# ----------------------------------------------------------------------------- ch1_ex1

def test_ex1_accepts_gradient_times_input_computed_with_plain_autograd():
    assert "correct" in check("ch1_ex1", lambda model, x: x * _autograd_gradient(model, x))


@pytest.mark.parametrize("answer, message", [
    (lambda model, x: _autograd_gradient(model, x), "returned the gradient itself"),
    (lambda model, x: x * _autograd_gradient(model, x).abs(), r"\*absolute\* gradient"),
    (lambda model, x: (x * _autograd_gradient(model, x)).abs(), "absolute value of x \\* g"),
    (lambda model, x: x * _autograd_gradient(model, x, torch.zeros(len(x), dtype=torch.long)),
     "class 0"),
    (lambda model, x: (x * _autograd_gradient(model, x)).sum(dim=1), "shape"),
])
def test_ex1_names_the_typical_mistakes(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch1_ex1", answer)


def test_ex1_rejects_changing_the_input_and_a_non_function():
    def in_place(model, x):
        grad = _autograd_gradient(model, x)
        x.mul_(grad)
        return x

    with pytest.raises(CheckFailed, match="in place"):
        check("ch1_ex1", in_place)
    with pytest.raises(CheckFailed, match="function `gradient_x_input` itself"):
        check("ch1_ex1", torch.zeros(3))


# ----------------------------------------------------------------------------- ch1_ex2

def test_ex2_accepts_an_independent_smoothgrad_with_other_noise():
    # Different random numbers than the library's: only the statistics agree.
    assert "correct" in check("ch1_ex2", _my_smoothgrad)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sigma_of=lambda x, level: torch.full((len(x),), level)), "std noise_level itself"),
    (dict(sigma_of=lambda x, level: torch.full((len(x),), level * float(x.max() - x.min()))),
     "range of the whole batch"),
    (dict(reduce="var"), "variance"),
    (dict(reduce="sum"), "summed"),
])
def test_ex2_names_the_typical_mistakes(kwargs, message):
    def answer(model, x, n_samples=50, noise_level=0.15, seed=0):
        return _my_smoothgrad(model, x, n_samples, noise_level, seed, **kwargs)

    with pytest.raises(CheckFailed, match=message):
        check("ch1_ex2", answer)


def test_ex2_rejects_the_plain_gradient_and_a_wrong_noise_level():
    with pytest.raises(CheckFailed, match="plain gradient"):
        check("ch1_ex2", lambda model, x, **kw: _autograd_gradient(model, x))

    def too_much_noise(model, x, n_samples=50, noise_level=0.15, seed=0):
        return _my_smoothgrad(model, x, n_samples, 3 * noise_level, seed)

    with pytest.raises(CheckFailed, match="more than random noise can explain"):
        check("ch1_ex2", too_much_noise)


# ----------------------------------------------------------------------------- ch1_ex3

class _Guided(torch.autograd.Function):
    """Written with torch.where, unlike the solution's clamp-and-mask."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return torch.where(z > 0, z, torch.zeros_like(z))

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return torch.where((z > 0) & (grad > 0), grad, torch.zeros_like(grad))


class _PlainBackward(_Guided):
    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return torch.where(z > 0, grad, torch.zeros_like(grad))


class _Deconvnet(_Guided):
    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class _WrongForward(_Guided):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z * 1.0


def test_ex3_accepts_an_independent_guided_relu():
    assert "correct" in check("ch1_ex3", _Guided)


@pytest.mark.parametrize("answer, message", [
    (_PlainBackward, "ordinary ReLU backward"),
    (_Deconvnet, "deconvnet"),
    (_WrongForward, "forward pass"),
    (lambda z: z.clamp(min=0), "class `GuidedReLU` itself"),
])
def test_ex3_names_the_typical_mistakes(answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch1_ex3", answer)


def test_ex3_the_check_agrees_with_the_library_in_a_network():
    # The check's network test must fail for a rule that is right on positive gradients
    # only by accident; a plain-backward rule gives the gradient, which differs from GBP.
    from sanity_lib.course.grading.ch1 import _Applied, _GuidedTestNet

    torch.manual_seed(0)
    net = _GuidedTestNet(torch.nn.ReLU).eval()
    guided = _GuidedTestNet(lambda: _Applied(_Guided)).eval()
    guided.load_state_dict(net.state_dict())
    x, _ = sl.data.load_mnist("test")
    x = x[:3]
    target = net(x).argmax(1)
    ours = _autograd_gradient(guided, x, target)
    library = sl.saliency.explain(net, x, "guided_backprop")
    plain = _autograd_gradient(net, x, target)
    assert torch.allclose(ours, library, atol=1e-6)
    assert not torch.allclose(ours, plain, atol=1e-3)


# ----------------------------------------------------------------------------- ch1_ex4, ch1_ex5

def _scipy_abs_normalize(m):
    """The paper's abs normalization, per map, in numpy."""
    s = np.abs(m).sum(axis=1)
    s = s - s.reshape(len(s), -1).min(axis=1)[:, None, None]
    return np.clip(s / np.percentile(s.reshape(len(s), -1), 99, axis=1)[:, None, None], 0, 1)


@pytest.fixture(scope="module")
def edge_case():
    """Photos and maps with a known order of edge-likeness, and their edge scores computed
    with scipy (grey = channel mean, both maps abs-normalized, as sl.studies.failures does)."""
    photos = sl.data.sample_images(64, names=["chelsea", "coffee", "rocket"])
    edges = np.stack([sobel(g) for g in photos.numpy().mean(axis=1)])
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(edges.shape)
    scale = edges.std()
    maps = {
        "edges_plus_noise": torch.from_numpy(edges + 0.3 * scale * noise)[:, None].float(),
        "more_noise": torch.from_numpy(edges + 1.0 * scale * noise)[:, None].float(),
        "even_more": torch.from_numpy(edges + 3.0 * scale * noise)[:, None].float(),
        "pure_noise": torch.from_numpy(rng.standard_normal((3, 3, 64, 64))).float(),
        "gradient": sl.saliency.explain(sl.models.one_conv_model(in_channels=3), photos,
                                        "gradient"),
    }
    reference_edges = _scipy_abs_normalize(edges[:, None])
    scores = {}
    for name, m in maps.items():
        shown = _scipy_abs_normalize(m.numpy().astype(np.float64))
        scores[name] = float(np.mean([stats.spearmanr(a.ravel(), e.ravel())[0]
                                      for a, e in zip(shown, reference_edges)]))
    return photos, maps, scores


def test_edge_case_has_the_designed_order(edge_case):
    _, _, scores = edge_case
    assert scores["edges_plus_noise"] > scores["more_noise"] > scores["even_more"] \
        > scores["pure_noise"] + 0.1


def test_ex4_accepts_scores_computed_with_scipy(edge_case):
    photos, maps, scores = edge_case
    assert "correct" in check("ch1_ex4", scores, maps=maps, images=photos)


def test_ex4_accepts_the_library_and_the_skimage_recipes(edge_case):
    photos, maps, _ = edge_case
    library = sl.studies.failures.edge_similarity(maps, photos, detectors="sobel")
    answer = library.groupby("method")["value"].mean().to_dict()
    assert "correct" in check("ch1_ex4", answer, maps=maps, images=photos)
    # rgb2gray (luminance) and the raw Sobel magnitude are accepted too.
    gray = rgb2gray(photos.permute(0, 2, 3, 1).numpy())
    edges = torch.from_numpy(np.stack([sobel(g) for g in gray])).float()
    answer = {m: sl.similarity.spearman(sl.similarity.normalize(e, "abs"), edges,
                                        mode=None).mean().item() for m, e in maps.items()}
    assert "correct" in check("ch1_ex4", answer, maps=maps, images=photos)


def test_ex4_rejects_wrong_scores(edge_case):
    photos, maps, scores = edge_case
    with pytest.raises(CheckFailed, match="sign is flipped"):
        check("ch1_ex4", {m: -v for m, v in scores.items()}, maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="no score for"):
        check("ch1_ex4", {m: v for m, v in scores.items() if m != "gradient"}, maps=maps,
              images=photos)
    per_photo = {m: torch.full((3,), v) for m, v in scores.items()}
    with pytest.raises(CheckFailed, match="one per photo"):
        check("ch1_ex4", per_photo, maps=maps, images=photos)
    # Correlating against the grey image instead of its edges gives other numbers.
    gray = torch.from_numpy(rgb2gray(photos.permute(0, 2, 3, 1).numpy())).float()
    wrong = {m: sl.similarity.spearman(sl.similarity.normalize(e, "abs"), gray,
                                       mode=None).mean().item() for m, e in maps.items()}
    with pytest.raises(CheckFailed, match="measured from your maps"):
        check("ch1_ex4", wrong, maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="preprocess"):
        check("ch1_ex4", scores, maps=maps, images=photos * 2 - 1)
    with pytest.raises(CheckFailed, match="pass them"):
        check("ch1_ex4", scores)


def test_ex5_accepts_the_top_three_and_near_ties(edge_case, monkeypatch):
    photos, maps, scores = edge_case
    top3 = sorted(scores, key=scores.get, reverse=True)[:3]
    assert "correct" in check("ch1_ex5", top3, maps=maps, images=photos)
    assert "correct" in check("ch1_ex5", tuple(reversed(top3)), maps=maps, images=photos)
    # With a generous tolerance the fourth method is accepted in place of the third.
    fourth = sorted(scores, key=scores.get, reverse=True)[3]
    monkeypatch.setattr("sanity_lib.course.grading.ch1.RANK_TOLERANCE",
                        scores[top3[2]] - scores[fourth] + 0.01)
    assert "correct" in check("ch1_ex5", top3[:2] + [fourth], maps=maps, images=photos)


def test_ex5_rejects_a_low_ranked_method_and_malformed_lists(edge_case):
    photos, maps, scores = edge_case
    top3 = sorted(scores, key=scores.get, reverse=True)[:3]
    with pytest.raises(CheckFailed, match=r"pure_noise ranks #\d of 5"):
        check("ch1_ex5", top3[:2] + ["pure_noise"], maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="not one of the methods"):
        check("ch1_ex5", top3[:2] + ["guided_backprop"], maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="twice"):
        check("ch1_ex5", [top3[0], top3[0], top3[1]], maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="three"):
        check("ch1_ex5", top3[:2], maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="list of method names"):
        check("ch1_ex5", "edges_plus_noise", maps=maps, images=photos)


def test_unanswered_stub_raises_not_implemented():
    with pytest.raises(NotImplementedError, match="most_edge_like"):
        check("ch1_ex5", sl.grading.Unanswered("most_edge_like"))
