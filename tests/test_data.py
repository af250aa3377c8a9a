"""The data sources and the slicing loader."""

import pytest
import torch

from linreg import sources
from linreg.batches import TensorBatches
from linreg.data import RegressionData
from linreg.errors import ConfigError


def test_lesson_source_is_the_lesson_data():
    x, y = sources.lesson()
    assert x.reshape(-1).tolist() == [1.0, 2.0, 3.0]
    assert y.reshape(-1).tolist() == [2.0, 4.0, 6.0]


def test_synthetic_source_follows_its_line():
    x, y = sources.synthetic(samples=20_000, features=3, weight=[1.0, -2.0, 0.5], bias=3.0, noise=0.1, seed=1)
    assert x.shape == (20_000, 3) and y.shape == (20_000, 1)
    fit = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], 1), y).solution.reshape(-1)
    assert fit.tolist() == pytest.approx([1.0, -2.0, 0.5, 3.0], abs=0.01)
    again, _ = sources.synthetic(
        samples=20_000, features=3, weight=[1.0, -2.0, 0.5], bias=3.0, noise=0.1, seed=1
    )
    assert torch.equal(x, again)


def test_in_order_batches_are_consecutive_slices():
    x = torch.arange(10.0).reshape(-1, 1)
    batches = list(TensorBatches(x, 2 * x, batch_size=4, shuffle=False, seed=0))
    assert [b[0].reshape(-1).tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(torch.equal(by, 2 * bx) for bx, by in batches)


def test_shuffled_batches_cover_every_sample_once_in_an_epoch_dependent_order():
    x = torch.arange(100.0).reshape(-1, 1)
    loader = TensorBatches(x, x, batch_size=32, shuffle=True, seed=3)
    first = torch.cat([b[0] for b in loader]).reshape(-1)
    assert sorted(first.tolist()) == list(range(100))
    assert torch.equal(first, torch.cat([b[0] for b in loader]).reshape(-1))  # same epoch, same order
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([b[0] for b in loader]).reshape(-1))


def test_ranks_take_disjoint_equal_parts_of_each_global_batch():
    x = torch.arange(16.0).reshape(-1, 1)
    ranks = [list(TensorBatches(x, x, 8, True, 0, rank=r, world_size=2)) for r in range(2)]
    single = list(TensorBatches(x, x, 8, True, 0))
    for i, global_batch in enumerate(single):
        halves = torch.cat([ranks[0][i][0], ranks[1][i][0]])
        assert torch.equal(halves, global_batch[0])


def test_validation_split_is_disjoint_and_sized():
    data = RegressionData(
        "synthetic",
        batch_size=8,
        val_fraction=0.25,
        seed=0,
        samples=100,
        features=2,
        weight=1.0,
        bias=0.0,
        noise=0.1,
    )
    data.setup()
    assert len(data.x_train) == 75 and len(data.x_val) == 25
    rows = {tuple(r) for r in data.x_train.tolist()}
    assert not rows & {tuple(r) for r in data.x_val.tolist()}


def test_full_batch_is_the_whole_training_set():
    data = RegressionData("lesson", batch_size="full")
    data.setup()
    assert len(list(data.train_dataloader())) == 1


def test_csv_source_reads_named_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,target\n1,10,3\n2,20,5\n\n3,30,7\n")
    x, y = sources.from_csv(str(path), ["b", "a"], "target")
    assert x.tolist() == [[10, 1], [20, 2], [30, 3]]
    assert y.reshape(-1).tolist() == [3, 5, 7]


@pytest.mark.parametrize("option", ["batch_size=0", "batch_size=-3", "batch_size='big'", "val_fraction=1.5"])
def test_bad_loader_settings_name_the_setting(option):
    key, value = option.split("=")
    with pytest.raises(ConfigError, match=f"data.{key}"):
        RegressionData("lesson", **{key: eval(value)})


def test_data_seed_still_composes_the_lesson_with_one_note(tmp_path, capsys, monkeypatch):
    from conftest import compose_config
    from hydra.utils import instantiate

    monkeypatch.setattr(RegressionData, "_named_seed", False)
    old, new = (compose_config([f"data={name}"], tmp_path).data for name in ("seed", "lesson"))
    assert old.source == "seed" and new.source == "lesson"
    assert {k: v for k, v in old.items() if k != "source"} == {k: v for k, v in new.items() if k != "source"}
    for _ in range(2):
        data = instantiate(old)
        data.setup()
        assert torch.equal(data.x_train, sources.lesson()[0]) and torch.equal(data.y_train, sources.lesson()[1])
    assert capsys.readouterr().out.count("data=seed is now data=lesson") == 1


@pytest.mark.parametrize("key, value", [("batch_size", 0), ("val_fraction", 1.5), ("permute_on", "gpu")])
def test_the_config_check_and_the_datamodule_word_a_rule_alike(tmp_path, key, value):
    from conftest import compose_config

    from linreg.validate import check

    with pytest.raises(ConfigError) as by_constructor:
        RegressionData("lesson", **{key: value})
    with pytest.raises(ConfigError) as by_check:
        check(compose_config([f"++data.{key}={value}"], tmp_path))
    assert str(by_constructor.value) == str(by_check.value)


def test_unknown_source_option_is_named():
    with pytest.raises(ConfigError, match="unknown: \\['samplez'\\]"):
        RegressionData("synthetic", samplez=3, features=1, weight=1.0, bias=0.0, noise=0.0).setup()


def test_training_with_a_validation_split_logs_the_validation_loss(run_train):
    from conftest import scalar_tags

    summary, folder = run_train(["data=synthetic", "data.val_fraction=0.25", "trainer.max_epochs=2"])
    assert summary["status"] == "completed"
    assert len(scalar_tags(folder)["val/loss"]) == 2
