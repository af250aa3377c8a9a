"""Beyond one process: DDP on CPU (gloo), DDP inside a sweep, submitit jobs, and (where there is one) a GPU.

The CPU tests run scripts/train.py as a user would, since Lightning's DDP launcher re-runs the command line
for every extra rank. Each costs a few seconds of imports per process, so they train for few epochs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF, QUIET, compose_config, read_summary, scalar_tags, script, script_env

DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
SPAWN_CPU = ["trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2"]
MINIBATCH = ["+experiment=minibatch", "trainer.max_epochs=3", "trainer.log_every_n_steps=1"]
REPORT = "== minibatch: completed"


def run_folders(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "outputs").glob("*/*") if p.is_dir() and p.parent.name != "multirun")


def event_writers(folder: Path) -> set[str]:
    """The processes that wrote TensorBoard events here: events.out.tfevents.<time>.<host>.<pid>.<n>."""
    return {f.name.split(".")[-2] for f in folder.glob("events.out.tfevents.*")}


def check(done, *needles: str) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for needle in needles:
        assert needle in done.stdout


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_follows_the_single_process_trajectory(tmp_path, run_train):
    done = script("train.py", *MINIBATCH, *DDP_CPU, *QUIET, cwd=tmp_path, timeout=120)
    check(done)
    # Lightning re-runs the script for rank 1 with hydra.run.dir set to rank 0's folder: one run folder
    folders = run_folders(tmp_path)
    assert len(folders) == 1, folders
    ddp = folders[0]
    assert (ddp / "train_ddp_process_1.log").is_file()  # rank 1's Hydra log: it ran in this folder
    # only rank 0 reports and writes: one console report, one summary, events from one process
    assert done.stdout.count(REPORT) == 1, done.stdout
    assert [p.name for p in tmp_path.rglob("summary.json")] == ["summary.json"]
    assert len(event_writers(ddp)) == 1, sorted(f.name for f in ddp.glob("events.*"))
    assert len(list(tmp_path.rglob("last.ckpt"))) == 1

    result = read_summary(ddp)
    single, single_dir = run_train(MINIBATCH, "single")
    assert result["status"] == "completed"
    assert (result["epochs"], result["steps"]) == (single["epochs"], single["steps"]) == (3, 96)
    # the same global batches in the same order: the same trajectory, up to float32 rounding of the all-reduce
    assert result["weight"] == pytest.approx(single["weight"], abs=1e-5)
    assert result["bias"] == pytest.approx(single["bias"], abs=1e-5)
    assert result["final_loss"] == pytest.approx(single["final_loss"], rel=1e-5)
    ddp_tags, single_tags = scalar_tags(ddp), scalar_tags(single_dir)
    for tag in ("params/w", "params/b"):
        assert len(ddp_tags[tag]) == 96
        assert ddp_tags[tag] == pytest.approx(single_tags[tag], abs=1e-5)
    # train/cost is the mean over the whole epoch (sync_dist), not rank 0's half of it
    assert ddp_tags["train/cost"] == pytest.approx(single_tags["train/cost"], rel=1e-5)


def test_a_global_batch_that_does_not_divide_by_the_devices_is_refused(tmp_path, capsys):
    """In-process with a real 2-device DDP trainer (nothing launched until fit): the loader refuses the batch,
    and the command line turns that into one line on stderr and exit code 2. (Run for real, both ranks
    print the line and `python scripts/train.py ... data.batch_size=33` exits with 2.)"""
    from linreg.cli import run_reporting_errors
    from linreg.train import build

    cfg = compose_config(["+experiment=minibatch", "data.batch_size=33", *DDP_CPU], tmp_path)
    data, _, trainer = build(cfg)
    assert trainer.world_size == 2
    data.trainer = trainer
    with pytest.raises(SystemExit) as exit_:
        run_reporting_errors(data.train_dataloader)
    assert exit_.value.code == 2
    message = capsys.readouterr().err
    assert "data.batch_size=33" in message and "multiple of 2" in message
    data.batch_size = 32
    assert len(data.train_dataloader()) == 32  # 1024 samples in global batches of 32, 16 per rank


@pytest.mark.slow
def test_divergence_on_one_rank_stops_every_rank_cleanly(tmp_path):
    """At step 2 rank 0's share has loss 110 and rank 1's 89 (seed 0, lr 1.9): a bound of 100 is crossed on
    rank 0 only. All ranks must stop together, with the diverged summary and exit code 3, not a gloo crash."""
    done = script(
        "train.py", "+experiment=minibatch", "trainer.max_epochs=1", "optimizer.lr=1.9", "divergence_bound=100",
        "trainer.log_every_n_steps=1", *DDP_CPU, *QUIET, cwd=tmp_path, timeout=120,
    )
    summaries = list(tmp_path.rglob("summary.json"))
    assert done.returncode == 3, done.stderr[-3000:]
    assert "training diverged at step 2" in done.stderr
    assert len(summaries) == 1
    assert read_summary(summaries[0].parent)["status"] == "diverged"


@pytest.mark.slow
def test_ddp_spawn_sweep_makes_one_sweep_folder_with_complete_jobs(tmp_path):
    """With trainer=ddp every extra rank would re-run the whole `-m` command line; ddp_spawn starts the
    ranks from inside each job. The two jobs differ only in how the gradient is found, so under DDP too
    the analytic gradient (all-reduced by hand) must follow autograd's (all-reduced by DDP)."""
    done = script(
        "train.py", "-m", "+experiment=minibatch", "trainer.max_epochs=2", *SPAWN_CPU,
        "model.gradient=autograd,analytic", *QUIET, cwd=tmp_path, timeout=150,
    )
    check(done)
    sweeps = sorted((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    assert not run_folders(tmp_path)
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1"], jobs
    assert done.stdout.count(REPORT) == 2
    summaries = []
    for job in jobs:
        assert (job / ".hydra" / "config.yaml").is_file()
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert list(job.glob("events.out.tfevents.*"))
        summaries.append(read_summary(job))
    autograd, analytic = summaries
    for result in summaries:
        assert result["status"] == "completed"
        assert result["weight"][0] > 1.0  # the trained weights came back from the worker processes (from 0)
        assert result["excess_loss"] < 0.05
    assert analytic["weight"] == pytest.approx(autograd["weight"], abs=1e-5)
    assert analytic["bias"] == pytest.approx(autograd["bias"], abs=1e-5)
    assert (autograd["epochs"], autograd["steps"]) == (2, 64)


PROCESS_GROUP_AT_EXIT = """
import atexit, sys, tempfile
import torch.distributed as dist
from linreg.callbacks import ProcessGroupEndsBeforeExit
# exit handlers run last-registered first: this one runs after whatever setup registers
atexit.register(lambda: print("alive at exit:", dist.is_initialized()))
dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
for _ in range(int(sys.argv[1])):  # a second fit in the same process registers nothing more
    ProcessGroupEndsBeforeExit().setup(None, None, "fit")
"""


@pytest.mark.slow
@pytest.mark.parametrize("fits", [0, 2])
def test_a_ddp_process_destroys_its_process_group_before_the_interpreter_shuts_down(tmp_path, fits):
    """Left alive, gloo's threads may still drop an all-reduce's tensors while the interpreter shuts down,
    which aborts the process (see ProcessGroupEndsBeforeExit)."""
    done = subprocess.run([sys.executable, "-c", PROCESS_GROUP_AT_EXIT, str(fits)], cwd=tmp_path, env=script_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"alive at exit: {fits == 0}"]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher is not installed (pip install -e '.[cluster]')",
)
def test_submitit_local_sweep_completes_every_job(tmp_path):
    done = script(
        "train.py", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=3",
        "+experiment=minibatch", "trainer.max_epochs=1", "optimizer.lr=0.01,0.05", *QUIET,
        cwd=tmp_path, timeout=200,
    )
    check(done)
    sweeps = sorted((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(jobs) == 2, jobs
    for job in jobs:
        result = read_summary(job)
        assert result["status"] == "completed"
        assert result["steps"] == 32
    assert (sweeps[0] / ".submitit").is_dir()  # the jobs ran through submitit, not the basic launcher


def test_slurm_launcher_config_matches_tasks_to_devices():
    """Composes hydra/launcher=slurm (no cluster needed): one task per device, as Lightning's SLURM
    environment expects, on trainer.num_nodes nodes."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp", "trainer.devices=4",
                       "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert cfg.hydra.launcher.partition == "gpu"
    assert cfg.hydra.launcher.tasks_per_node == 4
    assert cfg.hydra.launcher.gpus_per_node == 4
    assert cfg.hydra.launcher.nodes == 2
    assert cfg.trainer.strategy == "ddp"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # the default trainer=cpu: one task
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert (cfg.hydra.launcher.nodes, cfg.hydra.launcher.tasks_per_node) == (1, 1)


# ---- on a machine with a CUDA GPU (scripts/gpu_check.sh runs these) ----

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class BatchWatcher:
    """Records where the loader's tensors and every batch live (as a Lightning callback)."""

    def __init__(self):
        self.storages, self.batches = set(), []

    def as_callback(self):
        import lightning as L

        watcher = self

        class Watch(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                loader = trainer.train_dataloader
                watcher.storages.add(loader.x.untyped_storage().data_ptr())
                x, _ = batch
                watcher.batches.append(
                    (x.device.type, x.untyped_storage().data_ptr() == loader.x.untyped_storage().data_ptr())
                )

        return Watch()


@needs_cuda
@pytest.mark.parametrize("shuffle", [False, True])
def test_gpu_run_moves_the_data_to_the_device_once(tmp_path, shuffle):
    from hydra.utils import instantiate

    from linreg.train import build

    cfg = compose_config(
        ["+experiment=minibatch", "trainer=gpu", "trainer.max_epochs=2", f"data.shuffle={shuffle}"], tmp_path
    )
    data, model, trainer = build(cfg)
    watcher = BatchWatcher()
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[watcher.as_callback()], enable_checkpointing=False)
    trainer.fit(model, datamodule=data)
    assert trainer.train_dataloader.x.device.type == "cuda"
    assert len(watcher.storages) == 1  # the same device tensors serve every batch of every epoch
    assert len(watcher.batches) == 64
    assert {device for device, _ in watcher.batches} == {"cuda"}
    views = {same for _, same in watcher.batches}
    assert views == ({False} if shuffle else {True})  # index_select copies on the GPU; slices are views


@needs_cuda
def test_sgd_experiment_on_gpu_gives_the_seed_result(run_train):
    import seed_reference as ref

    path = ref.stochastic_gradient_descent()
    summary, _ = run_train(["+experiment=sgd", "trainer=gpu"])
    assert summary["device"].startswith("cuda")
    assert summary["steps"] == len(path)
    assert summary["weight"][0] == pytest.approx(path[-1], rel=1e-5)
    assert summary["predictions"]["after"][0] == pytest.approx(4 * path[-1], rel=1e-5)


@needs_cuda
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_gpu_mixed_precision_reaches_the_optimum(run_train, precision):
    summary, _ = run_train(["+experiment=minibatch", "trainer=gpu", f"trainer.precision={precision}"])
    assert summary["status"] == "completed"
    assert summary["excess_loss"] < 1e-2
