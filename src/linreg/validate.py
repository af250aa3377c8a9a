"""A strict check of the composed config, run before anything heavy is imported or any data is made.

Hydra already rejects unknown keys and unknown group options; this adds the types and ranges that
torch and Lightning would otherwise reject later with a traceback, or accept and fail silently
(a negative learning rate trains "fine" uphill).
"""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from linreg.errors import ConfigError, indivisible_batch


def finite_number(value) -> float | int | None:
    """``value`` when it is a finite number, else None (null, NaN, infinity, a bool, a string): the one test
    of "a number" for configs, summaries and sweep tables."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _number(v) -> bool:
    return finite_number(v) is not None


def _whole(v, least: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


def _is_list(v) -> bool:
    return isinstance(v, (list, tuple)) or OmegaConf.is_list(v)


def _inputs(v) -> bool:
    """``predict.x``: a non-empty list of inputs, each a number or a row of numbers (its width is checked
    against the data once the data is loaded: prediction.prediction_inputs)."""
    rows = list(v) if _is_list(v) else None
    return bool(rows) and all(_number(r) or (_is_list(r) and len(r) and all(map(_number, r))) for r in rows)


def inputs_allowed(features: int | None = None) -> str:
    """What ``predict.x`` may be: the one wording, before the data is known and once it is."""
    row = f"a row of {features} numbers" if features else "a row of numbers"
    return f"a list of inputs, each a number (standing for every feature) or {row}, e.g. predict.x=[4.0]"


RULES = [
    # key, test, what is allowed
    ("optimizer.lr", lambda v: _number(v) and v > 0, "a number > 0, e.g. optimizer.lr=0.01"),
    ("optimizer.momentum", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1), e.g. 0.9"),
    ("data.batch_size", lambda v: v == "full" or _whole(v, 1), "a whole number >= 1, or full"),
    ("data.samples", lambda v: _whole(v, 1), "a whole number >= 1"),
    ("data.features", lambda v: _whole(v, 1), "a whole number >= 1"),
    ("data.noise", lambda v: _number(v) and v >= 0, "a number >= 0"),
    ("data.val_fraction", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("data.test_fraction", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("data.standardize", lambda v: isinstance(v, bool), "true or false"),
    ("data.shuffle", lambda v: isinstance(v, bool), "true or false"),
    ("data.permute_on", lambda v: v in ("cpu", "device"), "cpu (the CPU run's order) or device (drawn on the GPU)"),
    ("data.steps_per_call", lambda v: v == "auto" or _whole(v, 1), "a whole number >= 1, or auto"),
    ("model.gradient_clip_val", lambda v: v is None or (_number(v) and v > 0), "a number > 0, or null for none"),
    ("trainer.gradient_clip_val", lambda v: v is None, "null: clip with model.gradient_clip_val, since the model "
                                                       "takes its optimizer steps itself (manual optimisation)"),
    ("trainer.accumulate_grad_batches", lambda v: _whole(v, 1) and v == 1,
     "1: the model takes one optimizer step per batch itself (manual optimisation); for larger steps raise "
     "data.batch_size"),
    ("model.depth", lambda v: _whole(v, 0), "a whole number >= 0"),
    ("model.hidden", lambda v: _whole(v, 1), "a whole number >= 1"),
    ("model.init_weight", lambda v: v is None or _number(v), "a number, or null for torch's initialisation"),
    ("model.init_bias", lambda v: v is None or _number(v), "a number, or null for torch's initialisation"),
    ("trainer.max_epochs", lambda v: v is None or v == -1 or _whole(v, 1), "a whole number >= 1, or -1 for no limit"),
    ("trainer.log_every_n_steps", lambda v: _whole(v, 0), "a whole number >= 0 (0 turns per-step logging off)"),
    ("task", lambda v: v in ("fit", "grid", "divide_conquer", "backprop"),
     "fit, grid, divide_conquer or backprop (an experiment sets it: +experiment=grid)"),
    ("seed", lambda v: _whole(v, 0), "a whole number >= 0"),
    ("threads", lambda v: v is None or _whole(v, 1), "a whole number >= 1, or null"),
    ("divergence_bound", lambda v: _number(v) and v > 0, "a number > 0, e.g. 1e10"),
    ("predict.x", _inputs, inputs_allowed()),
]


# Lightning's precision names, its aliases mapped as lightning.fabric.connector maps them (checked on 2.6.6;
# a test compares the two). Kept here so that this check needs no import of Lightning.
PRECISION_ALIASES = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}
PRECISIONS = ("32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine",
              "transformer-engine-float16")
MIXED = ("16-mixed", "bf16-mixed", "transformer-engine", "transformer-engine-float16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# Strategies whose processes Lightning starts from inside this one; any other multi-process strategy
# (ddp, and the ddp Lightning picks by itself for several devices) re-runs the command line per rank.
IN_PROCESS_LAUNCH = ("spawn", "fork", "notebook")


def precision(cfg: DictConfig) -> str:
    """``trainer.precision`` under Lightning's own name: 16 and "16" are 16-mixed, bf16 is bf16-mixed."""
    value = OmegaConf.select(cfg, "trainer.precision", default="32-true")
    name = None if isinstance(value, (bool, float)) else PRECISION_ALIASES.get(str(value), str(value))
    if name not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={value!r} is not allowed: use one of {', '.join(PRECISIONS)} "
            f"(or the short forms {', '.join(PRECISION_ALIASES)})"
        )
    return name


def _devices(value, accelerator: str) -> int | list | str:
    """``trainer.devices`` as a count, a list of GPU indices or "auto"; ConfigError for anything Lightning refuses."""
    if isinstance(value, str) and value.strip().isdigit():  # Lightning reads "2" as 2
        value = int(value)
    gpu = accelerator in ("gpu", "cuda", "auto")
    if value == "auto" or _whole(value, 1):
        return value
    if gpu and value == -1:
        return "auto"
    if gpu and OmegaConf.is_list(value) and len(value) and all(_whole(i, 0) for i in value) \
            and len(set(value)) == len(value):
        return list(value)
    allowed = "a whole number >= 1, or auto"
    if gpu:
        allowed += " (or -1) for every GPU, or a list of GPU indices such as [0,1]"
    raise ConfigError(f"trainer.devices={value!r} is not allowed with trainer.accelerator={accelerator}: use {allowed}")


def world_size(cfg: DictConfig) -> int | None:
    """How many processes the trainer settings start, derived as Lightning derives it: from the accelerator,
    devices and nodes, since Lightning picks DDP by itself for several devices (``trainer=gpu
    trainer.devices=2``, or ``trainer=auto`` on a multi-GPU host). None where the strategy is not one of
    Lightning's names (an object or a plugin): then the loader checks the batch once the trainer knows."""
    if OmegaConf.select(cfg, "trainer", default=None) is None:
        return None
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    devices = _devices(OmegaConf.select(cfg, "trainer.devices", default="auto"), accelerator)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    strategy = OmegaConf.select(cfg, "trainer.strategy", default="auto")
    if not isinstance(strategy, str):
        return None
    if accelerator == "auto":
        import torch  # only for trainer=auto or a GPU: everything else in this check stays quick

        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(devices, list):
        count = len(devices)
    elif devices == "auto":
        import torch

        count = torch.cuda.device_count() if accelerator in ("gpu", "cuda") else 1
    else:
        count = devices
    if strategy == "single_device":
        return 1
    return count * nodes


def _relaunches_per_rank(cfg: DictConfig) -> bool:
    """The strategy Lightning uses re-runs the command line for every extra rank (ddp, picked or named)."""
    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="auto"))
    return not any(word in strategy for word in IN_PROCESS_LAUNCH)


def _sweep_reruns_for_every_rank() -> bool:
    """Inside -m with a launcher that runs the jobs itself: strategy=ddp would re-run the whole command line,
    that is the whole sweep, for every extra rank. (Under SLURM the tasks are the ranks; nothing re-runs.)"""
    from hydra.core.hydra_config import HydraConfig

    from linreg.cli import in_multirun
    from linreg.compat import launches_on_slurm  # here: only a DDP job inside a sweep pays for importing Lightning

    return in_multirun() and not launches_on_slurm(HydraConfig.get().launcher.get("_target_", ""))


def _check_full_batch_optimizer(cfg: DictConfig) -> None:
    """L-BFGS needs the loss as a closure it can re-evaluate on the same whole set: no hand gradient, no mini-batches.

    Under DDP each rank would search its line on its own share of the loss, so the ranks would part ways.
    """
    if not str(OmegaConf.select(cfg, "optimizer._target_", default="")).endswith("LBFGS"):
        return
    if OmegaConf.select(cfg, "model.gradient") == "analytic":
        raise ConfigError(
            "optimizer=lbfgs re-evaluates the loss through a closure, which model.gradient=analytic does not "
            "provide: use model.gradient=autograd"
        )
    batch = OmegaConf.select(cfg, "data.batch_size", default=None)
    if batch != "full":
        raise ConfigError(
            f"optimizer=lbfgs with data.batch_size={batch}: L-BFGS's line search needs the same whole set "
            "at every step; use data.batch_size=full"
        )
    if (world_size(cfg) or 1) > 1:
        raise ConfigError(
            "optimizer=lbfgs runs on one device: each DDP rank would search on its own share; use trainer=cpu"
        )
    if "mixed" in str(OmegaConf.select(cfg, "trainer.precision")):  # Lightning's loss scaler cannot drive it
        raise ConfigError("optimizer=lbfgs does not work with mixed precision: use trainer.precision=32-true or 64")


def check_values(values: dict) -> None:
    """The RULES for the settings given (``{"data.batch_size": 0}``), the one wording of each: also for a part
    built without a composed config, as a library user builds RegressionData."""
    for key, test, allowed in RULES:
        if key in values and not test(values[key]):
            raise ConfigError(f"{key}={values[key]!r} is not allowed: use {allowed}")


def check_batch_divides(batch_size, world: int) -> None:
    """The global batch is cut into one equal share per device, so a whole-number batch must divide by their
    number (``full`` is checked against the samples, once they are loaded)."""
    if _whole(batch_size, 1) and batch_size % world:
        raise indivisible_batch(batch_size, world)


def table_file(path) -> Path:
    """``data.path`` as a file that exists, the one wording of its refusal (checked before the heavy imports,
    and again by tables.read for a library user who skips this check)."""
    if not Path(path).is_file():
        raise ConfigError(f"data.path={str(path)!r}: no such file; point data.path at a CSV or Parquet file")
    return Path(path)


def check(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad setting, its value and what is allowed."""
    missing = object()
    selected = {key: OmegaConf.select(cfg, key, default=missing, throw_on_missing=False) for key, _, _ in RULES}
    check_values({k: v for k, v in selected.items() if v is not missing})
    _trainer_settings(cfg)
    _check_full_batch_optimizer(cfg)
    world = world_size(cfg)
    if world:
        check_batch_divides(OmegaConf.select(cfg, "data.batch_size", default=None), world)
    if world and world > 1 and _relaunches_per_rank(cfg) and _sweep_reruns_for_every_rank():
        raise ConfigError(
            f"{world} processes with DDP (trainer=ddp, or several trainer.devices, for which Lightning picks ddp) "
            "inside a sweep (-m) would run the whole sweep again for every extra rank: "
            "use trainer=ddp_spawn with the same trainer.accelerator and trainer.devices (or hydra/launcher=slurm, "
            "where SLURM starts the ranks)"
        )
    if OmegaConf.select(cfg, "data.source", default=None) == "csv":
        path = OmegaConf.select(cfg, "data.path", default=None, throw_on_missing=False)  # None when still ???
        if path is None:
            raise ConfigError("data=csv needs a file: add data.path=<your.csv>")
        table_file(path)


def _trainer_settings(cfg: DictConfig) -> None:
    """Accelerator, devices, nodes and precision, checked by the names Lightning will resolve them to."""
    if OmegaConf.select(cfg, "trainer", default=None) is None:
        return
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default="auto")
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"trainer.accelerator={accelerator!r} is not allowed: use one of {', '.join(ACCELERATORS)}")
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    if not _whole(nodes, 1):
        raise ConfigError(f"trainer.num_nodes={nodes!r} is not allowed: use a whole number >= 1")
    devices = _devices(OmegaConf.select(cfg, "trainer.devices", default="auto"), accelerator)
    name = precision(cfg)
    if OmegaConf.select(cfg, "model.gradient") == "analytic" and name in MIXED:
        raise ConfigError(
            "model.gradient=analytic is derived in full precision and skips the loss scaler, but "
            f"trainer.precision={OmegaConf.select(cfg, 'trainer.precision')} is {name}: "
            "use trainer.precision=32-true or 64, or model.gradient=autograd"
        )
    if accelerator in ("gpu", "cuda"):
        import torch  # only here: everything else in this check stays quick

        if not torch.cuda.is_available():
            raise ConfigError("trainer=gpu but this machine has no CUDA GPU that torch can use: use trainer=cpu")
        have = torch.cuda.device_count()
        wanted = max(devices) + 1 if isinstance(devices, list) else devices
        if isinstance(wanted, int) and wanted > have:
            raise ConfigError(
                f"trainer.devices={OmegaConf.select(cfg, 'trainer.devices')} asks for more GPUs than the {have} "
                f"this machine has: use trainer.devices={have} or fewer"
            )
