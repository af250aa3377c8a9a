"""scripts/train.py as a user runs it: real processes, real run folders, real event files."""

import pytest
import seed_reference as ref
from conftest import read_summary, scalar_tags, script

REFERENCE_W = {"gd": ref.gradient_descent()[-1], "sgd": ref.stochastic_gradient_descent()[-1]}


def hparams_plugin_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return set(events.PluginTagToContent("hparams"))


def only_run_folder(root):
    folders = [p.parent for p in root.glob("outputs/*/*/summary.json")]
    assert len(folders) == 1, folders
    return folders[0]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["gd", "sgd", "minibatch"])
def test_experiment_runs_from_the_command_line(experiment, tmp_path):
    done = script(
        "train.py", f"+experiment={experiment}", "callbacks.progress_bar.refresh_rate=0", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = only_run_folder(tmp_path)
    assert folder.name.endswith(f"_{experiment}")
    summary = read_summary(folder)
    assert summary["experiment"] == experiment and summary["status"] == "completed"
    assert summary["excess_loss"] == pytest.approx(summary["final_loss"] - summary["optimum"]["loss"])
    if experiment in REFERENCE_W:
        assert summary["weight"][0] == pytest.approx(REFERENCE_W[experiment], rel=1e-6)
    else:  # a noisy line: close to, but not at, the least-squares fit
        assert 0 <= summary["excess_loss"] < 0.01
        assert summary["weight"][0] == pytest.approx(summary["optimum"]["weight"][0], abs=0.1)
    assert "predict (after training)" in done.stdout and f"tensorboard --logdir {folder}" in done.stdout
    assert "GPU available" not in done.stdout + done.stderr and "Tip" not in done.stdout + done.stderr
    tags = scalar_tags(folder)
    for tag in ("train/loss", "train/cost", "train/grad_norm", "params/w", "final_loss", "excess_loss"):
        assert tag in tags, tag
    assert tags["final_loss"][-1] == pytest.approx(summary["final_loss"], rel=1e-6)
    assert len(tags["train/cost"]) == summary["epochs"]
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= hparams_plugin_tags(folder)
    assert (folder / ".hydra" / "config.yaml").is_file()
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow
def test_two_job_multirun_gives_two_complete_folders(tmp_path):
    done = script(
        "train.py",
        "-m",
        "+experiment=sgd",
        "optimizer=sgd,adam",
        "trainer.max_epochs=5",
        "callbacks.progress_bar.refresh_rate=0",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sweeps = list((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0_optimizer=sgd", "1_optimizer=adam"]
    finals = [read_summary(job)["final_loss"] for job in jobs]
    assert finals[0] != finals[1]
    for job in jobs:
        assert read_summary(job)["steps"] == 15
        assert "train/loss" in scalar_tags(job)


@pytest.mark.slow
def test_help_lists_the_groups_and_writes_nothing(tmp_path):
    done = script("train.py", "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "optimizer: adam, lbfgs, momentum, sgd" in done.stdout
    assert not (tmp_path / "outputs").exists()
