"""What a run leaves behind for people and programs: summary.json, the HParams entry and the one console
report of every task (training, the grid search, divide and conquer, the back-propagation walk-through)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from linreg.validate import finite_number

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
    if isinstance(value, float):
        return finite_number(value)
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
    """Full precision (Python's repr): the lesson's 7.999998569488525 is not rounded to 8."""
    if values is None:
        return "none"
    if len(values) > SHOWN:
        head, tail = values[: SHOWN // 2], values[-2:]
        return f"{_numbers(head)[:-1]}, ..., {_numbers(tail)[1:]} ({len(values)} values)"
    return "[" + ", ".join(_numbers(v) if isinstance(v, list) else repr(float(v)) for v in values) + "]"


def _bias(values) -> str:
    return "no bias" if values is None else f"bias {_numbers(values)}"


def _gap(summary: dict) -> str:
    """The excess loss over the best line, in words when it is not plainly above it."""
    gap, best = summary["excess_loss"], summary["optimum"]["loss"]
    if abs(gap) <= 1e-12 * max(1.0, abs(best)):
        return f"gap {gap:.3g}: at the optimum, up to rounding"
    if gap < 0:
        return f"gap {gap:.3g}: beats the best line by {-gap:.3g}, as a curve can where the data is not a line"
    return f"gap {gap:.3g}"


def console_report(summary: dict, folder: Path) -> str:
    """The few lines a person reads after a run."""
    p, opt = summary["predictions"], summary["optimum"]
    if summary["weight"] is None:  # an MLP: many weights, none of which is the line's w
        curve = " (its curve: fitted_curve.png)" if (Path(folder) / "fitted_curve.png").is_file() else ""
        fitted = f"weights: a network's, not one line's{curve}  loss {summary['final_loss']!r}"
        best = "best line (least squares):"
    else:
        fitted = f"weight {_numbers(summary['weight'])}  {_bias(summary['bias'])}  loss {summary['final_loss']!r}"
        best = "optimum:"
    if opt is None:  # skipped above a size (optimum.py): summary.json has null there too
        best += " not computed at this size"
    else:
        best += f" weight {_numbers(opt['weight'])}  {_bias(opt['bias'])}  loss {opt['loss']!r}  ({_gap(summary)})"
    if "candidates" in summary:  # the grid search
        done = f"{summary['candidates']} candidates on {summary['samples']} samples"
    elif "evaluations" in summary:  # divide and conquer
        done = f"{summary['evaluations']} cost evaluations in {summary['rounds']} rounds"
    else:
        done = f"{summary['epochs']} epochs, {summary['steps']} steps"
    before = "not trained (a search)" if p["before"] is None else _numbers(p["before"])
    lines = [
        "",  # a progress bar may still hold the line
        f"== {summary['experiment']}: {summary['status']} after {done}, {summary['wall_time_s']:.2f} s on "
        f"{summary['device']}",
        f"predict (before training) x={_numbers(p['x'])} -> {before}",
        f"predict (after training)  x={_numbers(p['x'])} -> {_numbers(p['after'])}",
        fitted,
        best,
        f"run folder: {folder}",
        f"view it:    tensorboard --logdir {folder}",
    ]
    return "\n".join(lines)
