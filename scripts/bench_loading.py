"""Time and peak memory of one full-batch epoch on a CSV against the same shape from data=synthetic.

`python scripts/bench_loading.py [--rows 1000000] [--features 10] [--folder /tmp]` writes the CSV (about
93 MB at the default size) into --folder, runs both trainings under `/usr/bin/time -v` with one thread each,
and prints a Markdown table: wall time, peak RSS, and the CSV run's ratio and excess over the synthetic one.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

ROOT = Path(__file__).resolve().parents[1]


def write_table(path: Path, rows: int, features: int) -> None:
    """Normal features and a linear target, rounded to 5 decimals as a measured table would be."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    y = x @ np.arange(1, features + 1, dtype=np.float32) + 1 + 0.5 * rng.normal(size=rows).astype(np.float32)
    columns = {f"x{i}": np.round(x[:, i], 5) for i in range(features)} | {"y": np.round(y, 5)}
    pa_csv.write_csv(pa.table(columns), path, pa_csv.WriteOptions(quoting_style="none"))


def measure(overrides: list[str], folder: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one scripts/train.py run, as /usr/bin/time -v reports them."""
    command = ["/usr/bin/time", "-v", sys.executable, str(ROOT / "scripts" / "train.py"), *overrides,
               "data.batch_size=full", "trainer.max_epochs=1", f"hydra.run.dir={folder}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        sys.exit(f"bench_loading.py: error: {' '.join(overrides)} failed:\n{done.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    hours, minutes, seconds = (float(g or 0) for g in wall.groups())
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
    return hours * 3600 + minutes * 60 + seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    path = args.folder / f"bench_{args.rows}x{args.features}.csv"
    if not path.exists():
        write_table(path, args.rows, args.features)
    size = path.stat().st_size / 2**20
    names = ",".join(f"x{i}" for i in range(args.features))
    with tempfile.TemporaryDirectory() as runs:
        synthetic = measure(["data=synthetic", f"data.samples={args.rows}", f"data.features={args.features}"],
                            Path(runs) / "synthetic")
        table = measure(["data=csv", f"data.path={path}", f"data.feature_columns=[{names}]"], Path(runs) / "csv")
    print(f"{args.rows} x {args.features} CSV, {size:.0f} MiB; one full-batch epoch, one thread\n")
    print("| run | wall time (s) | peak RSS (MiB) |\n|---|---|---|")
    print(f"| data=synthetic | {synthetic[0]:.2f} | {synthetic[1]:.0f} |")
    print(f"| data=csv | {table[0]:.2f} | {table[1]:.0f} |")
    print(f"\ntime ratio {table[0] / synthetic[0]:.2f} (target <= 1.3); extra memory {table[1] - synthetic[1]:.0f} MiB "
          f"= {(table[1] - synthetic[1]) / size:.2f} x the file (target <= 2)")


if __name__ == "__main__":
    main()
