"""The sweep behind both sanity checks: explain every step's model, compare, tabulate, cache.

:func:`sanity_lib.checks.model_randomization_test` and
:func:`~sanity_lib.checks.data_randomization_test` differ only in the models they hand to
:func:`run_sweep`: the randomized copies of one model, or the random-label model. The maps
come from an *explainer* (:func:`default_explainer` shares passes between methods), so a
study can pass another one (a smoothing wrapper, a fake in a test) instead of patching the
library.
"""
from __future__ import annotations

import copy
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sanity_lib._cache import SWEEP_CODE, cached, code_fingerprint, fingerprint
from sanity_lib._validation import check_choices, parse_methods

from .result import TABLE_COLUMNS, SanityCheckResult, _make_table

__all__ = ["run_sweep", "default_explainer", "fingerprint", "outputs_fingerprint", "TARGETS"]

#: The named target policies; an int or N ints are also accepted.
TARGETS = ("argmax", "original")
# Bump when what a cached sweep holds, or how it is computed, changes.
# 2: maps from shared passes on a batch-norm-folded, channels-last copy (rounding differs).
_CACHE_FORMAT = 3
_ARGMAX_BATCH = 32


def _jsonable(value, names: dict):
    """A JSON-friendly description of a setting: modules by their name in the model,
    tensors by their fingerprint."""
    if isinstance(value, nn.Module):
        return {"module": names.get(value, type(value).__name__)}
    if isinstance(value, torch.Tensor):
        return {"tensor": fingerprint(value), "shape": list(value.shape)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, names) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _module_names(model: nn.Module) -> dict:
    return {module: name for name, module in model.named_modules()}


def _check_methods(methods, model: nn.Module) -> dict:
    """``{name: settings}`` with canonical names; modules in settings become dotted names
    (explain runs on copies of the model, whose modules are other objects)."""
    names = _module_names(model)
    out = {}
    for name, settings in parse_methods(methods).items():
        clean = {}
        for key, value in settings.items():
            if isinstance(value, nn.Module):
                if value not in names:
                    raise ValueError(
                        f"setting {key}= of method {name!r} is a module that is not part of "
                        "the model; pass the model's own submodule or its dotted name")
                value = names[value]
            clean[key] = value
        out[name] = clean
    return out


def _check_metrics(metrics) -> list:
    from sanity_lib import similarity

    return list(check_choices("metrics", metrics, similarity.METRICS))


def _check_target(target, n: int):
    """'argmax', 'original', or an int64 tensor of N classes."""
    if isinstance(target, str):
        if target not in TARGETS:
            raise ValueError(f"target={target!r} is not known; use 'argmax' (the explained model's "
                             "own top class, the paper), 'original' (the original model's class "
                             "at every step, Quantus), an int, or N ints")
        return target
    if isinstance(target, bool) or target is None:
        raise TypeError(f"target must be 'argmax', 'original', an int or N ints; got {target!r}")
    if isinstance(target, numbers.Integral):
        return torch.full((n,), int(target), dtype=torch.long)
    t = torch.as_tensor(target)
    if t.is_floating_point() or t.dtype == torch.bool or t.dim() > 1:
        raise TypeError(f"target must be 'argmax', 'original', an int or N ints; got a "
                        f"{t.dtype} tensor of shape {tuple(t.shape)}")
    t = t.to(torch.long).cpu().reshape(-1).clone()  # the result owns its copy
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"target holds {t.numel()} classes but x holds {n} images; give one "
                         "class per image")
    return t


def _working_copy(model: nn.Module, device: torch.device) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        work = copy.deepcopy(model)
    except Exception as err:  # deepcopy fails with many exception types
        raise TypeError(f"could not copy the model ({type(err).__name__}: {err}); the tests "
                        "explain copies so your model is never changed") from err
    return work.to(device).eval()


def outputs_fingerprint(model: nn.Module, x: torch.Tensor, device: torch.device) -> str:
    """A fingerprint of what the model computes on ``x``: its scores, in float16.

    Part of every sweep's cache key beside the weights' fingerprint, so that a model whose
    behaviour changed through something a ``state_dict`` does not hold (a non-persistent
    buffer, a plain attribute, a hook, a patched ``forward``) never gets an old result. The
    scores are rounded to float16 so that the last bits of a float32 sum do not matter.
    """
    work = _working_copy(model, device)
    with torch.no_grad():
        out = torch.cat([work(x[i:i + _ARGMAX_BATCH].to(device)).cpu()
                         for i in range(0, x.shape[0], _ARGMAX_BATCH)])
    return fingerprint(out.to(torch.float16))


def _groups_for_copy(groups, model: nn.Module):
    """Groups given as (name, module of the original model) become (name, dotted path), so
    they resolve inside the working copy."""
    if groups is None or isinstance(groups, str):
        return groups
    names = _module_names(model)
    out = []
    for item in groups:
        if (isinstance(item, (tuple, list)) and len(item) == 2
                and isinstance(item[1], nn.Module)):
            if item[1] not in names:
                raise ValueError(f"groups entry {item[0]!r} is a module that is not part of the "
                                 "model; pass the model's own submodules or their dotted names")
            item = (item[0], names[item[1]])
        out.append(item)
    return out





def _argmax(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + _ARGMAX_BATCH]).argmax(dim=1)
                          for i in range(0, x.shape[0], _ARGMAX_BATCH)]).cpu()


def default_explainer(model: nn.Module, x: torch.Tensor,
                      methods: Mapping[str, Mapping[str, Any] | None] | Sequence[str],
                      target: int | Sequence[int] | torch.Tensor | None,
                      ) -> dict[str, torch.Tensor]:
    """The sweep's explainer: every method's maps for one model, sharing passes.

    This is :func:`sanity_lib.saliency.explain_all`: one plain pass gives gradient,
    gradient x input and GradCAM, one guided pass Guided Backprop, Guided GradCAM is their
    product, SmoothGrad and VarGrad use the same noisy gradients.

    An *explainer* is any callable ``explainer(model, x, methods, target) -> {method: maps}``
    with ``methods`` a dict name -> settings and ``target`` N class indices; pass your own as
    ``explainer=`` to :func:`model_randomization_test` or :func:`data_randomization_test`
    (e.g. :func:`sanity_lib.saliency.explain_each`, one :func:`~sanity_lib.saliency.explain`
    call per method, or a smoothing wrapper).
    """
    from sanity_lib.saliency import explain_all

    return explain_all(model, x, methods, target=target)


def _explainer_key(explainer, cache: bool):
    """What the cache key records of the explainer: None for the default one."""
    if explainer is None or explainer is default_explainer:
        return None
    if not callable(explainer):
        raise TypeError("explainer must be a callable explainer(model, x, methods, target) -> "
                        f"{{method: maps}}, got {type(explainer).__name__}")
    key = getattr(explainer, "cache_key", None)
    if cache and not isinstance(key, str):
        raise ValueError(
            "cache=True with your own explainer needs a way to tell its results apart: give "
            "it a cache_key attribute (a str that changes whenever what it computes changes, "
            "e.g. explainer.cache_key = 'my_smoothing_v1'), or use cache=False")
    return key


def _explain_step(model, x, methods, target, step, layer, explainer):
    """Every method's maps for one model, ``{method: maps}`` on the CPU, each checked."""
    try:
        maps = explainer(model, x, dict(methods), target.to(x.device))
    except Exception as err:
        err.add_note(f"(while explaining methods {list(methods)} at step {step}, {layer!r})")
        raise
    if not isinstance(maps, dict) or set(maps) != set(methods):
        got = sorted(maps) if isinstance(maps, dict) else type(maps).__name__
        raise TypeError(f"the explainer must return a dict with the maps of every method "
                        f"{list(methods)}; it returned {got} at step {step} ({layer!r})")
    out = {}
    for method in methods:
        m = maps[method]
        if not isinstance(m, torch.Tensor) or m.dim() < 2 or m.shape[0] != x.shape[0]:
            raise TypeError(f"the explainer's maps of {method!r} at step {step} ({layer!r}) "
                            f"must be a tensor with one map per image ({x.shape[0]}), got "
                            f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m)}")
        m = m.detach().cpu()
        if not bool(torch.isfinite(m).all()):
            raise ValueError(f"method {method!r} gave NaN or infinite maps at step {step} "
                             f"({layer!r}); they cannot be compared")
        out[method] = m
    return out


def run_sweep(test: str, original: nn.Module, steps: Iterable[tuple[str, nn.Module]],
              n_steps: int, x: torch.Tensor, methods: Mapping[str, Mapping[str, Any]], *,
              target: str | torch.Tensor, metrics: Sequence[str],
              compare_options: Mapping[str, Any], progress: bool, keep_maps: bool,
              settings: dict, seed: int,
              explainer: Callable[..., Mapping[str, torch.Tensor]]) -> SanityCheckResult:
    """Explain the original model and every step's model, compare, and tabulate."""
    from tqdm.auto import tqdm

    from sanity_lib import similarity

    n = x.shape[0]
    fixed = target if isinstance(target, torch.Tensor) else None
    original_targets = fixed if fixed is not None else _argmax(original, x)
    first = _explain_step(original, x, methods, original_targets, 0, "original", explainer)
    kept = {m: [maps] for m, maps in first.items()}
    layers, targets = ["original"], [original_targets]
    scores = {}  # (method, step) -> {metric: tensor N}
    constant = []
    bar = tqdm(steps, total=n_steps, desc=settings.get("description", test), unit="step",
               disable=not progress)
    for k, (layer, model) in enumerate(bar, start=1):
        bar.set_postfix_str(str(layer), refresh=False)
        model = model.eval()
        if isinstance(target, str) and target == "argmax":
            step_targets = _argmax(model, x)
        else:
            step_targets = original_targets
        step_maps = _explain_step(model, x, methods, step_targets, k, layer, explainer)
        for m in methods:
            maps = step_maps.pop(m)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", similarity.ConstantMapWarning)
                scores[m, k] = similarity.compare(first[m], maps, metrics, **compare_options)
            for w in caught:
                if not issubclass(w.category, similarity.ConstantMapWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if any(bool(torch.isnan(v).any()) for v in scores[m, k].values()):
                constant.append(f"{m} at step {k} ({layer})")
            if keep_maps:
                kept[m].append(maps)
        layers.append(str(layer))
        targets.append(step_targets)
        del model
    if constant:
        warnings.warn(
            "some maps were constant (e.g. an all-zero GradCAM after randomization), so their "
            f"correlations are NaN in the table: {'; '.join(constant[:8])}"
            f"{' ...' if len(constant) > 8 else ''}. summary() and plot_curves() leave NaN "
            "out; look at those maps with plot_grid()",
            similarity.ConstantMapWarning, stacklevel=5)  # the caller of the public test

    cols = {c: [] for c in TABLE_COLUMNS}
    images = list(range(n))
    for m in methods:
        for k in range(1, len(layers)):
            for metric in metrics:
                cols["method"] += [m] * n
                cols["step"] += [k] * n
                cols["layer"] += [layers[k]] * n
                cols["image"] += images
                cols["metric"] += [metric] * n
                cols["value"] += scores[m, k][metric].tolist()
    table = _make_table(*(cols[c] for c in TABLE_COLUMNS))
    floor = similarity.noise_floor(tuple(x.shape[1:]), metrics=metrics, seed=seed,
                                   **compare_options)
    maps = {m: torch.stack(v) for m, v in kept.items()} if keep_maps else {}
    return SanityCheckResult(table=table, maps=maps, layers=layers, noise_floor=floor,
                             targets=torch.stack(targets), settings=settings,
                             inputs=x.detach().to("cpu", copy=True))  # never the caller's storage


def _cached_or_run(cache: bool, config: dict, run):
    return cached("sweeps", config, run, enabled=cache, what="sweep",
                  dump=lambda result: {"result": result._to_payload()},
                  load=lambda entry: SanityCheckResult._from_payload(entry["result"]))


def _common_config(x, methods, target, metrics, compare_options, keep_maps, seed, names,
                   explainer_key):
    import sanity_lib

    return {
        "format": _CACHE_FORMAT,
        "version": sanity_lib.__version__,
        # the code that made the numbers: an edited method or metric is never served stale
        "code": code_fingerprint(SWEEP_CODE),
        "x_fingerprint": fingerprint(x),
        "x_shape": list(x.shape),
        "methods": _jsonable(methods, names),
        "target": target if isinstance(target, str) else target.tolist(),
        "metrics": list(metrics),
        "compare_options": _jsonable(compare_options, names),
        "keep_maps": keep_maps,
        "seed": seed,
        "explainer": explainer_key,
    }


def _check_compare_options(compare_options):
    if compare_options is None:
        return {}
    if not isinstance(compare_options, dict):
        raise TypeError("compare_options must be a dict of keyword arguments for "
                        f"sanity_lib.similarity.compare, got {type(compare_options).__name__}")
    allowed = ("percentile", "win_size", "gaussian_weights", "pixels_per_cell", "hog_method")
    unknown = sorted(set(compare_options) - set(allowed))
    if unknown:
        raise ValueError(f"compare_options has unknown keys {unknown}; allowed: {list(allowed)}")
    return dict(compare_options)
