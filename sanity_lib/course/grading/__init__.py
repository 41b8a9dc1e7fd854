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
