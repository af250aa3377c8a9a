"""Checkpoints are data, never code: every load is ``weights_only=True`` and every failure is one line.

A ``.ckpt`` is a pickle; with ``weights_only=False`` a crafted one runs any command while loading. Our own
checkpoints hold only tensors and plain values, so the restricted unpickler reads them as they are.
"""

from __future__ import annotations

from pathlib import Path

import torch

from linreg.errors import ConfigError


def read(path: str, setting: str = "ckpt_path") -> dict:
    """The checkpoint at ``path`` as plain data; ConfigError naming ``setting`` when it is missing or not ours."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{setting}={path}: no such file; use a run's checkpoints/last.ckpt or best.ckpt")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, garbage, or a pickle that asks for more than tensors and plain values
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"{setting}={path}: not a checkpoint of this project's model, or not a safe one "
            f"({type(error).__name__}: {first})"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(f"{setting}={path}: not a checkpoint of this project's model (no state_dict in it)")
    return checkpoint


def load_weights(model: torch.nn.Module, checkpoint: dict, path: str, setting: str = "ckpt_path") -> None:
    """Copy the checkpoint's weights into ``model``, naming the mismatch when it was another model or width."""
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        saved = checkpoint.get("hyper_parameters", {})
        shape = {k: saved.get(k) for k in ("in_features", "depth", "hidden", "bias") if k in saved}
        raise ConfigError(
            f"{setting}={path}: its model ({shape or 'unknown'}) does not fit this configuration's model and data "
            f"({str(error).strip().splitlines()[0]}); use the settings it was trained with"
        ) from None
