"""The optimiser's way through parameter space, watched from outside the model: what landscape.png draws and
what TensorBoard shows of the parameters and their gradients.

Kept out of the LightningModule so that it shows only the lesson; Regressor.configure_callbacks adds it to
every trainer that fits one.
"""

from __future__ import annotations

import lightning as L
import torch

from linreg import compat

MAX_LOGGED_WEIGHTS = 16  # params/w_0 .. params/w_15: more would crowd TensorBoard's scalars tab


class Trajectory(L.Callback):
    """At every logged step (every ``trainer.log_every_n_steps``):

    - ``params/w`` and ``params/b`` (indexed when there are several): the parameters the step starts from,
      in the data's own units, for a linear model of few weights;
    - ``train/grad_w`` and ``train/grad_b``: the signed gradient the step then uses (the course's ``grad:``
      values) for a linear model of one weight;
    - ``train/grad_norm``: the 2-norm of all gradients, for any model.

    ``path`` holds the flat parameters at the start, at the logged steps and at the end, for a linear model of
    one weight (landscape.png): copies of a long weight vector at every logged step would grow without bound.
    """

    def __init__(self):
        self.path: list[torch.Tensor] = []

    @staticmethod
    def keeps_path(pl_module) -> bool:
        return pl_module.is_linear and pl_module.net.weight.numel() == 1

    def on_train_start(self, trainer, pl_module) -> None:
        if self.keeps_path(pl_module) and not self.path:
            self.path.append(flat_parameters(pl_module))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not compat.logs_this_step(trainer):
            return
        if self.keeps_path(pl_module) and trainer.global_step > 0:
            self.path.append(flat_parameters(pl_module))
        scalars = parameter_scalars(pl_module)
        if scalars:
            pl_module.log_dict(scalars, on_step=True, on_epoch=False)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not compat.logs_this_step(trainer):
            return
        pl_module.log("train/grad_norm", compat.total_grad_norm(pl_module))
        signed = gradient_scalars(pl_module)
        # straight to the loggers, at the step Lightning gives this step's values: a self.log call costs about
        # 0.35 ms a key, a third of a whole step of this model, and these are plain per-step numbers
        for logger in trainer.loggers if signed else ():
            logger.log_metrics({tag: g.item() for tag, g in signed.items()}, step=trainer.global_step)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.keeps_path(pl_module):
            self.path.append(flat_parameters(pl_module))


def flat_parameters(model) -> torch.Tensor:
    """A copy of every parameter in one vector (torch.cat copies), safe to keep across updates; a linear
    model's in the data's own units."""
    parameters = [p for p in model.coefficients() if p is not None] if model.is_linear else model.parameters()
    return torch.cat([p.detach().reshape(-1) for p in parameters])


def parameter_scalars(model) -> dict[str, torch.Tensor]:
    """``params/w``, ``params/b`` (indexed when there are several) for a linear model of few weights."""
    if not model.is_linear or model.net.weight.numel() > MAX_LOGGED_WEIGHTS:
        return {}
    scalars = {}
    for short, p in zip("wb", model.coefficients()):
        if p is None:
            continue
        flat = p.detach().reshape(-1).clone()
        for i, value in enumerate(flat):
            scalars[f"params/{short}" if len(flat) == 1 else f"params/{short}_{i}"] = value
    return scalars


def gradient_scalars(model) -> dict[str, torch.Tensor]:
    """The signed gradient, ``train/grad_w`` and ``train/grad_b``, for a linear model of one weight, at the
    parameters logged as ``params/w`` and ``params/b`` for the same step."""
    if not model.is_linear or model.net.weight.numel() != 1:
        return {}
    named = (("train/grad_w", model.net.weight), ("train/grad_b", model.net.bias))
    return {tag: p.grad.detach().reshape(()) for tag, p in named if p is not None and p.grad is not None}


def recorded_path(trainer) -> list[torch.Tensor]:
    """The path the trainer's Trajectory recorded: empty where none ran in this process (ddp_spawn's workers)."""
    return next((c.path for c in trainer.callbacks if isinstance(c, Trajectory)), [])
