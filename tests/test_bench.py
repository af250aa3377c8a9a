"""scripts/bench.py at toy sizes: it runs and prints its table. No timing is asserted: CI machines are noisy,
and the targets live in docs/benchmarks.md."""

import re

import pytest
from conftest import script

VARIANTS = ("raw", "project", "project, no logging", "project, 1 step per call", "usual Lightning",
            "project, gradient=analytic")


@pytest.mark.slow
def test_bench_prints_its_table(tmp_path):
    done = script(
        "bench.py",
        # batch 8: 250 steps an epoch, capped by --max-steps (the script exits if it ran other steps than it timed)
        *("--samples", "2000", "--batch-sizes", "8,full", "--max-steps", "100", "--repeats", "1", "--epochs", "2",
          "--quick"),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next((line for line in lines if line.strip().startswith("|") and "raw" in line), None)
    assert header is not None and [c.strip() for c in header.split("|")[1:]] == list(VARIANTS), done.stdout
    rows = {line.split("|")[0].strip(): line for line in lines if "|" in line and line is not header}
    for row in ("8*", "full (2,000)"):  # a positive time in every column (torch.utils.benchmark.Compare's table)
        cells = [c.strip() for c in rows[row].split("|")[1:]]
        assert len(cells) == len(VARIANTS) and all(float(c) > 0 for c in cells), rows
    for row in ("8*", "full (2,000)"):  # the ratios to the raw loop, computed from the same medians
        ratio = next(line for line in lines if line.startswith(f"batch {row}: against raw: "))
        expected = (r"project [\d.]+x, project, no logging [\d.]+x, project, 1 step per call [\d.]+x, "
                    r"usual Lightning [\d.]+x, project, gradient=analytic [\d.]+x; project over usual")
        assert re.search(expected, ratio), ratio
    assert "docs/benchmarks.md" in done.stdout and "end to end" not in done.stdout
