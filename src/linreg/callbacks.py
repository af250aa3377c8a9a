"""Lightning callbacks of our own: divergence, the last checkpoint, Ctrl-C or SIGTERM mid-run, the run's
epoch and step counts under ddp_spawn, and a DDP process's clean exit."""

from __future__ import annotations

import atexit
import math
import os
import signal
from pathlib import Path

import lightning as L
import torch

from linreg import compat, optimum
from linreg.compat import SIGTERMException
from linreg.errors import DivergedError

GROWTH = 1000.0  # a loss this many times its value before training has run away, whatever divergence_bound says
END_GROWTH = 10.0  # a run that ends this far above where it started did not train, however short it was


def runaway(
    loss: float, start: float | None, bound: float, floor: float = 0.0, growth: float | None = GROWTH
) -> str | None:
    """Why ``loss`` counts as diverged (non-finite, past ``bound``, or ``growth`` times ``start``), or None.

    Past ``bound`` counts only above ``start`` too: a target in the thousands starts above 1e10 and is not
    diverging for that. ``floor`` keeps a start at the optimum (a loss of rounding noise) from making more
    noise look like growth. ``growth=None`` leaves the growth test out.
    """
    if not math.isfinite(loss):
        return f"loss={loss}"
    if loss > bound and (start is None or loss > start):
        return f"loss={loss:.4g} > divergence_bound={bound:g}"
    reference = max(start or 0.0, floor, 1e-30)
    if start is not None and growth is not None and loss > growth * reference:
        return f"loss={loss:.4g} is {loss / reference:.3g} times its {start:.4g} before training"
    return None


def growth_floor(y: torch.Tensor) -> float:
    """A millionth of the loss of predicting 0: below it, a loss is at the optimum whatever its ratio."""
    return 1e-6 * float(y.double().square().mean())


@torch.no_grad()
def optimiser_inputs(model, x: torch.Tensor) -> torch.Tensor:
    """The features as the optimiser sees them: standardised when the model standardises, which is what
    a stable learning rate depends on."""
    return model.scaled(x.to(model.device)).cpu() if model.hparams.standardize else x


def stability_advice(x: torch.Tensor, bias: bool, optimizer: torch.optim.Optimizer, batch_size: int) -> str:
    """What learning rate is stable for the optimiser and batch size that ran, saying which case it covers,
    and whether the features' scales make plain gradient descent hopeless."""
    group, name = optimizer.param_groups[0], type(optimizer).__name__
    spread = optimum.scale_spread(x, bias)
    diagnosis = (
        f"; the features' sizes differ by a factor of {spread:.3g}, so any lr small enough for the largest "
        "crawls along the smallest: use data.standardize=true (or optimizer=lbfgs)"
        if spread > 30
        else ""
    )
    if name != "SGD" or group.get("nesterov"):
        return f"{name} has no closed-form stable range: lower optimizer.lr, e.g. by a factor of 10{diagnosis}"
    momentum = group.get("momentum", 0.0) or 0.0
    heavy = f" with momentum {momentum:g}" if momentum else ""
    about = "" if optimum.exact_size(x, bias) else "about "  # L estimated by power iteration
    if batch_size >= len(x):
        stable = 2.0 * (1.0 + momentum) / optimum.curvature(x, bias)
        case = f"full-batch gradient descent{heavy} on this data is stable only for lr < {about}{stable:.4g}"
        why = f"{2 * (1 + momentum):g}/L, L: the MSE's largest curvature"
    else:
        stable = 2.0 * (1.0 + momentum) / optimum.sample_curvature(x, bias)
        case = f"with batches of {batch_size}{heavy}, the steepest single sample allows only lr < {stable:.4g}"
        never = "" if momentum else "; steps within it never grow"
        full = 2.0 * (1.0 + momentum) / optimum.curvature(x, bias)
        why = f"{2 * (1 + momentum):g}/its curvature{never}; batch_size=full allows up to {2 * (1 + momentum):g}/L = "
        why += f"{about}{full:.4g}"
    return f"{case} ({why}); try optimizer.lr={stable / 4:.3g}{diagnosis}"


class DivergenceGuard(L.Callback):
    """Stops the run as soon as its loss or parameters are non-finite, past ``bound``, or ``GROWTH`` times the
    loss before training, and says which learning rate is stable.

    Checked at every logged step (every ``log_every_n_steps``, the step's loss; inside a training step of several
    optimizer steps, after it, naming the first logged step that ran away), at every epoch end (the epoch's mean
    loss and the parameters) and when training ends; train() checks the final loss once more. Each check is one
    host sync per training step at most; between them the epoch's loss is summed on the device. Lightning's
    EarlyStopping watches for non-finite values too, but only stops, without a status or a reason.
    """

    def __init__(self, bound: float = 1e10):
        self.bound = bound
        self.start_loss: float | None = None  # the whole set's loss before training, kept in checkpoints
        self.floor = 0.0
        self._sum, self._seen = 0.0, 0  # this epoch's summed loss (a device tensor once training runs)

    def state_dict(self) -> dict:
        return {"start_loss": self.start_loss}

    def load_state_dict(self, state: dict) -> None:
        self.start_loss = state.get("start_loss")

    def on_train_start(self, trainer, pl_module) -> None:
        x, y = trainer.datamodule.x_train, trainer.datamodule.y_train
        scale = pl_module.loss_scale()  # the losses here are the optimiser's: of the scaled target
        self.floor = growth_floor(y) / scale
        if self.start_loss is None:
            raw = optimum.mse(lambda xc: pl_module(xc.to(pl_module.device)).cpu(), x, y, pl_module.dtype)
            self.start_loss = raw / scale

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sum, self._seen = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        losses = outputs["loss"].detach()  # one per optimizer step of the training step's chunk of batches
        rows = batch[0].shape[1]
        self._sum = self._sum + losses.float().sum() * rows
        self._seen += rows * len(losses)
        every = trainer.log_every_n_steps or 1
        first = trainer.global_step - len(losses)  # the chunk's first optimizer step
        logged = [i for i in range(len(losses)) if (first + i + 1) % every == 0]
        reason, step = None, trainer.global_step
        for i, value in zip(logged, losses[logged].tolist() if logged else []):  # one host sync per chunk
            reason = runaway(value, self.start_loss, self.bound, growth=None)
            if reason:
                step = first + i + 1
                break
        self._stop_if(reason, trainer, pl_module, step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check_epoch(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._check_epoch(trainer, pl_module)

    def _check_epoch(self, trainer, pl_module) -> None:
        if not self._seen:
            return
        mean = float(self._sum / self._seen)
        reason = runaway(mean, self.start_loss, self.bound, self.floor)
        reason = (reason and f"the epoch's mean {reason}") or nonfinite_parameters(pl_module)
        self._stop_if(reason, trainer, pl_module)

    def _stop_if(self, reason: str | None, trainer, pl_module, step: int | None = None) -> None:
        # under DDP each rank sees the loss of its own share: stop all of them when any one diverges, since a
        # rank that raises alone leaves the others waiting in the next all-reduce
        if not trainer.strategy.reduce_boolean_decision(reason is not None, all=False):
            return
        message = diverged_message(reason or "another rank's loss ran away", trainer, pl_module, step)
        raise DivergedError(message)


def lr_advice(model, data, optimizer: torch.optim.Optimizer) -> str:
    """What a diverged run's message advises: a stable range for a linear model (``stability_advice``), else a
    lower learning rate."""
    if not model.is_linear:
        return "lower optimizer.lr, e.g. by a factor of 10"
    x = optimiser_inputs(model, data.x_train)
    return stability_advice(x, model.hparams.bias, optimizer, data.global_batch_size())


def nonfinite_parameters(model) -> str | None:
    """Why a model counts as diverged by its parameters alone, or None."""
    return None if all(torch.isfinite(p).all() for p in model.parameters()) else "the parameters are no longer finite"


def diverged_message(reason: str, trainer, pl_module, step: int | None = None) -> str:
    """The one line of a diverged run: where (``step``, else the trainer's), why, the learning rate, a stable range."""
    optimizer = trainer.optimizers[0]
    advice = lr_advice(pl_module, trainer.datamodule, optimizer)
    return (
        f"training diverged at step {trainer.global_step if step is None else step}: {reason} "
        f"with optimizer.lr={optimizer.param_groups[0]['lr']:g}; {advice}"
    )


class LastCheckpoint(L.Callback):
    """Keeps ``last.ckpt`` the run's latest state: every ``every_n_epochs`` epochs, when training ends, and when
    it stops early (diverged, Ctrl-C, SIGTERM). ModelCheckpoint's ``save_last`` refreshes it only together
    with a new best, so a finished run's last.ckpt could be epochs old."""

    def __init__(self, path: str, every_n_epochs: int | None = 1):
        self.path, self.every = Path(path), every_n_epochs or 1
        self._saved_step = -1

    def _save(self, trainer) -> None:
        if trainer.global_step != self._saved_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # False: the whole state, to resume from
            self._saved_step = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, (DivergedError, SIGTERMException, KeyboardInterrupt)):
            self._save(trainer)


class GracefulInterrupt(L.Callback):
    """Ctrl-C and SIGTERM stop at the end of the current step (LastCheckpoint then saves last.ckpt).

    Lightning already stops cleanly on SIGTERM (raising SIGTERMException between steps); Ctrl-C is routed
    to the same path, where a raw KeyboardInterrupt could land between backward and the optimizer step.
    A second Ctrl-C interrupts at once.
    """

    def __init__(self):
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

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class CountsToMainProcess(L.Callback):
    """Sends the epoch and step counts to the main process when training ends: under ``strategy=ddp_spawn`` the
    loops run in worker processes, and the main process's own trainer still counts 0 epochs and 0 steps.
    train.epochs_and_steps reads them there."""

    def on_train_end(self, trainer, pl_module) -> None:
        counts = {"counts/epochs": trainer.current_epoch, "counts/steps": trainer.global_step}
        compat.send_to_main_process(trainer, counts)


def destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class ProcessGroupEndsBeforeExit(L.Callback):
    """Destroys this process's DDP process group when the process exits, before the interpreter shuts down.

    Lightning (checked on 2.6.6) does that for NCCL only, so a gloo (CPU) rank exited with its group alive:
    a gloo worker thread could then still be dropping the tensors of an all-reduce that Python called (the
    hand all-reduce of ``model.gradient=analytic``, a metric's or a logged value's sync) while the interpreter
    finalised. Dropping a tensor that Python also holds takes the GIL, a thread that asks for it then is ended
    mid-destructor, and the rank aborted: "terminate called without an active exception". Exit handlers run
    before that point, and destroying the group waits for its threads. Registered once per process, in the
    process that trains (a ddp_spawn worker, a ddp rank).
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            atexit.unregister(destroy_process_group)  # once, however many times this process trains
            atexit.register(destroy_process_group)
