"""Frozen configurations, the named profiles and the plain-dict round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ecg_gcn import config
from ecg_gcn.augment import Augment
from ecg_gcn.config import ModelConfig, TrainConfig
from ecg_gcn.signal import Preprocess


def test_the_defaults_are_the_paper():
    m = ModelConfig()
    assert (m.n_leads, m.num_classes, m.filters, m.kernel_size, m.n_blocks) == (12, 24, 32, 16, 16)
    assert (m.dropout, m.residual, m.gru, m.head, m.tau, m.p) == (0.2, True, True, "gcn", 0.4, 0.25)
    assert len(m.gcn_hidden) + 1 == 3  # three graph-convolution layers
    assert m.stride == 512  # one feature vector per 512 input samples
    assert m.cnn_channels == 256
    assert m.feature_dim == 2 * m.gru_hidden
    assert dataclasses.replace(m, gru=False).feature_dim == 256
    t = TrainConfig()
    assert (t.lr, t.batch_size, t.max_epochs) == (1e-3, 32, 100)
    # The paper cuts the rate after 2 epochs without improvement: PyTorch's patience 1.
    assert (t.lr_factor, t.lr_patience, t.early_stop_patience) == (0.1, 1, 10)
    assert t.preprocess.window == 9000 and t.preprocess.fs == 500 and t.preprocess.band is None


def test_configs_are_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().filters = 64  # type: ignore[misc]
    assert len({ModelConfig(), ModelConfig(gcn_hidden=[128, 256])}) == 1


@pytest.mark.parametrize("name", config.PROFILES)
def test_round_trip_through_json(name):
    model, train = config.profile(name)
    for cfg, from_dict in (
        (model, config.model_config_from_dict),
        (train, config.train_config_from_dict),
    ):
        d = json.loads(json.dumps(config.to_dict(cfg)))
        assert from_dict(d) == cfg


def test_round_trip_of_changed_values():
    model = ModelConfig(filters=16, gru=False, head="linear", gcn_hidden=(32, 64, 96), tau=0.3)
    d = config.to_dict(model)
    assert d["gcn_hidden"] == [32, 64, 96]  # a list, as JSON has it
    assert config.model_config_from_dict(d) == model
    train = TrainConfig(
        lr=3e-4, amp=False, threshold_mode="per_class", preprocess=Preprocess(window_seconds=10.0)
    )
    assert config.train_config_from_dict(config.to_dict(train)) == train


def test_synthetic_and_augmentation_settings_round_trip_through_json():
    train = TrainConfig(synthetic=300, synthetic_seed=7, synthetic_mix=0.5,
                        augment=Augment(scale=0.2, drop_lead=0.1))  # fmt: skip
    d = json.loads(json.dumps(config.to_dict(train)))
    assert d["augment"]["scale"] == 0.2  # a plain dict in the checkpoint
    assert config.train_config_from_dict(d) == train
    with pytest.raises(ValueError, match=r"Augment\.noise"):
        config.train_config_from_dict(d | {"augment": {"noise": -1.0}})


def test_unknown_keys_are_named():
    d = config.to_dict(ModelConfig()) | {"filterz": 64, "heads": 2}
    with pytest.raises(ValueError, match="filterz, heads"):
        config.model_config_from_dict(d)
    with pytest.raises(ValueError, match="bogus"):
        config.train_config_from_dict({"bogus": 1})


def test_a_missing_key_takes_its_default():
    assert config.model_config_from_dict({"filters": 16}) == ModelConfig(filters=16)
    assert config.train_config_from_dict({}) == TrainConfig()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_leads", 0),
        ("filters", 3.5),
        ("n_blocks", True),
        ("kernel_size", -16),
        ("dropout", 1.0),
        ("residual", "yes"),
        ("head", "mlp"),
        ("pooling", "attention"),
        ("gcn_hidden", (64, 0)),
        ("tau", 0.0),
        ("p", 1.0),
    ],
)
def test_bad_model_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", 0.0),
        ("batch_size", 0),
        ("lr_factor", 1.0),
        ("early_stop_patience", -1),
        ("validation_fraction", 1.0),
        ("amp", 1),
        ("threshold_mode", "best"),
        ("select_metric", "auroc"),
        ("synthetic", -1),
        ("synthetic_seed", 1.5),
        ("synthetic_pretrain_epochs", -2),
        ("synthetic_mix", -0.5),
        ("synthetic_mix", True),
        ("synthetic_mix", "1"),
        ("augment", "strong"),
        ("rhythm_rules", 1),
        ("rbbb_rule", "yes"),
        ("veto_rules", "no"),
    ],
)
def test_bad_train_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_profiles():
    assert list(config.PROFILES) == ["paper", "quick", "smoke", "demo"]
    assert config.profile("paper") == (ModelConfig(), TrainConfig())
    model, train = config.profile("quick")
    # The quick demo keeps the paper's architecture, narrower and without dropout.
    widths = {"filters", "gru_hidden", "dropout"}
    for field in dataclasses.fields(ModelConfig):
        if field.name not in widths:
            assert getattr(model, field.name) == getattr(ModelConfig(), field.name), field.name
    assert model.filters < ModelConfig().filters
    assert train.max_epochs < 20 and train.preprocess.window <= 9000
    with pytest.raises(ValueError, match="paper, quick, smoke, demo"):
        config.profile("fast")
    # The demo is the quick profile with one network, one replica and its own pre-training;
    # the others default to five members, and quick to three replicas whose members start from
    # a shorter anchor.
    demo_model, demo_train = config.profile("demo")
    assert demo_model == model
    assert demo_train == dataclasses.replace(
        train,
        members=1,
        replicas=1,
        pretrain_from_anchor=False,
        synthetic_anchor_epochs=TrainConfig().synthetic_anchor_epochs,
    )
    assert train.members == TrainConfig().members == 5
    assert train.replicas == 3 and train.pretrain_from_anchor
    assert TrainConfig().replicas == 1 and not TrainConfig().pretrain_from_anchor


def test_profile_from_the_environment():
    assert config.profile_from_env({}) == config.profile("paper")
    assert config.profile_from_env({"ECG_GCN_PROFILE": ""}) == config.profile("paper")
    assert config.profile_from_env({"ECG_GCN_PROFILE": "quick"}) == config.profile("quick")
    with pytest.raises(ValueError, match=r"ECG_GCN_PROFILE.*'fast'.*paper, quick, smoke, demo"):
        config.profile_from_env({"ECG_GCN_PROFILE": "fast"})


def test_profile_from_env_reads_os_environ(monkeypatch):
    monkeypatch.setenv("ECG_GCN_PROFILE", "quick")
    assert config.profile_from_env() == config.profile("quick")
    monkeypatch.delenv("ECG_GCN_PROFILE")
    assert config.profile_from_env() == config.profile("paper")


def test_the_preprocessing_settings_are_validated_and_survive_json():
    config_with_band = TrainConfig(preprocess={"band": [0.5, 45], "window_seconds": 10})
    assert config_with_band.preprocess == Preprocess(window_seconds=10, band=(0.5, 45.0))
    assert config.train_config_from_dict(config.to_dict(config_with_band)) == config_with_band
    assert TrainConfig().preprocess.band is None
    for bad in ([45, 0.5], [0, 40], [1, 300], [1]):
        with pytest.raises(ValueError, match="band"):
            TrainConfig(preprocess={"band": bad})
    # The band's upper edge is checked against the rate the network sees.
    assert Preprocess(band=(0.5, 100.0), fs=500).band == (0.5, 100.0)
    with pytest.raises(ValueError, match="band"):
        Preprocess(band=(0.5, 100.0), fs=200)
    for field, value in (("window_seconds", 0), ("window_seconds", True), ("fs", 0), ("fs", 2.5)):
        with pytest.raises(ValueError, match=field):
            Preprocess(**{field: value})
    with pytest.raises(ValueError, match="unknown preprocessing settings: hop"):
        TrainConfig(preprocess={"hop": 1})
    with pytest.raises(ValueError, match="preprocess must be a Preprocess"):
        TrainConfig(preprocess=(10.0, None))
