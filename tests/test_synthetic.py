"""Synthetic records in training: the cached pool, the mixed epochs, pre-training, the
new-hospital protocol."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from ecg_gcn import (
    checkpoint,
    config,
    crossval,
    dataset,
    hospitals,
    report,
    synth,
    synthetic,
    train,
)
from ecg_gcn import labels as lbl
from ecg_gcn.cache import build_cache, concat, load_cache
from ecg_gcn.signal import Preprocess

CPU = torch.device("cpu")


def test_the_pool_is_made_once_and_drawn_by_seed_alone(tmp_path):
    first = synthetic.pool(12, 3, root=tmp_path / "a", progress=False)
    again = synthetic.pool(12, 3, root=tmp_path / "a", progress=False)
    elsewhere = synthetic.pool(12, 3, root=tmp_path / "b", progress=False)
    other = synthetic.pool(12, 4, root=tmp_path / "a", progress=False)
    assert first.built == 12 and again.built == 0  # reused, not made again
    assert first.names == elsewhere.names == [f"SYNTHETIC{i:05d}" for i in range(12)]
    for i in range(12):
        np.testing.assert_array_equal(first.signal(i), elsewhere.signal(i))
    np.testing.assert_array_equal(first.labels, elsewhere.labels)
    assert not all(np.array_equal(first.signal(i), other.signal(i)) for i in range(12))
    folder = synthetic.pool_dir(12, 3, Preprocess(), tmp_path / "a")
    assert folder.name == f"synthetic-{synthetic.simulator_digest()}-n12-seed3"
    # Other preprocessing settings give the pool a folder of its own.
    banded = synthetic.pool_dir(12, 3, Preprocess(band=(0.5, 45.0)), tmp_path / "a")
    assert banded.name == f"{folder.name}-band0.5-45"
    slower = synthetic.pool_dir(12, 3, Preprocess(fs=250), tmp_path / "a")
    assert slower.name == f"{folder.name}-250Hz"
    # Only the cache is kept, not the written records.
    assert not list(folder.parent.glob("**/*.mat"))


def test_a_damaged_pool_is_made_again(tmp_path):
    pool = synthetic.pool(6, 1, root=tmp_path, progress=False)
    shard = next(pool.folder.glob("shard*.f16"))
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated"):
        load_cache(pool.folder)
    again = synthetic.pool(6, 1, root=tmp_path, progress=False)
    assert again.built == 6 and again.signal(5).shape[0] == 12


def test_concatenated_caches_read_each_record_from_its_own_shards(small_records, tmp_path):
    real = build_cache(small_records, tmp_path / "real", n_jobs=1, progress=False)
    pool = synthetic.pool(5, 2, root=tmp_path, progress=False)
    both = concat(real, pool)
    assert both.names == real.names + pool.names
    for i in range(len(real)):
        np.testing.assert_array_equal(both.signal(i), real.signal(i))
    for i in range(len(pool)):
        np.testing.assert_array_equal(both.signal(len(real) + i), pool.signal(i))
    np.testing.assert_array_equal(both.labels, np.concatenate([real.labels, pool.labels]))
    with pytest.raises(ValueError, match="share record names"):
        concat(real, real)


def test_each_epoch_mixes_every_real_record_with_a_fresh_draw_of_the_pool():
    sampler = dataset.MixSampler(real=10, pool=50, per_epoch=7, seed=1)
    epochs = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        positions = list(sampler)
        assert len(positions) == len(sampler) == 17 and len(set(positions)) == 17
        assert sorted(p for p in positions if p < 10) == list(range(10))
        assert all(10 <= p < 60 for p in positions if p >= 10)
        epochs.append(positions)
    assert {p for p in epochs[0] if p >= 10} != {p for p in epochs[1] if p >= 10}
    sampler.set_epoch(1)
    assert list(sampler) == epochs[0]  # by (seed, epoch) alone: a resumed run draws the same
    # Two processes share one shuffle, padded to equal shares.
    shares = []
    for rank in (0, 1):
        share = dataset.MixSampler(10, 50, 7, seed=1, rank=rank, world=2)
        share.set_epoch(1)
        shares.append(list(share))
    assert len(shares[0]) == len(shares[1]) == 9
    assert set(shares[0]) | set(shares[1]) == set(epochs[0])
    with pytest.raises(ValueError, match="pool of 50"):
        dataset.MixSampler(10, 50, 51, seed=1)


SMOKE = dataclasses.replace(
    config.profile("smoke")[1], synthetic=24, synthetic_pretrain_epochs=1, max_epochs=2
)


def test_training_pretrains_on_the_pool_once_and_records_it(small_records, tmp_path):
    model_config = config.profile("smoke")[0]
    first = train.train(
        small_records,
        tmp_path / "m1",
        model_config,
        SMOKE,
        cache_dir=tmp_path / "caches" / "data",
        device=CPU,
        progress=False,
    )
    pools = list((tmp_path / "caches").glob("synthetic-*"))
    assert len(pools) == 1 and len(list(pools[0].glob("pretrained-*.pt"))) == 1
    # The second run loads the cached pre-training and ends with the same weights.
    second = train.train(
        small_records,
        tmp_path / "m2",
        model_config,
        SMOKE,
        cache_dir=tmp_path / "caches" / "data",
        device=CPU,
        progress=False,
    )
    for a, b in zip(
        first["predictor"].model.parameters(), second["predictor"].model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    saved = checkpoint.read(tmp_path / "m1")
    assert saved["synthetic_pool"] == {"records": 24, "folder": pools[0].name}
    assert saved["train_config"]["synthetic"] == 24
    text = report.write_report(tmp_path / "m1").read_text()
    assert f"- synthetic records: a pool of 24 (seed 0, `{pools[0].name}`): 1 epochs" in text
    # Validation, and so the thresholds, use real records only.
    with open(tmp_path / "m1" / checkpoint.SPLIT_FILE) as f:
        assert not any(row["record"].startswith(synthetic.PREFIX) for row in csv.DictReader(f))


def test_early_stopping_waits_exactly_its_patience(small_records, tmp_path):
    model_config = config.profile("smoke")[0]
    train_config = dataclasses.replace(
        SMOKE, synthetic=0, max_epochs=8, early_stop_patience=2, lr=1e-9
    )
    train.train(
        small_records,
        tmp_path / "m",
        model_config,
        train_config,
        cache_dir=tmp_path / "cache",
        device=CPU,
        progress=False,
    )
    with open(tmp_path / "m" / checkpoint.HISTORY_FILE) as f:
        rows = list(csv.DictReader(f))
    scores = [float(r["challenge_metric"]) for r in rows]
    best = int(np.argmax(scores))  # the first best epoch
    assert len(rows) == best + 1 + 2 or len(rows) == 8


def _records(folder, prefix: str, code_sets: list[list[str]], seed: int) -> None:
    """One short record per code set, named as `prefix`'s database names its records."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, codes in enumerate(code_sets):
        signal, _ = synth.synthesize(rng, codes, 500, 4.0)
        synth.write_record(folder, f"{prefix}{i + 1:04d}", signal, 500, codes, 60, "Male")


def test_the_protocol_holds_out_each_database_with_enough_labelled_records(tmp_path):
    folder = tmp_path / "data"
    unscored = [synth.LVH]  # a real diagnosis outside the 27 scored codes
    _records(folder, "A", [[synth.NSR], [synth.AF], [synth.IAVB], [synth.NSR]], seed=1)
    _records(folder, "E", [[synth.NSR], [synth.AF], unscored, unscored, unscored], seed=2)
    _records(folder, "HR", [[synth.NSR], [synth.SB], [synth.LAD]], seed=3)
    cache = build_cache(folder, tmp_path / "cache", n_jobs=1, progress=False)
    plan = hospitals.folds(cache, min_records=3)
    # Georgia has five records but two labelled ones: its unlabelled three cannot move the score.
    assert [held for held, _, _ in plan] == ["CPSC", "PTB-XL"]
    for held, train_idx, test_idx in plan:
        assert {lbl.source_of(cache.names[i]) for i in test_idx} == {held}
        assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == 12
    plan = hospitals.folds(cache, train_on=["CPSC"], min_records=2)
    assert [held for held, _, _ in plan] == ["Georgia", "PTB-XL"]
    assert all({cache.names[i][0] for i in train_idx} == {"A"} for _, train_idx, _ in plan)
    with pytest.raises(ValueError, match="no records of INCART"):
        hospitals.folds(cache, train_on=["INCART"])
    with pytest.raises(ValueError, match="fewer than two databases of 4 or more labelled"):
        hospitals.folds(cache, min_records=4)


def test_the_protocol_scores_every_model_beside_the_baselines(tmp_path):
    folder = tmp_path / "data"
    _records(folder, "A", [[synth.NSR], [synth.AF], [synth.IAVB], [synth.RAD]] * 2, seed=1)
    _records(folder, "E", [[synth.NSR], [synth.AF], [synth.SB]] * 2, seed=2)
    cache = build_cache(folder, tmp_path / "cache", n_jobs=1, progress=False)
    model_config = config.profile("smoke")[0]
    rows, class_rows = hospitals.run(
        cache,
        tmp_path / "work",
        model_config,
        dataclasses.replace(SMOKE, max_epochs=1),
        seeds=[0, 1],
        protocols=(None, ["CPSC"]),
        min_records=6,
        cache_root=tmp_path / "root",
        device=CPU,
    )
    folds = {(r["protocol"], r["seed"], r["held_out"]) for r in rows}
    assert folds == {
        (p, s, h)
        for s in (0, 1)
        for p, h in (
            ("leave one out", "CPSC"),
            ("leave one out", "Georgia"),
            ("trained on CPSC", "Georgia"),
            ("leave one out", hospitals.ONE_SET),
            ("trained on CPSC", hospitals.ONE_SET),
        )
    }
    assert [r["model"] for r in rows[:5]] == list(hospitals.MODELS)
    per_fold = [r for r in rows if r["held_out"] != hospitals.ONE_SET]
    assert len(per_fold) == 6 * 5 and len(class_rows) == len(per_fold) * 24
    assert all(r["challenge_metric"] == 0 for r in rows if r["model"] == "always normal")
    # The one-set row scores the held-out records of both folds together.
    one_set = [r for r in rows if r["held_out"] == hospitals.ONE_SET]
    assert {r["records"] for r in one_set if r["protocol"] == "leave one out"} == {14}
    assert {r["records"] for r in one_set if r["protocol"] == "trained on CPSC"} == {6}
    # One synthetic-only model per seed scores every fold.
    assert len(list((tmp_path / "work").glob("seed*/synthetic-only/anchor-1/model.pt"))) == 2
    # It is the network an ensemble of the same pool takes as its anchor, cached with the pool.
    assert len(list((tmp_path / "root").glob("synthetic-*/synthetic-only-*/done"))) == 2
    saved = np.load(
        tmp_path / "work" / "seed1" / "trained-on-CPSC" / "Georgia" / "probabilities.npz"
    )
    assert saved["default"].shape == saved["labels"].shape == (6, 24)
    assert saved["default_validation"].shape == saved["default_validation_labels"].shape
    # Every training record of the fold is validated once, out of fold, and named.
    names = saved["default_validation_names"]
    assert len(names) == len(saved["default_validation"]) and len(set(names)) == len(names)
    assert all(name.startswith("A") for name in names)  # trained on CPSC alone
    tables = hospitals.summary(rows).split("\n\n")
    assert [t.split(":")[0] for t in tables] == ["leave one out", "trained on CPSC"]
    assert all("synthetic only" in t and t.splitlines()[-2].split()[0] == "mean" for t in tables)
    assert all(t.splitlines()[-1].startswith(f"{hospitals.ONE_SET:>14}") for t in tables)


def test_the_protocol_trains_every_replica_and_scores_their_anchors(tmp_path):
    folder = tmp_path / "data"
    _records(folder, "A", [[synth.NSR], [synth.AF], [synth.IAVB], [synth.RAD]] * 2, seed=1)
    _records(folder, "E", [[synth.NSR], [synth.AF], [synth.SB]] * 2, seed=2)
    cache = build_cache(folder, tmp_path / "cache", n_jobs=1, progress=False)
    settings = dataclasses.replace(SMOKE, max_epochs=1, members=2, replicas=2)
    hospitals.run(
        cache,
        tmp_path / "work",
        config.profile("smoke")[0],
        settings,
        seeds=[3],
        protocols=(["CPSC"],),
        min_records=6,
        cache_root=tmp_path / "root",
        device=CPU,
        models=("default", "synthetic only"),
    )
    seed = tmp_path / "work" / "seed3"
    # The synthetic-only model: each replica's anchor, from its own pool.
    anchors = [checkpoint.read(seed / "synthetic-only" / f"anchor-{k}") for k in (1, 2)]
    assert [a["train_config"]["synthetic_seed"] for a in anchors] == [3, 4]
    assert not (seed / "synthetic-only" / "anchor-3").exists()
    default = seed / "trained-on-CPSC" / "Georgia" / "default"
    assert checkpoint.read(default)["replicas"] == 2
    replicas = [checkpoint.read(default / f"replica-{r}") for r in (1, 2)]
    assert [r["train_config"]["synthetic_seed"] for r in replicas] == [3, 4]


def test_the_ablation_shows_the_synthetic_records_as_a_row_of_their_own(tmp_path):
    folder = tmp_path / "data"
    synth.generate(folder, 12, seed=4, seconds=6.0)
    data = build_cache(folder, tmp_path / "cache", n_jobs=1, progress=False)
    cache, pool = train.with_pool(data, synthetic.pool(16, 0, root=tmp_path, progress=False))
    model_config = config.profile("smoke")[0]
    table, rows = crossval.ablation(
        cache,
        tmp_path / "work",
        model_config,
        dataclasses.replace(SMOKE, max_epochs=1),
        folds=2,
        device=CPU,
        synthetic=pool,
    )
    lines = table.splitlines()
    assert lines[4].startswith("Res-Blocks+Bi-GRU+GCN") and lines[5].startswith("+ synthetic")
    # Table 1's rows train on the real records alone; the new row with the pool as well.
    assert not list((tmp_path / "work" / "resnet_bigru_gcn").glob("**/pretrained-*"))
    seen = trained_on(tmp_path / "work" / "resnet_bigru_gcn" / "fold1")
    assert seen and not any(name.startswith(synthetic.PREFIX) for name in seen)
    assert len(list(pool.folder.glob("pretrained-*.pt"))) == 1
    scored = {r["model"] for r in rows}
    assert "resnet_bigru_gcn+synthetic" in scored and "resnet_bigru_gcn" in scored


def trained_on(model_dir) -> set[str]:
    with open(model_dir / "split.csv") as f:
        return {row["record"] for row in csv.DictReader(f)}
