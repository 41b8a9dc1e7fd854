"""Checks of the exercise notebook of chapter 1, "Saliency methods".

===========  ===================================================================
exercise     what the answer is
===========  ===================================================================
``ch1_ex1``  a function ``gradient_x_input(model, x)``: ``x * dS_c/dx`` for each
             image's predicted class ``c``, same shape as ``x``, written from the
             gradient (the library's ``gradient_x_input`` and Captum's
             ``InputXGradient`` are refused inside it)
``ch1_ex2``  a function ``smoothgrad(model, x, n_samples=50, noise_level=0.15,
             seed=0)``: the mean gradient over ``n_samples`` noisy copies of each
             image, noise std ``noise_level * (max(x_i) - min(x_i))`` per image;
             the seed, ``noise_level`` and ``n_samples`` must be used, and the
             library's or Captum's SmoothGrad is refused inside it
``ch1_ex3``  a ``torch.autograd.Function`` subclass ``GuidedReLU``: forward
             ``max(0, z)``, backward that passes a gradient only where it is
             positive *and* the input was positive (not the library's rectifier)
``ch1_ex4``  a dict method -> number: each method's *edge score*, the Spearman rank
             correlation between its abs-normalized map and the Sobel magnitude of
             the grey photo (``sl.studies.failures.edge_maps``; skimage's ``rgb2gray`` is
             accepted too), averaged over the photos (context ``maps=``, holding the
             seven :data:`EDGE_METHODS`, and ``images=``)
``ch1_ex5``  a list of three method names: the methods with the highest edge
             scores (context ``maps=``, ``images=``)
``ch1_ex6``  a function ``my_gradcam(model, x, layer)``: GradCAM written with hooks,
             ``relu(sum_k alpha_k A^k)`` at ``layer`` (a submodule) for each image's
             predicted class, ``alpha_k`` the spatial mean of the logit's gradient,
             upsampled bilinearly (``align_corners=False``) to N x 1 x H x W; no hook
             may be left on the model, and the library's and Captum's GradCAM are
             refused inside it
===========  ===================================================================

Function answers are run on fixed inputs and compared with :mod:`sanity_lib.saliency`
(SmoothGrad statistically: its noise is random). When an answer is wrong, the typical
mistakes are recomputed to say *which* one was made. The edge scores are measured here,
independently of the student's code, from the maps the student computed.

Examples
--------
>>> import sanity_lib as sl
>>> sl.grading.check("ch1_ex1",
...                  lambda model, x: x * sl.saliency.explain(model, x, "gradient"))
'ch1_ex1: correct. Well done!'
"""
import functools
import math
import numbers

import numpy as np
import torch
from scipy import stats
from torch import nn

from . import (CheckFailed, as_array, call_student, describe, expect, forbid_calls,
               method_name, register)
from sanity_lib.saliency._shared import _cam as _library_cam

__all__ = []  # the checks are reached through sanity_lib.course.grading.check

#: ch1_ex4/5: the methods whose maps the exercise compares with the Sobel edges.
EDGE_METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
                "guided_backprop", "gradcam", "guided_gradcam")
#: The edge scores of ch1_ex4 may differ from ours by this much (other rounding, float32).
SCORE_TOLERANCE = 0.02
#: ch1_ex5 accepts a method whose edge score is within this of the third best.
RANK_TOLERANCE = 0.05
#: ch1_ex2 accepts a SmoothGrad whose error is at most this times the library's own
#: Monte-Carlo error at the same number of samples.
SMOOTHGRAD_ERROR_RATIO = 1.3
_SG_SAMPLES, _SG_REFERENCE_SAMPLES = 64, 256


# ----------------------------------------------------------------------------- helpers

def _as_tensor(value, what):
    """A student's output as a float64 CPU tensor, or a CheckFailed saying what was expected."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor) or value.is_complex():
        raise CheckFailed(
            f"{what} should be a torch tensor of numbers, got {describe(value)}.\nHint: "
            "return the map itself, e.g. `return maps`, not None, a list or a string.")
    return value.detach().to("cpu", torch.float64)


def _rel_err(a, b):
    """Per-image relative L2 distance ||a_i - b_i|| / ||b_i||."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-30)


def _close(a, b, rtol=1e-4):
    return a.shape == b.shape and bool((_rel_err(a, b) <= rtol).all())


#: What each function exercise asks the student to write, and the library code that already
#: does it (forbidden inside the student's function; the check's reference still uses it).
_FORBIDDEN = {
    "gradient_x_input": dict(task="Gradient ⊙ Input from the gradient",
                             methods=["gradient_x_input"],
                             modules=["captum.attr._core.input_x_gradient"]),
    "smoothgrad": dict(task="SmoothGrad from the gradient",
                       methods=["smoothgrad", "vargrad", "integrated_gradients_smoothgrad"],
                       modules=["captum.attr._core.noise_tunnel"]),
}
_FORBIDDEN_HINT = {
    "gradient_x_input": "Use only `sl.saliency.explain(model, x, 'gradient')` (or autograd) "
                        "and multiply by x yourself.",
    "smoothgrad": "Add the noise yourself and call `sl.saliency.explain(noisy, 'gradient', "
                  "target=...)` on each noisy copy; do not ask the library for 'smoothgrad'.",
}


def _call(fn, name, usage, on, *args, **kwargs):
    """Run the student's function ``name`` through :func:`call_student` (signature, errors,
    no change of its inputs) with the library's version of the exercise forbidden."""
    with forbid_calls(**_FORBIDDEN[name], hint=_FORBIDDEN_HINT[name]):
        return call_student(fn, *args, name=name, usage=usage, on=on, **kwargs)


def _expect_function(answer, name, exercise):
    expect(callable(answer) and not isinstance(answer, type),
           f"The answer should be your function `{name}` itself, got {describe(answer)}.",
           hint=f"Pass the function without calling it: sl.grading.check('{exercise}', {name})")


def _gradient(model, x, target):
    """dS_target/dx by plain autograd (independent of the library)."""
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), x)
    return grad.detach()


def _predicted(model, x):
    with torch.no_grad():
        return model(x).argmax(dim=1)


class _SmallRGBNet(nn.Module):
    """A tiny seeded 3-channel CNN: inputs with negative values and real channel mixing."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 16, 5)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.act(self.conv(x)))))


@functools.lru_cache(maxsize=1)
def _cases():
    """(name, model, x): an MNIST CNN on digits, and a small RGB net on photos in [-1, 1]."""
    from sanity_lib import data, models

    digits, _ = data.load_mnist("test")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        rgb = _SmallRGBNet().eval()
    photos = data.sample_images(32, names=["chelsea", "coffee", "rocket"]) * 2 - 1
    return (("the MNIST CNN (freshly initialized, seed 0) on 4 test digits",
             models.mnist_cnn(seed=0), digits[:4]),
            ("a small RGB CNN on 3 photos scaled to [-1, 1]", rgb, photos))


# ----------------------------------------------------------------------------- ch1_ex1

_HINT_GXI = ("Get the gradient with `sl.saliency.explain(model, x, 'gradient')` (it "
             "explains each image's predicted class) and multiply it, element by element, "
             "with the input: same shape as x, signs kept.")


def _gxi_mistakes(model, x):
    g = _gradient(model, x, _predicted(model, x))
    g0 = _gradient(model, x, torch.zeros(len(x), dtype=torch.long))
    return [
        (g, "You returned the gradient itself. Gradient x input multiplies it, element by "
            "element, with the input: `x * g`."),
        (x * g.abs(), "You multiplied x by the *absolute* gradient. Keep the gradient's sign: "
                      "a negative value says that increasing the pixel lowers the score."),
        ((x * g).abs(), "You returned the absolute value of x * g. The map keeps its sign; "
                        "absolute values are taken only when a map is *displayed* or compared "
                        "in 'abs' mode."),
        (x * g0, "You explained class 0 for every image. Explain each image's predicted class "
                 "(`target=None`, the default of `explain`)."),
        (x + g, "You added the input and the gradient. Multiply them, element by element."),
    ]


@register("ch1_ex1")
def _check_ex1(answer):
    from sanity_lib.saliency import explain

    _expect_function(answer, "gradient_x_input", "ch1_ex1")
    outputs, references = [], []
    for case, model, x in _cases():
        out = _as_tensor(_call(answer, "gradient_x_input", "gradient_x_input(model, x)",
                               f"on {case}", model, x.clone()),
                         "What `gradient_x_input` returns")
        if out.dim() == x.dim() - 1 and out.shape == x.shape[:1] + x.shape[2:]:
            raise CheckFailed(
                f"On {case} your map has shape {tuple(out.shape)}, the input "
                f"{tuple(x.shape)}: you summed over the colour channels (or dropped the "
                "channel axis).\nHint: keep one value "
                "per pixel *and* channel; channels are summed only for display "
                "(`sl.similarity.normalize`).")
        expect(out.shape == x.shape,
               f"On {case} your map has shape {tuple(out.shape)}; expected the input's shape "
               f"{tuple(x.shape)}.", hint=_HINT_GXI)
        outputs.append(out)
        references.append(explain(model, x, "gradient_x_input").double())
    wrong = [i for i, (o, r) in enumerate(zip(outputs, references)) if not _close(o, r)]
    if not wrong:
        return
    cases = _cases()
    mistakes = [_gxi_mistakes(model, x) for _, model, x in cases]
    # A mistake that reproduces the answer on every case names it; failing that, one that
    # reproduces the first wrong case.
    for k, (_, message) in enumerate(mistakes[0]):
        if all(_close(o, m[k][0].double()) for o, m in zip(outputs, mistakes)):
            raise CheckFailed(f"{message}\nHint: {_HINT_GXI}")
    i = wrong[0]
    for candidate, message in mistakes[i]:
        if _close(outputs[i], candidate.double()):
            raise CheckFailed(f"{message} (Seen on {cases[i][0]}.)\nHint: {_HINT_GXI}")
    err = _rel_err(outputs[i], references[i])
    raise CheckFailed(
        f"On {cases[i][0]} your map differs from the library's gradient x input (relative "
        f"error {err.max().item():.2g} on image {int(err.argmax())}).\nHint: {_HINT_GXI}")


# ----------------------------------------------------------------------------- ch1_ex2

_HINT_SG = ("For each image i, sigma_i = noise_level * (x_i.max() - x_i.min()); draw "
            "n_samples noisy copies x_i + sigma_i * randn, take the gradient of the clean "
            "image's predicted class at each copy, and average.")


def _sigma(x, noise_level):
    flat = x.flatten(1)
    return noise_level * (flat.amax(dim=1) - flat.amin(dim=1))


def _own_smoothgrad(model, x, n_samples, sigma, seed, statistic="mean", noisy_target=False):
    """SmoothGrad by plain autograd, with a given per-image noise std (for the mistakes).

    All noisy copies go through the model in one batch (sample-major)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n_samples,) + tuple(x.shape)
    noisy = x + sigma.view((1, -1) + (1,) * (x.dim() - 1)) * torch.randn(shape, generator=gen)
    noisy = noisy.reshape((-1,) + tuple(x.shape[1:]))
    target = _predicted(model, noisy) if noisy_target else _predicted(model, x).repeat(n_samples)
    grads = _gradient(model, noisy, target).reshape(shape)
    return grads.var(dim=0, unbiased=False) if statistic == "var" else grads.mean(dim=0)


def _sg_input():
    """4 digits, two of them rescaled to [-1, 2]: per-image ranges 1 and 3."""
    from sanity_lib import data

    digits, _ = data.load_mnist("test")
    return torch.cat([digits[:2], 3 * digits[2:4] - 1])


@functools.lru_cache(maxsize=1)
def _sg_reference():
    """(model, x, reference mean, yardstick errors, typical mistakes), computed once.

    The model is the MNIST CNN freshly initialized with seed 0: the check needs no training.
    """
    from sanity_lib import models
    from sanity_lib.saliency import explain

    model = models.mnist_cnn(seed=0)
    x = _sg_input()
    rows = _SG_REFERENCE_SAMPLES * len(x)  # one model call each: the CNN is small
    reference = explain(model, x, "smoothgrad", n_samples=_SG_REFERENCE_SAMPLES, seed=1000,
                        batch_size=rows)
    # The library's own Monte-Carlo error at the number of samples the student uses.
    yardstick = torch.stack([
        _rel_err(explain(model, x, "smoothgrad", n_samples=_SG_SAMPLES, seed=s,
                         batch_size=rows), reference)
        for s in (1, 2)]).mean(dim=0)
    # The typical mistakes, each with as many samples as the reference.
    n = _SG_REFERENCE_SAMPLES
    batch_range = torch.full((len(x),), float(x.max() - x.min()))
    mistakes = [
        (_gradient(model, x, _predicted(model, x)),
         "Your map is the plain gradient: no noise reached the model."),
        (_own_smoothgrad(model, x, n, torch.full((len(x),), 0.15), 7),
         "Your noise has std noise_level itself, whatever the image. The paper scales it by "
         "each image's range: sigma_i = noise_level * (max(x_i) - min(x_i)) (here the last "
         "two images span [-1, 2], so their noise must be 3 times larger)."),
        (_own_smoothgrad(model, x, n, 0.15 * batch_range, 7),
         "Your noise std uses the range of the whole batch. Use each image's own range, "
         "max(x_i) - min(x_i) (the first two images span [0, 1], so their noise must be "
         "3 times smaller than that of the last two)."),
        (_own_smoothgrad(model, x, n, _sigma(x, 0.15), 7, noisy_target=True),
         "You explained each noisy copy's own predicted class. Explain the class predicted "
         "for the *clean* image at every copy (pass `target=` to `explain`)."),
        (_own_smoothgrad(model, x, n, _sigma(x, 0.15), 7, statistic="var"),
         "You returned the variance of the noisy gradients (that is VarGrad). SmoothGrad is "
         "their mean."),
    ]
    return model, x, reference, yardstick, mistakes


#: ch1_ex2 also runs the student's SmoothGrad at this other noise level ...
_SG_OTHER_LEVEL = 0.4


@functools.lru_cache(maxsize=1)
def _sg_other_level():
    """(reference, yardstick) at :data:`_SG_OTHER_LEVEL`, as :func:`_sg_reference`."""
    from sanity_lib.saliency import explain

    model, x = _sg_reference()[:2]
    rows = _SG_REFERENCE_SAMPLES * len(x)
    kw = dict(noise_level=_SG_OTHER_LEVEL, batch_size=rows)
    reference = explain(model, x, "smoothgrad", n_samples=_SG_REFERENCE_SAMPLES, seed=1000,
                        **kw)
    yardstick = torch.stack([
        _rel_err(explain(model, x, "smoothgrad", n_samples=_SG_SAMPLES, seed=s, **kw),
                 reference) for s in (1, 2)]).mean(dim=0)
    return reference, yardstick


def _run_smoothgrad(answer, model, x, **kwargs):
    usage = "smoothgrad(model, x, n_samples=50, noise_level=0.15, seed=0)"
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    out = _as_tensor(_call(answer, "smoothgrad", usage, f"with {settings}", model, x.clone(),
                           **kwargs), "What `smoothgrad` returns")
    expect(out.shape == x.shape,
           f"Your map has shape {tuple(out.shape)}; expected the input's {tuple(x.shape)}.",
           hint="Average over the noisy copies (the sample axis), not over the images.")
    expect(bool(torch.isfinite(out).all()), f"Your map contains NaN or inf ({settings}).",
           hint=_HINT_SG)
    return out


def _check_sg_settings(answer, model, x, out):
    """The settings the exercise names must be used: the seed, noise_level and n_samples."""
    again = _run_smoothgrad(answer, model, x, n_samples=_SG_SAMPLES, noise_level=0.15, seed=0)
    expect(torch.allclose(again, out, rtol=1e-5, atol=1e-8),
           "Two calls with seed=0 gave different maps: your noise is not drawn from the seed.",
           hint="Draw every noisy copy from `gen = torch.Generator().manual_seed(seed)` "
                "(`torch.randn(x.shape, generator=gen)`), not from the global random state.")
    other = _run_smoothgrad(answer, model, x, n_samples=_SG_SAMPLES, noise_level=0.15, seed=1)
    expect(not torch.allclose(other, out, rtol=1e-5, atol=1e-8),
           "seed=0 and seed=1 gave the same map: your function ignores `seed`.",
           hint="Seed the generator with the `seed` argument, not with a fixed number.")
    reference, yardstick = _sg_other_level()
    wider = _run_smoothgrad(answer, model, x, n_samples=_SG_SAMPLES,
                            noise_level=_SG_OTHER_LEVEL, seed=0)
    err = _rel_err(wider, reference)
    expect(bool((err <= SMOOTHGRAD_ERROR_RATIO * yardstick).all()),
           f"With noise_level={_SG_OTHER_LEVEL} your map differs from the library's SmoothGrad "
           f"at that level by {err.max().item():.2f} (relative L2 error), more than random "
           f"noise explains ({yardstick.max().item():.2f}), although it is right at 0.15: "
           "does your function use its `noise_level` argument?",
           hint="sigma_i = noise_level * (x_i.max() - x_i.min()), with the argument, not 0.15.")
    reference, yardstick = _sg_reference()[2:4]
    single = _run_smoothgrad(answer, model, x, n_samples=1, noise_level=0.15, seed=0)
    expect(bool((_rel_err(single, reference) > 2 * yardstick).any()),
           f"With n_samples=1 your map is as close to the {_SG_REFERENCE_SAMPLES}-sample "
           f"SmoothGrad as an average of {_SG_SAMPLES} noisy gradients is: your function "
           "ignores its `n_samples` argument.",
           hint="Loop (or batch) over `n_samples` noisy copies, with the argument.")


@register("ch1_ex2")
def _check_ex2(answer):
    _expect_function(answer, "smoothgrad", "ch1_ex2")
    model, x, reference, yardstick, mistakes = _sg_reference()
    out = _run_smoothgrad(answer, model, x, n_samples=_SG_SAMPLES, noise_level=0.15, seed=0)
    err = _rel_err(out, reference)
    allowed = SMOOTHGRAD_ERROR_RATIO * yardstick
    if bool((err <= allowed).all()):
        _check_sg_settings(answer, model, x, out)
        return
    ratio = out.flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)
    if bool(((ratio / _SG_SAMPLES - 1).abs() < 0.25).all()):
        raise CheckFailed("Your map is n_samples times too large: you summed the noisy "
                          f"gradients instead of averaging them.\nHint: {_HINT_SG}")
    # A mistake explains the answer when the answer is as close to it as a right answer is
    # to the reference (in units of the library's Monte-Carlo error), and the mistake itself
    # is far from the reference on these inputs.
    distances = [((_rel_err(out, wrong) / yardstick).max().item(), message)
                 for wrong, message in mistakes
                 if (_rel_err(wrong, reference) / yardstick).max() > 1.5]
    if distances:
        best, message = min(distances, key=lambda d: d[0])
        if best <= 2.2:
            raise CheckFailed(f"{message}\nHint: {_HINT_SG}")
    worst = int((err / allowed).argmax())
    raise CheckFailed(
        f"Your SmoothGrad of image {worst} differs from the library's by {err[worst]:.2f} "
        f"(relative L2 error, {_SG_SAMPLES} samples), while two runs of the library with "
        f"different seeds differ from it by only {yardstick[worst]:.2f}. This is more than "
        "random noise can explain.\nHint: " + _HINT_SG)


# ----------------------------------------------------------------------------- ch1_ex3

class _Applied(nn.Module):
    """A module that calls a torch.autograd.Function (the student's rectifier)."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, z):
        return self.function.apply(z)


class _GuidedTestNet(nn.Module):
    def __init__(self, make_activation):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.act1 = make_activation()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.act2 = make_activation()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(8 * 7 * 7, 32)
        self.act3 = make_activation()
        self.logits = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        return self.logits(self.act3(self.fc1(self.flatten(x))))


_HINT_GUIDED = ("In forward, remember the input (`ctx.save_for_backward(z)`) and return "
                "max(0, z). In backward, let the incoming gradient through only where it is "
                "positive *and* the saved input was positive; everywhere else return 0.")


def _guided_mistakes(z, g):
    return [
        (g * (z > 0), "Your backward is the ordinary ReLU backward, so your map would be the "
                      "plain gradient. Guided Backprop *also* drops the negative incoming "
                      "gradients: `grad_out.clamp(min=0) * (z > 0)`."),
        (g.clamp(min=0), "Your backward passes every positive gradient, also where the input "
                         "was negative (that is the 'deconvnet' rule). Guided Backprop keeps "
                         "the forward mask too: multiply by `(z > 0)`."),
        (g, "Your backward passes the gradient through unchanged."),
        (g.abs() * (z > 0), "Your backward takes the absolute value of the gradient. Negative "
                            "gradients are set to zero, not flipped: `grad_out.clamp(min=0)`."),
        (g.clamp(max=0) * (z > 0), "Your backward keeps the *negative* gradients. Keep the "
                                   "positive ones: `grad_out.clamp(min=0)`."),
        (g.clamp(min=0) * (z < 0), "Your backward passes gradients where the input was "
                                   "*negative*. The mask is `(z > 0)`: where the ReLU was "
                                   "open in the forward pass."),
    ]


def _guided_step(what, step):
    """Run ``step()`` (the student's forward or backward); errors become plain words, and
    the library's own guided rectifier may not be borrowed."""
    where = {"forward": "GuidedReLU.apply(z) (the forward pass)",
             "backward": "the backward pass of GuidedReLU",
             "network": "a small CNN whose rectifiers are GuidedReLU"}[what]
    try:
        with forbid_calls("the Guided Backprop rectifier", modules=["sanity_lib.saliency._guided"],
                          hint="Write forward and backward with tensor operations; do not "
                               "subclass or call the library's rectifier."):
            return step()
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as err:  # noqa: BLE001 (the student's code: reported in plain words)
        raise CheckFailed(f"{where} raised {type(err).__name__}: {err}\nHint: {_HINT_GUIDED} "
                          "`backward` must return one tensor, shaped like `grad_output`.") from None


@register("ch1_ex3")
def _check_ex3(answer):
    from sanity_lib import data
    from sanity_lib.saliency import explain

    expect(isinstance(answer, type) and issubclass(answer, torch.autograd.Function),
           "The answer should be your class `GuidedReLU` itself, a subclass of "
           "`torch.autograd.Function`.",
           hint="Pass the class, not an instance or a call: "
                "sl.grading.check('ch1_ex3', GuidedReLU)")
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    leaf = z.clone().requires_grad_(True)
    out = _guided_step("forward", lambda: answer.apply(leaf))
    expect(isinstance(out, torch.Tensor),
           f"GuidedReLU.apply returned {describe(out)}; expected a tensor.",
           hint=_HINT_GUIDED)
    expect(out.shape == z.shape and torch.allclose(out.detach(), z.clamp(min=0)),
           "The forward pass of GuidedReLU is not max(0, z). Guided Backprop changes only "
           "the backward pass; the network must compute the same outputs.", hint=_HINT_GUIDED)
    expect(out.requires_grad, "The output of GuidedReLU does not require grad.",
           hint="Compute the forward with tensor operations inside `forward` and return the "
                "result (do not call `.detach()` or use `torch.no_grad()`).")
    _guided_step("backward", lambda: out.backward(g))
    expect(leaf.grad is not None and leaf.grad.shape == z.shape,
           "Your backward returned no gradient of the input's shape.", hint=_HINT_GUIDED)
    grad = leaf.grad.detach()
    if not torch.allclose(grad, g.clamp(min=0) * (z > 0)):
        for wrong, message in _guided_mistakes(z, g):
            if torch.allclose(grad, wrong):
                raise CheckFailed(f"{message}\nHint: {_HINT_GUIDED}")
        raise CheckFailed("Your backward does not give grad_out where both grad_out > 0 and "
                          f"z > 0, and 0 elsewhere.\nHint: {_HINT_GUIDED}")
    # In a network: the student's rectifier with plain autograd must give the library's GBP.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        reference_net = _GuidedTestNet(nn.ReLU).eval()
    student_net = _GuidedTestNet(lambda: _Applied(answer)).eval()
    student_net.load_state_dict(reference_net.state_dict())
    digits, _ = data.load_mnist("test")
    x = digits[:4]
    expected = explain(reference_net, x, "guided_backprop").double()
    got = _guided_step("network", lambda: _gradient(student_net, x,
                                                    _predicted(reference_net, x))).double()
    expect(_close(got, expected, rtol=1e-4),
           "GuidedReLU is right on single tensors, but in a small CNN (three GuidedReLUs, max "
           "pooling) the input gradient differs from the library's Guided Backprop "
           f"(relative error {_rel_err(got, expected).max().item():.2g}).",
           hint="Do not change tensors in place in forward or backward, and save the "
                "forward *input* (not a view you modify later).")


# ----------------------------------------------------------------------------- ch1_ex4/5

def _gray_variants(images):
    """N x 3 x H x W in [0, 1] -> the grey images a student may use: the channel mean (as
    ``sl.studies.failures.edge_maps``) and the luminance of ``skimage.color.rgb2gray``."""
    return {"mean": images.mean(axis=1),
            "luminance": np.einsum("nchw,c->nhw", images, np.array([0.2125, 0.7154, 0.0721]))}


def _abs_normalized(maps):
    """The paper's abs normalization of N x C x H x W maps (numpy, independent of the library)."""
    s = np.abs(maps).sum(axis=1)
    flat = s.reshape(len(s), -1)
    s = s - flat.min(axis=1)[:, None, None]
    flat = s.reshape(len(s), -1)
    p = np.percentile(flat, 99, axis=1)
    p = np.where(p > 0, p, flat.max(axis=1))  # sparse maps: divide by the maximum
    return np.clip(s / np.where(p > 0, p, 1.0)[:, None, None], 0.0, 1.0)




def _edge_score_variants(maps, images):
    """Method -> {variant: mean Spearman correlation of its abs map with the Sobel edges}.

    The reference variant ``("mean", "normalized")`` is what ``sl.studies.failures.edge_similarity``
    computes (grey = channel mean, both maps abs-normalized); the others (luminance grey, raw
    Sobel magnitude) differ only in ties and weights, and are accepted as well.
    """
    from skimage.filters import sobel

    expect(isinstance(maps, dict) and maps,
           f"maps= should be the dict method name -> maps (N x C x H x W) you computed, got "
           f"{describe(maps)}.",
           hint="sl.grading.check('ch1_ex4', edge_scores, maps=maps, images=photos)")
    maps = {method_name(m): v for m, v in maps.items()}
    missing = [m for m in EDGE_METHODS if m not in maps]
    expect(not missing,
           f"maps= has no maps of {missing}; the exercise compares all seven methods "
           f"{list(EDGE_METHODS)}.",
           hint="Compute `maps = {m: sl.saliency.explain(model, x, m, ...) for m in methods}` "
                "with the exercise's list of methods.")
    images = as_array(images, "images=")
    expect(images.ndim == 4 and images.shape[1] == 3 and images.min() >= 0
           and images.max() <= 1,
           f"images= should be the N x 3 x H x W photos in [0, 1] (before preprocess), got "
           f"shape {images.shape} and values in [{images.min():.2g}, {images.max():.2g}].",
           hint="Pass `photos = sl.data.sample_images(224, names=...)`, not "
                "`model.preprocess(photos)`.")
    edges = {}
    for grey_name, grey in _gray_variants(images).items():
        raw = np.stack([sobel(g) for g in grey])
        edges[grey_name, "raw"] = raw
        edges[grey_name, "normalized"] = _abs_normalized(raw[:, None])
    scores = {}
    for method, m in maps.items():
        m = as_array(m, f"maps[{method!r}]")
        expect(m.ndim == 4 and m.shape[0] == images.shape[0] and m.shape[2:] == images.shape[2:],
               f"maps[{method!r}] has shape {m.shape}; expected one N x C x H x W map per "
               f"photo, N x C x {images.shape[2]} x {images.shape[3]}.")
        shown = _abs_normalized(m)
        scores[method] = {
            variant: float(np.mean([stats.spearmanr(a.ravel(), e.ravel())[0]
                                    for a, e in zip(shown, edge)]))
            for variant, edge in edges.items()}
    return scores


def _edge_scores(maps, images):
    """Method -> the reference edge score (as ``sl.studies.failures.edge_similarity``)."""
    return {m: v["mean", "normalized"] for m, v in _edge_score_variants(maps, images).items()}


@register("ch1_ex4")
def _check_ex4(answer, maps=None, images=None):
    expect(maps is not None and images is not None,
           "This check measures the edge scores itself from your maps and photos; pass them.",
           hint="sl.grading.check('ch1_ex4', edge_scores, maps=maps, images=photos)")
    expect(isinstance(answer, dict),
           f"edge_scores should be a dict method name -> number, got {type(answer).__name__}.",
           hint="{method: rho.mean().item() for method, rho in ...}")
    variants = _edge_score_variants(maps, images)
    measured = {m: v["mean", "normalized"] for m, v in variants.items()}
    answer = {method_name(m, available=measured): v for m, v in answer.items()}
    missing = [m for m in measured if m not in answer]
    expect(not missing, f"edge_scores has no score for {missing}.",
           hint="Give one number per method in `maps`.")
    for method, value in answer.items():
        if isinstance(value, torch.Tensor) and value.numel() > 1:
            raise CheckFailed(
                f"edge_scores[{method!r}] holds {value.numel()} numbers (one per photo); "
                "expected their mean.\nHint: `rho.mean().item()`.")
        value = float(value) if isinstance(value, (numbers.Real, torch.Tensor, np.generic)) \
            and not isinstance(value, bool) else value
        expect(isinstance(value, float) and math.isfinite(value),
               f"edge_scores[{method!r}] should be a number, got {describe(value)}.",
               hint="One float per method: `rho.mean().item()`.")
        if method not in measured:
            continue
        if min(abs(value - v) for v in variants[method].values()) > SCORE_TOLERANCE:
            if abs(value + measured[method]) <= SCORE_TOLERANCE and abs(value) > SCORE_TOLERANCE:
                hint = "Your sign is flipped: correlate the map with the edges, not 1 - map."
            elif value >= 0.999:
                hint = "A score of 1 means you correlated something with itself."
            else:
                hint = ("Normalize with `sl.similarity.normalize(maps[m], 'abs')` (N x H x W), "
                        "take the edges from `sl.studies.failures.edge_maps(photos, 'sobel')`, pass "
                        "both to `sl.similarity.spearman(..., mode=None)`, then average over "
                        "the photos. `sl.studies.failures.edge_similarity` computes the same numbers.")
            raise CheckFailed(
                f"Your edge score of {method} is {value:.3f}; measured from your maps it is "
                f"{measured[method]:.3f}.\nHint: {hint}")


@register("ch1_ex5")
def _check_ex5(answer, maps=None, images=None):
    expect(maps is not None and images is not None,
           "This check ranks the methods itself from your maps and photos; pass them.",
           hint="sl.grading.check('ch1_ex5', most_edge_like, maps=maps, images=photos)")
    expect(isinstance(answer, (list, tuple)) and all(isinstance(a, str) for a in answer),
           f"most_edge_like should be a list of method names, got {describe(answer)}.",
           hint="e.g. ['smoothgrad', 'gradcam', 'guided_backprop']")
    measured = _edge_scores(maps, images)
    chosen = [method_name(a, available=measured) for a in answer]
    expect(len(set(chosen)) == len(chosen), "Your list names a method twice.")
    expect(len(chosen) == 3, f"Your list has {len(chosen)} methods; the exercise asks for the "
           "three with the highest edge scores.")
    ranking = sorted(measured, key=measured.get, reverse=True)
    third = measured[ranking[2]]
    table = ", ".join(f"{m} {measured[m]:+.2f}" for m in ranking)
    for method in chosen:
        if measured[method] < third - RANK_TOLERANCE:
            place = ranking.index(method) + 1
            raise CheckFailed(
                f"{method} ranks #{place} of {len(ranking)} with an edge score of "
                f"{measured[method]:+.2f}; the third highest is {third:+.2f} "
                f"({ranking[2]}). Measured from your maps: {table}.\nHint: answer from the "
                "numbers, not from how edge-like the pictures look: that is exactly the "
                "confirmation bias this chapter warns about.")


# ----------------------------------------------------------------------------- ch1_ex6

_USAGE_CAM = "my_gradcam(model, x, layer)"
_HINT_CAM = ("Keep the layer's output A with a forward hook, and its gradient with "
             "`A.register_hook(...)` (or `torch.autograd.grad(score, A)`); back-propagate the "
             "sum of each image's predicted-class logit; alpha = the gradient averaged over "
             "the h x w positions; map = relu((alpha * A).sum(dim=1, keepdim=True)), then "
             "F.interpolate(map, size=x.shape[2:], mode='bilinear', align_corners=False). "
             "Remove the hook before you return.")
_FORBIDDEN_CAM = dict(task="GradCAM with hooks", methods=["gradcam", "guided_gradcam"],
                      modules=["captum.attr._core.layer.grad_cam", "sanity_lib.saliency._gradcam"])
_FORBIDDEN_CAM_HINT = ("Write the hooks yourself: `layer.register_forward_hook(...)` and "
                       "`torch.autograd.grad`; do not ask the library or Captum for 'gradcam'.")


class _CamNet(nn.Module):
    """A seeded RGB CNN whose explained layer (``act``) is smaller than its non-square input,
    after batch norm: the upsampling and the channel weights both matter."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5))

    def forward(self, x):
        return self.head(self.act(self.bn(self.conv2(self.pool(self.act1(self.conv1(x)))))))


@functools.lru_cache(maxsize=1)
def _cam_cases():
    """(name, model, x, layer name): the MNIST CNN at act2 (14 x 14 for 28 x 28 digits) and a
    small RGB net at a 10 x 12 layer for 20 x 24 crops of photos."""
    from sanity_lib import data, models

    digits, _ = data.load_mnist("test")
    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = _CamNet()
        with torch.no_grad():     # batch-norm statistics that are not the identity
            net.bn.running_mean.uniform_(-0.5, 0.5)
            net.bn.running_var.uniform_(0.5, 2.0)
    photos = data.sample_images(32, names=["chelsea", "coffee", "rocket"])[:, :, 4:24, 2:26]
    return (("the MNIST CNN (freshly initialized, seed 0) at layer act2, on 6 test digits",
             models.mnist_cnn(seed=0).eval(), digits[:6], "act2"),
            ("a small RGB CNN at its layer act (10 x 12), on 3 photos cropped to 20 x 24",
             net.eval(), photos * 2 - 1, "act"))


def _layer_and_grad(model, layer, x, score):
    """The layer's output A and dscore/dA, by the check's own hook (outside the student's
    call). ``score(logits)`` gives one number per image."""
    kept = {}
    handle = layer.register_forward_hook(lambda module, inputs, out: kept.update(a=out))
    try:
        with torch.enable_grad():
            logits = model(x.detach())
            (grad,) = torch.autograd.grad(score(logits).sum(), kept["a"])
    finally:
        handle.remove()
    return kept["a"].detach(), grad.detach()


def _wrong_cam(a, g, size, *, relu=True, pool="mean", mode="bilinear", align=False):
    """GradCAM with one step done another way, for the catalogue of mistakes (the right map
    is the library's, :func:`sanity_lib.saliency._shared._cam`)."""
    import torch.nn.functional as F

    alpha = {"mean": g.mean(dim=(2, 3), keepdim=True), "sum": g.sum(dim=(2, 3), keepdim=True),
             "none": g}[pool]
    cam = (alpha * a).sum(dim=1, keepdim=True)
    cam = cam.abs() if relu == "abs" else F.relu(cam) if relu else cam
    if mode == "nearest":
        return F.interpolate(cam, size=size, mode="nearest")
    return F.interpolate(cam, size=size, mode=mode, align_corners=align)


def _cam_mistakes(model, layer, x):
    """(wrong maps, message) for the typical mistakes, computed on the check's inputs."""
    size = tuple(x.shape[2:])
    c = _predicted(model, x)
    rows = torch.arange(len(x))
    a, g = _layer_and_grad(model, layer, x, lambda out: out[rows, c])
    _, g_prob = _layer_and_grad(model, layer, x, lambda out: out.softmax(1)[rows, c])
    _, g_zero = _layer_and_grad(model, layer, x, lambda out: out[:, 0])
    _, g_all = _layer_and_grad(model, layer, x, lambda out: out.sum(1))
    right = _library_cam(a, g, size)
    peak = right.flatten(1).amax(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
    return [
        (_wrong_cam(a, g, size, relu=False), "Your map is the weighted channel sum without the ReLU. "
         "GradCAM keeps only the positive evidence for the class: relu(sum_k alpha_k A^k)."),
        (_wrong_cam(a, g, size, relu="abs"),
         "You took the absolute value of the weighted sum. GradCAM clips the negative part "
         "to zero (ReLU); it does not flip it."),
        (_wrong_cam(a, g, size, pool="none"), "You weighted every activation by its own gradient "
         "(relu(sum_k dS/dA^k * A^k) position by position). GradCAM first averages the "
         "gradient over the h x w positions: one weight alpha_k per channel."),
        (_wrong_cam(a, g, size, pool="sum"), "Your channel weights are the *sum* of the gradient over "
         "the positions, h x w times too large. alpha_k is the spatial *mean*."),
        (_wrong_cam(a, g, size, mode="nearest"), "You upsampled with nearest neighbours. The "
         "exercise (and the library) upsample bilinearly, align_corners=False."),
        (_wrong_cam(a, g, size, align=True), "You upsampled with align_corners=True. Use "
         "F.interpolate(..., mode='bilinear', align_corners=False), as the library does."),
        (_wrong_cam(a, g, size, mode="bicubic"), "You upsampled bicubically. Use mode='bilinear' "
         "(bicubic can overshoot below zero)."),
        (_wrong_cam(a, g_prob, size), "You back-propagated the softmax probability. GradCAM uses "
         "the class score before the softmax: the logit."),
        (_wrong_cam(a, g_zero, size), "You explained class 0 for every image. Explain each image's "
         "predicted class: `model(x).argmax(dim=1)`."),
        (_wrong_cam(a, g_all, size), "You back-propagated the sum of all the logits. Pick each "
         "image's predicted-class logit: `out[torch.arange(len(x)), predicted].sum()`."),
        (right / peak, "Your maps are the right ones divided by their maximum. Return them "
         "unnormalized: the comparisons normalize maps themselves."),
    ]


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hook_ids(model):
    """Every hook registered on the model's modules: {(module, kind): set of handle ids}."""
    return {(m, kind): set(getattr(m, kind, {})) for m in model.modules() for kind in _HOOK_DICTS}


def _hooks(model) -> int:
    return sum(len(ids) for ids in _hook_ids(model).values())


def _remove_new_hooks(model, before) -> int:
    """Remove the hooks registered since ``before`` (:func:`_hook_ids`); return how many."""
    removed = 0
    for (module, kind), ids in _hook_ids(model).items():
        for key in ids - before[(module, kind)]:
            del getattr(module, kind)[key]
            removed += 1
    return removed


@register("ch1_ex6")
def _check_ex6(answer):
    from sanity_lib.saliency import explain

    _expect_function(answer, "my_gradcam", "ch1_ex6")
    for case, model, x, layer_name in _cam_cases():
        layer = model.get_submodule(layer_name)
        before = _hook_ids(model)
        try:
            with forbid_calls(**_FORBIDDEN_CAM, hint=_FORBIDDEN_CAM_HINT):
                raw = call_student(answer, model, x.clone(), layer, name="my_gradcam",
                                   usage=_USAGE_CAM, on=f"on {case}")
        finally:
            left = _remove_new_hooks(model, before)   # the check's models stay clean
        if left:
            raise CheckFailed(
                f"On {case} your function left {left} hook(s) registered on the model. "
                "Every later forward pass would run them again (and keep tensors alive).\n"
                "Hint: keep the handle, `h = layer.register_forward_hook(...)`, and call "
                "`h.remove()` before returning (a try/finally is safest).")
        out = _as_tensor(raw, "What `my_gradcam` returns")
        reference = explain(model, x, "gradcam", layer=layer_name).double()
        n, _, height, width = x.shape
        if out.dim() == 4 and out.shape[0] == n and out.shape[1] == 1 and \
                out.shape[2:] != x.shape[2:]:
            raise CheckFailed(
                f"On {case} your maps are {tuple(out.shape[2:])}, the input {height} x "
                f"{width}: upsample the layer's map to the input size.\nHint: {_HINT_CAM}")
        if out.dim() == 3 and out.shape == (n, height, width):
            raise CheckFailed(
                f"On {case} your maps have shape {tuple(out.shape)}; the exercise asks for "
                f"N x 1 x H x W = {tuple(reference.shape)}.\nHint: keep the channel axis, "
                "`.sum(dim=1, keepdim=True)`.")
        expect(out.shape == reference.shape,
               f"On {case} your maps have shape {tuple(out.shape)}; expected "
               f"{tuple(reference.shape)} (N x 1 x H x W).", hint=_HINT_CAM)
        if _close(out, reference, rtol=1e-4):
            continue
        for wrong, message in _cam_mistakes(model, layer, x):
            wrong = wrong.double()
            if not _close(wrong, reference, rtol=1e-3) and _close(out, wrong, rtol=1e-3):
                raise CheckFailed(f"On {case}: {message}\nHint: {_HINT_CAM}")
        if bool((out < -1e-6).any()):
            raise CheckFailed(f"On {case} your map has negative values; a GradCAM map is a "
                              f"ReLU's output.\nHint: {_HINT_CAM}")
        worst = int(_rel_err(out, reference).argmax())
        raise CheckFailed(
            f"On {case} your map of image {worst} differs from GradCAM's by "
            f"{_rel_err(out, reference)[worst]:.2g} (relative L2 error).\nHint: {_HINT_CAM}")
