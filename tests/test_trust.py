"""Trustworthy results: the status tells the truth, last.ckpt is the final state, checkpoints are data,
experiments compose with every data source, every fault is one line, and nothing written is overwritten."""

import errno
import math
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CONF, ROOT, compose_config, read_summary, script, script_env
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from linreg import checkpoints, optimum, summary
from linreg.callbacks import runaway
from linreg.cli import run_reporting_errors, tally
from linreg.errors import ConfigError, DivergedError
from linreg.evaluate import evaluate
from linreg.train import train

QUIET = "callbacks.progress_bar.refresh_rate=0"
DATA_SOURCES = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def step_of(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]


def eval_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("eval", overrides=list(overrides))


def refused(overrides, folder, capsys) -> tuple[int, str]:
    """Run train() through the command line's error reporting; return the exit code and the stderr lines."""
    cfg = compose_config(overrides, folder)
    with pytest.raises(SystemExit) as stop:
        run_reporting_errors(train, cfg)
    return stop.value.code, capsys.readouterr().err.strip().splitlines()


# 1. status tells the truth ------------------------------------------------------------------------------------


def test_runaway_names_non_finite_bound_and_growth():
    assert runaway(float("nan"), 1.0, 1e10) == "loss=nan"
    assert "divergence_bound" in runaway(2e10, 1.0, 1e10)
    assert "times its" in runaway(5000.0, 4.0, 1e10)
    assert runaway(3000.0, 4.0, 1e10) is None
    assert runaway(2e11, 3e11, 1e10) is None  # a large target starts above the bound: only growth past it counts
    assert "divergence_bound" in runaway(4e11, 3e11, 1e10)
    assert "times its 0 before" in runaway(1e-9, 0.0, 1e10)
    assert runaway(1e-9, 0.0, 1e10, floor=1e-6) is None  # rounding noise around a start at the optimum


@pytest.mark.slow  # the everyday loop keeps to a minute
def test_continuing_a_converged_run_is_not_mistaken_for_divergence(run_train):
    first, folder = run_train(["+experiment=sgd"], "first")
    assert first["final_loss"] < 1e-10
    again, _ = run_train(["+experiment=sgd", "trainer.max_epochs=150", f"ckpt_path={folder}/checkpoints/last.ckpt"])
    assert again["status"] == "completed" and again["steps"] == 450


def test_blown_up_full_batch_run_is_diverged_not_completed(tmp_path):
    run = ["data=synthetic", "data.batch_size=full", "optimizer.lr=5", "trainer.max_epochs=45"]
    with pytest.raises(DivergedError, match=r"full-batch gradient descent on this data is stable only for lr < 0.93"):
        train(compose_config(run, tmp_path))
    result = read_summary(tmp_path)
    assert result["status"] == "diverged" and result["steps"] < 45


def test_run_that_ran_away_below_the_bound_is_diverged_with_the_in_order_sgd_bound(tmp_path):
    with pytest.raises(DivergedError) as error:
        train(compose_config(["+experiment=sgd", "optimizer.lr=0.21"], tmp_path))
    message = str(error.value)
    assert "times its 4.667 before training" in message  # 1000x growth, far below divergence_bound=1e10
    assert "batches of 1" in message and "lr < 0.1111" in message and "2/L = 0.2143" in message
    assert read_summary(tmp_path)["status"] == "diverged"


def test_divergence_is_caught_at_epoch_end_whatever_the_logging_interval(tmp_path):
    run = ["+experiment=sgd", "optimizer.lr=1.0", "trainer.log_every_n_steps=100000"]
    with pytest.raises(DivergedError, match="epoch's mean"):
        train(compose_config(run, tmp_path))
    assert read_summary(tmp_path)["steps"] <= 6


def test_without_the_guard_the_end_of_training_still_tells_the_truth(tmp_path):
    run = ["+experiment=sgd", "optimizer.lr=0.21", "~callbacks.divergence", "trainer.max_epochs=100"]
    with pytest.raises(DivergedError, match="diverged by its end"):
        train(compose_config(run, tmp_path))
    result = read_summary(tmp_path)
    assert result["status"] == "diverged" and result["steps"] == 300


def test_a_short_run_that_ends_far_above_its_start_is_diverged(tmp_path):
    run = ["data=synthetic", "data.features=5000", "data.samples=128", "trainer.max_epochs=3", "optimizer.lr=0.01"]
    with pytest.raises(DivergedError, match=r"diverged by its end: loss=.* times its .* before training") as error:
        train(compose_config(run, tmp_path))
    assert "with batches of 32" in str(error.value)
    assert read_summary(tmp_path)["status"] == "diverged"


def test_a_target_in_the_hundreds_of_thousands_is_not_diverged_at_the_first_step(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("x,y\n" + "".join(f"{i / 10:.1f},{300000 + 20000 * i / 10:.1f}\n" for i in range(40)))
    run = ["data=csv", f"data.path={path}", "data.batch_size=full", "optimizer.lr=0.1", "trainer.max_epochs=50"]
    result = train(compose_config(run, tmp_path / "run"))  # starts at a loss near 1e11, above divergence_bound
    assert result["status"] == "completed" and result["final_loss"] < 1e10


def test_adam_hint_does_not_claim_the_gradient_descent_bound(tmp_path):
    with pytest.raises(DivergedError, match="Adam has no closed-form stable range") as error:
        train(compose_config(["+experiment=sgd", "optimizer=adam", "optimizer.lr=1e6"], tmp_path))
    assert "2/L" not in str(error.value)


def test_badly_scaled_features_get_a_diagnosis_not_only_a_tiny_lr(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g) * torch.tensor([1.0, 1000.0])
    y = x @ torch.tensor([[2.0], [0.003]])
    path = tmp_path / "scales.csv"
    path.write_text("a,b,y\n" + "".join(f"{r[0]:.6f},{r[1]:.6f},{t:.6f}\n" for r, t in zip(x.tolist(), y[:, 0])))
    run = ["data=csv", f"data.path={path}", "data.feature_columns=[a,b]", "data.standardize=false",
           "data.batch_size=full", "optimizer.lr=0.01"]
    with pytest.raises(DivergedError, match=r"sizes differ by a factor of .*data.standardize=true.*optimizer=lbfgs"):
        train(compose_config(run, tmp_path / "run"))


# 2. last.ckpt is the final state ------------------------------------------------------------------------------


def test_last_checkpoint_is_the_final_state_and_eval_reproduces_the_summary(run_train):
    result, folder = run_train(["+experiment=minibatch", "optimizer.lr=0.5", "trainer.max_epochs=3"])
    last = folder / "checkpoints" / "last.ckpt"
    assert result["status"] == "completed" and step_of(last) == result["steps"] == 3 * 32
    scored = evaluate(eval_config(f"ckpt_path={last}"))
    assert scored["data"]["from"] == "the checkpoint's own" and scored["data"]["source"] == "synthetic"
    assert scored["loss"] == pytest.approx(result["final_loss"], rel=1e-6)
    assert scored["predictions"]["y"] == pytest.approx(result["predictions"]["after"], rel=1e-6)


def test_a_diverged_runs_last_checkpoint_is_where_it_stopped(tmp_path):
    with pytest.raises(DivergedError):
        train(compose_config(["+experiment=sgd", "optimizer.lr=1.0"], tmp_path))
    assert step_of(tmp_path / "checkpoints" / "last.ckpt") == read_summary(tmp_path)["steps"]


def test_resuming_a_completed_run_says_so_and_trains_nothing(run_train, tmp_path):
    run = ["+experiment=sgd", "trainer.max_epochs=3"]
    _, folder = run_train(run, "done")
    (folder / ".hydra").mkdir()
    OmegaConf.save(compose_config(run, folder), folder / ".hydra" / "config.yaml")
    with pytest.raises(ConfigError, match="already completed; there is nothing to continue"):
        train(compose_config([f"resume={folder}"], tmp_path / "again"))
    assert not (tmp_path / "again" / "summary.json").exists()


def test_resuming_a_diverged_run_is_refused(tmp_path):
    run = ["+experiment=sgd", "optimizer.lr=1.0"]
    with pytest.raises(DivergedError):
        train(compose_config(run, tmp_path / "blown"))
    (tmp_path / "blown" / ".hydra").mkdir()
    OmegaConf.save(compose_config(run, tmp_path / "blown"), tmp_path / "blown" / ".hydra" / "config.yaml")
    with pytest.raises(ConfigError, match="that run diverged"):
        train(compose_config([f"resume={tmp_path / 'blown'}"], tmp_path / "again"))


def test_a_resumed_config_that_cannot_be_read_is_one_line(run_train, tmp_path):
    _, folder = run_train(["+experiment=sgd", "trainer.max_epochs=2"], "old")
    (folder / "summary.json").unlink()
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"resume=.*config.yaml cannot be read"):
        train(compose_config([f"resume={folder}"], tmp_path / "again"))


def test_a_resumed_config_that_no_longer_validates_is_one_line(run_train, tmp_path):
    run = ["+experiment=sgd", "trainer.max_epochs=3"]
    _, folder = run_train(run, "old")
    (folder / "summary.json").unlink()
    (folder / ".hydra").mkdir()
    saved = compose_config(run, folder)
    saved.optimizer.lr = -1
    OmegaConf.save(saved, folder / ".hydra" / "config.yaml")
    with pytest.raises(ConfigError, match=r"resume=.*no longer validates: optimizer.lr=-1"):
        train(compose_config([f"resume={folder}"], tmp_path / "again"))


def test_eval_names_the_data_it_scored_on(run_train):
    result, folder = run_train(["data=nonlinear", "data.samples=64", "trainer.max_epochs=2"])
    own = evaluate(eval_config(f"ckpt_path={folder}/checkpoints/last.ckpt"))
    lesson = evaluate(eval_config(f"ckpt_path={folder}/checkpoints/last.ckpt", "data=lesson"))
    assert own["data"]["source"] == "nonlinear" and lesson["data"]["from"] == "data=lesson"
    assert own["loss"] == pytest.approx(result["final_loss"], rel=1e-6) and lesson["loss"] != own["loss"]


# 3. experiments compose with every data source ----------------------------------------------------------------


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("source", DATA_SOURCES)
def test_every_experiment_builds_with_every_data_source(experiment, source, tmp_path):
    from linreg.train import build

    csv = tmp_path / "my.csv"
    csv.write_text("x,y\n1,2\n2,4.1\n3,5.9\n4,8.2\n")
    extra = [f"data.path={csv}"] if source == "csv" else []
    cfg = compose_config([f"+experiment={experiment}", f"data={source}", *extra], tmp_path / "run")
    assert cfg.data.source == compose_config([f"data={source}", *extra], tmp_path / "plain").data.source
    data, model, _ = build(cfg)
    assert data.num_features == model.hparams.in_features == 1


def test_experiments_set_only_how_the_data_is_served():
    served = {"batch_size", "shuffle", "val_fraction"}
    for path in (CONF / "experiment").glob("*.yaml"):
        data = OmegaConf.load(path).get("data") or {}
        assert set(data) <= served, f"{path.name} sets {sorted(set(data) - served)}: those belong to conf/data/"


# 5. one line for every user mistake ---------------------------------------------------------------------------

REFUSED = {
    "model.gradient=magic": "model.gradient='magic' is not known",
    "task=nosuch": "task='nosuch' is not allowed: use fit, grid, divide_conquer or backprop",
    "trainer.devices=0": "trainer.devices=0 is not allowed",
    "trainer.precision=8": "trainer.precision=8 is not allowed",
    "trainer.accelerator=tpu": "trainer.accelerator='tpu' is not allowed",
    "optimizer=adam +optimizer.betas=[2,3]": "optimizer: Invalid beta parameter",
    "+optimizer.betas=[2,3]": "optimizer: SGD.__init__() got an unexpected keyword argument 'betas'",
    "optimizer._target_=torch.optim.LBFGS +experiment=gd": "through a closure, which model.gradient=analytic",
    "predict.x=[abc]": "predict.x=['abc'] is not allowed",
    "predict.x=[]": "predict.x=[] is not allowed",
    "predict.x=4": "predict.x=4 is not allowed",
    "data=synthetic data.features=2 predict.x=[[1,2,3]]": "a row of 2 numbers",
    "predict.x=[true]": "predict.x=[True] is not allowed",
}


@pytest.mark.parametrize("overrides", sorted(REFUSED))
def test_refused_setting_is_one_line_and_exit_2_and_writes_nothing(overrides, tmp_path, capsys):
    code, lines = refused(overrides.split(), tmp_path / "run", capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and REFUSED[overrides] in lines[0]
    assert not (tmp_path / "run" / "summary.json").exists()


def crafted_checkpoint(folder: Path) -> tuple[Path, Path]:
    """A .ckpt whose unpickling would create a file: proof that loading it ran code."""
    marker = folder / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = folder / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"in_features": 1}, "x": Payload()}, path)
    return path, marker


def test_a_crafted_checkpoint_runs_nothing_anywhere(tmp_path, capsys):
    path, marker = crafted_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="refused: it holds objects other than tensors"):
        checkpoints.read(str(path))
    with pytest.raises(ConfigError, match="refused"):
        evaluate(eval_config(f"ckpt_path={path}"))
    code, lines = refused(["+experiment=sgd", f"ckpt_path={path}"], tmp_path / "run", capsys)
    assert code == 2 and len(lines) == 1 and "refused" in lines[0]
    assert not marker.exists()


def test_lightning_itself_loads_our_checkpoints_weights_only(run_train, tmp_path):
    from linreg.model import Regressor

    _, folder = run_train(["+experiment=sgd", "trainer.max_epochs=2"])
    model = Regressor.load_from_checkpoint(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert model.hparams.in_features == 1
    path, marker = crafted_checkpoint(tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        Regressor.load_from_checkpoint(path, weights_only=True)
    assert not marker.exists()


def test_bad_checkpoints_given_to_train_are_one_line(run_train, tmp_path, capsys):
    _, folder = run_train(["+experiment=sgd", "trainer.max_epochs=2"], "source")
    good = (folder / "checkpoints" / "last.ckpt").read_bytes()
    weights = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    torch.save({k: weights[k] for k in ("state_dict", "hyper_parameters")}, tmp_path / "weights.ckpt")
    (tmp_path / "truncated.ckpt").write_bytes(good[: len(good) // 3])
    (tmp_path / "garbage.ckpt").write_text("not a checkpoint")
    cases = {
        "ckpt_path=truncated.ckpt": "not a checkpoint of this project's model",
        "ckpt_path=garbage.ckpt": "not a checkpoint of this project's model",
        "ckpt_path=missing.ckpt": "no such file",
        "ckpt_path=weights.ckpt +experiment=sgd": "holds the weights but not the training state",
        f"ckpt_path={folder}/checkpoints/last.ckpt data=synthetic data.features=3": "does not fit this one",
        f"ckpt_path={folder}/checkpoints/last.ckpt +experiment=deep_relu": "does not fit this one",
        f"ckpt_path={folder}/checkpoints/last.ckpt +experiment=sgd optimizer=adam": "another optimizer",
    }
    for overrides, words in cases.items():
        args = [a if "/" in a or not a.startswith("ckpt_path=") else f"ckpt_path={tmp_path}/{a[10:]}"
                for a in overrides.split()]
        code, lines = refused(args, tmp_path / "run", capsys)
        assert code == 2 and len(lines) == 1 and words in lines[0], (overrides, lines)


def test_a_full_disk_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    def full(result, folder):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "summary.json"))

    monkeypatch.setattr(summary, "write", full)
    code, lines = refused(["+experiment=sgd", "trainer.max_epochs=1"], tmp_path / "run", capsys)
    assert code == 1 and len(lines) == 1
    assert "summary.json: No space left on device" in lines[0] and "hydra.run.dir" in lines[0]


# 6. bounded cost ----------------------------------------------------------------------------------------------


def test_many_features_few_samples_solve_through_the_samples_gram():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 200_000, generator=g), torch.randn(32, 1, generator=g)
    best = optimum.least_squares(x, y, bias=True)
    assert best["loss"] < 1e-10 and len(best["weight"]) == 200_000  # more features than samples: it interpolates
    assert optimum.curvature(x, True) == pytest.approx(
        2 * torch.linalg.eigvalsh(torch.cat([x, torch.ones(32, 1)], 1).double() @
                                  torch.cat([x, torch.ones(32, 1)], 1).double().T / 32).max().item(), rel=1e-6)


def test_above_the_work_limit_there_is_no_closed_form_and_the_curvature_is_estimated(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 300, generator=g) * torch.linspace(0.5, 2.0, 300)
    exact = optimum.curvature(x, False)
    monkeypatch.setattr(optimum, "EXACT_WORK", 1e6)
    assert optimum.least_squares(x, x[:, :1], bias=False) is None
    assert optimum.curvature(x, False) == pytest.approx(exact, rel=0.05)


def test_console_summarises_long_weight_vectors(run_train, capsys):
    result, _ = run_train(["data=synthetic", "data.features=40", "data.samples=64", "trainer.max_epochs=1"])
    lines = capsys.readouterr().out.splitlines()
    weight_line = next(line for line in lines if line.startswith("weight"))
    assert "(40 values)" in weight_line and len(weight_line) < 300
    assert len(result["weight"]) == 40  # summary.json keeps all of them


def test_an_output_place_that_cannot_be_written_is_one_line(capsys):
    from linreg.cli import _refuse_used

    with pytest.raises(SystemExit) as stop:
        _refuse_used(Path("/proc/linreg-run"), "hydra.run.dir")  # not writable, not even for root
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and "hydra.run.dir=/proc/linreg-run: cannot write there" in lines[0]


def test_only_a_run_folder_of_hydras_files_is_removed(tmp_path, monkeypatch):
    from linreg.cli import remove_if_unused

    refused_run, used, here = tmp_path / "refused", tmp_path / "used", tmp_path / "here"
    for folder in (refused_run, used, here):
        (folder / ".hydra").mkdir(parents=True)
        (folder / "train.log").write_text("")
    (used / "summary.json").write_text("{}")
    monkeypatch.chdir(here)
    for folder in (refused_run, used, here):
        remove_if_unused(folder)
    assert not refused_run.exists() and used.is_dir() and here.is_dir()  # never the folder the user stands in
    empty = tmp_path / "empty"
    empty.mkdir()
    remove_if_unused(empty)  # no .hydra: not a folder Hydra made for a run (eval.py runs in the current one)
    assert empty.is_dir()


def test_sweep_tally_counts_jobs_by_status():
    assert tally({"0": "completed", "1": "diverged", "2": "completed"}) == "3 jobs: 2 completed, 1 diverged"
    assert tally({"0": "failed"}) == "1 job: 1 failed"


# 8. nothing written is overwritten, and the command line's own faults ------------------------------------------


@pytest.mark.slow
def test_a_used_run_folder_is_refused_and_left_as_it_was(tmp_path):
    first = script("train.py", "+experiment=sgd", "trainer.max_epochs=2", QUIET, "hydra.run.dir=run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    again = script("train.py", "+experiment=gd", QUIET, "hydra.run.dir=run", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        "error: hydra.run.dir=run already holds files (a run?); nothing was written there. Choose a new folder, "
        "or leave hydra.run.dir out to get a fresh one"
    ]
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_outputs_being_a_file_is_one_line(tmp_path):
    (tmp_path / "outputs").write_text("in the way")
    done = script("train.py", "+experiment=sgd", QUIET, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "cannot make the output folder" in done.stderr and "Not a directory" in done.stderr


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line_and_leaves_no_folder(tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), "+experiment=sgd", QUIET],
                            cwd=tmp_path, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # inside the imports or composing: before any training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines() == ["error: interrupted by Ctrl-C"], err
    assert not list(tmp_path.glob("outputs/*/*"))


@pytest.mark.slow
def test_resumed_run_folder_is_named_after_its_experiment(tmp_path):
    stopped = script("train.py", "+experiment=sgd", QUIET, "hydra.run.dir=first",
                     "+callbacks.sigterm._target_=signals.SigtermAtStep", "+callbacks.sigterm.step=30", cwd=tmp_path,
                     env={"PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'src'}"})
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    resumed = script("train.py", "resume=first", cwd=tmp_path, env={"PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'src'}"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (folder,) = tmp_path.glob("outputs/*/*")
    assert folder.name.endswith("_sgd") and read_summary(folder)["status"] == "completed"


@pytest.mark.slow
def test_an_interrupted_job_stops_the_sweep(tmp_path):
    done = script("train.py", "-m", "+experiment=sgd", "optimizer.lr=0.01,0.02", QUIET,
                  "+callbacks.sigterm._target_=signals.SigtermAtStep", "+callbacks.sigterm.step=6", cwd=tmp_path,
                  env={"PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'src'}"})
    assert done.returncode == 130 and "error: interrupted at step 6" in done.stderr  # 2 epochs of 3
    assert [p.name for p in only_job_folders(tmp_path)] == ["0_optimizer.lr=0.01"]  # the second job never started


def only_job_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("outputs/multirun/*/*/*/.hydra"))


@pytest.mark.slow
def test_joblib_sweep_counts_its_jobs_and_fails_when_one_diverged(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the [sweep] extra")
    done = script("train.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "+experiment=sgd",
                  "optimizer.lr=0.01,0.02,1.0", "trainer.max_epochs=3", QUIET, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "3 jobs: 2 completed, 1 diverged"


@pytest.mark.slow
def test_optuna_counts_a_diverged_trial_as_failed(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the [sweep] extra")
    common = ["-m", "hparams_search=optuna", "+experiment=sgd", "data.batch_size=choice(1)",
              "trainer.max_epochs=3", QUIET]
    (tmp_path / "some").mkdir()
    some = script("train.py", *common, "hydra.sweeper.n_trials=4", "optimizer.lr=choice(0.01,1.0)",
                  cwd=tmp_path / "some")
    assert some.returncode == 0, some.stderr[-2000:]
    assert "diverged" in some.stderr.strip().splitlines()[-1]
    results = OmegaConf.load(next((tmp_path / "some").glob("outputs/multirun/*/*/optimization_results.yaml")))
    assert math.isfinite(results["best_value"]) and results["best_params"]["optimizer.lr"] == 0.01
    (tmp_path / "none").mkdir()
    none = script("train.py", *common, "hydra.sweeper.n_trials=2", "optimizer.lr=choice(1.0)", cwd=tmp_path / "none")
    assert none.returncode == 1 and "Traceback" not in none.stderr
    assert none.stderr.strip().splitlines()[-1] == "error: 2 jobs: 2 diverged; none completed"
