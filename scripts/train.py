"""Train a linear model as configured under conf/: `python scripts/train.py +experiment=sgd`."""

import sys

import hydra
from omegaconf import DictConfig

from linreg.cli import run_reporting_errors
from linreg.resolvers import note_fixed_overrides, register
from linreg.validate import check

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
def main(cfg: DictConfig) -> float:
    """Returns the excess loss over the least-squares optimum: the objective for hyper-parameter search."""
    result = run_reporting_errors(run, cfg)
    return float("inf") if result is None or result.get("excess_loss") is None else result["excess_loss"]


if __name__ == "__main__":
    main()
