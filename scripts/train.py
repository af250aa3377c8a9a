"""Train a linear model as configured under conf/: `python scripts/train.py +experiment=sgd`."""

import sys

import hydra
from omegaconf import DictConfig

from linreg.resolvers import note_fixed_overrides, register

register()
note_fixed_overrides(sys.argv[1:])


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns the excess loss over the least-squares optimum: the objective for hyper-parameter search."""
    # imported here so that --help and --cfg stay quick
    if cfg.task == "grid":
        from linreg.grid import search as run
    else:
        from linreg.train import train as run
    return run(cfg)["excess_loss"]


if __name__ == "__main__":
    main()
