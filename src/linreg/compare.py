"""The paths of a sweep's jobs on one contour of their shared data: ``paths.png``, drawn by scripts/report.py.

It is drawn when every completed job fitted a line of one feature to the same data (the jobs may differ in
batch size, shuffling, optimiser, learning rate, epochs...), so that their paths lie on the same cost surface:
gradient descent, SGD and mini-batches side by side. Each path is the job's ``params/w`` (and ``params/b``) from
its TensorBoard events, that is the weights every logged step started from, and its final weights.

Torch and matplotlib are imported only once the jobs turn out to be comparable: a report of other sweeps stays a
table's worth of work.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

ORDER_ONLY = ("batch_size", "shuffle")  # data settings that change the order of the samples, not the samples


def _setup(folder: Path):
    """The job's data and model settings from its .hydra/config.yaml, or None when it is not a line of one feature."""
    path = folder / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    try:
        data = OmegaConf.to_container(cfg.data, resolve=True)
        model = OmegaConf.to_container(cfg.model, resolve=True)
    except Exception:  # an interpolation that needs Hydra's runtime: not a config this figure can rebuild
        return None
    if model.get("depth", 0) or cfg.get("task", "fit") != "fit":
        return None
    bias = bool(model.get("bias", True))
    start = [model.get("init_weight"), *([model.get("init_bias")] if bias else [])]
    return data, bias, None if None in start else start


def _path(folder: Path, bias: bool, final: dict, start: list | None):
    """The logged points, after the configured start (the first logged step may come after a few updates)."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    try:
        events.Reload()
    except Exception:  # a half-written event file
        return None
    tags = events.Tags().get("scalars", [])
    names = ["params/w", "params/b"] if bias else ["params/w"]
    columns = [[e.value for e in events.Scalars(n)] if n in tags else [] for n in names]  # none: a short run
    points = torch.tensor(list(zip(*columns)), dtype=torch.float64).reshape(-1, len(names))
    end = torch.tensor([[final["weight"][0], *(final["bias"] if bias else [])]], dtype=torch.float64)
    first = torch.tensor([start], dtype=torch.float64) if start is not None else points[:0]
    if len(points) and len(first) and torch.equal(points[0], first[0]):
        first = first[:0]
    return torch.cat([first, points, end])


def paths_figure(jobs, path: Path, labels: dict[Path, str]) -> Path | None:
    """Draw the completed jobs' paths on one contour into ``path``; None when they do not share data and model."""
    setups = {job.folder: _setup(job.folder) for job in jobs if job.ok}
    if len(setups) < 2 or any(s is None for s in setups.values()):
        return None
    shared = [({k: v for k, v in data.items() if k not in ORDER_ONLY}, bias) for data, bias, _ in setups.values()]
    if any(s != shared[0] for s in shared[1:]):
        return None
    from hydra.utils import instantiate

    from linreg import figures

    data_cfg, bias, _ = next(iter(setups.values()))
    data = instantiate({**data_cfg, "batch_size": "full"})
    data.setup("fit")
    if data.num_features != 1:
        return None
    paths = {}
    for job in jobs:
        if job.folder in setups:
            points = _path(job.folder, bias, job.summary, setups[job.folder][2])
            if points is not None and len(points) > 1:
                paths[labels[job.folder]] = points
    if len(paths) < 2:
        return None
    figure = draw(data.x_train, data.y_train, paths, bias, f"{len(paths)} jobs on the same data ({data_cfg['source']})")
    figures.save(figure, path.parent, path.stem)
    return path


def draw(x, y, paths: dict, bias: bool, title: str):
    """Every path (a (k, 1) or (k, 2) tensor) on the contours of the cost over (w, b), or on the cost curve over w."""
    import torch

    from linreg import figures, optimum

    plt = figures.pyplot()
    m = optimum.moments(x, y)
    best = optimum.least_squares(x, y, bias)
    best_w, best_b = best["weight"][0], (best["bias"][0] if bias else 0.0)
    everything = torch.cat(list(paths.values()))
    w_lo, w_hi = figures.span([best_w, *everything[:, 0].tolist()], least=2.0)
    figure, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    colours = plt.get_cmap("tab10")
    if bias:
        b_lo, b_hi = figures.span([best_b, *everything[:, 1].tolist()], least=2.0)
        gw, gb = torch.meshgrid(
            torch.linspace(w_lo, w_hi, 150, dtype=torch.float64),
            torch.linspace(b_lo, b_hi, 150, dtype=torch.float64),
            indexing="xy",
        )
        cost = optimum.line_cost(m, gw, gb)
        low = optimum.line_cost(m, best_w, best_b)
        levels = (low + (max(cost.max().item(), low + 1e-12) - low) * torch.linspace(0, 1, 25) ** 2).tolist()
        ax.contourf(gw.numpy(), gb.numpy(), cost.numpy(), levels=levels, cmap="Greys")
        ax.contour(gw.numpy(), gb.numpy(), cost.numpy(), levels=levels, colors="white", linewidths=0.3)
        ax.set(xlabel="w", ylabel="b")
    else:
        ws = torch.linspace(w_lo, w_hi, 400, dtype=torch.float64)
        ax.plot(ws.numpy(), optimum.line_cost(m, ws).numpy(), color="black", lw=1, label="cost(w)")
        ax.set(xlabel="w", ylabel="MSE")
    for i, (label, points) in enumerate(paths.items()):
        points = points[points.isfinite().all(1)]
        ys = points[:, 1] if bias else optimum.line_cost(m, points[:, 0])
        colour = colours(i % 10)
        ax.plot(points[:, 0].numpy(), ys.numpy(), "o-", ms=2, lw=1, color=colour, label=f"{label} ({len(points)})")
        ax.plot(points[:1, 0].numpy(), ys[:1].numpy(), "s", color=colour, ms=6)
    ax.plot([best_w], [best_b if bias else optimum.line_cost(m, best_w)], "*", color="gold", mec="black", ms=16,
            label="optimum")  # fmt: skip
    ax.set_title(f"{title}\nthe paths of the jobs (points: logged steps; square: start)")
    ax.legend(fontsize="small", loc="upper right")
    return figure
