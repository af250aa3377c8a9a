"""The LightningDataModule: loads a source, splits it, fits the standardisation statistics, and hands the
trainer its loaders (``batches.TensorBatches``: slices of in-memory tensors, no per-sample Dataset)."""

from __future__ import annotations

import inspect
import math

import lightning as L
import torch

from linreg import compat, sources, validate
from linreg.batches import TensorBatches, auto_steps_per_call
from linreg.errors import ConfigError

CHUNK = 65_536  # rows summed at a time in float64

SOURCES = {
    "lesson": sources.lesson,
    "seed": sources.lesson,  # the old name of "lesson"; RegressionData notes the new one
    "synthetic": sources.synthetic,
    "nonlinear": sources.nonlinear,
    "csv": sources.from_csv,
}


def load(source: str, seed: int, options: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the source with its options (and the data seed where it takes one), naming any option it lacks.

    Not Hydra's instantiate with a ``_target_`` per source: the options stay flat under ``data.`` (as in
    ``data.features=4``), and a wrong one is named here rather than in a TypeError traceback.
    """
    make = SOURCES[source]
    wanted = inspect.signature(make).parameters
    if "seed" in wanted:
        options = {**options, "seed": seed}
    unknown = sorted(set(options) - set(wanted))
    missing = sorted(name for name, p in wanted.items() if p.default is p.empty and name not in options)
    if unknown or missing:
        raise ConfigError(
            f"data.source={source} takes the options {sorted(set(wanted) - {'seed'})}; "
            f"unknown: {unknown}, missing: {missing}"
        )
    return make(**options)


@torch.no_grad()
def moments(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's mean and standard deviation, as float32.

    Summed in float64 chunk by chunk (a float32 sum over a million rows loses digits). A constant
    column gets a deviation of 1, so it is centred and left unscaled rather than divided by 0.
    """
    total = torch.zeros(values.shape[1], dtype=torch.float64)
    for start in range(0, len(values), CHUNK):
        total += values[start : start + CHUNK].double().sum(0).cpu()
    mean = total / len(values)
    squares = torch.zeros_like(mean)
    for start in range(0, len(values), CHUNK):
        squares += (values[start : start + CHUNK].double().cpu() - mean).square().sum(0)
    std = (squares / len(values)).sqrt()
    std[std <= 1e-12 * mean.abs().clamp(min=1.0)] = 1.0
    return mean.float(), std.float()


def counts_training_steps(trainer) -> bool:
    """Whether a trainer setting counts the epoch in training steps, which are chunks of ``steps_per_call``
    batches: a ``limit_train_batches`` below the whole epoch, or a whole-number ``val_check_interval``.
    ``steps_per_call=auto`` then takes one batch per training step, so that they count batches as the user
    means (an explicit ``steps_per_call`` keeps its chunks: docs/speed.md)."""
    limit, interval = trainer.limit_train_batches, trainer.val_check_interval
    return isinstance(limit, int) or limit < 1.0 or isinstance(interval, int)


def check_validation_interval(trainer, steps: int, steps_per_call: int) -> None:
    """A whole-number ``val_check_interval`` counts training steps within an epoch; Lightning refuses one above the
    epoch's count with a traceback, so refuse it here in one line, saying what a training step is."""
    interval = trainer.val_check_interval
    if not isinstance(interval, int) or trainer.check_val_every_n_epoch is None or trainer.limit_train_batches != 1.0:
        return
    if interval > steps:
        each = "" if steps_per_call == 1 else f" of data.steps_per_call={steps_per_call} batches each"
        raise ConfigError(
            f"trainer.val_check_interval={interval} is more than the {steps} training steps{each} in an epoch: use at "
            f"most {steps}, a fraction of the epoch such as 0.5, or +trainer.check_val_every_n_epoch=null to count "
            "across epochs"
        )


class RegressionData(L.LightningDataModule):
    """Serves one of ``SOURCES`` with a batch size: 1 is SGD, ``full`` is GD, anything between mini-batch.

    ``batch_size`` is the global batch; under DDP each device gets ``batch_size / world_size`` samples.
    ``permute_on`` says where a shuffled order is drawn (batches.EpochPermutation): ``cpu``, the default, gives a GPU
    run the CPU run's batches; ``device`` saves the GPU the copy of the order every epoch.
    ``val_fraction`` and ``test_fraction`` hold out disjoint seeded shares; ``standardize`` asks the model to
    scale the features and the target by the training split's statistics (see ``standardization``).
    """

    _named_seed = False  # the deprecation note of data=seed is printed once per process

    def __init__(
        self,
        source: str = "lesson",
        batch_size: int | str = 1,
        shuffle: bool = False,
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        standardize: bool = False,
        seed: int = 0,
        permute_on: str = "cpu",
        steps_per_call: int | str = "auto",
        **options,
    ):
        super().__init__()
        if source not in SOURCES:
            raise ConfigError(f"data.source={source!r} is not known; use one of {sorted(set(SOURCES) - {'seed'})}")
        if source == "seed" and not RegressionData._named_seed:
            RegressionData._named_seed = True
            print("note: data=seed is now data=lesson (the lesson's three points); 'seed' means only the random seed")
        fractions = {"data.val_fraction": val_fraction, "data.test_fraction": test_fraction}
        validate.check_values({"data.batch_size": batch_size, "data.permute_on": permute_on,
                               "data.steps_per_call": steps_per_call, **fractions})
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(
                f"data.val_fraction={val_fraction} + data.test_fraction={test_fraction} leave nothing to train on: "
                "keep their sum below 1"
            )
        self.source, self.batch_size, self.shuffle, self.permute_on = source, batch_size, shuffle, permute_on
        self.steps_per_call = steps_per_call
        self.val_fraction, self.test_fraction, self.standardize = val_fraction, test_fraction, standardize
        self.seed, self.options = seed, options
        self.x_train = self.y_train = self.x_val = self.y_val = self.x_test = self.y_test = None

    def setup(self, stage: str | None = None) -> None:
        if self.x_train is not None:
            return
        x, y = load(self.source, self.seed, self.options)
        n_val, n_test = math.floor(len(x) * self.val_fraction), math.floor(len(x) * self.test_fraction)
        wanted = (("val_fraction", self.val_fraction, n_val), ("test_fraction", self.test_fraction, n_test))
        for name, fraction, n in wanted:
            if fraction > 0 and (n < 1 or n_val + n_test >= len(x)):
                raise ConfigError(
                    f"data.{name}={fraction} of {len(x)} samples leaves {n_val} for validation, {n_test} for "
                    f"testing and {len(x) - n_val - n_test} for training; each needs at least one: "
                    f"use more samples or data.{name}=0"
                )
        if n_val or n_test:  # one seeded permutation: validation first, then test, the rest trains; disjoint
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
            val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
            if n_val:
                self.x_val, self.y_val = x[val], y[val]
            if n_test:
                self.x_test, self.y_test = x[test], y[test]
            x, y = x[train], y[train]
        self.x_train, self.y_train = x, y

    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The splits that exist, by name: train, and val and test when their fractions are above 0."""
        named = {
            "train": (self.x_train, self.y_train),
            "val": (self.x_val, self.y_val),
            "test": (self.x_test, self.y_test),
        }
        return {name: pair for name, pair in named.items() if pair[0] is not None}

    def standardization(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mean and standard deviation of each feature, then of the target, over the training split only."""
        return (*moments(self.x_train), *moments(self.y_train))

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]

    def global_batch_size(self) -> int:
        return len(self.x_train) if self.batch_size == "full" else self.batch_size

    def _loader(self, x, y, batch_size: int, shuffle: bool, steps_per_call: int | None = None) -> TensorBatches:
        trainer = self.trainer
        if trainer is None:
            return TensorBatches(x, y, batch_size, shuffle, self.seed, steps_per_call=steps_per_call)
        return TensorBatches(
            x,
            y,
            batch_size,
            shuffle,
            self.seed,
            trainer.global_rank,
            trainer.world_size,
            trainer.strategy.root_device,
            completed_batches=lambda: compat.completed_batches(trainer),
            permute_on=self.permute_on,
            steps_per_call=steps_per_call,
        )

    def training_steps_per_call(self, world: int = 1, autograd: bool = True) -> int:
        """K, the optimizer steps one training step takes: ``steps_per_call``, or ``auto``'s choice, at most the
        epoch's full batches. 1 for autograd under DDP, whose gradient sync runs once per forward of the
        wrapped module, that is once per training step."""
        batch = self.global_batch_size()
        batches = max(1, len(self.x_train) // batch)
        if world > 1 and autograd:
            return 1
        if self.steps_per_call == "auto":
            if self.trainer is not None and counts_training_steps(self.trainer):
                return 1
            return auto_steps_per_call(batch // world, self.num_features, batches)
        return min(self.steps_per_call, batches)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        """TensorBatches cuts its batches on the device already: skip Lightning's walk over every batch."""
        return batch

    def train_dataloader(self) -> TensorBatches:
        # validate.check refuses this before any process starts when trainer.devices is a number;
        # with devices=auto the count is known only here
        world = self.trainer.world_size if self.trainer else 1
        validate.check_batch_divides(self.batch_size, world)
        if self.batch_size == "full" and len(self.x_train) % world:
            raise ConfigError(
                f"data.batch_size=full: the {len(self.x_train)} training samples must divide by the {world} "
                f"devices, or {len(self.x_train) % world} of them would never be trained on; change the number "
                "of samples or of devices"
            )
        steps = None  # plain batches for anyone else who reads the training split (grid search, walk-throughs)
        if self.trainer is not None and self.trainer.training:  # chunks for the fit loop: see Regressor
            autograd = self.trainer.lightning_module.hparams.get("gradient", "autograd") == "autograd"
            steps = self.training_steps_per_call(world, autograd)
        loader = self._loader(self.x_train, self.y_train, self.global_batch_size(), self.shuffle, steps)
        if steps is not None:
            check_validation_interval(self.trainer, len(loader), steps)
        return loader

    def val_dataloader(self):
        if self.x_val is None:
            return []
        return self._loader(self.x_val, self.y_val, max(self.global_batch_size(), 65_536), False)
