"""What every chapter of the book does first and last: one set-up call, glued numbers.

A chapter starts with ``sl.course.book.setup()`` instead of its own block of imports and
settings, so the eight chapters cannot drift apart, and ends by recording its claims
(:mod:`sanity_lib.course.claims`) and its run time (:func:`elapsed`).

**Warnings are shown, not hidden.** The book is built with ``-W`` and myst-nb turns anything a
cell writes to stderr into a build warning, which is why chapters used to silence every
``UserWarning`` (the library's own :class:`~sanity_lib.saliency.SaliencyWarning` included).
:func:`setup` instead prints the library's warnings into the cell's output, where the reader
sees them, ignores only the third-party messages listed in :data:`QUIET` (each with the reason
it is harmless), and leaves any other warning on stderr, so that a new one fails the build and
is looked at.

Examples
--------
>>> import warnings, torch, pandas as pd
>>> from sanity_lib.similarity import ConstantMapWarning
>>> with warnings.catch_warnings(), pd.option_context("display.precision", 6,
...                                                   "display.float_format", None):
...     _ = setup(threads=torch.get_num_threads())
...     warnings.warn("an all-zero map", ConstantMapWarning)
ConstantMapWarning: an all-zero map
>>> elapsed() >= 0
True
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np

__all__ = ["setup", "elapsed", "glue", "glue_all", "claims_table", "book_methods",
           "interval_text", "explain_cached", "BOOK_IG_SMOOTHGRAD", "QUIET", "LIBRARY_WARNINGS"]

#: IG-SmoothGrad as the book runs it on MNIST: 10 noisy copies, each integrated in 10 steps,
#: 100 gradients per map instead of the paper's 50 x 50 = 2,500 (chapter 3 compares the two).
BOOK_IG_SMOOTHGRAD = {"n_samples": 10, "n_steps": 10}


def book_methods(methods=None) -> dict:
    """The paper's methods with the settings the book's MNIST sweeps use.

    Every method keeps the paper's settings except IG-SmoothGrad, which gets
    :data:`BOOK_IG_SMOOTHGRAD`: at the paper's settings it costs 50 times as many gradients
    as SmoothGrad and would take most of a chapter's build time.

    Parameters
    ----------
    methods : sequence of str, optional
        Which methods (default :data:`sanity_lib.checks.DEFAULT_METHODS`, all eight).

    Returns
    -------
    dict
        ``{method: settings}``, a new dict, ready for ``sl.model_randomization_test`` or
        ``sl.data_randomization_test``.

    Examples
    --------
    >>> book_methods()["integrated_gradients_smoothgrad"]
    {'n_samples': 10, 'n_steps': 10}
    >>> book_methods(["gradient", "smoothgrad"])
    {'gradient': {}, 'smoothgrad': {}}
    """
    from sanity_lib.checks import DEFAULT_METHODS

    names = DEFAULT_METHODS if methods is None else methods
    if isinstance(names, str) or not all(isinstance(m, str) for m in names):
        raise TypeError(f"methods must be a list of method names, got {names!r}")
    return {m: dict(BOOK_IG_SMOOTHGRAD) if m == "integrated_gradients_smoothgrad" else {}
            for m in names}

#: Third-party warnings the book ignores: (message regex, category, why it is harmless).
QUIET = (
    (r".*Setting forward, backward hooks and attributes on non-linear",
     UserWarning, "Captum's notice that it hooks activations; sanity_lib restores them"),
    (r".*Input Tensor \d+ did not already require gradients",
     UserWarning, "Captum turns on requires_grad on a copy of the input itself"),
    (r".*Using a non-full backward hook when the forward contains multiple autograd Nodes",
     UserWarning, "torch's notice about Captum's hooks; the maps are tested against autograd"),
    (r".*Full backward hook will not fire", UserWarning,
     "torch's notice about Captum's hooks on in-place layers"),
    (r".*is deprecated", DeprecationWarning, "deprecations inside dependencies"),
    (r".*TypedStorage is deprecated", UserWarning, "torch's own deprecation notice"),
)

_START = time.perf_counter()


def _library_categories() -> tuple:
    from sanity_lib.saliency import SaliencyWarning
    from sanity_lib.similarity import ConstantMapWarning

    return (SaliencyWarning, ConstantMapWarning)


#: The library's warnings, which :func:`setup` prints into the cell's output.
LIBRARY_WARNINGS = ("SaliencyWarning", "ConstantMapWarning")


def _show(message, category, filename, lineno, file=None, line=None, _previous=None):
    if issubclass(category, _library_categories()):
        print(f"{category.__name__}: {message}", file=sys.stdout)
    else:
        _previous(message, category, filename, lineno, file, line)


def setup(*, threads: int = 2, seed: int = 0, precision: int = 2, dpi: int = 100) -> float:
    """Make a chapter reproducible, light on a shared CPU, and honest about warnings.

    Seeds torch and numpy, sets torch's thread count, pandas' display precision and
    matplotlib's figure resolution, ignores the harmless third-party warnings of
    :data:`QUIET` and prints the library's own warnings into the cell output.

    Parameters
    ----------
    threads : int, default 2
        torch's CPU threads. On an idle 2-core machine 2 threads train the MNIST networks
        1.4-1.9 times and sweep them 1.4 times as fast as 1; use 1 when another heavy job
        shares the cores.
    seed : int, default 0
        Seed of torch's and numpy's global generators (the library seeds its own draws).
    precision : int, default 2
        Decimals pandas shows for floats.
    dpi : int, default 100
        matplotlib's figure resolution.

    Returns
    -------
    float
        The start time (``time.perf_counter()``) that :func:`elapsed` measures from.

    Examples
    --------
    >>> import warnings, torch, pandas as pd
    >>> with warnings.catch_warnings(), pd.option_context("display.precision", 6,
    ...                                                   "display.float_format", None):
    ...     start = setup(threads=torch.get_num_threads(), precision=3)
    ...     pd.get_option("display.precision")
    3
    """
    global _START
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch

    from sanity_lib._validation import check_int

    threads = check_int("threads", threads, minimum=1)
    precision = check_int("precision", precision, minimum=0)
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    pd.set_option("display.precision", precision)
    pd.set_option("display.float_format", f"{{:.{precision}f}}".format)
    plt.rcParams["figure.dpi"] = dpi
    for message, category, _why in QUIET:
        warnings.filterwarnings("ignore", message=message, category=category)
    for category in _library_categories():
        warnings.simplefilter("always", category)
    previous = warnings.showwarning
    previous = getattr(previous, "_previous", previous)

    def show(message, category, filename, lineno, file=None, line=None):
        _show(message, category, filename, lineno, file, line, _previous=previous)

    show._previous = previous
    warnings.showwarning = show
    _START = time.perf_counter()
    return _START


def elapsed() -> float:
    """Seconds since the last :func:`setup` (the chapter's run time, for the report)."""
    return time.perf_counter() - _START


def glue(name: str, value, *, display: bool = False) -> None:
    """``myst_nb.glue`` with numpy and torch scalars turned into Python numbers.

    ``{glue:text}`name:.2f``` formats only Python numbers; a ``numpy.float64`` or a
    one-element tensor would be shown as its ``repr``.

    Examples
    --------
    >>> glue("answer", np.float64(0.5))  # doctest: +SKIP
    """
    from myst_nb import glue as _glue

    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    _glue(name, value, display=display)



def glue_all(values, prefix: str = "") -> dict:
    """Glue every entry of a dict or a pandas Series: one :func:`glue` per number.

    A key that is a tuple (a Series with a MultiIndex) is joined with ``_``, and ``prefix``
    goes in front, so ``glue_all(table.set_index(["noise_std", "method"])["kappa"], "k")``
    glues ``k_0.1_gradient``, ``k_0.1_smoothgrad``, ... for the text to cite as
    ``{glue:text}`k_0.1_gradient:.2f```.

    Parameters
    ----------
    values : dict or pandas.Series
        Name (or tuple of name parts) -> value.
    prefix : str, optional
        Put in front of every name, followed by ``_``.

    Returns
    -------
    dict
        The glued names and values (numpy and torch scalars as Python numbers).

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.Series([0.5, 0.25], index=pd.MultiIndex.from_tuples([(0.1, "a"), (0.3, "a")]))
    >>> glue_all(s, "k")
    {'k_0.1_a': 0.5, 'k_0.3_a': 0.25}
    >>> glue_all({"n": np.int64(3)})
    {'n': 3}
    """
    items = values.items() if hasattr(values, "items") else None
    if items is None:
        raise TypeError(f"values must be a dict or a pandas Series, not {type(values).__name__}")
    out = {}
    for key, value in items:
        parts = key if isinstance(key, tuple) else (key,)
        name = "_".join([prefix] * bool(prefix) + [str(part) for part in parts])
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        glue(name, value)
        out[name] = value
    return out


def interval_text(mean: float, low: float | None = None, high: float | None = None, *,
                  digits: int = 2, signed: bool = False) -> str:
    """A mean and its interval as the book's tables print them: ``"mean [low, high]"``.

    Pass the three numbers (e.g. what :func:`~sanity_lib.checks.statistics.bootstrap_interval`
    or :func:`~sanity_lib.checks.statistics.paired_difference` returns, unpacked), or one
    array of per-image values, whose 95 % bootstrap interval is computed here.

    Examples
    --------
    >>> interval_text(0.5, 0.25, 0.75)
    '0.50 [0.25, 0.75]'
    >>> interval_text([0.2, 0.2, 0.2])
    '0.20 [0.20, 0.20]'
    >>> interval_text(0.1, -0.05, 0.25, signed=True)      # a paired difference
    '+0.10 [-0.05, +0.25]'
    """
    if low is None and high is None:
        from sanity_lib.checks.statistics import bootstrap_interval

        mean, low, high = bootstrap_interval(mean)
    elif low is None or high is None:
        raise ValueError("pass the mean with both ends of its interval, or one array of "
                         "values, not a mean with one end")
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"{mean:{spec}} [{low:{spec}}, {high:{spec}}]"


def _setting_key(name, value):
    """A JSON-friendly stand-in for one explain() setting, or a TypeError naming it."""
    import torch

    from sanity_lib._cache import fingerprint

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (torch.Tensor, torch.nn.Module)):
        return f"{type(value).__name__}:{fingerprint(value)}"
    if isinstance(value, (list, tuple)) and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    raise TypeError(f"explain_cached cannot store maps computed with {name}={value!r} (a "
                    f"{type(value).__name__}); call sl.saliency.explain directly")


def explain_cached(model, x, method: str, **settings):
    """:func:`sanity_lib.saliency.explain`, stored on disk: the maps, and the seconds they took.

    For the book's costly maps of a fixed network (Integrated Gradients with 128 steps on
    EfficientNet-Lite0, say): a rebuild loads them instead of computing them again. The key
    holds the fingerprints of the model's weights and of the inputs, the method, every
    setting (tensors by fingerprint), the torch version and a hash of the library's map code,
    so a change to any of them computes anew; the entry is written atomically and read back
    safely, like the library's checkpoints and sweeps (``sanity_lib._cache``).

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor
        N x C x H x W inputs.
    method : str
        A name of :data:`sanity_lib.saliency.METHODS`.
    **settings
        Passed on to :func:`sanity_lib.saliency.explain`: numbers, strings, None, tensors
        (``target=``, ``baseline=``) or modules (``layer=``).

    Returns
    -------
    (torch.Tensor, float)
        The maps, and how many seconds :func:`~sanity_lib.saliency.explain` took when they
        were computed (on the machine that filled the cache).

    Raises
    ------
    TypeError
        When ``model`` is not a module, ``x`` not a tensor, or a setting cannot be keyed.

    Examples
    --------
    >>> import torch
    >>> from sanity_lib.models import mnist_cnn
    >>> x = torch.linspace(0, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)   # fixed: one stored entry
    >>> maps, seconds = explain_cached(mnist_cnn(seed=0), x, "gradient")
    >>> tuple(maps.shape), seconds >= 0
    ((2, 1, 28, 28), True)
    """
    import torch

    from sanity_lib import saliency
    from sanity_lib._cache import cached, code_fingerprint, fingerprint

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of inputs, got {type(x).__name__}")
    config = {"kind": "explain", "method": method, "model": fingerprint(model),
              "inputs": fingerprint(x), "torch": str(torch.__version__),
              "code": code_fingerprint(),
              "settings": {k: _setting_key(k, v) for k, v in sorted(settings.items())}}

    def compute():
        start = time.perf_counter()
        maps = saliency.explain(model, x, method, **settings)
        return maps, time.perf_counter() - start

    return cached("maps", config, compute, what="map",
                  dump=lambda value: {"maps": value[0].detach().cpu(), "seconds": value[1]},
                  load=lambda entry: (entry["maps"], float(entry["seconds"])))


def claims_table(claims):
    """The chapter's "paper vs measured" table, for the reader: one row per claim.

    Parameters
    ----------
    claims : list of :class:`sanity_lib.course.ledger.Claim`
        What a chapter's ledger module returned (``sl.course.ledger.ch1.claims(measured)``).

    Returns
    -------
    pandas.io.formats.style.Styler
        Indexed by the claim, with the columns ``paper``, ``source``, ``we measure`` and
        ``verdict`` ("agrees", "partly" or "differs"), text left-aligned.

    Examples
    --------
    >>> from sanity_lib.course.ledger import Claim
    >>> table = claims_table([Claim("GBP survives", paper="similar maps", source="Fig. 2",
    ...                             measured="0.93", agrees=False)])
    >>> table.data.loc["GBP survives", ["source", "verdict"]].tolist()
    ['Fig. 2', 'differs']
    """
    import pandas as pd

    rows = [{"paper": c.paper, "source": c.source, "we measure": c.measured,
             "verdict": c.verdict} for c in claims]
    table = pd.DataFrame(rows, index=pd.Index([c.claim for c in claims], name="claim"),
                         columns=["paper", "source", "we measure", "verdict"])
    return table.style.set_properties(**{"text-align": "left"})
