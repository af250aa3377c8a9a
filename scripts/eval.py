"""Evaluate a checkpoint: `python scripts/eval.py ckpt_path=<run>/checkpoints/last.ckpt predict.x=[4.0]`."""

import json

import hydra
from omegaconf import DictConfig

from linreg.cli import run_reporting_errors


def run(cfg: DictConfig) -> dict:
    from linreg.evaluate import evaluate

    return evaluate(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    result = run_reporting_errors(run, cfg)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
