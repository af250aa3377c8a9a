"""Interruption, resume and determinism: a stopped run continues to exactly the uninterrupted result."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, compose_config, read_summary, script_env
from omegaconf import OmegaConf

from linreg.batches import EpochPermutation
from linreg.errors import RunInterrupted
from linreg.train import train

# shuffled batches and momentum: resuming must restore both the data order and the optimizer state; chunks of 5
# optimizer steps per training step, so that the run stops mid-epoch, at the chunk that reaches step 50: 52
RUN = ["+experiment=minibatch", "optimizer=momentum", "optimizer.lr=0.01", "trainer.max_epochs=4",
       "data.steps_per_call=5"]


def numbers(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "wall_time_s"}


@pytest.mark.slow  # three runs end to end, one stopped by a signal and resumed
def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path):
    whole = train(compose_config(RUN, tmp_path / "whole"))
    stopped = tmp_path / "stopped"
    kill = ["+callbacks.sigterm._target_=signals.SigtermAtStep", "+callbacks.sigterm.step=50"]  # epoch 1 of 0-3
    with pytest.raises(RunInterrupted, match="resume="):
        train(compose_config(RUN + kill, stopped))
    partial = read_summary(stopped)
    assert partial["status"] == "interrupted" and partial["steps"] == 52
    assert (stopped / "checkpoints" / "last.ckpt").is_file()

    # resume reads the stopped run's .hydra/config.yaml; an in-process run has none, so save it as Hydra would
    (stopped / ".hydra").mkdir()
    OmegaConf.save(compose_config(RUN, stopped), stopped / ".hydra" / "config.yaml")
    resumed = train(compose_config([f"resume={stopped}"], tmp_path / "resumed"))
    assert resumed["status"] == "completed" and resumed["steps"] == whole["steps"]
    assert resumed["predictions"]["before"] == partial["predictions"]["after"]  # it starts where the other stopped
    resumed["predictions"]["before"] = whole["predictions"]["before"]
    assert numbers(resumed) == numbers(whole)
    # the resumed run records the config that really ran, so resuming it in turn continues the same experiment
    recorded = OmegaConf.load(tmp_path / "resumed" / ".hydra" / "config.yaml")
    assert recorded.name == "minibatch" and recorded.data.source == "synthetic" and recorded.optimizer.momentum == 0.9


def test_starting_from_a_checkpoint_predicts_from_its_weights(run_train):
    first, folder = run_train(["+experiment=sgd", "trainer.max_epochs=5"], "first")
    again, _ = run_train(["+experiment=sgd", "trainer.max_epochs=8", f"ckpt_path={folder}/checkpoints/last.ckpt"])
    assert again["predictions"]["before"] == first["predictions"]["after"]
    assert again["steps"] == 24


def test_same_seed_gives_identical_numbers_and_other_seeds_other_orders(tmp_path):
    run = [*RUN, "trainer.max_epochs=2"]  # two epochs: the second one's order is drawn anew
    first = train(compose_config(run, tmp_path / "a"))
    second = train(compose_config(run, tmp_path / "b"))
    assert numbers(first) == numbers(second)
    other = train(compose_config([*run, "seed=1"], tmp_path / "c"))
    assert other["weight"] != first["weight"]
    orders = [EpochPermutation(100, True, seed).indices() for seed in (0, 1)]
    assert not torch.equal(*orders)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_a_summary_then_exits_non_zero(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "+experiment=minibatch", "trainer.max_epochs=100000",
         "callbacks.progress_bar.refresh_rate=0"],
        cwd=tmp_path, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("outputs/*/*/checkpoints/*.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted at step" in err and "resume=" in err and "Traceback" not in err
    folder = next(tmp_path.glob("outputs/*/*"))
    summary = read_summary(folder)
    assert summary["status"] == "interrupted" and summary["steps"] > 0
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert list(folder.glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_two_runs_started_together_get_distinct_complete_folders(tmp_path):
    args = [sys.executable, str(ROOT / "scripts" / "train.py"), "+experiment=sgd", "trainer.max_epochs=5",
            "callbacks.progress_bar.refresh_rate=0"]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    folders = sorted(tmp_path.glob("outputs/*/*"))
    assert len(folders) == 2
    for folder in folders:
        assert read_summary(folder)["status"] == "completed"
        assert len(list(folder.glob("events.out.tfevents.*"))) >= 1


def test_unique_dir_never_hands_out_a_taken_folder(tmp_path):
    from linreg.resolvers import unique_dir

    made = [unique_dir(str(tmp_path / "run")) for _ in range(3)]
    assert [p.rsplit("/", 1)[1] for p in made] == ["run", "run-2", "run-3"]


def test_resume_needs_a_run_folder(tmp_path):
    from linreg.errors import ConfigError

    with pytest.raises(ConfigError, match="resume=.*config.yaml"):
        train(compose_config([f"resume={tmp_path}"], tmp_path / "x"))
