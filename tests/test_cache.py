"""Tests for the checkpoint cache: sanity_lib._cache and trained_mnist_model's use of it.

Every test points SANITY_LIB_CACHE at its own temporary folder and trains tiny
configurations (64 digits, one epoch), so the real cache is never touched.
"""
import os

import pytest
import torch

import sanity_lib.data
from sanity_lib.models import mnist_cnn
from sanity_lib import _cache, training
from sanity_lib.training import TrainingHistory, trained_mnist_model

SMALL = dict(arch="mlp", labels="true", n_train=64, epochs=1, batch_size=32, progress=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SANITY_LIB_CACHE", str(folder))
    return folder


@pytest.fixture
def train_calls(monkeypatch):
    """Counts the calls of training.train (the real one still runs)."""
    calls = []
    real = training.train

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train", counting)
    return calls


def _checkpoints(folder):
    return sorted((folder / "checkpoints").glob("*.pt"))


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- hits and keys


def test_second_call_loads_the_checkpoint_without_training(cache, train_calls, monkeypatch):
    first, history = trained_mnist_model(**SMALL)
    assert len(train_calls) == 1 and len(_checkpoints(cache)) == 1
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained again"))
    second, cached_history = trained_mnist_model(**SMALL)
    assert _same_weights(first, second)
    assert cached_history.to_dict() == history.to_dict()
    assert not second.training


def test_checkpoint_file_holds_config_weights_and_plain_history(cache, train_calls):
    model, history = trained_mnist_model(**SMALL)
    (path,) = _checkpoints(cache)
    entry = torch.load(path, weights_only=True)
    assert entry["config"]["arch"] == "mlp" and entry["config"]["n_train"] == 64
    assert path.stem == _cache.config_key(entry["config"])
    assert all(isinstance(v, list) for k, v in entry["history"].items()
               if k not in ("permutation", "seconds"))
    assert torch.equal(entry["state_dict"]["fc1.weight"], model.fc1.weight)


@pytest.fixture
def fake_train(monkeypatch):
    """Replaces training by a no-op that records its calls: for tests of the keys only."""
    calls = []

    def no_training(model, images, labels, **kwargs):
        calls.append({**kwargs, "n_train": len(images)})
        return TrainingHistory([1.0], [0.5], [0.5], None, 0.0)

    monkeypatch.setattr(training, "train", no_training)
    return calls


CHANGES = [
    dict(epochs=2), dict(batch_size=16), dict(lr=2e-3), dict(optimizer="sgd"),
    dict(schedule="constant"), dict(augment="shift"), dict(label_smoothing=0.05),
    dict(target_accuracy=0.9), dict(seed=1), dict(activation="tanh"), dict(labels="random"),
    dict(n_train=80),
    dict(arch="cnn"),
]


def test_any_config_change_trains_a_new_entry(cache, fake_train):
    trained_mnist_model(**SMALL)
    for number, change in enumerate(CHANGES, start=2):
        trained_mnist_model(**{**SMALL, **change})
        assert len(fake_train) == number, change
        assert len(_checkpoints(cache)) == number, change
        # ...and the setting really reached the training:
        for key, value in change.items():
            if key in fake_train[-1]:
                assert fake_train[-1][key] == value
    for change in CHANGES:  # every new entry is then a hit
        trained_mnist_model(**{**SMALL, **change})
    assert len(fake_train) == len(CHANGES) + 1


def test_new_recipe_version_trains_a_new_entry(cache, fake_train, monkeypatch):
    trained_mnist_model(**SMALL)
    monkeypatch.setattr(training, "RECIPE_VERSION", "a-newer-recipe")
    trained_mnist_model(**SMALL)
    assert len(fake_train) == 2 and len(_checkpoints(cache)) == 2


def test_changed_training_data_trains_a_new_entry(cache, fake_train, monkeypatch):
    trained_mnist_model(**SMALL)
    real = sanity_lib.data.load_mnist

    def edited(split="train", **kwargs):
        images, labels = real(split, **kwargs)
        if split == "train":
            first = training._subset_indices(len(labels), SMALL["n_train"])[0]
            images[first, 0, 14, 14] += 0.5  # one pixel of one training digit changed
        return images, labels

    monkeypatch.setattr(sanity_lib.data, "load_mnist", edited)
    trained_mnist_model(**SMALL)
    assert len(fake_train) == 2 and len(_checkpoints(cache)) == 2


def test_cache_false_neither_reads_nor_writes(cache, fake_train):
    trained_mnist_model(**SMALL, cache=False)
    assert not _checkpoints(cache)
    trained_mnist_model(**SMALL)
    trained_mnist_model(**SMALL, cache=False)
    assert len(fake_train) == 3 and len(_checkpoints(cache)) == 1


# ---------------------------------------------------------------- damaged entries


def _damage_and_reload(cache, damage, match):
    fresh, fresh_history = trained_mnist_model(**SMALL)
    (path,) = _checkpoints(cache)
    damage(path)
    with pytest.warns(RuntimeWarning, match=match):
        model, history = trained_mnist_model(**SMALL)
    # Retrained, and the deterministic retraining equals the first training.
    assert _same_weights(model, fresh)
    assert history.train_loss == fresh_history.train_loss
    return path


def test_truncated_file_is_reported_and_retrained(cache, train_calls):
    def truncate(path):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    path = _damage_and_reload(cache, truncate, "unreadable")
    assert len(train_calls) == 2
    torch.load(path, weights_only=True)  # rewritten whole
    trained_mnist_model(**SMALL)
    assert len(train_calls) == 2


def test_garbage_file_is_reported_and_retrained(cache, train_calls):
    _damage_and_reload(cache, lambda path: path.write_bytes(b"not a checkpoint\x00" * 50),
                       "unreadable")
    assert len(train_calls) == 2


def test_checkpoint_with_wrong_shapes_is_rejected(cache, train_calls):
    def reshape(path):
        entry = torch.load(path, weights_only=True)
        entry["state_dict"]["fc2.weight"] = torch.zeros(1500, 2499)
        _cache.save_atomic(entry, path)

    _damage_and_reload(cache, reshape, r"does not fit.*fc2\.weight")
    assert len(train_calls) == 2


def test_checkpoint_with_wrong_keys_is_rejected(cache, train_calls):
    def other_model(path):
        entry = torch.load(path, weights_only=True)
        entry["state_dict"] = mnist_cnn().state_dict()
        _cache.save_atomic(entry, path)

    _damage_and_reload(cache, other_model, "does not fit.*missing keys")
    assert len(train_calls) == 2


def test_checkpoint_without_history_is_rejected(cache, train_calls):
    def no_history(path):
        entry = torch.load(path, weights_only=True)
        del entry["history"]
        _cache.save_atomic(entry, path)

    _damage_and_reload(cache, no_history, "does not fit")


# ---------------------------------------------------------------- where the cache lives


def test_unwritable_cache_folder_raises_oserror_naming_the_fix(tmp_path, monkeypatch,
                                                               fake_train):
    # A folder below a regular file can never be created, even by root.
    blocker = tmp_path / "afile"
    blocker.write_text("a file, not a folder")
    folder = blocker / "cache"
    monkeypatch.setenv("SANITY_LIB_CACHE", str(folder))
    with pytest.raises(OSError, match="SANITY_LIB_CACHE") as info:
        trained_mnist_model(**SMALL)
    assert str(folder) in str(info.value)
    assert not fake_train  # it fails before spending time on training


def test_read_only_cache_still_serves_its_entries_and_warns_when_it_cannot_store(
        cache, train_calls, monkeypatch):
    first, _ = trained_mnist_model(**SMALL)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_cache, "save_atomic", read_only)
    again, _ = trained_mnist_model(**SMALL)            # a hit: nothing to store
    assert len(train_calls) == 1 and _same_weights(first, again)
    with pytest.warns(RuntimeWarning, match="could not store the checkpoint"):
        other, _ = trained_mnist_model(**{**SMALL, "seed": 1})   # a miss: trained, not stored
    assert len(train_calls) == 2 and not other.training


def test_default_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SANITY_LIB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _cache.cache_dir() == tmp_path / "sanity_lib"
    assert (tmp_path / "sanity_lib").is_dir()


# ---------------------------------------------------------------- _cache itself


def test_config_key_ignores_order_and_sees_every_value():
    base = {"arch": "cnn", "lr": 0.001, "nested": {"a": [1, 2]}}
    assert _cache.config_key(base) == _cache.config_key(dict(reversed(base.items())))
    changed = [{**base, "arch": "mlp"}, {**base, "lr": 0.002}, {**base, "nested": {"a": [2, 1]}},
               {**base, "extra": None}]
    keys = {_cache.config_key(c) for c in changed + [base]}
    assert len(keys) == len(changed) + 1


def test_load_cached_rejects_another_configuration(cache):
    path = _cache.cache_path("things", {"n": 1})
    _cache.save_atomic({"config": {"n": 2}, "value": torch.ones(2)}, path)
    with pytest.warns(RuntimeWarning, match="another configuration"):
        assert _cache.load_cached(path, expected_config={"n": 1}) is None
    assert not path.exists()
    assert _cache.load_cached(path) is None  # missing: None, silently


class _Payload:
    """Stands for arbitrary pickled code, which weights_only loading must refuse."""


def test_load_cached_refuses_pickled_objects(cache):
    path = _cache.cache_path("things", {"n": 1})
    with open(path, "wb") as handle:
        torch.save({"config": {"n": 1}, "value": _Payload()}, handle)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert _cache.load_cached(path, expected_config={"n": 1}) is None


def test_save_atomic_keeps_the_old_file_when_saving_fails(cache):
    path = _cache.cache_path("things", {"n": 1})
    _cache.save_atomic({"config": {"n": 1}, "value": torch.arange(3)}, path)
    with pytest.raises(Exception):
        _cache.save_atomic({"config": {"n": 1}, "value": lambda: 0}, path)  # unpicklable
    entry = _cache.load_cached(path, expected_config={"n": 1})
    assert torch.equal(entry["value"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


# ---------------------------------------------------------------- a shared cache


def test_entries_are_readable_by_others_as_the_umask_allows(cache):
    path = _cache.cache_path("things", {"n": 1})
    old = os.umask(0o022)
    try:
        _cache.save_atomic({"config": {"n": 1}, "value": torch.ones(1)}, path)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_an_entry_that_cannot_be_read_is_left_alone(cache, monkeypatch):
    path = _cache.cache_path("things", {"n": 1})
    _cache.save_atomic({"config": {"n": 1}, "value": torch.ones(1)}, path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_cache, "open", denied, raising=False)  # another account's entry
    with pytest.warns(RuntimeWarning, match="cannot be read.*leaving it in place"):
        assert _cache.load_cached(path, expected_config={"n": 1}) is None
    assert path.exists(), "a file we could not read may be someone's good entry"


def test_a_folder_where_an_entry_should_be_is_reported_not_a_crash(cache):
    path = _cache.cache_path("things", {"n": 2})
    path.mkdir()
    with pytest.warns(RuntimeWarning, match="cannot be read"):
        assert _cache.load_cached(path, expected_config={"n": 2}) is None
    assert path.is_dir()


def test_a_corrupt_entry_that_cannot_be_deleted_is_ignored_with_a_warning(cache, monkeypatch):
    path = _cache.cache_path("things", {"n": 3})
    path.write_bytes(b"garbage" * 10)

    def sticky(self, missing_ok=False):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(type(path), "unlink", sticky)
    with pytest.warns(RuntimeWarning) as caught:
        assert _cache.load_cached(path, expected_config={"n": 3}) is None
    messages = " ".join(str(w.message) for w in caught)
    assert "unreadable" in messages and "cannot be deleted" in messages


def test_cached_recomputes_an_entry_that_does_not_fit(cache):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(3)

    kwargs = dict(dump=lambda v: {"value": v}, load=lambda e: e["value"] + e["missing"])
    with pytest.warns(RuntimeWarning, match="does not fit"):
        _cache.cached("things", {"n": 4}, compute, **kwargs)   # stored, then...
        _cache.cached("things", {"n": 4}, compute, **kwargs)   # ...load fails: recompute
    assert len(calls) == 2


def test_one_fingerprint_for_models_and_tensors():
    from sanity_lib.checks import fingerprint

    assert fingerprint is _cache.fingerprint
    assert _cache.fingerprint(torch.zeros(2)) != _cache.fingerprint(torch.zeros(3))
    assert _cache.fingerprint(torch.zeros(2)) != _cache.fingerprint(torch.zeros(2).double())


def test_code_fingerprint_changes_with_any_file_it_covers(tmp_path):
    """A copy of the package's saliency folder: the same bytes give the same hash; an edit,
    a new file or a renamed file gives another."""
    import shutil
    from pathlib import Path

    package = Path(_cache.__file__).resolve().parent
    shutil.copytree(package / "saliency", tmp_path / "saliency")
    (tmp_path / "similarity.py").write_text("x = 1\n")
    parts = ("saliency", "similarity.py")
    first = _cache.code_fingerprint(parts, root=tmp_path)
    assert first == _cache.code_fingerprint(parts, root=tmp_path)
    assert _cache.code_fingerprint(("saliency",), root=tmp_path) == _cache.code_fingerprint(
        ("saliency",), root=package), "the copy hashes as the package's own folder"
    seen = {first}
    edits = [lambda: (tmp_path / "similarity.py").write_text("x = 2\n"),
             lambda: (tmp_path / "saliency" / "_new.py").write_text(""),
             lambda: (tmp_path / "saliency" / "_new.py").rename(tmp_path / "saliency" / "_b.py")]
    for edit in edits:
        edit()
        now = _cache.code_fingerprint(parts, root=tmp_path)
        assert now not in seen
        seen.add(now)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _cache.code_fingerprint(("nowhere",), root=tmp_path)
