"""What a sweep found: one row per job, best first, and a figure, written into the sweep's folder.

A sweep folder is what ``python scripts/train.py -m ...`` leaves under ``outputs/multirun/<date>/<time>_<name>/``:
one sub-folder per job with ``summary.json`` (absent when the job failed before the end), ``.hydra/`` and the
TensorBoard events. The report never trusts a job to have finished: a missing or unreadable summary makes
the row ``failed``, a non-finite loss makes it ``diverged``, and such rows go last.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from linreg.compare import paths_figure
from linreg.errors import ConfigError

MULTIRUN = Path("outputs") / "multirun"
CURVE_TAGS = ("train/cost", "train/loss")  # per epoch, else per logged step
METRICS = ("status", "excess_loss", "val_loss", "final_loss", "steps", "wall_time_s", "prediction")
MAX_GROUPS = 8  # a swept setting with more values than this does not split the figure's lines
DPI = 100
RUN_FOLDER = re.compile(r"\d\d-\d\d-\d\d_")  # a single run's folder: outputs/<date>/<time>_<name>


@dataclass
class Job:
    folder: Path
    number: int | None
    overrides: dict[str, str]  # as typed, key without its +/++ prefix
    summary: dict | None
    note: str = ""
    lr: float | None = None

    @property
    def status(self) -> str:
        if self.summary is None:
            return "failed"
        status = str(self.summary.get("status", "unknown"))
        if status == "completed" and number(self.summary.get("excess_loss")) is None:
            return "diverged"
        return status

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def value(self, key: str):
        """A metric of the row: a number, the status, or None when the job did not produce it."""
        if key == "status":
            return self.status
        if self.summary is None:
            return None
        if key == "prediction":
            after = (self.summary.get("predictions") or {}).get("after") or [None]
            return number(after[0])
        if key == "val_loss":  # the validation split's MSE, when the job had one
            return number(((self.summary.get("metrics") or {}).get("val") or {}).get("mse"))
        return number(self.summary.get(key))


def number(value) -> float | int | None:
    """A finite number, else None (JSON null, NaN, inf, or no number at all)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def newest_sweep(root: Path = MULTIRUN) -> Path:
    """The last sweep started under ``root``: folders are named by date and time, so by name."""
    sweeps = sorted(p for p in Path(root).glob("*/*") if p.is_dir())
    if not sweeps:
        raise ConfigError(f"no sweep under {root}/: run one with `python scripts/train.py -m ...`, or give its folder")
    return sweeps[-1]


def parse_overrides(items) -> dict[str, str]:
    """``["+experiment=sgd", "optimizer.lr=0.1"]`` -> ``{"experiment": "sgd", "optimizer.lr": "0.1"}``."""
    pairs = {}
    for item in items:
        key, _, value = str(item).partition("=")
        pairs[key.lstrip("+")] = value
    return pairs


def _folder_overrides(name: str) -> dict[str, str]:
    """The overrides in a job folder's name (``3_optimizer=adam,optimizer.lr=0.1``), for jobs without .hydra/."""
    _, _, text = name.partition("_")
    return parse_overrides(re.split(r",(?=[\w.+~@%-]+=)", text.replace("%", "/"))) if "=" in text else {}


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def load_job(folder: Path) -> Job:
    match = re.match(r"\d+", folder.name)
    overrides = _read_yaml(folder / ".hydra" / "overrides.yaml")
    job = Job(
        folder=folder,
        number=int(match.group()) if match else None,
        overrides=parse_overrides(overrides) if isinstance(overrides, list) else _folder_overrides(folder.name),
        summary=None,
    )
    try:
        job.summary = json.loads((folder / "summary.json").read_text())
    except FileNotFoundError:
        job.note = "no summary.json: the job failed or is still running"
    except (OSError, ValueError) as error:
        job.note = f"unreadable summary.json: {error}"
    if job.summary is not None:
        job.note = str(job.summary.get("error", ""))
    config = _read_yaml(folder / ".hydra" / "config.yaml")
    lr = (config.get("optimizer") or {}).get("lr") if isinstance(config, dict) else None
    try:
        job.lr = float(lr if lr is not None else job.overrides["optimizer.lr"])
    except (KeyError, TypeError, ValueError):
        job.lr = None
    return job


def load_jobs(sweep: Path) -> list[Job]:
    """Every job folder of the sweep (one with ``.hydra/`` or ``summary.json``), in job order."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        raise ConfigError(f"{sweep} is not a folder: give a sweep folder, e.g. outputs/multirun/<date>/<time>_<name>")
    folders = [p for p in sweep.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / "summary.json").exists())]
    if not folders:
        if (sweep / "summary.json").exists() and (sweep.parent / "multirun.yaml").exists():
            raise ConfigError(f"{sweep} is one job's folder: give its sweep folder, {sweep.parent}")
        if (sweep / "summary.json").exists():
            raise ConfigError(
                f"{sweep} is a single run, not a sweep: its result is {sweep / 'summary.json'} (and "
                f"`tensorboard --logdir {sweep}`); report.py tabulates the jobs of a sweep (train.py -m), "
                f"under {MULTIRUN}/"
            )
        raise ConfigError(f"{sweep} holds no jobs: no sub-folder with .hydra/ or summary.json")
    if not (sweep / "multirun.yaml").exists() and all(RUN_FOLDER.match(p.name) for p in folders):
        raise ConfigError(
            f"{sweep} holds separate single runs (train.py without -m), not a sweep: give a sweep folder under "
            f"{MULTIRUN}/, or compare the runs with `tensorboard --logdir {sweep}`"
        )
    jobs = [load_job(p) for p in folders]
    return sorted(jobs, key=lambda j: (j.number is None, j.number or 0, j.folder.name))


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


def sweep_command(sweep: Path) -> str | None:
    """The command that started the sweep, from multirun.yaml."""
    config = _read_yaml(sweep / "multirun.yaml")
    try:
        task = config["hydra"]["overrides"]["task"]
    except (KeyError, TypeError):
        return None
    return "python scripts/train.py -m " + " ".join(str(t) for t in task)


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


def loss_curve(folder: Path) -> tuple[str, list[float], list[float]] | None:
    """(tag, x, loss) from a job's TensorBoard events: ``train/cost`` by epoch, else ``train/loss`` by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    try:
        events.Reload()
    except Exception:  # a half-written or missing event file: no curve for this job
        return None
    tags = set(events.Tags().get("scalars", []))
    for tag in CURVE_TAGS:
        if tag in tags:
            scalars = events.Scalars(tag)
            xs = list(range(1, len(scalars) + 1)) if tag == "train/cost" else [e.step for e in scalars]
            return tag, xs, [e.value if math.isfinite(e.value) else math.nan for e in scalars]
    return None


def shared_optimum(jobs: list[Job]) -> float | None:
    """The least-squares loss when every job trained on the same data (one floor for all curves), else None."""
    losses = {number(((j.summary or {}).get("optimum") or {}).get("loss")) for j in jobs if j.summary}
    losses.discard(None)
    if not losses or max(losses) - min(losses) > 1e-9 * max(1.0, abs(max(losses))):
        return None
    return min(losses)


def _pyplot():
    # figures.pyplot's twin, kept here because importing linreg.figures would import torch for a table
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def plot(jobs: list[Job], keys: list[str], path: Path, dpi: int = DPI) -> Path:
    """Left: final excess loss against learning rate, log-log, a line per group. Right: every job's loss curve."""
    plt = _pyplot()
    split = line_keys(jobs, keys)
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        label = ", ".join(f"{k}={job.overrides.get(k, '-')}" for k in split) or "all jobs"
        groups.setdefault(label, []).append(job)
    colours = plt.get_cmap("tab10")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    missing = 0
    curve_tags = set()
    for i, (label, members) in enumerate(groups.items()):
        colour = colours(i % 10)
        points = sorted((j.lr, max(j.value("excess_loss"), 1e-16)) for j in members if j.ok and j.lr is not None)
        missing += len(members) - len(points)
        if points:
            left.plot(*zip(*points), "o-", color=colour, label=label)
        for job in members:
            curve = loss_curve(job.folder)
            if curve is None:
                continue
            tag, xs, ys = curve
            curve_tags.add(tag)
            right.plot(xs, ys, color=colour, alpha=0.7, linewidth=1, linestyle="-" if job.ok else ":")
    left.set(xscale="log", yscale="log", xlabel="learning rate (optimizer.lr)", ylabel="final excess loss")
    title = "final excess loss over the least-squares optimum"
    left.set_title(title + (f"\n({missing} diverged, failed or without lr: not shown)" if missing else ""))
    left.grid(True, which="both", alpha=0.3)
    if groups and any(j.ok for j in jobs):
        left.legend(fontsize=8)
    floor = shared_optimum(jobs)
    if floor is not None and floor > 0:
        right.axhline(floor, color="black", linestyle="--", linewidth=1, label="least-squares optimum")
        right.legend(fontsize=8)
    right.set(yscale="log", ylabel="training loss")
    right.set_xlabel(
        "epoch (train/cost)"
        if curve_tags == {"train/cost"}
        else "epoch or step (" + ", ".join(sorted(curve_tags)) + ")"
    )
    right.xaxis.get_major_locator().set_params(integer=True)
    unfinished = any(not j.ok for j in jobs)
    right.set_title("loss curves of all jobs" + (" (dotted: not completed)" if unfinished else ""))
    right.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def report(sweep: Path, dpi: int = DPI) -> str:
    """Write report.md, report.csv and report.png into the sweep folder; return the text for the console."""
    sweep = Path(sweep)
    jobs = load_jobs(sweep)
    keys = swept_keys(jobs)
    rows = ranked(jobs)
    table = markdown(rows, keys)
    write_csv(rows, keys, sweep / "report.csv")
    plot(jobs, keys, sweep / "report.png", dpi=dpi)
    labels = {j.folder: ", ".join(f"{k}={j.overrides.get(k, '-')}" for k in keys) or j.folder.name for j in jobs}
    compared = paths_figure(jobs, sweep / "paths.png", labels)  # the jobs' paths on one contour of shared data
    command = sweep_command(sweep)
    text = [f"# Sweep {sweep.name}", ""]
    if command:
        text += ["```", command, "```", ""]
    text += [overview(jobs, keys), "", table, "", "![excess loss and loss curves](report.png)", ""]
    if compared:
        text += ["![the paths of the jobs on one contour of their data](paths.png)", ""]
    notes = [f"- {j.folder.name}: {j.note}" for j in rows if j.note]
    if notes:
        text += ["Notes:", "", *notes, ""]
    (sweep / "report.md").write_text("\n".join(text))
    wrote = "report.md, report.csv, report.png and paths.png" if compared else "report.md, report.csv and report.png"
    return "\n".join([overview(jobs, keys), table, f"wrote {wrote} in {sweep}"])
