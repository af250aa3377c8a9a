"""Predict for a new table: `python scripts/predict.py ckpt_path=<run>/checkpoints/last.ckpt data.path=new.csv
data.feature_columns=[x1,x2] output=predictions.csv`."""

import hydra
from omegaconf import DictConfig

from linreg.cli import run_reporting_errors


def run(cfg: DictConfig) -> dict:
    from linreg.prediction import predict

    result = predict(cfg)
    print(f"wrote {result['rows']} predictions to {result['output']}")  # in here: see scripts/eval.py
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(run, cfg)


if __name__ == "__main__":
    main()
