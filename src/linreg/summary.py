"""What a run leaves behind for people and programs: summary.json, the HParams entry and the console report."""

from __future__ import annotations

import json
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

SWEPT_GROUPS = ("data", "model", "optimizer", "trainer")


def hparams(cfg: DictConfig) -> dict:
    """The settings a sweep varies, flat, for TensorBoard's HParams tab (``optimizer/name`` = SGD, ...)."""
    params = {"name": cfg.name, "seed": cfg.seed}
    for group in SWEPT_GROUPS:
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if key == "_target_":
                params[f"{group}/name"] = value.rsplit(".", 1)[-1]
            elif not key.startswith("_"):
                params[f"{group}/{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return params


def _finite(value):
    """NaN and infinity become null: JSON has no spelling for them, and ``status`` says why."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write(summary: dict, folder: Path) -> Path:
    """Write summary.json through a temporary file, so a reader never sees half of it."""
    path = folder / "summary.json"
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(_finite(summary), indent=2) + "\n")
    partial.replace(path)
    return path


SHOWN = 8  # a longer vector is shown by its first and last few values; summary.json holds all of them


def _numbers(values) -> str:
    if values is None:
        return "none"
    if len(values) > SHOWN:
        head, tail = values[: SHOWN // 2], values[-2:]
        return f"{_numbers(head)[:-1]}, ..., {_numbers(tail)[1:]} ({len(values)} values)"
    return "[" + ", ".join(_numbers(v) if isinstance(v, list) else f"{v:.6g}" for v in values) + "]"


def console_report(summary: dict, folder: Path) -> str:
    """The few lines a person reads after a run."""
    p, opt = summary["predictions"], summary["optimum"]
    lines = [
        "",  # a progress bar may still hold the line
        f"== {summary['experiment']}: {summary['status']} after {summary['epochs']} epochs, "
        f"{summary['steps']} steps, {summary['wall_time_s']:.2f} s on {summary['device']}",
        f"predict (before training) x={_numbers(p['x'])} -> {_numbers(p['before'])}",
        f"predict (after training)  x={_numbers(p['x'])} -> {_numbers(p['after'])}",
        f"weight {_numbers(summary['weight'])}  bias {_numbers(summary['bias'])}  "
        f"loss {summary['final_loss']:.6g}",
        f"{'optimum' if summary['weight'] is not None else 'best line (least squares)'}: "
        + (
            f"weight {_numbers(opt['weight'])}  bias {_numbers(opt['bias'])}  loss {opt['loss']:.6g}  "
            f"(gap {summary['excess_loss']:.3g})"
            if opt is not None
            else "not computed at this size"
        ),
        f"run folder: {folder}",
        f"view it:    tensorboard --logdir {folder}",
    ]
    return "\n".join(lines)
