"""Tabulate and plot a sweep: `python scripts/report.py [SWEEP_FOLDER]`.

Writes report.md, report.csv and report.png into the sweep folder (by default the newest under
outputs/multirun/) and prints the table: one row per job, lowest excess loss first, failed jobs last.
"""

import argparse
import sys
from pathlib import Path

from linreg.cli import stop_quietly_when_output_closes
from linreg.errors import ConfigError
from linreg.sweep_jobs import newest_sweep
from linreg.sweep_report import DPI, report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep", nargs="?", type=Path, help="a sweep folder; default: the newest under outputs/multirun"
    )
    parser.add_argument("--dpi", type=int, default=DPI, help=f"resolution of report.png (default {DPI})")
    args = parser.parse_args(argv)
    try:
        print(report(args.sweep or newest_sweep(), dpi=args.dpi))
    except ConfigError as error:  # the user's to fix: one line, no traceback
        sys.exit(f"report.py: error: {error}")
    except BrokenPipeError:  # `report.py | head`
        stop_quietly_when_output_closes()


if __name__ == "__main__":
    main()
