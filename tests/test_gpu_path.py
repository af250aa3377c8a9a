"""The GPU path, tested on CPU where it can be: trainer settings as Lightning resolves them, state that must
follow the module's device and dtype, the per-epoch order on the device, and Lightning's GPU warning.
The tests marked needs_cuda run on a CUDA machine (scripts/gpu_check.sh runs them)."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from conftest import compose_config, read_summary, scalar_tags
from omegaconf import OmegaConf

from linreg import validate
from linreg.errors import ConfigError, RunInterrupted

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def check(tmp_path, *overrides: str) -> None:
    validate.check(compose_config(list(overrides), tmp_path))


@pytest.fixture
def cuda_host(monkeypatch):
    """Pretend torch sees ``n`` CUDA GPUs, for the checks that only count them."""

    def gpus(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return gpus


# ---- defect 2: precision aliases reach the analytic-gradient check ----


@pytest.mark.parametrize("precision", [16, "16", "bf16", "16-mixed", "bf16-mixed"])
def test_analytic_gradient_is_refused_under_every_name_of_mixed_precision(tmp_path, precision):
    with pytest.raises(ConfigError, match="model.gradient=analytic .* is (16|bf16)-mixed"):
        check(tmp_path, "+experiment=gd", f"trainer.precision={precision}")


@pytest.mark.parametrize("precision", [32, 64, "64", "32-true", "64-true", "bf16-true"])
def test_analytic_gradient_runs_in_true_precision(tmp_path, precision):
    check(tmp_path, "+experiment=gd", f"trainer.precision={precision}")


def test_precision_names_are_lightnings():
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS_CONVERSION

    assert validate.PRECISION_ALIASES == _PRECISION_INPUT_STR_ALIAS_CONVERSION
    assert set(validate.PRECISIONS) == set(get_args(_PRECISION_INPUT_STR))


# ---- issue 10: trainer settings Lightning would refuse with a traceback ----


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.precision=8", "trainer.precision=8 is not allowed: use one of 32-true, 64-true"),
        ("trainer.precision=half", "trainer.precision='half' is not allowed: use one of"),
        ("trainer.precision=16.0", "trainer.precision=16.0 is not allowed"),
        ("trainer.accelerator=tpu", "trainer.accelerator='tpu' is not allowed: use one of auto, cpu, gpu, cuda"),
        ("trainer.accelerator=quantum", "trainer.accelerator='quantum' is not allowed"),
        ("trainer.devices=0", "trainer.devices=0 is not allowed with trainer.accelerator=cpu: use a whole number"),
        ("trainer.devices=-1", "trainer.devices=-1 is not allowed with trainer.accelerator=cpu"),
        ("trainer.devices=[0,1]", r"trainer.devices=\[0, 1\] is not allowed with trainer.accelerator=cpu"),
        ("+trainer.num_nodes=0", "trainer.num_nodes=0 is not allowed: use a whole number >= 1"),
    ],
)
def test_bad_trainer_settings_are_one_line_naming_the_setting_and_the_choices(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message) as error:
        check(tmp_path, override)
    assert "\n" not in str(error.value)


def test_bad_trainer_settings_exit_2_with_one_line_on_the_command_line(tmp_path, capsys):
    from linreg.cli import run_reporting_errors

    with pytest.raises(SystemExit) as exit_:
        run_reporting_errors(check, tmp_path, "trainer.devices=0")
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: trainer.devices=0 is not allowed")


def test_gpu_devices_are_counted_against_the_machine(tmp_path, cuda_host):
    cuda_host(1)
    check(tmp_path, "trainer=gpu", "trainer.devices=[0]")
    with pytest.raises(ConfigError, match="trainer.devices=2 asks for more GPUs than the 1 this machine has"):
        check(tmp_path, "trainer=gpu", "trainer.devices=2")
    with pytest.raises(ConfigError, match="trainer.devices=0 is not allowed with trainer.accelerator=gpu"):
        check(tmp_path, "trainer=gpu", "trainer.devices=0")
    cuda_host(0)
    with pytest.raises(ConfigError, match="trainer=gpu but this machine has no CUDA GPU"):
        check(tmp_path, "trainer=gpu")


# ---- defect 3: the world size comes from accelerator, devices and nodes, not only trainer.strategy ----


@pytest.mark.parametrize(
    ("gpus", "overrides", "world"),
    [
        (0, ["trainer=cpu"], 1),
        (0, ["trainer=cpu", "trainer.devices=3"], 3),  # no strategy key: Lightning picks ddp
        (0, ["trainer=auto"], 1),
        (4, ["trainer=auto"], 4),  # every GPU of the host
        (2, ["trainer=gpu", "trainer.devices=2"], 2),
        (4, ["trainer=gpu", "trainer.devices=[1,3]"], 2),
        (4, ["trainer=gpu", "trainer.devices=-1"], 4),
        (4, ["trainer=ddp"], 4),
        (4, ["trainer=ddp", "trainer.devices=2", "trainer.num_nodes=3"], 6),
        (0, ["trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2"], 2),
        (4, ["trainer=gpu", "trainer.devices=2", "+trainer.strategy=single_device"], 1),
    ],
)
def test_world_size_is_what_lightning_will_start(tmp_path, cuda_host, gpus, overrides, world):
    cuda_host(gpus)
    assert validate.world_size(compose_config(overrides, tmp_path)) == world


@pytest.mark.parametrize("gpus", [0, 2])
def test_several_devices_without_trainer_ddp_still_need_a_divisible_batch(tmp_path, cuda_host, gpus):
    cuda_host(gpus)
    trainer = ["trainer=gpu", "trainer.devices=2"] if gpus else ["trainer=cpu", "trainer.devices=2"]
    with pytest.raises(ConfigError, match="data.batch_size=33 is the global batch and must divide by the 2"):
        check(tmp_path, "+experiment=minibatch", "data.batch_size=33", *trainer)
    check(tmp_path, "+experiment=minibatch", "data.batch_size=32", *trainer)


def test_trainer_auto_on_a_multi_gpu_host_needs_a_divisible_batch(tmp_path, cuda_host):
    cuda_host(4)
    with pytest.raises(ConfigError, match="must divide by the 4 devices"):
        check(tmp_path, "+experiment=minibatch", "data.batch_size=30", "trainer=auto")


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], True),
        (["trainer=cpu", "trainer.devices=2"], True),  # Lightning picks ddp: every rank re-runs the sweep
        (["trainer=gpu", "trainer.devices=2"], True),
        (["trainer=auto"], True),  # 2 GPUs on this host
        (["trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2"], False),
        (["trainer=gpu", "trainer.devices=1"], False),
        (["trainer=cpu"], False),
    ],
)
def test_ddp_that_relaunches_the_command_line_is_refused_inside_a_sweep(
    tmp_path, cuda_host, monkeypatch, overrides, refused
):
    cuda_host(2)
    monkeypatch.setattr(validate, "_sweep_reruns_for_every_rank", lambda: True)
    if refused:
        with pytest.raises(ConfigError, match="inside a sweep .* use trainer=ddp_spawn"):
            check(tmp_path, "+experiment=minibatch", *overrides)
    else:
        check(tmp_path, "+experiment=minibatch", *overrides)


# ---- defect 1: the epoch's running cost follows the module to its device and dtype after a restore ----

RESUME = ["+experiment=minibatch", "trainer.max_epochs=3", "trainer.precision=64", "data.steps_per_call=4"]
STOP_MID_EPOCH = ["+callbacks.sigterm._target_=signals.SigtermAtStep", "+callbacks.sigterm.step=40"]  # epoch 1
WATCH = ["+callbacks.watch._target_=test_gpu_path.StateWatch"]


class StateWatch(L.Callback):
    """Records the device and dtype of the model's running epoch cost, and the module's, at every step."""

    seen: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        state = pl_module.epoch_cost.total
        StateWatch.seen.append((state.device, state.dtype, pl_module.device, pl_module.dtype))


def interrupt_then_resume(tmp_path, overrides: list[str]) -> tuple[dict, dict]:
    """Stop a run by SIGTERM mid-epoch, resume it with ``resume=``; returns both summaries."""
    from linreg.train import train

    stopped = tmp_path / "stopped"
    with pytest.raises(RunInterrupted):
        train(compose_config(overrides + STOP_MID_EPOCH, stopped))
    (stopped / ".hydra").mkdir()  # resume reads the config Hydra would have saved
    OmegaConf.save(compose_config(overrides + WATCH, stopped), stopped / ".hydra" / "config.yaml")
    StateWatch.seen = []
    resumed = train(compose_config([f"resume={stopped}"], tmp_path / "resumed"))
    return read_summary(stopped), resumed


def test_resumed_mid_epoch_the_running_cost_lives_where_the_module_does(tmp_path):
    """Lightning restores the checkpoint before it converts the module to float64 (and before it moves it to
    a GPU): a running sum made at restore time stays float32 on the CPU. On a GPU that is a crash; in float64
    on the CPU it silently drops precision. Here the dtype stands in for the device."""
    partial, resumed = interrupt_then_resume(tmp_path, RESUME)
    assert partial["steps"] == 40 and resumed["status"] == "completed" and resumed["steps"] == 96
    assert len(StateWatch.seen) == 56 // 4  # training steps of 4 optimizer steps
    for state_device, state_dtype, device, dtype in StateWatch.seen:
        assert (state_device, state_dtype) == (device, dtype) == (torch.device("cpu"), torch.float64)


@pytest.mark.slow  # the everyday loop keeps to a minute
def test_resumed_mid_epoch_the_epoch_cost_is_the_uninterrupted_runs(tmp_path):
    """The epoch's running cost rides in the mid-epoch checkpoint: the interrupted epoch's train/cost counts the
    batches before the interruption too, as the uninterrupted run's does."""
    from linreg.train import train

    train(compose_config(RESUME, tmp_path / "whole"))
    interrupt_then_resume(tmp_path, RESUME)
    whole = scalar_tags(tmp_path / "whole")["train/cost"]
    pieced = scalar_tags(tmp_path / "stopped").get("train/cost", []) + scalar_tags(tmp_path / "resumed")["train/cost"]
    assert len(whole) == 3 and pieced == pytest.approx(whole, rel=1e-12)


@needs_cuda
def test_gpu_run_resumed_mid_epoch_matches_the_uninterrupted_one(tmp_path):
    from linreg.train import train

    run = ["+experiment=minibatch", "trainer=gpu", "trainer.max_epochs=3", "optimizer=momentum", "optimizer.lr=0.01",
           "data.steps_per_call=4"]
    whole = train(compose_config(run, tmp_path / "whole"))
    partial, resumed = interrupt_then_resume(tmp_path, run)
    assert partial["status"] == "interrupted" and resumed["status"] == "completed"
    assert resumed["device"].startswith("cuda") and resumed["steps"] == whole["steps"] == 96
    assert {(s[0].type, s[1]) for s in StateWatch.seen} == {("cuda", torch.float32)}
    assert resumed["weight"] == pytest.approx(whole["weight"], rel=1e-6)
    assert resumed["final_loss"] == pytest.approx(whole["final_loss"], rel=1e-6)


# ---- defect 4: a CPU run on a GPU host prints no "GPU available but not used" ----


def test_a_cpu_run_on_a_gpu_host_does_not_warn_about_the_gpu(monkeypatch):
    from lightning.pytorch.accelerators import CUDAAccelerator
    from lightning.pytorch.trainer.setup import _log_device_info

    from linreg.compat import quiet_lightning

    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: True))
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _log_device_info(trainer)  # what Trainer() calls: on a GPU host Lightning warns
        assert any("GPU available but not used" in str(w.message) for w in seen)
        seen.clear()
        quiet_lightning()
        _log_device_info(trainer)
    assert not seen, [str(w.message) for w in seen]


# ---- defect 5: the shuffled order need not cross the bus every epoch ----


def orders(device: str, permute_on: str, epochs=(0, 0, 1)) -> list[torch.Tensor]:
    from linreg.batches import EpochPermutation

    sampler = EpochPermutation(1000, True, 7, device, permute_on)
    drawn = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        drawn.append(sampler.indices())
    return drawn


@pytest.mark.parametrize("permute_on", ["cpu", "device"])
def test_every_epoch_order_is_a_seeded_permutation_on_the_datas_device(permute_on):
    first, again, next_epoch = orders("cpu", permute_on)
    assert torch.equal(first.sort().values, torch.arange(1000))
    assert torch.equal(first, again) and not torch.equal(first, next_epoch)
    assert torch.equal(first, orders("cpu", "cpu")[0])  # on the CPU both draw the CPU order


def test_permute_on_device_trains_like_the_default_on_cpu_and_is_checked(tmp_path, run_train):
    run = ["+experiment=minibatch", "trainer.max_epochs=2"]
    default, _ = run_train(run, "default")
    on_device, _ = run_train([*run, "+data.permute_on=device"], "device")
    assert on_device["weight"] == default["weight"] and on_device["final_loss"] == default["final_loss"]
    with pytest.raises(ConfigError, match="data.permute_on='gpu' is not allowed: use cpu .* or device"):
        check(tmp_path, *run, "+data.permute_on=gpu")


@needs_cuda
def test_on_a_gpu_the_default_order_is_the_cpus_and_device_order_stays_there():
    cpu_order = orders("cpu", "cpu")
    for order, expected in zip(orders("cuda", "cpu"), cpu_order):
        assert order.device.type == "cuda" and torch.equal(order.cpu(), expected)
    first, again, next_epoch = orders("cuda", "device")
    assert first.device.type == "cuda"
    assert torch.equal(first.sort().values.cpu(), torch.arange(1000))
    assert torch.equal(first, again) and not torch.equal(first, next_epoch)


@needs_cuda
def test_gpu_run_with_the_order_drawn_on_the_device_reaches_the_optimum(run_train):
    summary, _ = run_train(["+experiment=minibatch", "trainer=gpu", "+data.permute_on=device"])
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")
    assert summary["excess_loss"] < 1e-2
