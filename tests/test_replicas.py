"""Replicas of the whole training, averaged (TrainConfig.replicas), and members that start
from the synthetic-only network (TrainConfig.pretrain_from_anchor)."""

import dataclasses

import numpy as np
import pytest
import torch

from ecg_gcn import checkpoint, config, distributed, predict, report, synth, train
from ecg_gcn.cache import load_cache

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    """(folder, summary, configuration) of two replicas of a 2-member smoke ensemble on 15
    records, each with a synthetic pool of 24 whose synthetic-only network is its anchor and
    its members' starting point."""
    folder = tmp_path_factory.mktemp("replicas")
    synth.generate(folder / "train", 15, seed=6, seconds=8.0)
    model_config, train_config = config.profile("smoke")
    train_config = dataclasses.replace(
        train_config,
        members=2,
        synthetic=24,
        synthetic_anchor=0.6,
        synthetic_anchor_records=10,
        synthetic_threshold_records=30,
        replicas=2,
        pretrain_from_anchor=True,
    )
    summary = train.train(
        folder / "train",
        folder / "model",
        model_config,
        train_config,
        cache_dir=folder / "caches" / "data",
        device=CPU,
        progress=False,
    )
    return folder, summary, train_config


def test_the_model_is_the_mean_of_its_replicas(replicated):
    folder, summary, _ = replicated
    model = predict.load(folder / "model", CPU)
    replicas = [predict.load(folder / "model" / f"replica-{r}", CPU) for r in (1, 2)]
    cache = load_cache(folder / "caches" / "data")
    signals = [cache.signal(i) for i in range(6)]
    each = [r.probabilities_many(signals) for r in replicas]
    assert not np.allclose(each[0], each[1], atol=1e-3)  # two draws, not one twice
    np.testing.assert_allclose(model.probabilities_many(signals), np.mean(each, 0), atol=1e-5)
    np.testing.assert_allclose(
        summary["predictor"].probabilities_many(signals), np.mean(each, 0), atol=1e-5
    )
    expected = np.mean([r.thresholds for r in replicas], axis=0)
    np.testing.assert_allclose(model.thresholds, expected)
    np.testing.assert_allclose(summary["thresholds"], expected)
    # Each replica: two members at 0.3 and its anchor at 0.6 x 10 / 15 = 0.4, halved.
    np.testing.assert_allclose(
        model.model.weights.numpy(), [0.15, 0.15, 0.2, 0.15, 0.15, 0.2], atol=1e-6
    )
    assert checkpoint.read(folder / "model")["replicas"] == 2
    assert model.rhythm_rules and model.rbbb_rule


def test_each_replica_trains_from_its_own_seed_and_pool(replicated):
    folder, _, _ = replicated
    first, second = (checkpoint.read(folder / "model" / f"replica-{r}") for r in (1, 2))
    assert (first["train_config"]["seed"], second["train_config"]["seed"]) == (0, 1)
    assert first["synthetic_pool"]["folder"].endswith("-n24-seed0")
    assert second["synthetic_pool"]["folder"].endswith("-n24-seed1")
    assert first["train_config"]["synthetic_seed"] == 0
    assert second["train_config"]["synthetic_seed"] == 1
    assert (first["train_config"]["replicas"], second["train_config"]["replicas"]) == (1, 1)


def test_the_out_of_fold_summary_averages_the_replicas(replicated):
    folder, summary, _ = replicated
    cache = load_cache(folder / "caches" / "data")
    validation = summary["validation"]
    assert sorted(validation["indices"]) == list(range(len(cache)))  # cross-fitted: all
    signals = [cache.signal(int(j)) for j in validation["indices"]]
    model = predict.load(folder / "model", CPU)
    # Out of fold: no replica's member saw the record it scores, so the model itself, which
    # holds every member, answers otherwise.
    assert not np.allclose(validation["probabilities"], model.probabilities_many(signals))
    assert np.all((validation["probabilities"] >= 0) & (validation["probabilities"] <= 1))


def test_members_start_from_the_synthetic_only_network_without_a_pretraining(replicated):
    folder, _, train_config = replicated
    settings = train.replica_settings(train_config, 0)
    data = load_cache(folder / "caches" / "data")
    pool_folder = next((folder / "caches").glob("synthetic-*-n24-seed0"))
    combined, pool = train.with_pool(data, load_cache(pool_folder))
    model_config = config.profile("smoke")[0]
    model, pretrained = train._initial_model(
        combined, np.arange(10), pool, model_config, settings, CPU, distributed.Context(), False
    )
    assert pretrained
    anchor = checkpoint.read(train.fit_synthetic_only(pool, model_config, settings, CPU))
    for key, value in anchor["state_dict"].items():
        if not key.endswith("adjacency"):
            torch.testing.assert_close(model.state_dict()[key], value)
    assert not list(pool_folder.glob("pretrained-*.pt"))  # no pre-training of their own
    # Without the setting, the members start from their own pre-training.
    own = dataclasses.replace(settings, pretrain_from_anchor=False, synthetic_pretrain_epochs=1)
    model, _ = train._initial_model(
        combined, np.arange(10), pool, model_config, own, CPU, distributed.Context(), False
    )
    assert list(pool_folder.glob("pretrained-*.pt"))
    state = model.state_dict()
    assert not all(
        torch.equal(state[k], v) for k, v in anchor["state_dict"].items() if "adjacency" not in k
    )


def test_the_report_says_how_the_replicas_were_trained(replicated):
    folder, _, _ = replicated
    text = report.write_report(folder / "model").read_text()
    assert (
        "- replicas: 2, replica r trained from seed + r on the pool of synthetic_seed + r" in text
    )
    assert "the members start from the first network trained on them alone" in text
    assert "15 recordings in 2 cross-fitted parts" in text


def test_replicas_are_validated():
    assert config.TrainConfig().replicas == 1
    assert not config.TrainConfig().pretrain_from_anchor
    with pytest.raises(ValueError, match="replicas"):
        config.TrainConfig(replicas=0)
    with pytest.raises(ValueError, match="set one of them"):
        config.TrainConfig(replicas=2, synthetic_anchors=2)
    with pytest.raises(ValueError, match="pretrain_from_anchor"):
        config.TrainConfig(pretrain_from_anchor="yes")
