"""One training run: build the parts from the composed config, fit, and leave the results in the run folder."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from linreg import checkpoints, compat, figures, metrics, optimum, validate
from linreg.callbacks import (
    END_GROWTH,
    CountsToMainProcess,
    DivergenceGuard,
    ProcessGroupEndsBeforeExit,
    growth_floor,
    lr_advice,
    nonfinite_parameters,
    runaway,
)
from linreg.compat import SIGTERMException
from linreg.data import RegressionData
from linreg.errors import ConfigError, DivergedError, RunInterrupted
from linreg.model import Regressor
from linreg.prediction import predict_values, prediction_inputs, prediction_rows
from linreg.runs import finish, make, start_run
from linreg.trajectory import recorded_path


def epochs_and_steps(trainer: L.Trainer) -> tuple[int, int]:
    """Epochs and steps run, also when they ran in ddp_spawn's worker processes (see CountsToMainProcess)."""
    steps = compat.sent_from_workers(trainer, "counts/steps")
    if steps is not None and trainer.global_step == 0:
        return compat.sent_from_workers(trainer, "counts/epochs"), steps
    # a run stopped in on_train_epoch_end (diverged) has processed that epoch, but current_epoch not yet counted it
    return max(trainer.current_epoch, compat.epochs_processed(trainer)), trainer.global_step


def try_optimizer(model: Regressor) -> None:
    """Build the optimizer once now, so options torch rejects (``+optimizer.betas=[2,3]``) are one line
    before training rather than a traceback from inside it."""
    try:
        optimizer = model.configure_optimizers()
    except (ValueError, TypeError, RuntimeError) as error:
        raise ConfigError(f"optimizer: {error}; check the optimizer.* settings") from error
    closure = inspect.signature(optimizer.step).parameters.get("closure")
    if model.hparams.gradient == "analytic" and closure is not None and closure.default is inspect.Parameter.empty:
        raise ConfigError(
            f"model.gradient=analytic sets the gradient by hand for one step at a time, but "
            f"{type(optimizer).__name__} needs a closure that re-evaluates the loss: use model.gradient=autograd, "
            "or optimizer=sgd, momentum or adam"
        )


def build(cfg: DictConfig) -> tuple[RegressionData, Regressor, L.Trainer]:
    data = make(cfg.data, "data")
    data.setup("fit")
    model = make(
        cfg.model, "model", in_features=data.num_features, standardize=data.standardize,
        optimizer=make(cfg.optimizer, "optimizer"),
    )
    if data.standardize:  # fitted on the training split only; the checkpoint keeps them with the weights
        model.set_standardization(*data.standardization())
    try_optimizer(model)
    callbacks = [
        *(make(c, f"callbacks.{name}") for name, c in cfg.callbacks.items()),
        CountsToMainProcess(),
        ProcessGroupEndsBeforeExit(),
    ]
    trainer = make(cfg.trainer, "trainer", logger=make(cfg.logger, "logger"), callbacks=callbacks)
    return data, model, trainer


def recorded_data(cfg: DictConfig) -> dict:
    """The data settings as plain values, a CSV's path made absolute, to find the same data again later."""
    options = OmegaConf.to_container(cfg.data, resolve=True)
    if isinstance(options.get("path"), str):
        options["path"] = str(Path(options["path"]).resolve())
    return options


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
    done = folder / "summary.json"
    status = json.loads(done.read_text()).get("status") if done.is_file() else None
    if status == "completed":
        raise ConfigError(
            f"resume={cfg.resume}: that run already completed; there is nothing to continue. To train it further, "
            f"give its settings with ckpt_path={checkpoint} and a larger trainer.max_epochs"
        )
    if status == "diverged":
        raise ConfigError(
            f"resume={cfg.resume}: that run diverged, and its last state is the blown-up one; start it again "
            "with a lower optimizer.lr (its error in summary.json suggests one)"
        )
    try:
        previous = OmegaConf.load(saved)
    except Exception as error:  # a yaml or OmegaConf error: the file was edited or cut off
        raise ConfigError(f"resume={cfg.resume}: its .hydra/config.yaml cannot be read ({error})") from error
    previous.output_dir, previous.ckpt_path, previous.resume = cfg.output_dir, str(checkpoint), None
    try:
        validate.check(previous)
    except ConfigError as error:
        raise ConfigError(f"resume={cfg.resume}: its config no longer validates: {error}") from None
    (Path(cfg.output_dir) / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(previous, Path(cfg.output_dir) / ".hydra" / "config.yaml")
    return previous


def final_divergence(reason: str, cfg: DictConfig, data: RegressionData, model: Regressor) -> str:
    """The one line of a run found diverged only once it ended."""
    advice = lr_advice(model, data, model.configure_optimizers())
    return f"training diverged by its end: {reason} with optimizer.lr={cfg.optimizer.lr:g}; {advice}"


def run_figure(model: Regressor, data: RegressionData, cfg: DictConfig | None = None, path=()):
    """``(name, figure)``: landscape (a linear model of one feature) or fitted_curve (an MLP), titled with the
    experiment and its learning rate; None where there is no picture to draw."""
    title = None if cfg is None else figures.run_title(cfg)
    if not model.is_linear:
        return "fitted_curve", figures.fitted_curve(model, data.x_train, data.y_train, title=title)
    figure = figures.landscape(data.x_train, data.y_train, list(path), bias=model.hparams.bias, title=title)
    if figure is None:
        print(f"landscape: not drawn for {data.num_features} features (it is a picture of one weight and a bias)")
        return None
    return "landscape", figure


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
    data.save_hyperparameters(recorded_data(cfg), logger=False)  # in every checkpoint: eval.py scores on it
    query = prediction_inputs(cfg.predict.x, data.num_features)
    if cfg.ckpt_path:  # "before training" is where this run starts: the checkpoint's weights
        setting = "resume" if cfg.resume else "ckpt_path"
        saved = checkpoints.read(cfg.ckpt_path, setting)
        checkpoints.load_weights(model, saved, cfg.ckpt_path, setting)
        checkpoints.check_optimizer(model.configure_optimizers(), saved, cfg.ckpt_path, setting)
    before = predict_values(model, query)
    start_loss = optimum.mse(model, data.x_train, data.y_train, dtype=next(model.parameters()).dtype)
    scale = model.loss_scale()  # the divergence checks work in the optimiser's units (DivergenceGuard)
    for guard in (c for c in trainer.callbacks if isinstance(c, DivergenceGuard)):
        guard.start_loss = start_loss / scale  # a resumed run's checkpoint replaces it with the first run's

    status, error = "completed", None
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=data, ckpt_path=cfg.ckpt_path, weights_only=True)
    except DivergedError as diverged:
        status, error = "diverged", diverged
    except SIGTERMException:
        status = "interrupted"
        error = RunInterrupted(
            f"interrupted at step {trainer.global_step}; checkpoint saved. Continue with: "
            f"python scripts/train.py resume={folder}"
        )
    wall = time.perf_counter() - start

    epochs, steps = epochs_and_steps(trainer)
    bias = model.hparams.bias
    final_loss = optimum.mse(model, data.x_train, data.y_train, dtype=next(model.parameters()).dtype)
    if status == "completed":  # the last word, also where no guard ran (removed, or in ddp_spawn's workers)
        reason = runaway(
            final_loss / scale, start_loss / scale, cfg.divergence_bound, growth_floor(data.y_train) / scale, END_GROWTH
        ) or nonfinite_parameters(model)
        if reason is not None:
            status, error = "diverged", DivergedError(final_divergence(reason, cfg, data, model))
    best = optimum.least_squares(data.x_train, data.y_train, bias=bias)
    if best is None and trainer.is_global_zero:
        print(
            f"optimum: not computed for {len(data.x_train)} samples x {data.num_features} features (a closed form "
            "would take more than a few seconds at this size); excess_loss is null"
        )
    result = {
        "experiment": cfg.name,
        "status": status,
        "final_loss": final_loss,
        "excess_loss": final_loss - best["loss"] if best else None,
        # in the data's own units, also when the model standardises its inputs
        "weight": model.coefficients()[0].reshape(-1).tolist() if model.is_linear else None,
        "bias": model.coefficients()[1].tolist() if model.is_linear and bias else None,
        "metrics": metrics.by_split(model, data.splits(), dtype=next(model.parameters()).dtype),
        "predictions": {
            "x": prediction_rows(query),
            "before": before,
            "after": predict_values(model, query),
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
        figure = run_figure(model, data, cfg, recorded_path(trainer))
        finish(result, cfg, folder, trainer.logger, figure, logger_status=status)
    if error is not None:
        raise error
    return result
