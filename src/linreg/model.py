"""The LightningModule: a linear model (or an MLP) fitted by MSE, with autograd or the seed's hand gradient."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.utilities import grad_norm
from torch import nn
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from linreg.errors import ConfigError

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


class Regressor(L.LightningModule):
    """Fits ``y_hat = net(x)`` by mean squared error.

    ``gradient=analytic`` replaces back-propagation with the seed's formula ``2/N * sum x (x w - y)``
    (and ``2/N * sum (x w - y)`` for the bias), applied through the same torch optimizer by manual
    optimisation. Per-step values are logged only every ``trainer.log_every_n_steps`` steps, since each
    ``self.log`` call costs about as much as a whole step of this model.
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
        optimizer=None,
    ):
        super().__init__()
        if gradient not in GRADIENTS:
            raise ConfigError(f"model.gradient={gradient!r} is not known; use one of {list(GRADIENTS)}")
        if gradient == "analytic" and depth:
            raise ConfigError("model.gradient=analytic is derived for the linear model only: use model.depth=0")
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.net = build_net(in_features, bias, depth, hidden, activation, init_weight, init_bias)
        if standardize:  # buffers, so the checkpoint carries the scaling with the weights
            for name, size, start in (("x_mean", in_features, 0.0), ("x_std", in_features, 1.0), ("y_mean", 1, 0.0),
                                      ("y_std", 1, 1.0)):
                self.register_buffer(name, torch.full((size,), start))
        self.val_metrics = torchmetrics.MetricCollection(
            {"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()}, prefix="val/"
        )
        self.val_r2 = R2Score()
        self.optimizer_factory = optimizer
        self.automatic_optimization = gradient == "autograd"
        self.path: list[torch.Tensor] = []  # flat parameters at the logged steps, for the landscape figure
        self._restored_cost: dict | None = None  # the epoch's running sums from a mid-epoch checkpoint
        self._evaluated_step = None  # (global step, batch) whose loss training_step last computed

    @property
    def is_linear(self) -> bool:
        return isinstance(self.net, nn.Linear)

    @property
    def keeps_path(self) -> bool:
        """The path is drawn only for one weight (landscape.png); copies of a long weight vector at every
        logged step would grow without bound."""
        return self.is_linear and self.net.weight.numel() == 1

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

    def flat_parameters(self) -> torch.Tensor:
        """A copy of every parameter in one vector (torch.cat copies), safe to keep across updates; a linear
        model's in the data's own units."""
        parameters = [p for p in self.coefficients() if p is not None] if self.is_linear else self.parameters()
        return torch.cat([p.detach().reshape(-1) for p in parameters])

    def on_train_start(self) -> None:
        if self.keeps_path and not self.path:
            self.path.append(self.flat_parameters())
        if self._restored_cost is not None:  # here the module already has its device and dtype
            self._cost_sum = torch.tensor(self._restored_cost["sum"], device=self.device, dtype=self.dtype)
            self._seen, self._restored_cost = self._restored_cost["seen"], None

    def on_train_epoch_start(self) -> None:
        self._cost_sum = torch.zeros((), device=self.device, dtype=self.dtype)
        self._seen = 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # A run resumed mid-epoch skips on_train_epoch_start; it carries on with this epoch's running sums.
        if hasattr(self, "_cost_sum"):
            checkpoint["epoch_cost"] = {"sum": self._cost_sum.item(), "seen": self._seen}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Lightning restores before it moves the module to its device and precision: a tensor made now would
        # stay on the CPU in float32, so the numbers wait for on_train_start.
        self._restored_cost = checkpoint.get("epoch_cost")

    def training_step(self, batch, batch_idx):
        x, y = batch
        # L-BFGS evaluates this step's closure several times: count and log only its first evaluation
        step = (self.global_step, batch_idx)
        first, self._evaluated_step = self._evaluated_step != step, step
        log_now = first and self._log_this_step()
        if log_now:  # the parameters this step starts from, copied before the update changes them
            before = self._parameter_scalars()
            if self.keeps_path and self.global_step > 0:
                self.path.append(self.flat_parameters())
        # the optimiser works on the scaled problem (when standardising); what is logged is in the target's units
        if self.automatic_optimization:
            loss = F.mse_loss(self.net(self.scaled(x)), self.scaled_target(y))
        else:
            loss = self._analytic_step(x, y)
        cost = self.in_target_units(loss.detach())
        if first:
            self._cost_sum += cost * len(x)
            self._seen += len(x)
        if log_now:
            self.log_dict({"train/loss": cost, **before}, on_step=True, on_epoch=False)
        return loss

    def _analytic_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        linear, x, y = self.net, self.scaled(x), self.scaled_target(y)
        with torch.no_grad():
            residual = linear(x) - y
            scale = 2.0 / residual.numel()
            grads = [scale * residual.T @ x]
            if linear.bias is not None:
                grads.append(scale * residual.sum(0))
            if self.trainer.world_size > 1:  # DDP averages autograd's gradients; do the same for ours
                grads = [self.trainer.strategy.reduce(g, reduce_op="mean") for g in grads]
            for p, g in zip(linear.parameters(), grads):
                p.grad = g
            loss = residual.square().mean()
        self.optimizers().step()
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        if self._log_this_step():
            self.log("train/grad_norm", grad_norm(self, norm_type=2)["grad_2.0_norm_total"])
            signed = self._gradient_scalars()
            # straight to the loggers, at the step Lightning gives this step's values: a self.log call costs about
            # 0.35 ms a key, a third of a whole step of this model, and these are plain per-step numbers
            for logger in self.loggers if signed else ():
                logger.log_metrics({tag: g.item() for tag, g in signed.items()}, step=self.global_step)

    def on_train_epoch_end(self) -> None:
        self.log("train/cost", self._cost_sum / self._seen, prog_bar=True, sync_dist=True)

    def on_train_end(self) -> None:
        if self.keeps_path:
            self.path.append(self.flat_parameters())

    def validation_step(self, batch, batch_idx):
        x, y = batch
        prediction = self(x)
        self.log("val/loss", F.mse_loss(prediction, y), batch_size=len(x), prog_bar=True, sync_dist=True)
        self.val_metrics.update(prediction, y)
        self.log_dict(self.val_metrics, batch_size=len(x))
        if batch_idx or len(x) > 1:  # R² needs two samples: a one-sample split has none (every rank alike)
            self.val_r2.update(prediction, y)
            self.log("val/r2", self.val_r2, batch_size=len(x))

    def _log_this_step(self) -> bool:
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def _gradient_scalars(self) -> dict[str, torch.Tensor]:
        """The signed gradient, ``train/grad_w`` and ``train/grad_b``, for a linear model of one weight: the
        course's ``grad:`` values, at the parameters logged as ``params/w`` and ``params/b`` for the same step."""
        if not self.is_linear or self.net.weight.numel() != 1:
            return {}
        named = (("train/grad_w", self.net.weight), ("train/grad_b", self.net.bias))
        return {tag: p.grad.detach().reshape(()) for tag, p in named if p is not None and p.grad is not None}

    def _parameter_scalars(self) -> dict[str, torch.Tensor]:
        """``params/w``, ``params/b`` (indexed when there are several) for a linear model of few weights."""
        if not self.is_linear or self.net.weight.numel() > 16:
            return {}
        scalars = {}
        for short, p in zip("wb", self.coefficients()):
            if p is None:
                continue
            flat = p.detach().reshape(-1).clone()
            for i, value in enumerate(flat):
                scalars[f"params/{short}" if len(flat) == 1 else f"params/{short}_{i}"] = value
        return scalars
