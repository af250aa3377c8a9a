"""The regression metrics of summary.json: mse, rmse, mae and r2 on each split, in the target's units.

Computed once after training over whole splits, chunk by chunk in float64 (the per-epoch values in
TensorBoard come from torchmetrics in the model, in the training precision).
"""

from __future__ import annotations

import math

import torch

CHUNK = 65_536


@torch.no_grad()
def regression(predict, x: torch.Tensor, y: torch.Tensor, dtype=torch.float32) -> dict[str, float]:
    """``mse``, ``rmse``, ``mae`` and ``r2`` of ``predict`` on (x, y); r2 is NaN when y is constant."""
    squares = absolutes = 0.0
    for start in range(0, len(x), CHUNK):
        residual = (predict(x[start : start + CHUNK].to(dtype)).double() - y[start : start + CHUNK].double()).cpu()
        squares += residual.square().sum().item()
        absolutes += residual.abs().sum().item()
    target = y.double().cpu()
    spread = (target - target.mean()).square().sum().item()  # R² compares with predicting the split's mean
    mse = squares / y.numel()
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": absolutes / y.numel(),
        "r2": 1.0 - squares / spread if spread > 0 else math.nan,
    }


def by_split(model, splits: dict, dtype=torch.float32) -> dict[str, dict[str, float]]:
    """``{"train": {...}, "val": {...}, "test": {...}}`` for the splits that exist."""
    return {name: regression(model, x, y, dtype) for name, (x, y) in splits.items()}
