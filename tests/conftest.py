"""Shared fixtures: compose the real configs in-process, and run the real scripts as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from linreg.resolvers import register

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
QUIET = ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false"]

torch.set_num_threads(1)  # two-core CI machines stall when every test process takes both cores
register()


def compose_config(overrides: list[str], output_dir: Path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, *QUIET, f"output_dir={output_dir}"])


@pytest.fixture
def run_train(tmp_path):
    """Train in this process with the given overrides; returns (summary, output folder)."""
    from linreg.train import train

    def run(overrides: list[str], name: str = "run"):
        folder = tmp_path / name
        return train(compose_config(overrides, folder)), folder

    return run


def script_env(**extra: str) -> dict:
    """The environment for script subprocesses: one torch thread each."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def script(name: str, *args: str, cwd: Path, timeout: float = 180, env: dict | None = None):
    """Run scripts/<name> as a user would, with one torch thread; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        cwd=cwd,
        env=script_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def scalar_tags(folder: Path) -> dict[str, list[float]]:
    """The scalar series in a run folder's TensorBoard events, by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
