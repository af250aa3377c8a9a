"""The LightningModule: a linear model (or an MLP) fitted by MSE, with autograd or the seed's hand gradient.

The lesson in four parts: the forward pass (``forward``), the cost (MSE in ``fit_batch``), the autograd step
(backward, then the optimizer) and the hand-derived step (``analytic_gradient``). What is watched from outside
(the path, parameter and gradient scalars) lives in ``linreg.trajectory``.

Each training step gets a chunk of consecutive batches from the data (``data.steps_per_call``) and takes one
optimizer step per batch, by manual optimisation: Lightning's fixed cost per training step, about ten times a
small batch's arithmetic, is paid once per chunk. Every optimizer step is still a step: ``global_step`` counts
them, and their values are logged at their own step numbers.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from linreg import compat, validate
from linreg.errors import ConfigError
from linreg.trajectory import StepLog, Trajectory

ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
GRADIENTS = ("autograd", "analytic")


def build_net(in_features, bias, depth, hidden, activation, init_weight, init_bias) -> nn.Module:
    """``nn.Linear`` when depth is 0, else ``depth`` hidden layers of ``hidden`` units with an activation."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={activation!r} is not known; use one of {sorted(ACTIVATIONS)}")
    if depth < 0 or (depth > 0 and hidden < 1):
        raise ConfigError(f"model.depth={depth} and model.hidden={hidden}: depth must be >= 0 and hidden >= 1")
    widths = [in_features] + [hidden] * depth + [1]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        if i:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(n_in, n_out, bias=bias))
    net = layers[0] if depth == 0 else nn.Sequential(*layers)
    with torch.no_grad():
        for name, p in net.named_parameters():
            start = init_weight if name.endswith("weight") else init_bias
            if start is not None:
                p.fill_(start)
    return net


@torch.no_grad()
def analytic_gradient(x: torch.Tensor, y: torch.Tensor, linear: nn.Linear) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The MSE of ``linear`` on ``(x, y)`` and its gradient by the seed's hand-derived formula (section 2.1).

    With the residual ``r = x w + b - y`` over N samples::

        cost      = 1/N * sum r^2
        dcost/dw  = 2/N * sum x (x w + b - y)   = 2/N * r^T x   (one entry per feature)
        dcost/db  = 2/N * sum (x w + b - y)     = 2/N * sum r

    Returns the cost and the gradients in the order of ``linear.parameters()`` (weight, then bias if any).
    """
    residual = F.linear(x, linear.weight, linear.bias).sub_(y)  # x w + b - y (F.linear: no module call per step)
    scale = 2.0 / residual.numel()
    grads = [(residual.T @ x).mul_(scale)]
    if linear.bias is not None:
        grads.append(residual.sum(0).mul_(scale))
    return residual.square().mean(), grads


class EpochCost(torchmetrics.Metric):
    """The epoch's mean loss per sample: a sum weighted by batch size, and the count, on the module's device.

    A metric state, so it moves with the module, is summed over ranks under DDP when computed, and (persistent)
    rides in a mid-epoch checkpoint. Not torchmetrics' MeanMetric: in torchmetrics 1.9 it checks every update for
    NaN (a host sync per step, and a diverged run's NaN dropped from its cost), and with nan_strategy="disable"
    it ignores the weights.
    """

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum", persistent=True)
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum", persistent=True)

    def update(self, losses: torch.Tensor, samples: int) -> None:
        """Add the losses of consecutive steps of ``samples`` each, one at a time: the same sum in the same order
        however many steps a training step takes."""
        total = self.total  # added to in place: an attribute assignment on a module costs a few µs a time
        for product in losses * samples:
            total.add_(product)
        self.count += samples * len(losses)

    def compute(self) -> torch.Tensor:
        return self.total / self.count


class Regressor(L.LightningModule):
    """Fits ``y_hat = net(x)`` by mean squared error.

    ``gradient=autograd`` lets back-propagation find the gradient; ``gradient=analytic`` sets it by the seed's
    formula (``analytic_gradient``); either way the configured torch optimizer applies it, one step per batch of
    the chunk a training step gets (manual optimisation). The loss is logged every ``trainer.log_every_n_steps``
    optimizer steps, at the step's own number, through ``step_log``; ``train/cost`` is the epoch's mean loss.
    ``gradient_clip_val`` clips every step's gradient norm (``self.clip_gradients``).
    """

    def __init__(
        self,
        in_features: int = 1,
        bias: bool = True,
        init_weight: float | None = None,
        init_bias: float | None = None,
        gradient: str = "autograd",
        depth: int = 0,
        hidden: int = 16,
        activation: str = "identity",
        standardize: bool = False,
        gradient_clip_val: float | None = None,
        optimizer=None,
    ):
        super().__init__()
        if gradient not in GRADIENTS:
            raise ConfigError(f"model.gradient={gradient!r} is not known; use one of {list(GRADIENTS)}")
        if gradient == "analytic" and depth:
            raise ConfigError("model.gradient=analytic is derived for the linear model only: use model.depth=0")
        validate.check_values({"model.gradient_clip_val": gradient_clip_val})
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.net = build_net(in_features, bias, depth, hidden, activation, init_weight, init_bias)
        if standardize:  # buffers, so the checkpoint carries the scaling with the weights
            for name, size, start in (("x_mean", in_features, 0.0), ("x_std", in_features, 1.0), ("y_mean", 1, 0.0),
                                      ("y_std", 1, 1.0)):
                self.register_buffer(name, torch.full((size,), start))
        self.epoch_cost = EpochCost()
        self.val_metrics = torchmetrics.MetricCollection(
            {"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()}, prefix="val/"
        )
        self.val_r2 = R2Score()
        self.optimizer_factory = optimizer
        self.automatic_optimization = False  # several optimizer steps per training step: see fit_batch
        self.step_log = StepLog()  # per-step values, written after each training step by Trajectory
        self.hooks_every_step = False  # a callback that needs Lightning's per-step hooks at every step sets it

    @property
    def is_linear(self) -> bool:
        return isinstance(self.net, nn.Linear)

    def configure_callbacks(self):
        return [Trajectory()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Takes features and gives predictions in the data's own units, whatever the model scales inside."""
        out = self.net(self.scaled(x))
        return out * self.y_std + self.y_mean if self.hparams.standardize else out

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        # in place on the one new tensor: a full batch of a million rows costs one copy, not two
        return (x - self.x_mean).div_(self.x_std) if self.hparams.standardize else x

    def scaled_target(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_mean) / self.y_std if self.hparams.standardize else y

    def in_target_units(self, loss: torch.Tensor) -> torch.Tensor:
        """An MSE of the scaled target, in the target's squared units."""
        return loss * self.y_std.square().squeeze() if self.hparams.standardize else loss

    def loss_scale(self) -> float:
        """What an MSE of the scaled target is multiplied by to be in the target's squared units (1 without
        standardising). The divergence checks work in the optimiser's units, where ``divergence_bound`` applies
        the same whatever the data's units."""
        return self.y_std.square().item() if self.hparams.standardize else 1.0

    @torch.no_grad()
    def set_standardization(self, x_mean, x_std, y_mean, y_std) -> None:
        """Store the training split's statistics. A model without bias is only scaled (by the root mean square),
        not centred: centring would give it an intercept after all."""
        if self.hparams.bias:
            self.x_mean.copy_(x_mean)
            self.y_mean.copy_(y_mean)
        else:
            x_std, y_std = torch.hypot(x_std, x_mean), torch.hypot(y_std, y_mean)
        self.x_std.copy_(x_std)
        self.y_std.copy_(y_std)

    @torch.no_grad()
    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The linear model's weight (1, features) and bias (1,) in the data's own units.

        Inside, ``(y - my) / sy = w' (x - mx) / sx + b'``, so ``w = sy w' / sx`` and ``b = sy (b' - w' mx / sx) + my``.
        """
        weight, bias = self.net.weight.detach(), self.net.bias
        bias = None if bias is None else bias.detach()
        if not self.hparams.standardize:
            return weight.clone(), None if bias is None else bias.clone()
        per_x = weight / self.x_std
        bias = None if bias is None else (bias - per_x @ self.x_mean) * self.y_std + self.y_mean
        return per_x * self.y_std, bias

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ConfigError("no optimizer given: choose one with optimizer=sgd, momentum, adam or lbfgs")
        return self.optimizer_factory(self.parameters())

    def on_train_start(self) -> None:
        # here the module has its device and dtype; a restored mid-epoch cost (loaded before) follows them
        self.epoch_cost.to(self.device).set_dtype(self.dtype)

    def on_train_epoch_start(self) -> None:  # not called for an epoch resumed in its middle: its cost goes on
        self.epoch_cost.reset()

    def training_step(self, chunk, chunk_idx):
        """One optimizer step for each batch of the chunk, ``(steps, rows, features)``; returns their losses.
        A plain batch, ``(rows, features)`` from a loader of one's own, is a chunk of one step."""
        if chunk[0].dim() == 2:
            chunk = [part.unsqueeze(0) for part in chunk]
        optimizer, first = self.optimizers(), self.global_step
        # Lightning's per-step hooks (on_before_backward, on_before_optimizer_step, ...) cost about 0.1 ms a step,
        # more than a small batch's arithmetic: they run at the logged steps, and at every step when a callback
        # asks for them (hooks_every_step) or DDP or mixed precision need Lightning's backward
        hooks = self.hooks_every_step or not compat.plain_backward(self.trainer)
        # the optimiser works on the scaled problem (when standardising); what is logged is in the target's units
        xs, ys = self.scaled(chunk[0]), self.scaled_target(chunk[1])
        max_steps = self.trainer.max_steps  # Lightning checks it only between training steps: stop inside the chunk
        if 0 <= max_steps < first + len(xs):
            xs, ys = xs[: max_steps - first], ys[: max_steps - first]
        steps = zip(range(first, first + len(xs)), xs, ys)
        losses = torch.stack([self.fit_batch(optimizer, x, y, step, hooks) for step, x, y in steps])
        self.epoch_cost.update(self.in_target_units(losses), xs.shape[1])
        return {"loss": losses}  # in the optimiser's units, as the divergence checks want them

    def fit_batch(self, optimizer, x: torch.Tensor, y: torch.Tensor, step: int, hooks: bool = True) -> torch.Tensor:
        """Optimizer step number ``step`` on one batch, already scaled when standardising; returns the batch's
        loss before the step, of the scaled target (``train/loss`` is logged in the target's units)."""
        log_now = compat.logs_this_step(self.trainer, step)
        hooks = hooks or log_now
        gradient, clip = self.hparams.gradient, self.hparams.gradient_clip_val

        def closure():  # L-BFGS calls it several times a step; every other optimizer once
            if gradient == "autograd":
                optimizer.optimizer.zero_grad()  # the torch optimizer's own: Lightning's wrapper of it is slower
                loss = F.mse_loss(self.net(x), y)
                self.manual_backward(loss) if hooks else loss.backward()
            else:  # the hand-derived gradient, applied by the same optimizer
                loss, grads = analytic_gradient(x, y, self.net)
                if self.trainer.world_size > 1:  # DDP averages autograd's gradients; do the same for ours
                    grads = [self.trainer.strategy.reduce(g, reduce_op="mean") for g in grads]
                self.net.weight.grad = grads[0]  # named, not looped over parameters(): a few µs a step
                if len(grads) > 1:
                    self.net.bias.grad = grads[1]
            if clip is not None:
                self.clip_gradients(optimizer, gradient_clip_val=clip)
            return loss

        # the closure's first loss: the one before the step
        loss = optimizer.step(closure=closure) if hooks else compat.step_without_hooks(optimizer, closure)
        loss = loss.detach()
        if log_now:
            self.step_log.add(step, {"train/loss": self.in_target_units(loss)})
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # what self.log writes (the epoch's cost, validation) goes at the optimizer step's number too
        compat.log_at_optimizer_steps(self.trainer)

    def on_train_epoch_end(self) -> None:
        self.log("train/cost", self.epoch_cost.compute(), prog_bar=True)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        prediction = self(x)
        self.log("val/loss", F.mse_loss(prediction, y), batch_size=len(x), prog_bar=True, sync_dist=True)
        self.val_metrics.update(prediction, y)
        self.log_dict(self.val_metrics, batch_size=len(x))
        if batch_idx or len(x) > 1:  # R² needs two samples: a one-sample split has none (every rank alike)
            self.val_r2.update(prediction, y)
            self.log("val/r2", self.val_r2, batch_size=len(x))
