"""The closed-form least-squares solution, the MSE over a whole set and the curvatures behind the stable
learning rates, all streamed in chunks and bounded in memory and time at any size.

With ``A = [x, 1]`` (the column of ones only when there is a bias), the solution comes from the smaller of
two float64 matrices: the normal equations ``A^T A theta = A^T y`` (d x d) when there are fewer features
than samples, else the samples' Gram matrix ``A A^T`` (N x N, the minimum-norm solution
``A^T (A A^T)^+ y``). Building it costs about ``2 N d min(N, d)`` operations; above ``EXACT_WORK`` (a few
seconds) or ``EXACT_LIMIT`` no closed form is computed, and the largest curvature is estimated by power
iteration on a sample of the rows instead.
"""

from __future__ import annotations

import torch

CHUNK = 65_536
EXACT_LIMIT = 4_096  # the largest matrix solved exactly: 4096^2 float64 is 134 MB, a few seconds to solve
EXACT_WORK = 1e11  # operations to build and solve it: a few seconds of float64 matrix products
POWER_ROWS = 8_192  # rows the power iteration samples
POWER_WORK = 5e9  # operations the power iteration may spend, at least three iterations


def _chunks(x: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK):
    for start in range(0, len(x), chunk):
        yield x[start : start + chunk], y[start : start + chunk]


def _rows(x: torch.Tensor, bias: bool, chunk: int):
    """``A``'s rows in float64 CPU chunks of ``chunk`` rows."""
    for start in range(0, len(x), chunk):
        a = x[start : start + chunk].double().cpu()
        yield torch.cat([a, torch.ones(len(a), 1, dtype=torch.float64)], dim=1) if bias else a


def _row_chunk(x: torch.Tensor) -> int:
    """Rows per chunk so that one float64 chunk stays near 8 M numbers (64 MB), however wide the rows."""
    return max(1, min(CHUNK, 8_000_000 // max(1, x.shape[1])))


@torch.no_grad()
def mse(predict, x: torch.Tensor, y: torch.Tensor, dtype=torch.float64) -> float:
    """Mean squared error of ``predict`` over all of (x, y), summed chunk by chunk in ``dtype``."""
    total = torch.zeros((), dtype=torch.float64)
    for xc, yc in _chunks(x, y, _row_chunk(x)):
        total += (predict(xc.to(dtype)) - yc.to(dtype)).double().square().sum().cpu()
    return (total / y.numel()).item()


def _normal_equations(x: torch.Tensor, y: torch.Tensor, bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``A^T A`` and ``A^T y`` in float64."""
    d = x.shape[1] + int(bias)
    gram = torch.zeros(d, d, dtype=torch.float64)
    moment = torch.zeros(d, y.shape[1], dtype=torch.float64)
    chunk = _row_chunk(x)
    for a, (_, yc) in zip(_rows(x, bias, chunk), _chunks(x, y, chunk)):
        gram += a.T @ a
        moment += a.T @ yc.double().cpu()
    return gram, moment


@torch.no_grad()
def moments(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """n and the sums of x, y, x^2, xy, y^2 in float64 (first feature): all the MSE of a line ``x w + b``
    depends on. They are the normal equations of ``A = [x, 1]``, with the sum of y^2 added."""
    gram, moment = _normal_equations(x[:, :1], y[:, :1], bias=True)  # [[xx, x], [x, n]] and [[xy], [y]]
    (sxx, sx), (_, n) = gram.tolist()
    (sxy,), (sy,) = moment.tolist()
    syy = sum(yc[:, :1].double().square().sum().item() for _, yc in _chunks(x, y))
    return {"n": int(n), "x": sx, "y": sy, "xx": sxx, "xy": sxy, "yy": syy}


def line_cost(m: dict[str, float], w, b=0.0):
    """MSE of ``x w + b`` from the moments; works elementwise on tensors, clipped at 0 against rounding."""
    total = m["xx"] * w * w + 2 * m["x"] * w * b + m["n"] * b * b - 2 * m["xy"] * w - 2 * m["y"] * b + m["yy"]
    cost = total / m["n"]
    return cost.clamp(min=0.0) if isinstance(cost, torch.Tensor) else max(cost, 0.0)


def _sample_gram(x: torch.Tensor, bias: bool) -> torch.Tensor:
    """``A A^T`` (N x N) in float64, summed over slices of the features so no float64 copy of x is made."""
    gram = torch.ones(len(x), len(x), dtype=torch.float64) if bias else torch.zeros(len(x), len(x), dtype=torch.float64)
    step = max(1, 8_000_000 // max(1, len(x)))
    for start in range(0, x.shape[1], step):
        block = x[:, start : start + step].double().cpu()
        gram += block @ block.T
    return gram


def exact_size(x: torch.Tensor, bias: bool) -> bool:
    """Whether a closed form is affordable: few features or few samples, and not too much arithmetic."""
    n, d = len(x), x.shape[1] + int(bias)
    m = min(n, d)
    return m <= EXACT_LIMIT and 2.0 * n * d * m + 4.0 * m**3 <= EXACT_WORK


@torch.no_grad()
def least_squares(x: torch.Tensor, y: torch.Tensor, bias: bool) -> dict | None:
    """The weight, bias and loss of the best linear fit in float64, or None above the exact size."""
    if not exact_size(x, bias):
        return None
    if x.shape[1] + int(bias) <= len(x):
        gram, moment = _normal_equations(x, y, bias)
        theta = torch.linalg.lstsq(gram, moment, driver="gelsy").solution  # pivoted QR: fine when rank-deficient
        weight, b = theta[: x.shape[1]].T, (theta[x.shape[1]] if bias else None)
    else:  # more features than samples: theta = A^T alpha with (A A^T) alpha = y, the minimum-norm fit
        alpha = torch.linalg.lstsq(_sample_gram(x, bias), y.double().cpu(), driver="gelsy").solution
        weight = torch.cat([alpha.T @ x[:, s : s + CHUNK].double().cpu() for s in range(0, x.shape[1], CHUNK)], 1)
        b = alpha.sum(0) if bias else None

    def predict(xc):
        out = xc @ weight.T
        return out + b if bias else out

    return {
        "weight": weight.reshape(-1).tolist(),
        "bias": b.tolist() if bias else None,
        "loss": mse(predict, x.cpu(), y.cpu()),
    }


@torch.no_grad()
def curvature(x: torch.Tensor, bias: bool) -> float:
    """L = 2 * largest eigenvalue of A^T A / N: the MSE's largest curvature.

    Exact from the smaller Gram matrix when that is affordable (``exact_size``), else estimated by power
    iteration in float32 on up to ``POWER_ROWS`` rows drawn at random, within ``POWER_WORK`` operations.
    """
    n, d = len(x), x.shape[1] + int(bias)
    if exact_size(x, bias):
        gram = _normal_equations(x, x[:, :1], bias)[0] if d <= n else _sample_gram(x, bias)
        return 2.0 * torch.linalg.eigvalsh(gram / n).max().item()
    generator = torch.Generator().manual_seed(0)
    rows = x if n <= POWER_ROWS else x[torch.randperm(n, generator=generator)[:POWER_ROWS]]
    rows = rows.float().cpu()
    v = torch.randn(d, generator=generator)
    steps = max(3, min(100, int(POWER_WORK / (4.0 * len(rows) * d))))
    estimate = 0.0
    for _ in range(steps):
        v = v / v.norm()
        av = rows @ v[: x.shape[1]] + (v[-1] if bias else 0.0)
        w = rows.T @ av
        if bias:
            w = torch.cat([w, av.sum().reshape(1)])
        w /= len(rows)
        previous, estimate = estimate, float(v @ w)
        v = w
        if abs(estimate - previous) <= 1e-4 * estimate:
            break
    return 2.0 * estimate


@torch.no_grad()
def sample_curvature(x: torch.Tensor, bias: bool) -> float:
    """2 * max_i |a_i|^2: the largest curvature of one sample's loss, the most any batch's loss can have."""
    chunk = _row_chunk(x)
    largest = max(x[s : s + chunk].float().square().sum(1).max().item() for s in range(0, len(x), chunk))
    return 2.0 * (largest + float(bias))


@torch.no_grad()
def scale_spread(x: torch.Tensor, bias: bool) -> float:
    """How far apart the columns' root-mean-square sizes are (largest / smallest non-zero; the bias column
    counts as 1): a large spread makes the MSE's valley long and narrow, hard for plain gradient descent."""
    chunk = _row_chunk(x)
    sums = sum(x[s : s + chunk].float().square().sum(0).double() for s in range(0, len(x), chunk))
    rms = (sums / len(x)).sqrt()
    if bias:
        rms = torch.cat([rms, torch.ones(1, dtype=rms.dtype)])
    rms = rms[rms > 0]
    return (rms.max() / rms.min()).item() if len(rms) else 1.0
