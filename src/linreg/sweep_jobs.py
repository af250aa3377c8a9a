"""A sweep's jobs as found on disk: what ``python scripts/train.py -m ...`` leaves under
``outputs/multirun/<date>/<time>_<name>/``, one sub-folder per job with ``summary.json`` (absent when the job
failed before the end), ``.hydra/`` and the TensorBoard events.

Nothing here trusts a job to have finished: a missing or unreadable summary makes the job ``failed``, a
non-finite loss makes it ``diverged``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from linreg.errors import ConfigError
from linreg.validate import finite_number

MULTIRUN = Path("outputs") / "multirun"
CURVE_TAGS = ("train/cost", "train/loss")  # per epoch, else per logged step
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
        if status == "completed" and finite_number(self.summary.get("excess_loss")) is None:
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
            return finite_number(after[0])
        if key == "val_loss":  # the validation split's MSE, when the job had one
            return finite_number(((self.summary.get("metrics") or {}).get("val") or {}).get("mse"))
        return finite_number(self.summary.get(key))


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


def sweep_command(sweep: Path) -> str | None:
    """The command that started the sweep, from multirun.yaml."""
    config = _read_yaml(sweep / "multirun.yaml")
    try:
        task = config["hydra"]["overrides"]["task"]
    except (KeyError, TypeError):
        return None
    return "python scripts/train.py -m " + " ".join(str(t) for t in task)


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
