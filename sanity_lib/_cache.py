"""A small on-disk cache for trained checkpoints and sweep results.

Entries are keyed by a hash of their full configuration, written atomically (a temporary
file renamed into place, so a crash never leaves half a file under the real name) and read
back with ``torch.load(..., weights_only=True)``, which refuses to run pickled code. A file
that cannot be read back is reported, deleted and treated as missing, so callers rebuild it
instead of crashing or silently using a wrong result.

The folder is ``$SANITY_LIB_CACHE`` when set, else ``$XDG_CACHE_HOME/sanity_lib``, else
``~/.cache/sanity_lib``.
"""
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

ENV_VAR = "SANITY_LIB_CACHE"


def cache_dir() -> Path:
    """The cache folder, created if needed.

    Raises
    ------
    OSError
        When the folder cannot be created or written to; the message names the folder
        and the environment variable that moves it.

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
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(
            f"the sanity_lib cache folder {folder} is not writable; "
            f"set {ENV_VAR} to a folder you can write to"
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cached(path: Path, expected_config: dict | None = None):
    """Load an entry saved by :func:`save_atomic`, or return None when it is missing or bad.

    A file that is truncated, corrupt, or whose stored ``"config"`` differs from
    ``expected_config`` is reported with a warning and deleted, so the caller rebuilds it.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        warnings.warn(f"cache file {path} is unreadable ({type(err).__name__}: {err}); "
                      "deleting it and rebuilding", RuntimeWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None
    if expected_config is not None:
        stored = obj.get("config") if isinstance(obj, dict) else None
        if json.dumps(stored, sort_keys=True, default=str) != json.dumps(
                expected_config, sort_keys=True, default=str):
            warnings.warn(f"cache file {path} holds another configuration; "
                          "deleting it and rebuilding", RuntimeWarning, stacklevel=2)
            path.unlink(missing_ok=True)
            return None
    return obj
