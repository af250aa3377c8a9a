"""OmegaConf resolvers used by the configs. Imported before Hydra composes, so it stays light."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf


def unique_dir(path: str) -> str:
    """Create and return ``path``, or ``path-2``, ``path-3``...: the first one no other run has taken.

    Hydra names run folders by the second they start in, so two runs started together would share one;
    ``mkdir`` without ``exist_ok`` is atomic, so exactly one run wins each name, even across machines.
    """
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return str(candidate)


FIXED_KEYS = "LINREG_FIXED_OVERRIDES"  # read by every job of a sweep, also in launcher worker processes


def note_fixed_overrides(argv: list[str]) -> None:
    """Remember which command-line overrides every job of a sweep shares, so job folders can leave them out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in argv if ("=" in a or a.startswith("~")) and not a.startswith("-")]  # ~key deletes
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # Hydra itself reports malformed overrides, with a better message
        return
    os.environ[FIXED_KEYS] = ",".join(o.key_or_group for o in parsed if not o.is_sweep_override())


def job_name(number: int, task_overrides) -> str:
    """``3_optimizer=adam,optimizer.lr=0.1``: a job's number and the overrides that set it apart.

    Hydra's ``override_dirname`` lists every override, the ones all jobs share too, unless each is named in
    ``exclude_keys`` beforehand; here those typed once on the command line are left out by themselves.
    """
    fixed = set(filter(None, os.environ.get(FIXED_KEYS, "").split(",")))
    differing = [o for o in task_overrides if o.split("=", 1)[0].lstrip("+~") not in fixed]
    return "_".join([str(number), *([",".join(differing).replace("/", "%")] if differing else [])])


def when_terminal(rate: int) -> int:
    """``rate`` when stdout is a terminal, else 0 (which turns Lightning's progress bar off): a bar redrawn
    with carriage returns floods a log file or a pipe with tens of kilobytes of redraws."""
    return rate if sys.stdout.isatty() else 0


def run_name(name: str, resume) -> str:
    """A resumed run's folder is named after the experiment it continues (``resume=`` alone leaves ``name`` at
    its default), read from the resumed folder's saved config."""
    saved = Path(str(resume)) / ".hydra" / "config.yaml" if resume else None
    if saved is not None and saved.is_file():
        try:
            return str(OmegaConf.load(saved).get("name") or name)
        except Exception:  # an unreadable config is reported by train.resumed(), with a better message
            return name
    return name


def register() -> None:
    # use_cache: every job of a sweep resolves hydra.sweep.dir again from a copy of the sweep's cache,
    # so all of them get the one folder made for the sweep.
    OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("job_name", job_name, replace=True)
    OmegaConf.register_new_resolver("when_terminal", when_terminal, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
