"""The cross-fitted ensemble (TrainConfig.members): members, out-of-fold thresholds, the
checkpoint, inference, the report and the evidence through it."""

import csv
import dataclasses

import numpy as np
import pytest
import torch

from ecg_gcn import (
    checkpoint,
    config,
    distributed,
    explain,
    nets,
    predict,
    report,
    synth,
    synthetic,
    thresholds,
    train,
)
from ecg_gcn import labels as lbl
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
    labels = cache.labels[val["indices"]]
    tuned, _ = thresholds.tune(
        val["probabilities"],
        labels,
        mode=train_config.threshold_mode,
        min_positives=train_config.threshold_min_positives,
    )
    expected = thresholds.cap_firing_rate(
        val["probabilities"],
        labels,
        tuned,
        train_config.firing_cap,
        train_config.firing_cap_prevalence,
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


@pytest.fixture(scope="module")
def anchored(tmp_path_factory):
    """(folder, summary, configuration) of a 3-member smoke ensemble on 15 records with a
    synthetic pool of 24, whose two synthetic-only networks weigh 0.6 x 10 / 15 = 0.4 of the
    answer together, and whose thresholds are 10 / 15 those tuned on 30 fresh synthetic
    records."""
    folder = tmp_path_factory.mktemp("anchored")
    synth.generate(folder / "train", 15, seed=6, seconds=8.0)
    model_config, train_config = config.profile("smoke")
    train_config = dataclasses.replace(
        train_config,
        members=3,
        synthetic=24,
        synthetic_pretrain_epochs=1,
        synthetic_anchor=0.6,
        synthetic_anchor_records=10,
        synthetic_anchors=2,
        synthetic_threshold_records=30,
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


def _anchor_folders(folder) -> list:
    """The cached synthetic-only networks of the `anchored` fixture: one per pool (seeds 0
    and 1), in that order."""
    return [
        path
        for seed in (0, 1)
        for path in (folder / "caches").glob(f"synthetic-*-n24-seed{seed}/synthetic-only-*")
    ]


def _synthetic_only(folder, signals) -> np.ndarray:
    """The mean probability of the `anchored` fixture's synthetic-only networks."""
    anchors = [predict.load(path, CPU) for path in _anchor_folders(folder)]
    assert len(anchors) == 2
    return np.mean([a.probabilities_many(signals) for a in anchors], axis=0)


def test_the_synthetic_only_networks_join_the_ensemble_at_their_weight(anchored):
    folder, summary, _ = anchored
    loaded = predict.load(folder / "model", CPU)
    assert isinstance(loaded.model, nets.Ensemble) and len(loaded.model.members) == 5
    np.testing.assert_allclose(loaded.model.weights.numpy(), [0.2, 0.2, 0.2, 0.2, 0.2], atol=1e-6)
    cache = load_cache(folder / "caches" / "data")
    signals = [cache.signal(i) for i in range(5)]
    members = [predict.load(folder / "model" / f"member-{i}", CPU) for i in (1, 2, 3)]
    fine_tuned = np.mean([m.probabilities_many(signals) for m in members], axis=0)
    anchor = _synthetic_only(folder, signals)
    expected = 0.6 * fine_tuned + 0.4 * anchor
    np.testing.assert_allclose(loaded.probabilities_many(signals), expected, atol=1e-5)
    np.testing.assert_allclose(
        summary["predictor"].probabilities_many(signals), expected, atol=1e-5
    )
    # The anchor is the synthetic-only networks themselves, not copies that fine-tuning moved.
    assert not np.allclose(anchor, fine_tuned, atol=1e-3)
    saved = checkpoint.read(folder / "model")
    assert saved["anchor_share"] == pytest.approx(0.4) and saved["anchors"] == 2
    text = report.write_report(folder / "model").read_text()
    assert (
        "2 networks trained on synthetic records alone (up to 2 epochs, each on a pool of its "
        "own) are the ensemble's anchor, 0.4 of the answer" in text
    )


def test_each_synthetic_only_network_has_its_own_pool_seed_and_length(anchored):
    folder, _, train_config = anchored
    first, second = (checkpoint.read(path) for path in _anchor_folders(folder))
    assert (first["train_config"]["seed"], second["train_config"]["seed"]) == (0, 1)
    assert first["train_config"]["synthetic_seed"] == 0
    assert second["train_config"]["synthetic_seed"] == 1
    assert first["train_config"]["max_epochs"] == 2  # the smoke profile's, below the anchors'
    longer = dataclasses.replace(train_config, max_epochs=50)
    assert train.anchor_settings(longer, 2).max_epochs == train_config.synthetic_anchor_epochs
    assert train.anchor_settings(longer, 2).seed == 2
    pools = [load_cache(path.parent) for path in _anchor_folders(folder)]
    assert not np.array_equal(pools[0].signal(0), pools[1].signal(0))


def test_the_anchor_keeps_its_share_on_small_data_and_gives_it_up_on_large():
    settings = config.TrainConfig()
    assert settings.anchor_share(65) == settings.anchor_share(250) == 0.5
    assert settings.anchor_share(2000) == pytest.approx(0.0625)
    assert settings.anchor_share(38791) == pytest.approx(0.5 * 250 / 38791)
    assert config.TrainConfig(synthetic_anchor=0.0).anchor_share(10) == 0.0
    with pytest.raises(ValueError, match="synthetic_anchor_records"):
        config.TrainConfig(synthetic_anchor_records=0)


def test_the_anchored_thresholds_mix_out_of_fold_and_fresh_synthetic_tuning(anchored):
    folder, summary, train_config = anchored
    cache = load_cache(folder / "caches" / "data")
    val = summary["validation"]
    with open(folder / "model" / checkpoint.SPLIT_FILE, newline="") as f:
        owner = {r["record"]: r["part"] for r in csv.DictReader(f)}
    signals = [cache.signal(int(j)) for j in val["indices"]]
    own = np.stack(
        [
            predict.load(folder / "model" / owner[cache.names[j]], CPU).probabilities_many([x])[0]
            for j, x in zip(val["indices"], signals, strict=True)
        ]
    )
    anchor = _synthetic_only(folder, signals)
    np.testing.assert_allclose(val["probabilities"], 0.6 * own + 0.4 * anchor, atol=1e-5)

    def tuned(probabilities, labels):
        return thresholds.tune(
            probabilities,
            labels,
            mode=train_config.threshold_mode,
            min_positives=train_config.threshold_min_positives,
        )[0]

    out_of_fold = tuned(val["probabilities"], cache.labels[val["indices"]])
    fresh = synthetic.pool(
        30,
        train_config.synthetic_seed + synthetic.THRESHOLD_SEED_OFFSET,
        preprocess=train_config.preprocess,
        root=folder / "caches",
    )
    pool = synthetic.pool(24, 0, preprocess=train_config.preprocess, root=folder / "caches")
    assert not np.array_equal(fresh.signal(0), pool.signal(0))  # not the pool's records
    ensemble = predict.load(folder / "model", CPU)
    on_fresh = tuned(ensemble.probabilities_many(fresh.signal(i) for i in range(30)), fresh.labels)
    assert not np.allclose(out_of_fold, on_fresh)
    saved = checkpoint.read(folder / "model")
    assert saved["synthetic_threshold_share"] == pytest.approx(2 / 3)
    blended = out_of_fold / 3 + on_fresh * 2 / 3
    capped = thresholds.cap_firing_rate(
        val["probabilities"],
        cache.labels[val["indices"]],
        blended,
        train_config.firing_cap,
        train_config.firing_cap_prevalence,
    )
    np.testing.assert_allclose(saved["thresholds"], capped)
    assert saved["firing_capped"] == [lbl.CLASSES[j] for j in np.flatnonzero(capped > blended)]
    np.testing.assert_allclose(summary["thresholds"], saved["thresholds"])
    text = report.write_report(folder / "model").read_text()
    assert (
        "thresholds 0.67 tuned on 30 fresh synthetic records, 0.33 on the out-of-fold records"
        in text
    )


def test_the_synthetic_thresholds_weigh_as_the_anchor_does_and_can_be_turned_off():
    settings = config.TrainConfig()
    assert settings.synthetic_threshold_share(65) == settings.synthetic_threshold_share(250) == 1
    assert settings.synthetic_threshold_share(2000) == pytest.approx(0.125)
    assert config.TrainConfig(synthetic_threshold_records=0).synthetic_threshold_share(10) == 0
    with pytest.raises(ValueError, match="synthetic_threshold_records"):
        config.TrainConfig(synthetic_threshold_records=-1)


def test_no_anchor_when_it_weighs_next_to_nothing_or_there_is_no_pool(anchored):
    folder, _, train_config = anchored
    data = load_cache(folder / "caches" / "data")
    pool_cache = synthetic.pool(24, 0, preprocess=train_config.preprocess, root=folder / "caches")
    _, pool = train.with_pool(data, pool_cache)
    model_config, context = config.profile("smoke")[0], distributed.Context()

    def anchors(pool, n_records, settings=train_config):
        share = settings.anchor_share(n_records)
        return train._anchors(pool, share, model_config, settings, CPU, context, False)

    made = anchors(pool, 15)
    assert len(made) == 2 and all(isinstance(a, nets.ECGNet) for a in made)
    assert anchors(None, 15) == []
    # 0.6 x 10 / 1,000 = 0.006 of the answer: left out, and its training with it.
    assert anchors(pool, 1000) == []
    assert anchors(pool, 15, dataclasses.replace(train_config, synthetic_anchor=0.0)) == []


def test_the_synthetic_only_network_saw_the_pool_alone_and_is_made_once(anchored):
    folder, _, train_config = anchored
    pool_cache = synthetic.pool(24, 0, preprocess=train_config.preprocess, root=folder / "caches")
    _, pool = train.with_pool(load_cache(folder / "caches" / "data"), pool_cache)
    model_config = config.profile("smoke")[0]
    made = train.fit_synthetic_only(pool, model_config, train_config, CPU, progress=False)
    assert made.parent == pool.folder
    with open(made / checkpoint.SPLIT_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and all(r["record"].startswith(synthetic.PREFIX) for r in rows)
    saved = checkpoint.read(made)
    assert saved["train_config"]["synthetic"] == 0 and saved["train_config"]["members"] == 1
    stamp = (made / checkpoint.CHECKPOINT_FILE).stat().st_mtime_ns
    again = train.fit_synthetic_only(pool, model_config, train_config, CPU, progress=False)
    assert again == made and (made / checkpoint.CHECKPOINT_FILE).stat().st_mtime_ns == stamp
    # Another training setting is another network.
    other = dataclasses.replace(train_config, seed=1)
    assert train.fit_synthetic_only(pool, model_config, other, CPU, progress=False) != made


def test_an_ensemble_saved_without_weights_loads_with_equal_ones():
    model_config = config.profile("smoke")[0]
    torch.manual_seed(0)
    eye = np.eye(24, dtype=np.float32)
    members = [nets.build_model(model_config, eye) for _ in range(3)]
    state = nets.Ensemble(members, [0.5, 0.3, 0.2]).state_dict()
    assert torch.allclose(nets.model_from_state_dict(model_config, state).weights, state["weights"])
    del state["weights"]  # as checkpoints from before the anchor were saved
    loaded = nets.model_from_state_dict(model_config, state)
    torch.testing.assert_close(loaded.weights, torch.full((3,), 1 / 3))


@pytest.mark.parametrize(
    "weights", [[1.0, 2.0], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [1.0, float("nan"), 1]]
)
def test_an_ensemble_refuses_weights_that_do_not_fit(weights):
    eye = np.eye(24, dtype=np.float32)
    members = [nets.build_model(config.profile("smoke")[0], eye) for _ in range(3)]
    with pytest.raises(ValueError, match="weights"):
        nets.Ensemble(members, weights)


@pytest.mark.parametrize("share", [-0.1, 1.5, True, "0.5", None])
def test_synthetic_anchor_must_be_a_share(share):
    with pytest.raises(ValueError, match="synthetic_anchor"):
        config.TrainConfig(synthetic_anchor=share)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("firing_cap", -0.1),
        ("firing_cap", 1.5),
        ("firing_cap", True),
        ("firing_cap", "0.15"),
        ("firing_cap_prevalence", -1.0),
        ("firing_cap_prevalence", None),
    ],
)
def test_the_firing_cap_settings_are_checked(name, value):
    with pytest.raises(ValueError, match=name):
        config.TrainConfig(**{name: value})
    assert config.TrainConfig(firing_cap=0.0).firing_cap == 0.0  # off


@pytest.mark.parametrize("name", ["synthetic_anchors", "synthetic_anchor_epochs"])
@pytest.mark.parametrize("value", [0, 1.5, True])
def test_the_anchor_networks_and_their_epochs_are_positive_counts(name, value):
    with pytest.raises(ValueError, match=name):
        config.TrainConfig(**{name: value})


def test_the_default_anchor_is_one_network_trained_as_the_data_would_be():
    """One anchor, trained as `fit` trains on data (to `max_epochs` and its best epoch), so a
    cached synthetic-only network of a single-anchor configuration keeps its name."""
    settings = config.profile("demo")[1]
    assert settings.synthetic_anchors == 1
    first = train.anchor_settings(settings)
    assert first == dataclasses.replace(settings, synthetic=0, members=1)
