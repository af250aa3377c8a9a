"""What a sweep found, written into the sweep's folder: report.md and report.csv (one row per job, best first),
report.png and, where the jobs fitted the same line, paths.png.

The jobs are read by sweep_jobs, ranked and tabulated by sweep_ranking, drawn by figures.sweep_figure (from
plain numbers, so that figures knows nothing of jobs) and compare.paths_figure.
"""

from __future__ import annotations

from pathlib import Path

from linreg import figures
from linreg.compare import paths_figure
from linreg.sweep_jobs import Job, load_jobs, loss_curve, sweep_command
from linreg.sweep_ranking import line_keys, markdown, overview, ranked, shared_optimum, swept_keys, write_csv

DPI = figures.DPI


def plot(jobs: list[Job], keys: list[str], path: Path, dpi: int = DPI) -> Path:
    """Left: final excess loss against learning rate, a line per group of the swept settings. Right: every
    job's loss curve from its TensorBoard events, coloured by its group."""
    split = line_keys(jobs, keys)
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        label = ", ".join(f"{k}={job.overrides.get(k, '-')}" for k in split) or "all jobs"
        groups.setdefault(label, []).append(job)
    points, curves, hidden = {}, [], 0
    for group, (label, members) in enumerate(groups.items()):
        points[label] = sorted((j.lr, max(j.value("excess_loss"), 1e-16)) for j in members if j.ok and j.lr is not None)
        hidden += len(members) - len(points[label])
        for job in members:
            curve = loss_curve(job.folder)
            if curve is not None:
                curves.append({"group": group, "tag": curve[0], "x": curve[1], "y": curve[2], "completed": job.ok})
    figure = figures.sweep_figure(points, curves, hidden, shared_optimum(jobs))
    return figures.save(figure, path.parent, path.stem, dpi=dpi)


def report(sweep: Path, dpi: int = DPI) -> str:
    """Write report.md, report.csv and report.png into the sweep folder; return the text for the console."""
    sweep = Path(sweep)
    jobs = load_jobs(sweep)
    keys = swept_keys(jobs)
    rows = ranked(jobs)
    table = markdown(rows, keys)
    write_csv(rows, keys, sweep / "report.csv")
    plot(jobs, keys, sweep / "report.png", dpi=dpi)
    labels = {j.folder: ", ".join(f"{k}={j.overrides.get(k, '-')}" for k in keys) or j.folder.name for j in jobs}
    compared = paths_figure(jobs, sweep / "paths.png", labels)  # the jobs' paths on one contour of shared data
    command = sweep_command(sweep)
    text = [f"# Sweep {sweep.name}", ""]
    if command:
        text += ["```", command, "```", ""]
    text += [overview(jobs, keys), "", table, "", "![excess loss and loss curves](report.png)", ""]
    if compared:
        text += ["![the paths of the jobs on one contour of their data](paths.png)", ""]
    notes = [f"- {j.folder.name}: {j.note}" for j in rows if j.note]
    if notes:
        text += ["Notes:", "", *notes, ""]
    (sweep / "report.md").write_text("\n".join(text))
    wrote = "report.md, report.csv, report.png and paths.png" if compared else "report.md, report.csv and report.png"
    return "\n".join([overview(jobs, keys), table, f"wrote {wrote} in {sweep}"])
