"""Train a linear model as configured under conf/: `python scripts/train.py +experiment=sgd`."""

from linreg.cli import exit_quietly_on_ctrl_c

exit_quietly_on_ctrl_c()  # first: Ctrl-C during the imports below is one line, not a traceback

import sys  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from linreg.cli import run_reporting_errors  # noqa: E402
from linreg.resolvers import note_fixed_overrides, register  # noqa: E402
from linreg.validate import check  # noqa: E402

register()
note_fixed_overrides(sys.argv[1:])


def run(cfg: DictConfig) -> dict:
    check(cfg)  # before the heavy imports below, so a typo fails in a blink
    if cfg.task == "grid":
        from linreg.grid import search

        return search(cfg)
    if cfg.task in ("backprop", "divide_conquer"):
        from importlib import import_module

        return import_module(f"linreg.{cfg.task}").run(cfg)
    from linreg.train import train

    return train(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the excess loss over the least-squares optimum (the final loss where no optimum was computed):
    the objective of a hyper-parameter search. A run that did not complete returns None, which Optuna
    counts as a failed trial, never as a value that could win."""
    result = run_reporting_errors(run, cfg)
    if result is None or result.get("status", "completed") != "completed":
        return None
    value = result.get("excess_loss")
    return float(result["final_loss"] if value is None else value)


if __name__ == "__main__":
    main()
