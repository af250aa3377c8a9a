"""scripts/bench.py at toy sizes: it runs and prints its table. No timing is asserted: CI machines are noisy."""

import pytest
from conftest import script


@pytest.mark.slow
def test_bench_prints_its_table(tmp_path):
    done = script(
        "bench.py",
        *("--samples", "2000", "--batch-sizes", "64,full", "--repeats", "1", "--epochs", "2", "--quick"),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("| batch | steps/epoch | raw epoch s") for line in lines), done.stdout
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "---" not in line}
    assert {"64", "full (2,000)"} <= set(rows), done.stdout
    assert rows["64"].count("x |") == 4  # project, project without logging, usual, speed-up over usual
    assert "targets:" in done.stdout and "end to end" not in done.stdout
