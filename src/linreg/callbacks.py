"""Lightning callbacks of our own: divergence, Ctrl-C or SIGTERM mid-run, and progress under ddp_spawn."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from linreg import optimum
from linreg.errors import DivergedError


class DivergenceGuard(L.Callback):
    """Stops the run at the first logged step whose loss is NaN, infinite or above ``bound``.

    Lightning's EarlyStopping can watch for non-finite values too, but only at epoch ends and without
    saying why; this checks every ``log_every_n_steps`` steps (each check is one host sync) and names the
    learning rate together with the largest stable one for plain gradient descent on this data.
    """

    def __init__(self, bound: float = 1e10):
        self.bound = bound

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = trainer.log_every_n_steps or 1
        if trainer.global_step % every:
            return
        loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)
        bad = not (math.isfinite(loss) and loss <= self.bound)
        # under DDP each rank sees the loss of its own share: stop all of them when any one diverges, since a
        # rank that raises alone leaves the others waiting in the next all-reduce
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        for logger in trainer.loggers:  # the step that blew up, which Lightning would not get to write
            logger.log_metrics({"train/loss": loss}, step=trainer.global_step - 1)
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        data = trainer.datamodule
        if pl_module.is_linear:
            stable = optimum.max_stable_lr(data.x_train, bias=pl_module.hparams.bias)
            advice = (
                f"plain gradient descent on this data is stable only for lr < 2/L = {stable:.4g} "
                f"(L: the MSE's largest curvature); try optimizer.lr={stable / 4:.3g}"
            )
        else:
            advice = "lower optimizer.lr, e.g. by a factor of 10"
        raise DivergedError(
            f"training diverged at step {trainer.global_step}: loss={loss:.4g} "
            f"(divergence_bound={self.bound:g}) with optimizer.lr={lr:g}; {advice}"
        )


class GracefulInterrupt(L.Callback):
    """Ctrl-C and SIGTERM stop at the end of the current step, with a checkpoint to resume from.

    Lightning already stops cleanly on SIGTERM (raising SIGTERMException between steps); Ctrl-C is routed
    to the same path, where a raw KeyboardInterrupt could land between backward and the optimizer step.
    A second Ctrl-C interrupts at once.
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self._previous = None

    def on_train_start(self, trainer, pl_module) -> None:
        def as_sigterm(signum, frame):
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.kill(os.getpid(), signal.SIGTERM)

        if trainer.is_global_zero:
            self._previous = signal.signal(signal.SIGINT, as_sigterm)

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.dirpath / "last.ckpt")

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class Progress(L.Callback):
    """Copies the epoch and step counts into ``trainer.callback_metrics`` when training ends: under
    ``strategy=ddp_spawn`` the loops run in worker processes, and the metrics (with the weights) are what
    Lightning sends back to the main process, whose own trainer still counts 0 epochs and 0 steps."""

    def on_train_end(self, trainer, pl_module) -> None:
        trainer.callback_metrics["progress/epochs"] = torch.tensor(trainer.current_epoch)
        trainer.callback_metrics["progress/steps"] = torch.tensor(trainer.global_step)
