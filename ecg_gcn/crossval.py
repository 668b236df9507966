"""Honest numbers: k-fold and leave-one-database-out cross-validation, and the Table 1 ablation.

Each fold's model is trained (epoch picked, thresholds tuned) on a validation part held out of
the fold's *training* records only; the scored fold is never seen before it is scored. Beside
every result stand the baselines: always-normal (0 by the metric's definition) and prevalence
(every record gets the training part's class frequencies, labels by the same fallback rule).

Leave-one-database-out groups records by the 2020 naming: A CPSC, Q CPSC-Extra, I INCART, S PTB,
HR PTB-XL, E Georgia; any other prefix is its own group. It is the closest a training set gets
to the hidden test's unseen hospital.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ecg_gcn import baseline, dataset, nets, scoring, train
from ecg_gcn import config as cfg
from ecg_gcn.cache import Cache
from ecg_gcn.labels import source_of
from ecg_gcn.thresholds import decide

logger = logging.getLogger(__name__)

RESULT_FIELDS = (
    "fold",
    "held_out",
    "records",
    "model",
    "challenge_metric",
    "macro_f1",
    "macro_auroc",
)


def fold_ids(
    cache: Cache, folds: int | None, seed: int, n: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """(fold of each of the first `n` records (all by default), fold names): stratified folds,
    or one fold per database."""
    n = len(cache) if n is None else n
    if folds is not None:
        return dataset.stratified_folds(cache.labels[:n], folds, seed), [
            f"fold {k + 1}" for k in range(folds)
        ]
    sources = [source_of(name) for name in cache.names[:n]]
    names = sorted(set(sources))
    if len(names) < 2:
        raise ValueError(f"one database only ({names[0]}): nothing to leave out")
    return np.array([names.index(s) for s in sources]), names


def _scores(labels: np.ndarray, probabilities: np.ndarray, decided: np.ndarray) -> dict:
    scores = scoring.summary(labels, probabilities, decided)
    return {key: scores[key] for key in ("challenge_metric", "macro_f1", "macro_auroc")}


def evaluate_fold(
    cache: Cache,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    model_dir: Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    device: torch.device | None = None,
    fixed_threshold: float | None = None,
    synthetic: train.SyntheticPool | None = None,
) -> dict[str, dict]:
    """Scores on `test_idx` of a model fitted on `train_idx` (and the synthetic pool, when
    given), and of the two baselines. One replica: TrainConfig.replicas, which needs a pool
    of its own per replica, is for training and the new-hospital protocols."""
    summary = train.fit_members(
        cache,
        train_idx,
        model_dir,
        model_config,
        train_config,
        synthetic=synthetic,
        device=device,
        progress=False,
    )
    predictor = summary["predictor"]
    labels = cache.labels[test_idx]
    probabilities = predictor.probabilities_many(cache.signal(int(i)) for i in test_idx)
    measured = predictor.measured(cache.signal(int(i)) for i in test_idx)
    if fixed_threshold is None:
        decided = predictor.decide(probabilities, measured)
    else:
        decided = decide(probabilities, fixed_threshold, measured)
    results = {"model": _scores(labels, probabilities, decided)}
    for name, answers in baseline.baselines(
        cache.labels[train_idx].mean(axis=0), len(labels)
    ).items():
        results[name] = _scores(labels, *answers)
    return results


def cross_validate(
    cache: Cache,
    work_dir: Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    folds: int | None = 5,
    device: torch.device | None = None,
    fixed_threshold: float | None = None,
    label: str = "model",
    synthetic: train.SyntheticPool | None = None,
) -> list[dict]:
    """One row per fold and per model (the model, prevalence, always normal). With a synthetic
    pool (appended to `cache`), the folds split the real records only, and every fold's
    model is trained with the pool as well."""
    use_pool = synthetic is not None and train_config.synthetic > 0
    real = len(cache) - (len(synthetic.indices) if synthetic is not None else 0)
    fold_of, names = fold_ids(cache, folds, train_config.seed, real)
    rows = []
    for k, held_out in enumerate(names):
        test_idx = np.flatnonzero(fold_of == k)
        train_idx = np.flatnonzero(fold_of != k)
        if len(test_idx) == 0 or len(train_idx) == 0:
            continue
        logger.warning(
            "%s: training on %d records, scoring %d", held_out, len(train_idx), len(test_idx)
        )
        results = evaluate_fold(
            cache, train_idx, test_idx, work_dir / f"fold{k + 1}", model_config, train_config,
            device, fixed_threshold, synthetic if use_pool else None,
        )  # fmt: skip
        for model, scores in results.items():
            name = label if model == "model" else model
            rows.append({"fold": k + 1, "held_out": held_out, "records": len(test_idx),
                         "model": name, **scores})  # fmt: skip
    return rows


def mean_rows(rows: list[dict]) -> list[dict]:
    """The mean over folds of each model's scores (NaN folds ignored)."""
    means = []
    for model in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == model]
        mean = {"fold": "mean", "held_out": "", "records": sum(r["records"] for r in mine)}
        for key in ("challenge_metric", "macro_f1", "macro_auroc"):
            values = np.array([r[key] for r in mine], dtype=float)
            mean[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        means.append({**mean, "model": model})
    return means


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def format_table(rows: list[dict]) -> str:
    lines = [f"{'fold':>6} {'held out':>12} {'records':>8} {'model':>16} "
             f"{'challenge':>10} {'macro F1':>9} {'AUROC':>7}"]  # fmt: skip
    for row in rows:
        lines.append(
            f"{row['fold']!s:>6} {row['held_out']:>12} {row['records']:>8} {row['model']:>16} "
            f"{row['challenge_metric']:>10.3f} {row['macro_f1']:>9.3f} {row['macro_auroc']:>7.3f}"
        )
    return "\n".join(lines)


# The rows of the paper's Table 1 with the values it reports (5-fold CV on the 2020 data).
PAPER_TABLE_1 = {
    "1dcnn": ("1DCNN", 0.503, 0.481),
    "resnet": ("Res-Blocks", 0.554, 0.526),
    "resnet_bigru": ("Res-Blocks + Bi-GRU", 0.582, 0.564),
    "resnet_bigru_gcn": ("Res-Blocks+Bi-GRU+GCN", 0.627, 0.603),
}


def ablation(
    cache: Cache,
    work_dir: Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    folds: int = 5,
    device: torch.device | None = None,
    synthetic: train.SyntheticPool | None = None,
) -> tuple[str, list[dict]]:
    """Table 1 of the paper on these data: each variant on the same folds, real records only
    (thresholds tuned in each training part); then the full model with the synthetic pool, when
    given (the entry's synthetic records); then the linear and GCN heads at one fixed threshold
    of 0.5. Every row trains one network (`members` 1) and decides without the measured rules."""
    rows, table = [], []
    # One network per row, deciding by its thresholds alone, as the paper's: the rows compare
    # architectures and the synthetic records, not the entry's ensemble (TrainConfig.members,
    # replicas) or its measured rules (TrainConfig.rhythm_rules, rbbb_rule and veto_rules,
    # measured by the new-hospital protocols).
    train_config = dataclasses.replace(
        train_config, members=1, replicas=1, rhythm_rules=False, rbbb_rule=False, veto_rules=False
    )
    real_only = dataclasses.replace(train_config, synthetic=0)
    runs = [(name, *row, real_only, name) for name, row in PAPER_TABLE_1.items()]
    if synthetic is not None:
        runs.append(
            (
                "resnet_bigru_gcn",
                "+ synthetic records",
                math.nan,
                math.nan,
                train_config,
                "resnet_bigru_gcn+synthetic",
            )
        )
    for name, title, paper_cm, paper_f1, config, label in runs:
        variant = nets.variant(name, model_config)
        result = cross_validate(
            cache,
            work_dir / label,
            variant,
            config,
            folds,
            device,
            label=label,
            synthetic=synthetic,
        )
        rows += result
        mean = next(r for r in mean_rows(result) if r["model"] == label)
        table.append((title, mean["challenge_metric"], mean["macro_f1"], paper_cm, paper_f1))
    heads = []
    for name in ("resnet_bigru", "resnet_bigru_gcn"):
        variant = nets.variant(name, model_config)
        result = cross_validate(
            cache,
            work_dir / f"{name}-0.5",
            variant,
            real_only,
            folds,
            device,
            fixed_threshold=0.5,
            label=f"{name}@0.5",
            synthetic=synthetic,
        )
        rows += result
        heads.append(next(r for r in mean_rows(result) if r["model"] == f"{name}@0.5"))
    lines = [f"{'Methods':<24} {'Challenge Metric':>16} {'F1 score':>9}   (paper: CM, F1)"]
    for title, cm, f1, paper_cm, paper_f1 in table:
        paper = "" if math.isnan(paper_cm) else f"   ({paper_cm:.3f}, {paper_f1:.3f})"
        lines.append(f"{title:<24} {cm:>16.3f} {f1:>9.3f}{paper}")
    lines.append("")
    lines.append("heads at one fixed threshold of 0.5:")
    for name, row in zip(
        ("linear head (Res+BiGRU)", "GCN head (Res+BiGRU+GCN)"), heads, strict=True
    ):
        lines.append(f"{name:<24} {row['challenge_metric']:>16.3f} {row['macro_f1']:>9.3f}")
    return "\n".join(lines), rows
