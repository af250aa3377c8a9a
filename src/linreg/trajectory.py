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
    """At every logged step (every ``trainer.log_every_n_steps`` optimizer steps):

    - ``params/w`` and ``params/b`` (indexed when there are several): the parameters the step starts from,
      in the data's own units, for a linear model of few weights;
    - ``train/grad_w`` and ``train/grad_b``: the signed gradient the step then uses (the course's ``grad:``
      values) for a linear model of one weight;
    - ``train/grad_norm``: the 2-norm of all gradients, for any model.

    ``path`` holds the flat parameters at the start, at the logged steps and at the end, for a linear model of
    one weight (landscape.png): copies of a long weight vector at every logged step would grow without bound.

    All of it is taken just before each optimizer step, the one hook Lightning calls for every optimizer step of
    a training step that takes several (``data.steps_per_call``), and logged at that step's own number through
    the module's ``StepLog``.
    """

    def __init__(self):
        self.path: list[torch.Tensor] = []
        self._logged_step = -1  # L-BFGS evaluates a step several times: log its first evaluation only

    @staticmethod
    def keeps_path(pl_module) -> bool:
        return pl_module.is_linear and pl_module.net.weight.numel() == 1

    def on_train_start(self, trainer, pl_module) -> None:
        if self.keeps_path(pl_module) and not self.path:
            self.path.append(flat_parameters(pl_module))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step
        if step == self._logged_step or not compat.logs_this_step(trainer):
            return
        self._logged_step = step
        if self.keeps_path(pl_module) and step > 0:
            self.path.append(flat_parameters(pl_module))
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        scalars = {**parameter_scalars(pl_module), "train/grad_norm": torch.nn.utils.get_total_norm(grads)}
        pl_module.step_log.add(step, {**scalars, **gradient_scalars(pl_module)})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.step_log.write(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        pl_module.step_log.write(trainer)  # a diverged run's last steps are what its reader looks for

    def on_train_end(self, trainer, pl_module) -> None:
        if self.keeps_path(pl_module):
            self.path.append(flat_parameters(pl_module))


class StepLog:
    """Per-step values kept on the device during a training step and written to the loggers after it, each at
    the optimizer step it belongs to.

    Not ``self.log``: Lightning writes those once per training step, at its count of training steps, and a
    training step here takes several optimizer steps (a ``self.log`` call also costs about 0.35 ms a key).
    Written together, once per training step: one host sync for all of them; each logged step is then one
    TensorBoard event holding all its values (``compat.log_scalars``).
    """

    def __init__(self):
        self.pending: list[tuple[int, dict[str, torch.Tensor]]] = []

    def add(self, step: int, values: dict[str, torch.Tensor]) -> None:
        self.pending.append((step, values))

    def write(self, trainer) -> None:
        pending, self.pending = self.pending, []
        if not pending or not trainer.loggers or not trainer.is_global_zero:  # loggers write on rank zero only
            return
        # float64 holds any float32 or float64 value exactly: what is written is each value as float(value) gives it
        numbers = iter(torch.stack([v.detach().reshape(()).double() for _, d in pending for v in d.values()]).tolist())
        for step, values in pending:
            scalars = {tag: next(numbers) for tag in values}
            for logger in trainer.loggers:
                compat.log_scalars(logger, scalars, step)


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
        # coefficients() gives copies, safe to keep until they are written; unbind: one call, not a tensor a time
        flat = p.reshape(-1).unbind()
        for i, value in enumerate(flat):
            scalars[f"params/{short}" if len(flat) == 1 else f"params/{short}_{i}"] = value
    return scalars


def gradient_scalars(model) -> dict[str, torch.Tensor]:
    """The signed gradient, ``train/grad_w`` and ``train/grad_b``, for a linear model of one weight, at the
    parameters logged as ``params/w`` and ``params/b`` for the same step."""
    if not model.is_linear or model.net.weight.numel() != 1:
        return {}
    named = (("train/grad_w", model.net.weight), ("train/grad_b", model.net.bias))
    # a copy: the value is written after the training step, and clipping or an optimizer may change a grad in place
    return {tag: p.grad.detach().reshape(()).clone() for tag, p in named if p is not None and p.grad is not None}


def recorded_path(trainer) -> list[torch.Tensor]:
    """The path the trainer's Trajectory recorded: empty where none ran in this process (ddp_spawn's workers)."""
    return next((c.path for c in trainer.callbacks if isinstance(c, Trajectory)), [])
