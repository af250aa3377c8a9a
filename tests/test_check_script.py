"""scripts/gpu_check.sh end to end on a machine without a GPU: stub ``python3`` and ``nvidia-smi`` commands
stand in for the GPU machine, so its control flow, budget, gating and results are checked here.

The stub python3 records every call, fakes scripts/train.py (a summary.json per run folder), pytest (a JUnit
file) and bench.py, answers the card check, and hands everything else (the import check, the comparison) to
the real interpreter. Named without "gpu" or "cuda" so that the GPU machine's `-k "gpu or cuda"` leaves it out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT

STUB_PYTHON = f"""#!{sys.executable}
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["STUB_CALLS"], "a") as calls:
    keys = ("PYTHONPATH", "HYDRA_FULL_ERROR")
    calls.write(json.dumps({{"args": args, **{{k: os.environ.get(k) for k in keys}}}}) + "\\n")
if args[:1] == ["-c"] and "cuda" in args[1]:
    print("torch 2.11.0 CUDA 12.8 NVIDIA H200")
    print("gpus 1")
    sys.exit(0)
if args and args[0].endswith("scripts/train.py"):
    options = dict(a.split("=", 1) for a in args[1:] if "=" in a)
    folder = Path(options["hydra.run.dir"])
    folder.mkdir(parents=True)
    if folder.name in os.environ.get("STUB_FAIL", "").split(","):
        sys.exit("stub: this run fails")
    gpu = "gpu" in (options.get("trainer"), options.get("trainer.accelerator")) or "resume" in options
    stopped = "+callbacks.sigterm.step" in options
    shift = 1e-6 if gpu else 0.0
    summary = {{"status": "interrupted" if stopped else "completed", "device": "cuda:0" if gpu else "cpu",
               "epochs": 20, "steps": 300 if stopped else 640, "final_loss": 0.25 + shift, "excess_loss": 1e-4,
               "weight": [2.0 + 2 * shift], "bias": 1.0 - 3 * shift, "wall_time_s": 1.0}}
    (folder / "summary.json").write_text(json.dumps(summary))
    sys.exit(130 if stopped else 0)
if args[:2] == ["-m", "pytest"]:
    xml = next(a.split("=", 1)[1] for a in args if a.startswith("--junitxml="))
    Path(xml).write_text('<testsuites><testsuite name="pytest" tests="1" failures="0"/></testsuites>')
    sys.exit(0)
if args and args[0].endswith("scripts/bench.py"):
    print("| batch | steps/epoch | raw epoch s |")
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *args])
"""

STUB_NVIDIA_SMI = """#!/bin/sh
echo "name, memory.total [MiB], driver_version"
echo "NVIDIA H200, 143771 MiB, 570.00"
"""

RESULTS = {"steps.txt", "gpu_check.log", "pytest.xml", "summaries.json", "runs.tar.gz"}


def run_check(tmp_path: Path, gpu: bool, **env: str) -> tuple[subprocess.CompletedProcess, Path, list[dict]]:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "python3").write_text(STUB_PYTHON)
    if gpu:
        (stubs / "nvidia-smi").write_text(STUB_NVIDIA_SMI)
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    out, calls = tmp_path / "out", tmp_path / "calls.jsonl"
    path = f"{stubs}:{os.environ['PATH']}"
    if not gpu:  # leave out any real nvidia-smi
        path = ":".join(p for p in path.split(":") if not (Path(p) / "nvidia-smi").exists())
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "BUDGET", "HYDRA_FULL_ERROR")}
    environment.update(PATH=path, OUT=str(out), RUNS=str(tmp_path / "runs"), STUB_CALLS=str(calls),
                       GPU_SITE=str(tmp_path / "site"), OMP_NUM_THREADS="1", **env)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=environment, capture_output=True,
                          text=True, timeout=300)
    return done, out, [json.loads(line) for line in calls.read_text().splitlines()]


def statuses(out: Path) -> dict[str, str]:
    lines = (out / "steps.txt").read_text().splitlines()
    return {line.split()[0]: line for line in lines if not line.startswith("total ")}


@pytest.mark.slow
def test_check_script_runs_every_step_and_goes_on_after_a_failure(tmp_path):
    done, out, calls = run_check(tmp_path, gpu=True, STUB_FAIL="gd_gpu")
    assert done.returncode == 1, done.stdout + done.stderr
    steps = statuses(out)
    assert list(steps) == [
        "imports", "card", "pytest", "sgd_cpu", "sgd_gpu", "gd_cpu", "gd_gpu", "minibatch_cpu", "minibatch_gpu",
        "minibatch_k1_gpu",
        "minibatch64_cpu", "minibatch64_gpu", "bf16_gpu", "ddp1_gpu", "ddp2_gpu", "stop_gpu", "resume_gpu",
        "summaries", "tarball", "bench_gpu", "bench_gpu_order",
    ]
    assert "failed" in steps["gd_gpu"] and "exit 1" in steps["gd_gpu"]
    assert "skipped" in steps["ddp2_gpu"] and "needs 2 GPUs (1 here)" in steps["ddp2_gpu"]
    others = {name: line for name, line in steps.items() if name not in ("gd_gpu", "ddp2_gpu")}
    assert all(line.split()[1] == "ok" for line in others.values()), others
    assert "stub: this run fails" in (out / "gpu_check.log").read_text()  # the failed step's output is kept
    assert "total " in (out / "steps.txt").read_text().splitlines()[-1]

    # at most 8 files, none in a folder; the run folders travel in one tarball
    assert {p.name for p in out.iterdir()} == RESULTS and all(p.is_file() for p in out.iterdir())
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"./sgd_gpu/summary.json", "./resumed_gpu/summary.json", "./stop_gpu/summary.json"} <= names

    pairs = json.loads((out / "summaries.json").read_text())["pairs"]
    assert pairs["sgd"]["max_weight_diff"] == pytest.approx(3e-6) and pairs["sgd"]["loss_diff"] == pytest.approx(1e-6)
    assert pairs["gd"]["missing"] == ["gd_gpu"]
    assert pairs["ddp2"]["missing"] == ["ddp2_gpu"]
    assert pairs["resume"]["max_weight_diff"] == 0 and pairs["resume"]["statuses"] == ["completed", "completed"]
    assert pairs["precision64"]["max_weight_diff"] == pytest.approx(3e-6)

    # every python call is the plain python3 with src and the carried packages on its path
    for call in calls:
        assert call["PYTHONPATH"].startswith(f"{ROOT}/src:{tmp_path}/site"), call
    trains = [c for c in calls if c["args"][0] == "scripts/train.py"]
    assert len(trains) == 13  # ddp2_gpu needs two GPUs
    for call in trains:
        assert call["HYDRA_FULL_ERROR"] == ("0" if "+callbacks.sigterm.step=300" in call["args"] else "1")
        if not any(a.startswith("resume=") for a in call["args"]):  # resume= takes the stopped run's settings
            assert {"~callbacks.progress_bar", "+trainer.enable_progress_bar=false"} <= set(call["args"])
    assert calls[-1]["args"][0] == "scripts/bench.py" and "--max-steps" in calls[-1]["args"]


@pytest.mark.slow
def test_check_script_without_a_card_skips_the_card_steps_and_keeps_to_its_budget(tmp_path):
    done, out, calls = run_check(tmp_path, gpu=False, BUDGET="100")
    assert done.returncode == 1  # the card check failed
    steps = statuses(out)
    assert steps["imports"].split()[1] == "ok" and steps["card"].split()[1] == "failed"
    for name in ("sgd_gpu", "minibatch64_gpu", "ddp1_gpu", "stop_gpu", "bench_gpu"):
        assert "skipped" in steps[name] and "needs card (failed)" in steps[name]
    assert "needs stop_gpu (skipped)" in steps["resume_gpu"]
    assert "skipped" in steps["pytest"] and "budget: " in steps["pytest"]  # its 180 s do not fit in 100
    assert steps["sgd_cpu"].split()[1] == "ok"
    assert not any(c["args"][:2] == ["-m", "pytest"] for c in calls)
    assert {p.name for p in out.iterdir()} <= RESULTS


@pytest.mark.slow
def test_prepare_copies_the_missing_packages_into_one_folder(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--prepare"], capture_output=True,
                          text=True, env={**os.environ, "GPU_SITE": str(site), "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert {"hydra", "omegaconf", "antlr4"} <= {p.name for p in site.iterdir()}
    found = subprocess.run([sys.executable, "-c", "import hydra, omegaconf, antlr4; print(hydra.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert found.stdout.startswith(str(site)), found.stdout + found.stderr
