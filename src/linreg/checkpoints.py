"""Checkpoints are data, never code: every load is ``weights_only=True`` and every failure is one line.

A ``.ckpt`` is a pickle; with ``weights_only=False`` a crafted one runs any command while loading. Our own
checkpoints hold only tensors and plain values, so the restricted unpickler reads them as they are.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from linreg.errors import ConfigError


def read(path: str, setting: str = "ckpt_path") -> dict:
    """The checkpoint at ``path`` as plain data; ConfigError naming ``setting`` when it is missing or not ours."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{setting}={path}: no such file; use a run's checkpoints/last.ckpt or best.ckpt")
    if not zipfile.is_zipfile(file):  # torch.save writes a zip archive; anything else would reach the old unpickler
        raise ConfigError(f"{setting}={path}: not a checkpoint of this project's model (not a file torch.save wrote)")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "GLOBAL" not in str(error):  # not a pickle of ours at all, rather than one that asks for code
            raise ConfigError(f"{setting}={path}: not a checkpoint of this project's model (no torch file)") from None
        # the restricted unpickler met something other than tensors and plain values
        raise ConfigError(
            f"{setting}={path}: refused: it holds objects other than tensors and plain values, and loading those "
            "could run code; only checkpoints written by scripts/train.py are read"
        ) from None
    except Exception as error:  # truncated or garbage
        first = (str(error).strip() or type(error).__name__).splitlines()[0].split(". ")[0]
        raise ConfigError(
            f"{setting}={path}: not a checkpoint of this project's model ({type(error).__name__}: {first})"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(f"{setting}={path}: not a checkpoint of this project's model (no state_dict in it)")
    return checkpoint


def load_weights(model: torch.nn.Module, checkpoint: dict, path: str, setting: str = "ckpt_path") -> None:
    """Copy the checkpoint's weights into ``model``, naming the mismatch when it was another model or width."""
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError:
        keys = ("in_features", "depth", "hidden", "bias")
        saved = checkpoint.get("hyper_parameters", {})
        theirs = ", ".join(f"{k}={saved[k]}" for k in keys if k in saved) or "unknown"
        ours = ", ".join(f"{k}={model.hparams[k]}" for k in keys if k in getattr(model, "hparams", {}))
        raise ConfigError(
            f"{setting}={path}: its model ({theirs}) does not fit this one ({ours}; in_features comes from the "
            "data): use the data and model settings it was trained with"
        ) from None


def check_optimizer(optimizer: torch.optim.Optimizer, checkpoint: dict, path: str, setting: str = "ckpt_path") -> None:
    """Lightning continues from the checkpoint's training state, so it must hold one, of this optimizer:
    another's (SGD's into Adam) loads without complaint and fails at the first step."""
    missing = sorted({"optimizer_states", "loops", "global_step"} - set(checkpoint))
    if missing:
        raise ConfigError(
            f"{setting}={path}: it holds the weights but not the training state ({', '.join(missing)}) that "
            "Lightning continues from; use a run's checkpoints/last.ckpt"
        )
    saved = checkpoint["optimizer_states"]
    if not saved:
        return
    theirs = set(saved[0]["param_groups"][0]) - {"params"}
    ours = set(optimizer.param_groups[0]) - {"params"}
    if theirs != ours:
        raise ConfigError(
            f"{setting}={path}: it was trained with another optimizer than this {type(optimizer).__name__} "
            f"(its settings {sorted(theirs - ours)} are not this one's): use the optimizer it was trained with"
        )
