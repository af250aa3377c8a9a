"""Evaluate a saved model: its loss on a data set and its predictions, with no training."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from linreg import checkpoints, optimum
from linreg.errors import ConfigError
from linreg.model import Regressor
from linreg.prediction import predict_values, prediction_inputs, prediction_rows
from linreg.runs import make

DATA_KEY = "datamodule_hyper_parameters"  # where Lightning keeps the datamodule's saved hyper-parameters


def load(ckpt_path: str) -> tuple[Regressor, dict]:
    """The checkpoint's model (in its own dtype) and the whole checkpoint, loaded as data only."""
    checkpoint = checkpoints.read(ckpt_path)
    try:
        model = Regressor(**checkpoint.get("hyper_parameters", {}))
    except (TypeError, ConfigError) as error:
        raise ConfigError(f"ckpt_path={ckpt_path}: not a checkpoint of this project's model ({error})") from None
    checkpoints.load_weights(model, checkpoint, ckpt_path)
    return model.to(next(iter(checkpoint["state_dict"].values())).dtype), checkpoint  # float64 stays float64


def data_config(cfg: DictConfig, checkpoint: dict) -> tuple[DictConfig, str]:
    """The data to score on: ``data=...`` when given, else the data the checkpoint was trained on."""
    if cfg.get("data") is not None:
        return cfg.data, "data=" + str(cfg.data.get("source", "?"))
    if DATA_KEY not in checkpoint:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: this checkpoint does not record its data; name it, e.g. data=lesson"
        )
    return OmegaConf.create(checkpoint[DATA_KEY]), "the checkpoint's own"


def evaluate(cfg: DictConfig) -> dict:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError("which model? add ckpt_path=<run>/checkpoints/last.ckpt")
    model, checkpoint = load(cfg.ckpt_path)
    node, origin = data_config(cfg, checkpoint)
    data = make(node, "data")
    data.setup()
    expected = model.hparams.in_features
    if data.num_features != expected:
        raise ConfigError(
            f"the checkpoint's model takes {expected} feature(s) but this data has {data.num_features}: "
            "choose the data it was trained on (leave out data= to use it)"
        )
    options = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")}
    dtype = next(model.parameters()).dtype
    result = {
        "ckpt_path": str(cfg.ckpt_path),
        "data": {"from": origin, **options},
        "loss": optimum.mse(model, data.x_train, data.y_train, dtype=dtype),
    }
    if data.x_val is not None:
        result["val_loss"] = optimum.mse(model, data.x_val, data.y_val, dtype=dtype)
    query = prediction_inputs(cfg.predict.x, data.num_features)
    result["predictions"] = {"x": prediction_rows(query), "y": predict_values(model, query)}
    return result
