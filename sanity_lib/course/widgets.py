"""Interactive explorers for the sanity checks that also work on a static web page.

Every explorer is built so that it needs **no kernel** once it is drawn:

* each frame (one saliency map of one image, at one step, for one method and one
  normalization) is rendered **ahead of time** into a small PNG (:func:`frame_png`) with the
  colormap, a title strip and a colour bar already applied, and held in an
  ``ipywidgets.Image``;
* frames sit in nested ``ipywidgets.Stack`` containers (one level per control), and
* every control drives the stacks' ``selected_index`` through ``ipywidgets.jslink``, a link
  that runs in the browser.

Jupyter Book (MyST-NB) embeds the widget state of an executed notebook, links included, so
the explorers keep working in the built HTML book, where no Python runs. In a live notebook
they behave the same way.

=========================  ==================================================================
function                   what it shows
=========================  ==================================================================
:func:`cascading_explorer` a model randomization sweep: layer slider x method x abs/diverging
:func:`noise_explorer`     the Gaussian-noise variant: noise std slider x layer slider x ...
:func:`compare_explorer`   two sets of maps side by side (data randomization test: the
                           true-label model against the random-label model), image slider
:func:`frame_png`          one normalized 2-D map -> PNG bytes (the building block)
=========================  ==================================================================

Every explorer returns an :class:`Explorer` (an ``ipywidgets.VBox``) that also knows its
controls, its links, and how to save itself as a standalone HTML page.

Examples
--------
>>> import sanity_lib as sl
>>> x, _ = sl.data.load_mnist("test")
>>> result = sl.model_randomization_test(sl.models.mnist_cnn(), x[:2], ["gradient"],
...                                      progress=False)                  # doctest: +SKIP
>>> sl.course.widgets.cascading_explorer(result, image=0, input_image=x)         # doctest: +SKIP
"""
import html
import io
import numbers
from collections.abc import Mapping

import ipywidgets as widgets
from ipywidgets.widgets.widget_string import HTMLStyle
import numpy as np
import torch

from sanity_lib import plotting

__all__ = [
    "MODES", "DEFAULT_SIZE", "COLORMAPS",
    "Explorer", "frame_png", "image_png",
    "cascading_explorer", "noise_explorer", "compare_explorer",
]

MODES = ("abs", "diverging")
#: Width of a frame in pixels. 196 = 7 x 28, so MNIST maps scale by whole pixels.
DEFAULT_SIZE = 196
_MIN_SIZE, _MAX_SIZE = 32, 512
#: The colormaps of :func:`sanity_lib.plotting.plot_grid`, so figures and explorers agree:
#: sequential for abs maps, diverging (centred on 0) for signed maps.
COLORMAPS = {"abs": plotting._ABS_CMAP, "diverging": plotting._DIVERGING_CMAP}

# Colour range of a normalized map (sl.similarity.normalize): abs in [0, 1], diverging in [-1, 1].
_RANGES = {"abs": (0.0, 1.0), "diverging": (-1.0, 1.0)}

# A frame is a palette PNG: the first _LEVELS entries are the colormap (an odd number, so 0 of a
# diverging map hits the exact centre colour), then white (background) and black (text).
_LEVELS = 253
_WHITE, _BLACK = _LEVELS, _LEVELS + 1
_TITLE_H = 16          # title strip above the map
_BAR_H = 8             # colour bar height
_BAR_STRIP_H = 24      # colour bar strip below the map: gap, bar, tick labels
_FONT_SIZE = 11


# ----------------------------------------------------------------------------- checks

def _check_mode(mode, name="mode"):
    if mode not in MODES:
        raise ValueError(f"{name}={mode!r} is not known; choose 'abs' or 'diverging'")


def _check_modes(modes):
    if isinstance(modes, str):
        modes = (modes,)
    try:
        modes = tuple(modes)
    except TypeError:
        raise ValueError(
            f"modes must be a sequence of 'abs' / 'diverging', got {modes!r}") from None
    if not modes:
        raise ValueError("modes is empty; pass ('abs',), ('diverging',) or ('abs', 'diverging')")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"modes contains {m!r}, which is not known; use 'abs' and/or "
                             "'diverging'")
    if len(set(modes)) != len(modes):
        raise ValueError(f"modes lists a mode twice: {modes!r}")
    return modes


def _check_size(size):
    if (not isinstance(size, numbers.Integral) or isinstance(size, bool)
            or not _MIN_SIZE <= size <= _MAX_SIZE):
        raise ValueError(f"size must be an integer number of pixels in [{_MIN_SIZE}, "
                         f"{_MAX_SIZE}] (about 160-224 keeps a page light), got {size!r}")
    return int(size)


def _to_numpy(value, name):
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
        return value.astype(np.float64, copy=False)
    raise TypeError(f"{name} must be a torch tensor or a numpy array, got {type(value).__name__}")


def _check_index(value, n, name, what):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer index, got {value!r}")
    if not -n <= value < n:
        raise ValueError(f"{name}={value} is out of range: {what} holds {n} image(s), so use "
                         f"0 to {n - 1}")
    return int(value) % n


# ----------------------------------------------------------------------------- rendering

def _font():
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except (TypeError, ValueError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def _palette(mode):
    import matplotlib

    cmap = matplotlib.colormaps[COLORMAPS[mode]]
    rgb = (np.asarray(cmap(np.linspace(0.0, 1.0, _LEVELS)))[:, :3] * 255).round()
    extra = np.array([[255, 255, 255], [0, 0, 0]])
    return np.concatenate([rgb, extra]).astype(np.uint8)


def _fit(draw, text, width, font):
    """``text`` shortened with an ellipsis until it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _resize_values(values, width, height):
    """Resize a float map: blocks when enlarging (crisp pixels), box averaging when shrinking."""
    from PIL import Image

    img = Image.fromarray(values.astype(np.float32), mode="F")
    h, w = values.shape
    method = Image.Resampling.NEAREST if (width >= w and height >= h) else Image.Resampling.BOX
    return np.asarray(img.resize((width, height), method), dtype=np.float64)


def _map_height(shape, size):
    h, w = shape
    return max(1, int(round(size * h / w)))


def _draw_title(draw, title, width, fill):
    if title:
        font = _font()
        draw.text((3, 2), _fit(draw, str(title), width - 6, font), fill=fill, font=font)


def frame_png(map_2d, mode, size=DEFAULT_SIZE, title=None, colorbar=True):
    """Render one normalized 2-D saliency map as PNG bytes, with its colormap applied.

    The frame is ``size`` pixels wide: a white title strip (16 px, when ``title`` is given),
    the map scaled to ``size`` pixels wide (whole-pixel blocks when enlarging, box averaging
    when shrinking), and a colour bar strip (24 px, when ``colorbar``) with its tick labels.
    The colours use a fixed range, so equal values look equal in every frame:

    * ``mode="abs"``: a sequential colormap from 0 (low end) to 1 (high end);
    * ``mode="diverging"``: a diverging colormap centred on 0, from -1 to 1; 0 gets the
      colormap's exact centre colour.

    Values outside the range are clipped. The PNG is a palette image (253 colormap levels plus
    white and black), which keeps it small enough to precompute many frames.

    Parameters
    ----------
    map_2d : torch.Tensor or numpy.ndarray
        H x W, already normalized: in [0, 1] for abs, in [-1, 1] for diverging, as
        :func:`sanity_lib.similarity.normalize` returns (take one map, ``normalize(m, mode)[i]``).
    mode : {"abs", "diverging"}
    size : int, default 196
        Width of the frame in pixels (32 to 512).
    title : str or None
        Text of the title strip; shortened with "..." when it is too long. None: no strip.
    colorbar : bool, default True
        Draw the colour bar strip.

    Returns
    -------
    bytes
        A PNG file.

    Raises
    ------
    ValueError
        ``map_2d`` not 2-D, empty, or with NaN/inf; unknown ``mode``; ``size`` out of range.

    Examples
    --------
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> png = frame_png(np.zeros((28, 28)), "diverging", size=56, title="zero map")
    >>> Image.open(io.BytesIO(png)).size                  # 16 + 56 + 24 pixels tall
    (56, 96)
    """
    from PIL import Image, ImageDraw

    _check_mode(mode)
    size = _check_size(size)
    values = _to_numpy(map_2d, "map_2d")
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"map_2d must be one non-empty H x W map, got shape {values.shape}; "
                         "normalize a batch first and pass one map, e.g. "
                         "sl.similarity.normalize(maps, mode)[0]")
    if not np.isfinite(values).all():
        raise ValueError("map_2d contains NaN or infinite values; a NaN map cannot be drawn "
                         "(was it divided by a zero maximum?)")
    lo, hi = _RANGES[mode]
    map_h = _map_height(values.shape, size)
    scaled = _resize_values(np.clip(values, lo, hi), size, map_h)
    idx = np.rint((np.clip(scaled, lo, hi) - lo) / (hi - lo) * (_LEVELS - 1)).astype(np.uint8)

    top = _TITLE_H if title else 0
    bottom = _BAR_STRIP_H if colorbar else 0
    canvas = np.full((top + map_h + bottom, size), _WHITE, dtype=np.uint8)
    canvas[top:top + map_h] = idx
    if colorbar:
        x0, x1 = 6, size - 6
        ramp = np.rint(np.linspace(0, _LEVELS - 1, x1 - x0)).astype(np.uint8)
        y0 = top + map_h + 3
        canvas[y0:y0 + _BAR_H, x0:x1] = ramp
    img = Image.fromarray(canvas, mode="P")
    img.putpalette(_palette(mode).ravel().tolist())
    draw = ImageDraw.Draw(img)
    _draw_title(draw, title, size, _BLACK)
    if colorbar:
        font = _font()
        y = top + map_h + 3 + _BAR_H + 1
        ticks = [(x0, "0"), (x1, "1")] if mode == "abs" else [(x0, "-1"), ((x0 + x1) / 2, "0"),
                                                              (x1, "+1")]
        for i, (x, label) in enumerate(ticks):
            w = draw.textlength(label, font=font)
            left = x0 if i == 0 else (x1 - w if i == len(ticks) - 1 else x - w / 2)
            draw.text((left, y), label, fill=_BLACK, font=font)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def image_png(image, size=DEFAULT_SIZE, title="input", colorbar_space=True):
    """Render an input image (C x H x W in [0, 1], C = 1 or 3) as PNG bytes.

    The frame has the same layout as :func:`frame_png` (title strip, image ``size`` pixels
    wide, and an empty strip where a map frame has its colour bar when ``colorbar_space``),
    so an input and its maps line up side by side.

    Parameters
    ----------
    image : torch.Tensor or numpy.ndarray
        C x H x W (C = 1 or 3) or H x W, values in [0, 1] (the image before any
        model preprocessing).
    size : int, default 196
    title : str or None, default "input"
    colorbar_space : bool, default True

    Returns
    -------
    bytes

    Examples
    --------
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> Image.open(io.BytesIO(image_png(np.ones((3, 10, 20)), size=40, title=None))).size
    (40, 44)
    """

    size = _check_size(size)
    return _image_frame(_check_input_image(image, "image"), size, title, colorbar_space)


def _image_frame(img, size, title, colorbar_space):
    """PNG bytes of a checked image (C x H x W or H x W in [0, 1]); see :func:`image_png`."""
    from PIL import Image, ImageDraw

    if img.ndim == 2:
        img = img[None]
    map_h = _map_height(img.shape[1:], size)
    channels = [_resize_values(c, size, map_h) for c in img]
    rgb = np.rint(np.clip(np.stack(channels, axis=-1), 0, 1) * 255).astype(np.uint8)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    top = _TITLE_H if title else 0
    bottom = _BAR_STRIP_H if colorbar_space else 0
    canvas = np.full((top + map_h + bottom, size, 3), 255, dtype=np.uint8)
    canvas[top:top + map_h] = rgb
    frame = Image.fromarray(canvas, mode="RGB")
    _draw_title(ImageDraw.Draw(frame), title, size, (0, 0, 0))
    out = io.BytesIO()
    frame.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _check_input_image(image, name):
    arr = _to_numpy(image, name)
    if arr.ndim == 3 and arr.shape[0] not in (1, 3):
        raise ValueError(f"{name} must be C x H x W with C = 1 or 3 (channels first), got shape "
                         f"{arr.shape}; for an H x W x C array pass arr.transpose(2, 0, 1)")
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ValueError(f"{name} must be one image, C x H x W or H x W, got shape {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
        raise ValueError(f"{name} must hold pixel values in [0, 1] (the image before the model's "
                         f"preprocessing), got values in [{np.nanmin(arr):.3g}, "
                         f"{np.nanmax(arr):.3g}]")
    return arr


# ----------------------------------------------------------------------------- the container

class Explorer(widgets.VBox):
    """What every explorer returns: a ``VBox`` whose controls drive precomputed frames.

    Display it like any widget. Besides its children it knows its parts:

    Attributes
    ----------
    controls : dict of str to ipywidgets.Widget
        The controls by role: ``"method"``, ``"mode"``, ``"step"``, and ``"std"`` (noise
        explorer) or ``"image"`` (compare explorer).
    links : tuple of ipywidgets.Link
        The browser-side links (``ipywidgets.jslink``) from each control (a drop-down's or
        toggle's ``index``, a slider's ``value``) to the ``selected_index`` of the stacks it
        drives. They are what makes the explorer work on a static page.
    frames : ipywidgets.Stack
        The outermost stack of frames (one child per method).

    Examples
    --------
    >>> explorer = cascading_explorer(result)                     # doctest: +SKIP
    >>> explorer.save_html("/tmp/explorer.html")                  # doctest: +SKIP
    """

    def __init__(self, children, controls, links, frames, **kwargs):
        super().__init__(children=list(children), **kwargs)
        self.controls = dict(controls)
        self.links = tuple(links)
        self.frames = frames

    def embed_state(self, drop_defaults=True):
        """The widget state a static page needs: this explorer, its parts and its links.

        Returns
        -------
        dict
            Model id -> serialized model, as ``ipywidgets.embed.dependency_state`` gives it
            (which includes every jslink between two of the explorer's widgets). Pass it as
            ``state=`` to ``ipywidgets.embed.embed_data`` or ``embed_minimal_html``.
        """
        from ipywidgets.embed import dependency_state

        return dependency_state([self], drop_defaults=drop_defaults)

    def save_html(self, path, title="sanity_lib explorer"):
        """Write the explorer as a standalone HTML page that works without a kernel.

        The page holds the explorer's state only (not every widget of the session). It
        loads the ipywidgets HTML manager script from a CDN when it opens.

        Returns
        -------
        path
        """
        from ipywidgets.embed import embed_minimal_html

        embed_minimal_html(path, views=[self], title=title, state=self.embed_state())
        return path


# ----------------------------------------------------------------------------- result checks

def _result_maps(result, name):
    """(maps, layers, n_images) of a SanityCheckResult, or a clear error naming ``name``."""
    maps, layers = getattr(result, "maps", None), getattr(result, "layers", None)
    if maps is None or layers is None:
        raise TypeError(f"{name} must be a SanityCheckResult (from sl.model_randomization_test "
                        f"or sl.data_randomization_test), got {type(result).__name__}")
    if not isinstance(maps, Mapping) or len(maps) == 0:
        raise ValueError(f"{name} holds no maps (it was computed with keep_maps=False, or with "
                         "no methods); rerun the test with keep_maps=True to explore its maps")
    layers = [str(layer) for layer in layers]
    if len(layers) < 2:
        raise ValueError(f"{name} has no randomized step (layers={layers}); an explorer needs "
                         "the original and at least one randomized step")
    n_images = set()
    for method, m in maps.items():
        if not isinstance(m, torch.Tensor) or m.dim() != 5 or m.shape[0] != len(layers):
            shape = tuple(m.shape) if hasattr(m, "shape") else type(m).__name__
            raise ValueError(f"{name}.maps[{method!r}] must be a tensor (steps + 1) x N x C x H "
                             f"x W with {len(layers)} steps (one per layer in {name}.layers), "
                             f"got {shape}")
        n_images.add(int(m.shape[1]))
    if len(n_images) != 1 or 0 in n_images:
        raise ValueError(f"{name}.maps hold different or zero numbers of images "
                         f"({sorted(n_images)}); every method must explain the same images")
    return maps, layers, n_images.pop()


def _pick_methods(methods, available, name="methods"):
    available = list(available)
    if methods is None:
        return available
    if isinstance(methods, str):
        methods = [methods]
    try:
        methods = list(methods)
    except TypeError:
        raise ValueError(f"{name} must be a list of method names, got {methods!r}") from None
    if not methods:
        raise ValueError(f"{name} is empty; pick at least one of {available}")
    unknown = [m for m in methods if m not in available]
    if unknown:
        raise ValueError(f"{name} contains {unknown}, which the result has no maps for; "
                         f"choose among {available}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"{name} lists a method twice: {methods}")
    return methods


def _normalized(maps_t, image, mode, where):
    """The normalized maps of one image at every step, (steps + 1) x H x W float numpy."""
    from sanity_lib import similarity

    sel = maps_t[:, image].detach().to("cpu")
    finite = torch.isfinite(sel).reshape(sel.shape[0], -1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(f"{where} has NaN or infinite values at steps {bad} for image "
                         f"{image}; such a map cannot be drawn")
    return similarity.normalize(sel, mode).numpy()


def _input_frame(result, image, input_image, n_images, size):
    """PNG of the input image shown beside the maps, or None for no input."""
    if input_image is False:
        return None
    if input_image is None:
        inputs = getattr(result, "inputs", None)
        if inputs is None:
            return None
        # Model inputs may be preprocessed: rescale per image to [0, 1] as plot_grid does.
        arr = _to_numpy(inputs[image], "result.inputs")
        lo, hi = arr.min(), arr.max()
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return _image_frame(_check_input_image(arr, "result.inputs"), size, "input", True)
    arr = _to_numpy(input_image, "input_image")
    if arr.ndim == 4:
        if arr.shape[0] != n_images:
            raise ValueError(f"input_image holds a batch of {arr.shape[0]} images but the result "
                             f"explains {n_images}; pass the batch the test ran on, or one "
                             "image C x H x W")
        arr = arr[image]
    return _image_frame(_check_input_image(arr, "input_image"), size, "input", True)


# ----------------------------------------------------------------------------- captions

_MODE_WORDS = {"abs": "absolute value", "diverging": "signed (diverging)"}


def _method_label(method):
    return plotting._label(method)


def _step_phrase(settings, layer, step):
    """What step ``step`` of a result means, in words."""
    if settings.get("test") == "data_randomization":
        return "model trained on the true labels" if step == 0 else "model trained on random labels"
    if step == 0:
        return "the trained model"
    mode = settings.get("mode")
    way = "up to" if settings.get("order") == "bottom_up" else "down to"
    if mode == "cascading":
        return f"randomized {way} {layer}"
    if mode == "independent":
        return f"only {layer} randomized"
    if mode == "gaussian_noise":
        return f"noise added {way} {layer}"
    return layer


def _fmt(value):
    """Two decimals, without a "-0.00" for tiny negative numbers."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


class _Similarity:
    """Look-ups of one metric in a result's table: per image and mean over images."""

    def __init__(self, result, method, metric):
        table = getattr(result, "table", None)
        self.metric = metric
        self.floor = (getattr(result, "noise_floor", None) or {}).get(metric)
        self.per_image, self.mean = {}, {}
        if table is None or len(table) == 0 or "metric" not in table:
            return
        rows = table[(table["method"] == method) & (table["metric"] == metric)]
        for step, image, value in zip(rows["step"], rows["image"], rows["value"]):
            self.per_image[(int(step), int(image))] = float(value)
        self.mean = {int(k): float(v) for k, v in rows.groupby("step")["value"].mean().items()}

    def text(self, step, image, n_images):
        value = self.per_image.get((step, image))
        if value is None:
            return ""
        name = "Spearman (abs)" if self.metric == "spearman_abs" else "Spearman (signed)"
        parts = [f"{name} with step 0: <b>{_fmt(value)}</b>"]
        if n_images > 1 and step in self.mean:
            parts.append(f"mean of {n_images} images: {_fmt(self.mean[step])}")
        if self.floor is not None:
            parts.append(f"noise floor: {_fmt(self.floor)}")
        return "<br>".join(parts)


def _caption(result, similarity, step, layer, n_steps, image, n_images):
    settings = getattr(result, "settings", None) or {}
    lines = [f"<b>{html.escape(layer)}</b> (step {step} of {n_steps})",
             html.escape(_step_phrase(settings, layer, step))]
    targets = getattr(result, "targets", None)
    if isinstance(targets, torch.Tensor) and targets.dim() == 2:
        lines.append(f"explains class {int(targets[step, image])}")
    if step > 0:
        lines.append(similarity.text(step, image, n_images))
    return _html(lines)


def _html(lines):
    body = "<br>".join(line for line in lines if line)
    return f"<div style='font-size: 12px; line-height: 1.35'>{body}</div>"


# ----------------------------------------------------------------------------- building blocks

class _Builder:
    """Makes an explorer's parts and collects its jslinks.

    Drop-downs and toggle buttons drive stacks by their ``index``, sliders by their
    ``value``. Sliders are ``IntSlider``s with a stack of labels as their read-out, not
    ``SelectionSlider``s: the latter's ``index`` of 0 is left out of an embedded state as a
    default (``drop_defaults``), but its browser-side default is ``""``, so a static page
    would start with every linked stack showing nothing.

    The many frames, stacks and captions share one ``Layout`` (and the captions one
    ``HTMLStyle``): every widget would otherwise bring its own, which adds a model per
    widget to the page's embedded state for nothing.
    """

    def __init__(self):
        self.links = []
        self.layout = widgets.Layout()
        self.caption_layout = widgets.Layout(width="250px", padding="0 0 0 10px")
        self.html_style = HTMLStyle()

    def link(self, control, stack):
        """Link the control to ``stack.selected_index`` in the browser; return the stack."""
        self.links.append(widgets.jslink((control, _trait(control)), (stack, "selected_index")))
        return stack

    def slider(self, labels, description):
        """An IntSlider over ``labels`` and a row with it and its read-out (a label stack)."""
        slider = widgets.IntSlider(value=0, min=0, max=len(labels) - 1, step=1,
                                   description=description, readout=False,
                                   continuous_update=True, disabled=len(labels) == 1,
                                   layout=widgets.Layout(width="380px"),
                                   style={"description_width": "80px"})
        readout = self.stack(self.html(f"<b>{html.escape(label)}</b>") for label in labels)
        return slider, widgets.HBox([slider, self.link(slider, readout)])

    def stack(self, children, layout=None):
        return widgets.Stack(children=list(children), selected_index=0,
                             layout=layout or self.layout)

    def frame(self, png):
        return widgets.Image(value=png, format="png", layout=self.layout)

    def html(self, text):
        return widgets.HTML(text, layout=self.layout, style=self.html_style)

    def captions(self, texts):
        return self.stack((self.html(t) for t in texts), layout=self.caption_layout)

    def hbox(self, children):
        return widgets.HBox(list(children), layout=self.layout)


def _trait(control):
    """The trait of ``control`` that selects a stack child."""
    return "value" if isinstance(control, widgets.IntSlider) else "index"


def _dropdown(methods):
    return widgets.Dropdown(options=[(_method_label(m), i) for i, m in enumerate(methods)],
                            value=0, description="method", disabled=len(methods) == 1)


def _toggle(modes):
    return widgets.ToggleButtons(options=[(_MODE_WORDS[m], i) for i, m in enumerate(modes)],
                                 value=0, description="map", disabled=len(modes) == 1,
                                 style={"button_width": "140px"})


def _describe(result):
    settings = getattr(result, "settings", None) or {}
    return str(settings.get("description") or "Sanity check")


def _header(title, image=None):
    text = f"<b>{html.escape(title)}</b>" + ("" if image is None else f", image {image}")
    return widgets.HTML(f"<div style='font-size: 13px'>{text}</div>")


# ----------------------------------------------------------------------------- explorers

def cascading_explorer(result, image=0, methods=None, modes=MODES, input_image=None,
                       size=DEFAULT_SIZE):
    """Explore one image's maps across the steps of a model randomization sweep.

    A layer slider walks through the steps (original, then each randomized layer group), a
    drop-down picks the method and a toggle shows the absolute-value or the signed
    (diverging) map. Beside each map, the step in words, the class explained, and the
    Spearman rank correlation with the original map (abs or signed, as shown) for this image
    and averaged over the result's images, with the noise floor.

    Every frame is precomputed (:func:`frame_png`) and the controls are linked in the
    browser (``ipywidgets.jslink``), so the explorer works on a static HTML page with no
    kernel. The payload grows with ``len(methods) x len(modes) x (steps + 1)`` frames of a
    few kB each.

    Parameters
    ----------
    result : SanityCheckResult
        From :func:`sanity_lib.model_randomization_test` (any mode) or
        :func:`sanity_lib.data_randomization_test`, computed with ``keep_maps=True``.
    image : int, default 0
        Which image of the result's batch.
    methods : list of str, optional
        A subset of ``result.maps``, in the order of the drop-down; default all.
    modes : sequence of {"abs", "diverging"}, default both
        The normalizations to offer (:func:`sanity_lib.similarity.normalize`).
    input_image : torch.Tensor, numpy.ndarray or False, optional
        The image shown beside the maps: C x H x W (C = 1 or 3) or the whole N x C x H x W
        batch, values in [0, 1]. Default: ``result.inputs[image]`` rescaled to [0, 1]
        (the model input, which may be preprocessed). False shows no input.
    size : int, default 196
        Width of each frame in pixels.

    Returns
    -------
    Explorer
        An ``ipywidgets.VBox``; ``controls`` holds ``"method"`` (Dropdown), ``"mode"``
        (ToggleButtons) and ``"step"`` (IntSlider over the steps, read out as the layer name).

    Raises
    ------
    ValueError
        ``image`` out of range, a method the result has no maps for, an unknown mode, a
        result without maps (``keep_maps=False``) or without randomized steps, NaN maps, an
        ``input_image`` of the wrong shape or outside [0, 1].

    Examples
    --------
    >>> import sanity_lib as sl
    >>> x, _ = sl.data.load_mnist("test")
    >>> result = sl.model_randomization_test(sl.models.mnist_cnn(), x[:2],
    ...     ["gradient", "guided_backprop"], progress=False)     # doctest: +SKIP
    >>> explorer = sl.course.widgets.cascading_explorer(result, image=1) # doctest: +SKIP
    >>> len(explorer.frames.children)                            # doctest: +SKIP
    2
    """
    maps, layers, n_images = _result_maps(result, "result")
    image = _check_index(image, n_images, "image", "the result")
    methods = _pick_methods(methods, maps)
    modes = _check_modes(modes)
    size = _check_size(size)
    input_png = _input_frame(result, image, input_image, n_images, size)

    method_ctl, mode_ctl = _dropdown(methods), _toggle(modes)
    make = _Builder()
    step_ctl, step_row = make.slider(layers, "layer")
    # methods -> modes -> (frames over steps | captions over steps)
    by_method = []
    for method in methods:
        by_mode = []
        for mode in modes:
            norm = _normalized(maps[method], image, mode, f"result.maps[{method!r}]")
            sim = _Similarity(result, method, f"spearman_{mode}")
            steps = range(len(layers))
            frames = make.stack(make.frame(frame_png(
                norm[s], mode, size, title=f"{_method_label(method)} | {layers[s]}"))
                for s in steps)
            captions = make.captions(_caption(result, sim, s, layers[s], len(layers) - 1, image,
                                              n_images) for s in steps)
            make.link(step_ctl, frames)
            make.link(step_ctl, captions)
            by_mode.append(make.hbox([frames, captions]))
        by_method.append(make.link(mode_ctl, make.stack(by_mode)))
    outer = make.link(method_ctl, make.stack(by_method))

    view = [outer] if input_png is None else [make.frame(input_png), outer]
    children = [_header(_describe(result), image), widgets.HBox([method_ctl, mode_ctl]),
                step_row, widgets.HBox(view)]
    return Explorer(children, {"method": method_ctl, "mode": mode_ctl, "step": step_ctl},
                    make.links, outer)


def _check_noise_results(results_by_std):
    if not isinstance(results_by_std, Mapping) or not results_by_std:
        raise ValueError("results_by_std must be a non-empty dict {std: SanityCheckResult}, one "
                         "sl.model_randomization_test(..., mode='gaussian_noise', std=std) per "
                         f"noise level; got {type(results_by_std).__name__}"
                         f"{' (empty)' if isinstance(results_by_std, Mapping) else ''}")
    items = []
    for std, result in results_by_std.items():
        if not isinstance(std, numbers.Real) or isinstance(std, bool) or not np.isfinite(std):
            raise ValueError(f"results_by_std keys must be the noise std values (numbers), got "
                             f"{std!r}")
        name = f"results_by_std[{std!r}]"
        maps, layers, n_images = _result_maps(result, name)
        settings = getattr(result, "settings", None) or {}
        if settings.get("mode", "gaussian_noise") != "gaussian_noise":
            raise ValueError(f"{name} comes from mode={settings['mode']!r}; the noise explorer "
                             "needs results of mode='gaussian_noise'")
        if settings.get("std") is not None and not np.isclose(settings["std"], std):
            raise ValueError(f"{name} was computed with std={settings['std']}, not {std}; key "
                             "each result by the std it was computed with")
        items.append((float(std), result, maps, layers, n_images))
    items.sort(key=lambda item: item[0])
    _, _, maps0, layers0, n0 = items[0]
    for std, _, maps, layers, n_images in items[1:]:
        if layers != layers0 or n_images != n0:
            raise ValueError(f"results_by_std[{std!r}] has layers {layers} and {n_images} images, "
                             f"but results_by_std[{items[0][0]!r}] has {layers0} and {n0}; "
                             "run every noise level on the same model, groups and images")
    return items


def noise_explorer(results_by_std, image=0, methods=None, modes=MODES, input_image=None,
                   size=DEFAULT_SIZE):
    """Explore the Gaussian-noise variant of the test: noise std x layer x method x mode.

    Like :func:`cascading_explorer`, with one more slider over the noise levels. Each
    frame is one image's map after noise of the chosen std was added cumulatively down to
    the chosen layer (the student report's extension, PAPER.md section 8).

    Parameters
    ----------
    results_by_std : dict of float to SanityCheckResult
        ``{std: sl.model_randomization_test(model, x, methods, mode="gaussian_noise",
        std=std)}``, all on the same model, groups and images, with ``keep_maps=True``.
        Shown in increasing std.
    image, methods, modes, input_image, size
        As in :func:`cascading_explorer`; ``methods`` must have maps in every result.

    Returns
    -------
    Explorer
        ``controls``: ``"method"``, ``"mode"``, ``"std"`` (IntSlider over the sorted std
        values) and ``"step"``.

    Raises
    ------
    ValueError
        An empty dict, keys that are not numbers, results of another mode or std, results
        with different layers or images, and everything :func:`cascading_explorer` rejects.

    Examples
    --------
    >>> results = {s: sl.model_randomization_test(model, x[:2], ["gradient"],
    ...                mode="gaussian_noise", std=s, progress=False)
    ...            for s in (0.1, 0.3)}                          # doctest: +SKIP
    >>> explorer = sl.course.widgets.noise_explorer(results)            # doctest: +SKIP
    """
    items = _check_noise_results(results_by_std)
    _, first, maps0, layers, n_images = items[0]
    image = _check_index(image, n_images, "image", "the results")
    methods = _pick_methods(methods, maps0)
    for std, _, maps, _, _ in items[1:]:
        missing = [m for m in methods if m not in maps]
        if missing:
            raise ValueError(f"methods {missing} have no maps in results_by_std[{std!r}]; pass "
                             "methods= that every result holds")
    modes = _check_modes(modes)
    size = _check_size(size)
    input_png = _input_frame(first, image, input_image, n_images, size)

    method_ctl, mode_ctl = _dropdown(methods), _toggle(modes)
    make = _Builder()
    std_ctl, std_row = make.slider([f"std {std:g}" for std, *_ in items], "noise")
    step_ctl, step_row = make.slider(layers, "layer")
    # methods -> modes -> stds -> (frames over steps | captions over steps)
    steps = range(len(layers))
    by_method = []
    for method in methods:
        by_mode = []
        for mode in modes:
            by_std = []
            for std, result, maps, _, _ in items:
                norm = _normalized(maps[method], image, mode,
                                   f"results_by_std[{std!r}].maps[{method!r}]")
                sim = _Similarity(result, method, f"spearman_{mode}")
                title = f"{_method_label(method)} | std {std:g} | "
                frames = make.stack(make.frame(frame_png(norm[s], mode, size,
                                                         title=title + layers[s]))
                                    for s in steps)
                captions = make.captions(_caption(result, sim, s, layers[s], len(layers) - 1,
                                                  image, n_images) for s in steps)
                make.link(step_ctl, frames)
                make.link(step_ctl, captions)
                by_std.append(make.hbox([frames, captions]))
            by_mode.append(make.link(std_ctl, make.stack(by_std)))
        by_method.append(make.link(mode_ctl, make.stack(by_mode)))
    outer = make.link(method_ctl, make.stack(by_method))

    view = [outer] if input_png is None else [make.frame(input_png), outer]
    settings = getattr(first, "settings", None) or {}
    kind = "relative " if settings.get("relative") else ""
    order = str(settings.get("order", "top_down")).replace("_", "-")
    header = _header(f"Gaussian noise on the parameters, {kind}std "
                     f"{', '.join(f'{std:g}' for std, *_ in items)} ({order})", image)
    children = [header, widgets.HBox([method_ctl, mode_ctl]), std_row, step_row,
                widgets.HBox(view)]
    return Explorer(children, {"method": method_ctl, "mode": mode_ctl, "std": std_ctl,
                               "step": step_ctl}, make.links, outer)


def _pick_images(images, n_images):
    if images is None:
        return list(range(n_images))
    if isinstance(images, numbers.Integral):
        images = [images]
    images = [_check_index(i, n_images, "images", "the result") for i in images]
    if not images:
        raise ValueError("images is empty; pass the indices of the images to show")
    return images



def compare_explorer(result, images=None, methods=None, modes=MODES, steps=None,
                     input_images=None, size=DEFAULT_SIZE):
    """Maps of several steps side by side, with an image slider: made for the data
    randomization test (the true-label model beside the random-label model).

    Each row shows the input and one frame per step (default: every step of the result;
    for :func:`sanity_lib.data_randomization_test` that is "true labels" and "random
    labels"); the slider walks through the images, the drop-down and the toggle pick the
    method and the normalization. Beside the frames, the Spearman rank correlation of each
    shown step with step 0 for that image.

    Parameters
    ----------
    result : SanityCheckResult
        Any result with ``keep_maps=True``.
    images : list of int, optional
        The images to offer, default all of the result's images (each adds
        ``len(methods) x len(modes) x len(steps)`` frames).
    methods, modes, size
        As in :func:`cascading_explorer`.
    steps : list of int or str, optional
        Step numbers or layer names to put side by side; default all.
    input_images : torch.Tensor, numpy.ndarray or False, optional
        The N x C x H x W batch in [0, 1] to show beside the maps; default the result's
        inputs rescaled per image; False shows none.

    Returns
    -------
    Explorer
        ``controls``: ``"method"``, ``"mode"`` and ``"image"`` (IntSlider over ``images``).

    Raises
    ------
    ValueError
        As :func:`cascading_explorer`; also ``images`` or ``steps`` out of range.

    Examples
    --------
    >>> result = sl.data_randomization_test(true_model, random_model, x[:4],
    ...                                     ["gradient"], progress=False)   # doctest: +SKIP
    >>> sl.course.widgets.compare_explorer(result)                                 # doctest: +SKIP
    """
    maps, layers, n_images = _result_maps(result, "result")
    images = _pick_images(images, n_images)
    methods = _pick_methods(methods, maps)
    modes = _check_modes(modes)
    steps = plotting._resolve_steps(steps, layers)
    size = _check_size(size)
    settings = getattr(result, "settings", None) or {}
    if settings.get("test") == "data_randomization":
        names = ["true labels" if s == 0 else layers[s] for s in steps]
    else:
        names = [layers[s] for s in steps]
    if input_images is not None and input_images is not False:
        batch = _to_numpy(input_images, "input_images")
        if batch.ndim != 4 or batch.shape[0] != n_images:
            raise ValueError(f"input_images must be the N x C x H x W batch the test ran on "
                             f"({n_images} images), got shape {batch.shape}")
    inputs = [_input_frame(result, i, input_images, n_images, size) for i in images]

    method_ctl, mode_ctl = _dropdown(methods), _toggle(modes)
    make = _Builder()
    image_ctl, image_row = make.slider([f"image {i}" for i in images], "image")
    # methods -> modes -> (one stack over images per step | captions over images)
    by_method = []
    for method in methods:
        by_mode = []
        for mode in modes:
            sim = _Similarity(result, method, f"spearman_{mode}")
            norm = {i: _normalized(maps[method], i, mode, f"result.maps[{method!r}]")
                    for i in images}
            columns = [make.link(image_ctl, make.stack(make.frame(frame_png(
                norm[i][s], mode, size, title=f"{_method_label(method)} | {name}"))
                for i in images)) for s, name in zip(steps, names)]
            captions = make.captions(_html([f"<b>image {i}</b>"] + [
                f"{html.escape(name)}: " + sim.text(s, i, n_images)
                for s, name in zip(steps, names) if s > 0 and sim.text(s, i, n_images)])
                for i in images)
            make.link(image_ctl, captions)
            by_mode.append(make.hbox(columns + [captions]))
        by_method.append(make.link(mode_ctl, make.stack(by_mode)))
    outer = make.link(method_ctl, make.stack(by_method))

    view = [outer]
    if inputs[0] is not None:
        view = [make.link(image_ctl, make.stack(make.frame(png) for png in inputs)), outer]
    children = [_header(_describe(result)), widgets.HBox([method_ctl, mode_ctl]), image_row,
                widgets.HBox(view)]
    return Explorer(children, {"method": method_ctl, "mode": mode_ctl, "image": image_ctl},
                    make.links, outer)
