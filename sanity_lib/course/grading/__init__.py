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
                 **kwargs):
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
        with forbid_library(forbid, task or f"`{name}`"):
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
