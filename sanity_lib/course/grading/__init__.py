"""Checks for the exercise notebooks: plain-words feedback instead of a bare ``AssertionError``.

Each exercise ends with ``sl.grading.check("ch2_ex1", answer)``. A check accepts every correct
answer (it compares with tolerances or with properties, never with one exact float) and, when
the answer is wrong, says what is wrong and gives a hint. Checks live in one module per chapter
(``sanity_lib/course/grading/ch1.py`` ...), registered with :func:`register`.

Examples
--------
>>> from sanity_lib import grading
>>> @grading.register("demo_ex1")
... def _check(answer):
...     grading.expect(answer == 4, "2 + 2 should be 4.", hint="Add the two numbers.")
>>> grading.check("demo_ex1", 4)
'demo_ex1: correct. Well done!'
"""
import difflib
import importlib
import pkgutil

_CHECKS = {}


class CheckFailed(AssertionError):
    """Raised by a check when the answer is wrong; the message says why, with a hint."""


class Unanswered:
    """Stands in for a value the student has not written yet.

    Any use of it (arithmetic, indexing, attribute access, conversion, printing)
    raises ``NotImplementedError`` naming the exercise, so a student notebook fails with
    "fill this in" rather than a confusing ``NameError`` further down.
    """

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _fail(self, *args, **kwargs):
        raise NotImplementedError(
            f"`{object.__getattribute__(self, '_name')}` is not filled in yet: "
            "write your answer in the cell that defines it.")

    __getattr__ = __call__ = __getitem__ = __iter__ = __len__ = __bool__ = _fail
    __float__ = __int__ = __index__ = __array__ = __repr__ = __str__ = __format__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __rtruediv__ = __matmul__ = __rmatmul__ = __pow__ = __neg__ = __abs__ = _fail
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = __hash__ = _fail


def register(exercise_id: str):
    """Decorator: register ``func(answer, **context)`` as the check of ``exercise_id``."""
    def decorator(func):
        if exercise_id in _CHECKS:
            raise ValueError(f"a check for {exercise_id!r} is already registered")
        _CHECKS[exercise_id] = func
        return func
    return decorator


def as_array(value, what: str, hint: str = "return the result of your computation"):
    """A student's answer (tensor, array, list of numbers) as a float64 numpy array.

    Raises :class:`CheckFailed` naming ``what`` when the answer is not numbers (None, strings).

    Examples
    --------
    >>> import torch
    >>> as_array(torch.tensor([1, 2]), "your map").dtype
    dtype('float64')
    """
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    try:
        if isinstance(value, (str, bytes)) or value is None:   # np.asarray("0.5") is 0.5
            raise TypeError
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a torch tensor or a numpy array of numbers, got "
                          f"{type(value).__name__}.\nHint: {hint}.") from None


def expect(condition, message: str, hint: str | None = None) -> None:
    """Fail the current check with ``message`` (and ``hint``) unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message + (f"\nHint: {hint}" if hint else ""))


def method_name(item, available=None) -> str:
    """The canonical method name for what a student wrote (a name, a label or an alias).

    Names are read through the method registry (:func:`sanity_lib.saliency.lookup`), so every
    check accepts the same spellings: ``"IG"``, ``"Guided Backprop"``, ``"grad-cam"``.

    Parameters
    ----------
    item : str
    available : sequence of str, optional
        The methods the student's result holds; a name outside it is refused.

    Examples
    --------
    >>> method_name("Gradient ⊙ Input")
    'gradient_x_input'
    >>> method_name("gbp", available=["gradient"])
    Traceback (most recent call last):
    ...
    sanity_lib.course.grading.CheckFailed: guided_backprop is not among the methods of your result (['gradient']).
    Hint: Name methods that the test ran.
    """
    from sanity_lib import saliency

    if available is not None:
        available = list(available)
        hint = f"Use the names of `result.methods`: {available}."
    else:
        hint = f"Use one of {', '.join(saliency.METHODS)}."
    expect(isinstance(item, str), f"{item!r} is not a method name (a str).", hint=hint)
    name = saliency.lookup(item)
    expect(name is not None, f"{item!r} is not a method name I know.", hint=hint)
    if available is not None:
        expect(name in available, f"{name} is not among the methods of your result "
               f"({available}).", hint="Name methods that the test ran.")
    return name


def method_names(answer, available=None, example='similar = ["guided_backprop"]') -> set:
    """The set of canonical names in a student's list of methods (or one name).

    Examples
    --------
    >>> sorted(method_names(["SmoothGrad", "ig"]))
    ['integrated_gradients', 'smoothgrad']
    """
    if isinstance(answer, str):
        answer = [answer]
    try:
        items = list(answer)
    except TypeError:
        raise CheckFailed(f"The answer should be a list of method names, got "
                          f"{type(answer).__name__}.\nHint: e.g. `{example}`.") from None
    return {method_name(item, available) for item in items}


# ----------------------------------------------------------------------------- calling answers

def _forbidden_prefixes(modules):
    """``(prefix, module name)`` of the source files of ``modules`` (packages: their folder)."""
    import os
    import sys

    found = []
    for name in modules:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
        file = getattr(module, "__file__", None)
        if not file:
            continue
        if os.path.basename(file) == "__init__.py":
            found.append((os.path.dirname(file) + os.sep, name))
        else:
            found.append((file, name))
    return found


class forbid_library:  # noqa: N801 (used as a context manager, like contextlib's)
    """Context manager: fail the check if the code inside calls into one of ``modules``.

    An exercise that asks the student to *write* something (Integrated Gradients, a Sobel
    filter, an entropy) is not passed by calling the library that already does it. While the
    context is active, every call of a Python function defined in one of ``modules``
    (packages include their submodules, however the function was imported) is noted; on
    leaving the context, the first one fails the check with a message naming it. The check's
    own reference computation runs outside the context.

    Parameters
    ----------
    modules : sequence of str
        Module or package names, e.g. ``("captum", "sanity_lib.saliency")``.
    task : str
        What the exercise asks the student to write, for the message.
    hint : str, optional

    Examples
    --------
    >>> import statistics
    >>> with forbid_library(["statistics"], task="the mean"):
    ...     _ = sum([1.0, 2.0]) / 2
    >>> with forbid_library(["statistics"], task="the mean"):
    ...     _ = statistics.mean([1.0, 2.0])
    Traceback (most recent call last):
    ...
    sanity_lib.course.grading.CheckFailed: Your answer calls statistics.mean: the exercise asks you to write the mean yourself.
    Hint: Compute it with the operations the exercise names; the library is what the check compares with.
    """

    def __init__(self, modules, task: str, hint: str | None = None):
        self.prefixes = tuple(_forbidden_prefixes(modules))
        self.task = task
        self.hint = hint or ("Compute it with the operations the exercise names; the library "
                             "is what the check compares with.")
        self.called = None

    def _hook(self, frame, event, arg):
        import os

        if event != "call" or self.called is not None:
            return
        code = frame.f_code
        if code.co_name == "<module>":       # importing a module is not calling it
            return
        for prefix, name in self.prefixes:
            if code.co_filename.startswith(prefix):
                inner = code.co_filename[len(prefix):].removesuffix(".py")
                parts = [p for p in inner.split(os.sep) if p and p != "__init__"]
                self.called = ".".join([name, *parts,
                                        getattr(code, "co_qualname", code.co_name)])
                return

    def __enter__(self):
        import sys

        self._previous = sys.getprofile()
        if self.prefixes:
            sys.setprofile(self._hook)
        return self

    def __exit__(self, kind, value, traceback):
        import sys

        sys.setprofile(self._previous)
        if self.called is not None and (kind is None or issubclass(kind, Exception)):
            raise CheckFailed(f"Your answer calls {self.called}: the exercise "
                              f"asks you to write {self.task} yourself.\nHint: {self.hint}")
        return False


def _snapshot(value):
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.nn.Module):
        return {k: v.detach().clone() for k, v in value.state_dict().items()}
    return None


def _unchanged(value, before) -> bool:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value.shape == before.shape and bool(torch.equal(value.detach(), before))
    if isinstance(value, np.ndarray):
        return value.shape == before.shape and np.array_equal(value, before, equal_nan=True)
    after = value.state_dict()
    return set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def call_student(fn, *args, name: str, usage: str, on: str = "", forbid=(), task: str = "",
                 forbid_hint: str | None = None, **kwargs):
    """Call a student's function ``fn(*args, **kwargs)`` and return what it returns.

    Everything a check needs around the call, in one place: ``fn`` must be a function that
    accepts these arguments (else the message shows ``usage``, the signature the exercise
    asks for); an exception inside it becomes a :class:`CheckFailed` that names it (a stub's
    ``NotImplementedError`` passes through); tensors, arrays and models among the arguments
    must come back unchanged; with ``forbid``, calling those libraries fails the check
    (:class:`forbid_library`).

    Parameters
    ----------
    fn : callable
        The student's answer.
    *args, **kwargs
        What the check calls it with.
    name : str
        The function's name in the exercise, e.g. ``"integrated_gradients"``.
    usage : str
        The signature the exercise asks for, e.g. ``"integrated_gradients(model, x, "
        "baseline, n_steps)"``.
    on : str, optional
        What the inputs are, for messages ("on a linear model").
    forbid : sequence of str, optional
        Modules the function must not call.
    task : str, optional
        What the exercise asks to write, for the message when ``forbid`` is hit.
    forbid_hint : str, optional
        The hint of that message.

    Examples
    --------
    >>> call_student(lambda a, b: a + b, 1, 2, name="add", usage="add(a, b)")
    3
    >>> call_student(lambda a: a, 1, 2, name="add", usage="add(a, b)")
    Traceback (most recent call last):
    ...
    sanity_lib.course.grading.CheckFailed: Your `add` cannot be called as add(a, b): too many positional arguments.
    Hint: Define it as `def add(a, b):`.
    """
    import inspect

    where = f" {on}" if on else ""
    expect(callable(fn) and not isinstance(fn, type),
           f"The answer should be your function `{name}` itself, got {type(fn).__name__}.",
           hint=f"Pass the function without calling it: `{name}`, not `{name}(...)`.")
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as err:
        raise CheckFailed(f"Your `{name}` cannot be called as {usage}: {err}.\n"
                          f"Hint: Define it as `def {usage}:`.") from None
    except ValueError:      # no signature to read (a builtin): just call it
        pass
    try:
        names = list(inspect.signature(fn).bind(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        names = [f"argument {i + 1}" for i in range(len(args))] + list(kwargs)
    values = list(args) + list(kwargs.values())
    before = [_snapshot(v) for v in values]
    try:
        with forbid_library(forbid, task or f"`{name}`", forbid_hint):
            out = fn(*args, **kwargs)
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as err:  # noqa: BLE001 (any error of the student's code is reported)
        raise CheckFailed(f"Your `{name}` raised {type(err).__name__}{where}: {err}\n"
                          f"Hint: Run it yourself on the exercise's example; it is called as "
                          f"{usage}.") from None
    for arg, value, old in zip(names, values, before):
        if old is not None and not _unchanged(value, old):
            raise CheckFailed(f"Your `{name}` changed its argument `{arg}` in place{where}; "
                              "the caller's data must come back as it was.\nHint: Work on new "
                              "tensors (x + ..., x.clone(), copy.deepcopy(model)) instead of "
                              "in-place operations such as x += ..., x.sub_(...).")
    return out


class forbid_calls(forbid_library):  # noqa: N801 (a context manager, like forbid_library)
    """Context manager: fail the check if the code inside calls one of these functions, or
    computes one of these saliency methods through :mod:`sanity_lib.saliency`.

    :class:`forbid_library` forbids whole modules; an exercise often allows part of a
    library and forbids one thing in it (write Gradient ⊙ Input *from* ``explain(...,
    "gradient")``; rank pixels with ``scipy.stats.rankdata`` but do not call
    ``scipy.stats.spearmanr``). A function is recognised by its code object, so it is caught
    however it was imported; a method is caught at ``explain``, ``explain_each`` and
    ``explain_all`` under any of its names, labels or aliases, and at its registry plan.

    Parameters
    ----------
    task : str
        What the exercise asks the student to write, for the message.
    functions : sequence of callables, optional
        Python functions (or methods) that must not be called.
    methods : sequence of str, optional
        Saliency methods that must not be computed by the library.
    modules : sequence of str, optional
        Modules that must not be called at all (as :class:`forbid_library`).
    hint : str, optional

    Examples
    --------
    >>> import statistics
    >>> with forbid_calls("the median", functions=[statistics.median]):
    ...     _ = statistics.mean([1.0, 2.0])
    >>> with forbid_calls("the median", functions=[statistics.median]):
    ...     _ = statistics.median([1.0, 2.0])
    Traceback (most recent call last):
    ...
    sanity_lib.course.grading.CheckFailed: Your answer calls statistics.median: the exercise asks you to write the median yourself.
    Hint: Compute it with the operations the exercise names; the library is what the check compares with.
    """

    def __init__(self, task: str, *, functions=(), methods=(), modules=(), hint=None):
        import inspect

        super().__init__(modules, task, hint)
        self.codes = {}
        for fn in functions:
            fn = inspect.unwrap(getattr(fn, "__func__", fn))
            code = getattr(fn, "__code__", None)
            if code is not None:
                self.codes[code] = f"{fn.__module__}.{fn.__qualname__}"
        self.methods, self.entries = set(), {}
        if methods:
            from sanity_lib import saliency

            self.methods = {saliency.lookup(m) or m for m in methods}
            for entry, arg in ((saliency.explain, "method"), (saliency.explain_each, "methods"),
                               (saliency.explain_all, "methods")):
                self.entries[inspect.unwrap(entry).__code__] = (entry.__name__, arg)
            for m in self.methods:
                plan = getattr(saliency.REGISTRY.get(m), "plan", None)
                if plan is not None and hasattr(plan, "__code__"):
                    self.codes.setdefault(plan.__code__, f"sanity_lib.saliency.explain(..., {m!r})")

    def _hook(self, frame, event, arg):
        if event != "call" or self.called is not None:
            return
        code = frame.f_code
        if code in self.codes:
            self.called = self.codes[code]
            return
        if code in self.entries:
            from sanity_lib import saliency

            entry, arg_name = self.entries[code]
            value = frame.f_locals.get(arg_name)
            names = [value] if isinstance(value, str) else list(value or ())
            for name in names:
                if isinstance(name, str) and saliency.lookup(name) in self.methods:
                    self.called = f"sanity_lib.saliency.{entry}(..., {name!r})"
                    return
            return
        super()._hook(frame, event, arg)

    def __enter__(self):
        import sys

        self._previous = sys.getprofile()
        if self.prefixes or self.codes or self.entries:
            sys.setprofile(self._hook)
        return self


def describe(value) -> str:
    """What a value is, in plain words, for a message ("None", "a str", "a tensor of shape
    (2, 3)", "a function").

    Examples
    --------
    >>> import torch
    >>> describe(None), describe("abc"), describe(torch.zeros(2, 3)), describe(len)
    ('None', "a str ('abc')", 'a tensor of shape (2, 3)', 'a function (len)')
    """
    import numpy as np
    import torch

    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, str):
        text = value if len(value) <= 30 else value[:27] + "..."
        return f"a str ({text!r})"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    if callable(value):
        return f"a function ({getattr(value, '__name__', type(value).__name__)})"
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _setting_text(value):
    return repr(value) if isinstance(value, str) else str(value)


def check_result(result, *, test: str, what: str, mode=None, methods=(), metrics=(),
                 settings=None, method_settings=None, models=None, min_images: int = 1,
                 name: str = "result"):
    """Refuse a result passed as context that cannot answer the exercise, saying why.

    A check that reads its verdict off the student's :class:`~sanity_lib.checks.
    SanityCheckResult` first makes sure the result is the one the exercise asks for: the
    right test and mode, every method and metric it names, the settings it asks for, the
    models it was computed on.

    Parameters
    ----------
    result
        What the student passed as ``result=``.
    test : {"model_randomization", "data_randomization"}
    what : str
        The call the exercise asks for, for the hints (``"sl.model_randomization_test(cnn,
        x, ...)"``).
    mode : str, optional
        The randomization mode (``"cascading"``).
    methods, metrics : sequence of str, optional
        Those the result must hold (methods by any registry spelling).
    settings : dict, optional
        ``{key: value}`` the result's settings must have (``{"init": "truncated_normal"}``).
    method_settings : dict, optional
        ``{method: {setting: value}}`` each method must have been computed with (its
        defaults count: ``{"smoothgrad": {"n_samples": 50}}``).
    models : dict, optional
        ``{settings key: model}``: the result must have been computed on these models
        (``{"model_fingerprint": cnn}``), compared by fingerprint.
    min_images : int, optional
        The fewest images the result must average over.
    name : str, optional
        The keyword the result was passed under (``"top_down"``), for the messages.

    Returns
    -------
    SanityCheckResult
        ``result`` itself.
    """
    from sanity_lib import saliency
    from sanity_lib._cache import fingerprint
    from sanity_lib.checks import SanityCheckResult

    again = f"Run it as the exercise says, `{what}`, and pass that result as {name}=..."
    expect(isinstance(result, SanityCheckResult),
           f"This check needs the result you computed, passed as {name}=...; got "
           f"{describe(result)}.", hint=again)
    given = result.settings
    expect(given.get("test") == test,
           f"The result passed as {name}= comes from the {given.get('test')!r} test; this "
           f"exercise is about the {test!r} test.", hint=again)
    if mode is not None:
        expect(given.get("mode") == mode,
               f"The result passed as {name}= used mode={given.get('mode')!r}; the exercise "
               f"asks for mode={mode!r}.", hint=again)
    for key, value in (settings or {}).items():
        expect(given.get(key) == value,
               f"The result passed as {name}= was computed with {key}="
               f"{_setting_text(given.get(key))}; the exercise asks for {key}="
               f"{_setting_text(value)}.", hint=again)
    have = list(result.methods)
    missing = [m for m in (saliency.lookup(m) or m for m in methods) if m not in have]
    expect(not missing, f"The result passed as {name}= has no maps of {missing} (it holds "
           f"{have}); the exercise asks about all of {list(methods)}.", hint=again)
    for m, wanted in (method_settings or {}).items():
        m = saliency.lookup(m) or m
        used = {**saliency.DEFAULT_SETTINGS.get(m, {}),
                **dict((given.get("methods") or {}).get(m) or {})}
        for key, value in wanted.items():
            expect(used.get(key) == value,
                   f"The {m} maps of your result were computed with {key}="
                   f"{_setting_text(used.get(key))}; the exercise asks for {key}="
                   f"{_setting_text(value)}.", hint=again)
    missing = [m for m in metrics if m not in result.metrics]
    expect(not missing, f"The result passed as {name}= has no {missing} values (it holds "
           f"{list(result.metrics)}).", hint="Run the test with its default metrics (all four).")
    n_images = len(result.table["image"].unique()) if len(result.table) else 0
    expect(n_images >= min_images,
           f"The result passed as {name}= holds {n_images} image(s); the exercise averages "
           f"over at least {min_images}.", hint=again)
    for key, model in (models or {}).items():
        expect(given.get(key) == fingerprint(model),
               f"The result passed as {name}= was not computed on the model you passed "
               f"(its {key.replace('_fingerprint', '').replace('_', ' ')} differs).",
               hint="Pass the same model objects you gave the test, and run the test again "
                    "if you retrained or changed them.")
    return result


def mnist_test_labels(result, *, what: str, name: str = "result", min_per_class: int = 1,
                      atol: float = 1e-4):
    """The true labels of the MNIST test digits a result was computed on, found by value.

    A check that needs to know whether the student's result explains the *trained* network
    compares the classes the result's model predicted (``result.targets``) with these. Every
    input must be one of the embedded test digits (:func:`sanity_lib.data.load_mnist`, as the
    MNIST models read them: their preprocessing is the identity), and every class must come
    at least ``min_per_class`` times; otherwise the check fails saying so.

    Parameters
    ----------
    result : SanityCheckResult
        Already validated with :func:`check_result`.
    what : str
        The call the exercise asks for, for the hints.
    name : str, optional
        The keyword the result was passed under.
    min_per_class : int, optional
    atol : float, optional
        Largest pixel difference between an input and the test digit it is taken for.

    Returns
    -------
    torch.Tensor
        One label per input image, in the result's order.
    """
    import torch

    from sanity_lib import data

    again = f"Run it as the exercise says, `{what}`, and pass that result as {name}=..."
    inputs = getattr(result, "inputs", None)
    expect(isinstance(inputs, torch.Tensor) and inputs.dim() == 4
           and tuple(inputs.shape[1:]) == (1, 28, 28),
           f"The result passed as {name}= does not hold the MNIST digits it explained "
           f"(its inputs are {describe(inputs)}).", hint=again)
    digits, labels = data.load_mnist("test")
    flat = inputs.detach().to("cpu", torch.float32).flatten(1)
    distance, index = torch.cdist(flat, digits.to(torch.float32).flatten(1),
                                  compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
    known = distance <= atol * flat.shape[1] ** 0.5
    expect(bool(known.all()),
           f"{int((~known).sum())} of the {len(flat)} images of the result passed as {name}= "
           "are not MNIST test digits as the network reads them (not from "
           "`sl.data.load_mnist(\"test\")`, or changed on the way).", hint=again)
    found = labels[index]
    counts = torch.bincount(found, minlength=10)
    expect(bool((counts >= min_per_class).all()),
           f"The result passed as {name}= has {counts.tolist()} digits per class (0 to 9); the "
           f"exercise takes at least {min_per_class} of every class.", hint=again)
    return found


#: A network trained on MNIST's true labels classifies about 99 % of the test digits right, an
#: untrained or random-label one about 10 %: below this the result's model is not trained.
TRAINED_ACCURACY = 0.8


def check_trained_mnist(result, *, what: str, kind: str = "cnn", name: str = "result",
                        min_per_class: int = 0) -> None:
    """Refuse a result whose model is not a network trained on MNIST's true labels.

    The result's first row of targets holds what its (trained) model predicted for each
    input (``target="argmax"``); those predictions must match the true labels of the test
    digits (:func:`mnist_test_labels`) at least :data:`TRAINED_ACCURACY` of the time. An
    untrained, a random-label or a fully randomized network fails, whatever its maps say.

    Parameters
    ----------
    result : SanityCheckResult
        Already validated with :func:`check_result`.
    what : str
        The call the exercise asks for, for the hints.
    kind : {"cnn", "mlp"}
        Which network the exercise uses, for the hint.
    name : str, optional
        The keyword the result was passed under.
    min_per_class : int, optional
        Passed to :func:`mnist_test_labels`.

    Examples
    --------
    >>> check_trained_mnist(result, what="sl.model_randomization_test(cnn, x)")  # doctest: +SKIP
    """
    import torch

    labels = mnist_test_labels(result, what=what, name=name, min_per_class=min_per_class)
    target = result.settings.get("target", "argmax")
    targets = result.targets
    expect(isinstance(target, str) and isinstance(targets, torch.Tensor) and targets.dim() == 2
           and targets.shape[1] == len(labels),
           f"The result passed as {name}= was run with target={target!r}: it does not record "
           "what the network predicted, so I cannot tell the trained network from another.",
           hint=f"Leave `target` at its default: `{what}`.")
    right = (targets[0].long() == labels).double()
    accuracy = right.mean().item()
    expect(accuracy >= TRAINED_ACCURACY,
           f"The network of the result passed as {name}= classifies "
           f"{int(right.sum())} of its {len(labels)} digit(s) correctly ({accuracy:.0%}): it is "
           f"not the {kind.upper()} trained on the true labels (an untrained, a random-label "
           "or a randomized network?). The exercise is about the maps of the *trained* model.",
           hint=f'Load it with `{kind}, _ = sl.training.trained_mnist_model("{kind}", "true")` '
                "and run the test on it.")


def _load_all_checks() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def exercise_ids() -> list:
    """All exercise ids that have a check, sorted."""
    _load_all_checks()
    return sorted(_CHECKS)


def check(exercise_id: str, answer, **context) -> str:
    """Check a student's answer; return a short success message or raise :class:`CheckFailed`.

    Parameters
    ----------
    exercise_id : str
        The id printed in the exercise, e.g. ``"ch2_ex1"``.
    answer
        What the exercise asks for: a function, a tensor, a number or a string.
    **context
        Extra inputs some checks need (e.g. the model the student used).

    Raises
    ------
    NotImplementedError
        When ``answer`` (or a function it calls) is still a stub.
    CheckFailed
        When the answer is wrong; the message says what is wrong and gives a hint.
    """
    _load_all_checks()
    if exercise_id not in _CHECKS:
        close = difflib.get_close_matches(exercise_id, _CHECKS, n=3)
        raise ValueError(f"unknown exercise id {exercise_id!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    if isinstance(answer, Unanswered):
        answer._fail()
    _CHECKS[exercise_id](answer, **context)
    return f"{exercise_id}: correct. Well done!"
