"""Every reliance on how Lightning works inside, in one place, each with the version it was checked on.

Nothing here is Lightning's documented API, so an upgrade may move any of it without notice. Each item says
what it relies on; tests/test_compat.py checks every one of them and fails naming the one that moved.
"""

from __future__ import annotations

import logging
import re
import warnings

import torch
from lightning.pytorch.loggers import TensorBoardLogger

# relies on Lightning raising this (a SystemExit) between steps once SIGTERM arrived, checked on 2.6.6
from lightning.pytorch.utilities.exceptions import SIGTERMException  # noqa: F401  (used through this module)
from torch.utils.tensorboard.summary import Summary, scalar

CHECKED_ON = "2.6.6"

# relies on hydra-submitit-launcher's class name for its SLURM launcher, checked with hydra-submitit-launcher 1.2.0
SLURM_LAUNCHER = "SlurmLauncher"

# relies on Lightning's start-up lines and tips going through these loggers at INFO, checked on 2.6.6
START_UP_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")

# relies on the wording of these warnings (Lightning's, one torch's), checked on 2.6.6 and torch 2.13
IRRELEVANT_WARNINGS = {
    "does not have many workers": "in-memory tensors need no worker processes",
    "smaller than the logging interval": "a short run logs what it has",
    "across ranks is zero": "no validation set: val_dataloader returns []",
    "isinstance(treespec, LeafSpec)": "Lightning's own use of a deprecated torch API",
    "The dirpath has changed from": "resume= continues into a new run folder on purpose",
    "GPU available but not used": "trainer=cpu is a choice; trainer=gpu or trainer=auto use the GPU",
}


def quiet_lightning() -> None:
    """Hide Lightning's start-up lines and tips, and warnings about worker processes and batch counts
    that do not apply to in-memory tensors; real warnings still show."""
    for name in START_UP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for text in IRRELEVANT_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}")


def completed_batches(trainer) -> int:
    """How many batches of the current epoch the trainer has completed (not fetched: it reads one ahead).
    Relies on trainer.fit_loop.epoch_loop.batch_progress.current.completed, checked on 2.6.6."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.completed


def epochs_processed(trainer) -> int:
    """Epochs whose batches all ran, counting one stopped in on_train_epoch_end, which current_epoch does not.
    Relies on trainer.fit_loop.epoch_progress.current.processed, checked on 2.6.6."""
    return trainer.fit_loop.epoch_progress.current.processed


def logs_this_step(trainer, step: int | None = None) -> bool:
    """Whether this optimizer step's values are logged: what Lightning's LoggerConnector.should_update_logs
    (private) says for one optimizer step per training step, asked before the step, without its
    ``or trainer.should_stop``.
    Relies on Lightning logging the steps where (step + 1) % log_every_n_steps == 0, checked on 2.6.6."""
    every = trainer.log_every_n_steps
    return every > 0 and ((trainer.global_step if step is None else step) + 1) % every == 0


def plain_backward(trainer) -> bool:
    """Whether ``loss.backward()`` is all Lightning's manual_backward would do besides its hooks: one process
    (no DDP reducer to prepare) and full precision (no gradient scaler)."""
    return trainer.world_size == 1 and trainer.precision in ("32-true", "64-true")


def step_without_hooks(optimizer, closure):
    """The torch optimizer's own step, counted in trainer.global_step as LightningOptimizer.step counts it under
    manual optimisation, without Lightning's per-step hooks and layers (about 0.1 ms a step, the whole cost
    of a small batch's step). Relies on the manual optimisation loop setting LightningOptimizer._on_before_step
    and _on_after_step to count the step, and on LightningOptimizer.optimizer, checked on 2.6.6."""
    optimizer._on_before_step()
    loss = optimizer.optimizer.step(closure=closure)
    optimizer._on_after_step()
    return loss


def log_at_optimizer_steps(trainer) -> None:
    """After a training step that took several optimizer steps: make Lightning's logging step (what ``self.log``
    values, as the epoch's cost and the validation metrics, are written at) the optimizer step's, as it is with
    one optimizer step per training step. Relies on Lightning writing them at
    trainer.fit_loop.epoch_loop._batches_that_stepped and adding 1 to it after on_train_batch_end, checked on 2.6.6."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step - 1


def log_scalars(logger, scalars: dict[str, float], step: int) -> None:
    """``logger.log_metrics(scalars, step)``; for TensorBoard, as one event holding every value, as TensorFlow's
    merged summaries are, where Lightning's TensorBoardLogger writes an event per value (about 20 µs each, and a
    logged step has up to six). Call it on rank zero only. Relies on TensorBoardLogger writing each metric with
    SummaryWriter.add_scalar under its ``_prefix`` and on SummaryWriter._get_file_writer, checked on 2.6.6 and
    torch 2.13."""
    if not isinstance(logger, TensorBoardLogger) or logger._prefix:
        logger.log_metrics(scalars, step=step)
        return
    values = [value for tag, number in scalars.items() for value in scalar(tag, number).value]
    logger.experiment._get_file_writer().add_summary(Summary(value=values), step)


def send_to_main_process(trainer, values: dict[str, int]) -> None:
    """Put numbers where ddp_spawn's workers send them back to the main process (with the weights).
    Relies on ddp_spawn copying rank 0's trainer.callback_metrics into the main trainer's, checked on 2.6.6."""
    for name, value in values.items():
        trainer.callback_metrics[name] = torch.tensor(value)


def sent_from_workers(trainer, name: str) -> int | None:
    """A number a worker sent with ``send_to_main_process``, or None."""
    value = trainer.callback_metrics.get(name)
    return None if value is None else int(value)


class ResumableLoader:
    """What makes Lightning treat a plain iterable as a loader it can shuffle per epoch and resume mid-epoch.

    Relies on, checked on 2.6.6: Lightning calling ``set_epoch`` on a loader's ``sampler`` at every epoch
    start, also after a restore (fabric's _set_sampler_epoch); looking for a ``batch_sampler`` beside it; and
    saving and restoring a loader that has ``state_dict`` and ``load_state_dict`` (the _Stateful protocol)
    with the fit loop's state, so that a checkpoint taken mid-epoch resumes on the very next batch.
    """

    sampler = None  # an object with set_epoch(epoch)
    batch_sampler = None  # batches are cut by the loader itself

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


def launches_on_slurm(launcher_target: str) -> bool:
    """Whether a Hydra launcher's ``_target_`` is the submitit SLURM launcher (whose tasks are the ranks)."""
    return str(launcher_target).endswith(SLURM_LAUNCHER)
