"""The cross-fitted ensemble (TrainConfig.members): members, out-of-fold thresholds, the
checkpoint, inference, the report and the evidence through it."""

import csv
import dataclasses

import numpy as np
import pytest
import torch

from ecg_gcn import checkpoint, config, explain, nets, predict, report, synth, thresholds, train
from ecg_gcn.cache import load_cache

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """(folder, summary, configuration) of a 3-member smoke ensemble on 18 synthetic records."""
    folder = tmp_path_factory.mktemp("members")
    synth.generate(folder / "train", 18, seed=5, seconds=8.0)
    model_config, train_config = config.profile("smoke")
    train_config = dataclasses.replace(train_config, members=3)
    summary = train.train(
        folder / "train",
        folder / "model",
        model_config,
        train_config,
        cache_dir=folder / "cache",
        device=CPU,
        progress=False,
    )
    return folder, summary, train_config


def test_each_member_validates_on_its_own_part_and_every_record_once(ensemble):
    folder, summary, _ = ensemble
    cache = load_cache(folder / "cache")
    validated = []
    for i in (1, 2, 3):
        with open(folder / "model" / f"member-{i}" / checkpoint.SPLIT_FILE, newline="") as f:
            rows = list(csv.DictReader(f))
        part = {r["record"] for r in rows if r["part"] == "validation"}
        assert part and {r["record"] for r in rows} == set(cache.names)
        validated.append(part)
    assert set.union(*validated) == set(cache.names)
    assert sum(len(p) for p in validated) == len(cache)
    with open(folder / "model" / checkpoint.SPLIT_FILE, newline="") as f:
        owner = {r["record"]: r["part"] for r in csv.DictReader(f)}
    for i, part in enumerate(validated, start=1):
        assert {owner[name] for name in part} == {f"member-{i}"}
    assert sorted(cache.names[j] for j in summary["validation"]["indices"]) == sorted(cache.names)


def test_thresholds_are_tuned_on_the_out_of_fold_probabilities(ensemble):
    folder, summary, train_config = ensemble
    cache = load_cache(folder / "cache")
    val = summary["validation"]
    expected, _ = thresholds.tune(
        val["probabilities"],
        cache.labels[val["indices"]],
        mode=train_config.threshold_mode,
        min_positives=train_config.threshold_min_positives,
    )
    np.testing.assert_allclose(summary["thresholds"], expected)
    saved = checkpoint.read(folder / "model")
    np.testing.assert_allclose(saved["thresholds"], expected)
    assert len(saved["member_epochs"]) == 3


def test_the_saved_ensemble_averages_its_members_probabilities(ensemble):
    folder, summary, _ = ensemble
    loaded = predict.load(folder / "model", CPU)
    assert isinstance(loaded.model, nets.Ensemble) and len(loaded.model.members) == 3
    cache = load_cache(folder / "cache")
    signals = [cache.signal(i) for i in range(4)]
    members = [predict.load(folder / "model" / f"member-{i}", CPU) for i in (1, 2, 3)]
    mean = np.mean([m.probabilities_many(signals) for m in members], axis=0)
    np.testing.assert_allclose(loaded.probabilities_many(signals), mean, atol=1e-5)
    np.testing.assert_allclose(summary["predictor"].probabilities_many(signals), mean, atol=1e-5)


def test_report_and_evidence_work_on_an_ensemble(ensemble):
    folder, _, _ = ensemble
    path = report.write_report(folder / "model")
    assert "3 cross-fitted parts" in path.read_text()
    loaded = predict.load(folder / "model", CPU)
    window = np.random.default_rng(0).normal(0, 0.1, (12, 5000)).astype(np.float32)
    assert explain.evidence(loaded, window, [0, 1]).shape == (2, 5000)
    with pytest.raises(ValueError, match="ensemble of 3"):
        explain.evidence(loaded, window, [0], method="gradcam")


def test_members_must_be_a_positive_int():
    with pytest.raises(ValueError, match="members"):
        config.TrainConfig(members=0)


def test_one_member_is_one_network(smoke_model_dir):
    assert config.profile("smoke")[1].members == 1
    assert isinstance(predict.load(smoke_model_dir, CPU).model, nets.ECGNet)
    assert not (smoke_model_dir / "member-1").exists()
