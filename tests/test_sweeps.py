"""Sweeps as a user runs them: a multirun and its report, the joblib launcher, an Optuna search, TensorBoard."""

import csv
import json
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from conftest import read_summary, script

QUIET = "callbacks.progress_bar.refresh_rate=0"
REPORTED = ("status", "final_loss", "excess_loss", "steps", "wall_time_s", "prediction")


def job_folders(sweep):
    return sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def only_sweep(root):
    sweeps = list((root / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished 2 x 2 sweep, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("sweep")
    done = script(
        "train.py",
        "-m",
        "+experiment=sgd",
        "optimizer=sgd,adam",
        "optimizer.lr=0.01,0.1",
        "trainer.max_epochs=3",
        QUIET,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return only_sweep(root)


@pytest.mark.slow
def test_two_by_two_sweep_gives_four_complete_jobs(sweep):
    jobs = job_folders(sweep)
    assert [p.name for p in jobs] == [
        "0_optimizer=sgd,optimizer.lr=0.01",
        "1_optimizer=sgd,optimizer.lr=0.1",
        "2_optimizer=adam,optimizer.lr=0.01",
        "3_optimizer=adam,optimizer.lr=0.1",
    ]
    for job in jobs:
        summary = read_summary(job)
        assert summary["status"] == "completed" and summary["steps"] == 9
        assert list(job.glob("events.out.tfevents.*"))
        assert (job / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.slow
def test_report_lists_every_job_best_first(sweep):
    root = sweep.parents[3]
    done = script("report.py", cwd=root)  # no argument: the newest sweep under outputs/multirun
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(sweep / "report.csv")
    assert len(rows) == 4
    assert {"job", "optimizer", "optimizer.lr", *REPORTED} <= set(rows[0])
    excess = [float(r["excess_loss"]) for r in rows]
    assert excess == sorted(excess)
    for row in rows:
        summary = read_summary(sweep / row["job"])
        assert row["status"] == "completed"
        assert float(row["excess_loss"]) == pytest.approx(summary["excess_loss"])
        assert float(row["prediction"]) == pytest.approx(summary["predictions"]["after"][0])
        assert row["optimizer"] in ("sgd", "adam") and row["optimizer.lr"] in ("0.01", "0.1")
    markdown = (sweep / "report.md").read_text()
    assert "| optimizer | optimizer.lr |" in markdown and "prediction at x=4" in markdown
    assert markdown.count("| completed |") == 4
    assert "python scripts/train.py -m +experiment=sgd optimizer=sgd,adam" in markdown
    assert (sweep / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "| optimizer | optimizer.lr |" in done.stdout and str(sweep.name) in done.stdout


@pytest.mark.slow
def test_report_lists_diverged_and_failed_jobs_last(sweep, tmp_path):
    from linreg.sweep_report import report

    copy = shutil.copytree(sweep, tmp_path / sweep.name)
    diverged, failed, *_ = job_folders(copy)
    summary = read_summary(diverged)
    summary.update(status="diverged", final_loss=math.nan, excess_loss=math.nan)
    (diverged / "summary.json").write_text(json.dumps(summary))  # NaN, as json.dumps writes it
    (failed / "summary.json").unlink()
    (failed / ".hydra" / "overrides.yaml").unlink()  # its settings then come from the folder's name

    text = report(copy)
    rows = read_csv(copy / "report.csv")
    assert [r["status"] for r in rows] == ["completed", "completed", "diverged", "failed"]
    assert [r["job"] for r in rows[2:]] == [diverged.name, failed.name]
    assert rows[3]["optimizer"] == "sgd" and rows[3]["optimizer.lr"] == "0.1"
    assert rows[2]["excess_loss"] == rows[3]["excess_loss"] == "" and "no summary.json" in rows[3]["note"]
    assert "1 diverged" in text and "1 failed" in text
    assert (copy / "report.png").is_file() and "| failed |" in (copy / "report.md").read_text()


@pytest.mark.slow
def test_report_explains_a_missing_or_empty_folder_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in (
        (["nowhere"], "nowhere is not a folder"),
        (["empty"], "empty holds no jobs"),
        ([], "no sweep under outputs/multirun"),
    ):
        done = script("report.py", *args, cwd=tmp_path)
        assert done.returncode != 0
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_joblib_launcher_runs_the_jobs_in_parallel_workers(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the [sweep] extra: hydra-joblib-launcher")
    done = script(
        "train.py",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "+experiment=sgd",
        "optimizer=sgd,adam",
        "trainer.max_epochs=2",
        QUIET,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = only_sweep(tmp_path)
    jobs = job_folders(sweep)
    assert [p.name for p in jobs] == ["0_optimizer=sgd", "1_optimizer=adam"]
    assert all(read_summary(job)["status"] == "completed" for job in jobs)
    choices = yaml.safe_load((jobs[0] / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    assert choices["hydra/launcher"] == "joblib"


@pytest.mark.slow
def test_optuna_search_finds_a_best_value(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the [sweep] extra: hydra-optuna-sweeper")
    done = script(
        "train.py",
        "-m",
        "hparams_search=optuna",
        "+experiment=minibatch",
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=1",
        "data.samples=256",
        QUIET,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = only_sweep(tmp_path)
    jobs = job_folders(sweep)
    assert len(jobs) == 3
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer.momentum", "data.batch_size"}
    excess = [read_summary(job)["excess_loss"] for job in jobs]
    assert results["best_value"] == pytest.approx(min(excess))
    assert "Best value" in done.stdout + done.stderr
    for job in jobs:  # the search's SGD has momentum, whatever optimizer the experiment picks
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert config["optimizer"]["_target_"] == "torch.optim.SGD" and 0 <= config["optimizer"]["momentum"] <= 0.95
        assert 1e-4 <= config["optimizer"]["lr"] <= 0.3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_serves_every_job_with_its_metrics(sweep, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}/data"
    names = {p.name for p in job_folders(sweep)}
    log = (tmp_path / "tensorboard.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(sweep),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, runs = time.monotonic() + 60, []
        while set(runs) != names:  # answers first, then loads the runs
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"TensorBoard still lists {runs} after 60 s"
            time.sleep(0.5)
            try:
                runs = get_json(f"{base}/runs")
            except OSError:
                continue
        tags = get_json(f"{base}/plugin/scalars/tags")
        for name in names:
            assert {"train/cost", "train/loss", "final_loss", "excess_loss"} <= set(tags[name])

        experiment = get_json(f"{base}/plugin/hparams/experiment", {"experimentName": ""})
        assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= {"final_loss", "excess_loss"}
        assert {"optimizer/lr", "optimizer/name"} <= {h["name"] for h in experiment["hparamInfos"]}
        groups = get_json(
            f"{base}/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 100,
            },
        )
        assert {g["name"] for g in groups["sessionGroups"]} == names
        for group in groups["sessionGroups"]:
            metrics = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            summary = read_summary(sweep / group["name"])
            assert metrics["final_loss"] == pytest.approx(summary["final_loss"], rel=1e-6)
            assert metrics["excess_loss"] == pytest.approx(summary["excess_loss"], rel=1e-6, abs=1e-12)
            assert group["hparams"]["optimizer/name"] in ("SGD", "Adam")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
