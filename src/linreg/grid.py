"""Exhaustive search (lesson section 1.4): the MSE of every candidate w, or (w, b), on a grid.

All candidates are scored at once, batch by batch, as the DataModule serves the training set: a
LightningModule holds the K candidate lines and adds each batch's squared errors to K float64 sums in
``validation_step``. Memory stays bounded on a million-row set, since a batch meets the candidates in tiles
of ``BLOCK`` (sample, candidate) pairs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from linreg import figures, optimum
from linreg.errors import ConfigError
from linreg.prediction import prediction_inputs, prediction_rows
from linreg.runs import finish, make, start_run

# (sample, candidate) pairs per tile. On a CPU, 192 KiB of float64 residuals: the tile stays in cache, and each op
# stays under torch's grain size (32768) for threading, whose hand-offs cost 20x the arithmetic on a busy machine.
BLOCK = {"cpu": 24_576, "cuda": 1 << 24}
MAX_CANDIDATES = 1_000_000  # 24 MB of candidates and sums, and a grid.csv of 40 MB
TABLE_ROWS = 101  # print the per-candidate table up to this many candidates; grid.csv always has it all


def candidates(axis: DictConfig | dict, setting: str) -> torch.Tensor:
    """``numpy.arange(start, stop, step)`` in float64, computed the way numpy does, so w = 0.1 * i exactly
    as the lesson's loop has it."""
    try:
        start, stop, step = (float(axis[k]) for k in ("start", "stop", "step"))
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(
            f"{setting}={axis!r} needs numbers start, stop and step, e.g. '{setting}={{start:0,stop:4.1,step:0.1}}'"
        ) from error
    count = math.ceil((stop - start) / step) if step > 0 else 0
    if count < 1:
        raise ConfigError(
            f"{setting}: start={start} stop={stop} step={step} gives no values; need start < stop and step > 0"
        )
    if count > MAX_CANDIDATES:
        raise ConfigError(f"{setting} gives {count:,} values, over {MAX_CANDIDATES:,}: use a larger {setting}.step")
    return start + step * torch.arange(count, dtype=torch.float64)


CURVES = ("line", "sine")  # y_hat = x w + b, or sin(x w) + b: a cost with many valleys (divide and conquer's caveat)


class CandidateLosses(L.LightningModule):
    """Sums the squared errors of K candidates ``y = x w_k + b_k`` (or ``sin(x w_k) + b_k``) over every batch it
    is shown, in float64."""

    def __init__(self, weights: torch.Tensor, biases: torch.Tensor, curve: str = "line"):
        super().__init__()
        if curve not in CURVES:
            raise ConfigError(f"search.curve={curve!r} is not known; use one of {list(CURVES)}")
        self.sine = curve == "sine"
        self.register_buffer("weights", weights.double())
        self.register_buffer("biases", biases.double())
        self.register_buffer("sse", torch.zeros_like(self.weights))
        self.samples = 0

    def validation_step(self, batch, batch_idx):
        x, y = (t.double() for t in batch)  # (B, 1) each
        k, block = len(self.weights), BLOCK.get(self.device.type, BLOCK["cpu"])
        rows = min(len(x), max(1024, block // k))  # a tile of rows x candidates that stays in the CPU's cache
        cols = max(1, block // rows)
        for r in range(0, len(x), rows):
            xr, yr = x[r : r + rows], y[r : r + rows]
            for c in range(0, k, cols):
                w, b = self.weights[c : c + cols], self.biases[c : c + cols]
                if self.sine:
                    residual = torch.sin(xr * w).add_(b).sub_(yr)
                else:
                    residual = torch.addcmul(b, xr, w).sub_(yr)
                self.sse[c : c + cols] += residual.square_().sum(0)
        self.samples += len(x)

    def mse(self) -> torch.Tensor:
        return (self.sse / self.samples).cpu()


def losses(weights: torch.Tensor, biases: torch.Tensor, batches, curve: str = "line") -> torch.Tensor:
    """The MSE of every candidate over ``batches``, streamed the way the grid search scores them, without a
    trainer: a search that asks many small questions would pay a trainer's set-up (milliseconds) every time."""
    module = CandidateLosses(weights, biases, curve)
    for i, batch in enumerate(batches):
        module.validation_step(batch, i)
    return module.mse()


def _axes(cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    grid = cfg.get("grid")
    if grid is None or grid.get("w") is None:
        raise ConfigError(
            "task=grid needs a grid: block (grid.w, grid.b); select it with +experiment=grid or +experiment=grid2d"
        )
    weights = candidates(grid.w, "grid.w")
    b = grid.get("b")
    biases = None if b is None else candidates(b, "grid.b")
    model_bias = bool(cfg.model.get("bias", False))
    if model_bias != (biases is not None):
        fix = (
            "give grid.b a range, e.g. 'grid.b={start:-2,stop:2.1,step:0.1}' (quoted), or set model.bias=false"
            if model_bias
            else "set model.bias=true, or grid.b=null to search w alone"
        )
        shown = "null" if b is None else OmegaConf.to_container(b) if isinstance(b, DictConfig) else b
        raise ConfigError(f"model.bias={str(model_bias).lower()} but grid.b={shown}: {fix}")
    count = len(weights) * (1 if biases is None else len(biases))
    if count > MAX_CANDIDATES:
        raise ConfigError(
            f"grid.w and grid.b give {count:,} candidates, more than {MAX_CANDIDATES:,}: "
            "use a larger grid.w.step or grid.b.step, or a narrower range"
        )
    return weights, biases


def _trainer(accelerator: str) -> L.Trainer:
    """A bare trainer for one pass over the data: no logger, checkpoints or progress bar."""
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )


def _write_csv(path: Path, weights, biases, losses) -> None:
    lines = ["w,mse" if biases is None else "w,b,mse"]
    for i, loss in enumerate(losses.tolist()):
        if biases is None:
            lines.append(f"{round(weights[i], 12)!r},{loss!r}")
        else:
            lines.append(f"{round(weights[i], 12)!r},{round(biases[i], 12)!r},{loss!r}")
    path.write_text("\n".join(lines) + "\n")


def _print_table(weights, biases, losses, best: int) -> None:
    if len(losses) > TABLE_ROWS:
        print(f"{len(losses)} candidates: the whole table is in grid.csv")
        return
    print(f"{'w':>8}  {'MSE':>12}" if biases is None else f"{'w':>8}  {'b':>8}  {'MSE':>12}")
    for i, loss in enumerate(losses.tolist()):
        mark = "  <- best" if i == best else ""
        b = "" if biases is None else f"  {biases[i]:8.4g}"
        print(f"{weights[i]:8.4g}{b}  {loss:12.6g}{mark}")


def search(cfg: DictConfig) -> dict:
    """Score every candidate on the training set; write grid.csv, then finish the run (runs.finish); return
    the summary."""
    folder = start_run(cfg)
    w_axis, b_axis = _axes(cfg)
    data = make(cfg.data, "data")
    data.setup("fit")
    if data.num_features != 1:
        raise ConfigError(
            f"the grid search is over one weight, but the data has {data.num_features} features: use data.features=1"
        )
    bias = b_axis is not None
    if bias:
        gw, gb = torch.meshgrid(w_axis, b_axis, indexing="ij")  # row-major: w outer, b inner
        weights, biases = gw.reshape(-1), gb.reshape(-1)
    else:
        weights, biases = w_axis, torch.zeros_like(w_axis)

    module = CandidateLosses(weights, biases)
    trainer = _trainer(cfg.trainer.get("accelerator", "cpu"))
    start = time.perf_counter()
    trainer.validate(module, dataloaders=data.train_dataloader(), verbose=False)
    wall = time.perf_counter() - start
    losses = module.mse()
    best = int(torch.argmin(losses))
    best_w, best_b, best_loss = weights[best].item(), biases[best].item(), losses[best].item()

    w_list, b_list = weights.tolist(), (biases.tolist() if bias else None)
    _print_table(w_list, b_list, losses, best)
    _write_csv(folder / "grid.csv", w_list, b_list, losses)

    query = prediction_inputs(cfg.predict.x, 1)
    closed_form = optimum.least_squares(data.x_train, data.y_train, bias=bias)
    result = {
        "experiment": cfg.name,
        "status": "completed",
        "final_loss": best_loss,
        "excess_loss": best_loss - closed_form["loss"],
        "weight": [best_w],
        "bias": [best_b] if bias else None,
        "best": {"weight": [best_w], "bias": [best_b] if bias else None, "loss": best_loss},
        "candidates": len(losses),
        "samples": module.samples,
        "predictions": {"x": prediction_rows(query), "before": None, "after": (query[:, 0] * best_w + best_b).tolist()},
        "optimum": closed_form,
        "epochs": 0,
        "steps": 0,
        "wall_time_s": wall,
        "device": str(trainer.strategy.root_device),
    }

    if bias:
        table = losses.reshape(len(w_axis), len(b_axis))
        figure = figures.grid_map(w_axis, b_axis, table, (best_w, best_b), figures.run_title(cfg))
    else:
        figure = figures.grid_curve(w_list, losses.tolist(), (best_w, best_loss), figures.run_title(cfg))
    finish(result, cfg, folder, make(cfg.logger, "logger"), ("grid", figure))
    return result
