"""Bad input and diverging runs: one clear message naming the setting, a non-zero exit, nothing lost."""

import subprocess
import sys

import pytest
from conftest import CONF, ROOT, compose_config, read_summary, scalar_tags, script, script_env

from linreg import sources
from linreg.data import RegressionData
from linreg.errors import ConfigError, DivergedError
from linreg.train import train

BAD_OVERRIDES = {
    # override(s): words the one-line message must contain
    "optimizer.lr=-1": ["optimizer.lr=-1", "number > 0"],
    "optimizer.lr=abc": ["optimizer.lr='abc'", "number > 0"],
    "data.batch_size=0": ["data.batch_size=0", "whole number >= 1"],
    "data=synthetic data.features=0": ["data.features=0", "whole number >= 1"],
    "trainer.max_epochs=-2": ["trainer.max_epochs=-2", "-1 for no limit"],
    "optimizer=nosuch": ["optimizer/nosuch", "adam", "momentum", "sgd"],
    "+experiment=nosuch": ["experiment/nosuch", "gd", "minibatch", "sgd"],
    "data=csv data.path=missing.csv": ["data.path='missing.csv'", "no such file"],
}


@pytest.mark.slow
@pytest.mark.parametrize("overrides", sorted(BAD_OVERRIDES))
def test_bad_setting_gives_one_clear_line_and_a_non_zero_exit(overrides, tmp_path):
    done = script("train.py", *overrides.split(), cwd=tmp_path, timeout=60)
    assert done.returncode != 0
    for words in BAD_OVERRIDES[overrides]:
        assert words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not list(tmp_path.glob("outputs/*/*"))  # a refused run leaves no run folder behind


def test_gpu_trainer_without_a_gpu_is_refused_clearly(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="trainer=gpu but this machine has no CUDA GPU"):
        train(compose_config(["trainer=gpu"], tmp_path))


@pytest.mark.slow
def test_full_error_still_shows_the_traceback(tmp_path):
    done = script("train.py", "optimizer.lr=-1", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"}, timeout=60)
    assert done.returncode != 0 and "Traceback" in done.stderr and "ConfigError" in done.stderr


CSV_CASES = {
    "x,z\n1,2\n": "column(s) ['y'] not in the header",
    "x,y\n1,2\n3,oops\n": "line 3, column 'y': 'oops' is not a number",
    "x,y\n1,2\nnan,4\n": "line 3, column 'x': 'nan' is not a finite number",
    "x,y\n1,inf\n": "line 2, column 'y': 'inf' is not a finite number",
    "": "the file is empty",
    "x,y\n1,2\n3,4,5\n": "line 3: 3 fields where the header has 2",
    "x,y\n": "no data rows",
}


@pytest.mark.parametrize("text", sorted(CSV_CASES))
def test_bad_csv_names_file_line_and_column(text, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        sources.from_csv(str(path), ["x"], "y")
    assert str(path) in str(error.value) and CSV_CASES[text] in str(error.value)


def test_too_few_rows_for_the_validation_split():
    with pytest.raises(ConfigError, match="data.val_fraction=0.2 of 3 samples"):
        RegressionData("lesson", val_fraction=0.2).setup()


def test_gradient_accumulation_is_refused_in_one_line(tmp_path):
    """Lightning refuses it under manual optimisation with a traceback from inside fit."""
    with pytest.raises(ConfigError, match=r"accumulate_grad_batches=2 is not allowed: use 1: .*data.batch_size"):
        train(compose_config(["+trainer.accumulate_grad_batches=2"], tmp_path))


def test_diverging_run_stops_at_once_and_keeps_what_it_wrote(tmp_path):
    with pytest.raises(DivergedError, match=r"optimizer.lr=1; with batches of 1.*lr < 0.1111.*2/L = 0.2143"):
        train(compose_config(["+experiment=sgd", "optimizer.lr=1.0"], tmp_path))
    summary = read_summary(tmp_path)
    assert summary["status"] == "diverged" and summary["steps"] < 20
    assert "diverged at step" in summary["error"]
    assert len(scalar_tags(tmp_path)["train/loss"]) == summary["steps"]


@pytest.mark.slow
def test_diverging_job_in_a_multirun_lets_the_others_finish_then_fails_the_sweep(tmp_path):
    done = script("train.py", "-m", "+experiment=sgd", "optimizer.lr=0.01,1.0", "trainer.max_epochs=20",
                  "callbacks.progress_bar.refresh_rate=0", cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "error: training diverged" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "2 jobs: 1 completed, 1 diverged"
    jobs = sorted(tmp_path.glob("outputs/multirun/*/*/*/summary.json"))
    statuses = {p.parent.name: read_summary(p.parent)["status"] for p in jobs}
    assert statuses == {"0_optimizer.lr=0.01": "completed", "1_optimizer.lr=1.0": "diverged"}


@pytest.mark.slow
def test_diverging_single_run_exits_non_zero(tmp_path):
    done = script("train.py", "+experiment=sgd", "optimizer.lr=1.0", "callbacks.progress_bar.refresh_rate=0",
                  cwd=tmp_path)
    assert done.returncode == 3
    assert "error: training diverged" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_eval_reports_loss_and_predictions_and_refuses_bad_checkpoints(run_train, tmp_path):
    import json

    summary, folder = run_train(["+experiment=sgd", "trainer.max_epochs=10"])
    done = script("eval.py", f"ckpt_path={folder}/checkpoints/last.ckpt", "predict.x=[4.0,5.0]", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["loss"] == pytest.approx(summary["final_loss"], rel=1e-6)
    assert result["predictions"]["y"][0] == pytest.approx(summary["predictions"]["after"][0], rel=1e-6)
    missing = script("eval.py", "ckpt_path=nothing.ckpt", cwd=tmp_path)
    assert missing.returncode == 2 and "ckpt_path=nothing.ckpt: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
    # `eval.py ... | head -1`: the reader goes away before the result is printed: no traceback, exit 1
    command = [sys.executable, str(ROOT / "scripts" / "eval.py"), f"ckpt_path={folder}/checkpoints/last.ckpt"]
    closed = subprocess.Popen(command, cwd=tmp_path, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    closed.stdout.close()
    assert (closed.wait(timeout=180), closed.stderr.read()) == (1, "")


def test_eval_refuses_checkpoints_it_cannot_use(run_train, tmp_path):
    from hydra import compose, initialize_config_dir

    from linreg.evaluate import evaluate

    _, folder = run_train(["+experiment=sgd", "trainer.max_epochs=2"])
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        junk = compose("eval", overrides=[f"ckpt_path={tmp_path}/junk.ckpt"])
        other = compose("eval", overrides=[f"ckpt_path={folder}/checkpoints/last.ckpt", "data=synthetic",
                                           "data.features=3"])
    with pytest.raises(ConfigError, match="not a checkpoint of this project's model"):
        evaluate(junk)
    with pytest.raises(ConfigError, match=r"takes 1 feature\(s\) but this data has 3"):
        evaluate(other)


def test_analytic_gradient_under_mixed_precision_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="model.gradient=analytic is derived in full precision"):
        train(compose_config(["+experiment=gd", "trainer.precision=bf16-mixed"], tmp_path))


@pytest.mark.slow
def test_resume_takes_no_other_settings(tmp_path):
    run = tmp_path / "run"  # what resume= checks before the other settings: a saved config and a last checkpoint
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "config.yaml").write_text("name: sgd\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read before the settings are refused")
    done = script("train.py", f"resume={run}", "optimizer.lr=0.5", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "takes no other settings (optimizer.lr=0.5)" in done.stderr
    assert f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in done.stderr
    assert (run / ".hydra" / "config.yaml").read_text() == "name: sgd\n"  # nothing of the old run is touched
