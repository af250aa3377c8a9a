"""Back-propagation walked through node by node (lesson sections 3.2-3.3): one epoch of SGD, sample by sample.

For ``y_hat = x w (+ b)`` and ``loss = (y_hat - y)^2`` the graph has three nodes: ``x·w -> y_hat``,
``y_hat - y -> r`` and ``r^2 -> loss``. The chain rule multiplies their local derivatives from the loss back
to ``w``: ``dloss/dw = dloss/dr · dr/dy_hat · dy_hat/dw = 2r · 1 · x``. Every sample shows that product
beside autograd's ``w.grad`` (the course's ``grad:`` line) and the optimizer's update.
"""

from __future__ import annotations

import time
import warnings

import torch
from omegaconf import DictConfig
from torch import nn

from linreg import optimum
from linreg.errors import ConfigError
from linreg.model import build_net
from linreg.prediction import predict_values, prediction_inputs, prediction_rows
from linreg.runs import finish, make, start_run

MAX_SAMPLES = 1000  # every sample prints about ten lines


def _dtype(cfg: DictConfig) -> torch.dtype:
    return torch.float64 if str(cfg.trainer.get("precision", "32")).startswith("64") else torch.float32


def _num(value: float) -> str:
    """Full precision, as Python prints a float (the course's ``print``)."""
    return repr(float(value))


class SampleLoss(nn.Module):
    """One sample's loss through the model, as a module so TensorBoard's Graphs tab can draw the whole graph."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.net(x) - y) ** 2


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


# an activation and its derivative, by hand: the local derivative da/dh of the node h -> a
DERIVATIVES = {
    "identity": (lambda h: h, lambda h, a: torch.ones_like(h)),
    "relu": (torch.relu, lambda h, a: (h > 0).to(h.dtype)),
    "tanh": (torch.tanh, lambda h, a: 1 - a * a),
    "sigmoid": (torch.sigmoid, lambda h, a: a * (1 - a)),
}


def walk_hidden(x, y, w0: float, activation: str, make_optimizer, dtype, out=print) -> list:
    """The same walk through one hidden unit, ``y_hat = w2 · act(w1 · x)``: the chain reaches w1 through w2 and
    the activation's slope, which is 0 for a ReLU whose input is negative (no gradient passes)."""
    act, slope = DERIVATIVES[activation]
    w1 = torch.tensor(w0, dtype=dtype, requires_grad=True)
    w2 = torch.tensor(w0, dtype=dtype, requires_grad=True)
    optimizer = make_optimizer([w1, w2])
    records = []
    for n, (xi, yi) in enumerate(zip(x.to(dtype).reshape(-1), y.to(dtype).reshape(-1)), start=1):
        before = (w1.item(), w2.item())
        h = xi * w1
        a = act(h)
        y_hat = a * w2
        r = y_hat - yi
        loss = r**2
        with torch.no_grad():
            dloss_dr, da_dh = 2 * r, slope(h, a)
            grad_w2 = dloss_dr * a  # dy_hat/dw2 = a
            grad_w1 = dloss_dr * w2 * da_dh * xi  # dy_hat/da = w2, dh/dw1 = x
        optimizer.zero_grad()
        loss.backward()
        autograd = (w1.grad.item(), w2.grad.item())
        optimizer.step()
        s = {"sample": n, "x": xi.item(), "y": yi.item(), "w1": before[0], "w2": before[1], "h": h.item(),
             "a": a.item(), "y_hat": y_hat.item(), "residual": r.item(), "loss": loss.item(),
             "dloss_dr": dloss_dr.item(), "da_dh": da_dh.item(), "grad_w1": grad_w1.item(), "grad_w2": grad_w2.item(),
             "autograd_grad_w1": autograd[0], "autograd_grad_w2": autograd[1], "w1_after": w1.item(),
             "w2_after": w2.item()}  # fmt: skip
        records.append(s)
        out(
            "\n".join(
                [
                    f"sample {n}: x = {_num(s['x'])}, y = {_num(s['y'])}, w1 = {_num(s['w1'])}, w2 = {_num(s['w2'])}",
                    "  forward:",
                    f"    x·w1      = {_num(s['x'])} · {_num(s['w1'])}  ->  h = {_num(s['h'])}",
                    f"    {activation}(h)  ->  a = {_num(s['a'])}",
                    f"    a·w2      = {_num(s['a'])} · {_num(s['w2'])}  ->  ŷ = {_num(s['y_hat'])}",
                    f"    ŷ − y     = {_num(s['residual'])}  ->  loss = r² = {_num(s['loss'])}",
                    "  backward (chain rule):",
                    f"    ∂loss/∂w2 = ∂loss/∂r · ∂ŷ/∂w2 = {_num(s['dloss_dr'])} · {_num(s['a'])} = "
                    f"{_num(s['grad_w2'])}",
                    f"    ∂loss/∂w1 = ∂loss/∂r · ∂ŷ/∂a · ∂a/∂h · ∂h/∂w1 = {_num(s['dloss_dr'])} · {_num(s['w2'])} · "
                    f"{_num(s['da_dh'])} · {_num(s['x'])} = {_num(s['grad_w1'])}",
                    f"  autograd:  w1.grad = {_num(autograd[0])}, w2.grad = {_num(autograd[1])}",
                    f"  update:    w1 -> {_num(s['w1_after'])}, w2 -> {_num(s['w2_after'])}",
                ]
            )
        )
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


def _log_to_tensorboard(cfg: DictConfig, records: list, net: nn.Module, x, y):
    """The graph of one sample's loss in the Graphs tab, and every sample's values as scalars by sample number;
    returns the logger, for runs.finish to add the HParams entry and close it."""
    logger = make(cfg.logger, "logger")
    with warnings.catch_warnings():  # add_graph traces with torch.jit.trace, which torch 2.9+ calls deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        logger.experiment.add_graph(SampleLoss(net), (x[:1], y[:1]))
    for s in records:
        logger.log_metrics({f"backprop/{k}": v for k, v in s.items() if k != "sample"}, step=s["sample"])
    return logger


def run(cfg: DictConfig) -> dict:
    """Walk one epoch; write summary.json (with ``backprop``: one entry per sample) and the TensorBoard events."""
    folder = start_run(cfg)
    data = make(cfg.data, "data")
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
    model = cfg.model
    bias, depth, activation = bool(model.get("bias", False)), model.get("depth", 0), model.get("activation", "identity")
    if depth and (depth != 1 or model.get("hidden") != 1 or bias):
        raise ConfigError(
            "the hidden-layer walk-through follows one hidden unit without biases: "
            "model.depth=1 model.hidden=1 model.bias=false"
        )
    w0 = 1.0 if model.get("init_weight") is None else float(model.init_weight)
    b0 = float(model.get("init_bias") or 0.0) if bias else None
    dtype = _dtype(cfg)
    net = build_net(1, bias, depth, 1, activation, w0, b0).to(dtype)  # the model at its start
    query = prediction_inputs(cfg.predict.x, 1)
    before = predict_values(net, query)
    xs, ys = (t.to(dtype) for t in _epoch(data))
    start = time.perf_counter()
    if depth:
        records = walk_hidden(xs, ys, w0, activation, make(cfg.optimizer, "optimizer"), dtype)
        final = [records[-1]["w1_after"], records[-1]["w2_after"]]
    else:
        records = walk(xs, ys, w0, b0, make(cfg.optimizer, "optimizer"), dtype)
        final = [records[-1]["w_after"], *([records[-1]["b_after"]] if bias else [])]
    wall = time.perf_counter() - start
    logger = _log_to_tensorboard(cfg, records, net, xs, ys)  # the graph of the model at its start
    with torch.no_grad():
        for p, value in zip(net.parameters(), final):
            p.fill_(value)

    final_loss = optimum.mse(net, data.x_train, data.y_train, dtype=dtype)
    best = optimum.least_squares(data.x_train, data.y_train, bias=bias)
    result = {
        "experiment": cfg.name,
        "status": "completed",
        "final_loss": final_loss,
        "excess_loss": final_loss - best["loss"],
        "weight": None if depth else [final[0]],
        "bias": [final[1]] if bias else None,
        "predictions": {"x": prediction_rows(query), "before": before, "after": predict_values(net, query)},
        "optimum": best,
        "backprop": records,
        "epochs": 1,
        "steps": len(records),
        "wall_time_s": wall,
        "device": "cpu",
    }
    finish(result, cfg, folder, logger)
    return result


def _epoch(data) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole epoch in the loader's order (shuffled when data.shuffle is set), as one pair of columns."""
    batches = list(data.train_dataloader())
    return torch.cat([bx for bx, _ in batches]), torch.cat([by for _, by in batches])
