"""Evaluate a checkpoint: `python scripts/eval.py ckpt_path=<run>/checkpoints/last.ckpt predict.x=[4.0]`."""

from linreg.cli import exit_quietly_on_ctrl_c

exit_quietly_on_ctrl_c()  # first: Ctrl-C during the imports below is one line, not a traceback

import json  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from linreg.cli import run_reporting_errors  # noqa: E402


def run(cfg: DictConfig) -> dict:
    from linreg.evaluate import evaluate

    result = evaluate(cfg)
    print(json.dumps(result, indent=2))  # in here, where a closed output (`| head`) ends quietly
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(run, cfg)


if __name__ == "__main__":
    main()
