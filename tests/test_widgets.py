"""Tests for sanity_lib.course.widgets: frames, nesting, browser-side links, embedded state.

The explorers must work on a static page, where no kernel runs. What the page gets is the
embedded widget state: every frame as PNG bytes, the stacks, and the jslink models that tie
the controls to the stacks. These tests check that state directly: each frame is decoded and
compared with the normalized map it should show (the colours are inverted through the
colormap), and every link is checked against the structure it must drive.
"""
import dataclasses
import io
import json
import re

import matplotlib
import numpy as np
import pytest
import torch
import ipywidgets
from ipywidgets.embed import embed_data
from ipywidgets.widgets.widget_link import Link
from PIL import Image

import sanity_lib as sl
from sanity_lib import widgets as W
from sanity_lib.similarity import normalize

SIZE = 196            # 7 x 28: each MNIST pixel becomes a 7 x 7 block
BLOCK = SIZE // 28
TITLE, BAR = 16, 24   # title strip and colour-bar strip of a frame, in pixels
METHODS = ["gradient", "guided_backprop"]
SPEARMAN = ("spearman_abs", "spearman_diverging")


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    x, _ = sl.data.load_mnist("test")
    return x[:2]


@pytest.fixture(scope="module")
def cascade(digits):
    return sl.model_randomization_test(sl.models.mnist_cnn(), digits, METHODS,
                                       metrics=SPEARMAN, progress=False)


@pytest.fixture(scope="module")
def explorer(cascade, digits):
    return W.cascading_explorer(cascade, image=1, input_image=digits)


@pytest.fixture(scope="module")
def noise_results(digits):
    # Given in decreasing std on purpose: the explorer must sort them.
    return {std: sl.model_randomization_test(sl.models.mnist_cnn(), digits, ["gradient"],
                                             mode="gaussian_noise", std=std, metrics=SPEARMAN,
                                             progress=False)
            for std in (0.5, 0.02)}


# ----------------------------------------------------------------------------- helpers

def decode(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def colormap(mode):
    return matplotlib.colormaps[W.COLORMAPS[mode]]


def invert(rgb, mode):
    """Values of RGB pixels (... x 3, 0-255) read back through the colormap."""
    t = np.linspace(0.0, 1.0, 1001)
    lut = colormap(mode)(t)[:, :3] * 255
    flat = rgb.reshape(-1, 3)
    nearest = ((flat[:, None, :] - lut[None]) ** 2).sum(-1).argmin(1)
    lo, hi = (0.0, 1.0) if mode == "abs" else (-1.0, 1.0)
    return (lo + t[nearest] * (hi - lo)).reshape(rgb.shape[:-1])


def map_values(png, mode, title=True):
    """The 28 x 28 values a frame shows: block centres of its map area, inverted."""
    img = decode(png)
    top = TITLE if title else 0
    area = img[top:top + SIZE]
    centres = area[BLOCK // 2::BLOCK, BLOCK // 2::BLOCK]
    return invert(centres, mode)


def tolerance(mode):
    return 0.01 if mode == "abs" else 0.02


def stacks_in(widget):
    """Every Stack inside ``widget``, depth first."""
    found = []
    if isinstance(widget, ipywidgets.Stack):
        found.append(widget)
    for child in getattr(widget, "children", ()):
        found.extend(stacks_in(child))
    return found


def link_set(links):
    return {(l.source[0].model_id, l.source[1], l.target[0].model_id, l.target[1])
            for l in links}


def innermost(explorer, method_i, mode_i):
    """(frames stack, captions stack) of the cascading explorer for one method and mode."""
    box = explorer.frames.children[method_i].children[mode_i]
    return box.children


# ----------------------------------------------------------------------------- frame_png

@pytest.mark.parametrize("mode", ["abs", "diverging"])
def test_frame_png_layout_and_colours(mode):
    png = W.frame_png(np.zeros((28, 28)), mode, size=56, title="zero")
    img = decode(png)
    assert img.shape == (TITLE + 56 + BAR, 56, 3)
    # A zero map is the low end of the sequential map, the exact centre of the diverging one.
    expected = colormap(mode)(0.0 if mode == "abs" else 0.5)[:3]
    area = img[TITLE:TITLE + 56]
    assert np.abs(area - np.array(expected) * 255).max() <= 1.0
    # Title and colour-bar strips are there: white background with dark text / a ramp.
    assert (img[:TITLE] == 255).mean() > 0.6 and img[:TITLE].min() < 60
    bar = img[TITLE + 56 + 3 + 4, 6:50]                      # a row through the colour bar
    values = invert(bar[None], mode)[0]
    assert values[0] == pytest.approx(-1.0 if mode == "diverging" else 0.0, abs=0.02)
    assert values[-1] == pytest.approx(1.0, abs=0.03)
    assert np.all(np.diff(values) >= -1e-9)                  # low to high, left to right


def test_frame_png_sequential_abs_and_centred_diverging():
    levels = np.linspace(-1, 1, 9)
    lum = {}
    for mode in ("abs", "diverging"):
        vals = levels if mode == "diverging" else (levels + 1) / 2
        rows = [decode(W.frame_png(np.full((4, 4), v), mode, size=32, colorbar=False))
                for v in vals]
        lum[mode] = np.array([r.mean(axis=(0, 1)) @ [0.299, 0.587, 0.114] for r in rows])
    # abs: brightness rises with the value (gray: black to white).
    assert np.all(np.diff(lum["abs"]) > 0)
    assert lum["abs"][0] < 5 and lum["abs"][-1] > 250
    # diverging: symmetric around 0, lightest at 0, darkest at the ends.
    assert np.allclose(lum["diverging"], lum["diverging"][::-1], atol=25)
    assert lum["diverging"].argmax() == 4
    assert lum["diverging"][4] > lum["diverging"][0] + 100


@pytest.mark.parametrize("mode", ["abs", "diverging"])
def test_frame_png_shows_the_map_in_place(mode):
    rng = np.random.default_rng(0)
    lo = 0.0 if mode == "abs" else -1.0
    m = rng.uniform(lo, 1.0, (28, 28))
    m[0, :] = 1.0                                            # orientation marker: top row
    png = W.frame_png(m, mode, size=SIZE, title="t")
    got = map_values(png, mode)
    assert np.abs(got - m).max() <= tolerance(mode)
    # Values out of range are clipped, not wrapped; NaN-free; deterministic bytes.
    clipped = W.frame_png(m * 5, mode, size=SIZE, title="t")
    assert np.abs(map_values(clipped, mode) - np.clip(m * 5, lo, 1)).max() <= tolerance(mode)
    assert W.frame_png(m, mode, size=SIZE, title="t") == png


def test_frame_png_aspect_and_strips():
    assert decode(W.frame_png(np.zeros((14, 28)), "abs", size=64, title=None,
                              colorbar=False)).shape[:2] == (32, 64)
    assert decode(W.frame_png(np.zeros((28, 14)), "abs", size=64, title="x")).shape[:2] == \
        (TITLE + 128 + BAR, 64)
    # Shrinking (224 -> 56) averages: a checkerboard becomes mid-gray, not aliased stripes.
    board = np.indices((224, 224)).sum(0) % 2
    area = decode(W.frame_png(board, "abs", size=56, colorbar=False))
    assert np.abs(invert(area, "abs") - 0.5).max() < 0.05


@pytest.mark.parametrize("bad, match", [
    (dict(map_2d=np.zeros((1, 28, 28))), "map_2d must be one non-empty H x W"),
    (dict(map_2d=np.full((4, 4), np.nan)), "map_2d contains NaN"),
    (dict(mode="signed"), "mode='signed' is not known"),
    (dict(size=8), "size must be an integer"),
    (dict(map_2d=[[0.0]]), "map_2d must be a torch tensor or a numpy array"),
])
def test_frame_png_rejects_bad_input(bad, match):
    args = dict(map_2d=np.zeros((4, 4)), mode="abs", size=64) | bad
    with pytest.raises((ValueError, TypeError), match=re.escape(match)):
        W.frame_png(**args)


def test_image_png_shows_the_input(digits):
    img = decode(W.image_png(digits[1], size=SIZE))
    assert img.shape == (TITLE + SIZE + BAR, SIZE, 3)
    shown = img[TITLE:TITLE + SIZE][BLOCK // 2::BLOCK, BLOCK // 2::BLOCK, 0] / 255
    assert np.abs(shown - digits[1, 0].numpy()).max() <= 1 / 255 + 1e-9
    with pytest.raises(ValueError, match="image must hold pixel values in"):
        W.image_png(digits[1] * 3)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        W.image_png(torch.rand(2, 8, 8))


# ----------------------------------------------------------------------------- cascading

def test_cascading_structure(explorer, cascade):
    assert isinstance(explorer, ipywidgets.VBox)
    n_steps = len(cascade.layers)
    assert len(explorer.frames.children) == len(METHODS)
    for method_stack in explorer.frames.children:
        assert isinstance(method_stack, ipywidgets.Stack)
        assert len(method_stack.children) == 2                      # abs, diverging
        for box in method_stack.children:
            frames, captions = box.children
            assert len(frames.children) == n_steps
            assert all(isinstance(f, ipywidgets.Image) for f in frames.children)
            assert len(captions.children) == n_steps
    controls = explorer.controls
    assert controls["method"].options == (("Gradient", 0), ("Guided Backprop", 1))
    assert [label for label, _ in controls["mode"].options] == ["absolute value",
                                                                 "signed (diverging)"]
    assert (controls["step"].min, controls["step"].max) == (0, n_steps - 1)


def test_cascading_links_drive_every_stack(explorer):
    c = explorer.controls
    expected = {(c["method"].model_id, "index", explorer.frames.model_id, "selected_index")}
    for method_stack in explorer.frames.children:
        expected.add((c["mode"].model_id, "index", method_stack.model_id, "selected_index"))
        for box in method_stack.children:
            for stack in box.children:                               # frames and captions
                expected.add((c["step"].model_id, "value", stack.model_id, "selected_index"))
    readout = [s for s in stacks_in(explorer) if s not in stacks_in(explorer.frames)]
    assert len(readout) == 1                                         # the layer-name read-out
    expected.add((c["step"].model_id, "value", readout[0].model_id, "selected_index"))
    assert all(isinstance(l, Link) for l in explorer.links)
    assert link_set(explorer.links) == expected
    # Every stack of the explorer is driven by exactly one link, so none is stuck.
    targets = [l.target[0].model_id for l in explorer.links]
    assert sorted(targets) == sorted(s.model_id for s in stacks_in(explorer))
    assert [re.sub("<.*?>", "", h.value) for h in readout[0].children] == \
        ["original", "logits", "fc1", "conv2", "conv1"]


@pytest.mark.parametrize("mode_i, mode", [(0, "abs"), (1, "diverging")])
def test_cascading_frames_show_the_right_maps(explorer, cascade, mode_i, mode):
    for method_i, method in enumerate(METHODS):
        frames, _ = innermost(explorer, method_i, mode_i)
        want = normalize(cascade.maps[method][:, 1], mode).numpy()    # image=1, every step
        shown = [map_values(f.value, mode) for f in frames.children]
        for step, (got, ref) in enumerate(zip(shown, want)):
            assert np.abs(got - ref).max() <= tolerance(mode), (method, mode, step)
        # The sweep changes the gradient maps, so the frames must differ between steps.
        if method == "gradient":
            assert len({bytes(f.value) for f in frames.children}) == len(frames.children)
            assert np.abs(shown[0] - shown[-1]).mean() > 0.05


def test_cascading_shows_the_input_and_captions(explorer, cascade, digits):
    view = explorer.children[-1]
    input_frame = view.children[0]
    img = decode(input_frame.value)[TITLE:TITLE + SIZE][BLOCK // 2::BLOCK, BLOCK // 2::BLOCK, 0]
    assert np.abs(img / 255 - digits[1, 0].numpy()).max() <= 1 / 255 + 1e-9
    table = cascade.table
    for mode_i, mode in enumerate(("abs", "diverging")):
        _, captions = innermost(explorer, 0, mode_i)
        for step in range(1, len(cascade.layers)):
            row = table[(table.method == "gradient") & (table.step == step)
                        & (table.image == 1) & (table.metric == f"spearman_{mode}")]
            mean = table[(table.method == "gradient") & (table.step == step)
                         & (table.metric == f"spearman_{mode}")].value.mean()
            text = captions.children[step].value
            assert f"<b>{cascade.layers[step]}</b>" in text
            assert f"<b>{row.value.item():.2f}</b>".replace("-0.00", "0.00") in text
            assert f"mean of 2 images: {mean:.2f}".replace("-0.00", "0.00") in text
            assert f"explains class {int(cascade.targets[step, 1])}" in text
        assert "Spearman" not in captions.children[0].value           # step 0: no comparison


def test_embedded_state_holds_frames_and_links(explorer):
    # What a static page gets: the whole manager state (as a notebook saves it) ...
    data = embed_data(views=[explorer])
    state = data["manager_state"]["state"]
    assert data["view_specs"][0]["model_id"] == explorer.model_id
    for link in explorer.links:
        saved = state[link.model_id]
        assert saved["model_name"] == "LinkModel"
        assert saved["state"]["source"] == [f"IPY_MODEL_{link.source[0].model_id}",
                                            link.source[1]]
        assert saved["state"]["target"] == [f"IPY_MODEL_{link.target[0].model_id}",
                                            "selected_index"]
    # ... and the explorer's own, smaller state: closed under references, links included.
    own = explorer.embed_state()
    text = json.dumps(embed_data(views=[explorer], state=own))   # serializable
    refs = set(re.findall(r"IPY_MODEL_([0-9a-f]+)", text))
    assert refs <= set(own)
    assert {l.model_id for l in explorer.links} <= set(own)
    images = [v for v in own.values() if v["model_name"] == "ImageModel"]
    assert len(images) == len(METHODS) * 2 * 5 + 1                 # frames + the input
    assert all(v["buffers"][0]["path"] == ["value"] for v in images)
    # The browser starts every link from its source: the source trait must be in the state
    # (or equal the browser's own default: IntSlider.value is 0 on both sides).
    for link in explorer.links:
        source = own[link.source[0].model_id]
        if link.source[1] == "index":
            assert source["state"]["index"] == link.source[0].index
        else:
            assert source["model_name"] == "IntSliderModel"
            assert source["state"].get("value", 0) == link.source[0].value
    for stack in stacks_in(explorer):
        assert own[stack.model_id]["state"]["selected_index"] == 0


def test_save_html_writes_a_standalone_page(explorer, tmp_path):
    path = explorer.save_html(tmp_path / "explorer.html", title="Cascading")
    page = path.read_text()
    state = json.loads(re.search(
        r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>',
        page, re.S).group(1))
    names = [v["model_name"] for v in state["state"].values()]
    assert names.count("LinkModel") == len(explorer.links)
    assert names.count("StackModel") == len(stacks_in(explorer))
    assert f'"model_id": "{explorer.model_id}"' in page


# ----------------------------------------------------------------------------- noise

def test_noise_explorer_structure_links_and_frames(noise_results):
    ex = W.noise_explorer(noise_results, image=0, modes=("diverging",))
    stds = [0.02, 0.5]                                               # sorted
    c = ex.controls
    assert c["std"].max == len(stds) - 1
    assert len(ex.frames.children) == 1                              # one method
    mode_stack = ex.frames.children[0]
    assert len(mode_stack.children) == 1                             # diverging only
    std_stack = mode_stack.children[0]
    assert len(std_stack.children) == len(stds)
    links = link_set(ex.links)
    assert (c["std"].model_id, "value", std_stack.model_id, "selected_index") in links
    assert (c["mode"].model_id, "index", mode_stack.model_id, "selected_index") in links
    for std, box in zip(stds, std_stack.children):
        frames, captions = box.children
        for stack in (frames, captions):
            assert (c["step"].model_id, "value", stack.model_id, "selected_index") in links
        want = normalize(noise_results[std].maps["gradient"][:, 0], "diverging").numpy()
        for got_png, ref in zip(frames.children, want):
            assert np.abs(map_values(got_png.value, "diverging") - ref).max() <= 0.02
    # Step 0 is the same trained model at every std; the last step differs between stds.
    low, high = [[decode(f.value)[TITLE:TITLE + SIZE] for f in box.children[0].children]
                 for box in std_stack.children]
    assert np.array_equal(low[0], high[0])
    assert np.abs(low[-1] - high[-1]).mean() > 5
    assert sorted(l.target[0].model_id for l in ex.links) == \
        sorted(s.model_id for s in stacks_in(ex))
    readouts = [s for s in stacks_in(ex) if s not in stacks_in(ex.frames)]
    labels = [[re.sub("<.*?>", "", h.value) for h in s.children] for s in readouts]
    assert ["std 0.02", "std 0.5"] in labels


def test_noise_explorer_rejects_bad_input(noise_results, cascade):
    with pytest.raises(ValueError, match="results_by_std must be a non-empty dict"):
        W.noise_explorer({})
    with pytest.raises(ValueError, match="keys must be the noise std values"):
        W.noise_explorer({"0.1": noise_results[0.02]})
    with pytest.raises(ValueError, match="mode='cascading'"):
        W.noise_explorer({0.1: cascade})
    with pytest.raises(ValueError, match=r"computed with std=0.02, not 0.3"):
        W.noise_explorer({0.3: noise_results[0.02]})
    with pytest.raises(ValueError, match=r"methods contains \['guided_backprop'\]"):
        W.noise_explorer(noise_results, methods=["guided_backprop"])
    with pytest.raises(ValueError, match="image=5 is out of range"):
        W.noise_explorer(noise_results, image=5)


# ----------------------------------------------------------------------------- compare

def test_compare_explorer_for_data_randomization(digits):
    result = sl.data_randomization_test(sl.models.mnist_cnn(seed=0), sl.models.mnist_cnn(seed=1),
                                        digits, ["gradient"], metrics=SPEARMAN, progress=False)
    ex = W.compare_explorer(result, modes=("abs",))
    c = ex.controls
    assert c["image"].max == 1
    box = ex.frames.children[0].children[0]
    *columns, captions = box.children
    assert len(columns) == 2                                         # true / random labels
    links = link_set(ex.links)
    for stack in columns + [captions]:
        assert len(stack.children) == 2                              # one per image
        assert (c["image"].model_id, "value", stack.model_id, "selected_index") in links
    for step, column in enumerate(columns):
        for image, frame in enumerate(column.children):
            ref = normalize(result.maps["gradient"][step, image][None], "abs")[0].numpy()
            assert np.abs(map_values(frame.value, "abs") - ref).max() <= 0.01
    value = result.table.query("image == 1 and metric == 'spearman_abs'").value.item()
    assert f"{value:.2f}".replace("-0.00", "0.00") in captions.children[1].value
    assert "random labels" in captions.children[1].value
    assert sorted(l.target[0].model_id for l in ex.links) == \
        sorted(s.model_id for s in stacks_in(ex))
    with pytest.raises(ValueError, match="images=2 is out of range"):
        W.compare_explorer(result, images=[0, 2])
    with pytest.raises(ValueError, match="steps entry 'fc1' is not a layer"):
        W.compare_explorer(result, steps=["fc1"])


# ----------------------------------------------------------------------------- bad input

def test_explorers_reject_bad_input(cascade, digits):
    with pytest.raises(ValueError, match=r"image=2 is out of range: the result holds 2"):
        W.cascading_explorer(cascade, image=2)
    with pytest.raises(ValueError, match="image must be an integer index"):
        W.cascading_explorer(cascade, image=1.0)
    with pytest.raises(ValueError, match=r"methods contains \['gradcam'\]"):
        W.cascading_explorer(cascade, methods=["gradient", "gradcam"])
    with pytest.raises(ValueError, match="methods is empty"):
        W.cascading_explorer(cascade, methods=[])
    with pytest.raises(ValueError, match="modes contains 'signed'"):
        W.cascading_explorer(cascade, modes=("abs", "signed"))
    with pytest.raises(ValueError, match="input_image must hold pixel values in"):
        W.cascading_explorer(cascade, input_image=digits * 2 - 1)
    with pytest.raises(ValueError, match="input_image holds a batch of 3 images"):
        W.cascading_explorer(cascade, input_image=torch.rand(3, 1, 28, 28))
    with pytest.raises(TypeError, match="result must be a SanityCheckResult"):
        W.cascading_explorer(cascade.maps)
    with pytest.raises(ValueError, match="size must be an integer"):
        W.cascading_explorer(cascade, size=2000)
    nan_maps = {m: v.clone() for m, v in cascade.maps.items()}
    nan_maps["gradient"][3, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"result.maps\['gradient'\] has NaN .* steps \[3\]"):
        W.cascading_explorer(dataclasses.replace(cascade, maps=nan_maps), image=0)
    short = dataclasses.replace(cascade, layers=cascade.layers[:3])
    with pytest.raises(ValueError, match=r"result.maps\['gradient'\] must be a tensor"):
        W.cascading_explorer(short)
    only_original = dataclasses.replace(
        cascade, layers=["original"], maps={m: v[:1] for m, v in cascade.maps.items()})
    with pytest.raises(ValueError, match="has no randomized step"):
        W.cascading_explorer(only_original)


def test_result_without_maps_is_refused(digits):
    result = sl.model_randomization_test(sl.models.mnist_cnn(), digits, ["gradient"],
                                         metrics=("spearman_abs",), keep_maps=False,
                                         progress=False)
    assert result.maps == {}
    for build in (W.cascading_explorer, W.compare_explorer):
        with pytest.raises(ValueError, match="keep_maps=False"):
            build(result)
    with pytest.raises(ValueError, match=r"results_by_std\[0.1\] holds no maps"):
        W.noise_explorer({0.1: result})
