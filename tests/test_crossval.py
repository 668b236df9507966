"""Cross-validation: folds, databases, and no fold leaking into its own model or thresholds."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from ecg_gcn import baseline, config, crossval, dataset, scoring, synth
from ecg_gcn import labels as lbl
from ecg_gcn.cache import build_cache


def test_records_are_grouped_by_their_database():
    names = ["A0001", "Q0002", "I0003", "S0004", "HR00005", "E00006", "JS00007", "12345"]
    sources = [crossval.source_of(n) for n in names]
    assert sources == [
        "CPSC",
        "CPSC-Extra",
        "INCART",
        "PTB",
        "PTB-XL",
        "Georgia",
        "Chapman-Ningbo",
        "unknown",
    ]


def test_stratified_folds_cover_every_record_once_in_proportion():
    rng = np.random.default_rng(0)
    labels = rng.random((1000, lbl.NUM_CLASSES)) < np.linspace(0.02, 0.3, lbl.NUM_CLASSES)
    folds = dataset.stratified_folds(labels, 5, seed=3)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    assert np.all(np.abs(np.bincount(folds) - 200) <= 3)
    per_fold = np.array([labels[folds == k].sum(axis=0) for k in range(5)])
    assert np.all(np.abs(per_fold - labels.sum(axis=0) / 5) <= 2)
    with pytest.raises(ValueError, match="folds"):
        dataset.stratified_folds(labels, 1, seed=3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cv")
    synth.generate(folder, 18, seed=5, seconds=8.0)
    synth.generate(folder, 6, seed=6, prefix="E", seconds=8.0)  # a second "database"
    return build_cache(folder, folder / "cache", n_jobs=1, progress=False)


def trained_on(model_dir) -> set[str]:
    """Every record a fold's model saw: its training part and its threshold-tuning part."""
    with open(model_dir / "split.csv") as f:
        return {row["record"] for row in csv.DictReader(f)}


@pytest.mark.parametrize("folds", [3, None])
def test_no_fold_is_seen_by_the_model_that_scores_it(cache, tmp_path, folds):
    model_config, train_config = config.profile("smoke")
    rows = crossval.cross_validate(
        cache, tmp_path, model_config, train_config, folds, device=torch.device("cpu")
    )
    fold_of, names = crossval.fold_ids(cache, folds, train_config.seed)
    assert len(rows) == 3 * len(names)  # the model and the two baselines per fold
    for k in range(len(names)):
        scored = {cache.names[i] for i in np.flatnonzero(fold_of == k)}
        seen = trained_on(tmp_path / f"fold{k + 1}")
        assert scored and seen and not scored & seen
        assert seen | scored == set(cache.names)
    normal = [r for r in rows if r["model"] == "always normal"]
    assert all(r["challenge_metric"] == 0.0 for r in normal)
    if folds is None:
        assert {r["held_out"] for r in rows} == {"Georgia", "SYN"}
    table = crossval.format_table(rows + crossval.mean_rows(rows))
    assert "mean" in table and "prevalence" in table


def test_the_baselines_have_one_home_and_always_normal_scores_zero():
    rng = np.random.default_rng(1)
    truth = rng.random((40, lbl.NUM_CLASSES)) < 0.15
    truth[:, lbl.NORMAL_INDEX] |= ~truth.any(axis=1)
    prior = np.full(lbl.NUM_CLASSES, 0.1)
    prior[lbl.NORMAL_INDEX] = 0.6
    answers = baseline.baselines(prior, len(truth))
    assert set(answers) == {"prevalence", "always normal"}
    probabilities, labels = answers["prevalence"]
    assert probabilities.shape == labels.shape == truth.shape
    # Every recording gets what the driver's prevalence answer says, over the 24 classes.
    said = np.array(baseline.answer(prior)[0], dtype=bool)
    assert (lbl.expand(labels[0].astype(int)).astype(bool) == said).all()
    assert scoring.summary(truth, *answers["always normal"])["challenge_metric"] == 0
    scores = scoring.summary(truth, *answers["prevalence"])
    assert scores["f1_per_class"].shape == scores["auroc_per_class"].shape == (lbl.NUM_CLASSES,)
