"""The model: the network it builds and the hand-derived gradient."""

import pytest
import torch
import torch.nn.functional as F

from linreg.errors import ConfigError
from linreg.model import Regressor, build_net


def test_linear_model_starts_at_the_constant():
    net = build_net(3, 1, bias=True, depth=0, hidden=8, activation="identity", init_weight=1.0, init_bias=0.5)
    assert isinstance(net, torch.nn.Linear)
    assert net.weight.tolist() == [[1.0, 1.0, 1.0]] and net.bias.tolist() == [0.5]


def test_mlp_has_depth_hidden_layers_and_activations():
    net = build_net(1, 1, bias=True, depth=2, hidden=8, activation="tanh", init_weight=None, init_bias=None)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]


@pytest.mark.parametrize("bias", [True, False])
def test_seed_formula_equals_autograd_gradient(bias):
    """2/N sum x (x w + b - y), the seed's derivation, is what back-propagation computes."""
    torch.manual_seed(0)
    x, y = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 1, dtype=torch.float64)
    net = torch.nn.Linear(3, 1, bias=bias).double()
    F.mse_loss(net(x), y).backward()
    residual = (net(x) - y).detach()
    assert torch.allclose(net.weight.grad, 2 / 50 * residual.T @ x)
    if bias:
        assert torch.allclose(net.bias.grad, 2 / 50 * residual.sum(0))


def test_analytic_gradient_is_for_the_linear_model_only():
    with pytest.raises(ConfigError, match="model.depth=0"):
        Regressor(gradient="analytic", depth=2)


def test_unknown_choices_are_named():
    with pytest.raises(ConfigError, match="model.gradient"):
        Regressor(gradient="finite-differences")
    with pytest.raises(ConfigError, match="model.activation"):
        Regressor(depth=1, activation="swish")
