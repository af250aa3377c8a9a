"""gd and sgd reproduce the seed's numbers: to float32 precision, and to 1e-12 in float64."""

import pytest
import seed_reference as ref
from conftest import scalar_tags

CASES = {"gd": ref.gradient_descent, "sgd": ref.stochastic_gradient_descent}


@pytest.mark.parametrize("experiment", sorted(CASES))
def test_float32_run_matches_the_seed_loop(run_train, experiment):
    path = CASES[experiment]()
    summary, folder = run_train([f"+experiment={experiment}"])
    w = path[-1]
    assert summary["steps"] == len(path)
    assert summary["weight"][0] == pytest.approx(w, rel=1e-6)
    assert summary["predictions"]["before"] == [4.0]
    assert summary["predictions"]["after"][0] == pytest.approx(4 * w, rel=1e-6)
    assert summary["final_loss"] == pytest.approx(ref.cost(w), rel=1e-2, abs=1e-12)  # w - 2 has float32 noise
    assert summary["optimum"] == {"weight": [2.0], "bias": None, "loss": 0.0}
    # params/w is logged before every step: the seed's path, shifted by one
    logged = scalar_tags(folder)["params/w"]
    assert logged[0] == 1.0
    assert logged[1:] == pytest.approx(path[:-1], rel=1e-6)


@pytest.mark.parametrize("experiment", sorted(CASES))
def test_float64_run_matches_the_seed_loop_to_1e_12(run_train, experiment):
    w = CASES[experiment]()[-1]
    summary, _ = run_train([f"+experiment={experiment}", "trainer.precision=64"])
    assert abs(summary["weight"][0] - w) < 1e-12
    assert abs(summary["predictions"]["after"][0] - 4 * w) < 1e-12
    assert abs(summary["final_loss"] - ref.cost(w)) < 1e-12


def test_analytic_and_autograd_gradients_give_the_same_trajectory(run_train):
    common = [
        "data=synthetic",
        "data.batch_size=64",
        "data.samples=256",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "optimizer=momentum",
        "model.init_weight=0.5",
    ]
    auto, auto_dir = run_train([*common, "model.gradient=autograd"], "autograd")
    hand, hand_dir = run_train([*common, "model.gradient=analytic"], "analytic")
    auto_tags, hand_tags = scalar_tags(auto_dir), scalar_tags(hand_dir)
    for tag in ("params/w", "params/b", "train/loss", "train/grad_norm"):
        assert len(auto_tags[tag]) == 12
        assert hand_tags[tag] == pytest.approx(auto_tags[tag], rel=1e-5, abs=1e-6)
    assert hand["final_loss"] == pytest.approx(auto["final_loss"], rel=1e-5)
