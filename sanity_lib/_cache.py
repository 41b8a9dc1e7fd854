"""A small on-disk cache for trained checkpoints and sweep results.

Entries are keyed by a hash of their full configuration, written atomically (a temporary
file renamed into place, so a crash never leaves half a file under the real name) and read
back with ``torch.load(..., weights_only=True)``, which refuses to run pickled code. A file
that was read but does not parse is reported, deleted and treated as missing, so callers
rebuild it instead of crashing or silently using a wrong result; a file that cannot be *read*
(another account's entry, a folder in its place) is reported and left alone, and a cache you
may read but not write still serves what it holds.

:func:`cached` is the one "load or compute" of the library (trained checkpoints, sweeps,
studies), and :func:`fingerprint` the one hash of models and tensors in their keys.

The folder is ``$SANITY_LIB_CACHE`` when set, else ``$XDG_CACHE_HOME/sanity_lib``, else
``~/.cache/sanity_lib``.
"""
import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

ENV_VAR = "SANITY_LIB_CACHE"


def cache_dir() -> Path:
    """The cache folder, created if needed.

    Raises
    ------
    OSError
        When the folder cannot be created or read; the message names the folder and the
        environment variable that moves it. (A folder you can read but not write still
        serves the entries it holds; storing new ones then warns.)

    Examples
    --------
    >>> cache_dir().is_dir()
    True
    """
    if os.environ.get(ENV_VAR):
        folder = Path(os.environ[ENV_VAR]).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "sanity_lib"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot create the sanity_lib cache folder {folder} ({err.strerror}); "
            f"set {ENV_VAR} to a folder you can write to"
        ) from err
    if not os.access(folder, os.R_OK | os.X_OK):
        raise OSError(
            f"the sanity_lib cache folder {folder} cannot be read; "
            f"set {ENV_VAR} to a folder you can read and write"
        )
    return folder


def config_key(config: dict) -> str:
    """A short, stable hash of a JSON-serializable configuration.

    Key order does not matter; any change of a value gives another key.

    Examples
    --------
    >>> config_key({"a": 1, "b": 2}) == config_key({"b": 2, "a": 1})
    True
    >>> config_key({"a": 1}) == config_key({"a": 2})
    False
    """
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(kind: str, config: dict) -> Path:
    """Where the entry of this kind and configuration lives, e.g. ``checkpoints/<key>.pt``.

    The subfolder ``kind`` is created if needed.

    Raises
    ------
    OSError
        When the cache folder or the subfolder cannot be created or written to.

    Examples
    --------
    >>> cache_path("checkpoints", {"a": 1}).name == config_key({"a": 1}) + ".pt"
    True
    """
    folder = cache_dir() / kind
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot create the cache folder {folder} ({err.strerror}); "
            f"set {ENV_VAR} to a folder you can write to"
        ) from err
    return folder / f"{config_key(config)}.pt"


def save_atomic(obj, path: Path) -> None:
    """Save ``obj`` with ``torch.save`` to ``path`` so readers see the whole file or none.

    ``obj`` should hold only tensors, numbers, strings, lists and dicts, so that it loads
    back under ``weights_only=True``.

    Raises
    ------
    OSError
        When the file cannot be written (the message names the folder and ``$SANITY_LIB_CACHE``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as err:
        raise OSError(
            f"cannot write to the cache folder {path.parent} ({err.strerror}); "
            f"set {ENV_VAR} to a folder you can write to"
        ) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file 0600; a shared cache needs its entries readable by the
        # others the umask allows (0644 under the usual umask 022).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _discard(path: Path, why: str) -> None:
    """Delete an entry proven corrupt; if even that is not allowed, say so and go on."""
    try:
        path.unlink(missing_ok=True)
    except OSError as err:
        warnings.warn(f"cache file {path} {why} but cannot be deleted ({err.strerror}); "
                      "it is ignored", RuntimeWarning, stacklevel=3)


def load_cached(path: Path, expected_config: dict | None = None):
    """Load an entry saved by :func:`save_atomic`, or return None when it is missing or bad.

    A file that was read but is truncated, corrupt, or whose stored ``"config"`` differs from
    ``expected_config`` is reported with a warning and deleted, so the caller rebuilds it. A
    file that cannot be read at all (no permission, a folder in its place) is reported and
    left where it is: it may be another user's good entry.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        warnings.warn(f"cache file {path} cannot be read ({err.strerror or err}); leaving it "
                      "in place and computing anew", RuntimeWarning, stacklevel=2)
        return None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        warnings.warn(f"cache file {path} is unreadable ({type(err).__name__}: {err}); "
                      "deleting it and rebuilding", RuntimeWarning, stacklevel=2)
        _discard(path, "is corrupt")
        return None
    if expected_config is not None:
        stored = obj.get("config") if isinstance(obj, dict) else None
        if json.dumps(stored, sort_keys=True, default=str) != json.dumps(
                expected_config, sort_keys=True, default=str):
            warnings.warn(f"cache file {path} holds another configuration; "
                          "deleting it and rebuilding", RuntimeWarning, stacklevel=2)
            _discard(path, "holds another configuration")
            return None
    return obj


def cached(kind: str, config: dict, compute: Callable[[], Any], *,
           dump: Callable[[Any], dict], load: Callable[[dict], Any], enabled: bool = True,
           what: str = "entry"):
    """Load the entry of this kind and configuration, or compute, store and return it.

    The library's one "load or compute". The configuration is the whole key: put every
    input that changes the result in it (use :func:`fingerprint` for models and tensors).

    Parameters
    ----------
    kind : str
        The subfolder, e.g. ``"checkpoints"`` or ``"sweeps"``.
    config : dict
        JSON-friendly; stored with the entry and compared on loading.
    compute : callable
        ``compute()`` makes the value when there is no usable entry.
    dump : callable
        ``dump(value) -> dict`` of tensors, numbers, strings, lists and dicts (what
        ``torch.load(weights_only=True)`` reads back), stored beside ``"config"``.
    load : callable
        ``load(entry) -> value`` from the stored dict; any exception means the entry does not
        fit, which is reported, deleted and recomputed.
    enabled : bool, default True
        False computes without reading or writing the cache.
    what : str
        How messages name the entry ("checkpoint", "sweep").

    Examples
    --------
    >>> value = cached("demo", {"n": 3}, lambda: torch.arange(3), enabled=False,
    ...                dump=lambda v: {"value": v}, load=lambda e: e["value"])
    >>> value.tolist()
    [0, 1, 2]
    """
    if not enabled:
        return compute()
    path = cache_path(kind, config)  # OSError, naming the fix, before any long work
    entry = load_cached(path, expected_config=config)
    if entry is not None:
        try:
            return load(entry)
        except Exception as err:  # any malformed entry: rebuild rather than crash
            warnings.warn(f"cache file {path} holds a {what} that does not fit "
                          f"({type(err).__name__}: {err}); deleting it and computing anew",
                          RuntimeWarning, stacklevel=3)
            _discard(path, "does not fit")
    value = compute()
    try:
        save_atomic({"config": config, **dump(value)}, path)
    except OSError as err:
        warnings.warn(f"could not store the {what} in the cache ({err}); the result is "
                      f"returned but will be computed again next time", RuntimeWarning,
                      stacklevel=3)
    return value


# ----------------------------------------------------------------------------- fingerprints

#: The library code a saliency map depends on (relative to the package folder).
MAP_CODE = ("saliency", "models")
#: ... and a sweep's similarities besides: the randomization, the metrics, the sweep itself.
SWEEP_CODE = MAP_CODE + ("randomization.py", "similarity.py", "checks/sweep.py")


def code_fingerprint(parts=MAP_CODE, root: Path | None = None) -> str:
    """A short SHA-256 of library source files, for the keys of cached results.

    A result stored by older code is then never served to newer code: editing a saliency
    method or a metric computes its sweeps anew, instead of showing yesterday's numbers.

    Parameters
    ----------
    parts : sequence of str, default :data:`MAP_CODE`
        Folders (every ``.py`` file below them) and files, relative to ``root``.
    root : pathlib.Path, optional
        Default: the ``sanity_lib`` package folder.

    Examples
    --------
    >>> code_fingerprint() == code_fingerprint(MAP_CODE)
    True
    >>> code_fingerprint(SWEEP_CODE) != code_fingerprint(MAP_CODE)
    True
    """
    root = Path(__file__).resolve().parent if root is None else Path(root)
    h = hashlib.sha256()
    for part in parts:
        path = root / part
        if not path.exists():
            raise FileNotFoundError(f"code_fingerprint: {path} does not exist")
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            h.update(file.relative_to(root).as_posix().encode())
            h.update(file.read_bytes())
    return h.hexdigest()[:16]


def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def fingerprint(obj) -> str:
    """A short SHA-256 of a model's architecture and ``state_dict``, or of a tensor.

    Two models with the same class, layout (``repr``) and bit-identical parameters and
    buffers get the same fingerprint; changing any weight changes it. Caches key on it so a
    retrained model or edited data never reuses old results.

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
