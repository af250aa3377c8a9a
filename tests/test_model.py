"""The model: the network it builds and the hand-derived gradient."""

import pytest
import torch

from linreg.errors import ConfigError
from linreg.model import Regressor, build_net


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
