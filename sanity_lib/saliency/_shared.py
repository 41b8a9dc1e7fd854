"""Several saliency methods at once, sharing forward-backward passes (for sweeps).

This is the library's one engine: :func:`explain` runs it for one method, the sanity checks'
sweeps for many. A sweep explains the same images with many methods under many models;
computed one method at a time (:func:`reference`, each method's own plan), the methods
repeat each other's work. :func:`explain_all` gives the same maps as one :func:`reference`
call per method (up to float rounding), but

- **shares passes.** One plain backward gives the gradient, gradient x input and the
  GradCAM gradients of every GradCAM layer; one guided backward gives Guided Backprop;
  Guided GradCAM is their product; SmoothGrad and VarGrad are the mean and variance of
  the *same* noisy gradients when their noise settings agree.
- **batches** Integrated Gradients' path points and SmoothGrad's noisy copies of all
  images into chunks of at most ``batch_size`` rows per pass (the smallest
  ``batch_size`` among the methods), fewer where the activations a pass keeps for its
  backward would pass :data:`PASS_MEMORY` (measured on a one-row probe).
- **runs a faster copy of the model** (:func:`fast_copy`): batch norm folded into the
  convolution before it (eval mode only: the affine map is merged into the conv's
  weights, so each such layer is one pass over memory instead of two) and, on the CPU
  for images of 64 x 64 pixels or more, the channels-last memory layout, which oneDNN's
  convolutions run faster. Both change only the rounding; a probe checks that the copy
  gives the model's logits, and falls back to the model itself if not.

Methods without a shared path (``integrated_gradients_smoothgrad``, ``deeplift``,
``lrp_epsilon``) run their own plans (:func:`reference`). Reduced precision (bfloat16) and
compiled models are not used.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import _gradcam, _guided, _noise
from ._engine import reference
from ._inputs import (argmax_target, check_baseline, check_input,
                      check_model, check_target, eval_mode, probe)
from ._registry import REGISTRY
from ._settings import check_settings, resolve_method

__all__ = ["SHARED_METHODS", "PASS_MEMORY", "explain_all", "fast_copy", "passes_per_image",
           "saved_bytes_per_row"]

#: Methods whose passes :func:`explain_all` shares (their registry record names the pass
#: families in ``shares``); the others run through explain().
SHARED_METHODS = tuple(m for m, spec in REGISTRY.items() if spec.shares)
_PLAIN_BASE = tuple(m for m, spec in REGISTRY.items() if "plain" in spec.shares)
_NOISY = tuple(m for m, spec in REGISTRY.items() if "noise" in spec.shares)
# Channels-last pays off for image-sized inputs (measured on EfficientNet-Lite0 at 224 px:
# about 1.4x per forward-backward pass), not for 28 x 28 digits.
_CHANNELS_LAST_MIN_PIXELS = 64 * 64
# The most bytes of activations that one pass may keep for its backward. Rows per pass
# are cut to fit (EfficientNet-Lite0 at 224 px keeps about 68 MB per row: 1 row), which
# bounds the memory of a pass and, on a CPU, is no slower: small chunks stay in cache
# (measured: about 60 ms per row at 2 to 6 rows, 89 ms at 16). 256 MiB left a sweep of 8
# photos at the paper's settings just over its 2 GB budget (2061 MB).
PASS_MEMORY = 128 * 2**20


def passes_per_image(methods) -> int:
    """Forward-backward passes per image that :func:`explain_all` runs for ``methods``.

    Parameters
    ----------
    methods : dict of str to dict
        Method names and their settings, as for :func:`explain_all`.

    Returns
    -------
    int
        Plain passes (one for the gradient family if any, ``n_steps`` for IG,
        ``n_samples`` per distinct SmoothGrad/VarGrad noise) plus one guided pass if
        Guided Backprop or Guided GradCAM is asked for. Methods without a shared path
        count as in :func:`explain` (IG-SmoothGrad ``n_samples * n_steps``, others 1).

    Examples
    --------
    >>> passes_per_image({"gradient": {}, "gradcam": {}, "guided_gradcam": {},
    ...                   "smoothgrad": {"n_samples": 8}, "vargrad": {"n_samples": 8}})
    10
    """
    opts = {resolve_method(m): check_settings(resolve_method(m), dict(s or {}))
            for m, s in dict(methods).items()}
    total = 1 if any(m in opts for m in _PLAIN_BASE) else 0
    total += opts["integrated_gradients"]["n_steps"] if "integrated_gradients" in opts else 0
    total += sum(n for n, _, _ in {_noise_key(opts[m]) for m in _NOISY if m in opts})
    total += 1 if ("guided_backprop" in opts or "guided_gradcam" in opts) else 0
    for m, o in opts.items():
        if m == "integrated_gradients_smoothgrad":
            total += o["n_samples"] * o["n_steps"]
        elif m not in SHARED_METHODS:
            total += 1
    return total


def _noise_key(opts):
    return (opts["n_samples"], opts["noise_level"], opts["seed"])


# ----------------------------------------------------------------------------- fast copy

def _fold_candidates(model, keep):
    """(parent, conv name, bn name) for every Conv2d directly followed by a BatchNorm2d
    among one parent's children, neither hooked nor in ``keep``."""
    pairs = []
    for parent in model.modules():
        kids = list(parent.named_children())
        for (cname, conv), (bname, bn) in zip(kids, kids[1:]):
            if not (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d):
                continue
            if bn.running_mean is None or conv.out_channels != bn.num_features:
                continue
            if conv in keep or bn in keep:
                continue
            if any(getattr(m, h) for m in (conv, bn)
                   for h in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")):
                continue
            pairs.append((parent, cname, bname))
    return pairs


def _direct_pairs(model, pairs, x1):
    """The pairs whose batch norm runs once, on exactly the conv's output tensor."""
    seen, handles = {}, []

    def conv_hook(module, inputs, output):
        seen.setdefault(id(module), []).append(output)

    def bn_hook(module, inputs):
        seen.setdefault(id(module), []).append(inputs[0])

    for parent, cname, bname in pairs:
        handles.append(getattr(parent, cname).register_forward_hook(conv_hook))
        handles.append(getattr(parent, bname).register_forward_pre_hook(bn_hook))
    try:
        with torch.no_grad():
            model(x1)
    finally:
        for handle in handles:
            handle.remove()
    ok = []
    for parent, cname, bname in pairs:
        outs = seen.get(id(getattr(parent, cname)), [])
        ins = seen.get(id(getattr(parent, bname)), [])
        if len(outs) == 1 and len(ins) == 1 and outs[0] is ins[0]:
            ok.append((parent, cname, bname))
    return ok


@torch.no_grad()
def _fold(conv, bn):
    # In float64, so the merged weights round once.
    scale = (bn.running_var.double() + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter((conv.weight.double() * scale.reshape(-1, 1, 1, 1)).to(dtype),
                               requires_grad=False)
    conv.bias = nn.Parameter(shift.to(dtype), requires_grad=False)


def fast_copy(model, x, keep=()):
    """A copy of ``model`` that computes the same function faster, or ``model`` itself.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode (batch norm uses its running statistics).
    x : tensor
        A few model inputs, to probe the model.
    keep : collection of modules
        Modules of ``model`` that must survive as they are (e.g. a GradCAM layer).

    Returns
    -------
    (torch.nn.Module, bool)
        The model to run and whether inputs should be channels-last. The copy has batch
        norm folded into the preceding convolution wherever the batch norm reads exactly
        that convolution's output, parameters without ``requires_grad``, and (on the CPU,
        for large images) channels-last weights. Its modules keep their dotted names (a
        folded batch norm becomes ``nn.Identity``). When nothing can be gained, or the
        copy's logits differ from the model's by more than rounding, ``model`` itself is
        returned.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
    >>> x = torch.rand(1, 1, 8, 8)
    >>> fast, channels_last = fast_copy(net, x)
    >>> type(fast[1]).__name__, bool(torch.allclose(fast(x), net(x), atol=1e-6))
    ('Identity', True)
    """
    x1 = x[:1].detach()
    keep = set(keep)
    pairs = _direct_pairs(model, _fold_candidates(model, keep), x1) if not model.training else []
    channels_last = (x.dim() == 4 and x.device.type == "cpu"
                     and x.shape[2] * x.shape[3] >= _CHANNELS_LAST_MIN_PIXELS
                     and any(isinstance(m, nn.Conv2d) for m in model.modules()))
    if not pairs and not channels_last:
        return model, False
    try:
        clone = copy.deepcopy(model)
    except Exception:  # an uncopyable model is simply run as it is
        return model, False
    names = {m: n for n, m in model.named_modules()}
    for parent, cname, bname in pairs:
        twin = clone.get_submodule(names[parent]) if names[parent] else clone
        _fold(getattr(twin, cname), getattr(twin, bname))
        setattr(twin, bname, nn.Identity())
    for p in clone.parameters():
        p.requires_grad_(False)
    if channels_last:
        clone = clone.to(memory_format=torch.channels_last)
        x1 = x1.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want, got = model(x[:1].detach()), clone(x1)
    scale = float(want.abs().max()) or 1.0
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-3, atol=1e-4 * scale):
        return model, False
    return clone, channels_last


# ----------------------------------------------------------------------------- passes

def _chunks(n_rows, size):
    return [(s, min(s + size, n_rows)) for s in range(0, n_rows, size)]


def _grad(model, rows, targets, layers=()):
    """d(target score)/d(rows), and (activation, gradient) at each layer in ``layers``."""
    rows = rows.detach().requires_grad_(True)
    acts, handles = [], []

    def hook(module, inputs, output):
        # As Captum: keep the layer's output, pass a copy on (an in-place op downstream
        # must not overwrite the activation GradCAM weighs).
        acts.append(output)
        return output.clone()

    for layer in layers:
        handles.append(layer.register_forward_hook(hook))
    try:
        out = model(rows)
    finally:
        for handle in handles:
            handle.remove()
    score = out.gather(1, targets.to(out.device)[:, None]).sum()
    grads = torch.autograd.grad(score, [rows] + acts, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, [rows] + acts)]
    return grads[0], list(zip(acts, grads[1:]))


def saved_bytes_per_row(model, x1):
    """Bytes of activations autograd keeps for the backward of one row ``x1`` (1 x ...).

    The model's own parameters and buffers, which autograd also saves, are not counted:
    they take no extra memory.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 1))
    >>> saved_bytes_per_row(net, torch.rand(1, 10))   # inputs of both Linears, ReLU output
    200
    >>> saved_bytes_per_row(net.requires_grad_(False), torch.rand(1, 10))  # ReLU output only
    80
    """
    owned = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() not in owned:
            total += t.numel() * t.element_size()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x1.detach().clone().requires_grad_(True))
    return total


def _cam(act, grad, size):
    # Captum's LayerGradCam with relu_attributions=True, then bilinear upsampling.
    alpha = grad.mean(dim=tuple(range(2, grad.dim())), keepdim=True)
    cam = F.relu((alpha * act).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)


class _RowStream:
    """The rows of IG path points and noisy copies, image by image, made on demand."""

    def __init__(self, x, ig, noise_groups):
        self.x, self.ig, self.noise_groups = x, ig, noise_groups
        self.plan = []  # (image, kind, key, index)
        for i in range(x.shape[0]):
            if ig is not None:
                self.plan += [(i, "ig", None, j) for j in range(len(ig["alphas"]))]
            for key in noise_groups:
                self.plan += [(i, "noise", key, s) for s in range(key[0])]
        self._noise = {}

    def noise(self, key, i):
        if (key, i) not in self._noise:
            n, level, seed = key
            # explain() draws image i's noise from a stream of (seed, i): the same here.
            self._noise = {k: v for k, v in self._noise.items() if k[1] >= i}
            self._noise[key, i] = _noise._noise(self.x[i:i + 1], i, n, level, seed)[:, 0]
        return self._noise[key, i]

    def rows(self, start, stop):
        out = []
        for i, kind, key, j in self.plan[start:stop]:
            xi = self.x[i]
            if kind == "ig":
                base = self.ig["baseline"][i]
                out.append(base + self.ig["alphas"][j] * (xi - base))
            else:
                out.append(xi + self.noise(key, i)[j])
        return torch.stack(out)


def _prepare(methods):
    """({method: checked settings}, {method: settings as given}), canonical names."""
    opts, raw = {}, {}
    for name, settings in dict(methods).items():
        method = resolve_method(name)
        if method in opts:
            raise ValueError(f"method {method!r} is given twice in methods; give it once")
        raw[method] = dict(settings or {})
        opts[method] = check_settings(method, raw[method])
    if not opts:
        raise ValueError("methods is empty; pass at least one method name")
    return opts, raw


def explain_all(model: nn.Module, x: torch.Tensor,
                methods: Mapping[str, Mapping[str, Any] | None] | Sequence[str],
                target: int | Sequence[int] | torch.Tensor | None = None,
                ) -> dict[str, torch.Tensor]:
    """Saliency maps of several methods for one model, sharing their passes.

    Parameters
    ----------
    model : torch.nn.Module
        As for :func:`explain`; left as it was (mode, weights, hooks, flags).
    x : tensor, N x C x H x W (or N x D)
        The model's preprocessed input.
    methods : dict of str to dict, or sequence of str
        Method names from :data:`METHODS` with their :func:`explain` settings (defaults:
        the paper's). ``batch_size`` bounds the rows of one pass; the smallest among the
        shared methods is used for all of them. ``progress=True`` on any method shows one
        bar over the passes.
    target : None, int, or N ints
        As for :func:`explain`; None explains each image's argmax under ``model``.

    Returns
    -------
    dict of str to tensor
        ``{method: maps}``, each as :func:`explain` returns it (batch first, on x's
        device, no grad), equal to it up to float rounding.

    Raises
    ------
    ValueError, TypeError, UnsupportedModelError
        As :func:`explain` raises for the same method, settings and input.

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> model, x = mnist_cnn(), torch.rand(2, 1, 28, 28)
    >>> maps = explain_all(model, x, {"gradient": {}, "gradcam": {},
    ...                               "smoothgrad": {"n_samples": 4}})
    >>> bool(torch.allclose(maps["gradient"], reference(model, x, "gradient"), atol=1e-6))
    True
    """
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, dict):
        methods = {m: {} for m in methods}
    opts, raw = _prepare(methods)
    check_model(model)
    x = check_input(model, x)
    shared = {m: o for m, o in opts.items() if m in SHARED_METHODS}
    if ("guided_backprop" in shared and "guided_gradcam" in shared
            and shared["guided_backprop"]["smooth"] != shared["guided_gradcam"]["smooth"]):
        del shared["guided_gradcam"]  # two different guided passes: not one shared one
    out = {}
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        x = x.detach().clone()
        # One probe pass: the output size, and (for GradCAM) which modules run.
        probed = probe(model, x[:1], any(m in opts for m in ("gradcam", "guided_gradcam")),
                       check_gradient=True)
        targets = check_target(target, x.shape[0], probed.output_shape[1])
        if targets is None:
            targets = torch.cat([argmax_target(model, x[s:e])
                                 for s, e in _chunks(x.shape[0], 32)])
        if shared:
            out.update(_shared_maps(model, x, shared, targets, probed))
    for m, o in opts.items():  # the rest: their own plans, one call each
        if m not in shared:
            out[m] = reference(model, x, m, targets, **raw[m])
    return {m: out[m] for m in opts}


def _shared_maps(model, x, opts, targets, probed):
    n = x.shape[0]
    size = min(o["batch_size"] for o in opts.values())
    if "integrated_gradients" in opts and opts["integrated_gradients"]["internal_batch_size"]:
        size = min(size, opts["integrated_gradients"]["internal_batch_size"])
    progress = any(o["progress"] for o in opts.values())
    # GradCAM layers, resolved on the model itself (same checks and errors as explain).
    cam_layers = {}
    for m in ("gradcam", "guided_gradcam"):
        if m in opts:
            if x.dim() != 4:
                raise ValueError(
                    f"{m} needs image input N x C x H x W; got x of shape {tuple(x.shape)}")
            name, layer = _gradcam.resolve_layer(model, opts[m]["layer"], probed)
            cam_layers[m] = (name, layer)
    ig = None
    if "integrated_gradients" in opts:
        from ._integration import nodes

        o = opts["integrated_gradients"]
        step_sizes, alphas = nodes(o["integration"], o["n_steps"])
        ig = {"alphas": alphas, "baseline": check_baseline(o["baseline"], x),
              # Captum multiplies by float32 step sizes; so do we.
              "weights": torch.tensor(step_sizes).float().to(device=x.device, dtype=x.dtype)}
    noise_groups = {}
    for m in _NOISY:
        if m in opts:
            noise_groups.setdefault(_noise_key(opts[m]), []).append(m)

    fast, channels_last = fast_copy(model, x, keep={layer for _, layer in cam_layers.values()})
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    fast_layers = {m: (fast.get_submodule(name) if name else fast) if fast is not model
                   else layer for m, (name, layer) in cam_layers.items()}
    unique_layers = list(dict.fromkeys(fast_layers.values()))
    per_row = saved_bytes_per_row(fast, x[:1].contiguous(memory_format=fmt))
    size = max(1, min(size, PASS_MEMORY // max(per_row, 1)))

    need_plain = any(m in opts for m in _PLAIN_BASE)
    need_guided = "guided_backprop" in opts or "guided_gradcam" in opts
    guided_smooth = (opts.get("guided_backprop") or opts.get("guided_gradcam") or {}).get(
        "smooth", "plain")
    stream = _RowStream(x, ig, noise_groups)
    base_chunks = _chunks(n, size) if need_plain else []
    guided_chunks = _chunks(n, size) if need_guided else []
    stream_chunks = _chunks(len(stream.plan), size)
    total = len(base_chunks) + len(guided_chunks) + len(stream_chunks)
    bar = tqdm(total=total, desc="explain_all", unit="pass", disable=not progress)

    grads, cams, guided = [], {layer: [] for layer in unique_layers}, []
    with bar:
        # 1. the gradient family and GradCAM: one plain pass over the images.
        for s, e in base_chunks:
            rows = x[s:e].contiguous(memory_format=fmt)
            g, at_layers = _grad(fast, rows, targets[s:e], unique_layers)
            grads.append(g.contiguous())
            for layer, (act, g_act) in zip(unique_layers, at_layers):
                cams[layer].append(_cam(act, g_act, tuple(x.shape[2:])).contiguous())
            bar.update()
        # 2. Guided Backprop: one guided pass over the images.
        for s, e in guided_chunks:
            rows = x[s:e].contiguous(memory_format=fmt)
            guided.append(_guided.guided_backprop(fast, rows, targets[s:e],
                                                  warn=s == 0, smooth=guided_smooth).contiguous())
            bar.update()
        # 3. IG path points and noisy copies of every image, in full chunks.
        ig_sum = torch.zeros_like(x) if ig is not None else None
        samples = {key: {} for key in noise_groups}  # key -> image -> list of gradients
        noisy = {m: torch.empty_like(x) for m in _NOISY if m in opts}
        row_targets = torch.tensor([i for i, *_ in stream.plan], dtype=torch.long)
        for s, e in stream_chunks:
            rows = stream.rows(s, e).contiguous(memory_format=fmt)
            g, _ = _grad(fast, rows, targets[row_targets[s:e]])
            for r, (i, kind, key, j) in enumerate(stream.plan[s:e]):
                if kind == "ig":
                    ig_sum[i] += g[r] * ig["weights"][j]
                    continue
                got = samples[key].setdefault(i, [])
                got.append(g[r].contiguous())
                if len(got) == key[0]:  # image i done: its statistics, then free them
                    stacked = torch.stack(samples[key].pop(i))
                    for m in noise_groups[key]:
                        noisy[m][i] = (stacked.var(dim=0, unbiased=False) if m == "vargrad"
                                       else stacked.mean(dim=0))
            bar.update()

    out = {}
    if need_plain:
        grad = torch.cat(grads)
        if "gradient" in opts:
            out["gradient"] = grad
        if "gradient_x_input" in opts:
            out["gradient_x_input"] = x * grad
    if ig is not None:
        out["integrated_gradients"] = ig_sum * (x - ig["baseline"])
    out.update(noisy)
    if need_guided:
        gbp = torch.cat(guided)
        if "guided_backprop" in opts:
            out["guided_backprop"] = gbp
    for m, layer in fast_layers.items():
        cam = torch.cat(cams[layer])
        out[m] = cam if m == "gradcam" else gbp * cam
    return {m: v.detach() for m, v in out.items()}
