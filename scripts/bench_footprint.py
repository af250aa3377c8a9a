"""What a run costs besides its epochs: ``scripts/train.py +experiment=sgd`` end to end against the imports
alone, and the peak memory of 2 epochs on a 1,000,000 x 16 set against the data's size (each in a fresh process).
scripts/bench.py runs it unless ``--quick``; the targets are in docs/benchmarks.md.

    python scripts/bench_footprint.py [--threads 1]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from linreg import sources
from linreg.compat import quiet_lightning
from linreg.data import RegressionData
from linreg.model import Regressor

LR = 0.01
ROOT = Path(__file__).resolve().parents[1]


def end_to_end(repeats: int = 3) -> dict:
    """Median wall time of `scripts/train.py +experiment=sgd` and of `python -c "import lightning, hydra"`."""
    commands = {"train": [sys.executable, str(ROOT / "scripts" / "train.py"), "+experiment=sgd"],
                "import": [sys.executable, "-c", "import lightning, hydra"]}
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


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def memory_child(batch: int | str) -> None:
    """In a fresh process: RSS after the imports, then peak RSS after 2 epochs on a new 1,000,000 x 16 set."""
    with open("/proc/self/statm") as statm:
        base = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    x, y = sources.synthetic(1_000_000, 16, weight=2.0, bias=1.0, noise=0.5, seed=0)
    data = RegressionData(source="synthetic", batch_size=batch, shuffle=True, seed=0)
    data.x_train, data.y_train = x, y
    model = Regressor(in_features=16, optimizer=functools.partial(torch.optim.SGD, lr=LR))
    L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(model, datamodule=data)
    print(json.dumps({"baseline": base, "data": x.nbytes + y.nbytes, "peak": peak_rss()}))


def memory_lines(threads: int | None) -> list[str]:
    lines = []
    for batch in (65_536, "full"):
        command = [sys.executable, __file__, "--memory-child", str(batch)] + ["--threads", str(threads)] * bool(threads)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory check failed:\n{done.stderr[-2000:]}")
        m = json.loads(done.stdout.strip().splitlines()[-1])
        mb = {k: v / 2**20 for k, v in m.items()}
        lines.append(f"memory, 1,000,000 x 16, 2 epochs, batch {batch}: data {mb['data']:.0f} MB, baseline RSS "
                     f"{mb['baseline']:.0f} MB, peak RSS {mb['peak']:.0f} MB, peak / (1.5 x data + baseline) "
                     f"{m['peak'] / (1.5 * m['data'] + m['baseline']):.2f}")
    return lines


def footprint(threads: int | None = None) -> list[str]:
    e2e = end_to_end()
    line = (f"end to end: scripts/train.py +experiment=sgd {e2e['train']:.2f} s, python -c 'import lightning, hydra' "
            f"{e2e['import']:.2f} s: {e2e['train'] / e2e['import']:.2f}x (median of 3)")
    return [line, *memory_lines(threads)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads; default: torch's choice")
    parser.add_argument("--memory-child", metavar="BATCH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        if args.threads:
            torch.set_num_threads(args.threads)
        quiet_lightning()
        memory_child("full" if args.memory_child == "full" else int(args.memory_child))
    else:
        print("\n".join(footprint(args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
