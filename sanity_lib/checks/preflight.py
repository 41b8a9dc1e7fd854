"""Pre-flight: cheap checks of a model and its inputs before a long sanity-check run.

:func:`preflight` says, in words and one row per check, what might make the two tests
misleading on *your* model: train mode, a non-deterministic forward pass, inputs in the wrong
range, chance accuracy, collapsed predictions, a bad choice of layer groups, and methods that
cannot explain the model at all.
"""
from __future__ import annotations

import copy
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from sanity_lib.models.groups import group_problems

__all__ = ["preflight", "STATUSES"]

#: The statuses of a :func:`preflight` row, from good to bad.
STATUSES = ("ok", "warning", "problem")


def _first_sentence(text):
    text = str(text).strip().replace("\n", " ")
    cut = text.find(". ")
    return text if cut < 0 else text[:cut + 1]


def _try_method(model, x, method, settings):
    from sanity_lib import saliency

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            maps = saliency.explain(model, x, method, **settings)
        except saliency.UnsupportedModelError as err:
            return "problem", f"cannot explain this model: {_first_sentence(err)}"
        except (ValueError, TypeError, RuntimeError) as err:
            return "problem", f"{type(err).__name__}: {_first_sentence(err)}"
    if not bool(torch.isfinite(maps).all()):
        return "problem", "NaN or infinite maps"
    notes = [_first_sentence(w.message) for w in caught
             if issubclass(w.category, (saliency.SaliencyWarning, UserWarning))]
    if bool((maps.flatten(1).abs().amax(1) == 0).any()):
        return "warning", ("all-zero map for some images (e.g. GradCAM at a layer whose "
                           "weighted sum is negative): their similarities will be NaN")
    if notes:
        return "warning", notes[0]
    return "ok", f"maps {tuple(maps.shape[1:])}"


def preflight(model: nn.Module, x: torch.Tensor,
              methods: Sequence[str] | Mapping[str, Mapping[str, Any] | None] | None = None, *,
              labels: torch.Tensor | None = None,
              groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
              n_images: int = 2) -> pd.DataFrame:
    """Check a model and its inputs before running the sanity checks on them.

    Runs cheap checks and returns one row each, with a status (:data:`STATUSES`) and a
    detail in words:

    - ``eval mode``: the tests explain a copy in eval mode anyway; a model left in train
      mode usually means accuracy and predictions were measured in the wrong mode;
    - ``deterministic``: two eval-mode forward passes agree (no dropout left on);
    - ``input``: 4-D, finite, its range; raw pixels in [0, 1] passed to a model that has a
      ``preprocess`` changing them are flagged;
    - ``accuracy`` (with ``labels``): eval-mode accuracy on ``x``, a problem near chance;
    - ``predictions``: how many classes the model predicts for ``x`` (one means the model,
      or the batch, tells the methods apart poorly);
    - ``layer groups``: the groups the tests will use and :func:`group_problems`;
    - ``method <name>``: whether :func:`sanity_lib.saliency.explain` can explain this
      model on ``n_images`` images (e.g. Guided Backprop refuses leaky rectifiers).

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor
        N x C x H x W *model inputs* (after ``preprocess``).
    methods : list of str or dict of str to dict, optional
        Methods to try (default :data:`sanity_lib.checks.DEFAULT_METHODS`), optionally with
        settings; expensive settings are reduced (IG 4 steps, SmoothGrad 4 samples) since
        only whether the method runs is tested.
    labels : torch.Tensor, optional
        True labels of ``x``, for the accuracy row.
    groups : list, optional
        Layer groups as for :func:`sanity_lib.models.layer_groups`; default the model's own.
    n_images : int, default 2
        Images used to try each method.

    Returns
    -------
    pandas.DataFrame
        Index ``check``; columns ``status`` and ``detail``. ``report.attrs["methods"]`` lists
        the methods that can run (status not "problem").

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> from sanity_lib.checks import preflight
    >>> report = preflight(sl.models.mnist_cnn(), torch.rand(4, 1, 28, 28),
    ...                    ["gradient", "guided_backprop"])
    >>> report.loc["method guided_backprop", "status"]
    'ok'
    """
    from sanity_lib.checks import DEFAULT_METHODS
    from sanity_lib.models import layer_groups

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor of model inputs (N x C x H x W), got "
                        f"{type(x).__name__}")
    if isinstance(n_images, bool) or not isinstance(n_images, numbers.Integral) or n_images < 1:
        raise ValueError(f"n_images must be an int >= 1, got {n_images!r}")
    methods = DEFAULT_METHODS if methods is None else methods
    if isinstance(methods, str):
        methods = [methods]
    methods = dict(methods) if isinstance(methods, dict) else {m: {} for m in methods}
    rows = {}

    rows["eval mode"] = (("ok", "the model is in eval mode") if not model.training else
                         ("warning", "the model is in train mode: the tests explain an "
                          "eval-mode copy, but measure accuracy and predictions after "
                          "model.eval() too"))
    work = copy.deepcopy(model).eval()

    shape_ok = x.dim() == 4 and x.shape[0] > 0
    finite = bool(torch.isfinite(x).all())
    lo, hi = (float(x.min()), float(x.max())) if x.numel() else (float("nan"),) * 2
    if not shape_ok:
        rows["input"] = ("problem", f"x has shape {tuple(x.shape)}; the tests need a batch "
                         "N x C x H x W (one image: x[None])")
    elif not finite:
        rows["input"] = ("problem", "x contains NaN or infinite values")
    else:
        detail = f"{tuple(x.shape)}, values in [{lo:.2f}, {hi:.2f}]"
        status = "ok"
        prep = getattr(model, "preprocess", None)
        if lo >= 0 and hi > 2 and float(x.round().sub(x).abs().max()) == 0 and hi <= 255:
            # Whole numbers up to 255: 8-bit pixels, fed to a model that expects [0, 1] (or
            # its own preprocess of [0, 1] images).
            status = "problem"
            detail += ("; these are whole numbers up to 255, i.e. 8-bit pixels: divide by 255 "
                       "first" + (" and pass model.preprocess(x / 255)" if callable(prep)
                                  else ""))
        elif callable(prep) and lo >= 0 and hi <= 1:
            try:
                changed = not torch.allclose(prep(x[:1]), x[:1])
            except Exception:  # a preprocess for other shapes: not our business here
                changed = False
            if changed:
                status = "warning"
                detail += ("; these look like raw pixels, and the model has a preprocess() "
                           "that changes them: pass model.preprocess(x)")
        rows["input"] = (status, detail)
    if rows["input"][0] == "problem":
        report = pd.DataFrame.from_dict(rows, orient="index", columns=["status", "detail"])
        report.index.name = "check"
        report.attrs["methods"] = []
        return report

    with torch.no_grad():
        first, second = work(x), work(x)
    if not isinstance(first, torch.Tensor) or first.dim() != 2:
        raise ValueError("the model must return N x K class scores (logits); got "
                         f"{type(first).__name__} {getattr(first, 'shape', '')}")
    rows["deterministic"] = (("ok", "two forward passes agree") if torch.allclose(first, second)
                             else ("problem", "two eval-mode forward passes differ (dropout or "
                                   "another random layer is active): maps and targets would "
                                   "change from run to run"))
    predicted = first.argmax(1)
    n_classes = first.shape[1]
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1).to(predicted.device)
        if len(labels) != len(predicted):
            raise ValueError(f"labels holds {len(labels)} classes but x holds {len(predicted)} "
                             "images; give one label per image")
        acc = float((predicted == labels).float().mean())
        chance = 1.0 / n_classes
        rows["accuracy"] = (("ok" if acc >= chance + 0.2 else "problem"),
                            f"{acc:.1%} on these {len(labels)} images (chance {chance:.0%})"
                            + ("" if acc >= chance + 0.2 else
                               ": the model has not learned the task, so there is nothing "
                               "for its maps to explain"))
    else:
        rows["accuracy"] = ("warning", "no labels given: pass labels= to check that the "
                            "model has learned something")
    distinct = len(torch.unique(predicted))
    rows["predictions"] = (("ok" if distinct > 1 or len(predicted) == 1 else "warning"),
                           f"{distinct} distinct predicted classes for {len(predicted)} images")

    try:
        resolved = layer_groups(model, groups=groups)
        problems = group_problems(model, groups if groups is not None else resolved, x)
        names = [n for n, _ in resolved]
        status = "warning" if problems or len(resolved) < 3 else "ok"
        detail = f"{len(resolved)} groups {names}"
        if len(resolved) < 3:
            detail += "; that is coarse: pass groups= to follow the model's blocks"
        if problems:
            detail += "; " + "; ".join(problems)
        rows["layer groups"] = (status, detail)
    except (TypeError, ValueError) as err:
        rows["layer groups"] = ("problem", str(err))

    few = x[:n_images]
    cheap = {"integrated_gradients": {"n_steps": 4}, "smoothgrad": {"n_samples": 4},
             "vargrad": {"n_samples": 4},
             "integrated_gradients_smoothgrad": {"n_steps": 2, "n_samples": 2}}
    usable = []
    for method, settings in methods.items():
        settings = {**dict(settings or {}), **cheap.get(method, {})}
        status, detail = _try_method(work, few, method, settings)
        rows[f"method {method}"] = (status, detail)
        if status != "problem":
            usable.append(method)
    report = pd.DataFrame.from_dict(rows, orient="index", columns=["status", "detail"])
    report.index.name = "check"
    report.attrs["methods"] = usable
    return report
