"""The training loader: in-memory tensors served in batches (or chunks of batches) cut by slicing.

A ``TensorDataset`` behind a default ``DataLoader`` fetches and collates one sample at a time, which for a
linear model costs 10 to 300 times the arithmetic (docs/benchmarks.md). Here a batch is a slice of the
tensors, or one ``index_select`` of a seeded per-epoch permutation when shuffling; a chunk of K batches is cut
the same way in one go, so that one training step can run K optimizer steps (``data.steps_per_call``).
"""

from __future__ import annotations

import torch

from linreg import compat
from linreg.errors import ConfigError

# steps_per_call=auto: enough optimizer steps per training step for about CALL_SECONDS of work, by a cost model
# of one CPU step of this model (the raw autograd loop, docs/benchmarks.md): STEP_SECONDS plus ROW_SECONDS a
# row and feature. Lightning's own cost, about 0.5 ms per training step, then falls to a few per cent of the
# work (measured: 5 ms left 10 % more per epoch at batch 1 than 20 ms); a SIGTERM or a diverging loss waits at
# most that long for the chunk to end.
CALL_SECONDS = 20e-3
STEP_SECONDS = 100e-6
ROW_SECONDS = 0.02e-6


def auto_steps_per_call(rows: int, features: int, batches: int) -> int:
    """K for ``steps_per_call=auto``: about ``CALL_SECONDS`` of steps of ``rows`` x ``features``, at most an epoch."""
    wanted = round(CALL_SECONDS / (STEP_SECONDS + ROW_SECONDS * rows * features))
    return max(1, min(wanted, batches))


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
    """Yields ``(x, y)`` batches of one rank's share of every global batch, or chunks of ``steps_per_call`` of them.

    Global batch ``i`` holds samples ``i*B .. (i+1)*B`` of the epoch's order, and rank ``r`` of ``W`` takes
    the ``r``-th of its ``W`` equal parts, so a DDP run sees the same global batches as a single process.
    The one exception: the last, shorter batch of an epoch is cut to a multiple of ``W`` (up to ``W - 1``
    samples an epoch sit out) so that every rank gets the same share.

    With ``steps_per_call=K`` each item is a chunk: K consecutive batches stacked as ``(steps, rows, features)``
    and cut by one slice or one ``index_select``, for K optimizer steps in one training step (Lightning's
    fixed cost per step is paid once per chunk). An epoch's last chunk may hold fewer batches, and its last,
    shorter batch comes as a chunk of its own. Chunks start every K batches, so resuming at a chunk is exact.
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool, seed: int, rank=0, world_size=1, device=None,
                 completed_batches=None, permute_on: str = "cpu", steps_per_call: int | None = None):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.steps_per_call = steps_per_call
        self.sampler = EpochPermutation(len(x), shuffle, seed, self.x.device, permute_on)
        self.completed_batches = completed_batches  # () -> how many items of this epoch the trainer completed
        self._skip = 0  # batches (not chunks) to skip at the start of the next epoch's iteration

    @property
    def _per_item(self) -> int:
        return self.steps_per_call or 1

    def state_dict(self) -> dict:
        """Where a checkpoint taken mid-epoch stands, so Lightning can resume on the very next batch or chunk.

        The count comes from the trainer, not from this iterator, which Lightning reads one item ahead.
        """
        done = self.completed_batches() if self.completed_batches else 0
        return {"epoch": self.sampler.epoch, "completed": done, "batches_per_item": self._per_item}

    def load_state_dict(self, state: dict) -> None:
        per_item = state.get("batches_per_item", 1)
        if state["completed"] and per_item != self._per_item:  # Lightning counts the epoch in items, not batches
            raise ConfigError(
                f"the checkpoint stopped in the middle of an epoch, after {state['completed']} training steps of "
                f"{per_item} batches; continue it with data.steps_per_call={per_item} (now {self._per_item})"
            )
        self.sampler.set_epoch(state["epoch"])
        self._skip = state["completed"] * per_item

    def _batches(self) -> tuple[int, int]:
        """(full batches, 1 if a shorter last batch follows else 0) in an epoch."""
        full, rest = divmod(len(self.x), self.batch_size)
        return full, (1 if rest // self.world_size > 0 else 0)

    def __len__(self) -> int:
        full, short = self._batches()
        if self.steps_per_call is None:
            return full + short
        return -(-full // self.steps_per_call) + short

    def __iter__(self):
        # One batch of the whole set: its gradient is the same in any order, so skip the permutation and
        # the copy of the set that index_select would make (docs/benchmarks.md: memory).
        order = self.sampler.indices() if self.batch_size < len(self.x) else None
        full, short = self._batches()
        first, self._skip = self._skip, 0
        k = self._per_item
        for start in range(first, full, k):
            yield self._cut(order, start, min(k, full - start), self.batch_size)
        if short and first <= full:
            yield self._cut(order, full, 1, (len(self.x) - full * self.batch_size))

    def _cut(self, order, batch: int, steps: int, size: int):
        """``steps`` consecutive global batches of ``size`` from batch number ``batch``: this rank's share."""
        share = size // self.world_size
        lo, span = batch * self.batch_size, share * self.world_size  # span == size but for a last, short batch
        if order is None:
            x, y = (t[lo : lo + steps * span].reshape(steps, self.world_size, share, -1)[:, self.rank]
                    for t in (self.x, self.y))
        else:
            index = order[lo : lo + steps * span].view(steps, self.world_size, share)[:, self.rank].reshape(-1)
            x, y = (t.index_select(0, index).view(steps, share, -1) for t in (self.x, self.y))
        return (x, y) if self.steps_per_call else (x[0], y[0])
