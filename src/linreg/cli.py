"""How the scripts report the errors that are the user's to fix: one line on stderr and a non-zero exit.

``HYDRA_FULL_ERROR=1`` shows the full traceback instead. Inside a multirun the failed job is reported
and the sweep goes on with its other jobs.
"""

from __future__ import annotations

import os
import sys

from linreg.errors import ConfigError, DivergedError, RunInterrupted

EXIT_CODES = {ConfigError: 2, DivergedError: 3, RunInterrupted: 130}


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_reporting_errors(run, *args):
    """``run(*args)``; a user error becomes one line and an exit code, or None inside a multirun."""
    try:
        return run(*args)
    except tuple(EXIT_CODES) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        if in_multirun():
            return None
        sys.exit(EXIT_CODES[type(error)])
