"""The LightningDataModule: in-memory tensors served in batches cut by slicing.

A ``TensorDataset`` behind a default ``DataLoader`` fetches and collates one sample at a time, which for a
linear model costs 10 to 300 times the arithmetic (docs/benchmarks.md). Here a batch is a slice of the
tensors, or one ``index_select`` of a seeded per-epoch permutation when shuffling.
"""

from __future__ import annotations

import inspect
import math

import lightning as L
import torch

from linreg import compat, sources, validate
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


class EpochPermutation:
    """The order of the samples in one epoch: a permutation seeded by (seed, epoch), or None for in order.

    It plays the part of a sampler: Lightning calls ``set_epoch`` on a loader's ``sampler`` at the start
    of every epoch, also after resuming from a checkpoint, so the data order resumes exactly.

    ``permute_on="cpu"`` draws the order on the CPU, the same on every device, so a GPU run sees the batches
    of the CPU run; for a GPU it is drawn into pinned memory and copied without blocking. ``"device"`` draws
    it where the data lives with that device's generator: nothing crosses the bus, but the order differs
    from the CPU's (reproducible on the same kind of device).
    """

    def __init__(self, samples: int, shuffle: bool, seed: int, device=None, permute_on: str = "cpu"):
        self.samples, self.shuffle, self.seed, self.epoch = samples, shuffle, seed, 0
        self.device, self.permute_on = torch.device(device or "cpu"), permute_on

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        seed = self.seed * 1_000_003 + self.epoch
        if self.permute_on == "device":
            generator = torch.Generator(self.device).manual_seed(seed)
            return torch.randperm(self.samples, generator=generator, device=self.device)
        pinned = self.device.type == "cuda"
        order = torch.randperm(self.samples, generator=torch.Generator().manual_seed(seed), pin_memory=pinned)
        return order.to(self.device, non_blocking=pinned)


class TensorBatches(compat.ResumableLoader):
    """Yields ``(x, y)`` batches of one rank's share of every global batch.

    Global batch ``i`` holds samples ``i*B .. (i+1)*B`` of the epoch's order, and rank ``r`` of ``W`` takes
    the ``r``-th of its ``W`` equal parts, so a DDP run sees the same global batches as a single process.
    The one exception: the last, shorter batch of an epoch is cut to a multiple of ``W`` (up to ``W - 1``
    samples an epoch sit out) so that every rank gets the same share.
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool, seed: int, rank=0, world_size=1, device=None,
                 completed_batches=None, permute_on: str = "cpu"):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.sampler = EpochPermutation(len(x), shuffle, seed, self.x.device, permute_on)
        self.completed_batches = completed_batches  # () -> how many batches of this epoch the trainer completed
        self._skip = 0

    def state_dict(self) -> dict:
        """Where a checkpoint taken mid-epoch stands, so Lightning can resume on the very next batch.

        The count comes from the trainer, not from this iterator, which Lightning reads one batch ahead.
        """
        return {"epoch": self.sampler.epoch, "completed": self.completed_batches() if self.completed_batches else 0}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._skip = state["completed"]

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (1 if rest // self.world_size > 0 else 0)

    def __iter__(self):
        # One batch of the whole set: its gradient is the same in any order, so skip the permutation and
        # the copy of the set that index_select would make (docs/benchmarks.md: memory).
        order = self.sampler.indices() if self.batch_size < len(self.x) else None
        n = len(self.x)
        first, self._skip = self._skip * self.batch_size, 0
        for start in range(first, len(self) * self.batch_size, self.batch_size):
            share = (min(start + self.batch_size, n) - start) // self.world_size
            lo = start + self.rank * share
            if order is None:
                yield self.x[lo : lo + share], self.y[lo : lo + share]
            else:
                index = order[lo : lo + share]
                yield self.x.index_select(0, index), self.y.index_select(0, index)


class RegressionData(L.LightningDataModule):
    """Serves one of ``SOURCES`` with a batch size: 1 is SGD, ``full`` is GD, anything between mini-batch.

    ``batch_size`` is the global batch; under DDP each device gets ``batch_size / world_size`` samples.
    ``permute_on`` says where a shuffled order is drawn (EpochPermutation): ``cpu``, the default, gives a GPU
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
        **options,
    ):
        super().__init__()
        if source not in SOURCES:
            raise ConfigError(f"data.source={source!r} is not known; use one of {sorted(set(SOURCES) - {'seed'})}")
        if source == "seed" and not RegressionData._named_seed:
            RegressionData._named_seed = True
            print("note: data=seed is now data=lesson (the lesson's three points); 'seed' means only the random seed")
        fractions = {"data.val_fraction": val_fraction, "data.test_fraction": test_fraction}
        validate.check_values({"data.batch_size": batch_size, "data.permute_on": permute_on, **fractions})
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(
                f"data.val_fraction={val_fraction} + data.test_fraction={test_fraction} leave nothing to train on: "
                "keep their sum below 1"
            )
        self.source, self.batch_size, self.shuffle, self.permute_on = source, batch_size, shuffle, permute_on
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

    def _loader(self, x, y, batch_size: int, shuffle: bool) -> TensorBatches:
        trainer = self.trainer
        if trainer is None:
            return TensorBatches(x, y, batch_size, shuffle, self.seed)
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
        )

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
        return self._loader(self.x_train, self.y_train, self.global_batch_size(), self.shuffle)

    def val_dataloader(self):
        if self.x_val is None:
            return []
        return self._loader(self.x_val, self.y_val, max(self.global_batch_size(), 65_536), False)
