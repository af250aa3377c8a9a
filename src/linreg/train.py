"""One training run: build the parts from the composed config, fit, and leave the results in the run folder."""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from linreg import metrics, optimum, summary, validate
from linreg.callbacks import Progress
from linreg.data import RegressionData
from linreg.errors import ConfigError, DivergedError, RunInterrupted
from linreg.model import Regressor


def quiet_lightning() -> None:
    """Hide Lightning's start-up lines and tips, and warnings about worker processes and batch counts
    that do not apply to in-memory tensors; real warnings still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",
        ".*smaller than the logging interval.*",
        ".*across ranks is zero.*",  # no validation set: val_dataloader returns []
        ".*isinstance.treespec, LeafSpec.*",  # Lightning's own use of a deprecated torch API
        ".*The dirpath has changed from.*",  # resume= continues into a new run folder on purpose
        ".*GPU available but not used.*",  # trainer=cpu is a choice; trainer=gpu or trainer=auto use the GPU
    ):
        warnings.filterwarnings("ignore", message=message)


def prediction_inputs(values, features: int) -> torch.Tensor:
    """``predict.x`` as rows: a number stands for the same value in every feature."""
    rows = [[float(v)] * features if isinstance(v, (int, float)) else [float(u) for u in v] for v in values]
    return torch.tensor(rows)


def prediction_rows(query: torch.Tensor) -> list:
    """The inputs as summary.json shows them: plain numbers for one feature, rows for several."""
    return query[:, 0].tolist() if query.shape[1] == 1 else query.tolist()


@torch.no_grad()
def predict(model: Regressor, x: torch.Tensor) -> list:
    p = next(model.parameters())
    out = model(x.to(device=p.device, dtype=p.dtype)).cpu()
    return out.reshape(-1).tolist()


def progress(trainer: L.Trainer) -> tuple[int, int]:
    """Epochs and steps run, also when they ran in ddp_spawn's worker processes (see Progress)."""
    metrics = trainer.callback_metrics
    if "progress/steps" in metrics and trainer.global_step == 0:
        return int(metrics["progress/epochs"]), int(metrics["progress/steps"])
    return trainer.current_epoch, trainer.global_step


def build(cfg: DictConfig) -> tuple[RegressionData, Regressor, L.Trainer]:
    data = instantiate(cfg.data)
    data.setup("fit")
    model = instantiate(
        cfg.model, in_features=data.num_features, standardize=data.standardize, optimizer=instantiate(cfg.optimizer)
    )
    if data.standardize:  # fitted on the training split only; the checkpoint keeps them with the weights
        model.set_standardization(*data.standardization())
    callbacks = [*(instantiate(c) for c in cfg.callbacks.values()), Progress()]
    try:
        trainer = instantiate(cfg.trainer, logger=instantiate(cfg.logger), callbacks=callbacks)
    except MisconfigurationException as error:  # Lightning's word on a trainer setting, without its traceback
        raise ConfigError(f"trainer: {error}") from error
    return data, model, trainer


def resumed(cfg: DictConfig) -> DictConfig:
    """The config of the run folder ``cfg.resume``, set to continue from its last checkpoint into this run's folder.

    It is saved over this run's .hydra/config.yaml, which Hydra wrote before it knew, so that resuming this
    run in turn continues the same experiment.
    """
    from hydra.core.hydra_config import HydraConfig

    folder = Path(cfg.resume)
    saved, checkpoint = folder / ".hydra" / "config.yaml", folder / "checkpoints" / "last.ckpt"
    if not saved.is_file():
        raise ConfigError(f"resume={cfg.resume}: no .hydra/config.yaml there; give a run folder of scripts/train.py")
    if not checkpoint.is_file():
        raise ConfigError(f"resume={cfg.resume}: no checkpoints/last.ckpt there to continue from")
    typed = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    others = [o for o in typed if not o.startswith("resume=")]
    if others:
        raise ConfigError(
            f"resume= continues a run as it was and takes no other settings ({', '.join(others)}); to change "
            f"them, give the settings with ckpt_path={checkpoint}"
        )
    previous = OmegaConf.load(saved)
    previous.output_dir, previous.ckpt_path, previous.resume = cfg.output_dir, str(checkpoint), None
    (Path(cfg.output_dir) / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(previous, Path(cfg.output_dir) / ".hydra" / "config.yaml")
    return previous


def start_run(cfg: DictConfig) -> Path:
    """What every task does first: quiet Lightning, make the run folder, set the torch threads."""
    quiet_lightning()
    folder = Path(cfg.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return folder


def draw_figures(model: Regressor, data: RegressionData, folder: Path, experiment, cfg: DictConfig | None = None):
    """landscape.png (a linear model of one feature) or fitted_curve.png (an MLP), also as TensorBoard images,
    titled with the experiment and its learning rate."""
    from linreg import figures

    title = None if cfg is None else figures.run_title(cfg)
    if not model.is_linear:
        figure = figures.fitted_curve(model, data.x_train, data.y_train, title=title)
        figures.save(figure, folder, "fitted_curve", experiment)
        return
    figure = figures.landscape(data.x_train, data.y_train, model.path, bias=model.hparams.bias, title=title)
    if figure is None:
        print(f"landscape: not drawn for {data.num_features} features (it is a picture of one weight and a bias)")
        return
    figures.save(figure, folder, "landscape", experiment)


def train(cfg: DictConfig) -> dict:
    """Fit the configured model; write summary.json and the HParams entry; return the summary.

    A diverged or interrupted run still writes its summary (status ``diverged`` or ``interrupted``) and
    keeps its events, then raises DivergedError or RunInterrupted for the command line to report.
    """
    validate.check(cfg)  # scripts/train.py checks before its heavy imports; this is for in-process callers
    if cfg.resume:
        cfg = resumed(cfg)
    folder = start_run(cfg)
    L.seed_everything(cfg.seed, verbose=False)
    data, model, trainer = build(cfg)
    if cfg.ckpt_path:  # "before training" is where this run starts: the checkpoint's weights
        model.load_state_dict(torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False)["state_dict"])
    query = prediction_inputs(cfg.predict.x, data.num_features)
    before = predict(model, query)

    status, error = "completed", None
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=data, ckpt_path=cfg.ckpt_path)
    except DivergedError as diverged:
        status, error = "diverged", diverged
    except SIGTERMException:
        status = "interrupted"
        error = RunInterrupted(
            f"interrupted at step {trainer.global_step}; checkpoint saved. Continue with: "
            f"python scripts/train.py resume={folder}"
        )
    wall = time.perf_counter() - start

    epochs, steps = progress(trainer)
    bias = model.hparams.bias
    final_loss = optimum.mse(model, data.x_train, data.y_train, dtype=next(model.parameters()).dtype)
    best = optimum.least_squares(data.x_train, data.y_train, bias=bias)
    result = {
        "experiment": cfg.name,
        "status": status,
        "final_loss": final_loss,
        "excess_loss": final_loss - best["loss"],
        # in the data's own units, also when the model standardises its inputs
        "weight": model.coefficients()[0].reshape(-1).tolist() if model.is_linear else None,
        "bias": model.coefficients()[1].tolist() if model.is_linear and bias else None,
        "metrics": metrics.by_split(model, data.splits(), dtype=next(model.parameters()).dtype),
        "predictions": {
            "x": prediction_rows(query),
            "before": before,
            "after": predict(model, query),
        },
        "optimum": best,
        "epochs": epochs,
        "steps": steps,
        "wall_time_s": wall,
        "device": str(trainer.strategy.root_device),
    }
    if error is not None:
        result["error"] = str(error)
    if trainer.is_global_zero:
        summary.write(result, folder)
        draw_figures(model, data, folder, trainer.logger.experiment, cfg)
        scores = {k: result[k] for k in ("final_loss", "excess_loss")}
        scores.update({f"val_{k}": v for k, v in result["metrics"].get("val", {}).items()})
        trainer.logger.log_hyperparams(summary.hparams(cfg), {k: v for k, v in scores.items() if math.isfinite(v)})
        trainer.logger.finalize(status)
        print(summary.console_report(result, folder))
    if error is not None:
        raise error
    return result
