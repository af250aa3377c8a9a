"""Time an epoch of the project's training path against a hand-written PyTorch loop, side by side.

One process, the same data and device, interleaved repetitions: a raw loop (nn.Linear, F.mse_loss, SGD, batches
cut from a permuted index) timed by ``torch.utils.benchmark.Timer``; the project (RegressionData + Regressor under
a Trainer, TensorBoard on and off, in chunks of ``--steps-per-call`` steps and one step per training step, and
with ``gradient=analytic``); and the usual ``DataLoader(TensorDataset)`` setup, timed epoch by epoch by a callback
(a Timer would count the trainer's start-up). Without ``--quick`` it also runs scripts/bench_footprint.py (end to
end, peak memory). The targets, and whether a run meets them, are in docs/benchmarks.md.

    python scripts/bench.py                   # the defaults: 1,000,000 samples, batches 32,1024,65536,full
    python scripts/bench.py --samples 2000 --batch-sizes 64,full --repeats 1 --epochs 2 --quick
    python scripts/bench.py --batch-sizes 1,32 --steps-per-call 8   # chunks of 8 steps instead of auto
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import tempfile
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F
from bench_footprint import footprint  # scripts/ is on the path of a script run from it
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils import benchmark
from torch.utils.data import DataLoader, TensorDataset

from linreg import sources
from linreg.compat import quiet_lightning
from linreg.data import RegressionData
from linreg.model import Regressor

LR = 0.01
TITLE = "epoch time, scaled to the whole epoch (*: capped at --max-steps steps; usual: about --usual-samples samples)"


def raw_epoch(x, y, batch: int, cap: int):
    """The hand-written loop, as a function of no arguments that runs one epoch of at most ``cap`` steps."""
    torch.manual_seed(0)
    model, g = nn.Linear(x.shape[1], 1).to(x.device), torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def epoch():
        perm = torch.randperm(len(x), generator=g).to(x.device)
        for i in range(0, min(math.ceil(len(x) / batch), cap) * batch, batch):
            index = perm[i : i + batch]
            optimizer.zero_grad()
            F.mse_loss(model(x[index]), y[index]).backward()
            optimizer.step()

    return epoch


class EpochTimer(L.Callback):
    """Wall time from each epoch's start to the next one's: every hook, the logger and the loader included."""

    def __init__(self):
        self.marks = []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())

    on_train_end = on_train_epoch_start  # the last epoch ends where training does


def lightning_epochs(x, y, batch, epochs, cap, *, usual=False, logger=True, gradient="autograd", logdir=None,
                     permute_on="cpu", steps_per_call="auto") -> list[float]:
    """Epoch times of a Regressor on the project's DataModule, or on a default DataLoader (``usual``). ``cap``
    counts optimizer steps, rounded up to whole chunks (``limit_train_batches`` counts training steps)."""
    torch.manual_seed(0)
    model = Regressor(in_features=x.shape[1], gradient=gradient, optimizer=functools.partial(torch.optim.SGD, lr=LR))
    data = RegressionData(source="synthetic", batch_size=batch, shuffle=True, seed=0, permute_on=permute_on,
                          steps_per_call=steps_per_call)
    data.x_train, data.y_train = x, y  # the shared tensors: setup() keeps data already there
    per_call = 1 if usual else data.training_steps_per_call()
    data.steps_per_call = per_call  # a number, not auto: under auto a limit_train_batches would make chunks of one
    timer, steps, calls = EpochTimer(), math.ceil(len(x) / batch), math.ceil(math.ceil(len(x) / batch) / per_call)
    cap_calls = math.ceil(cap / per_call)
    timed = steps if cap_calls >= calls else cap_calls * per_call  # optimizer steps an epoch runs
    trainer = L.Trainer(
        accelerator="gpu" if x.is_cuda else "cpu", devices=1, max_epochs=epochs, log_every_n_steps=50,
        limit_train_batches=cap_calls if cap_calls < calls else 1.0, callbacks=[timer], num_sanity_val_steps=0,
        logger=TensorBoardLogger(logdir, name="", version="") if logger else False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=batch, shuffle=True) if usual else None
    trainer.fit(model, train_dataloaders=loader, datamodule=None if usual else data)  # usual: the set on the host
    if trainer.global_step != epochs * timed:  # the times are scaled by steps / timed: they must be the steps run
        raise SystemExit(f"bench.py: ran {trainer.global_step} optimizer steps where {epochs} x {timed} were timed")
    times = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    return [t * steps / timed for t in times[1:] or times]  # the first epoch is warm-up


def usual_epochs(x, y, batch, epochs, samples, logdir) -> list[float]:
    """The usual setup on about ``samples`` samples per epoch, scaled to the whole set: its cost is per sample.
    A batch up to ``samples`` is timed on fewer batches, a larger one on a subset in one batch."""
    if batch <= samples:
        return lightning_epochs(x, y, batch, epochs, max(1, math.ceil(samples / batch)), usual=True, logdir=logdir)
    times = lightning_epochs(x[:samples], y[:samples], samples, epochs, 1, usual=True, logdir=logdir)
    return [t * len(x) / samples for t in times]


def one_round(args, x, y, b: int, folder: str) -> dict[str, float]:
    """Every variant at batch size ``b`` once: the median epoch time of each, scaled to the whole epoch."""
    steps, cap = math.ceil(len(x) / b), args.max_steps
    project = functools.partial(lightning_epochs, x, y, b, args.epochs, cap, permute_on=args.permute_on,
                                steps_per_call=args.steps_per_call)
    epoch = raw_epoch(x, y, b, cap)
    epoch()  # warm-up
    timer = benchmark.Timer("epoch()", globals={"epoch": epoch}, num_threads=torch.get_num_threads())
    def median(**settings) -> float:
        return statistics.median(project(**settings))

    found = {
        "raw": timer.timeit(max(1, args.epochs - 1)).median * steps / min(steps, cap),
        "project": median(logdir=os.path.join(folder, "project")),
        "project, no logging": median(logger=False),
        "project, 1 step per call": median(steps_per_call=1, logdir=os.path.join(folder, "single")),
        "usual Lightning": statistics.median(
            usual_epochs(x, y, b, min(args.epochs, 2), args.usual_samples, os.path.join(folder, "usual"))
        ),
    }
    if not args.no_analytic:
        found["project, gradient=analytic"] = median(gradient="analytic", logdir=os.path.join(folder, "analytic"))
    return found


def measure(args, x, y, batches: list[int]) -> list[benchmark.Measurement]:
    """Every variant at every batch size, one repetition at a time, so drifting load hits all alike; each
    variant's medians become a Measurement for Compare."""
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for b in batches:
                for name, seconds in one_round(args, x, y, b, os.path.join(tmp, f"{b}-{rep}")).items():
                    times.setdefault((b, name), []).append(seconds)
                print(f"  repeat {rep + 1}/{args.repeats}, batch {b} done", file=sys.stderr, flush=True)
    spec = functools.partial(benchmark.TaskSpec, "epoch", "", label=TITLE, num_threads=torch.get_num_threads())
    return [benchmark.Measurement(1, values, spec(sub_label=label(b, len(x), args.max_steps), description=name))
            for (b, name), values in times.items()]


def label(b: int, n: int, cap: int) -> str:
    return (f"full ({n:,})" if b == n else f"{b:,}") + ("*" if math.ceil(n / b) > cap else "")


def ratios(measurements: list[benchmark.Measurement]) -> list[str]:
    """Each batch size's variants against the raw loop, and the project's speed-up over the usual setup."""
    rows: dict[str, dict[str, float]] = {}
    for m in measurements:
        rows.setdefault(m.task_spec.sub_label, {})[m.task_spec.description] = m.median
    lines = []
    for row, t in rows.items():
        against = ", ".join(f"{name} {v / t['raw']:.2f}x" for name, v in t.items() if name != "raw")
        speed_up = t["usual Lightning"] / t["project"]
        lines.append(f"batch {row}: against raw: {against}; project over usual: {speed_up:.1f}x")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=1)
    parser.add_argument("--batch-sizes", default="32,1024,65536,full", help="comma-separated; 'full' = GD")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up, not counted")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the median is shown")
    parser.add_argument("--max-steps", type=int, default=10_000, help="cap on steps timed per epoch (scaled up)")
    parser.add_argument("--usual-samples", type=int, default=65_536, help="samples per epoch timed for the usual setup")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--permute-on", choices=["cpu", "device"], default="cpu", help="as data.permute_on")
    parser.add_argument("--no-analytic", action="store_true", help="leave out the gradient=analytic rows")
    parser.add_argument("--steps-per-call", type=lambda v: v if v == "auto" else int(v), default="auto", help="auto, N")
    parser.add_argument("--threads", type=int, default=None, help="torch threads; default: torch's choice")
    parser.add_argument("--quick", action="store_true", help="skip the end-to-end and memory checks")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
    print(f"# {args.samples:,} samples x {args.features} features on {args.device} (order drawn on {args.permute_on}), "
          f"data.steps_per_call={args.steps_per_call}, torch {torch.__version__}, lightning {L.__version__}, "
          f"{os.cpu_count()} CPU(s); median of {args.repeats} repeat(s) of epochs 2..{args.epochs}")
    x, y = (t.to(args.device) for t in sources.synthetic(args.samples, args.features, 2.0, 1.0, 0.5, seed=0))
    batches = [args.samples if part.strip() == "full" else int(part) for part in args.batch_sizes.split(",")]
    measurements = measure(args, x, y, batches)
    benchmark.Compare(measurements).print()
    print("\n".join(ratios(measurements) + ([] if args.quick else footprint(args.threads))))
    print("the targets, and how a run compares with them: docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
