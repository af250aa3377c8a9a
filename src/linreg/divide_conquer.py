"""Divide and conquer (lesson section 2, 分治法): shrink an interval around the minimum of the cost, round by round.

Each round scores ``k`` evenly spaced candidates inside ``[low, high]`` and keeps the two gaps beside the best
one, so the interval shrinks by ``(k + 1) / 2`` per round. On a convex cost (a line's MSE is one) the minimum
is always in the part kept; on a cost with several valleys the first rounds may keep the wrong valley, and the
search ends in a local minimum: the lesson's caveat, shown by ``+experiment=divide_conquer_nonconvex``.

With a bias the search is nested: for every candidate w an inner search finds its best b (all of them at once),
and the outer search shrinks w on that best cost, which stays convex in w. A box shrunk around the best point
of a (w, b) grid would be cheaper but can lose the minimum of a narrow diagonal valley, which a line's cost has
when x is far from 0. Candidates are scored by the grid search's streamed evaluation (``grid.losses``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from linreg import figures, grid, optimum
from linreg.errors import ConfigError
from linreg.prediction import prediction_inputs, prediction_rows
from linreg.runs import finish, make, start_run

DENSE = 4001  # candidates of the exhaustive check that says whether a non-convex search found the global minimum


def _interval(axis, setting: str) -> tuple[float, float]:
    try:
        low, high = float(axis["low"]), float(axis["high"])
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{setting} needs numbers low and high, e.g. '{setting}={{low:0,high:4}}'") from error
    if not low < high:
        raise ConfigError(f"{setting}: low={low} must be below high={high}")
    return low, high


def _inner(lo: float, hi: float, k: int) -> torch.Tensor:
    """The k candidates strictly inside [lo, hi], evenly spaced; element-wise when lo and hi are tensors."""
    steps = torch.arange(1, k + 1, dtype=torch.float64) / (k + 1)
    if isinstance(lo, torch.Tensor):
        return lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * steps
    return lo + (hi - lo) * steps


def _kept(lo, hi, k: int, best):
    """The part of [lo, hi] beside the best of its k candidates: from the candidate before it to the one after."""
    width = (hi - lo) / (k + 1)
    return lo + width * best, lo + width * (best + 2)


class Search:
    """Scores candidates on the data and counts the evaluations (one per candidate line scored on the whole set)."""

    def __init__(self, data, curve: str, k: int, tol: float, max_rounds: int):
        self.data, self.curve, self.k, self.tol, self.max_rounds = data, curve, k, tol, max_rounds
        self.evaluations = 0
        self.scored: list[tuple[torch.Tensor, torch.Tensor]] = []  # each round's candidates and costs, for the figure

    def cost(self, weights: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
        self.evaluations += len(weights)
        return grid.losses(weights, biases, self.data.train_dataloader(), self.curve)

    def best_bias(self, ws: torch.Tensor, b_low: float, b_high: float):
        """For every w, the inner search over b (all ws at once): (best b, its cost, its final interval)."""
        lo = torch.full_like(ws, b_low)
        hi = torch.full_like(ws, b_high)
        best = torch.zeros(len(ws), dtype=torch.long)
        for _ in range(self.max_rounds):
            bs = _inner(lo, hi, self.k)  # (len(ws), k)
            costs = self.cost(ws.repeat_interleave(self.k), bs.reshape(-1)).reshape(len(ws), self.k)
            best = costs.argmin(1)
            lo, hi = _kept(lo, hi, self.k, best)
            if ((hi - lo) / 2).max() <= self.tol:
                break
        b = (lo + hi) / 2
        return b, self.cost(ws, b), (lo, hi)

    def run(self, w_low: float, w_high: float, b_range: tuple[float, float] | None, out=print) -> tuple[list, dict]:
        """Shrink [w_low, w_high] until half its width is at most tol; returns the rounds and the answer."""
        rounds, lo, hi = [], w_low, w_high
        for number in range(1, self.max_rounds + 1):
            ws = _inner(lo, hi, self.k)
            if b_range is None:
                bs, costs, b_box = torch.zeros_like(ws), self.cost(ws, torch.zeros_like(ws)), None
            else:
                bs, costs, b_box = self.best_bias(ws, *b_range)
            i = int(costs.argmin())
            row = {"round": number, "w_low": lo, "w_high": hi}
            if b_box is not None:
                row.update(b_low=b_box[0][i].item(), b_high=b_box[1][i].item())
            row.update(best_w=ws[i].item(), cost=costs[i].item(), evaluations=self.evaluations)
            if b_box is not None:
                row["best_b"] = bs[i].item()
            rounds.append(row)
            self.scored.append((ws, costs))
            out(_round_line(row))
            lo, hi = _kept(lo, hi, self.k, i)
            if (hi - lo) / 2 <= self.tol:
                break
        last = rounds[-1]
        return rounds, {"weight": last["best_w"], "bias": last.get("best_b"), "loss": last["cost"]}


def _round_line(row: dict) -> str:
    b = f"  b in [{row['b_low']!r}, {row['b_high']!r}]  best b={row['best_b']!r}" if "best_b" in row else ""
    return (
        f"round {row['round']:3d}: w in [{row['w_low']!r}, {row['w_high']!r}]  best w={row['best_w']!r}{b}  "
        f"cost {row['cost']!r}  evaluations {row['evaluations']}"
    )


def _write_csv(rounds: list, path: Path) -> None:
    keys = list(rounds[0])
    lines = [",".join(keys)] + [",".join(repr(r[k]) for k in keys) for r in rounds]
    path.write_text("\n".join(lines) + "\n")


def _global_best(search: Search, w_low: float, w_high: float) -> dict:
    """The global minimum on the same interval (b = 0), to say how far a non-convex search landed from it:
    an exhaustive grid finds its valley, and a quiet divide and conquer inside that valley refines it."""
    ws = torch.linspace(w_low, w_high, DENSE, dtype=torch.float64)
    costs = grid.losses(ws, torch.zeros_like(ws), search.data.train_dataloader(), search.curve)
    i = int(costs.argmin())
    valley = (ws[max(i - 1, 0)].item(), ws[min(i + 1, DENSE - 1)].item())
    refine = Search(search.data, search.curve, search.k, search.tol, search.max_rounds)
    _, found = refine.run(*valley, None, out=lambda line: None)
    method = f"a grid of {DENSE} candidates, refined in the best one's valley"
    return {"weight": [found["weight"]], "bias": None, "loss": found["loss"], "method": method}


def run(cfg: DictConfig) -> dict:
    """Search; write rounds.csv, divide_conquer.png (also in TensorBoard) and summary.json; return the summary."""
    folder = start_run(cfg)
    options = cfg.get("search")
    if options is None or options.get("w") is None:
        raise ConfigError("task=divide_conquer needs a search: block; select it with +experiment=divide_conquer")
    w_low, w_high = _interval(options.w, "search.w")
    bias = bool(cfg.model.get("bias", False))
    b_range = _interval(options.b, "search.b") if options.get("b") is not None else None
    if bias != (b_range is not None):
        raise ConfigError(
            f"model.bias={str(bias).lower()} needs search.b "
            + ("as a range, e.g. 'search.b={low:-2,high:2}'" if bias else "=null")
        )
    k, tol, max_rounds = options.candidates, options.tol, options.max_rounds
    if not (isinstance(k, int) and k >= 2):
        raise ConfigError(f"search.candidates={k!r} is not allowed: use a whole number >= 2 (3 halves the interval)")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ConfigError(f"search.tol={tol!r} is not allowed: use a number > 0, e.g. 1e-6")
    curve = options.get("curve", "line")
    data = make(cfg.data, "data")
    data.setup("fit")
    if data.num_features != 1:
        raise ConfigError(f"divide and conquer searches one weight, but the data has {data.num_features} features")
    if curve != "line" and bias:
        raise ConfigError(f"search.curve={curve} is searched over w alone: set model.bias=false")

    search = Search(data, curve, k, tol, max_rounds)
    start = time.perf_counter()
    rounds, found = search.run(w_low, w_high, b_range)
    wall = time.perf_counter() - start
    _write_csv(rounds, folder / "rounds.csv")

    best = optimum.least_squares(data.x_train, data.y_train, bias=bias) if curve == "line" else _global_best(
        search, w_low, w_high
    )
    w, b = found["weight"], found["bias"]
    query = prediction_inputs(cfg.predict.x, 1)[:, 0].double()
    after = (torch.sin(query * w) if curve == "sine" else query * w) + (b or 0.0)
    converged = (rounds[-1]["w_high"] - rounds[-1]["w_low"]) / (k + 1) <= tol
    result = {
        "experiment": cfg.name,
        "status": "completed" if converged else "stopped",
        "final_loss": found["loss"],
        "excess_loss": found["loss"] - best["loss"],
        "weight": [w],
        "bias": [b] if bias else None,
        "evaluations": search.evaluations,
        "rounds": len(rounds),
        "candidates_per_round": k,
        "tolerance": tol,
        "curve": curve,
        "predictions": {"x": prediction_rows(query.unsqueeze(1)), "before": None, "after": after.tolist()},
        "optimum": best,
        "epochs": 0,
        "steps": 0,
        "wall_time_s": wall,
        "device": "cpu",
    }
    if not converged:
        result["error"] = f"stopped after search.max_rounds={max_rounds} rounds, before search.tol={tol}"

    logger = make(cfg.logger, "logger")
    for row in rounds:
        logger.log_metrics({"search/cost": row["cost"], "search/best_w": row["best_w"]}, step=row["evaluations"])
    title = f"{cfg.name}: divide and conquer, {k} candidates a round"
    figure = _figure(search, rounds, (w_low, w_high), b, title, None if curve == "line" else best)
    finish(result, cfg, folder, logger, ("divide_conquer", figure))
    if curve != "line" and result["excess_loss"] > tol:
        print(
            f"not the global minimum: an exhaustive grid finds w={best['weight'][0]:.6g} with cost {best['loss']:.6g}. "
            "Divide and conquer keeps one valley each round; on a cost with several it can keep the wrong one."
        )
    return result


def _figure(search: Search, rounds: list, span: tuple[float, float], b: float | None, title: str, best=None):
    """Left: the cost over w with every round's interval drawn under it. Right: the interval's width by round."""
    plt = figures.pyplot()
    ws = torch.linspace(*span, 400, dtype=torch.float64)
    costs = grid.losses(ws, torch.full_like(ws, b or 0.0), search.data.train_dataloader(), search.curve)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    left.plot(ws.numpy(), costs.numpy(), color="tab:blue", label="cost(w)" if b is None else f"cost(w, b={b:.4g})")
    top, colours = costs.max().item(), plt.get_cmap("viridis")
    shown = rounds[:12]
    for n, row in enumerate(shown):
        y = -top * 0.04 * (n + 1)
        colour = colours(n / max(len(shown) - 1, 1))
        left.plot([row["w_low"], row["w_high"]], [y, y], color=colour, lw=3, solid_capstyle="butt")
        ws, costs = search.scored[n]
        left.plot(ws.numpy(), costs.numpy(), "o", color=colour, ms=5 if n == 0 else 3,
                  label="the candidates of each round" if n == 0 else None)  # fmt: skip
    last = rounds[-1]
    found = f"found w={last['best_w']:.6g}"
    left.plot([last["best_w"]], [last["cost"]], "*", color="gold", mec="black", ms=14, label=found)
    if best is not None:  # a non-convex cost: where the global minimum is
        label = f"global minimum w={best['weight'][0]:.6g}"
        left.plot(best["weight"], [best["loss"]], "P", color="tab:red", ms=10, label=label)
    left.set(xlabel="w", ylabel="MSE", title=f"{title}\nbars: the interval of rounds 1-{len(shown)}, top to bottom")
    left.legend()
    right.semilogy([r["evaluations"] for r in rounds], [r["w_high"] - r["w_low"] for r in rounds], "o-")
    right.axhline(2 * search.tol, color="black", ls="--", lw=1, label=f"2 x tol = {2 * search.tol:g}")
    right.set(xlabel="cost evaluations", ylabel="width of the interval", title="the interval shrinks every round")
    right.legend()
    return figure
