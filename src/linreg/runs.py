"""A run's start and finish, the same for every task (training, the grid search, divide and conquer, the
back-propagation walk-through): build a configured part, make the run folder, and leave the results there."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from linreg import figures, summary
from linreg.compat import quiet_lightning
from linreg.errors import ConfigError
from linreg.validate import finite_number


def make(node: DictConfig, group: str, **kwargs):
    """``instantiate(node)``, with what the constructor rejects as one line naming the group.

    Hydra wraps every constructor's error in InstantiationException, with the real one as its cause: ours
    (ConfigError) goes on as it is; torch's, Lightning's or a wrong key's is named with its group.
    """
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__ or error
        if isinstance(cause, ConfigError):
            raise cause from None
        said = " ".join(str(cause).split())[:400] or type(cause).__name__  # one line, however many it had
        raise ConfigError(f"{group}: {said}; check the {group}.* settings") from cause  # HYDRA_FULL_ERROR shows it


def start_run(cfg: DictConfig) -> Path:
    """What every task does first: quiet Lightning, make the run folder, set the torch threads."""
    quiet_lightning()
    folder = Path(cfg.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return folder


def scores(result: dict) -> dict:
    """The numbers the HParams tab shows beside the settings: the final and excess loss, the validation
    metrics when there was a validation split; a null or non-finite one is left out."""
    found = {k: result.get(k) for k in ("final_loss", "excess_loss")}
    found.update({f"val_{k}": v for k, v in (result.get("metrics") or {}).get("val", {}).items()})
    return {k: v for k, v in found.items() if finite_number(v) is not None}


def finish(result: dict, cfg: DictConfig, folder: Path, logger, figure=None, logger_status: str = "success") -> None:
    """What every task leaves, in one order: summary.json, its figure (``(name, figure)``, as a file and a
    TensorBoard image), the HParams entry with its scores, the logger closed, and the console report."""
    summary.write(result, folder)
    if figure is not None:
        figures.save(figure[1], folder, figure[0], logger.experiment)
    logger.log_hyperparams(summary.hparams(cfg), scores(result))
    logger.finalize(logger_status)
    print(summary.console_report(result, folder))
