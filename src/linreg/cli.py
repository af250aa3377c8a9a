"""How the scripts report the errors that are the user's to fix: one line on stderr and a non-zero exit.

``HYDRA_FULL_ERROR=1`` shows the full traceback instead. Inside a multirun the failed job is reported
and the sweep goes on with its other jobs (an interrupted one stops it); at its end one line counts the
jobs by status.
Kept light (standard library, omegaconf and hydra only): it is imported before anything heavy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from linreg.errors import ConfigError, DivergedError, RunInterrupted

EXIT_CODES = {ConfigError: 2, DivergedError: 3, RunInterrupted: 130}
HYDRA_FILES = {".hydra", "train.log", "eval.log"}  # what Hydra writes into a run folder before our code runs


def fail(message: str, code: int):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _ctrl_c(signum, frame):
    fail("interrupted by Ctrl-C", 130)  # SystemExit unwinds as usual: no traceback, finally blocks still run


def exit_quietly_on_ctrl_c() -> None:
    """Ctrl-C while the script starts (imports, composing, building) exits with one line, not a traceback.
    GracefulInterrupt takes Ctrl-C over while training runs."""
    signal.signal(signal.SIGINT, _ctrl_c)


def stop_quietly_when_output_closes() -> None:
    """What the reader of our output closing it early (``| head``) ends with: no traceback, no message (there is
    nobody to read one), exit code 1. Python's own advice: point stdout at /dev/null so that the flush at exit
    does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _run_folder() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


def remove_if_unused(folder: Path | None) -> None:
    """Remove a run folder that holds nothing but what Hydra wrote before the run was refused. RunFolderGuard
    made sure the folder was new, so nothing in it belongs to another run."""
    if folder is None or not (folder / ".hydra").is_dir():  # not a run folder Hydra made (eval.py writes none)
        return
    here = Path.cwd().resolve()
    if folder.resolve() in (here, *here.parents):  # hydra.run.dir=. : never remove where the user stands
        return
    if {p.name for p in folder.iterdir()} <= HYDRA_FILES:
        shutil.rmtree(folder, ignore_errors=True)


def cannot_write(error: OSError) -> str:
    where = f"{error.filename}: " if error.filename else ""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free some space" if full else "make the place writable"
    return f"cannot write {where}{error.strerror or error}; {fix}, or choose another output folder: hydra.run.dir=..."


def run_reporting_errors(run, *args):
    """``run(*args)``; a user error becomes one line and an exit code, or None inside a multirun."""
    try:
        return run(*args)
    except BrokenPipeError:
        stop_quietly_when_output_closes()
    except (*EXIT_CODES, OSError) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if isinstance(error, OSError):  # the disk is full, the folder is read-only...: the place, not the run
            message, code = cannot_write(error), 1
        else:
            message, code = str(error), EXIT_CODES[type(error)]
        print(f"error: {message}", file=sys.stderr, flush=True)
        if in_multirun() and not isinstance(error, RunInterrupted):  # Ctrl-C or SIGTERM stops the whole sweep
            return None
        remove_if_unused(_run_folder())
        sys.exit(code)
    except SystemExit:
        if not in_multirun():
            remove_if_unused(_run_folder())
        raise


def _select(config: DictConfig, key: str, setting: str) -> Path:
    """Resolve the run or sweep folder (unique_dir creates it), naming the setting when the place is unusable."""
    try:
        return Path(str(OmegaConf.select(config, key)))
    except Exception as error:  # the resolver's OSError arrives wrapped by OmegaConf
        cause = error
        while not isinstance(cause, OSError) and (cause.__cause__ or cause.__context__) is not None:
            cause = cause.__cause__ or cause.__context__
        why = f"{cause.filename}: {cause.strerror}" if isinstance(cause, OSError) else str(cause).splitlines()[0]
        fail(
            f"{setting}: cannot make the output folder ({why}); it must be a writable folder: remove what is in "
            f"the way or choose another with {setting}=...",
            2,
        )


def _refuse_used(folder: Path, setting: str) -> None:
    if folder.is_dir() and any(folder.iterdir()):
        fail(
            f"{setting}={folder} already holds files (a run?); nothing was written there. Choose a new folder, or "
            f"leave {setting} out to get a fresh one",
            2,
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        fail(f"{setting}={folder}: cannot write there ({error.strerror}); choose another folder with {setting}=...", 2)


def job_statuses(sweep: Path) -> dict[str, str]:
    """Each job folder's status from its summary.json; ``failed`` for a job that left none."""
    statuses = {}
    for job in sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir()):
        try:
            statuses[job.name] = json.loads((job / "summary.json").read_text())["status"]
        except (OSError, ValueError, KeyError):
            statuses[job.name] = "failed"
    return statuses


def tally(statuses: dict[str, str]) -> str:
    """``3 jobs: 2 completed, 1 diverged``."""
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    parts = [f"{n} {s}" for s, n in sorted(counts.items(), key=lambda item: (item[0] != "completed", item[0]))]
    return f"{len(statuses)} job{'s' * (len(statuses) != 1)}: {', '.join(parts) or 'none ran'}"


def _optuna(config: DictConfig) -> bool:
    return "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).lower()


class RunFolderGuard(Callback):
    """Hydra callbacks that keep every run's files its own and make a sweep's failures visible.

    - A run or sweep folder that already holds files is refused before Hydra writes into it; an output place
      that is a file or is not writable is named in one line.
    - At the end of a sweep, one line counts its jobs by status; the exit is non-zero when any job did not
      complete (an Optuna search: when none did, since its failed trials are part of searching).
    """

    def __init__(self):
        self.completed = 0

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if int(os.environ.get("LOCAL_RANK", 0)) > 0:  # a DDP rank Lightning started into rank 0's folder
            return
        _refuse_used(_select(config, "hydra.run.dir", "hydra.run.dir"), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _refuse_used(_select(config, "hydra.sweep.dir", "hydra.sweep.dir"), "hydra.sweep.dir")

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        """Optuna asks for its best trial right after the last one, and fails with a traceback when none
        completed: say so before that, in one line."""
        in_process = "BasicLauncher" in str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if not _optuna(config) or not in_process:  # other launchers run jobs elsewhere, each seeing only its own
            return
        value = getattr(job_return, "_return_value", None)
        self.completed += isinstance(value, float) and value == value
        if config.hydra.job.num == config.hydra.sweeper.n_trials - 1 and not self.completed:
            fail(f"{tally(job_statuses(Path(config.hydra.runtime.output_dir).parent))}; none completed", 1)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        statuses = job_statuses(sweep) if sweep.is_dir() else {}
        completed = sum(s == "completed" for s in statuses.values())
        line = tally(statuses)
        print(line, file=sys.stderr, flush=True)
        if (completed == 0) if _optuna(config) else (completed < len(statuses)):
            sys.exit(1)
