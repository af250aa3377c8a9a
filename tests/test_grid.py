"""The exhaustive search (seed section 1.4): the seed's table, streamed batches, the files a search leaves."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import compose_config, script

from linreg.errors import ConfigError
from linreg.grid import search

PNG = b"\x89PNG\r\n\x1a\n"
TRAINING_KEYS = {"experiment", "status", "final_loss", "excess_loss", "weight", "bias", "predictions", "optimum"}
TRAINING_KEYS |= {"epochs", "steps", "wall_time_s", "device"}


def seed_table():
    """The seed's loop, as written: w over numpy.arange(0.0, 4.1, 0.1), MSE = sum of the three losses / 3."""
    table = []
    for w in np.arange(0.0, 4.1, 0.1):
        l_sum = 0
        for x, y in zip([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]):
            l_sum += (x * w - y) * (x * w - y)
        table.append((float(w), float(l_sum / 3)))
    return table


def read_grid(folder):
    with (folder / "grid.csv").open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def image_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events.Tags()["images"]


def test_grid_reproduces_the_seed_table(tmp_path, capsys):
    folder = tmp_path / "run"
    result = search(compose_config(["+experiment=grid"], folder))
    rows = read_grid(folder)
    expected = seed_table()
    assert len(rows) == len(expected) == 41
    for row, (w, mse) in zip(rows, expected):
        assert row["w"] == pytest.approx(w, abs=1e-12)
        assert row["mse"] == pytest.approx(mse, rel=1e-12, abs=1e-15)
    by_w = {round(row["w"], 6): row["mse"] for row in rows}
    assert by_w[1.0] == pytest.approx(14 / 3, rel=1e-15) and by_w[2.0] == 0.0
    assert result["best"] == {"weight": [2.0], "bias": None, "loss": 0.0}
    assert result["optimum"] == {"weight": [2.0], "bias": None, "loss": 0.0}
    assert result["excess_loss"] == 0.0 and result["candidates"] == 41
    assert result["predictions"] == {"x": [4.0], "before": None, "after": [8.0]}
    assert TRAINING_KEYS <= set(result) and result["epochs"] == result["steps"] == 0
    assert json.loads((folder / "summary.json").read_text()) == result
    out = capsys.readouterr().out
    assert "4.66667" in out and "<- best" in out and "== grid: completed" in out


def test_streamed_search_equals_the_whole_set_at_once(tmp_path):
    overrides = [
        "+experiment=grid",
        "data=synthetic",
        "data.samples=50000",
        "data.batch_size=4096",  # 13 batches
        "model.bias=true",
        "grid.w={start:1.8,stop:2.2,step:0.01}",
        "grid.b={start:0.8,stop:1.2,step:0.02}",
    ]
    cfg = compose_config(overrides, tmp_path / "run")
    result = search(cfg)

    from hydra.utils import instantiate

    data = instantiate(cfg.data)
    data.setup("fit")
    assert len(data.train_dataloader()) == 13 and result["samples"] == 50_000
    x, y = data.x_train.double(), data.y_train.double()
    w_axis = torch.from_numpy(np.arange(1.8, 2.2, 0.01))  # 41 values: numpy's arange, rounding and all
    b_axis = torch.from_numpy(np.arange(0.8, 1.2, 0.02))
    w, b = (t.reshape(-1) for t in torch.meshgrid(w_axis, b_axis, indexing="ij"))
    whole = torch.cat([((x * w[i : i + 100] + b[i : i + 100] - y) ** 2).mean(0) for i in range(0, len(w), 100)])
    rows = read_grid(tmp_path / "run")
    assert len(rows) == result["candidates"] == len(w_axis) * len(b_axis)
    assert [r["mse"] for r in rows] == pytest.approx(whole.tolist(), rel=1e-12)
    best = int(whole.argmin())
    assert result["best"]["weight"][0] == pytest.approx(w[best].item(), abs=1e-12)
    assert result["best"]["bias"][0] == pytest.approx(b[best].item(), abs=1e-12)
    assert result["best"]["loss"] == pytest.approx(whole[best].item(), rel=1e-12)
    assert 0 <= result["excess_loss"] < 1e-3  # the grid's best is near the closed-form optimum


def test_bias_without_a_bias_range_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"model.bias=true but grid.b=null: give grid.b a range"):
        search(compose_config(["+experiment=grid", "model.bias=true"], tmp_path))


def test_grid_over_several_features_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="use data.features=1"):
        search(compose_config(["+experiment=grid", "data=synthetic", "data.features=2"], tmp_path))


@pytest.mark.slow
def test_grid_runs_from_the_command_line(tmp_path):
    done = script("train.py", "+experiment=grid", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    folders = [p.parent for p in tmp_path.glob("outputs/*/*/summary.json")]
    assert len(folders) == 1 and folders[0].name.endswith("_grid")
    folder = folders[0]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["best"]["weight"] == [2.0]
    assert len(read_grid(folder)) == 41
    picture = folder / "grid.png"
    assert picture.read_bytes()[:8] == PNG and 5_000 < picture.stat().st_size < 500_000
    assert image_tags(folder) == ["grid"]
    assert "<- best" in done.stdout and f"tensorboard --logdir {folder}" in done.stdout
    assert "GPU available" not in done.stdout + done.stderr
