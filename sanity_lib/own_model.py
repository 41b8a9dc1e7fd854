"""Sanity-check your own model: the steps around the two tests that a reader does by hand.

:func:`sanity_lib.model_randomization_test` and :func:`sanity_lib.data_randomization_test`
run the paper's checks on any classifier. Before and after them, a reader who brings a
model needs four more things, which this module provides:

- :func:`train_cached` trains a model with :func:`sanity_lib.training.train` once and
  caches the checkpoint, keyed by the architecture, the initial weights, the data and every
  training setting (the data randomization test needs a second, random-label training);
- :func:`list_modules` lists the candidate layer groups: submodules with their parameter
  counts and output shapes, in the order the forward pass runs them;
- :func:`group_problems` says what is wrong with a choice of layer groups (a module that
  is not in the model, groups out of forward order, overlapping groups, parameters that no
  group re-initializes);
- :func:`preflight` checks the model and the input before a long run: eval mode, a
  deterministic forward pass, the input's range, the accuracy, collapsed predictions, the
  layer groups, and which saliency methods can explain this model at all;
- :func:`verdict` reads a finished test: per method, how much of its similarity to the
  original map is left at a step chosen *before* looking, against the noise floor, with
  "pass", "fail" or "borderline"; several results (seeds) must agree.

A verdict is a summary, not a proof: passing is necessary, not sufficient (a method that
returns noise passes), and the numbers depend on the metric, on absolute vs signed maps and
on the step you judge at. The book's chapter 8 discusses each of these.
"""
import copy
import numbers
import warnings

import numpy as np
import pandas as pd
import torch
from torch import nn

from sanity_lib import _cache

__all__ = ["train_cached", "list_modules", "group_problems", "preflight", "verdict",
           "STATUSES", "VERDICTS", "DEFAULT_THRESHOLD", "DEFAULT_MARGIN"]

#: The statuses of a :func:`preflight` row, from good to bad.
STATUSES = ("ok", "warning", "problem")
#: The verdicts of :func:`verdict`.
VERDICTS = ("pass", "fail", "borderline")
#: :func:`verdict`: a method fails when at least this fraction of the way from the noise
#: floor to identical maps is left at the judged step.
DEFAULT_THRESHOLD = 0.5
#: :func:`verdict`: within this distance of the threshold the verdict is "borderline".
DEFAULT_MARGIN = 0.05
# Bump when what train_cached stores, or how it trains, changes.
_CACHE_FORMAT = 1


# ----------------------------------------------------------------------------- training

def train_cached(model, images, labels, *, name, cache=True, progress=False, **settings):
    """Train ``model`` in place with :func:`sanity_lib.training.train`, once; later calls load.

    The checkpoint is cached under a key made of ``name``, the model's architecture and
    *initial* weights (:func:`sanity_lib.checks.fingerprint`), fingerprints of ``images`` and
    ``labels``, and every training setting, so changing any of them trains anew and a
    rebuild with the same ones only loads the weights.

    Parameters
    ----------
    model : torch.nn.Module
        Untrained (freshly built with a fixed seed, so its fingerprint is stable). Trained
        or loaded in place and left in eval mode.
    images, labels : torch.Tensor
        Training inputs and integer labels, as for :func:`sanity_lib.training.train`.
    name : str
        A short label for the run (part of the key), e.g. ``"resnet10-true"``.
    cache : bool, default True
        False always trains and stores nothing.
    progress : bool, default False
        The training progress bar.
    **settings
        Passed on to :func:`sanity_lib.training.train` (``epochs`` is required; e.g.
        ``permute_labels=True`` for the data randomization test).

    Returns
    -------
    model : torch.nn.Module
        The same object, trained, in eval mode.
    history : sanity_lib.training.TrainingHistory

    Raises
    ------
    TypeError
        ``model`` is not a module or ``name`` not a string; bad training settings raise as
        in :func:`sanity_lib.training.train`.
    OSError
        The cache folder cannot be written (set ``SANITY_LIB_CACHE`` or pass ``cache=False``).

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> from sanity_lib.own_model import train_cached
    >>> torch.manual_seed(0)                                  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    >>> x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    >>> net, history = train_cached(net, x, y, name="demo", epochs=1, cache=False)
    >>> history.epochs, net.training
    (1, False)
    """
    from sanity_lib import training
    from sanity_lib._cache import fingerprint

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string (a label for this training run), "
                        f"got {name!r}")
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be True or False, got {cache!r}")
    if "epochs" not in settings:
        raise TypeError("train_cached needs epochs=, the number of passes over the data "
                        "(and any other setting of sanity_lib.training.train)")
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError("images and labels must be torch tensors; convert with torch.as_tensor")

    def run():
        return training.train(model, images, labels, progress=progress, **settings)

    if not cache:
        return model, run()
    config = {
        "kind": "own_model.train_cached", "format": _CACHE_FORMAT,
        "recipe_version": training.RECIPE_VERSION, "name": name,
        "model": f"{type(model).__module__}.{type(model).__qualname__}",
        "initial_fingerprint": fingerprint(model),
        "images": fingerprint(images), "labels": fingerprint(labels),
        "settings": {k: (v if isinstance(v, (bool, int, float, str, type(None))) else repr(v))
                     for k, v in sorted(settings.items())},
    }
    def load(entry):
        history = training.TrainingHistory.from_dict(entry["history"])
        model.load_state_dict(entry["state_dict"])
        return history

    history = _cache.cached("checkpoints", config, run, what="checkpoint", load=load,
                            dump=lambda h: training._checkpoint(model, h))
    return model.eval(), history


# ----------------------------------------------------------------------------- layer groups

def _forward_order(model, x):
    """Modules in the order of their first call in one forward pass of ``x[:1]``."""
    order, handles = [], []
    seen = set()

    def hook(module, args, output):
        if id(module) not in seen:
            seen.add(id(module))
            order.append((module, output))

    for m in model.modules():
        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order


def list_modules(model, x=None, depth=1):
    """The model's submodules up to ``depth``: candidates for layer groups.

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor, optional
        A batch of model inputs; with it, the table gets each module's output shape (for
        one image) and is sorted by the order the forward pass calls the modules.
    depth : int, default 1
        1 lists the top-level children, 2 also their children, and so on.

    Returns
    -------
    pandas.DataFrame
        Index ``name`` (dotted path, usable in ``layer_groups(model, groups=[...])``),
        columns ``type``, ``parameters`` (the module's own and its children's), ``depth``
        and, with ``x``, ``output`` (shape without the batch dimension; "" for modules that
        do not run) and ``call_order`` (None for modules that do not run).

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> list_modules(mnist_cnn())["parameters"].to_dict()["conv1"]
    832
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    rows = []
    for name, module in model.named_modules():
        level = name.count(".") + 1
        if not name or level > depth:
            continue
        rows.append({"name": name, "type": type(module).__name__,
                     "parameters": sum(p.numel() for p in module.parameters()),
                     "depth": level, "module": module})
    table = pd.DataFrame(rows, columns=["name", "type", "parameters", "depth", "module"])
    if x is not None:
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError("x must be a batch of model inputs (a tensor N x ...), got "
                             f"{type(x).__name__}")
        called = _forward_order(model, x)
        rank = {id(m): i for i, (m, _) in enumerate(called)}
        shapes = {id(m): (tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else "")
                  for m, out in called}
        table["output"] = [shapes.get(id(m), "") for m in table["module"]]
        table["call_order"] = pd.array([rank.get(id(m)) for m in table["module"]],
                                       dtype="Int64")
        table = table.sort_values("call_order", kind="stable", na_position="last")
    return table.drop(columns="module").set_index("name")


def group_problems(model, groups, x=None):
    """What is wrong with a choice of layer groups for the randomization tests, in words.

    A good grouping for :func:`sanity_lib.model_randomization_test` names modules of the
    model, in forward order (cascading randomization goes from the *last* group down),
    without overlaps (a module inside two groups would be randomized twice), and together
    they hold every parameter, so that the last cascading step leaves nothing trained.

    Parameters
    ----------
    model : torch.nn.Module
    groups : list
        As for :func:`sanity_lib.models.layer_groups`: names, ``(name, path)`` or
        ``(name, module)`` pairs.
    x : torch.Tensor, optional
        Model inputs; with them the forward order is checked too (the first call of each
        group in one forward pass).

    Returns
    -------
    list of str
        Empty when the grouping is fine; otherwise one plain sentence per problem.

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> group_problems(mnist_cnn(), ["conv1", "conv2", "fc1", "logits"])
    []
    >>> "'conv2' are in no group" in group_problems(mnist_cnn(), ["conv1", "fc1", "logits"])[0]
    True
    """
    from sanity_lib.models import layer_groups

    try:
        resolved = layer_groups(model, groups=groups)
    except (TypeError, ValueError) as err:
        return [str(err)]
    problems = []
    names = {m: n for n, m in model.named_modules()}
    # overlaps: one group inside another
    for i, (a, ma) in enumerate(resolved):
        inside_a = {id(m) for m in ma.modules()}
        for b, mb in resolved[i + 1:]:
            if id(mb) in inside_a or id(ma) in {id(m) for m in mb.modules()}:
                problems.append(f"groups {a!r} and {b!r} overlap (one contains the other), "
                                "so its parameters would be re-initialized twice; keep one")
    # coverage: every parameter in some group
    covered = {id(p) for _, m in resolved for p in m.parameters()}
    missing = {}
    for pname, p in model.named_parameters():
        if id(p) not in covered:
            owner = pname.rsplit(".", 1)[0] if "." in pname else "<model>"
            missing[owner] = missing.get(owner, 0) + p.numel()
    if missing:
        listed = ", ".join(f"{k!r}" for k in list(missing)[:6])
        more = " ..." if len(missing) > 6 else ""
        problems.append(f"parameters of {listed}{more} are in no group "
                        f"({sum(missing.values()):,} values): the last cascading step would "
                        "leave them trained; add them to a group, or say why they stay")
    # forward order
    if x is not None:
        called = _forward_order(model, x)
        rank = {id(m): i for i, (m, _) in enumerate(called)}
        firsts = []
        for gname, m in resolved:
            calls = [rank[id(s)] for s in m.modules() if id(s) in rank]
            if not calls:
                problems.append(f"group {gname!r} ({names.get(m, '?')}) does not run in the "
                                "forward pass; remove it")
            else:
                firsts.append((min(calls), gname))
        order = [g for _, g in sorted(firsts)]
        given = [g for _, g in firsts]
        if given != order:
            problems.append(f"the groups are not in forward order: the forward pass runs "
                            f"{order}, you listed {given}. List them input -> output; "
                            "cascading randomization starts from the last one (the logits)")
    return problems


# ----------------------------------------------------------------------------- pre-flight

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


def preflight(model, x, methods=None, *, labels=None, groups=None, n_images=2):
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
    >>> from sanity_lib.own_model import preflight
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
        if callable(prep) and lo >= 0 and hi <= 1:
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


# ----------------------------------------------------------------------------- verdict

def _one_verdict(result, metric, by, threshold, margin):
    if metric not in result.metrics:
        raise ValueError(f"metric={metric!r} is not in this result; it has {result.metrics}")
    layers = list(result.layers)
    if isinstance(by, str):
        if by not in layers[1:]:
            raise ValueError(f"by={by!r} is not a step of this result; choose one of "
                             f"{layers[1:]} (or a step number 1..{len(layers) - 1})")
        step = layers.index(by)
    elif isinstance(by, numbers.Integral) and not isinstance(by, bool) and \
            1 <= by <= len(layers) - 1:
        step = int(by)
    else:
        raise ValueError(f"by must be a layer name or a step number 1..{len(layers) - 1}, "
                         f"got {by!r}")
    floor = float(result.noise_floor[metric])
    s = result.summary()
    s = s[s["metric"] == metric]
    rows = []
    for method in result.methods:
        sm = s[s["method"] == method].set_index("step")
        mean = float(sm.loc[step, "mean"])
        retained = (mean - floor) / (1.0 - floor)
        curve = [(int(k), float(v)) for k, v in sm["mean"].items()]
        below = [k for k, v in curve if (v - floor) / (1.0 - floor) < threshold]
        if np.isnan(retained):
            call = "borderline"
        elif retained >= threshold + margin:
            call = "fail"
        elif retained < threshold - margin:
            call = "pass"
        else:
            call = "borderline"
        rows.append({"method": method, "metric": metric, "at": layers[step],
                     "mean": mean, "std": float(sm.loc[step, "std"]),
                     "noise_floor": floor, "retained": retained,
                     "first_below": layers[below[0]] if below else "never",
                     "last": float(curve[-1][1]), "verdict": call})
    return pd.DataFrame(rows)


def verdict(results, metric="spearman_abs", by=1, threshold=DEFAULT_THRESHOLD,
            margin=DEFAULT_MARGIN):
    """Pass or fail per method, judged at one step chosen in advance, against the noise floor.

    For each method, the mean similarity (over images) between the original map and the
    map at step ``by`` is rescaled so that the metric's noise floor is 0 and identical maps
    are 1::

        retained = (mean - noise_floor) / (1 - noise_floor)

    A method **fails** when ``retained >= threshold + margin`` (its maps stayed similar
    although the model was randomized), **passes** when ``retained < threshold - margin``,
    and is **borderline** in between (or when its maps were constant, NaN). Choose ``by``
    *before* looking at the curves: for a cascading test, the step after which the model
    certainly computes something else (e.g. with its top two groups random); for the data
    randomization test, step 1.

    Parameters
    ----------
    results : SanityCheckResult or sequence of them
        Several results (e.g. randomization seeds, or image sets) are judged one by one; a
        method's verdict is kept only where all agree, otherwise "borderline".
    metric : str, default "spearman_abs"
    by : int or str, default 1
        The step to judge at: a step number (1 = the first randomized step) or a layer name.
    threshold : float, default :data:`DEFAULT_THRESHOLD`
    margin : float, default :data:`DEFAULT_MARGIN`

    Returns
    -------
    pandas.DataFrame
        One row per method: ``method, metric, at, mean, std, noise_floor, retained,
        first_below`` (the first step whose mean is below the threshold, "never" if none),
        ``last`` (the mean at the last step) and ``verdict``. With several results, the
        numbers are means over them, plus ``spread`` (max - min of ``retained``) and
        ``results``; ``first_below`` is the latest one.

    Raises
    ------
    ValueError
        An unknown metric or step, a threshold outside (0, 1), a negative margin, or results
        that do not share methods and steps.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> from sanity_lib.own_model import verdict
    >>> r = sl.model_randomization_test(sl.models.mnist_cnn(), torch.rand(3, 1, 28, 28),
    ...                                 ["gradient"], progress=False)   # doctest: +SKIP
    >>> verdict(r, by="fc1")[["method", "retained", "verdict"]]          # doctest: +SKIP
    """
    from sanity_lib.checks import SanityCheckResult

    if isinstance(results, SanityCheckResult):
        results = [results]
    results = list(results)
    if not results or not all(isinstance(r, SanityCheckResult) for r in results):
        raise TypeError("results must be a SanityCheckResult or a list of them (from "
                        "sl.model_randomization_test / sl.data_randomization_test)")
    if not (isinstance(threshold, numbers.Real) and 0 < threshold < 1):
        raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
    if not (isinstance(margin, numbers.Real) and 0 <= margin < threshold):
        raise ValueError(f"margin must be a number in [0, threshold), got {margin!r}")
    first = results[0]
    for r in results[1:]:
        if r.methods != first.methods or list(r.layers) != list(first.layers):
            raise ValueError("the results do not share methods and steps; judge results of "
                             "the same test, run with different seeds or images")
    tables = [_one_verdict(r, metric, by, threshold, margin) for r in results]
    if len(tables) == 1:
        return tables[0]
    layers = list(first.layers)
    rows = []
    for i, method in enumerate(first.methods):
        per = [t.iloc[i] for t in tables]
        calls = {p["verdict"] for p in per}
        retained = [p["retained"] for p in per]
        belows = [p["first_below"] for p in per]
        latest = ("never" if "never" in belows else
                  max(belows, key=layers.index))
        rows.append({"method": method, "metric": metric, "at": per[0]["at"],
                     "mean": float(np.mean([p["mean"] for p in per])),
                     "std": float(np.mean([p["std"] for p in per])),
                     "noise_floor": float(np.mean([p["noise_floor"] for p in per])),
                     "retained": float(np.mean(retained)),
                     "first_below": latest,
                     "last": float(np.mean([p["last"] for p in per])),
                     "verdict": calls.pop() if len(calls) == 1 else "borderline",
                     "spread": float(np.max(retained) - np.min(retained)),
                     "results": len(per)})
    return pd.DataFrame(rows)
