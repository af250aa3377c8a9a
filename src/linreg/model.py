"""The LightningModule: a linear model (or an MLP) fitted by MSE, with autograd or the seed's hand gradient."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import grad_norm
from torch import nn

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
        optimizer=None,
    ):
        super().__init__()
        if gradient not in GRADIENTS:
            raise ConfigError(f"model.gradient={gradient!r} is not known; use one of {list(GRADIENTS)}")
        if gradient == "analytic" and depth:
            raise ConfigError("model.gradient=analytic is derived for the linear model only: use model.depth=0")
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.net = build_net(in_features, bias, depth, hidden, activation, init_weight, init_bias)
        self.optimizer_factory = optimizer
        self.automatic_optimization = gradient == "autograd"
        self.path: list[torch.Tensor] = []  # flat parameters at the logged steps, for the landscape figure

    @property
    def is_linear(self) -> bool:
        return isinstance(self.net, nn.Linear)

    @property
    def keeps_path(self) -> bool:
        """The path is drawn only for one weight (landscape.png); copies of a long weight vector at every
        logged step would grow without bound."""
        return self.is_linear and self.net.weight.numel() == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ConfigError("no optimizer given: choose one with optimizer=sgd, momentum or adam")
        return self.optimizer_factory(self.parameters())

    def flat_parameters(self) -> torch.Tensor:
        """A copy of every parameter in one vector (torch.cat copies), safe to keep across updates."""
        return torch.cat([p.detach().reshape(-1) for p in self.parameters()])

    def on_train_start(self) -> None:
        if self.keeps_path and not self.path:
            self.path.append(self.flat_parameters())

    def on_train_epoch_start(self) -> None:
        self._cost_sum = torch.zeros((), device=self.device, dtype=self.dtype)
        self._seen = 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # A run resumed mid-epoch skips on_train_epoch_start; it carries on with this epoch's running sums.
        if hasattr(self, "_cost_sum"):
            checkpoint["epoch_cost"] = {"sum": self._cost_sum.item(), "seen": self._seen}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "epoch_cost" in checkpoint:
            self._cost_sum = torch.tensor(checkpoint["epoch_cost"]["sum"], dtype=self.dtype)
            self._seen = checkpoint["epoch_cost"]["seen"]

    def training_step(self, batch, batch_idx):
        x, y = batch
        log_now = self._log_this_step()
        if log_now:  # the parameters this step starts from, copied before the update changes them
            before = self._parameter_scalars()
            if self.keeps_path and self.global_step > 0:
                self.path.append(self.flat_parameters())
        if self.automatic_optimization:
            loss = F.mse_loss(self(x), y)
        else:
            loss = self._analytic_step(x, y)
        self._cost_sum += loss.detach() * len(x)
        self._seen += len(x)
        if log_now:
            self.log_dict({"train/loss": loss.detach(), **before}, on_step=True, on_epoch=False)
        return loss

    def _analytic_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        linear = self.net
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

    def on_train_epoch_end(self) -> None:
        self.log("train/cost", self._cost_sum / self._seen, prog_bar=True, sync_dist=True)

    def on_train_end(self) -> None:
        if self.keeps_path:
            self.path.append(self.flat_parameters())

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.mse_loss(self(x), y), batch_size=len(x), prog_bar=True, sync_dist=True)

    def _log_this_step(self) -> bool:
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def _parameter_scalars(self) -> dict[str, torch.Tensor]:
        """``params/w``, ``params/b`` (indexed when there are several) for a linear model of few weights."""
        if not self.is_linear or self.net.weight.numel() > 16:
            return {}
        scalars = {}
        for short, p in (("w", self.net.weight), ("b", self.net.bias)):
            if p is None:
                continue
            flat = p.detach().reshape(-1).clone()
            for i, value in enumerate(flat):
                scalars[f"params/{short}" if len(flat) == 1 else f"params/{short}_{i}"] = value
        return scalars
