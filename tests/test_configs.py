"""Every experiment and config group option composes and instantiates."""

import pytest
from conftest import CONF, compose_config
from hydra.utils import instantiate

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment, tmp_path):
    from linreg.train import build

    cfg = compose_config([f"+experiment={experiment}"], tmp_path)
    assert cfg.name == experiment
    data, model, trainer = build(cfg)
    assert data.num_features == model.hparams.in_features


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_optimizers_build_torch_optimizers(optimizer, tmp_path):
    import torch

    cfg = compose_config([f"optimizer={optimizer}", "optimizer.lr=0.1"], tmp_path)
    opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == 0.1


def test_experiments_are_known():
    assert {"gd", "sgd", "minibatch"} <= set(EXPERIMENTS)
