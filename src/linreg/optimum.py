"""The closed-form least-squares solution and the MSE over a whole set, both streamed in chunks.

Streaming keeps memory bounded on a million-row set: the solution comes from the normal equations
``(A^T A) theta = A^T y`` accumulated in float64 chunk by chunk, with ``A = [x, 1]`` when there is a bias.
"""

from __future__ import annotations

import torch

CHUNK = 65_536


def _chunks(x: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK):
    for start in range(0, len(x), chunk):
        yield x[start : start + chunk], y[start : start + chunk]


@torch.no_grad()
def mse(predict, x: torch.Tensor, y: torch.Tensor, dtype=torch.float64) -> float:
    """Mean squared error of ``predict`` over all of (x, y), summed chunk by chunk in ``dtype``."""
    total = torch.zeros((), dtype=torch.float64)
    for xc, yc in _chunks(x, y):
        total += (predict(xc.to(dtype)) - yc.to(dtype)).double().square().sum().cpu()
    return (total / y.numel()).item()


def _normal_equations(x: torch.Tensor, y: torch.Tensor, bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``A^T A`` and ``A^T y`` in float64, with ``A = [x, 1]`` when there is a bias."""
    d = x.shape[1] + int(bias)
    gram = torch.zeros(d, d, dtype=torch.float64)
    moment = torch.zeros(d, y.shape[1], dtype=torch.float64)
    for xc, yc in _chunks(x, y):
        a = xc.double().cpu()
        if bias:
            a = torch.cat([a, torch.ones(len(a), 1, dtype=torch.float64)], dim=1)
        gram += a.T @ a
        moment += a.T @ yc.double().cpu()
    return gram, moment


@torch.no_grad()
def least_squares(x: torch.Tensor, y: torch.Tensor, bias: bool) -> dict:
    """The weight, bias and loss of the best linear fit, in float64."""
    gram, moment = _normal_equations(x, y, bias)
    theta = torch.linalg.lstsq(gram, moment, driver="gelsd").solution  # also fine when x is rank-deficient
    weight = theta[: x.shape[1]].T
    b = theta[x.shape[1]] if bias else None

    def predict(xc):
        out = xc @ weight.T
        return out + b if bias else out

    return {
        "weight": weight.reshape(-1).tolist(),
        "bias": b.tolist() if bias else None,
        "loss": mse(predict, x.cpu(), y.cpu()),
    }


@torch.no_grad()
def max_stable_lr(x: torch.Tensor, bias: bool) -> float:
    """2 / L, where L = 2 * largest eigenvalue of A^T A / N is the MSE's largest curvature.

    Plain gradient descent on this set diverges for any learning rate above it.
    """
    gram, _ = _normal_equations(x, x[:, :1], bias)
    curvature = 2.0 * torch.linalg.eigvalsh(gram / len(x)).max().item()
    return 2.0 / curvature
