"""Pictures of a run: the cost landscape with the optimiser's path, a fitted curve, the grid search's loss;
and of a sweep, from plain numbers: excess loss against learning rate, and the loss curves.

Matplotlib (with the Agg backend, so no run ever needs a display) and torch are imported inside the functions
that use them, so that importing this module stays quick: scripts/report.py draws a sweep's figure from plain
numbers and needs no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


DPI = 100
MAX_DRAWN_COST = 1e30  # a landscape leaves out path points of a higher cost (see landscape)


def pyplot():
    """pyplot on the Agg backend: files only, no window, also on machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, folder, name: str, logger_experiment=None, dpi: int = DPI) -> Path:
    """Write ``<folder>/<name>.png`` and, given a SummaryWriter, the same picture as TensorBoard image ``name``.

    The figure is rendered once for both: ``savefig`` and TensorBoard's ``add_figure`` would each render it
    again, a tenth of a second of every run's end.
    """
    from matplotlib.image import imsave

    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.set_dpi(dpi)
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())
    imsave(path, pixels)
    if logger_experiment is not None:
        logger_experiment.add_image(name, pixels[..., :3], dataformats="HWC")  # what add_figure shows
    pyplot().close(figure)
    return path


def run_title(cfg) -> str:
    """The experiment and what shaped its path, for figure titles: ``sgd: SGD, lr=0.01, batch 1``."""
    if cfg.get("task", "fit") != "fit":
        return f"{cfg.name}: {cfg.task}"
    optimizer = str(cfg.optimizer._target_).rsplit(".", 1)[-1]
    return f"{cfg.name}: {optimizer}, lr={cfg.optimizer.lr:g}, batch {cfg.data.batch_size}"


def span(values: list[float], least: float) -> tuple[float, float]:
    """An interval holding ``values`` with a margin, at least ``least`` wide."""
    lo, hi = min(values), max(values)
    pad = max(0.2 * (hi - lo), 0.5 * max(least - (hi - lo), 0.0))
    return lo - pad, hi + pad


def _as_path(path, width: int) -> torch.Tensor:
    import torch  # here, not at the top: see landscape

    if path is None or len(path) == 0:
        return torch.zeros(0, width, dtype=torch.float64)
    if isinstance(path, (list, tuple)):
        path = torch.stack([torch.as_tensor(p).reshape(-1) for p in path])
    path = path.detach().double().cpu().reshape(len(path), -1)
    if path.shape[1] != width:
        raise ValueError(f"the path has {path.shape[1]} parameters per point; a line with this bias has {width}")
    return path[path.isfinite().all(1)]  # a diverged run's last points are inf or NaN


def landscape(x: torch.Tensor, y: torch.Tensor, path, bias: bool, title: str | None = None):
    """The MSE over (w, b) around the optimum and the path: a 3-D surface beside a contour map, the path on both.

    Without a bias, the cost curve over w with the path's points on it. ``path`` is a (k, p) tensor (or a list
    of k tensors) of flat parameters [w] or [w, b], as ``Trajectory.path`` holds them. Returns None for more
    than one feature, where the cost is no longer a surface one can draw.
    """
    import torch  # here, not at the top: a sweep's report draws with this module and needs no torch

    from linreg import optimum

    with torch.no_grad():
        if x.shape[1] != 1 or y.shape[1] != 1:
            return None
        plt = pyplot()
        m = optimum.moments(x, y)
        best = optimum.least_squares(x, y, bias)
        best_w, best_b = best["weight"][0], (best["bias"][0] if bias else 0.0)
        points = _as_path(path, 2 if bias else 1)
        # a diverged run's points that ran past any picture: matplotlib's contour levels turn NaN past float32's
        # range (3.4e38), which the grid's corners beyond the path reach well before its points do
        points = points[optimum.line_cost(m, points[:, 0], points[:, 1] if bias else 0.0) <= MAX_DRAWN_COST]
        w_lo, w_hi = span([best_w, *points[:, 0].tolist()], least=2.0)

        if not bias:
            figure, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
            ws = torch.linspace(w_lo, w_hi, 400, dtype=torch.float64)
            ax.plot(ws.numpy(), optimum.line_cost(m, ws).numpy(), color="tab:blue", label="cost(w)")
            if len(points):
                pw = points[:, 0]
                pc = optimum.line_cost(m, pw)
                ax.plot(pw.numpy(), pc.numpy(), "o-", color="tab:red", ms=3, lw=0.8, label=f"path ({len(pw)} points)")
                ax.plot(pw[:1].numpy(), pc[:1].numpy(), "s", color="black", ms=6, label="start")
            ax.plot([best_w], [optimum.line_cost(m, best_w)], "*", color="gold", mec="black", ms=14, label="optimum")
            ax.set(xlabel="w", ylabel="MSE", title=_titled(title, "cost over w"))
            ax.legend()
            return figure

        b_lo, b_hi = span([best_b, *points[:, 1].tolist()], least=2.0)
        ws = torch.linspace(w_lo, w_hi, 120, dtype=torch.float64)
        bs = torch.linspace(b_lo, b_hi, 120, dtype=torch.float64)
        gw, gb = torch.meshgrid(ws, bs, indexing="xy")
        cost = optimum.line_cost(m, gw, gb)
        low, high = optimum.line_cost(m, best_w, best_b), cost.max().item()
        high = max(high, low + 1e-12)  # contour levels must increase, also on a flat cost
        gw, gb, cost = gw.numpy(), gb.numpy(), cost.numpy()
        levels = (low + (high - low) * torch.linspace(0, 1, 25) ** 2).tolist()  # dense near the bottom

        figure = plt.figure(figsize=(12, 5), layout="constrained")
        surface = figure.add_subplot(1, 2, 1, projection="3d")
        surface.plot_surface(gw, gb, cost, cmap="viridis", alpha=0.75, linewidth=0)
        contour = figure.add_subplot(1, 2, 2)
        filled = contour.contourf(gw, gb, cost, levels=levels, cmap="viridis")
        contour.contour(gw, gb, cost, levels=levels, colors="white", linewidths=0.3)
        figure.colorbar(filled, ax=contour, label="MSE")
        if len(points):
            pc = optimum.line_cost(m, points[:, 0], points[:, 1]).numpy()
            pw, pb = points[:, 0].numpy(), points[:, 1].numpy()
            surface.plot(pw, pb, pc, "o-", color="tab:red", ms=2, lw=1)
            contour.plot(pw, pb, "o-", color="tab:red", ms=2.5, lw=0.8, label=f"path ({len(pw)} points)")
            contour.plot(pw[:1], pb[:1], "s", color="black", ms=6, label="start")
        surface.scatter([best_w], [best_b], [low], marker="*", color="gold", s=120, edgecolor="black")
        contour.plot([best_w], [best_b], "*", color="gold", mec="black", ms=14, label="optimum")
        surface.set(xlabel="w", ylabel="b", zlabel="MSE", title="Cost surface")
        contour.set(xlabel="w", ylabel="b", title="Contours of the cost")
        contour.legend(loc="upper right", fontsize="small")
        if title:
            figure.suptitle(title)
        return figure


def fitted_curve(model, x: torch.Tensor, y: torch.Tensor, max_points: int = 2000, title: str | None = None):
    """The data (up to ``max_points`` of it, evenly spread) and the model's curve through it.

    With more than one feature, predicted against true values instead, with the line of perfect fit.
    """
    import torch  # here, not at the top: a sweep's report draws with this module and needs no torch

    with torch.no_grad():
        plt = pyplot()
        p = next(model.parameters())
        pick = torch.linspace(0, len(x) - 1, min(len(x), max_points)).round().long()
        xs, ys = x.cpu()[pick].float(), y.cpu()[pick, 0].float()
        title = _titled(title, _model_title(model))
        figure, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
        if x.shape[1] == 1:
            grid = torch.linspace(x.min().item(), x.max().item(), 400).unsqueeze(1)
            curve = model(grid.to(device=p.device, dtype=p.dtype)).float().cpu()[:, 0]
            ax.scatter(xs[:, 0].numpy(), ys.numpy(), s=6, alpha=0.4, color="tab:gray", label="data")
            ax.plot(grid[:, 0].numpy(), curve.numpy(), color="tab:red", lw=2, label="model")
            ax.set(xlabel="x", ylabel="y", title=title)
        else:
            predicted = model(xs.to(device=p.device, dtype=p.dtype)).float().cpu()[:, 0]
            ax.scatter(ys.numpy(), predicted.numpy(), s=6, alpha=0.4, color="tab:gray", label="samples")
            lo, hi = ys.min().item(), ys.max().item()
            ax.plot([lo, hi], [lo, hi], color="tab:red", lw=1, label="perfect fit")
            ax.set(xlabel="y", ylabel="predicted y", title=title)
        ax.legend()
        return figure


def _titled(title: str | None, what: str) -> str:
    return f"{title}\n{what}" if title else what[:1].upper() + what[1:]


def _model_title(model) -> str:
    hp = getattr(model, "hparams", {})
    if not hp.get("depth"):
        return "Linear model"
    return f"MLP: {hp['depth']} hidden layers of {hp.get('hidden')}, activation {hp.get('activation')}"


def grid_curve(weights, losses, best: tuple[float, float], title: str | None = None):
    """The exhaustive search's loss against w (the lesson's plot), the best candidate marked."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    ax.plot(weights, losses, "o-", ms=3, color="tab:blue")
    ax.plot([best[0]], [best[1]], "*", color="gold", mec="black", ms=14, label=f"best w = {best[0]:.6g}")
    ax.set(xlabel="w", ylabel="loss (MSE)", title=_titled(title, "exhaustive search over w"))
    ax.legend()
    return figure


def grid_map(weights, biases, losses, best: tuple[float, float], title: str | None = None):
    """The exhaustive search's loss over (w, b) as a heat map with contours; ``losses`` is (len(w), len(b))."""
    plt = pyplot()
    import matplotlib.colors
    import torch  # here, not at the top: see landscape

    w, b, z = (torch.as_tensor(t, dtype=torch.float64) for t in (weights, biases, losses))
    figure, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    positive = z[z > 0]
    floor = positive.min().item() if len(positive) else 1.0
    norm = matplotlib.colors.LogNorm(vmin=floor, vmax=max(z.max().item(), floor * 10))
    shown = z.T.clamp(min=floor).numpy()  # log scale: an exact 0 is drawn as the smallest loss
    mesh = ax.pcolormesh(w.numpy(), b.numpy(), shown, norm=norm, cmap="viridis", shading="nearest")
    if len(w) > 1 and len(b) > 1:
        ax.contour(w.numpy(), b.numpy(), shown, levels=12, norm=norm, colors="white", linewidths=0.4)
    figure.colorbar(mesh, ax=ax, label="loss (MSE, log scale)")
    ax.plot([best[0]], [best[1]], "*", color="gold", mec="black", ms=14, label=f"best w={best[0]:.4g}, b={best[1]:.4g}")
    ax.set(xlabel="w", ylabel="b", title=_titled(title, "exhaustive search over (w, b)"))
    ax.legend(loc="upper right", fontsize="small")
    return figure


def sweep_figure(points: dict[str, list[tuple[float, float]]], curves: list[dict], hidden: int, floor: float | None):
    """A sweep's picture from plain numbers. Left: final excess loss against learning rate, log-log, a line per
    group (``points``: label -> (lr, excess loss) pairs). Right: the loss curves (``curves``: group, tag, x, y,
    completed), the least-squares ``floor`` dashed when the jobs share it. ``hidden`` jobs had no point to show."""
    plt = pyplot()
    colours = plt.get_cmap("tab10")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (label, pairs) in enumerate(points.items()):
        if pairs:
            left.plot(*zip(*pairs), "o-", color=colours(i % 10), label=label)
    for curve in curves:
        style = "-" if curve["completed"] else ":"
        right.plot(curve["x"], curve["y"], color=colours(curve["group"] % 10), alpha=0.7, linewidth=1, linestyle=style)
    left.set(xscale="log", yscale="log", xlabel="learning rate (optimizer.lr)", ylabel="final excess loss")
    title = "final excess loss over the least-squares optimum"
    left.set_title(title + (f"\n({hidden} diverged, failed or without lr: not shown)" if hidden else ""))
    left.grid(True, which="both", alpha=0.3)
    if any(points.values()):
        left.legend(fontsize=8)
    if floor is not None and floor > 0:
        right.axhline(floor, color="black", linestyle="--", linewidth=1, label="least-squares optimum")
        right.legend(fontsize=8)
    tags = {c["tag"] for c in curves}
    right.set(yscale="log", ylabel="training loss")
    right.set_xlabel("epoch (train/cost)" if tags == {"train/cost"} else f"epoch or step ({', '.join(sorted(tags))})")
    right.xaxis.get_major_locator().set_params(integer=True)
    unfinished = any(not c["completed"] for c in curves)
    right.set_title("loss curves of all jobs" + (" (dotted: not completed)" if unfinished else ""))
    right.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    return figure
