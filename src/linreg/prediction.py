"""Predictions: a run's answers for ``predict.x``, and a new table's from a saved model (`scripts/predict.py`).

The checkpoint is read with ``weights_only=True``, so a crafted file can hold only tensors and plain values
and runs no code; the model is rebuilt from its saved settings and the scaling stored with its weights.
"""

from __future__ import annotations

import inspect
import os
import pickle
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from linreg import tables
from linreg.errors import ConfigError
from linreg.model import Regressor
from linreg.validate import check_values, finite_number, inputs_allowed

CHUNK = 65_536
REQUIRED = {
    "ckpt_path": "ckpt_path=<run>/checkpoints/last.ckpt",
    "data.path": "data.path=new.csv",
    "data.feature_columns": "data.feature_columns=[x1,x2] (the columns the model was trained on, in that order)",
    "output": "output=predictions.csv",
}


def load_model(ckpt_path: str) -> Regressor:
    """The model of a checkpoint written by scripts/train.py, in the precision it was trained in."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file; use a run's checkpoints/last.ckpt or best.ckpt")
    try:
        with warnings.catch_warnings():  # torch warns about a crafted file's pickle protocol before refusing it
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        settings, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
        known = inspect.signature(Regressor).parameters
        model = Regressor(**{k: v for k, v in settings.items() if k in known})
        model.load_state_dict(state)
        return model.to(next(iter(state.values())).dtype).eval()
    except pickle.UnpicklingError:  # weights_only refused it before running anything in it
        raise ConfigError(
            f"ckpt_path={ckpt_path}: not a checkpoint of this project's model (it is not a torch file, or it holds "
            "objects other than tensors and plain values, which are not loaded)"
        ) from None
    except Exception as error:  # a missing key or a state-dict of another shape: not one of our models
        detail = (str(error).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"ckpt_path={ckpt_path}: not a checkpoint of this project's model ({type(error).__name__}: {detail})"
        ) from None


@torch.no_grad()
def predictions(model: Regressor, x: torch.Tensor) -> torch.Tensor:
    """In the model's precision, a chunk at a time."""
    dtype = next(model.parameters()).dtype
    return torch.cat([model(x[i : i + CHUNK].to(dtype)).reshape(-1) for i in range(0, len(x), CHUNK)])


def write(table: pa.Table, output: Path) -> None:
    """Parquet for a ``.parquet`` name, else CSV; through a temporary file, so a failure leaves no half file."""
    partial = output.with_name(f".{output.name}.partial")
    try:
        if output.suffix == ".parquet":
            pq.write_table(table, partial)
        else:
            pa_csv.write_csv(table, partial)
        os.replace(partial, output)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"output={output}: cannot write there ({error.strerror or error})") from None


def predict(cfg: DictConfig) -> dict:
    """Write the input table with a ``prediction`` column added; return where, and how many rows."""
    for key, example in REQUIRED.items():
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} is not set: add {example}")
    features = tables.check_columns(cfg.data.feature_columns, None)
    model = load_model(cfg.ckpt_path)
    width = model.hparams.in_features
    if len(features) != width:
        raise ConfigError(
            f"the checkpoint's model takes {width} feature(s) but data.feature_columns names {len(features)}: "
            "list the columns it was trained on, in the same order"
        )
    output = Path(cfg.output)
    if output.exists() and output.resolve() == Path(cfg.data.path).resolve():
        raise ConfigError(f"output={cfg.output} is the input file: name another file for the predictions")
    if not output.parent.is_dir():
        raise ConfigError(f"output={cfg.output}: the folder {output.parent} does not exist")
    table = tables.read(cfg.data.path, features, keep_all=True)
    if "prediction" in table.column_names:
        raise ConfigError(f"{cfg.data.path} already has a column named 'prediction': rename it, or drop it")
    y = predictions(model, tables.to_tensor(table, features))
    write(table.append_column("prediction", pa.array(y.numpy())), output)
    return {"rows": table.num_rows, "output": str(output)}


# The inputs a run is asked to predict for (predict.x): one rule for training, the searches and evaluation.


def prediction_inputs(values, features: int) -> torch.Tensor:
    """``predict.x`` as rows: a number stands for the same value in every feature."""
    check_values({"predict.x": values})
    if any(finite_number(v) is None and len(v) != features for v in values):
        shown = OmegaConf.to_container(values) if isinstance(values, ListConfig) else values
        raise ConfigError(f"predict.x={shown!r} is not allowed: use {inputs_allowed(features)}")
    rows = [[float(v)] * features if finite_number(v) is not None else list(map(float, v)) for v in values]
    return torch.tensor(rows)


def prediction_rows(query: torch.Tensor) -> list:
    """The inputs as summary.json shows them: plain numbers for one feature, rows for several."""
    return query[:, 0].tolist() if query.shape[1] == 1 else query.tolist()


@torch.no_grad()
def predict_values(model, x: torch.Tensor) -> list:
    """The model's outputs for ``x``, as plain numbers, on the model's device and in its precision."""
    p = next(model.parameters())
    out = model(x.to(device=p.device, dtype=p.dtype)).cpu()
    return out.reshape(-1).tolist()
