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
    return getattr(grads, reduce)(0)


# ----------------------------------------------------------------------------- ch1_ex1

def _captum_gradient(model, x):
    from captum.attr import Saliency

    target = model(x).argmax(dim=1)
    return Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=False)


def _in_place(model, x):
    grad = _autograd_gradient(model, x)
    x.mul_(grad)
    return x


def _library_gxi(model, x):
    return sl.saliency.explain(model, x, "gradient_x_input")


def _library_gxi_by_label(model, x):
    from sanity_lib.saliency import explain_all

    return explain_all(model, x, ["Gradient ⊙ Input"])["gradient_x_input"]


def _captum_gxi(model, x):
    from captum.attr import InputXGradient

    target = model(x).argmax(dim=1)
    return InputXGradient(model).attribute(x.clone().requires_grad_(True), target=target)


def _raises(model, x):
    return x * torch.ones(3, 3)   # a shape error inside torch


RIGHT_EX1 = [
    ("plain autograd", lambda model, x: x * _autograd_gradient(model, x)),
    ("the library's gradient, as the exercise says",
     lambda model, x: x * sl.saliency.explain(model, x, "gradient")),
    ("the gradient in numpy", lambda model, x: torch.from_numpy(
        x.numpy() * _autograd_gradient(model, x).numpy())),
    ("Captum's Saliency (the gradient) times x",
     lambda model, x: x * _captum_gradient(model, x)),
]

WRONG_EX1 = [
    ("the gradient itself", lambda model, x: _autograd_gradient(model, x),
     "returned the gradient itself"),
    ("absolute gradient", lambda model, x: x * _autograd_gradient(model, x).abs(),
     r"\*absolute\* gradient"),
    ("absolute product", lambda model, x: (x * _autograd_gradient(model, x)).abs(),
     "absolute value of x \\* g"),
    ("class 0 for every image",
     lambda model, x: x * _autograd_gradient(model, x, torch.zeros(len(x), dtype=torch.long)),
     "class 0"),
    ("channels summed", lambda model, x: (x * _autograd_gradient(model, x)).sum(dim=1),
     "summed over the colour channels"),
    ("input plus gradient", lambda model, x: x + _autograd_gradient(model, x), "added"),
    ("made-up map: zeros", lambda model, x: torch.zeros_like(x), "differs from"),
    ("the library's gradient_x_input", _library_gxi,
     r"calls sanity_lib.saliency.explain\(\.\.\., 'gradient_x_input'\)"),
    ("the library's method by its label, through explain_all", _library_gxi_by_label,
     "calls sanity_lib.saliency.explain_all"),
    ("Captum's InputXGradient", _captum_gxi, "calls captum.attr._core.input_x_gradient"),
    ("changes x in place", _in_place, "changed its argument `x` in place"),
    ("not a function", torch.zeros(3), "function `gradient_x_input` itself"),
    ("None", None, "function `gradient_x_input` itself, got None"),
    ("a string", "x * grad", "function `gradient_x_input` itself"),
    ("wrong signature", lambda x: x, r"cannot be called as gradient_x_input\(model, x\)"),
    ("raises inside torch", _raises, "raised RuntimeError"),
    ("returns None", lambda model, x: None, "should be a torch tensor of numbers, got None"),
    ("returns a string", lambda model, x: "map", "should be a torch tensor of numbers"),
    ("wrong shape", lambda model, x: torch.zeros(3, 3), "expected the input's shape"),
]


@pytest.mark.parametrize("name, answer", RIGHT_EX1, ids=[r[0] for r in RIGHT_EX1])
def test_ex1_accepts_correct_alternatives(name, answer):
    assert "correct" in check("ch1_ex1", answer)


@pytest.mark.parametrize("name, answer, message", WRONG_EX1, ids=[w[0] for w in WRONG_EX1])
def test_ex1_rejects_wrong_answers_saying_why(name, answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch1_ex1", answer)


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


def _loop_smoothgrad(model, x, n_samples=50, noise_level=0.15, seed=0):
    """The exercise's recipe, one explain(..., 'gradient') call per noisy batch."""
    gen = torch.Generator().manual_seed(seed)
    target = model(x).argmax(dim=1)
    sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    total = torch.zeros_like(x)
    for _ in range(n_samples):
        noisy = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen)
        total = total + sl.saliency.explain(model, noisy, "gradient", target=target)
    return total / n_samples


def _library_smoothgrad(model, x, n_samples=50, noise_level=0.15, seed=0):
    return sl.saliency.explain(model, x, "SmoothGrad", n_samples=n_samples,
                               noise_level=noise_level, seed=seed)


def _captum_smoothgrad(model, x, n_samples=50, noise_level=0.15, seed=0):
    from captum.attr import NoiseTunnel, Saliency

    torch.manual_seed(seed)
    sigma = noise_level * float(x.max() - x.min())
    return NoiseTunnel(Saliency(model)).attribute(
        x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=n_samples,
        stdevs=sigma, target=model(x).argmax(dim=1), abs=False)


def _unseeded(model, x, n_samples=50, noise_level=0.15, seed=0):
    return _my_smoothgrad(model, x, n_samples, noise_level, int(torch.randint(10**6, ())))


def _seed_ignored(model, x, n_samples=50, noise_level=0.15, seed=0):
    return _my_smoothgrad(model, x, n_samples, noise_level, 0)


def _noise_level_ignored(model, x, n_samples=50, noise_level=0.15, seed=0):
    return _my_smoothgrad(model, x, n_samples, 0.15, seed)


def _n_samples_ignored(model, x, n_samples=50, noise_level=0.15, seed=0):
    return _my_smoothgrad(model, x, 50, noise_level, seed)


def _noise_in_place(model, x, n_samples=50, noise_level=0.15, seed=0):
    out = _my_smoothgrad(model, x, n_samples, noise_level, seed)
    x.add_(0.01 * torch.randn_like(x))
    return out


RIGHT_EX2 = [
    ("plain autograd, all copies in one batch", _my_smoothgrad),
    ("a loop over explain(..., 'gradient', target=...)", _loop_smoothgrad),
]

WRONG_EX2 = [
    ("the library's smoothgrad", _library_smoothgrad,
     r"calls sanity_lib.saliency.explain\(\.\.\., 'SmoothGrad'\)"),
    ("Captum's NoiseTunnel", _captum_smoothgrad, "calls captum.attr._core.noise_tunnel"),
    ("the global random state", _unseeded, "not drawn from the seed"),
    ("a fixed seed", _seed_ignored, "ignores `seed`"),
    ("noise_level fixed at 0.15", _noise_level_ignored, "use its `noise_level` argument"),
    ("n_samples fixed at 50", _n_samples_ignored, "ignores its `n_samples` argument"),
    ("changes x in place", _noise_in_place, "changed its argument `x` in place"),
    ("the plain gradient", lambda model, x, **kw: _autograd_gradient(model, x), "plain gradient"),
    ("made-up map: zeros", lambda model, x, **kw: torch.zeros_like(x),
     "more than random noise can explain"),
    ("wrong signature", lambda model, x: _autograd_gradient(model, x),
     r"cannot be called as smoothgrad\(model, x, n_samples=50"),
    ("None", None, "function `smoothgrad` itself, got None"),
    ("returns a list", lambda model, x, **kw: [0.0], "should be a torch tensor of numbers"),
    ("raises", lambda model, x, **kw: model(x[0]), "raised"),
]


@pytest.mark.parametrize("name, answer", RIGHT_EX2, ids=[r[0] for r in RIGHT_EX2])
def test_ex2_accepts_correct_alternatives(name, answer):
    assert "correct" in check("ch1_ex2", answer)


@pytest.mark.parametrize("name, answer, message", WRONG_EX2, ids=[w[0] for w in WRONG_EX2])
def test_ex2_rejects_wrong_answers_saying_why(name, answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch1_ex2", answer)


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


class _BorrowsTheLibrary(torch.autograd.Function):
    """Hands the work to the library's own guided rectifier."""

    @staticmethod
    def forward(ctx, z):
        from sanity_lib.saliency._guided import _GuidedRectifier

        ctx.save_for_backward(z)
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        from sanity_lib.saliency._guided import _GuidedRectifier

        (z,) = ctx.saved_tensors
        return _GuidedRectifier.backward(type("C", (), {"saved_tensors": (z.clamp(min=0),),
                                                          "upper": None})(), grad)[0]


class _ForwardRaises(_Guided):
    @staticmethod
    def forward(ctx, z):
        return z @ torch.ones(2)      # a shape error inside torch


class _BackwardWrongShape(_Guided):
    @staticmethod
    def backward(ctx, grad):
        return grad.sum()


class _AbsBackward(_Guided):
    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad.abs() * (z > 0)


class _NegativeMask(_Guided):
    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad.clamp(min=0) * (z < 0)


WRONG_EX3 = [
    ("ordinary backward", _PlainBackward, "ordinary ReLU backward"),
    ("deconvnet rule", _Deconvnet, "deconvnet"),
    ("absolute gradient", _AbsBackward, "absolute value"),
    ("mask where z < 0", _NegativeMask, "\\*negative\\*"),
    ("identity forward", _WrongForward, "forward pass"),
    ("the library's rectifier", _BorrowsTheLibrary, "calls sanity_lib.saliency._guided"),
    ("forward raises", _ForwardRaises, "forward pass\\) raised RuntimeError"),
    ("backward of the wrong shape", _BackwardWrongShape, "backward pass of GuidedReLU raised"),
    ("a function instead of the class", lambda z: z.clamp(min=0), "class `GuidedReLU` itself"),
    ("torch's ReLU module", torch.nn.ReLU, "class `GuidedReLU` itself"),
    ("None", None, "class `GuidedReLU` itself"),
]


@pytest.mark.parametrize("name, answer, message", WRONG_EX3, ids=[w[0] for w in WRONG_EX3])
def test_ex3_rejects_wrong_answers_saying_why(name, answer, message):
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
    # the seven methods of the exercise, with designed maps: edges plus more and more noise
    maps = {
        "smoothgrad": torch.from_numpy(edges + 0.3 * scale * noise)[:, None].float(),
        "guided_backprop": torch.from_numpy(edges + 1.0 * scale * noise)[:, None].float(),
        "gradcam": torch.from_numpy(edges + 3.0 * scale * noise)[:, None].float(),
        "guided_gradcam": torch.from_numpy(edges + 6.0 * scale * noise)[:, None].float(),
        "integrated_gradients": torch.from_numpy(rng.standard_normal((3, 3, 64, 64))).float(),
        "gradient_x_input": torch.from_numpy(rng.standard_normal((3, 3, 64, 64))).float(),
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
    assert scores["smoothgrad"] > scores["guided_backprop"] > scores["gradcam"] \
        > scores["integrated_gradients"] + 0.1


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


def _other_photos(photos):
    return sl.data.sample_images(64, names=["astronaut", "motorcycle", "coffee"])


WRONG_EX4 = [
    ("made-up numbers", lambda p, m, sc: ({k: 0.5 for k in sc}, m, p), "measured from your maps"),
    ("scores of other photos' edges",
     lambda p, m, sc: (sc, m, _other_photos(p)), "measured from your maps"),
    ("a method missing from maps=",
     lambda p, m, sc: (sc, {k: v for k, v in m.items() if k != "gradcam"}, p),
     r"maps= has no maps of \['gradcam'\]"),
    ("maps= not a dict", lambda p, m, sc: (sc, "maps", p), "maps= should be the dict.*got a str"),
    ("a score that is not a number",
     lambda p, m, sc: ({**sc, "gradient": "high"}, m, p), "should be a number, got a str"),
    ("a NaN score", lambda p, m, sc: ({**sc, "gradient": float("nan")}, m, p),
     "should be a number"),
    ("the answer not a dict", lambda p, m, sc: (list(sc.values()), m, p), "should be a dict"),
    ("an unknown method", lambda p, m, sc: ({**sc, "sobel": 0.1}, m, p),
     "not a method name I know"),
]


@pytest.mark.parametrize("name, make, message", WRONG_EX4, ids=[w[0] for w in WRONG_EX4])
def test_ex4_rejects_wrong_answers_saying_why(edge_case, name, make, message):
    answer, maps, photos = make(*edge_case)
    with pytest.raises(CheckFailed, match=message):
        check("ch1_ex4", answer, maps=maps, images=photos)


def test_ex4_accepts_method_names_by_label_and_alias(edge_case):
    photos, maps, scores = edge_case
    renamed = {sl.saliency.REGISTRY[m].label: v for m, v in scores.items()}
    maps = {("IG" if m == "integrated_gradients" else m): v for m, v in maps.items()}
    assert "correct" in check("ch1_ex4", renamed, maps=maps, images=photos)


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
    with pytest.raises(CheckFailed, match=r"integrated_gradients ranks #\d of 7"):
        check("ch1_ex5", top3[:2] + ["IG"], maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="not a method name I know"):
        check("ch1_ex5", top3[:2] + ["sobel"], maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="twice"):
        check("ch1_ex5", [top3[0], top3[0], top3[1]], maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="three"):
        check("ch1_ex5", top3[:2], maps=maps, images=photos)
    with pytest.raises(CheckFailed, match="list of method names"):
        check("ch1_ex5", "smoothgrad", maps=maps, images=photos)


def test_unanswered_stub_raises_not_implemented():
    with pytest.raises(NotImplementedError, match="most_edge_like"):
        check("ch1_ex5", sl.grading.Unanswered("most_edge_like"))


# ----------------------------------------------------------------------------- ex6: GradCAM

def _gradcam_with_hooks(model, x, layer, *, relu=True, pool="mean", target=None,
                        score="logit", upsample=dict(mode="bilinear", align_corners=False),
                        normalize=False, remove=True, keep_channel=True, how="tensor_hook"):
    """GradCAM by hand (hooks and autograd only); the keywords make the typical mistakes."""
    import torch.nn.functional as F

    kept = {}

    def forward_hook(module, inputs, out):
        kept["a"] = out
        if how == "tensor_hook":
            out.register_hook(lambda grad: kept.update(g=grad))

    def backward_hook(module, grad_in, grad_out):
        kept["g"] = grad_out[0]

    handles = [layer.register_forward_hook(forward_hook)]
    if how == "full_backward_hook":
        handles.append(layer.register_full_backward_hook(backward_hook))
    try:
        xr = x.detach().clone().requires_grad_(how == "full_backward_hook")
        out = model(xr)
        c = out.argmax(dim=1) if target is None else torch.full((len(x),), target)
        rows = torch.arange(len(x))
        chosen = {"logit": out[rows, c], "softmax": out.softmax(1)[rows, c],
                  "all": out.sum(1)}[score]
        if how == "autograd_grad":
            (kept["g"],) = torch.autograd.grad(chosen.sum(), kept["a"])
        else:
            chosen.sum().backward()
    finally:
        if remove:
            for h in handles:
                h.remove()
    a, g = kept["a"].detach(), kept["g"].detach()
    alpha = g.mean(dim=(2, 3), keepdim=True) if pool == "mean" else \
        g.sum(dim=(2, 3), keepdim=True) if pool == "sum" else g
    cam = (alpha * a).sum(dim=1, keepdim=True)
    cam = {True: F.relu(cam), False: cam, "abs": cam.abs()}[relu]
    if upsample is not None:
        cam = F.interpolate(cam, size=tuple(x.shape[2:]), **upsample)
    if normalize:
        cam = cam / cam.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return cam if keep_channel else cam[:, 0]


@pytest.mark.parametrize("how", ["tensor_hook", "autograd_grad", "full_backward_hook"])
def test_ex6_accepts_gradcam_written_with_hooks(how):
    def my_gradcam(model, x, layer):
        return _gradcam_with_hooks(model, x, layer, how=how)

    assert "correct" in check("ch1_ex6", my_gradcam)


def test_ex6_cases_are_informative():
    """Every image has a non-zero map, and the layer is smaller than the input: a check on
    all-zero maps, or on a layer the size of its input, would not see the mistakes."""
    from sanity_lib.course.grading import ch1

    relu_matters = []
    for case, model, x, layer in ch1._cam_cases():
        maps = sl.saliency.explain(model, x, "gradcam", layer=layer)
        assert bool((maps.flatten(1).amax(dim=1) > 0).all()), case
        with torch.no_grad():
            kept = {}
            h = model.get_submodule(layer).register_forward_hook(
                lambda m, i, o: kept.update(a=o))
            model(x)
            h.remove()
        assert kept["a"].shape[2:] != x.shape[2:], case
        negative = _gradcam_with_hooks(model, x, model.get_submodule(layer), relu=False)
        relu_matters.append(bool((negative < 0).any()))
    assert any(relu_matters)        # on the MNIST CNN the weighted sum goes below 0


WRONG_EX6 = [  # (id, keywords for _gradcam_with_hooks, expected phrase)
    ("no ReLU", dict(relu=False), "without the ReLU"),
    ("absolute value", dict(relu="abs"), "absolute value of the weighted sum"),
    ("no spatial mean", dict(pool="none"), "its own gradient"),
    ("sum instead of mean", dict(pool="sum"), "the \\*sum\\* of the gradient"),
    ("nearest upsampling", dict(upsample=dict(mode="nearest")), "nearest neighbours"),
    ("align_corners=True", dict(upsample=dict(mode="bilinear", align_corners=True)),
     "align_corners=True"),
    ("bicubic", dict(upsample=dict(mode="bicubic", align_corners=False)), "bicubically"),
    ("no upsampling", dict(upsample=None), "upsample the layer's map to the input size"),
    ("softmax", dict(score="softmax"), "softmax probability"),
    ("class 0", dict(target=0), "class 0 for every image"),
    ("all logits", dict(score="all"), "sum of all the logits"),
    ("normalized", dict(normalize=True), "divided by their maximum"),
    ("hook left behind", dict(remove=False), "left 1 hook"),
    ("channel axis dropped", dict(keep_channel=False), "keep the channel axis"),
]


@pytest.mark.parametrize("name, keywords, message", WRONG_EX6, ids=[w[0] for w in WRONG_EX6])
def test_ex6_rejects_typical_mistakes_saying_which(name, keywords, message):
    def my_gradcam(model, x, layer):
        return _gradcam_with_hooks(model, x, layer, **keywords)

    with pytest.raises(CheckFailed, match=message):
        check("ch1_ex6", my_gradcam)
    from sanity_lib.course.grading import ch1

    for _, model, _, _ in ch1._cam_cases():   # a failed answer leaves no hook behind
        assert ch1._hooks(model) == 0


@pytest.mark.parametrize("name, answer, message", [
    ("the library's GradCAM",
     lambda model, x, layer: sl.saliency.explain(model, x, "gradcam", layer=layer),
     "calls sanity_lib.saliency.explain\\(\\.\\.\\., 'gradcam'\\)"),
    ("Captum's LayerGradCam",
     lambda model, x, layer: __import__("torch").nn.functional.interpolate(
         __import__("captum").attr.LayerGradCam(model, layer).attribute(
             x, target=model(x).argmax(1), relu_attributions=True),
         size=x.shape[2:], mode="bilinear", align_corners=False),
     "calls captum"),
    ("made-up maps", lambda model, x, layer: torch.rand(len(x), 1, *x.shape[2:]),
     "differs from GradCAM's"),
    ("the input gradient", lambda model, x, layer: _autograd_gradient(model, x).abs().sum(
        1, keepdim=True), "differs from GradCAM's|negative"),
    ("None", lambda model, x, layer: None, "should be a torch tensor"),
    ("raises", lambda model, x, layer: 1 / 0, "raised ZeroDivisionError"),
    ("wrong signature", lambda model, x: x, "cannot be called as my_gradcam\\(model, x, layer\\)"),
    ("not a function", "gradcam", "should be your function `my_gradcam` itself"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_ex6_rejects_answers_that_skip_the_work(name, answer, message):
    with pytest.raises(CheckFailed, match=message):
        check("ch1_ex6", answer)


def test_ex6_refuses_an_answer_that_changes_its_input():
    def in_place(model, x, layer):
        out = _gradcam_with_hooks(model, x, layer)
        x.mul_(0)
        return out

    with pytest.raises(CheckFailed, match="changed its argument `x` in place"):
        check("ch1_ex6", in_place)
