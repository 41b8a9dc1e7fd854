"""sl.course.book.explain_cached: the book's stored maps are the maps explain() computes, and
any change of model, inputs, method, setting or map code computes them anew."""
import pytest
import torch

import sanity_lib as sl
import sanity_lib._cache
from sanity_lib.course import book


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SANITY_LIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of sl.saliency.explain (the real one still runs)."""
    count = {"n": 0}
    real = sl.saliency.explain

    def counting(*args, **kwargs):
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sl.saliency, "explain", counting)
    return count


@pytest.mark.filterwarnings("error")      # a stored entry that does not load would warn
def test_the_stored_maps_are_explains_maps_and_a_second_call_loads_them(cache, calls):
    model, x = sl.models.mnist_cnn(seed=0), torch.rand(3, 1, 28, 28)
    first, seconds = book.explain_cached(model, x, "integrated_gradients", n_steps=4)
    again, seconds_again = book.explain_cached(model, x, "integrated_gradients", n_steps=4)
    assert calls["n"] == 1 and seconds_again == seconds > 0
    direct = sl.saliency.explain(model, x, "integrated_gradients", n_steps=4)
    torch.testing.assert_close(first, direct)
    torch.testing.assert_close(again, direct)
    assert len(list((cache / "maps").glob("*.pt"))) == 1


def test_any_change_computes_anew(cache, calls, monkeypatch):
    model, x = sl.models.mnist_cnn(seed=0), torch.rand(2, 1, 28, 28)
    book.explain_cached(model, x, "gradient")
    other = sl.models.mnist_cnn(seed=0)
    with torch.no_grad():
        other.conv1.weight[0, 0, 0, 0] += 1e-3                # one weight
    variants = [(other, x, "gradient", {}), (model, x + 1e-3, "gradient", {}),
                (model, x, "guided_backprop", {}), (model, x, "gradient", {"target": 3}),
                (model, x, "gradient", {"target": torch.tensor([1, 2])}),
                (model, x, "gradient", {"target": torch.tensor([1, 3])})]
    for m, inputs, method, settings in variants:
        book.explain_cached(m, inputs, method, **settings)
    assert calls["n"] == 1 + len(variants)
    monkeypatch.setattr(sanity_lib._cache, "code_fingerprint", lambda *a: "edited saliency code")
    book.explain_cached(model, x, "gradient")
    assert calls["n"] == 2 + len(variants)


def test_a_damaged_entry_is_recomputed(cache, calls):
    model, x = sl.models.mnist_cnn(seed=0), torch.rand(2, 1, 28, 28)
    book.explain_cached(model, x, "gradient")
    (entry,) = (cache / "maps").glob("*.pt")
    entry.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="deleting it"):
        maps, _ = book.explain_cached(model, x, "gradient")
    assert calls["n"] == 2
    torch.testing.assert_close(maps, sl.saliency.explain(model, x, "gradient"))


def test_bad_input_is_refused_in_plain_words(cache):
    model, x = sl.models.mnist_cnn(seed=0), torch.rand(2, 1, 28, 28)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        book.explain_cached("cnn", x, "gradient")
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        book.explain_cached(model, x.numpy(), "gradient")
    with pytest.raises(TypeError, match="cannot store maps computed with baseline=.*call "
                                        "sl.saliency.explain directly"):
        book.explain_cached(model, x, "integrated_gradients", baseline=lambda t: t * 0)
