"""The paper's two sanity checks, end to end: randomize, explain, compare, tabulate.

:func:`model_randomization_test` re-initializes (or perturbs) a trained model one layer
group at a time and compares each saliency method's maps with the trained model's maps;
:func:`data_randomization_test` compares the maps of a model trained on true labels with
those of the same architecture trained on permuted labels (Adebayo et al. 2018, sections
4 and 5). Both return a :class:`SanityCheckResult`: a tidy table of similarities, the maps
themselves, the noise floor, and the two figures of the paper.

Conventions
-----------
* **Steps.** Step 0 is the original (trained) model; step ``k >= 1`` is the ``k``-th model
  that :mod:`sanity_lib.randomization` yields (cascading: the first ``k`` layer groups
  randomized, from the logits down by default). ``result.layers[k]`` names step ``k``;
  ``result.layers[0] == "original"``.
* **Table.** One row per (method, step >= 1, image, metric): the similarity of that step's
  map with the original map. Step 0 is *not* a row (comparing a map with itself says
  nothing); the curves of :meth:`SanityCheckResult.plot_curves` start at 1 there, as the
  paper's figures do.
* **Target.** ``target="argmax"`` (the paper's code) explains each model's own top class, so
  a randomized model explains *its* argmax; ``"original"`` keeps the trained model's class
  at every step (Quantus' choice); an int or N ints fix the class. ``result.targets`` says
  which class was explained at each step.
* **Mode.** Every model is explained in eval mode, on a copy: the model you pass is never
  changed.
"""
import copy
import difflib
import hashlib
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = [
    "SanityCheckResult", "model_randomization_test", "data_randomization_test",
    "DEFAULT_METHODS", "MODES", "TARGETS", "TABLE_COLUMNS", "fingerprint",
]

#: The methods of the paper's Figure 2, in its order (each with the paper's settings).
DEFAULT_METHODS = (
    "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
    "guided_backprop", "gradcam", "guided_gradcam",
)
#: The kinds of model randomization (:mod:`sanity_lib.randomization`).
MODES = ("cascading", "independent", "gaussian_noise")
#: The named target policies; an int or N ints are also accepted.
TARGETS = ("argmax", "original")
#: The columns of :attr:`SanityCheckResult.table`, in order.
TABLE_COLUMNS = ("method", "step", "layer", "image", "metric", "value")

_DEFAULT_METRICS = ("spearman_abs", "spearman_diverging", "ssim", "hog")
# Bump when what a cached sweep holds, or how it is computed, changes.
# 2: maps from shared passes on a batch-norm-folded, channels-last copy (rounding differs).
_CACHE_FORMAT = 2
_ARGMAX_BATCH = 32


# ----------------------------------------------------------------------------- result

@dataclass(repr=False)
class SanityCheckResult:
    """What a sanity check found: similarities, maps, and the figures of the paper.

    Attributes
    ----------
    table : pandas.DataFrame
        Tidy, columns ``method, step, layer, image, metric, value``: one row per method,
        randomized step (1, 2, ...), image and metric; ``value`` is the similarity (float64;
        NaN where a map was constant, e.g. an all-zero GradCAM). Step 0 (the original)
        has no rows.
    maps : dict of str to torch.Tensor
        Method -> tensor ``(steps + 1) x N x C x H x W`` on the CPU; index 0 is the
        original model's map (GradCAM: C = 1). Empty when run with ``keep_maps=False``.
    layers : list of str
        Step names: ``layers[0] == "original"``, then the randomized groups in order.
    noise_floor : dict of str to float
        Metric -> mean similarity of two independent Gaussian random maps of the maps'
        shape (:func:`sanity_lib.similarity.noise_floor`, 50 pairs): curves below it say
        nothing.
    targets : torch.Tensor
        int64, ``(steps + 1) x N``: the class explained at each step for each image.
    settings : dict
        The full configuration: test, mode, order, init, method settings, target, seeds,
        fingerprints of the model and the input, ...
    inputs : torch.Tensor or None
        The model input ``x`` (CPU), shown by :meth:`plot_grid`.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> model = sl.models.mnist_cnn()
    >>> x = torch.rand(2, 1, 28, 28)
    >>> result = sl.model_randomization_test(model, x, ["gradient"], progress=False)
    >>> result.layers
    ['original', 'logits', 'fc1', 'conv2', 'conv1']
    >>> len(result.table) == 1 * 4 * 2 * 4       # methods x steps x images x metrics
    True
    """

    table: pd.DataFrame
    maps: dict
    layers: list
    noise_floor: dict
    targets: torch.Tensor
    settings: dict
    inputs: torch.Tensor | None = field(default=None)

    # -- small conveniences
    @property
    def methods(self) -> list:
        """The methods compared, in the order given."""
        return list(self.settings["methods"])

    @property
    def metrics(self) -> list:
        """The similarity metrics in the table."""
        return list(self.settings["metrics"])

    @property
    def n_steps(self) -> int:
        """Number of randomized steps (``len(layers) - 1``)."""
        return len(self.layers) - 1

    def __repr__(self) -> str:
        test = self.settings.get("test", "?")
        what = self.settings.get("mode", "")
        n_images = int(self.targets.shape[1]) if self.targets.dim() == 2 else "?"
        return (f"SanityCheckResult(test={test!r}{', mode=' + repr(what) if what else ''}, "
                f"methods={self.methods}, layers={self.layers}, images={n_images}, "
                f"metrics={self.metrics}, rows={len(self.table)})")

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation and count of the similarity over images.

        Returns
        -------
        pandas.DataFrame
            Columns ``method, step, layer, metric, mean, std, n``; one row per method, step
            and metric, in the table's order. ``std`` is the sample standard deviation
            (ddof=1); ``n`` counts the images with a defined (non-NaN) value, and NaN values
            are left out of ``mean`` and ``std``.

        Examples
        --------
        >>> result.summary().columns.tolist()           # doctest: +SKIP
        ['method', 'step', 'layer', 'metric', 'mean', 'std', 'n']
        """
        grouped = self.table.groupby(["method", "step", "layer", "metric"], sort=False)["value"]
        out = grouped.agg(mean="mean", std="std", n="count").reset_index()
        return out

    def plot_curves(self, metric="spearman_abs", ax=None, band="std", methods=None):
        """The paper's Figures 2 and 3: similarity to the original map, step by step.

        One line per method (mean over images) with a shaded band (``band="std"``: mean +-
        one standard deviation over images; ``"iqr"``: the 25th to 75th percentile; None:
        no band), starting at 1 on "original"; a dashed line marks the noise floor.

        Parameters
        ----------
        metric : str or list of str, default "spearman_abs"
            One metric, or several for side-by-side panels.
        ax : matplotlib Axes or sequence of Axes, optional
            Where to draw (one per metric); by default a new figure.
        band : {"std", "iqr", None}
        methods : list of str, optional
            A subset of the methods, in the order to draw.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = result.plot_curves(["spearman_abs", "spearman_diverging"])  # doctest: +SKIP
        >>> fig.savefig("cascading.png")                                    # doctest: +SKIP
        """
        from sanity_lib import plotting

        return plotting.plot_curves(
            self.table, self.layers, metric=metric, noise_floor=self.noise_floor, ax=ax,
            band=band, methods=methods, title=_describe_test(self.settings),
            xlabel=_x_label(self.settings))

    def plot_grid(self, image=0, mode="abs", methods=None, steps=None, cmap=None):
        """The maps of one image: methods in rows, original then each step in columns.

        ``mode="abs"`` shows the paper's absolute-value maps (normalized to [0, 1],
        sequential colormap); ``"diverging"`` keeps the sign (normalized to [-1, 1],
        a diverging colormap centred on 0). The input image comes first.

        Parameters
        ----------
        image : int
            Which image of the batch.
        mode : {"abs", "diverging"}
        methods : list of str, optional
            Rows; default all methods.
        steps : list of int or str, optional
            Columns, as step numbers or layer names; default every step.
        cmap : str, optional
            Overrides the colormap ("gray" for abs, "RdBu_r" for diverging).

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = result.plot_grid(image=0, mode="diverging",
        ...                        steps=["original", "logits", "conv1"])  # doctest: +SKIP
        """
        from sanity_lib import plotting

        if not self.maps:
            raise ValueError("this result holds no maps (it was computed with keep_maps=False); "
                             "rerun the test with keep_maps=True to plot them")
        return plotting.plot_grid(self.maps, self.layers, image=image, mode=mode,
                                  methods=methods, steps=steps, inputs=self.inputs, cmap=cmap,
                                  targets=self.targets)

    # -- storage (plain tensors, lists and dicts, so it loads with weights_only=True)
    def _to_payload(self) -> dict:
        table = {
            "method": self.table["method"].astype(str).tolist(),
            "step": torch.tensor(self.table["step"].to_numpy(np.int64)),
            "layer": self.table["layer"].astype(str).tolist(),
            "image": torch.tensor(self.table["image"].to_numpy(np.int64)),
            "metric": self.table["metric"].astype(str).tolist(),
            "value": torch.tensor(self.table["value"].to_numpy(np.float64)),
        }
        return {"table": table, "maps": dict(self.maps), "layers": list(self.layers),
                "noise_floor": dict(self.noise_floor), "targets": self.targets,
                "settings": self.settings, "inputs": self.inputs}

    @classmethod
    def _from_payload(cls, payload: dict) -> "SanityCheckResult":
        t = payload["table"]
        table = _make_table(t["method"], t["step"].tolist(), t["layer"], t["image"].tolist(),
                            t["metric"], t["value"].numpy())
        return cls(table=table, maps=dict(payload["maps"]), layers=list(payload["layers"]),
                   noise_floor=dict(payload["noise_floor"]), targets=payload["targets"],
                   settings=payload["settings"], inputs=payload["inputs"])


def _make_table(method, step, layer, image, metric, value) -> pd.DataFrame:
    return pd.DataFrame({
        "method": pd.Series(list(method), dtype=str),
        "step": np.asarray(step, dtype=np.int64),
        "layer": pd.Series(list(layer), dtype=str),
        "image": np.asarray(image, dtype=np.int64),
        "metric": pd.Series(list(metric), dtype=str),
        "value": np.asarray(value, dtype=np.float64),
    }, columns=list(TABLE_COLUMNS))


def _describe_test(settings: dict) -> str:
    test = settings.get("test")
    if test == "data_randomization":
        return "Data randomization test"
    mode = settings.get("mode")
    order = str(settings.get("order", "top_down")).replace("_", "-")
    if mode == "cascading":
        return f"Cascading randomization ({order})"
    if mode == "independent":
        return "Independent randomization"
    if mode == "gaussian_noise":
        kind = "relative " if settings.get("relative") else ""
        return f"Gaussian noise, {kind}std {settings.get('std')} ({order})"
    return "Sanity check"


def _x_label(settings: dict) -> str:
    mode = settings.get("mode")
    if settings.get("test") == "data_randomization":
        return "model"
    if mode == "cascading":
        return "randomized down to layer (cumulative)"
    if mode == "independent":
        return "layer randomized (alone)"
    if mode == "gaussian_noise":
        return "noise added down to layer (cumulative)"
    return "step"


# ----------------------------------------------------------------------------- fingerprints

def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def fingerprint(obj) -> str:
    """A short SHA-256 of a model's architecture and ``state_dict``, or of a tensor.

    Two models with the same class, layout (``repr``) and bit-identical parameters and
    buffers get the same fingerprint; changing any weight changes it. The cache of
    :func:`model_randomization_test` uses it so a retrained model never reuses old results.

    Examples
    --------
    >>> from sanity_lib.models import mnist_cnn
    >>> fingerprint(mnist_cnn(seed=0)) == fingerprint(mnist_cnn(seed=0))
    True
    >>> fingerprint(mnist_cnn(seed=0)) == fingerprint(mnist_cnn(seed=1))
    False
    """
    h = hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        _hash_tensor(h, obj)
    elif isinstance(obj, nn.Module):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}\n{obj!r}\n".encode())
        for name, value in obj.state_dict().items():
            h.update(name.encode())
            if isinstance(value, torch.Tensor):
                _hash_tensor(h, value)
            else:  # extra state
                h.update(repr(value).encode())
    else:
        raise TypeError(f"fingerprint takes a torch.nn.Module or a torch.Tensor, "
                        f"got {type(obj).__name__}")
    return h.hexdigest()[:24]


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


# ----------------------------------------------------------------------------- validation

def _module_names(model: nn.Module) -> dict:
    return {module: name for name, module in model.named_modules()}


def _parse_methods(methods) -> dict:
    """``{name: settings dict}`` from a method name, a list of names or a dict name -> settings;
    names checked against :data:`sanity_lib.saliency.METHODS`. Shared with :mod:`sanity_lib.mprt`."""
    from sanity_lib import saliency

    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, dict):
        items = list(methods.items())
    else:
        try:
            items = [(m, {}) for m in methods]
        except TypeError:
            raise TypeError(
                "methods must be a list of method names or a dict name -> settings dict, got "
                f"{type(methods).__name__}") from None
    if not items:
        raise ValueError(f"methods is empty; pass at least one of {saliency.METHODS}")
    out = {}
    for name, settings in items:
        if not isinstance(name, str) or name not in saliency.METHODS:
            close = difflib.get_close_matches(str(name), saliency.METHODS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown method {name!r} in methods; {hint}valid names are "
                f"{', '.join(saliency.METHODS)}")
        if name in out:
            raise ValueError(f"method {name!r} appears twice in methods; give it once")
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise TypeError(f"the settings of method {name!r} must be a dict, e.g. "
                            f"{{'{name}': {{'batch_size': 8}}}}; got {type(settings).__name__}")
        out[name] = dict(settings)
    return out


def _check_methods(methods, model: nn.Module) -> dict:
    """``{name: settings}`` with canonical names; modules in settings become dotted names
    (explain runs on copies of the model, whose modules are other objects)."""
    names = _module_names(model)
    out = {}
    for name, settings in _parse_methods(methods).items():
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

    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in similarity.METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics={unknown or metrics!r} not known; choose among "
                         f"{', '.join(similarity.METRICS)}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics lists a name twice: {metrics}")
    return metrics


def _check_x(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of model inputs (N x C x H x W), got "
                        f"{type(x).__name__}; convert with torch.as_tensor(x)")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (the preprocessed model input), "
                        f"got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(
            f"x must be a non-empty batch of images N x C x H x W (the similarity metrics "
            f"compare 2-D maps); got shape {tuple(x.shape)}. For one image use x[None]")
    return x.detach()


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
    t = t.to(torch.long).cpu().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"target holds {t.numel()} classes but x holds {n} images; give one "
                         "class per image")
    return t


def _check_flag(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"device={device!r} is not a torch device; use None (CUDA when "
                         "available), 'cpu' or 'cuda'") from err


def _working_copy(model: nn.Module, device: torch.device) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        work = copy.deepcopy(model)
    except Exception as err:  # deepcopy fails with many exception types
        raise TypeError(f"could not copy the model ({type(err).__name__}: {err}); the tests "
                        "explain copies so your model is never changed") from err
    return work.to(device).eval()


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


# ----------------------------------------------------------------------------- engine

def _argmax(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + _ARGMAX_BATCH]).argmax(dim=1)
                          for i in range(0, x.shape[0], _ARGMAX_BATCH)]).cpu()


def _explain(model, x, method, target, settings, step, layer):
    from sanity_lib import saliency

    try:
        maps = saliency.explain(model, x, method, target=target.to(x.device), **settings)
    except Exception as err:
        err.add_note(f"(while explaining method {method!r} at step {step}, {layer!r})")
        raise
    maps = maps.detach().cpu()
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(f"method {method!r} gave NaN or infinite maps at step {step} "
                         f"({layer!r}); they cannot be compared")
    return maps


def _explain_step(model, x, methods, target, step, layer):
    """Every method's maps for one model: ``{method: maps}`` on the CPU.

    The methods share their forward-backward passes (:mod:`sanity_lib.saliency._shared`):
    one plain pass gives gradient, gradient x input and GradCAM, one guided pass Guided
    Backprop, Guided GradCAM is their product, SmoothGrad and VarGrad use the same noisy
    gradients. A replaced ``sanity_lib.saliency.explain`` (a wrapper, a spy) is honoured:
    then each method gets its own call, as before.
    """
    from sanity_lib import saliency
    from sanity_lib.saliency import _engine, _shared

    if saliency.explain is not _engine.explain:
        return {m: _explain(model, x, m, target, s, step, layer) for m, s in methods.items()}
    try:
        maps = _shared.explain_all(model, x, methods, target=target.to(x.device))
    except Exception as err:
        err.add_note(f"(while explaining methods {list(methods)} at step {step}, {layer!r})")
        raise
    out = {}
    for method, m in maps.items():
        m = m.detach().cpu()
        if not bool(torch.isfinite(m).all()):
            raise ValueError(f"method {method!r} gave NaN or infinite maps at step {step} "
                             f"({layer!r}); they cannot be compared")
        out[method] = m
    return out


def _sweep(test, original, steps, n_steps, x, methods, target, metrics, compare_options,
           progress, keep_maps, settings, seed):
    """Explain the original model and every step's model, compare, and tabulate."""
    from tqdm.auto import tqdm

    from sanity_lib import similarity

    n = x.shape[0]
    fixed = target if isinstance(target, torch.Tensor) else None
    original_targets = fixed if fixed is not None else _argmax(original, x)
    first = _explain_step(original, x, methods, original_targets, 0, "original")
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
        step_maps = _explain_step(model, x, methods, step_targets, k, layer)
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
                             inputs=x.detach().cpu())


def _cached_or_run(cache: bool, config: dict, run):
    from sanity_lib import _cache

    if not cache:
        return run()
    path = _cache.cache_path("sweeps", config)
    stored = _cache.load_cached(path, expected_config=config)
    if stored is not None:
        try:
            return SanityCheckResult._from_payload(stored["result"])
        except (KeyError, TypeError, AttributeError) as err:
            warnings.warn(f"cached sweep {path} has an unexpected layout ({err}); recomputing",
                          RuntimeWarning, stacklevel=3)
    result = run()
    _cache.save_atomic({"config": config, "result": result._to_payload()}, path)
    return result


def _common_config(x, methods, target, metrics, compare_options, keep_maps, seed, names):
    import sanity_lib

    return {
        "format": _CACHE_FORMAT,
        "version": sanity_lib.__version__,
        "x_fingerprint": fingerprint(x),
        "x_shape": list(x.shape),
        "methods": _jsonable(methods, names),
        "target": target if isinstance(target, str) else target.tolist(),
        "metrics": list(metrics),
        "compare_options": _jsonable(compare_options, names),
        "keep_maps": keep_maps,
        "seed": seed,
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


# ----------------------------------------------------------------------------- public API

def model_randomization_test(model, x, methods=DEFAULT_METHODS, mode="cascading", *,
                             order="top_down", init="default", batchnorm="keep", std=None,
                             relative=False, groups=None, target="argmax",
                             metrics=_DEFAULT_METRICS, seed=0, device=None, progress=True,
                             keep_maps=True, cache=False, compare_options=None):
    """The model parameter randomization test (Adebayo et al. 2018, section 4).

    Explains ``x`` with every method under the trained ``model`` (step 0) and under each
    randomized model that :mod:`sanity_lib.randomization` yields (steps 1, 2, ...), and
    compares every step's maps with the step-0 maps by the paper's similarity metrics.
    A method that explains the *model* must produce maps that change as the model is
    randomized: similarities should fall to the noise floor.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model, returning N x K logits. Never changed (a copy is explained, in
        eval mode).
    x : torch.Tensor
        N x C x H x W *model inputs*, already preprocessed (``model.preprocess(x01)``).
    methods : sequence of str, or dict of str to dict, default :data:`DEFAULT_METHODS`
        Method names from :data:`sanity_lib.saliency.METHODS`, or ``{name: settings}`` whose
        settings go to :func:`sanity_lib.saliency.explain` (e.g.
        ``{"smoothgrad": {"n_samples": 10}}``). The default is the paper's seven methods
        with the paper's settings (Integrated Gradients 50 steps, SmoothGrad 50 samples:
        slow on a CPU; use ``cache=True``).
    mode : {"cascading", "independent", "gaussian_noise"}, default "cascading"
        Cumulative re-initialization, one group at a time, or cumulative Gaussian noise on
        the parameters (the student report's variant; needs ``std``).
    order : {"top_down", "bottom_up"}, default "top_down"
        Logits first (the paper) or input layer first.
    init : str, default "default"
        Re-initialization scheme (:func:`sanity_lib.randomization.init_schemes`); not used
        by ``"gaussian_noise"``.
    batchnorm : {"keep", "reset"}, default "keep"
        Keep the trained running statistics (the reference code) or reset them (Quantus);
        ``"gaussian_noise"`` always keeps them.
    std : float, optional
        Noise standard deviation; required for ``mode="gaussian_noise"``, not allowed
        otherwise.
    relative : bool, default False
        ``"gaussian_noise"`` only: ``std`` as a fraction of each tensor's own spread.
    groups : list, optional
        Layer groups, as in :func:`sanity_lib.models.layer_groups`.
    target : "argmax", "original", int or N ints, default "argmax"
        "argmax": each model's own top class (the paper's code: a randomized model explains
        its argmax). "original": the trained model's class at every step (Quantus). An int
        or N ints: those classes at every step.
    metrics : sequence of str, default all four
        From :data:`sanity_lib.similarity.METRICS`: ``"spearman_abs"``,
        ``"spearman_diverging"``, ``"ssim"``, ``"hog"``.
    seed : int, default 0
        Seeds the randomization and the noise floor. (Noisy saliency methods have their
        own ``seed`` setting, default 0, so every step draws the same noise.)
    device : str or torch.device, optional
        Where to explain; default CUDA when available, else CPU. Results come back on the
        CPU.
    progress : bool, default True
        A ``tqdm.auto`` bar over the steps.
    keep_maps : bool, default True
        Keep every map in ``result.maps`` (``(steps + 1) x N x C x H x W`` per method);
        False saves memory on long sweeps, and ``plot_grid`` is then unavailable.
    cache : bool, default False
        Store the finished result on disk (:mod:`sanity_lib._cache`, folder ``sweeps``),
        keyed by the whole configuration including fingerprints of the model's weights and
        of ``x``; a later identical call loads it instead of recomputing. ``device`` and
        ``progress`` are not part of the key.
    compare_options : dict, optional
        Passed to :func:`sanity_lib.similarity.compare` and ``noise_floor`` (e.g.
        ``{"hog_method": "spearman"}`` for the reference code's HOG correlation).

    Returns
    -------
    SanityCheckResult

    Raises
    ------
    ValueError
        Unknown ``mode``, method, metric or target name; ``std`` missing for
        ``"gaussian_noise"`` or given for another mode; x not N x C x H x W.
    TypeError
        Wrong argument types (e.g. methods settings that are not dicts).

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> model = sl.models.mnist_cnn()
    >>> x = torch.rand(3, 1, 28, 28)
    >>> result = sl.model_randomization_test(model, x, ["gradient", "guided_backprop"],
    ...                                      progress=False)
    >>> result.layers
    ['original', 'logits', 'fc1', 'conv2', 'conv1']
    >>> sorted(result.table.columns) == sorted(["method", "step", "layer", "image",
    ...                                          "metric", "value"])
    True
    >>> fig = result.plot_curves("spearman_diverging")
    """
    from sanity_lib import randomization

    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not known; choose one of {', '.join(MODES)}")
    if mode == "gaussian_noise":
        if std is None:
            raise ValueError("mode='gaussian_noise' needs std=, the standard deviation of the "
                             "noise added to the parameters (e.g. std=0.1, or relative=True "
                             "with std=0.5 for half of each tensor's spread)")
        if init != "default":
            raise ValueError(f"init={init!r} is not used by mode='gaussian_noise' (it adds noise "
                             "instead of re-initializing); leave init at 'default'")
        if batchnorm != "keep":
            raise ValueError("mode='gaussian_noise' always keeps batch-norm running statistics; "
                             "leave batchnorm at 'keep'")
    else:
        if std is not None:
            raise ValueError(f"std={std!r} is only used with mode='gaussian_noise'; "
                             f"mode={mode!r} re-initializes the weights (leave std=None)")
        if relative:
            raise ValueError("relative=True is only used with mode='gaussian_noise'")
    for name, value, choices in (("order", order, randomization.ORDERS),
                                 ("init", init, randomization.INIT_SCHEMES),
                                 ("batchnorm", batchnorm, randomization.BATCHNORM_POLICIES)):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name}={value!r} is not known; choose one of {list(choices)}")
    _check_flag("relative", relative)
    _check_flag("progress", progress)
    _check_flag("keep_maps", keep_maps)
    _check_flag("cache", cache)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    seed = int(seed)
    x = _check_x(x)
    methods = _check_methods(methods, model)
    metrics = _check_metrics(metrics)
    target = _check_target(target, x.shape[0])
    compare_options = _check_compare_options(compare_options)
    device = _resolve_device(device)
    groups = _groups_for_copy(groups, model)
    names = _module_names(model)
    randomization.randomization_order(model, order=order, groups=groups)  # checks groups early

    settings = {
        "test": "model_randomization",
        "mode": mode, "order": order, "init": init, "batchnorm": batchnorm,
        "std": float(std) if isinstance(std, numbers.Real) else std, "relative": relative,
        "groups": _jsonable(groups, names),
        "model": type(model).__name__,
        "model_fingerprint": fingerprint(model),
        **_common_config(x, methods, target, metrics, compare_options, keep_maps, seed, names),
    }
    settings["methods"] = methods  # the dict itself (names, settings); the key uses _jsonable
    config = {**settings, "methods": _jsonable(methods, names)}

    def run():
        work = _working_copy(model, device)
        if mode == "cascading":
            gen = randomization.cascading(work, order=order, init=init, seed=seed,
                                          groups=groups, batchnorm=batchnorm)
        elif mode == "independent":
            gen = randomization.independent(work, order=order, init=init, seed=seed,
                                            groups=groups, batchnorm=batchnorm)
        else:
            gen = randomization.gaussian_noise(work, std=std, relative=relative, seed=seed,
                                               groups=groups, order=order)
        n_steps = len(randomization.randomization_order(work, order=order, groups=groups))
        return _sweep("model_randomization", work, gen, n_steps, x.to(device), methods, target,
                      metrics, compare_options, progress, keep_maps,
                      {**settings, "description": _describe_test(settings)}, seed)

    return _cached_or_run(cache, config, run)


def data_randomization_test(true_model, random_label_model, x, methods=DEFAULT_METHODS, *,
                            target="argmax", metrics=_DEFAULT_METRICS, seed=0, device=None,
                            progress=True, keep_maps=True, cache=False, compare_options=None):
    """The data randomization test (Adebayo et al. 2018, section 5).

    Explains the same inputs under a model trained on the true labels (step 0,
    ``"original"``) and the same architecture trained on permuted labels (step 1,
    ``"random labels"``), and compares the maps. A method that reflects what the model
    learned from the labels must give clearly different maps for a model that could only
    memorize.

    Parameters
    ----------
    true_model, random_label_model : torch.nn.Module
        Both return N x K logits for ``x`` (e.g. ``sanity_lib.training.trained_mnist_model(
        labels="true")`` and ``labels="random"``). Never changed.
    x : torch.Tensor
        N x C x H x W model inputs (the same preprocessing suits both models).
    methods, metrics, seed, device, progress, keep_maps, cache, compare_options
        As in :func:`model_randomization_test` (``seed`` only seeds the noise floor here).
    target : "argmax", "original", int or N ints, default "argmax"
        "argmax": each model explains its own top class; "original": both explain the
        true-label model's class.

    Returns
    -------
    SanityCheckResult
        ``layers == ["original", "random labels"]``; the table's rows all have step 1.

    Examples
    --------
    >>> import torch, sanity_lib as sl
    >>> true_model, _ = sl.training.trained_mnist_model(labels="true")     # doctest: +SKIP
    >>> random_model, _ = sl.training.trained_mnist_model(labels="random")  # doctest: +SKIP
    >>> x = sl.data.load_mnist("test")[0][:8]                               # doctest: +SKIP
    >>> result = sl.data_randomization_test(true_model, random_model, x,
    ...                                     ["gradient", "guided_backprop"])  # doctest: +SKIP
    >>> result.summary()                                                    # doctest: +SKIP
    """
    for name, value in (("progress", progress), ("keep_maps", keep_maps), ("cache", cache)):
        _check_flag(name, value)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    seed = int(seed)
    if not isinstance(random_label_model, nn.Module):
        raise TypeError(f"random_label_model must be a torch.nn.Module, got "
                        f"{type(random_label_model).__name__}")
    x = _check_x(x)
    methods = _check_methods(methods, true_model)
    metrics = _check_metrics(metrics)
    target = _check_target(target, x.shape[0])
    compare_options = _check_compare_options(compare_options)
    device = _resolve_device(device)
    names = _module_names(true_model)

    settings = {
        "test": "data_randomization",
        "model": type(true_model).__name__,
        "model_fingerprint": fingerprint(true_model),
        "random_label_model": type(random_label_model).__name__,
        "random_label_model_fingerprint": fingerprint(random_label_model),
        **_common_config(x, methods, target, metrics, compare_options, keep_maps, seed, names),
    }
    settings["methods"] = methods
    config = {**settings, "methods": _jsonable(methods, names)}

    def run():
        work = _working_copy(true_model, device)
        steps = [("random labels", _working_copy(random_label_model, device))]
        return _sweep("data_randomization", work, iter(steps), 1, x.to(device), methods,
                      target, metrics, compare_options, progress, keep_maps,
                      {**settings, "description": _describe_test(settings)}, seed)

    return _cached_or_run(cache, config, run)
