"""Where the (x, y) tensors come from: the seed's three points, generated sets, or a CSV file.

Each source returns float32 tensors ``x`` of shape (n, features) and ``y`` of shape (n, 1).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from linreg.errors import ConfigError


def seed() -> tuple[torch.Tensor, torch.Tensor]:
    """The lesson's data set: y = 2x at x = 1, 2, 3."""
    x = torch.tensor([[1.0], [2.0], [3.0]])
    return x, 2.0 * x


def synthetic(
    samples: int, features: int, weight: float | list[float], bias: float, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x @ weight + bias + N(0, noise^2), with x ~ N(0, 1); ``weight`` may be one number for all features."""
    g = torch.Generator().manual_seed(seed)
    true_w = torch.as_tensor(weight, dtype=torch.float32).reshape(-1)
    if true_w.numel() == 1:
        true_w = true_w.expand(features)
    elif true_w.numel() != features:
        raise ConfigError(
            f"data.weight has {true_w.numel()} values but data.features={features}: give one number or {features}"
        )
    x = torch.randn(samples, features, generator=g)
    y = x @ true_w.unsqueeze(1) + bias
    y += noise * torch.randn(samples, 1, generator=g)
    return x, y


NONLINEAR_CURVES = {"square": torch.square, "sin": torch.sin}


def nonlinear(samples: int, curve: str, low: float, high: float, noise: float, seed: int):
    """One feature on [low, high] with y = curve(x) + noise: a set no linear model can fit."""
    if curve not in NONLINEAR_CURVES:
        raise ConfigError(f"data.curve={curve!r} is not known; use one of {sorted(NONLINEAR_CURVES)}")
    g = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(samples, 1, generator=g)
    y = NONLINEAR_CURVES[curve](x) + noise * torch.randn(samples, 1, generator=g)
    return x, y


def from_csv(path: str, feature_columns: list[str], target_column: str):
    """Read a numeric CSV with a header row; every bad cell is reported with its file, line and column."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"data.path={path!r}: no such file; point data.path at a CSV with a header row")
    with file.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"{file}: the file is empty; it needs a header row and at least one data row")
        header = [name.strip() for name in header]
        wanted = list(feature_columns) + [target_column]
        missing = [name for name in wanted if name not in header]
        if missing:
            raise ConfigError(
                f"{file}: column(s) {missing} not in the header {header}; "
                "set data.feature_columns and data.target_column to existing columns"
            )
        index = [header.index(name) for name in wanted]
        rows = []
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ConfigError(
                    f"{file}, line {line}: {len(row)} fields where the header has {len(header)}"
                )
            values = []
            for name, i in zip(wanted, index):
                try:
                    value = float(row[i])
                except ValueError:
                    raise ConfigError(
                        f"{file}, line {line}, column {name!r}: {row[i]!r} is not a number"
                    ) from None
                if not math.isfinite(value):
                    raise ConfigError(
                        f"{file}, line {line}, column {name!r}: {row[i]!r} is not a finite number"
                    )
                values.append(value)
            rows.append(values)
    if not rows:
        raise ConfigError(f"{file}: no data rows under the header")
    table = torch.tensor(rows, dtype=torch.float32)
    return table[:, :-1], table[:, -1:]
