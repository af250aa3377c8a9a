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


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v, least: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


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
    ("model.depth", lambda v: _whole(v, 0), "a whole number >= 0"),
    ("model.hidden", lambda v: _whole(v, 1), "a whole number >= 1"),
    ("model.init_weight", lambda v: v is None or _number(v), "a number, or null for torch's initialisation"),
    ("model.init_bias", lambda v: v is None or _number(v), "a number, or null for torch's initialisation"),
    ("trainer.max_epochs", lambda v: v is None or v == -1 or _whole(v, 1), "a whole number >= 1, or -1 for no limit"),
    ("trainer.log_every_n_steps", lambda v: _whole(v, 0), "a whole number >= 0 (0 turns per-step logging off)"),
    ("seed", lambda v: _whole(v, 0), "a whole number >= 0"),
    ("threads", lambda v: v is None or _whole(v, 1), "a whole number >= 1, or null"),
    ("divergence_bound", lambda v: _number(v) and v > 0, "a number > 0, e.g. 1e10"),
]


def world_size(cfg: DictConfig) -> int | None:
    """How many DDP processes the trainer settings ask for, where that is known before Lightning starts."""
    strategy = OmegaConf.select(cfg, "trainer.strategy", default=None)
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    if not (isinstance(strategy, str) and strategy.startswith("ddp") and _whole(devices, 1) and _whole(nodes, 1)):
        return None
    return devices * nodes


def _sweep_reruns_for_every_rank() -> bool:
    """Inside -m with a launcher that runs the jobs itself: strategy=ddp would re-run the whole command line,
    that is the whole sweep, for every extra rank. (Under SLURM the tasks are the ranks; nothing re-runs.)"""
    from hydra.core.hydra_config import HydraConfig

    from linreg.cli import in_multirun

    return in_multirun() and not str(HydraConfig.get().launcher.get("_target_", "")).endswith("SlurmLauncher")


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


def check(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad setting, its value and what is allowed."""
    for key, test, allowed in RULES:
        missing = object()
        value = OmegaConf.select(cfg, key, default=missing, throw_on_missing=False)
        if value is missing:
            continue
        if not test(value):
            raise ConfigError(f"{key}={value!r} is not allowed: use {allowed}")
    _check_full_batch_optimizer(cfg)
    world, batch = world_size(cfg), OmegaConf.select(cfg, "data.batch_size", default=None)
    if world and _whole(batch, 1) and batch % world:
        raise indivisible_batch(batch, world)
    if world and world > 1 and OmegaConf.select(cfg, "trainer.strategy") == "ddp" and _sweep_reruns_for_every_rank():
        raise ConfigError(
            "trainer=ddp inside a sweep (-m) would run the whole sweep again for every extra rank: "
            "use trainer=ddp_spawn (or hydra/launcher=slurm, where SLURM starts the ranks)"
        )
    mixed = "mixed" in str(OmegaConf.select(cfg, "trainer.precision"))
    if OmegaConf.select(cfg, "model.gradient") == "analytic" and mixed:
        raise ConfigError(
            "model.gradient=analytic is derived in full precision and skips the loss scaler: "
            "use trainer.precision=32-true or 64, or model.gradient=autograd"
        )
    if OmegaConf.select(cfg, "trainer.accelerator") in ("gpu", "cuda"):
        import torch  # only here: everything else in this check stays quick

        if not torch.cuda.is_available():
            raise ConfigError("trainer=gpu but this machine has no CUDA GPU that torch can use: use trainer=cpu")
    if OmegaConf.select(cfg, "data.source", default=None) == "csv":  # sources.from_csv checks again, for library use
        path = OmegaConf.select(cfg, "data.path", default=None, throw_on_missing=False)  # None when still ???
        if path is None:
            raise ConfigError("data=csv needs a file: add data.path=<your.csv>")
        if not Path(path).is_file():
            raise ConfigError(f"data.path={path!r}: no such file; point data.path at a CSV with a header row")
