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
from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from sanity_lib._validation import check_choice, check_device, check_flag, check_images, check_int
from sanity_lib.models.groups import in_forward_order

from .preflight import STATUSES, preflight
from .result import (
    PASS_THRESHOLD,
    TABLE_COLUMNS,
    VERDICTS,
    SanityCheckResult,
    _describe_test,
    call_from_interval,
)
from .sweep import (
    TARGETS,
    _cached_or_run,
    _check_compare_options,
    _check_methods,
    _check_metrics,
    _check_target,
    _common_config,
    _explainer_key,
    _groups_for_copy,
    _jsonable,
    _module_names,
    _working_copy,
    default_explainer,
    fingerprint,
    outputs_fingerprint,
    run_sweep,
)
from .verdicts import verdict

__all__ = [
    "SanityCheckResult", "model_randomization_test", "data_randomization_test",
    "DEFAULT_METHODS", "MODES", "TARGETS", "TABLE_COLUMNS", "fingerprint", "default_explainer",
    "preflight", "verdict", "STATUSES", "VERDICTS", "PASS_THRESHOLD", "call_from_interval",
]

#: The eight methods the paper tests (its Figure 2), each with the paper's settings. Mind
#: IG-SmoothGrad's cost: 50 noisy copies times 50 path steps is 2,500 gradients per map, 50
#: times SmoothGrad's (the book passes smaller settings, :func:`sanity_lib.course.book.book_methods`).
DEFAULT_METHODS = (
    "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
    "integrated_gradients_smoothgrad", "guided_backprop", "gradcam", "guided_gradcam",
)
#: The kinds of model randomization (:mod:`sanity_lib.randomization`).
MODES = ("cascading", "independent", "gaussian_noise")

_DEFAULT_METRICS = ("spearman_abs", "spearman_diverging", "ssim", "hog")


def _check_runs(model: nn.Module, x: torch.Tensor) -> None:
    """One forward pass on one image, before any long work: a model that cannot take x (the
    wrong size, say) is one clear error here, not a traceback from inside the sweep."""
    from sanity_lib.saliency._inputs import eval_mode, probe

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with eval_mode(model):
        probe(model, x[:1].to(device))


def _common_arguments(model, x, methods, target, metrics, compare_options, device, seed,
                      progress, keep_maps, cache, explainer) -> SimpleNamespace:
    """The arguments both tests share, checked, and the part of the cache key they make."""
    for name, value in (("progress", progress), ("keep_maps", keep_maps), ("cache", cache)):
        check_flag(name, value)
    seed = check_int("seed", seed, minimum=0)
    x = check_images(x)
    _check_runs(model, x)
    methods = _check_methods(methods, model)
    metrics = _check_metrics(metrics)
    target = _check_target(target, x.shape[0])
    compare_options = _check_compare_options(compare_options)
    names = _module_names(model)
    explainer_key = _explainer_key(explainer, cache)
    config = _common_config(x, methods, target, metrics, compare_options, keep_maps, seed,
                            names, explainer_key)
    return SimpleNamespace(x=x, methods=methods, target=target, metrics=metrics,
                           compare_options=compare_options, device=check_device(device),
                           seed=seed, names=names, config=config,
                           explainer=explainer or default_explainer)


def model_randomization_test(model: nn.Module, x: torch.Tensor,
                             methods: Sequence[str] | Mapping[str, Mapping[str, Any] | None]
                             = DEFAULT_METHODS,
                             mode: str = "cascading", *, order: str = "top_down",
                             init: str | None = None, batchnorm: str = "keep",
                             std: float | None = None, relative: bool = False,
                             groups: Sequence[str | tuple[str, str | nn.Module]] | None = None,
                             target: str | int | Sequence[int] | torch.Tensor = "argmax",
                             metrics: Sequence[str] = _DEFAULT_METRICS, seed: int = 0,
                             device: str | torch.device | None = None, progress: bool = True,
                             keep_maps: bool = True, cache: bool = False,
                             compare_options: Mapping[str, Any] | None = None,
                             explainer: Callable[..., Mapping[str, torch.Tensor]] | None = None,
                             ) -> SanityCheckResult:
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
        ``{"smoothgrad": {"n_samples": 10}}``). The default is the paper's eight methods
        with the paper's settings (Integrated Gradients 50 steps, SmoothGrad 50 samples,
        IG-SmoothGrad both: slow on a CPU; use ``cache=True``).
    mode : {"cascading", "independent", "gaussian_noise"}, default "cascading"
        Cumulative re-initialization, one group at a time, or cumulative Gaussian noise on
        the parameters (the student report's variant; needs ``std``).
    order : {"top_down", "bottom_up"}, default "top_down"
        Logits first (the paper) or input layer first.
    init : str, optional
        Re-initialization scheme (:func:`sanity_lib.randomization.init_schemes`); by default
        :data:`sanity_lib.randomization.DEFAULT_INIT`, the paper's ``"truncated_normal"``.
        Not used by ``"gaussian_noise"`` (leave it unset there).
    batchnorm : {"keep", "reset", "recalibrate"}, default "keep"
        Keep the trained running statistics (the reference code), reset them (Quantus),
        or re-estimate them on ``x`` after every step
        (:func:`sanity_lib.randomization.recalibrate_batchnorm`), which keeps a deep
        randomized network from collapsing; ``"gaussian_noise"`` always keeps them.
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
        keyed by the whole configuration: the model's class, layout and weights
        (:func:`fingerprint`), what it computes on ``x`` (its scores, so hooks, buffers
        outside the ``state_dict`` and patched ``forward`` methods count too), ``x``
        itself, the methods and their settings, the explainer's ``cache_key`` and every
        option; a later identical call loads it instead of recomputing. ``device`` and
        ``progress`` are not part of the key.
    compare_options : dict, optional
        Passed to :func:`sanity_lib.similarity.compare` and ``noise_floor`` (e.g.
        ``{"hog_method": "spearman"}`` for the reference code's HOG correlation).
    explainer : callable, optional
        How each model's maps are computed: ``explainer(model, x, methods, target) ->
        {method: maps}`` (see :func:`default_explainer`, the default, which shares passes
        between methods). With ``cache=True`` your own explainer needs a ``cache_key``
        attribute.

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
        if init is not None:
            raise ValueError(f"init={init!r} is not used by mode='gaussian_noise' (it adds noise "
                             "instead of re-initializing); leave init unset")
        if batchnorm != "keep":
            raise ValueError("mode='gaussian_noise' always keeps batch-norm running statistics; "
                             "leave batchnorm at 'keep'")
    else:
        if std is not None:
            raise ValueError(f"std={std!r} is only used with mode='gaussian_noise'; "
                             f"mode={mode!r} re-initializes the weights (leave std=None)")
        if relative:
            raise ValueError("relative=True is only used with mode='gaussian_noise'")
        init = randomization.DEFAULT_INIT if init is None else init
        check_choice("init", init, randomization.INIT_SCHEMES)
    check_choice("order", order, randomization.ORDERS)
    check_choice("batchnorm", batchnorm, randomization.BATCHNORM_POLICIES + ("recalibrate",))
    check_flag("relative", relative)
    a = _common_arguments(model, x, methods, target, metrics, compare_options, device, seed,
                          progress, keep_maps, cache, explainer)
    x, methods, target, metrics, device = a.x, a.methods, a.target, a.metrics, a.device
    compare_options, seed, explainer = a.compare_options, a.seed, a.explainer
    if groups is not None:  # the order comes from the model's forward pass, not the list
        device_of_model = next((p.device for p in model.parameters()), torch.device("cpu"))
        groups = in_forward_order(model, groups, x[:1].to(device_of_model))
    groups = _groups_for_copy(groups, model)
    randomization.randomization_order(model, order=order, groups=groups)  # checks groups early

    settings = {
        "test": "model_randomization",
        "mode": mode, "order": order, "init": init, "batchnorm": batchnorm,
        "std": float(std) if isinstance(std, numbers.Real) else std, "relative": relative,
        "groups": _jsonable(groups, a.names),
        "model": type(model).__name__,
        "model_fingerprint": fingerprint(model),
        **a.config,
    }
    settings["methods"] = methods  # the dict itself (names, settings); the key uses _jsonable
    config = {**settings, "methods": _jsonable(methods, a.names)}
    if cache:  # what the model computes, not only its weights (see outputs_fingerprint)
        config["model_outputs"] = outputs_fingerprint(model, x, device)

    def run():
        work = _working_copy(model, device)
        kept = "keep" if batchnorm == "recalibrate" else batchnorm
        if mode == "cascading":
            gen = randomization.cascading(work, order=order, init=init, seed=seed,
                                          groups=groups, batchnorm=kept)
        elif mode == "independent":
            gen = randomization.independent(work, order=order, init=init, seed=seed,
                                            groups=groups, batchnorm=kept)
        else:
            gen = randomization.gaussian_noise(work, std=std, relative=relative, seed=seed,
                                               groups=groups, order=order)
        if batchnorm == "recalibrate":
            inputs = x.to(device)
            gen = ((name, randomization.recalibrate_batchnorm(randomized, inputs))
                   for name, randomized in gen)
        n_steps = len(randomization.randomization_order(work, order=order, groups=groups))
        return run_sweep("model_randomization", work, gen, n_steps, x.to(device), methods,
                         target=target, metrics=metrics, compare_options=compare_options,
                         progress=progress, keep_maps=keep_maps,
                         settings={**settings, "description": _describe_test(settings)},
                         seed=seed, explainer=explainer)

    return _cached_or_run(cache, config, run)


def data_randomization_test(true_model: nn.Module, random_label_model: nn.Module,
                            x: torch.Tensor,
                            methods: Sequence[str] | Mapping[str, Mapping[str, Any] | None]
                            = DEFAULT_METHODS, *,
                            target: str | int | Sequence[int] | torch.Tensor = "argmax",
                            metrics: Sequence[str] = _DEFAULT_METRICS, seed: int = 0,
                            device: str | torch.device | None = None, progress: bool = True,
                            keep_maps: bool = True, cache: bool = False,
                            compare_options: Mapping[str, Any] | None = None,
                            explainer: Callable[..., Mapping[str, torch.Tensor]] | None = None,
                            ) -> SanityCheckResult:
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
    methods, metrics, seed, device, progress, keep_maps, cache, compare_options, explainer
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
    if not isinstance(random_label_model, nn.Module):
        raise TypeError(f"random_label_model must be a torch.nn.Module, got "
                        f"{type(random_label_model).__name__}")
    a = _common_arguments(true_model, x, methods, target, metrics, compare_options, device,
                          seed, progress, keep_maps, cache, explainer)
    _check_runs(random_label_model, a.x)
    x, methods, target, metrics, device = a.x, a.methods, a.target, a.metrics, a.device
    compare_options, seed, explainer = a.compare_options, a.seed, a.explainer

    settings = {
        "test": "data_randomization",
        "model": type(true_model).__name__,
        "model_fingerprint": fingerprint(true_model),
        "random_label_model": type(random_label_model).__name__,
        "random_label_model_fingerprint": fingerprint(random_label_model),
        **a.config,
    }
    settings["methods"] = methods
    config = {**settings, "methods": _jsonable(methods, a.names)}
    if cache:
        config["model_outputs"] = [outputs_fingerprint(m, x, device)
                                   for m in (true_model, random_label_model)]

    def run():
        work = _working_copy(true_model, device)
        steps = [("random labels", _working_copy(random_label_model, device))]
        return run_sweep("data_randomization", work, iter(steps), 1, x.to(device), methods,
                         target=target, metrics=metrics, compare_options=compare_options,
                         progress=progress, keep_maps=keep_maps,
                         settings={**settings, "description": _describe_test(settings)},
                         seed=seed, explainer=explainer)

    return _cached_or_run(cache, config, run)
