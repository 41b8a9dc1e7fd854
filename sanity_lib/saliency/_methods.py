"""Every saliency method: how it is computed, and its record in the registry.

Each method is a ``plan`` function followed by its :func:`register` call. A plan gets the
model, the whole (checked) input and the method's checked settings, and returns
``(fn, images_per_chunk)``: ``fn(x_chunk, targets, start)`` explains one chunk of images,
``start`` being the chunk's first image index (noise streams and baselines follow it).
:func:`sanity_lib.saliency.explain` runs the chunks; the fused sweep engine
(``_shared.py``) computes the methods that declare ``shares`` from shared passes instead.

Captum computes what it does well (the gradient, gradient x input, Integrated Gradients'
quadrature, DeepLift, LRP-epsilon and LRP-z+); the rest is ours and proven against
independent computations in ``tests/test_saliency.py`` (LRP-alpha-beta in
``tests/test_lrp_alpha_beta.py``).
"""
import torch

from . import _gradcam, _guided, _noise, _propagation
from ._inputs import check_baseline, probe
from ._registry import Method, register

__all__ = []

# Settings shared by families of methods (the paper's values).
NOISE = {"n_samples": 50, "noise_level": 0.15, "seed": 0}
INTEGRATION = {"n_steps": 50, "baseline": 0.0, "integration": "gausslegendre",
               "internal_batch_size": None}


def _leaf(x):
    # A fresh leaf that already requires grad: Captum then neither warns nor flips flags.
    return x.detach().requires_grad_(True)


def _gradient(model, x, target):
    from captum.attr import Saliency

    return Saliency(model).attribute(_leaf(x), target=target.to(x.device), abs=False)


def _integrated_gradients(model, x, target, baseline, opts):
    from captum.attr import IntegratedGradients

    from ._integration import CAPTUM_RULES, nodes

    internal = opts["internal_batch_size"] or opts["batch_size"]
    if opts["integration"] not in CAPTUM_RULES:  # a rule Captum does not have: the sum itself
        weights, alphas = nodes(opts["integration"], opts["n_steps"])
        total = torch.zeros_like(x)
        for w, a in zip(weights, alphas):
            total += w * _gradient(model, baseline + a * (x - baseline), target)
        return (x - baseline) * total
    return IntegratedGradients(model).attribute(
        _leaf(x), baselines=baseline, target=target.to(x.device), n_steps=opts["n_steps"],
        method=opts["integration"],
        # Captum needs room for at least one step of every image in the batch.
        internal_batch_size=max(internal, x.shape[0]),
    )


def _noisy_chunk(opts):
    # Images per chunk so that images x noise samples fit one batch.
    return max(1, opts["batch_size"] // opts["n_samples"])


def _image_layer(model, x, opts, method):
    if x.dim() != 4:
        raise ValueError(
            f"{method} needs image input N x C x H x W; got x of shape {tuple(x.shape)}")
    _, layer = _gradcam.resolve_layer(model, opts["layer"], probe(model, x[:1], True))
    return layer


# ----------------------------------------------------------------------------- gradients

def plan_gradient(model, x, opts):
    return (lambda xb, tb, s: _gradient(model, xb, tb)), opts["batch_size"]


register(Method(
    name="gradient", label="Gradient", paper="figure 2", shares=("plain",),
    computes="dS_c/dx, signed (Captum ``Saliency``, abs=False)",
    settings={}, plan=plan_gradient, reference="Simonyan et al. 2014",
    aliases=("grad", "saliency", "vanilla_gradient", "vanilla gradient", "saliency map"),
))


def plan_gradient_x_input(model, x, opts):
    from captum.attr import InputXGradient

    def fn(xb, tb, s):
        return InputXGradient(model).attribute(_leaf(xb), target=tb.to(xb.device))
    return fn, opts["batch_size"]


register(Method(
    name="gradient_x_input", label="Gradient ⊙ Input", paper="figure 2", shares=("plain",),
    computes="x * dS_c/dx", settings={}, plan=plan_gradient_x_input,
    reference="Shrikumar et al. 2016",
    aliases=("input_x_gradient", "gradient_input", "gradient_times_input", "gxi",
             "grad_x_input", "input_times_gradient"),
))


def plan_integrated_gradients(model, x, opts):
    baseline = check_baseline(opts["baseline"], x)

    def fn(xb, tb, s):
        return _integrated_gradients(model, xb, tb, baseline[s:s + len(xb)].contiguous(), opts)
    return fn, opts["batch_size"]


register(Method(
    name="integrated_gradients", label="Integrated Gradients", paper="figure 2",
    shares=("integrated",), computes="(x - x') * mean over the path of the gradient",
    settings=INTEGRATION, plan=plan_integrated_gradients, reference="Sundararajan et al. 2017",
    aliases=("ig", "integrated_gradient", "integrated gradient"),
))


# ----------------------------------------------------------------------------- noise

def _plan_noisy_gradient(statistic):
    def plan(model, x, opts):
        def fn(xb, tb, s):
            return _noise.noisy_statistic(lambda rows, t: _gradient(model, rows, t),
                                          xb, tb, s, opts, statistic)
        return fn, _noisy_chunk(opts)
    return plan


register(Method(
    name="smoothgrad", label="SmoothGrad", paper="figure 2", shares=("noise",),
    computes="mean gradient over noisy copies of x", settings=NOISE,
    plan=_plan_noisy_gradient("mean"), reference="Smilkov et al. 2017",
    aliases=("sg", "smooth_grad", "smoothgrad_gradient"),
))

register(Method(
    name="vargrad", label="VarGrad", paper="appendix", shares=("noise",),
    computes="variance of those noisy gradients", settings=NOISE,
    plan=_plan_noisy_gradient("var"), reference="Adebayo et al. 2018, appendix",
    aliases=("var_grad", "variance_grad"),
))


def plan_integrated_gradients_smoothgrad(model, x, opts):
    baseline = check_baseline(opts["baseline"], x)

    def fn(xb, tb, s):
        base = baseline[s:s + len(xb)].contiguous()

        def ig(rows, t):
            copies = rows.shape[0] // base.shape[0]  # rows are sample-major
            reps = base.repeat((copies,) + (1,) * (base.dim() - 1))
            return _integrated_gradients(model, rows, t, reps, opts)
        return _noise.noisy_statistic(ig, xb, tb, s, opts, "mean")
    return fn, _noisy_chunk(opts)


register(Method(
    name="integrated_gradients_smoothgrad", label="IG-SmoothGrad", paper="figure 2",
    computes="SmoothGrad over Integrated Gradients", settings={**NOISE, **INTEGRATION},
    plan=plan_integrated_gradients_smoothgrad, reference="Smilkov et al. 2017",
    aliases=("ig_smoothgrad", "ig_sg", "smoothgrad_ig", "integrated_gradients_sg"),
))


# ----------------------------------------------------------------------------- guided, CAM

def plan_guided_backprop(model, x, opts):
    return ((lambda xb, tb, s: _guided.guided_backprop(model, xb, tb, warn=s == 0,
                                                       smooth=opts["smooth"])),
            opts["batch_size"])


register(Method(
    name="guided_backprop", label="Guided Backprop", paper="figure 2", shares=("guided",),
    computes="backprop with negative gradients zeroed at every rectifier",
    settings={"smooth": "plain"}, plan=plan_guided_backprop, reference="Springenberg et al. 2015",
    aliases=("gbp", "guided_backpropagation", "guided_bp"),
))


def plan_gradcam(model, x, opts):
    layer = _image_layer(model, x, opts, "gradcam")
    return (lambda xb, tb, s: _gradcam.gradcam(model, layer, xb, tb)), opts["batch_size"]


register(Method(
    name="gradcam", label="GradCAM", paper="figure 2", shares=("plain",),
    computes="ReLU(sum_k alpha_k A^k) at the last conv block, N x 1 x H x W",
    settings={"layer": None}, plan=plan_gradcam, reference="Selvaraju et al. 2017",
    aliases=("grad_cam", "gcam"),
))


def plan_guided_gradcam(model, x, opts):
    layer = _image_layer(model, x, opts, "guided_gradcam")

    def fn(xb, tb, s):
        guided = _guided.guided_backprop(model, xb, tb, warn=s == 0, smooth=opts["smooth"])
        return guided * _gradcam.gradcam(model, layer, xb, tb)
    return fn, opts["batch_size"]


register(Method(
    name="guided_gradcam", label="Guided GradCAM", paper="figure 2",
    shares=("plain", "guided"), computes="guided_backprop * upsampled gradcam",
    settings={"layer": None, "smooth": "plain"}, plan=plan_guided_gradcam, reference="Selvaraju et al. 2017",
    aliases=("guided_grad_cam", "ggcam"),
))


# ----------------------------------------------------------------------------- propagation

def plan_deeplift(model, x, opts):
    baseline = check_baseline(opts["baseline"], x)
    clone = _propagation.prepare_copy(model, "deeplift")
    _propagation.check_deeplift(clone, x[:1])
    # Captum's DeepLift runs inputs and baselines as one batch of twice the size.
    return ((lambda xb, tb, s: _propagation.deeplift(
        clone, xb, tb, baseline[s:s + len(xb)].contiguous())), max(1, opts["batch_size"] // 2))


register(Method(
    name="deeplift", label="DeepLIFT", paper="not in the paper",
    computes="Captum DeepLift (rescale rule), zero baseline", settings={"baseline": 0.0},
    plan=plan_deeplift, reference="Shrikumar et al. 2017", aliases=("deep_lift",),
))


def plan_lrp_epsilon(model, x, opts):
    clone = _propagation.prepare_copy(model, "lrp_epsilon")
    _propagation.check_lrp(clone, x[:1])
    return ((lambda xb, tb, s: _propagation.lrp_epsilon(clone, xb, tb, opts["epsilon"])),
            opts["batch_size"])


register(Method(
    name="lrp_epsilon", label="LRP-ε", paper="not in the paper",
    computes="Captum LRP, epsilon rule on every layer", settings={"epsilon": 1e-9},
    plan=plan_lrp_epsilon, reference="Bach et al. 2015", aliases=("lrp", "lrp_eps"),
))


def plan_lrp_zplus(model, x, opts):
    clone = _propagation.prepare_copy(model, "lrp_zplus")
    _propagation.check_lrp(clone, x[:1], "lrp_zplus")
    return ((lambda xb, tb, s: _propagation.lrp_zplus(clone, xb, tb)), opts["batch_size"])


register(Method(
    name="lrp_zplus", label="LRP-z⁺", paper="not in the paper",
    computes="Captum LRP, z+ rule (alpha 1, beta 0) on every layer", settings={},
    plan=plan_lrp_zplus, reference="Montavon et al. 2017",
    aliases=("lrp_z_plus", "lrp_alpha1_beta0", "zplus"),
))


def plan_lrp_alpha_beta(model, x, opts):
    # Checked here: the settings layer passes a method's own settings through unchecked.
    alpha, beta = _propagation.check_alpha_beta(opts["alpha"], opts["beta"])
    clone = _propagation.prepare_copy(model, "lrp_alpha_beta")
    _propagation.check_lrp_alpha_beta(clone, x[:1])
    return ((lambda xb, tb, s: _propagation.alpha_beta_relevance(clone, xb, tb, alpha, beta)),
            opts["batch_size"])


register(Method(
    name="lrp_alpha_beta", label="LRP-αβ", paper="not in the paper",
    computes="LRP, alpha-beta rule on every layer (ours, not Captum's): alpha x positive "
             "minus beta x negative contributions, alpha - beta = 1",
    settings={"alpha": 2.0, "beta": 1.0}, plan=plan_lrp_alpha_beta,
    reference="Bach et al. 2015; Montavon et al. 2017",
    aliases=("lrp_alphabeta", "lrp_ab", "alpha_beta_lrp"),
))
