"""The contract with Lightning's internals (src/linreg/compat.py): one test per reliance, named after it, so that
an upgrade that moves one fails here by name rather than silently breaking resume, step counts or the report."""

import functools
import importlib
import inspect
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.fabric.utilities.types import _Stateful

from linreg import compat
from linreg.batches import TensorBatches
from linreg.data import RegressionData
from linreg.model import Regressor

LIGHTNING = inspect.getfile(L).rsplit("/", 1)[0]


def fit_and_watch(hook, log_every_n_steps: int = 3, epochs: int = 2, steps_per_call: int = 1, logger=False,
                  model_class=Regressor):
    """Fit 6 batches an epoch (in chunks of ``steps_per_call``), calling ``hook(trainer, batch_idx)`` at the start
    of every training step."""

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            hook(trainer, batch_idx)

    compat.quiet_lightning()
    torch.manual_seed(0)
    data = RegressionData(source="synthetic", batch_size=4, samples=24, features=1, weight=2.0, bias=1.0, noise=0.1,
                          steps_per_call=steps_per_call)
    data.setup()
    model = model_class(optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    trainer = L.Trainer(max_epochs=epochs, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=log_every_n_steps, callbacks=[Watch()])
    trainer.fit(model, datamodule=data)
    return trainer


def source_of(*parts: str) -> str:
    with open("/".join([LIGHTNING, *parts])) as file:
        return file.read()


def test_fit_loop_counts_the_completed_batches_of_the_epoch():
    seen = []
    fit_and_watch(lambda trainer, i: seen.append((i, compat.completed_batches(trainer))))
    assert seen == [(i, i) for i in range(6)] * 2


def test_fit_loop_counts_the_processed_epochs():
    trainer = fit_and_watch(lambda trainer, i: None, epochs=2)
    assert compat.epochs_processed(trainer) == 2


@pytest.mark.parametrize("every", [1, 3, 4])
def test_our_logged_steps_are_lightnings_should_update_logs(every):
    pairs = []
    fit_and_watch(lambda t, i: pairs.append((compat.logs_this_step(t), t._logger_connector.should_update_logs)), every)
    assert len(pairs) == 12 and all(ours == theirs for ours, theirs in pairs)


def test_self_log_writes_at_lightnings_batches_that_stepped_which_we_set_to_the_optimizer_step():
    """Chunks of 4 and 2 optimizer steps: the epoch's cost is written at the epoch's last optimizer step, 5 and 11,
    as with one step per training step (Lightning would write it at its count of training steps, 1 and 3)."""
    from lightning.pytorch.loggers import CSVLogger

    class Steps(CSVLogger):
        written = []

        def log_metrics(self, metrics, step=None):
            Steps.written += [(name, step) for name in metrics if name == "train/cost"]

    starts = []
    fit_and_watch(lambda t, i: starts.append(t.global_step), steps_per_call=4, logger=Steps("/tmp"))
    assert starts == [0, 4, 6, 10] and Steps.written == [("train/cost", 5), ("train/cost", 11)]


class Hooked(L.Callback):
    """Records the global step at every on_before_optimizer_step; asks for every step's hooks when ``every_step``."""

    def __init__(self, every_step: bool):
        self.every_step, self.seen = every_step, []

    def on_train_start(self, trainer, pl_module):
        pl_module.hooks_every_step = self.every_step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.seen.append(trainer.global_step)


@pytest.mark.parametrize("every_step, expected", [(False, [2, 5, 8, 11]), (True, list(range(12)))])
def test_a_step_without_hooks_counts_in_global_step_like_lightnings_own(every_step, expected):
    """Chunks of 6 steps, logged every 3: every step counts in global_step; Lightning's per-step hooks run at the
    logged steps only, or at all of them when the module asks for hooks_every_step."""
    hooked = Hooked(every_step)

    class WithHooked(Regressor):
        def configure_callbacks(self):
            return [*super().configure_callbacks(), hooked]

    trainer = fit_and_watch(lambda t, i: None, steps_per_call=6, model_class=WithHooked)
    assert trainer.global_step == 12 and hooked.seen == expected


@pytest.mark.parametrize("prefix", ["", "run"])
def test_log_scalars_writes_what_log_metrics_writes(tmp_path, prefix):
    """One event per step (or, with a prefix, Lightning's own log_metrics): TensorBoard reads the same tags,
    steps and values either way."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="", version="", prefix=prefix)
    for step in (3, 7):
        compat.log_scalars(logger, {"params/w": 0.1 * step, "train/loss": 1.5 / step}, step)
    logger.finalize("success")
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    tag = (prefix + "-" if prefix else "") + "train/loss"
    assert sorted(events.Tags()["scalars"]) == sorted([tag, tag.replace("train/loss", "params/w")])
    assert [(e.step, e.value) for e in events.Scalars(tag)] == [(3, pytest.approx(0.5)), (7, pytest.approx(1.5 / 7))]


def test_sigterm_exception_is_raised_between_steps():
    assert issubclass(compat.SIGTERMException, SystemExit)
    for loop in ("training_epoch_loop.py", "fit_loop.py"):
        assert "raise SIGTERMException" in source_of("pytorch", "loops", loop)


def test_loader_is_stateful_and_its_sampler_gets_the_epoch():
    loader = TensorBatches(torch.zeros(8, 1), torch.zeros(8, 1), 2, shuffle=True, seed=0)
    assert isinstance(loader, _Stateful)
    _set_sampler_epoch(loader, 5)
    assert loader.sampler.epoch == 5
    assert "isinstance(loader, _Stateful)" in source_of("pytorch", "loops", "training_epoch_loop.py")
    assert "batch_sampler" in inspect.getsource(_set_sampler_epoch)


def test_ddp_spawn_sends_callback_metrics_to_the_main_process():
    source = source_of("pytorch", "strategies", "launchers", "multiprocessing.py")
    assert "trainer.callback_metrics.update(callback_metrics)" in source
    trainer = L.Trainer(logger=False)
    compat.send_to_main_process(trainer, {"counts/steps": 7})
    assert compat.sent_from_workers(trainer, "counts/steps") == 7
    assert compat.sent_from_workers(trainer, "counts/epochs") is None


@pytest.mark.parametrize("name", compat.START_UP_LOGGERS)
def test_start_up_lines_go_through_these_loggers(name):
    """Lightning's info lines and tips go through the logger these modules set up under their own names."""
    assert "rank_zero_module.log = logging.getLogger(__name__)" in inspect.getsource(importlib.import_module(name))


@pytest.mark.parametrize("text", sorted(compat.IRRELEVANT_WARNINGS))
def test_warning_texts_we_hide_are_still_worded_so(text):
    roots = [Path(LIGHTNING), Path(inspect.getfile(torch)).parent / "utils"]  # LeafSpec's is torch's
    files = (f for root in roots for f in root.rglob("*.py"))
    assert any(text in f.read_text(errors="ignore") for f in files), f"no warning says {text!r} any more"
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        compat.quiet_lightning()
        warnings.warn(f"The thing {text} and more", UserWarning, stacklevel=1)
    assert not shown, f"quiet_lightning no longer hides {text!r}"


def test_slurm_launcher_class_name():
    submitit = pytest.importorskip("hydra_plugins.hydra_submitit_launcher.submitit_launcher")
    assert compat.launches_on_slurm(f"{submitit.__name__}.{compat.SLURM_LAUNCHER}")
    assert hasattr(submitit, compat.SLURM_LAUNCHER)
    assert not compat.launches_on_slurm(f"{submitit.__name__}.LocalLauncher")


def test_fit_and_save_checkpoint_take_weights_only():
    assert "weights_only" in inspect.signature(L.Trainer.fit).parameters
    assert "weights_only" in inspect.signature(L.Trainer.save_checkpoint).parameters


def test_checked_on_the_installed_version():
    """A new minor version passes the tests above before this line moves with pyproject's pin."""
    assert L.__version__.rsplit(".", 1)[0] == compat.CHECKED_ON.rsplit(".", 1)[0]
