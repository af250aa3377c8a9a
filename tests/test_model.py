"""The model: the network it builds and the hand-derived gradient."""

import pytest
import torch
import torch.nn.functional as F

from linreg.errors import ConfigError
from linreg.model import Regressor, analytic_gradient, build_net


def test_linear_model_starts_at_the_constant():
    net = build_net(3, bias=True, depth=0, hidden=8, activation="identity", init_weight=1.0, init_bias=0.5)
    assert isinstance(net, torch.nn.Linear)
    assert net.weight.tolist() == [[1.0, 1.0, 1.0]] and net.bias.tolist() == [0.5]


def test_mlp_has_depth_hidden_layers_and_activations():
    net = build_net(1, bias=True, depth=2, hidden=8, activation="tanh", init_weight=None, init_bias=None)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]


def test_analytic_gradient_is_for_the_linear_model_only():
    with pytest.raises(ConfigError, match="model.depth=0"):
        Regressor(gradient="analytic", depth=2)


def test_unknown_choices_are_named():
    with pytest.raises(ConfigError, match="model.gradient"):
        Regressor(gradient="finite-differences")
    with pytest.raises(ConfigError, match="model.activation"):
        Regressor(depth=1, activation="swish")


@pytest.mark.parametrize("features", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_analytic_gradient_is_autograds_on_one_batch(features, bias):
    """The seed's formula 2/N sum x (x w + b - y), and 2/N sum (x w + b - y), is the MSE's gradient."""
    torch.manual_seed(features)
    x, y = torch.randn(7, features, dtype=torch.float64), torch.randn(7, 1, dtype=torch.float64)
    linear = torch.nn.Linear(features, 1, bias=bias).double()
    loss, grads = analytic_gradient(x, y, linear)
    expected = F.mse_loss(linear(x), y)
    expected.backward()
    assert len(grads) == (2 if bias else 1)
    assert float(loss) == pytest.approx(expected.item(), rel=1e-12)
    for g, p in zip(grads, linear.parameters()):
        assert g.shape == p.shape
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-12)


def test_analytic_gradient_of_the_seed_at_w_1():
    """Section 2.1's first step: x = 1, 2, 3, y = 2x, w = 1 gives cost 14/3 and gradient 2/3 (-1 -4 -9) = -28/3."""
    linear = torch.nn.Linear(1, 1, bias=False).double()
    torch.nn.init.constant_(linear.weight, 1.0)
    x = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    loss, (grad_w,) = analytic_gradient(x, 2 * x, linear)
    assert float(loss) == pytest.approx(14 / 3) and float(grad_w) == pytest.approx(-28 / 3)
