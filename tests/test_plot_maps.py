"""sl.plotting.plot_maps: the figure of chapter 1 (methods in rows, (image, view) in columns)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sanity_lib import models, plotting, saliency, similarity  # noqa: E402


@pytest.fixture(scope="module")
def maps_and_inputs():
    torch.manual_seed(0)
    model, x = models.mnist_cnn(), torch.rand(3, 1, 28, 28)
    maps = {m: saliency.explain(model, x, m) for m in ("gradient", "gradcam")}
    return maps, x


def test_each_panel_shows_the_normalized_map_with_its_colours(maps_and_inputs):
    maps, x = maps_and_inputs
    columns = [(2, "abs"), (0, "diverging")]
    fig = plotting.plot_maps(maps, x, columns=columns, titles=["a", "b"])
    grid = np.array(fig.axes[:3 * 2]).reshape(3, 2)          # input row + 2 methods
    for r, method in enumerate(maps, start=1):
        for j, (i, mode) in enumerate(columns):
            (image,) = grid[r, j].get_images()
            expected = similarity.normalize(maps[method][i:i + 1], mode)[0].numpy()
            np.testing.assert_allclose(image.get_array(), expected)
            assert image.get_clim() == ((0.0, 1.0) if mode == "abs" else (-1.0, 1.0))
            assert image.get_cmap().name == ("gray" if mode == "abs" else "RdBu_r")
    np.testing.assert_allclose(grid[0, 0].get_images()[0].get_array(), x[2, 0].numpy())
    assert [grid[0, j].get_title() for j in range(2)] == ["a", "b"]
    assert grid[1, 0].get_ylabel() == "Gradient" and grid[2, 0].get_ylabel() == "GradCAM"
    assert len(fig.axes) == 3 * 2 + 2, "one colour bar per view"
    plt.close(fig)


def test_default_columns_and_labels(maps_and_inputs):
    maps, x = maps_and_inputs
    fig = plotting.plot_maps(maps, modes=("abs", "diverging"), row_labels={"gradcam": "CAM"})
    assert len(fig.axes) == 2 * 6 + 2                          # no input row: 2 x (3 x 2)
    assert fig.axes[6].get_ylabel() == "CAM"
    assert fig.axes[1].get_title() == "image 0\ndiverging"
    plt.close(fig)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(maps={}), TypeError, "non-empty dict"),
    (dict(maps={"gradient": np.zeros((1, 28, 28))}), TypeError, "must be a tensor"),
    (dict(columns=[(5, "abs")]), ValueError, "image index must be an int from 0 to 2"),
    (dict(columns=[(0, "signed")]), ValueError, "mode='signed' is not known"),
    (dict(modes="signed"), ValueError, "modes=.*not known"),
    (dict(titles=["only one"], modes=("abs", "diverging")), ValueError, "titles holds 1"),
    (dict(inputs=torch.rand(2, 1, 28, 28)), ValueError, "inputs must be a tensor"),
])
def test_bad_arguments_say_what_is_wrong(maps_and_inputs, kwargs, error, match):
    maps, _ = maps_and_inputs
    kwargs = {"maps": maps, **kwargs}
    with pytest.raises(error, match=match):
        plotting.plot_maps(**kwargs)
