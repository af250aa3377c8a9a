"""The course's own printout, on request (``report.trace=true``), to read beside the course's output line by line.

The lines are the seed's ``print`` calls, at full precision (Python's ``repr`` of each number):

- ``Predict (before training) 4.0 4.0`` and ``Predict (after training) 4.0 7.99...``;
- ``\\tgrad: x y grad`` for every step of one sample (sections 2.2 and 3.3): the gradient at the weights the step
  starts from, the one the update then uses;
- ``progress: epoch w= w loss= l`` after an epoch of one-sample steps: w after the epoch, and l the loss of the
  epoch's last sample before its update, as section 3.3's ``l.item()``;
- ``Epoch: epoch w= w loss= cost`` after an epoch of larger batches (section 2.1): w after the epoch's updates,
  and the mean loss of its batches, each taken before its update; for the whole set in one batch that is the
  cost at the w the epoch started from, as the course prints it.
"""

from __future__ import annotations

import lightning as L
import torch

from linreg.prediction import prediction_inputs


def _value(t: torch.Tensor):
    """One number as a float, several as a list: the way the course's prints read."""
    flat = t.detach().reshape(-1).cpu().double().tolist()
    return flat[0] if len(flat) == 1 else flat


class CourseTrace(L.Callback):
    """Prints the course's lines while training; does nothing unless ``enabled``."""

    def __init__(self, enabled: bool = False, x=(4.0,)):
        self.enabled, self.x = enabled, list(x)
        self._chunk = None

    def _query(self, pl_module) -> torch.Tensor:
        p = next(pl_module.parameters())
        return prediction_inputs(self.x, pl_module.hparams.in_features).to(device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def _predict(self, pl_module, when: str) -> None:
        query = self._query(pl_module)
        for x, y in zip(self.x, pl_module(query).reshape(-1).tolist()):
            pl_module.print(f"Predict ({when} training)", x, y)

    def _weights(self, pl_module) -> str:
        if not pl_module.is_linear:
            return ""
        net = pl_module.net
        b = "" if net.bias is None else f" b= {_value(net.bias)}"
        return f" w= {_value(net.weight)}{b}"

    def on_train_start(self, trainer, pl_module) -> None:
        if self.enabled:
            pl_module.hooks_every_step = True  # a grad: line for every optimizer step, not only the logged ones
            self._predict(pl_module, "before")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sum, self._seen, self._last = 0.0, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # a chunk of one-sample batches (data.steps_per_call): its optimizer steps come one by one below
        xs, ys = batch
        self._chunk = (xs, ys, trainer.global_step) if self.enabled and xs.shape[1] == 1 else None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._chunk is None or not pl_module.is_linear:
            return
        xs, ys, first = self._chunk
        i = trainer.global_step - first  # this optimizer step's batch in the chunk
        net = pl_module.net
        grads = [_value(net.weight.grad)] + ([] if net.bias is None else [_value(net.bias.grad)])
        pl_module.print("\tgrad:", _value(xs[i]), _value(ys[i]), *grads)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        rows = batch[0].shape[1]
        for loss in outputs["loss"].tolist():  # one per optimizer step
            self._sum += loss * rows
            self._seen += rows
            self._last = loss

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.enabled or not self._seen:
            return
        if self._chunk is not None:
            pl_module.print(f"progress: {trainer.current_epoch}{self._weights(pl_module)} loss= {self._last}")
        else:
            pl_module.print(f"Epoch: {trainer.current_epoch}{self._weights(pl_module)} loss= {self._sum / self._seen}")

    def on_train_end(self, trainer, pl_module) -> None:
        if self.enabled:
            self._predict(pl_module, "after")
