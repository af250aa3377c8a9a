"""Seed section 3.1: stacked linear layers collapse to one linear map; a non-linear activation is what helps."""

import lightning as L
import pytest
import torch
from conftest import compose_config

from linreg import optimum

FAST = ["trainer.max_epochs=150", "~callbacks.checkpoint"]  # full-batch Adam: converged well before 150 steps


def collapse(net: torch.nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """The one linear map ``x W^T + b`` that layers ``W3 (W2 (W1 x + b1) + b2) + b3`` amount to."""
    weight, bias = None, None
    for layer in net:
        assert isinstance(layer, (torch.nn.Linear, torch.nn.Identity)), layer
        if isinstance(layer, torch.nn.Linear):
            weight = layer.weight if weight is None else layer.weight @ weight
            bias = layer.bias if bias is None else layer.weight @ bias + layer.bias
    return weight.detach().double(), bias.detach().double()


def test_deep_identity_mlp_is_linear_regression(tmp_path):
    from linreg.compat import quiet_lightning
    from linreg.train import build

    quiet_lightning()

    cfg = compose_config(["+experiment=deep_linear", *FAST], tmp_path)
    L.seed_everything(cfg.seed, verbose=False)
    data, model, trainer = build(cfg)
    assert model.hparams.depth == 3 and model.hparams.activation == "identity"
    trainer.fit(model, datamodule=data)

    weight, bias = collapse(model.net)
    x, y = data.x_train, data.y_train
    best = optimum.least_squares(x, y, bias=True)
    assert weight.reshape(-1).tolist() == pytest.approx(best["weight"], abs=2e-3)
    assert bias.tolist() == pytest.approx(best["bias"], abs=2e-3)
    # the collapsed map predicts what the network does
    assert torch.allclose(x.double() @ weight.T + bias, model(x).detach().double(), atol=1e-4)
    loss = optimum.mse(model, x, y, dtype=torch.float32)
    assert best["loss"] - 1e-6 <= loss <= best["loss"] * 1.001  # no better than the line, and as good


def test_relu_mlp_fits_what_no_line_can(run_train):
    summary, _ = run_train(["+experiment=deep_relu", *FAST])
    line = summary["optimum"]["loss"]  # least squares: the best any linear model does
    assert line > 1.0  # y = x^2 on [-2, 2]: a line leaves most of the variance
    assert summary["final_loss"] < 0.1 * line
