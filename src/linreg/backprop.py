"""Back-propagation walked through node by node (seed sections 3.2-3.3): one epoch of SGD, sample by sample.

For ``y_hat = x w (+ b)`` and ``loss = (y_hat - y)^2`` the graph has three nodes: ``x·w -> y_hat``,
``y_hat - y -> r`` and ``r^2 -> loss``. The chain rule multiplies their local derivatives from the loss back
to ``w``: ``dloss/dw = dloss/dr · dr/dy_hat · dy_hat/dw = 2r · 1 · x``. Every sample shows that product
beside autograd's ``w.grad`` (the course's ``grad:`` line) and the optimizer's update.
"""

from __future__ import annotations

import time
import warnings

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from linreg import optimum, summary
from linreg.errors import ConfigError

MAX_SAMPLES = 1000  # every sample prints about ten lines


def _dtype(cfg: DictConfig) -> torch.dtype:
    return torch.float64 if str(cfg.trainer.get("precision", "32")).startswith("64") else torch.float32


def _num(value: float) -> str:
    """Full precision, as Python prints a float (the course's ``print``)."""
    return repr(float(value))


class SampleLoss(nn.Module):
    """The lesson's graph for one sample, as a module so TensorBoard's Graphs tab can draw it."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None):
        super().__init__()
        self.w = nn.Parameter(w.detach().clone())
        self.b = None if b is None else nn.Parameter(b.detach().clone())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y_hat = x * self.w if self.b is None else x * self.w + self.b
        return (y_hat - y) ** 2


def walk(x: torch.Tensor, y: torch.Tensor, w0: float, b0: float | None, make_optimizer, dtype, out=print) -> list:
    """Run the samples in order through the graph; return one record per sample and print the walk via ``out``."""
    w = torch.tensor(w0, dtype=dtype, requires_grad=True)
    b = None if b0 is None else torch.tensor(b0, dtype=dtype, requires_grad=True)
    params = [w] if b is None else [w, b]
    optimizer = make_optimizer(params)
    group = optimizer.param_groups[0]
    plain_sgd = type(optimizer) is torch.optim.SGD and not group.get("momentum") and not group.get("weight_decay")
    records = []
    for n, (xi, yi) in enumerate(zip(x.to(dtype).reshape(-1), y.to(dtype).reshape(-1)), start=1):
        w_before = w.item()
        b_before = None if b is None else b.item()
        # forward, node by node
        xw = xi * w
        y_hat = xw if b is None else xw + b
        r = y_hat - yi
        loss = r**2
        # backward by the chain rule, in the same precision as autograd
        with torch.no_grad():
            dloss_dr = 2 * r
            dr_dyhat = torch.ones((), dtype=dtype)
            dyhat_dw = xi
            grad_w = dloss_dr * dr_dyhat * dyhat_dw
            grad_b = dloss_dr * dr_dyhat  # dy_hat/db = 1
        optimizer.zero_grad()
        loss.backward()
        autograd_w = w.grad.item()
        autograd_b = None if b is None else b.grad.item()
        optimizer.step()
        record = {
            "sample": n,
            "x": xi.item(),
            "y": yi.item(),
            "w": w_before,
            "y_hat": y_hat.item(),
            "residual": r.item(),
            "loss": loss.item(),
            "dloss_dr": dloss_dr.item(),
            "dr_dy_hat": 1.0,
            "dy_hat_dw": xi.item(),
            "grad_w": grad_w.item(),
            "autograd_grad_w": autograd_w,
            "w_after": w.item(),
        }
        if b is not None:
            record.update(b=b_before, grad_b=grad_b.item(), autograd_grad_b=autograd_b, b_after=b.item())
        records.append(record)
        out("\n".join(_lines(record, group["lr"], plain_sgd, type(optimizer).__name__)))
    return records


def _lines(s: dict, lr: float, plain_sgd: bool, optimizer: str) -> list[str]:
    bias = "b" in s
    node = "x·w + b" if bias else "x·w    "
    b_part = f" + {_num(s['b'])}" if bias else ""
    lines = [
        f"sample {s['sample']}: x = {_num(s['x'])}, y = {_num(s['y'])}, w = {_num(s['w'])}"
        + (f", b = {_num(s['b'])}" if bias else ""),
        "  forward:",
        f"    {node}   = {_num(s['x'])} · {_num(s['w'])}{b_part}  ->  ŷ = {_num(s['y_hat'])}",
        f"    ŷ − y     = {_num(s['y_hat'])} − {_num(s['y'])}  ->  r = {_num(s['residual'])}",
        f"    r²        = ({_num(s['residual'])})²  ->  loss = {_num(s['loss'])}",
        "  backward (chain rule):",
        f"    ∂loss/∂r  = 2r = {_num(s['dloss_dr'])}",
        "    ∂r/∂ŷ     = 1",
        f"    ∂ŷ/∂w     = x = {_num(s['dy_hat_dw'])}",
        f"    ∂loss/∂w  = ∂loss/∂r · ∂r/∂ŷ · ∂ŷ/∂w = {_num(s['dloss_dr'])} · 1 · {_num(s['x'])} = {_num(s['grad_w'])}",
    ]
    if bias:
        lines.append(f"    ∂loss/∂b  = ∂loss/∂r · ∂r/∂ŷ · 1 = {_num(s['grad_b'])}")
    lines.append(f"  autograd:  w.grad = {_num(s['autograd_grad_w'])}")
    if bias:
        lines.append(f"             b.grad = {_num(s['autograd_grad_b'])}")
    if plain_sgd:
        lines.append(
            f"  update:    w = w − lr·w.grad = {_num(s['w'])} − {lr!r}·({_num(s['autograd_grad_w'])}) = "
            f"{_num(s['w_after'])}"
        )
    else:
        lines.append(f"  update:    {optimizer} step (lr={lr!r}): w {_num(s['w'])} -> {_num(s['w_after'])}")
    if bias:
        lines.append(f"             b {_num(s['b'])} -> {_num(s['b_after'])}")
    lines.append(f"  course:    grad: {_num(s['x'])} {_num(s['y'])} {_num(s['autograd_grad_w'])}")
    return lines


def _log_to_tensorboard(cfg: DictConfig, records: list, x, y, w0, b0, dtype) -> None:
    """The graph of one sample's loss in the Graphs tab, and every sample's values as scalars by sample number."""
    logger = instantiate(cfg.logger)
    graph = SampleLoss(torch.tensor(w0, dtype=dtype), None if b0 is None else torch.tensor(b0, dtype=dtype))
    with warnings.catch_warnings():  # add_graph traces with torch.jit.trace, which torch 2.9+ calls deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        logger.experiment.add_graph(graph, (x[:1].to(dtype), y[:1].to(dtype)))
    for s in records:
        metrics = {f"backprop/{k}": s[k] for k in ("w", "loss", "grad_w", "autograd_grad_w", "w_after")}
        logger.log_metrics(metrics, step=s["sample"])
    logger.log_hyperparams(summary.hparams(cfg))
    logger.finalize("success")


def run(cfg: DictConfig) -> dict:
    """Walk one epoch; write summary.json (with ``backprop``: one entry per sample) and the TensorBoard events."""
    from linreg.train import predict, prediction_inputs, prediction_rows, start_run

    folder = start_run(cfg)
    data = instantiate(cfg.data)
    data.setup("fit")
    if data.num_features != 1:
        raise ConfigError(
            f"the walk-through follows one weight, but the data has {data.num_features} features: use data.features=1"
        )
    if data.batch_size != 1:
        raise ConfigError(f"the walk-through goes sample by sample: data.batch_size={data.batch_size} must be 1")
    if len(data.x_train) > MAX_SAMPLES:
        raise ConfigError(
            f"the walk-through prints every sample and the data has {len(data.x_train)}, over {MAX_SAMPLES}: "
            "use fewer, e.g. data.samples=10"
        )
    bias = bool(cfg.model.get("bias", False))
    w0 = cfg.model.get("init_weight")
    w0 = 1.0 if w0 is None else float(w0)
    b0 = (float(cfg.model.get("init_bias") or 0.0)) if bias else None
    dtype = _dtype(cfg)
    xs, ys = _epoch(data)
    start = time.perf_counter()
    records = walk(xs, ys, w0, b0, instantiate(cfg.optimizer), dtype)
    wall = time.perf_counter() - start

    w, b = records[-1]["w_after"], records[-1].get("b_after")
    model = nn.Linear(1, 1, bias=bias).to(dtype)
    with torch.no_grad():
        model.weight.fill_(w)
        if bias:
            model.bias.fill_(b)
    final_loss = optimum.mse(model, data.x_train, data.y_train, dtype=dtype)
    best = optimum.least_squares(data.x_train, data.y_train, bias=bias)
    query = prediction_inputs(cfg.predict.x, 1)
    before = [v * w0 + (b0 or 0.0) for v in query[:, 0].to(dtype).tolist()]
    result = {
        "experiment": cfg.name,
        "status": "completed",
        "final_loss": final_loss,
        "excess_loss": final_loss - best["loss"],
        "weight": [w],
        "bias": [b] if bias else None,
        "predictions": {"x": prediction_rows(query), "before": before, "after": predict(model, query)},
        "optimum": best,
        "backprop": records,
        "epochs": 1,
        "steps": len(records),
        "wall_time_s": wall,
        "device": "cpu",
    }
    _log_to_tensorboard(cfg, records, data.x_train, data.y_train, w0, b0, dtype)
    summary.write(result, folder)
    print(summary.console_report(result, folder))
    return result


def _epoch(data) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole epoch in the loader's order (shuffled when data.shuffle is set), as one pair of columns."""
    batches = list(data.train_dataloader())
    return torch.cat([bx for bx, _ in batches]), torch.cat([by for _, by in batches])
