"""Time an epoch of the project's training path against a hand-written PyTorch loop, side by side.

One process, the same data and device, interleaved repetitions, medians: (a) a raw loop (nn.Linear,
F.mse_loss, torch.optim.SGD, batches cut from a permuted index), (b) RegressionData + Regressor under a
Lightning Trainer with the TensorBoard logger on and off, and (c) the usual Lightning setup, a default
``DataLoader(TensorDataset)`` feeding the same Regressor. Lightning epochs are timed by a callback, so
the trainer's start-up is left out. Without ``--quick`` it also times ``scripts/train.py +experiment=sgd``
end to end and measures peak memory on a 1,000,000 x 16 set. See docs/benchmarks.md.

    python scripts/bench.py                   # the defaults: 1,000,000 samples, batches 32,1024,65536,full
    python scripts/bench.py --samples 2000 --batch-sizes 64,full --repeats 1 --epochs 2 --quick
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from linreg import sources
from linreg.data import RegressionData
from linreg.model import Regressor
from linreg.runs import quiet_lightning

ROOT = Path(__file__).resolve().parents[1]
LR = 0.01

# Targets of issue 5: the largest ratio to the raw loop each batch size may take (project, logging on).
RAW_RATIO_TARGETS = ((65_536, 1.1), (1_024, 2.0), (32, 2.5), (1, 3.0))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_data(samples: int, features: int, device: str):
    x, y = sources.synthetic(samples, features, weight=2.0, bias=1.0, noise=0.5, seed=0)
    return x.to(device), y.to(device)


def raw_epoch_times(x, y, batch: int, epochs: int, cap: int, device: str) -> list[float]:
    """The hand-written loop; an epoch capped at ``cap`` steps is scaled up to the full number of steps."""
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(0)
    n = len(x)
    steps = math.ceil(n / batch)
    run = min(steps, cap)
    times = []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        perm = torch.randperm(n, generator=g).to(device)
        for i in range(0, run * batch, batch):
            index = perm[i : i + batch]
            xb, yb = x[index], y[index]
            optimizer.zero_grad()
            loss = F.mse_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
        sync(device)
        times.append((time.perf_counter() - start) * steps / run)
    return times


class EpochTimer(L.Callback):
    """Wall time from each epoch's start to the next one's (the last to the end of training): every hook,
    the logger and the loader's iterator included, the trainer's start-up and teardown not."""

    def __init__(self, device: str):
        self.device, self.marks = device, []

    def on_train_epoch_start(self, trainer, pl_module):
        sync(self.device)
        self.marks.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        sync(self.device)
        self.marks.append(time.perf_counter())

    def times(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def lightning_epoch_times(
    x, y, batch, epochs, cap, device, *, loader, logger, gradient, logdir, permute_on="cpu"
) -> list[float]:
    """Fit a Regressor for ``epochs`` epochs on the project's DataModule or on a default DataLoader."""
    n = len(x)
    steps = math.ceil(n / batch)
    run = min(steps, cap)
    torch.manual_seed(0)
    model = Regressor(in_features=x.shape[1], gradient=gradient, optimizer=functools.partial(torch.optim.SGD, lr=LR))
    timer = EpochTimer(device)
    trainer = L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        max_epochs=epochs,
        limit_train_batches=run if run < steps else 1.0,
        log_every_n_steps=50,
        logger=TensorBoardLogger(logdir, name="", version="") if logger else False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    if loader == "project":
        data = RegressionData(source="synthetic", batch_size=batch, shuffle=True, seed=0, permute_on=permute_on)
        data.x_train, data.y_train = x, y  # the shared tensors: setup() keeps data already there
        trainer.fit(model, datamodule=data)
    else:
        dataset = TensorDataset(x.cpu(), y.cpu())  # the usual setup keeps the set on the host
        trainer.fit(model, train_dataloaders=DataLoader(dataset, batch_size=batch, shuffle=True))
    return [t * steps / run for t in timer.times()]


def usual_epoch_times(x, y, batch, epochs, cap_samples, device, logdir) -> list[float]:
    """The usual setup on about ``cap_samples`` samples per epoch, scaled to the whole set: its cost is per
    sample. Batches up to ``cap_samples`` are timed on fewer batches, a larger batch on a subset."""
    n = len(x)
    if batch <= cap_samples:
        cap = max(1, math.ceil(cap_samples / batch))
        return lightning_epoch_times(
            x, y, batch, epochs, cap, device, loader="usual", logger=True, gradient="autograd", logdir=logdir
        )
    sub = cap_samples
    times = lightning_epoch_times(
        x[:sub], y[:sub], sub, epochs, 1, device, loader="usual", logger=True, gradient="autograd", logdir=logdir
    )
    return [t * n / sub for t in times]


def median_after_warmup(times: list[float]) -> float:
    return statistics.median(times[1:] if len(times) > 1 else times)


def benchmark(args, x, y, batches: list[int]) -> dict:
    """Every variant for every batch size, one repetition at a time, so drifting load hits all alike."""
    n = len(x)
    results = {b: {} for b in batches}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for b in batches:
                cap = args.max_steps
                runs = {
                    "raw": lambda b=b, cap=cap: raw_epoch_times(x, y, b, args.epochs, cap, args.device),
                    "project": functools.partial(
                        lightning_epoch_times, loader="project", logger=True, gradient="autograd",
                        permute_on=args.permute_on,
                    ),
                    "project_nolog": functools.partial(
                        lightning_epoch_times, loader="project", logger=False, gradient="autograd",
                        permute_on=args.permute_on,
                    ),
                    "usual": lambda x, y, b, epochs, device, logdir: usual_epoch_times(
                        x, y, b, epochs, args.usual_samples, device, logdir
                    ),
                }
                if b >= 65_536 and not args.no_analytic:
                    runs["analytic"] = functools.partial(
                        lightning_epoch_times, loader="project", logger=True, gradient="analytic",
                        permute_on=args.permute_on,
                    )
                for name, fn in runs.items():
                    if name == "raw":
                        times = fn()
                    else:
                        kwargs = {"logdir": os.path.join(tmp, f"{name}-{b}-{rep}")}
                        if name != "usual":
                            kwargs["cap"] = cap
                        epochs = min(args.epochs, 2) if name == "usual" else args.epochs
                        times = fn(x, y, b, epochs, device=args.device, **kwargs)
                    results[b].setdefault(name, []).append(median_after_warmup(times))
                seconds = ", ".join(f"{name} {v[-1]:.4g} s" for name, v in results[b].items())
                print(f"  repeat {rep + 1}/{args.repeats}, batch {b}: {seconds}", file=sys.stderr, flush=True)
    out = {}
    for b in batches:
        steps = math.ceil(n / b)
        row = {name: statistics.median(v) for name, v in results[b].items()}
        row.update(
            steps=steps,
            capped=steps > args.max_steps,
            usual_capped=n > args.usual_samples,
        )
        out[b] = row
    return out


def label(b: int, n: int) -> str:
    return f"full ({n:,})" if b == n else f"{b:,}"


def print_tables(rows: dict, n: int) -> None:
    print(
        "| batch | steps/epoch | raw epoch s | raw µs/step | project epoch s (logging on) | project / raw "
        "| project / raw (logging off) | usual Lightning / raw | project speed-up over usual |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for b, r in rows.items():
        star = "*" if r["capped"] else ""
        ustar = "†" if r["usual_capped"] else ""
        print(
            f"| {label(b, n)}{star} | {r['steps']:,} | {r['raw']:.4g} | {1e6 * r['raw'] / r['steps']:.1f} "
            f"| {r['project']:.4g} | {r['project'] / r['raw']:.2f}x | {r['project_nolog'] / r['raw']:.2f}x "
            f"| {r['usual'] / r['raw']:.1f}x{ustar} | {r['usual'] / r['project']:.1f}x |"
        )
    analytic = {b: r for b, r in rows.items() if "analytic" in r}
    if analytic:
        print()
        print("| batch | raw autograd epoch s | project gradient=analytic epoch s (logging on) | analytic / raw |")
        print("|---|---|---|---|")
        for b, r in analytic.items():
            print(f"| {label(b, n)} | {r['raw']:.4g} | {r['analytic']:.4g} | {r['analytic'] / r['raw']:.2f}x |")
    print()
    print(
        "\\* epoch capped at --max-steps steps and scaled to the full epoch; "
        "† the usual setup timed on about --usual-samples samples per epoch and scaled."
    )


def target_lines(rows: dict, n: int) -> list[str]:
    lines = []

    def verdict(ok):
        return "met" if ok else "NOT met"

    for b, r in rows.items():
        size = n if b >= n else b
        limit = next((t for floor, t in RAW_RATIO_TARGETS if size >= floor), None)
        if limit is not None and (size in (1, 32, 1_024) or size >= 65_536):
            ratio = r["project"] / r["raw"]
            lines.append(f"batch {label(b, n)}: project <= {limit}x raw: {ratio:.3f}x: {verdict(ratio <= limit)}")
        if size >= 1_024:
            speed = r["usual"] / r["project"]
            lines.append(f"batch {label(b, n)}: project >= 10x faster than usual: {speed:.1f}x: {verdict(speed >= 10)}")
        if "analytic" in r:
            ratio = r["analytic"] / r["raw"]
            lines.append(f"batch {label(b, n)}: analytic faster than raw autograd: {ratio:.2f}x: {verdict(ratio < 1)}")
    return lines


def end_to_end(repeats: int = 3) -> dict:
    """Median wall time of `scripts/train.py +experiment=sgd` and of `python -c "import lightning, hydra"`."""
    commands = {
        "train": [sys.executable, str(ROOT / "scripts" / "train.py"), "+experiment=sgd"],
        "import": [sys.executable, "-c", "import lightning, hydra"],
    }
    times = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name, command in commands.items():
                start = time.perf_counter()
                done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
                times[name].append(time.perf_counter() - start)
                if done.returncode:
                    raise RuntimeError(f"{command} failed:\n{done.stderr[-2000:]}")
    return {name: statistics.median(v) for name, v in times.items()}


def current_rss() -> int:
    """Resident bytes now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def memory_child(samples: int, features: int, batch: int | str, epochs: int) -> None:
    """Run in a fresh process: RSS after the imports, then peak RSS after training on a new set."""
    base = current_rss()
    base_peak = peak_rss()
    x, y = make_data(samples, features, "cpu")
    data_bytes = x.nbytes + y.nbytes
    data = RegressionData(source="synthetic", batch_size=batch, shuffle=True, seed=0)
    data.x_train, data.y_train = x, y
    model = Regressor(in_features=features, optimizer=functools.partial(torch.optim.SGD, lr=LR))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=data)
    print(json.dumps({"baseline": base, "baseline_peak": base_peak, "data": data_bytes, "peak": peak_rss()}))


def memory(batches: list, threads: int | None) -> dict:
    out = {}
    for batch in batches:
        command = [sys.executable, __file__, "--memory-child", str(batch)]
        if threads:
            command += ["--threads", str(threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory check failed:\n{done.stderr[-2000:]}")
        out[batch] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def parse_batches(text: str, samples: int) -> list[int]:
    return [samples if part.strip() == "full" else int(part) for part in text.split(",")]


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
    parser.add_argument("--permute-on", choices=["cpu", "device"], default="cpu",
                        help="where the project's loader draws each epoch's order (data.permute_on)")
    parser.add_argument("--no-analytic", action="store_true", help="leave out the gradient=analytic rows")
    parser.add_argument("--threads", type=int, default=None, help="torch threads; default: torch's choice")
    parser.add_argument("--quick", action="store_true", help="skip the end-to-end and memory checks")
    parser.add_argument("--memory-child", metavar="BATCH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
    if args.memory_child:
        batch = "full" if args.memory_child == "full" else int(args.memory_child)
        memory_child(1_000_000, 16, batch, epochs=2)
        return 0

    print(
        f"# {args.samples:,} samples x {args.features} features on {args.device} (order drawn on "
        f"{args.permute_on}), torch {torch.__version__}, "
        f"lightning {L.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s); "
        f"median of {args.repeats} repeat(s) of epochs 2..{args.epochs}"
    )
    x, y = make_data(args.samples, args.features, args.device)
    batches = parse_batches(args.batch_sizes, args.samples)
    rows = benchmark(args, x, y, batches)
    print()
    print_tables(rows, args.samples)
    lines = target_lines(rows, args.samples)

    if not args.quick:
        e2e = end_to_end()
        ratio = e2e["train"] / e2e["import"]
        print()
        print(
            f"end to end: scripts/train.py +experiment=sgd {e2e['train']:.2f} s, "
            f"python -c 'import lightning, hydra' {e2e['import']:.2f} s: {ratio:.2f}x (median of 3)"
        )
        lines.append(
            f"train.py +experiment=sgd <= 1.5x import lightning, hydra: {ratio:.2f}x: "
            f"{'met' if ratio <= 1.5 else 'NOT met'}"
        )
        mem = memory([65_536, "full"], args.threads)
        print()
        print(
            "| memory, 1,000,000 x 16, 2 epochs | data MB | baseline RSS MB | peak RSS MB "
            "| peak / (1.5 x data + baseline) |"
        )
        print("|---|---|---|---|---|")
        for batch, m in mem.items():
            bound = 1.5 * m["data"] + m["baseline"]
            print(
                f"| batch {batch} | {m['data'] / 2**20:.0f} | {m['baseline'] / 2**20:.0f} "
                f"| {m['peak'] / 2**20:.0f} | {m['peak'] / bound:.2f} |"
            )
            ok = m["peak"] < bound
            lines.append(
                f"memory at batch {batch}: peak RSS < 1.5x data + baseline: {m['peak'] / bound:.2f}: "
                f"{'met' if ok else 'NOT met'}"
            )

    print()
    print("targets:")
    for line in lines:
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
