"""Where the (x, y) tensors come from: the lesson's three points, generated sets, or a CSV or Parquet file.

Each source returns float32 tensors ``x`` of shape (n, features) and ``y`` of shape (n, 1).
"""

from __future__ import annotations

import torch

from linreg import tables
from linreg.errors import ConfigError


def lesson() -> tuple[torch.Tensor, torch.Tensor]:
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
    """Read a CSV file with a header row (or a Parquet file); every bad cell is reported with its file, line and
    column. Reading goes through pyarrow (linreg.tables)."""
    features, target = tables.check_columns(feature_columns, target_column), str(target_column)
    table = tables.read(path, [*features, target])
    return tables.to_tensor(table, features), tables.to_tensor(table, [target])
