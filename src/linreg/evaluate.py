"""Evaluate a saved model: its loss on a data set and its predictions, with no training."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from linreg import optimum
from linreg.errors import ConfigError
from linreg.model import Regressor
from linreg.train import predict, prediction_inputs, prediction_rows


def load(ckpt_path: str) -> Regressor:
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file; use a run's checkpoints/last.ckpt or best.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        model = Regressor.load_from_checkpoint(path, map_location="cpu")
        return model.to(next(iter(checkpoint["state_dict"].values())).dtype)  # a float64 run stays float64
    except Exception as error:  # a torch.load or state-dict failure: the file is not one of our models
        raise ConfigError(
            f"ckpt_path={ckpt_path}: not a checkpoint of this project's model ({type(error).__name__}: {error})"
        ) from None


def evaluate(cfg: DictConfig) -> dict:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError("which model? add ckpt_path=<run>/checkpoints/last.ckpt")
    model = load(cfg.ckpt_path)
    data = instantiate(cfg.data)
    data.setup()
    expected = model.hparams.in_features
    if data.num_features != expected:
        raise ConfigError(
            f"the checkpoint's model takes {expected} feature(s) but this data has {data.num_features}: "
            "choose the data it was trained on"
        )
    dtype = next(model.parameters()).dtype
    result = {"ckpt_path": str(cfg.ckpt_path), "loss": optimum.mse(model, data.x_train, data.y_train, dtype=dtype)}
    if data.x_val is not None:
        result["val_loss"] = optimum.mse(model, data.x_val, data.y_val, dtype=dtype)
    query = prediction_inputs(cfg.predict.x, data.num_features)
    result["predictions"] = {"x": prediction_rows(query), "y": predict(model, query)}
    return result
