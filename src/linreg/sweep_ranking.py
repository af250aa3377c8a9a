"""A sweep's jobs ranked, best first, and the tables that show them (report.md's Markdown, report.csv).

Completed jobs rank by validation loss when every one of them had a validation split, else by the excess
loss over the least-squares optimum; diverged and failed jobs go last, in job order.
"""

from __future__ import annotations

import csv
from pathlib import Path

from linreg.sweep_jobs import Job
from linreg.validate import finite_number

METRICS = ("status", "excess_loss", "val_loss", "final_loss", "steps", "wall_time_s", "prediction")
MAX_GROUPS = 8  # a swept setting with more values than this does not split the figure's lines


def swept_keys(jobs: list[Job]) -> list[str]:
    """The overrides whose values differ between jobs, in the order they were typed."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def rank_key(jobs: list[Job]) -> str:
    """``val_loss`` when every completed job has a validation split (held-out data judges fairly), else
    ``excess_loss`` (the training loss above the least-squares optimum)."""
    done = [j for j in jobs if j.ok]
    return "val_loss" if done and all(j.value("val_loss") is not None for j in done) else "excess_loss"


def ranked(jobs: list[Job]) -> list[Job]:
    """Completed jobs by validation loss, or excess loss without one, lowest first; then the diverged and failed
    ones, in job order."""
    key = rank_key(jobs)
    done = sorted((j for j in jobs if j.ok), key=lambda j: j.value(key))
    return done + [j for j in jobs if not j.ok]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    try:  # an Optuna trial's 0.008096384026619585 reads better as 0.008096
        return f"{float(text):.4g}" if len(text) > 8 else text
    except ValueError:
        return text


def prediction_label(jobs: list[Job]) -> str:
    for job in jobs:
        xs = ((job.summary or {}).get("predictions") or {}).get("x")
        if xs:
            return f"prediction at x={_cell(xs[0])}"
    return "prediction"


def write_csv(jobs: list[Job], keys: list[str], path: Path) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["job", *keys, *METRICS, "note"])
        for job in jobs:
            out.writerow(
                [
                    job.folder.name,
                    *(job.overrides.get(k, "") for k in keys),
                    *("" if job.value(m) is None else job.value(m) for m in METRICS),
                    job.note,
                ]
            )
    return path


def markdown(jobs: list[Job], keys: list[str]) -> str:
    """The table, best first, as Markdown (readable as plain text in a console too)."""
    header = ["#", *keys, *METRICS[:-1], prediction_label(jobs)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for job in jobs:
        cells = [
            "-" if job.number is None else str(job.number),
            *(_cell(job.overrides.get(k)) for k in keys),
            *(_cell(job.value(m)) for m in METRICS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overview(jobs: list[Job], keys: list[str]) -> str:
    """``18 jobs: 17 completed, 1 diverged. Best: job 0 (optimizer=sgd, ...), excess loss 3.2e-05.``"""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    line = f"{len(jobs)} jobs: " + ", ".join(f"{n} {status}" for status, n in counts.items()) + "."
    best = ranked(jobs)[0]
    if best.ok:
        settings = ", ".join(f"{k}={_cell(best.overrides.get(k))}" for k in keys)
        name = best.folder.name if best.number is None else f"job {best.number}"
        line += f" Best: {name}" + (f" ({settings})" if settings else "")
        key = rank_key(jobs)
        line += f", {key.replace('_', ' ')} {_cell(best.value(key))}."
    return line


def shared_optimum(jobs: list[Job]) -> float | None:
    """The least-squares loss when every job trained on the same data (one floor for all curves), else None."""
    losses = {finite_number(((j.summary or {}).get("optimum") or {}).get("loss")) for j in jobs if j.summary}
    losses.discard(None)
    if not losses or max(losses) - min(losses) > 1e-9 * max(1.0, abs(max(losses))):
        return None
    return min(losses)


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def line_keys(jobs: list[Job], keys: list[str]) -> list[str]:
    """The swept settings that split the jobs into lines: not the learning rate, not one with many values,
    and not one sampled from an interval (an Optuna search's momentum: a different number in every job)."""
    split = []
    for key in keys:
        values = [j.overrides.get(key) for j in jobs]
        sampled = len(jobs) >= 3 and len(set(values)) == len(jobs) and all(map(_is_number, values))
        if key != "optimizer.lr" and len(set(values)) <= MAX_GROUPS and not sampled:
            split.append(key)
    return split


