"""The pictures: cost landscapes with a path, fitted curves, and their PNG files and TensorBoard images."""

import lightning as L
import numpy as np
import pytest
import torch
from conftest import compose_config
from torch.utils.tensorboard import SummaryWriter

from linreg import figures, optimum
from linreg.model import Regressor

PNG = b"\x89PNG\r\n\x1a\n"


def assert_picture(path, colours: int = 100):
    """A real PNG with something drawn in it: many distinct colours, not a blank or one-colour canvas."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG
    assert path.stat().st_size < 400_000  # modest dpi: small files
    pixels = imread(path)
    distinct = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert len(distinct) > colours, len(distinct)


def image_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return sorted(events.Tags()["images"])


def line(samples=500, features=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g)
    return x, x.sum(1, keepdim=True) * 2 + 1 + 0.3 * torch.randn(samples, 1, generator=g)


def descent(x, y, steps=30, lr=0.1, bias=True):
    """A hand-made gradient-descent path from (w, b) = (-1, 3): the kind of thing Trajectory.path holds."""
    w, b, path = -1.0, (3.0 if bias else 0.0), []
    for _ in range(steps):
        path.append(torch.tensor([w, b] if bias else [w]))
        r = x[:, 0] * w + b - y[:, 0]
        w -= lr * 2 * (r * x[:, 0]).mean().item()
        if bias:
            b -= lr * 2 * r.mean().item()
    return path


def test_cost_from_moments_is_the_mse():
    x, y = line()
    m = optimum.moments(x, y)
    for w, b in [(0.0, 0.0), (2.0, 1.0), (-3.5, 7.25)]:
        direct = ((x.double() * w + b - y.double()) ** 2).mean().item()
        assert optimum.line_cost(m, w, b) == pytest.approx(direct, rel=1e-12)


def test_landscape_with_bias_is_saved_as_png_and_tensorboard_image(tmp_path):
    x, y = line()
    path = torch.stack(descent(x, y))
    writer = SummaryWriter(str(tmp_path))
    figure = figures.landscape(x, y, path, bias=True)
    assert len(figure.axes) == 3  # surface, contours, colour bar
    saved = figures.save(figure, tmp_path, "landscape", writer)
    writer.close()
    assert saved == tmp_path / "landscape.png"
    assert_picture(saved)
    assert image_tags(tmp_path) == ["landscape"]


def test_landscape_without_bias_is_the_cost_curve_with_the_path(tmp_path):
    x, y = line()
    figure = figures.landscape(x, y, descent(x, y, bias=False), bias=False)
    (curve, path, start, best) = figure.axes[0].lines
    assert len(path.get_xdata()) == 30 and start.get_xdata()[0] == -1.0
    assert best.get_xdata()[0] == pytest.approx(((x * y).sum() / (x * x).sum()).item(), rel=1e-6)
    assert_picture(figures.save(figure, tmp_path, "landscape"), colours=30)


def test_landscape_of_several_features_is_none():
    x, y = line(features=2)
    assert figures.landscape(x, y, [], bias=True) is None


def test_landscape_of_a_trained_regressor_path(tmp_path):
    """The path a real run records (Trajectory.path, on a noisy line with a bias) draws as it is."""
    from linreg.compat import quiet_lightning
    from linreg.train import build
    from linreg.trajectory import recorded_path

    quiet_lightning()

    cfg = compose_config(["+experiment=minibatch", "trainer.max_epochs=1", "~callbacks.checkpoint"], tmp_path)
    L.seed_everything(0, verbose=False)
    data, model, trainer = build(cfg)
    trainer.fit(model, datamodule=data)
    path = recorded_path(trainer)
    assert len(path) > 5 and path[0].tolist() == [0.0, 0.0]  # the start, then every 4th step
    figure = figures.landscape(data.x_train, data.y_train, path, bias=True)
    assert_picture(figures.save(figure, tmp_path, "landscape"))


@pytest.mark.parametrize("features", [1, 3])
def test_fitted_curve(tmp_path, features):
    torch.manual_seed(0)
    x = torch.rand(5000, features) * 4 - 2
    y = x.square().sum(1, keepdim=True)
    model = Regressor(in_features=features, depth=2, hidden=8, activation="tanh")
    figure = figures.fitted_curve(model, x, y)
    assert len(figure.axes[0].collections[0].get_offsets()) == 2000  # a subsample of the data
    assert_picture(figures.save(figure, tmp_path, "fitted_curve"), colours=30)


@pytest.mark.slow  # the everyday loop keeps to a minute
def test_landscape_leaves_out_the_points_of_a_path_that_ran_away(tmp_path):
    """A diverged run's path: points past float32's range of costs would make matplotlib's contour levels NaN."""
    x, y = line()
    path = [*descent(x, y, steps=5), torch.tensor([1e20, 5e19]), torch.tensor([float("nan")] * 2)]
    figure = figures.landscape(x, y, path, bias=True)
    drawn = next(ln for ln in figure.axes[1].lines if ln.get_label().startswith("path"))
    assert len(drawn.get_xdata()) == 5
    assert_picture(figures.save(figure, tmp_path, "landscape"))
