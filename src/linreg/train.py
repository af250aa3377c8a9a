"""One training run: build the parts from the composed config, fit, and leave the results in the run folder."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from linreg import optimum, summary
from linreg.data import RegressionData
from linreg.model import Regressor


def quiet_lightning() -> None:
    """Hide Lightning's start-up lines and tips, and warnings about worker processes and batch counts
    that do not apply to in-memory tensors; real warnings still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",
        ".*smaller than the logging interval.*",
        ".*across ranks is zero.*",  # no validation set: val_dataloader returns []
        ".*isinstance.treespec, LeafSpec.*",  # Lightning's own use of a deprecated torch API
    ):
        warnings.filterwarnings("ignore", message=message)


def prediction_inputs(values, features: int) -> torch.Tensor:
    """``predict_x`` as rows: a number stands for the same value in every feature."""
    rows = [[float(v)] * features if isinstance(v, (int, float)) else [float(u) for u in v] for v in values]
    return torch.tensor(rows)


@torch.no_grad()
def predict(model: Regressor, x: torch.Tensor) -> list:
    p = next(model.parameters())
    out = model(x.to(device=p.device, dtype=p.dtype)).cpu()
    return out.reshape(-1).tolist() if out.shape[1] == 1 else out.tolist()


def build(cfg: DictConfig) -> tuple[RegressionData, Regressor, L.Trainer]:
    data = instantiate(cfg.data)
    data.setup("fit")
    model = instantiate(cfg.model, in_features=data.num_features, optimizer=instantiate(cfg.optimizer))
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    trainer = instantiate(cfg.trainer, logger=instantiate(cfg.logger), callbacks=callbacks)
    return data, model, trainer


def train(cfg: DictConfig) -> dict:
    """Fit the configured model; write summary.json and the HParams entry; return the summary."""
    quiet_lightning()
    folder = Path(cfg.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, verbose=False)
    data, model, trainer = build(cfg)
    query = prediction_inputs(cfg.predict_x, data.num_features)
    before = predict(model, query)

    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    wall = time.perf_counter() - start

    bias = model.hparams.bias
    final_loss = optimum.mse(model, data.x_train, data.y_train, dtype=next(model.parameters()).dtype)
    best = optimum.least_squares(data.x_train, data.y_train, bias=bias)
    result = {
        "experiment": cfg.name,
        "status": "completed",
        "final_loss": final_loss,
        "excess_loss": final_loss - best["loss"],
        "weight": model.net.weight.detach().reshape(-1).tolist() if model.is_linear else None,
        "bias": model.net.bias.detach().tolist() if model.is_linear and bias else None,
        "predictions": {
            "x": query.tolist() if data.num_features > 1 else query[:, 0].tolist(),
            "before": before,
            "after": predict(model, query),
        },
        "optimum": best,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "wall_time_s": wall,
        "device": str(trainer.strategy.root_device),
    }
    if trainer.is_global_zero:
        summary.write(result, folder)
        metrics = {"final_loss": result["final_loss"], "excess_loss": result["excess_loss"]}
        trainer.logger.log_hyperparams(summary.hparams(cfg), metrics)
        trainer.logger.finalize("success")
        print(summary.console_report(result, folder))
    return result
