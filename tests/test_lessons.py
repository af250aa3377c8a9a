"""The lessons that print the course's numbers: the back-propagation walk-through and divide and conquer."""

import pytest
import seed_reference as ref
from conftest import compose_config

COURSE_GRADS = [-2.0, -7.84, -16.2288]  # section 3.3's printout for samples 1..3 (w0 = 1, lr 0.01, in order)


def run_task(overrides, folder):
    from importlib import import_module

    cfg = compose_config(overrides, folder)
    return import_module(f"linreg.{cfg.task}").run(cfg)


def test_backprop_gives_the_course_gradients_by_hand_and_by_autograd(tmp_path, capsys):
    summary = run_task(["+experiment=backprop"], tmp_path / "bp")
    steps = summary["backprop"]
    course, _ = ref.autograd_walk()
    assert [s["x"] for s in steps] == [1.0, 2.0, 3.0] and [s["y"] for s in steps] == [2.0, 4.0, 6.0]
    for step, expected, (_, _, printed) in zip(steps, COURSE_GRADS, course):
        assert step["grad_w"] == pytest.approx(expected, rel=1e-6)
        assert step["autograd_grad_w"] == printed  # float32, bit for bit what the course's program prints
        assert step["grad_w"] == pytest.approx(step["autograd_grad_w"], rel=1e-7)
        assert step["loss"] == pytest.approx(step["residual"] ** 2, rel=1e-6)
        assert step["y_hat"] == pytest.approx(step["x"] * step["w"], rel=1e-6)
    assert [s["w"] for s in steps[1:]] == [s["w_after"] for s in steps[:-1]]  # each update feeds the next sample
    assert summary["weight"][0] == pytest.approx(1.260688, rel=1e-6)
    out = capsys.readouterr().out
    assert "course:    grad: 2.0 4.0 -7.840000152587891" in out
    assert "∂loss/∂w  = ∂loss/∂r · ∂r/∂ŷ · ∂ŷ/∂w = -3.9200000762939453 · 1 · 2.0 = -7.840000152587891" in out
    assert (tmp_path / "bp" / "summary.json").is_file()


def test_backprop_in_float64_gives_the_plain_python_numbers(tmp_path):
    summary = run_task(["+experiment=backprop", "trainer.precision=64"], tmp_path)
    assert [s["grad_w"] for s in summary["backprop"]] == pytest.approx(COURSE_GRADS, abs=1e-12)
    assert summary["weight"][0] == pytest.approx(ref.stochastic_gradient_descent(epochs=1)[-1], abs=1e-12)


def test_backprop_with_a_bias_and_adam_still_agrees_with_autograd(tmp_path):
    summary = run_task(["+experiment=backprop", "model.bias=true", "model.init_bias=0.5", "optimizer=adam"], tmp_path)
    for step in summary["backprop"]:
        assert step["grad_b"] == pytest.approx(step["autograd_grad_b"], rel=1e-6)
        assert step["grad_w"] == pytest.approx(step["autograd_grad_w"], rel=1e-6)
    assert summary["bias"] is not None


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "sigmoid"])
def test_backprop_through_a_hidden_unit_agrees_with_autograd(tmp_path, activation):
    overrides = ["+experiment=backprop_hidden", f"model.activation={activation}", "trainer.precision=64"]
    summary = run_task(overrides, tmp_path)
    for s in summary["backprop"]:  # float64: the hand's and autograd's order of products differ only in rounding
        assert s["grad_w1"] == pytest.approx(s["autograd_grad_w1"], rel=1e-12)
        assert s["grad_w2"] == pytest.approx(s["autograd_grad_w2"], rel=1e-12)
    if activation == "identity":  # no activation: the line y_hat = (w1 w2) x, whose gradient is 2 r w2 x for w1
        first = summary["backprop"][0]
        assert first["grad_w1"] == pytest.approx(COURSE_GRADS[0]) and first["y_hat"] == 1.0


def test_a_relu_with_a_negative_input_passes_no_gradient(tmp_path):
    summary = run_task(["+experiment=backprop_hidden", "model.activation=relu", "model.init_weight=-1"], tmp_path)
    assert all(s["da_dh"] == 0 and s["grad_w1"] == 0 and s["grad_w2"] == 0 for s in summary["backprop"])
    assert summary["backprop"][-1]["w1_after"] == -1.0


def test_backprop_refuses_batches(tmp_path):
    from linreg.errors import ConfigError

    with pytest.raises(ConfigError, match="data.batch_size=3 must be 1"):
        run_task(["+experiment=backprop", "data.batch_size=3"], tmp_path)


def graph_in_events(folder) -> bool:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events.Tags()["graph"]


def test_backprop_puts_the_graph_and_the_gradients_in_tensorboard(tmp_path):
    from conftest import scalar_tags

    run_task(["+experiment=backprop"], tmp_path)
    assert graph_in_events(tmp_path)
    assert scalar_tags(tmp_path)["backprop/grad_w"] == pytest.approx(COURSE_GRADS, rel=1e-6)


def test_divide_and_conquer_finds_w_2_within_100_evaluations(tmp_path, capsys):
    import math

    folder = tmp_path / "dc"
    summary = run_task(["+experiment=divide_conquer"], folder)
    assert abs(summary["weight"][0] - 2.0) <= 1e-6
    # [0, 4] shrinks to 2/5 of its width a round, until half the width is at most 1e-6
    rounds = math.ceil(math.log(1e-6 / 2) / math.log(2 / 5))
    assert summary["rounds"] == rounds == 16
    assert summary["evaluations"] == 4 * rounds <= 100
    assert summary["status"] == "completed" and summary["excess_loss"] < 1e-10
    rows = (folder / "rounds.csv").read_text().splitlines()
    assert rows[0] == "round,w_low,w_high,best_w,cost,evaluations" and len(rows) == 1 + rounds
    widths = [float(r.split(",")[2]) - float(r.split(",")[1]) for r in rows[1:]]
    assert all(b == pytest.approx(a * 0.4) for a, b in zip(widths, widths[1:]))
    assert (folder / "divide_conquer.png").stat().st_size > 10_000
    assert "round  16: w in [" in capsys.readouterr().out


def test_divide_and_conquer_lands_in_a_local_minimum_of_a_non_convex_cost(tmp_path):
    stuck = run_task(["+experiment=divide_conquer_nonconvex"], tmp_path / "stuck")
    assert stuck["weight"][0] == pytest.approx(4.79, abs=0.01)  # the second valley of sin(x w) against sin(x)
    assert stuck["optimum"]["weight"][0] == pytest.approx(1.0, abs=0.01)
    assert stuck["excess_loss"] > 0.5
    found = run_task(["+experiment=divide_conquer_nonconvex", "search.w.high=10"], tmp_path / "found")
    assert found["weight"][0] == pytest.approx(found["optimum"]["weight"][0], abs=1e-5)


def test_divide_and_conquer_with_a_bias_meets_least_squares(tmp_path):
    summary = run_task(
        ["+experiment=divide_conquer", "data=synthetic", "data.samples=200", "model.bias=true"]
        + ["search.b={low:-2,high:2}"],
        tmp_path,
    )
    assert summary["weight"][0] == pytest.approx(summary["optimum"]["weight"][0], abs=1e-5)
    assert summary["bias"][0] == pytest.approx(summary["optimum"]["bias"][0], abs=1e-5)


def test_divide_and_conquer_names_a_missing_bias_range(tmp_path):
    from linreg.errors import ConfigError

    with pytest.raises(ConfigError, match="model.bias=true needs search.b"):
        run_task(["+experiment=divide_conquer", "model.bias=true"], tmp_path)


def course_lines(out: str, head: str) -> list[list[str]]:
    return [line.split()[1:] for line in out.splitlines() if line.strip().startswith(head)]


def test_trace_of_sgd_prints_the_course_program_lines(run_train, capsys):
    summary, folder = run_train(["+experiment=sgd", "report.trace=true"])
    out = capsys.readouterr().out
    grads, progress = ref.autograd_walk(epochs=100)  # section 3.3's program, float32 like this run
    printed = [[float(v) for v in row] for row in course_lines(out, "grad:")]
    assert len(printed) == 300
    assert [row[:2] for row in printed] == [[x, y] for x, y, _ in grads]
    # float32 from here on: late gradients are differences of nearly equal numbers, equal to about 1e-5
    assert [row[2] for row in printed] == pytest.approx([g for _, _, g in grads], rel=1e-6, abs=1e-5)
    assert [row[2] for row in printed[:3]] == [g for _, _, g in grads[:3]]
    assert "\tgrad: 2.0 4.0 -7.840000152587891" in out
    rows = course_lines(out, "progress:")
    assert [int(r[0]) for r in rows] == list(range(100))
    assert [float(r[4]) for r in rows] == pytest.approx([loss for _, loss in progress], rel=1e-5, abs=1e-8)
    assert [float(r[2]) for r in rows] == pytest.approx(ref.stochastic_gradient_descent()[2::3], rel=1e-6)
    assert "Predict (before training) 4.0 4.0" in out
    assert course_lines(out, "Predict (after training)")[0][-1] == repr(summary["predictions"]["after"][0])
    # the same signed gradients in TensorBoard, beside the norm
    from conftest import scalar_tags

    tags = scalar_tags(folder)
    assert tags["train/grad_w"][:3] == pytest.approx(COURSE_GRADS, rel=1e-6)
    assert tags["train/grad_norm"][:3] == pytest.approx([2.0, 7.84, 16.2288], rel=1e-6)


def test_trace_of_gd_in_float64_prints_the_course_numbers(run_train, capsys):
    run_train(["+experiment=gd", "report.trace=true", "trainer.precision=64"])
    rows = course_lines(capsys.readouterr().out, "Epoch:")
    path = ref.gradient_descent()
    assert len(rows) == 100
    assert abs(float(rows[0][2]) - 1.0933333333333333) < 1e-15 and abs(float(rows[0][4]) - 4.666666666666667) < 1e-15
    assert [float(r[2]) for r in rows] == pytest.approx(path, abs=1e-12)
    # loss= is the cost at the w the epoch started from, as the course prints cost_val before its update
    assert [float(r[4]) for r in rows] == pytest.approx([ref.cost(w) for w in [1.0, *path[:-1]]], abs=1e-12)


def test_no_trace_unless_asked(run_train, capsys):
    run_train(["+experiment=sgd", "trainer.max_epochs=1"])
    assert "grad:" not in capsys.readouterr().out


def test_progress_bar_is_off_when_stdout_is_not_a_terminal(monkeypatch, tmp_path):
    import io

    from hydra.utils import instantiate

    from linreg.resolvers import when_terminal

    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert when_terminal(10) == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout.isatty", lambda: True)
        assert when_terminal(10) == 10
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"output_dir={tmp_path}"])
    assert not instantiate(cfg.callbacks.progress_bar).is_enabled


@pytest.mark.parametrize("overrides", [["+experiment=sgd"], ["+experiment=deep_relu", "data.samples=64"]])
def test_every_run_logs_its_graph_once(run_train, overrides):
    _, folder = run_train([*overrides, "trainer.max_epochs=1"])
    assert graph_in_events(folder)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    nodes = [n.name for n in events.Graph().node]
    assert any("Linear" in n or "net" in n for n in nodes)


def report_of(**changes) -> str:
    from pathlib import Path

    from linreg.summary import console_report

    result = {
        "experiment": "sgd", "status": "completed", "epochs": 100, "steps": 300, "wall_time_s": 1.0, "device": "cpu",
        "predictions": {"x": [4.0], "before": [4.0], "after": [7.999998569488525]},
        "weight": [1.9999996423721313], "bias": None, "final_loss": 5.163277213190062e-13,
        "optimum": {"weight": [2.0], "bias": None, "loss": 0.0}, "excess_loss": 5.163277213190062e-13,
    }  # fmt: skip
    return console_report({**result, **changes}, Path("run"))


def test_console_report_keeps_full_precision_and_explains_itself():
    text = report_of()
    assert "-> [7.999998569488525]" in text and "weight [1.9999996423721313]  no bias" in text
    mlp = report_of(weight=None, excess_loss=-1.46, final_loss=0.008)
    assert "none" not in mlp and "a network's, not one line's" in mlp
    assert "beats the best line by 1.46" in mlp
    assert "beats" not in report_of(excess_loss=0.25)


def fake_sweep(tmp_path, jobs: dict[str, list[str]]):
    """A sweep folder as Hydra leaves it, its jobs trained in this process: summary, events, .hydra/*.yaml."""
    from omegaconf import OmegaConf

    from linreg.train import train

    sweep = tmp_path / "sweep"
    for name, overrides in jobs.items():
        folder = sweep / name
        cfg = compose_config(overrides, folder)
        train(cfg)
        (folder / ".hydra").mkdir()
        OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
        (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return sweep


@pytest.mark.slow  # a sweep: two runs, their events read back, the whole report drawn
def test_report_draws_the_paths_of_gd_and_sgd_on_one_contour(tmp_path):
    from test_figures import assert_picture

    from linreg.sweep_report import report

    sweep = fake_sweep(
        tmp_path,
        {"0_gd": ["+experiment=gd", "trainer.max_epochs=20"], "1_sgd": ["+experiment=sgd", "trainer.max_epochs=20"]},
    )
    text = report(sweep)
    assert "paths.png" in text and "paths.png" in (sweep / "report.md").read_text()
    assert_picture(sweep / "paths.png", colours=50)


def test_the_comparison_draws_every_path_from_its_start(tmp_path):
    from linreg import compare, figures
    from linreg.sweep_jobs import load_jobs

    sweep = fake_sweep(
        tmp_path,
        {
            "0_one": ["+experiment=minibatch", "data.samples=64", "data.batch_size=1", "trainer.max_epochs=2"],
            "1_full": ["+experiment=minibatch", "data.samples=64", "data.batch_size=full", "trainer.max_epochs=2"],
        },
    )
    jobs = load_jobs(sweep)
    setups = {j.folder: compare._setup(j.folder) for j in jobs}
    paths = [compare._path(j.folder, True, j.summary, setups[j.folder][2]) for j in jobs]
    assert [len(p) for p in paths] == [1 + 128 // 4 + 1, 1 + 0 + 1]  # start, steps logged every 4th, end
    for job, points in zip(jobs, paths):
        assert points[0].tolist() == [0.0, 0.0]
        assert points[-1].tolist() == [job.summary["weight"][0], job.summary["bias"][0]]
    figure = compare.draw(torch_x(), torch_x() * 2, dict(zip("ab", paths)), True, "t")
    assert len(figure.axes[0].get_legend().get_texts()) == 3  # two paths and the optimum
    figures.pyplot().close(figure)


def torch_x():
    import torch

    return torch.linspace(-1, 1, 20).unsqueeze(1)


@pytest.mark.slow  # a sweep: two runs and the whole report
def test_no_comparison_for_jobs_on_different_data(tmp_path):
    from linreg.sweep_report import report

    sweep = fake_sweep(
        tmp_path,
        {
            "0": ["+experiment=sgd", "trainer.max_epochs=1"],
            "1": ["+experiment=minibatch", "data.samples=64", "trainer.max_epochs=1"],
        },
    )
    report(sweep)
    assert not (sweep / "paths.png").exists()


def test_figure_titles_name_the_experiment_and_the_learning_rate(tmp_path):
    from linreg import figures

    cfg = compose_config(["+experiment=sgd", "optimizer.lr=0.05"], tmp_path)
    title = figures.run_title(cfg)
    assert title == "sgd: SGD, lr=0.05, batch 1"
    x = torch_x()
    curve = figures.landscape(x, 2 * x, None, bias=False, title=title)
    surface = figures.landscape(x, 2 * x + 1, None, bias=True, title=title)
    assert title in curve.axes[0].get_title() and surface._suptitle.get_text() == title
    grid_cfg = compose_config(["+experiment=grid"], tmp_path)
    assert figures.run_title(grid_cfg) == "grid: grid"


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["backprop", "divide_conquer"])
def test_lesson_tasks_run_from_the_command_line(experiment, tmp_path):
    from conftest import read_summary, script

    done = script("train.py", f"+experiment={experiment}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (folder,) = (tmp_path / "outputs").glob(f"*/*_{experiment}")
    summary = read_summary(folder)
    if experiment == "backprop":
        assert [round(s["grad_w"], 4) for s in summary["backprop"]] == COURSE_GRADS
        assert "course:    grad: 3.0 6.0 -16.228801727294922" in done.stdout
    else:
        assert abs(summary["weight"][0] - 2) <= 1e-6 and summary["evaluations"] <= 100
        assert (folder / "rounds.csv").is_file() and "round  16:" in done.stdout


@pytest.mark.slow
def test_a_redirected_run_has_no_progress_bar_redraws(tmp_path):
    from conftest import script

    done = script("train.py", "+experiment=sgd", "report.trace=true", cwd=tmp_path)  # stdout is a pipe
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stdout + done.stderr
    assert done.stdout.count("\tgrad:") == 300 and len(done.stdout) < 40_000
