"""Your own data: standardisation, splits, metrics, L-BFGS, CSV/Parquet reading and predict.py."""

from __future__ import annotations

import csv
import gzip
import json
import math
import pickle
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import compose_config, read_summary, scalar_tags, script
from omegaconf import OmegaConf

from linreg import metrics, sources, validate
from linreg.data import RegressionData
from linreg.errors import ConfigError, DivergedError
from linreg.prediction import load_model, predict
from linreg.sweep_jobs import load_jobs
from linreg.sweep_ranking import ranked

FEATURES = ["f0", "f1", "f2", "f3", "f4"]
SCALES = np.array([1e-2, 1e-1, 1.0, 1e1, 1e3])


def badly_scaled_table(rows: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five features sharing one factor (correlation above 0.9), with scales from 1e-2 to 1e3 and offsets."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(rows, 1))
    x = (common + 0.25 * rng.normal(size=(rows, len(FEATURES)))) * SCALES + np.array([5.0, -3.0, 100.0, 0.0, 2e3])
    y = x @ (np.array([3.0, -2.0, 1.5, 0.4, 0.002]) / SCALES * 0.1) + 7.0 + rng.normal(size=rows)
    return x, y


def write_csv(path, x, y, names=FEATURES, target="y"):
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow([*names, target])
        out.writerows([*map(repr, row), repr(t)] for row, t in zip(x.tolist(), y.tolist()))
    return path


def least_squares(x, y):
    """Weights, bias and MSE of the best line, by numpy's SVD solver on the raw float64 data."""
    a = np.c_[x, np.ones(len(x))]
    theta = np.linalg.lstsq(a, y, rcond=None)[0]
    return theta[:-1], theta[-1], float(np.mean((a @ theta - y) ** 2))


@pytest.fixture
def table(tmp_path):
    x, y = badly_scaled_table()
    correlation = np.corrcoef(x.T)
    assert correlation[np.triu_indices(len(FEATURES), 1)].min() > 0.9
    assert x.std(0).max() / x.std(0).min() > 1e4
    return write_csv(tmp_path / "table.csv", x, y), x, y


def csv_run(path, *extra):
    return ["data=csv", f"data.path={path}", f"data.feature_columns=[{','.join(FEATURES)}]", *extra]


def test_csv_defaults_reach_the_least_squares_loss_on_a_badly_scaled_table(table, run_train):
    path, x, y = table
    summary, _ = run_train(csv_run(path))
    _, _, best = least_squares(x, y)
    assert summary["status"] == "completed"
    assert summary["final_loss"] <= best * 1.01


def test_the_raw_table_defeats_plain_gradient_descent(table, run_train):
    """Why standardisation is the default for data=csv: raw, the same run diverges."""
    from linreg.errors import DivergedError

    path, _, _ = table
    with pytest.raises(DivergedError):
        run_train(csv_run(path, "data.standardize=false"))


def test_lbfgs_ends_at_the_optimum_in_original_units(table, run_train):
    path, x, y = table
    summary, folder = run_train(csv_run(path, "optimizer=lbfgs", "data.batch_size=full", "trainer.max_epochs=20"))
    weight, bias, best = least_squares(x, y)
    assert summary["final_loss"] <= best * (1 + 1e-4)
    # the model trained on standardised features; summary.json speaks in the table's units
    np.testing.assert_allclose(summary["weight"], weight, rtol=2e-3)
    assert summary["bias"][0] == pytest.approx(bias, rel=2e-3)
    # the statistics travel in the checkpoint, as plain tensors
    state = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    np.testing.assert_allclose(state["x_mean"].numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(state["x_std"].numpy(), x.std(0), rtol=1e-4)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["model.gradient=analytic", "data.batch_size=full"], "model.gradient=autograd"),
        (["data.batch_size=32"], "use data.batch_size=full"),
        (["data.batch_size=full", "trainer.precision=16-mixed"], "mixed precision"),
    ],
)
def test_lbfgs_is_refused_where_it_cannot_work(extra, message, tmp_path):
    cfg = compose_config(["data=synthetic", "optimizer=lbfgs", *extra], tmp_path)
    with pytest.raises(ConfigError, match=message):
        validate.check(cfg)


def test_metrics_match_a_hand_computation():
    y = torch.tensor([[1.0], [2.0], [3.0], [6.0]])
    x = torch.tensor([[1.0], [3.0], [3.0], [5.0]])  # predictions of the identity: residuals 0, 1, 0, -1
    got = metrics.regression(lambda v: v, x, y)
    spread = (1 - 3) ** 2 + (2 - 3) ** 2 + (3 - 3) ** 2 + (6 - 3) ** 2
    assert got == pytest.approx({"mse": 0.5, "rmse": math.sqrt(0.5), "mae": 0.5, "r2": 1 - 2 / spread})
    assert math.isnan(metrics.regression(lambda v: v, x, torch.ones(4, 1))["r2"])


def test_summary_metrics_per_split_and_validation_in_tensorboard(table, run_train):
    path, _, _ = table
    split = ["data.val_fraction=0.2", "data.test_fraction=0.1"]
    summary, folder = run_train(csv_run(path, *split, "trainer.max_epochs=3"))
    data = RegressionData("csv", val_fraction=0.2, test_fraction=0.1, path=str(path), feature_columns=FEATURES,
                          target_column="y")
    data.setup()
    weight, bias = np.array(summary["weight"]), summary["bias"][0]
    assert set(summary["metrics"]) == {"train", "val", "test"}
    for name, (xs, ys) in data.splits().items():
        residual = xs.double().numpy() @ weight + bias - ys.double().numpy()[:, 0]
        mse = float(np.mean(residual**2))
        spread = float(np.sum((ys.double().numpy() - ys.double().numpy().mean()) ** 2))
        expected = {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(residual))),
                    "r2": 1 - mse * len(ys) / spread}
        assert summary["metrics"][name] == pytest.approx(expected, rel=1e-3)
    assert summary["metrics"]["train"]["mse"] == pytest.approx(summary["final_loss"])
    tags = scalar_tags(folder)
    for tag in ("val/loss", "val/rmse", "val/mae", "val/r2"):
        assert len(tags[tag]) == 3  # one per epoch
    assert tags["val_rmse"] == pytest.approx([summary["metrics"]["val"]["rmse"]], rel=1e-5)  # the HParams entry


def test_splits_are_seeded_and_disjoint():
    options = dict(samples=100, features=2, weight=1.0, bias=0.0, noise=0.1)
    data = RegressionData("synthetic", val_fraction=0.2, test_fraction=0.1, seed=3, **options)
    data.setup()
    sizes = {name: len(x) for name, (x, _) in data.splits().items()}
    assert sizes == {"train": 70, "val": 20, "test": 10}
    rows = torch.cat([x for x, _ in data.splits().values()])
    assert len(torch.unique(rows, dim=0)) == 100
    again = RegressionData("synthetic", val_fraction=0.2, test_fraction=0.1, seed=3, **options)
    again.setup()
    assert torch.equal(again.x_test, data.x_test)
    with pytest.raises(ConfigError, match="leave nothing to train on"):
        RegressionData("lesson", val_fraction=0.5, test_fraction=0.5)


def test_parquet_gzip_and_excel_bom_give_the_same_tensors(table, tmp_path):
    path, x, y = table
    expected = sources.from_csv(str(path), FEATURES, "y")
    pq.write_table(pa.table({**{n: x[:, i] for i, n in enumerate(FEATURES)}, "y": y}), tmp_path / "t.parquet")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(path.read_bytes()))
    (tmp_path / "gzip-named.csv").write_bytes(gzip.compress(path.read_bytes()))  # known by content, not name
    for other in ("t.parquet", "bom.csv", "t.csv.gz", "gzip-named.csv"):
        got = sources.from_csv(str(tmp_path / other), FEATURES, "y")
        assert all(torch.equal(a, b) for a, b in zip(got, expected)), other
    assert expected[0].dtype == torch.float32 and expected[0].shape == (1000, 5)


BAD_FILES = {
    "duplicate header": (b"x,x,y\n1,2,3\n", ["x"], "more than once"),
    "UTF-16": ("x,y\n1,2\n".encode("utf-16"), ["x"], "UTF-16 text: save it as UTF-8"),
    "Latin-1": ("x,t\xe9,y\n1,2,3\n".encode("latin-1"), ["x"], "not UTF-8 text"),
    "zip": (b"PK\x03\x04rest", ["x"], "zip archive"),
    "target among features": (b"x,y\n1,2\n", ["x", "y"], "also in data.feature_columns"),
    "no features": (b"x,y\n1,2\n", [], "data.feature_columns is empty"),
    "repeated feature": (b"x,y\n1,2\n", ["x", "x"], "more than once"),
    "empty cell": (b"x,y\n1,2\n3,\n", ["x"], "line 3, column 'y': '' is not a number"),
    "float32 overflow": (b"x,y\n1,2\n1e39,1\n", ["x"], "line 3, column 'x': '1e39' is too large for float32"),
    "semicolons": (b"x;y\n1;2\n", ["x"], "seem separated by ';'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_in_one_line(case, tmp_path):
    content, features, message = BAD_FILES[case]
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as error:
        sources.from_csv(str(path), features, "y")
    assert "\n" not in str(error.value)


def test_bad_parquet_files_are_refused_in_one_line(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1.0, math.nan], "s": ["a", "b"], "y": [1, 2]}), path)
    cases = {
        "['nope'] not in the table's columns": (path, ["nope"]),
        "row 2, column 'x': nan is not a finite float32 number": (path, ["x"]),
        "column 's': holds string values, not numbers": (path, ["s"]),
    }
    (tmp_path / "cut.parquet").write_bytes(path.read_bytes()[:200])
    cases["not a readable Parquet file"] = (tmp_path / "cut.parquet", ["x"])
    for message, (file, features) in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as error:
            sources.from_csv(str(file), features, "y")
        assert "\n" not in str(error.value)


def test_rows_of_blanks_or_bare_commas_are_skipped(tmp_path):
    """Spreadsheets leave such rows at the end; pyarrow refuses or reads them as empty cells."""
    from linreg import tables

    path = tmp_path / "sheet.csv"
    path.write_text("id,x,y\na,1,2\n   \nb,3,4\n,,\n,,\n")
    x, y = sources.from_csv(str(path), ["x"], "y")
    assert x.tolist() == [[1], [3]] and y.tolist() == [[2], [4]]
    whole = tables.read(str(path), ["x"], keep_all=True)  # as predict.py reads it: every column
    assert whole.to_pydict() == {"id": ["a", "b"], "x": [1.0, 3.0], "y": [2, 4]}


def test_numbers_as_column_names(tmp_path):
    """Hydra reads data.feature_columns=[1,2] as numbers; a header's names are text."""
    path = tmp_path / "n.csv"
    path.write_text("1,2,3\n1,2,3\n4,5,7\n")
    x, y = sources.from_csv(str(path), [2, 1], 3)
    assert x.tolist() == [[2, 1], [5, 4]] and y.tolist() == [[3], [7]]


def test_report_ranks_by_validation_loss(tmp_path):
    sweep = tmp_path / "sweep"
    for number, (excess, val) in enumerate([(0.1, 5.0), (0.3, 4.0), (0.2, 6.0)]):
        job = sweep / f"{number}_optimizer.lr={number}"
        job.mkdir(parents=True)
        summary = {"status": "completed", "excess_loss": excess, "final_loss": 1.0, "metrics": {"val": {"mse": val}}}
        (job / "summary.json").write_text(json.dumps(summary))
    assert [job.number for job in ranked(load_jobs(sweep))] == [1, 0, 2]
    with pytest.raises(ConfigError, match="single run, not a sweep: its result is"):
        load_jobs(sweep / "0_optimizer.lr=0")


def test_predict_in_process_writes_parquet_and_refuses_bad_requests(table, run_train, tmp_path):
    path, _, _ = table
    _, folder = run_train(csv_run(path, "optimizer=lbfgs", "data.batch_size=full", "trainer.max_epochs=1"))
    ckpt = folder / "checkpoints" / "last.ckpt"
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    crafted = tmp_path / "crafted.ckpt"
    crafted.write_bytes(pickle.dumps({"state_dict": Payload()}))
    cases = {
        "missing column": (ckpt, [*FEATURES[:4], "nope"], "['nope'] not in the header"),
        "other width": (ckpt, FEATURES[:3], "takes 5 feature(s) but data.feature_columns names 3"),
        "crafted checkpoint": (crafted, FEATURES, "not a checkpoint of this project's model"),
        "not a checkpoint": (path, FEATURES, "not a checkpoint of this project's model"),
    }
    for name, (checkpoint, columns, message) in cases.items():
        cfg = {"ckpt_path": str(checkpoint), "output": str(tmp_path / "p.csv"),
               "data": {"path": str(path), "feature_columns": columns}}
        with pytest.raises(ConfigError, match=re.escape(message)):
            predict(OmegaConf.create(cfg))
        assert not marker.exists() and not (tmp_path / "p.csv").exists(), name
    cfg = {"ckpt_path": str(ckpt), "output": str(tmp_path / "p.parquet"), "data": {"path": str(path),
           "feature_columns": FEATURES}}
    assert predict(OmegaConf.create(cfg))["rows"] == 1000
    written = pq.read_table(tmp_path / "p.parquet")
    assert written.column_names == [*FEATURES, "y", "prediction"]
    model = load_model(str(ckpt))
    expected = model(sources.from_csv(str(path), FEATURES, "y")[0]).detach().reshape(-1).numpy()
    np.testing.assert_allclose(written.column("prediction").to_numpy(), expected, rtol=1e-6)


@pytest.mark.slow
def test_predict_script_writes_the_input_columns_and_predictions(table, run_train, tmp_path):
    path, x, _ = table
    summary, folder = run_train(csv_run(path, "optimizer=lbfgs", "data.batch_size=full", "trainer.max_epochs=5"))
    new = tmp_path / "new.csv"
    with new.open("w") as handle:  # no target column, an extra text column, features in another order
        handle.write("id," + ",".join(reversed(FEATURES)) + "\n")
        for i, row in enumerate(x[:4]):
            handle.write(f"row{i}," + ",".join(repr(v) for v in reversed(row.tolist())) + "\n")
    done = script(
        "predict.py", f"ckpt_path={folder}/checkpoints/last.ckpt", f"data.path={new}",
        f"data.feature_columns=[{','.join(FEATURES)}]", "output=out.csv", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 4 predictions to out.csv" in done.stdout
    with (tmp_path / "out.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", *reversed(FEATURES), "prediction"]
    assert [r["id"] for r in rows] == ["row0", "row1", "row2", "row3"]
    expected = x[:4] @ np.array(summary["weight"]) + summary["bias"][0]
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], expected, rtol=1e-4)
    assert summary["predictions"]["after"][0] == pytest.approx(4.0 * sum(summary["weight"]) + summary["bias"][0],
                                                               rel=1e-4)


def test_a_one_sample_validation_split_has_no_r2(run_train):
    _, folder = run_train(["data.val_fraction=0.34", "trainer.max_epochs=2"])
    summary = read_summary(folder)  # JSON has no NaN: null
    assert summary["status"] == "completed" and summary["metrics"]["val"]["r2"] is None


def test_hand_gradient_and_autograd_agree_on_standardised_features(run_train):
    common = ["data=synthetic", "data.features=3", "data.standardize=true", "data.batch_size=full",
              "trainer.max_epochs=30", "optimizer.lr=0.1"]
    analytic, _ = run_train([*common, "model.gradient=analytic"], name="analytic")
    autograd, _ = run_train([*common, "model.gradient=autograd"], name="autograd")
    np.testing.assert_allclose(analytic["weight"], autograd["weight"], rtol=1e-5)
    assert analytic["final_loss"] == pytest.approx(autograd["final_loss"], rel=1e-5)


def test_a_target_in_hundreds_of_thousands_trains_with_the_defaults(tmp_path, run_train):
    """The target is scaled too: a price-like target does not trip divergence_bound or need another lr."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 2)) * [1000.0, 3.0] + [2000.0, 5.0]
    y = x @ np.array([300.0, 20000.0]) + 1e5 + 5e4 * rng.normal(size=500)
    path = write_csv(tmp_path / "prices.csv", x, y, names=["area", "rooms"], target="price")
    summary, _ = run_train(["data=csv", f"data.path={path}", "data.feature_columns=[area,rooms]",
                            "data.target_column=price", "trainer.max_epochs=20"])
    assert summary["status"] == "completed"
    assert summary["final_loss"] <= least_squares(x, y)[2] * 1.01


def test_a_model_without_bias_stays_without_intercept(table, run_train):
    """Centring would give it an intercept after all: it is only scaled, and predicts 0 at x = 0."""
    path, _, _ = table
    summary, _ = run_train(csv_run(path, "model.bias=false", "predict.x=[0.0]", "trainer.max_epochs=2"))
    assert summary["bias"] is None and summary["predictions"]["after"] == [0.0]


def test_divergence_is_judged_in_the_optimisers_units_when_standardising(tmp_path, run_train):
    """A target whose best MSE is above divergence_bound in its own units still completes; a too-large lr on the
    standardised problem is diverged, with a stable lr for the features the optimiser sees (not the raw ones)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 2)) * [1000.0, 0.01] + [5000.0, 1.0]
    y = x @ np.array([3000.0, 5e6]) + 3e6 * rng.normal(size=400)  # noise alone: an MSE of about 9e12
    path = write_csv(tmp_path / "big.csv", x, y, names=["a", "b"], target="t")
    run = ["data=csv", f"data.path={path}", "data.feature_columns=[a,b]", "data.target_column=t"]
    summary, _ = run_train([*run, "trainer.max_epochs=10"], "fine")
    assert summary["status"] == "completed" and summary["final_loss"] > 1e12
    with pytest.raises(DivergedError) as diverged:
        run_train([*run, "data.batch_size=full", "optimizer.lr=5", "trainer.max_epochs=50"], "too_fast")
    message = str(diverged.value)
    assert "sizes differ" not in message  # standardised features have one size
    stable = float(re.search(r"stable only for lr < (?:about )?([0-9.e+-]+)", message).group(1))
    assert 0.1 < stable < 5  # about 2/L of standardised data (L = 2 * largest eigenvalue of the correlation ~ 2..4)
