"""The new-hospital protocol: train on some databases, score on one the model never saw.

The 2020 Challenge was lost on new hospitals (the paper's entry: 0.627 in cross-validation,
-0.012 on the hidden test). Two protocols imitate that on real records:

- leave one database out (`cv --by-source`): each database with at least `min_records`
  records is scored by models trained on every other record;
- train on some databases alone (`cv --train-on CPSC`) and score each other database.

Side by side, on the same held-out records: the entry's default (synthetic pre-training, then
the real training records with synthetic ones mixed in), the real-only model (synthetic off),
the synthetic-only model (no real record at all; trained once per seed), always-normal (0 by
the metric's definition) and prevalence. Each seed draws its own synthetic pool, weights,
crops and validation split. Per class and per held-out database: AUROC and F1 (a CSV).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from ecg_gcn import config as cfg
from ecg_gcn import labels as lbl
from ecg_gcn import outputs, scoring, synthetic, train
from ecg_gcn.cache import Cache
from ecg_gcn.labels import source_of
from ecg_gcn.thresholds import binarize, decide

logger = logging.getLogger(__name__)

TRAINED = ("default", "real only", "synthetic only")
MODELS = (*TRAINED, "prevalence", "always normal")
ROW_FIELDS = (
    "protocol",
    "seed",
    "held_out",
    "records",
    "model",
    "challenge_metric",
    "macro_f1",
    "macro_auroc",
)
CLASS_FIELDS = ("protocol", "seed", "held_out", "model", "class", "positives", "auroc", "f1")


def folds(
    cache: Cache, *, train_on: list[str] | None = None, min_records: int = 10
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(held-out database, training indices, scored indices) of each protocol fold."""
    sources = np.array([source_of(name) for name in cache.names])
    names, counts = np.unique(sources, return_counts=True)
    big = [str(n) for n, c in zip(names, counts, strict=True) if c >= min_records]
    if train_on:
        unknown = sorted(set(train_on) - set(names.tolist()))
        if unknown:
            raise ValueError(f"no records of {', '.join(unknown)}; databases: {', '.join(names)}")
        train_idx = np.flatnonzero(np.isin(sources, train_on))
        return [(s, train_idx, np.flatnonzero(sources == s)) for s in big if s not in train_on]
    if len(big) < 2:
        raise ValueError(f"fewer than two databases of {min_records} or more records: {big}")
    return [(s, np.flatnonzero(sources != s), np.flatnonzero(sources == s)) for s in big]


def _scores(truth: np.ndarray, probabilities: np.ndarray, decided: np.ndarray) -> dict:
    f1, f1_per_class = scoring.f_measure(truth, decided)
    macro_auroc, _, auroc_per_class, _ = scoring.auc(truth, probabilities)
    return {
        "challenge_metric": scoring.challenge_metric(truth, decided),
        "macro_f1": f1,
        "macro_auroc": macro_auroc,
        "classes": (auroc_per_class, f1_per_class),
    }


def _baselines(prior: np.ndarray, truth: np.ndarray) -> dict[str, dict]:
    prevalence = np.tile(prior, (len(truth), 1))
    normal = outputs.always_normal(len(truth))
    return {
        "prevalence": _scores(truth, prevalence, binarize(prevalence, 0.5)),
        "always normal": _scores(truth, normal.astype(float), normal),
    }


def run(
    cache: Cache,
    work_dir: str | Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    *,
    seeds: list[int],
    protocols: tuple[list[str] | None, ...] = (None,),
    min_records: int = 10,
    cache_root: str | Path | None = None,
    device: torch.device | None = None,
    models: tuple[str, ...] = TRAINED,
) -> tuple[list[dict], list[dict]]:
    """(rows, class rows) of each protocol over `seeds`, for the trained `models` (any of
    TRAINED) and the baselines; fold models and probabilities are written under `work_dir`.

    A protocol is None (leave one database out) or the databases to train on alone. The
    synthetic-only model, which sees no real record, is trained once per seed for all."""
    unknown = sorted(set(models) - set(TRAINED))
    if unknown:
        raise ValueError(f"unknown models {unknown}; the trained models are {TRAINED}")
    work_dir = Path(work_dir)
    plans = {protocol_name(p): folds(cache, train_on=p, min_records=min_records) for p in protocols}
    n_pool = train_config.synthetic or cfg.TrainConfig.synthetic
    rows, class_rows = [], []
    for seed in seeds:
        config = dataclasses.replace(train_config, seed=seed, synthetic_seed=seed, synthetic=n_pool)
        real_only = dataclasses.replace(config, synthetic=0)
        pool_cache = synthetic.pool(n_pool, seed, band=config.band, root=cache_root)
        combined, pool = train.with_pool(cache, pool_cache)
        if "synthetic only" in models:
            logger.warning("seed %d: the synthetic-only model, %d records", seed, len(pool_cache))
            synthetic_only = train.fit(
                pool_cache,
                np.arange(len(pool_cache)),
                work_dir / f"seed{seed}" / "synthetic-only",
                model_config,
                real_only,
                device=device,
                progress=False,
            )["predictor"]
        for protocol, held_out, train_idx, test_idx in (
            (name, *fold) for name, plan in plans.items() for fold in plan
        ):
            logger.warning(
                "seed %d, %s, %s: training on %d records, scoring %d",
                seed,
                protocol,
                held_out,
                len(train_idx),
                len(test_idx),
            )
            fold_dir = work_dir / f"seed{seed}" / protocol.replace(" ", "-") / held_out
            predictors, fitted = {}, {}
            if "default" in models:
                fitted["default"] = train.fit(
                    combined,
                    train_idx,
                    fold_dir / "default",
                    model_config,
                    config,
                    synthetic=pool,
                    device=device,
                    progress=False,
                )
            if "real only" in models:
                fitted["real only"] = train.fit(
                    cache,
                    train_idx,
                    fold_dir / "real-only",
                    model_config,
                    real_only,
                    device=device,
                    progress=False,
                )
            predictors = {model: summary["predictor"] for model, summary in fitted.items()}
            if "synthetic only" in models:
                predictors["synthetic only"] = synthetic_only
            truth = cache.labels[test_idx]
            results, saved = {}, {"labels": truth, "names": np.array(cache.names)[test_idx]}
            for model, summary in fitted.items():  # what threshold studies need
                validation = summary["validation"]
                saved[f"{model.replace(' ', '_')}_validation"] = validation["probabilities"]
                saved[f"{model.replace(' ', '_')}_validation_labels"] = cache.labels[
                    validation["indices"]
                ]
            for model, predictor in predictors.items():
                probabilities = predictor.probabilities_many(cache.signal(int(i)) for i in test_idx)
                saved[model.replace(" ", "_")] = probabilities
                decided = decide(probabilities, predictor.thresholds)
                results[model] = _scores(truth, probabilities, decided)
            results |= _baselines(cache.labels[train_idx].mean(axis=0), truth)
            fold_dir.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(fold_dir / "probabilities.npz", **saved)
            for model in results:
                scores = results[model]
                rows.append(
                    {
                        "protocol": protocol,
                        "seed": seed,
                        "held_out": held_out,
                        "records": len(test_idx),
                        "model": model,
                        **{k: scores[k] for k in ROW_FIELDS[5:]},
                    }
                )
                for k, (auroc, f1) in enumerate(zip(*scores["classes"], strict=True)):
                    class_rows.append(
                        {
                            "protocol": protocol,
                            "seed": seed,
                            "held_out": held_out,
                            "model": model,
                            "class": lbl.abbreviations()[lbl.CLASSES[k]],
                            "positives": int(truth[:, k].sum()),
                            "auroc": auroc,
                            "f1": f1,
                        }
                    )
    return rows, class_rows


def protocol_name(train_on: list[str] | None) -> str:
    return "leave one out" if not train_on else "trained on " + "+".join(train_on)


def summary(rows: list[dict]) -> str:
    """Per protocol: the challenge metric per held-out database and model (mean over seeds,
    with the range), and the mean over databases, seed by seed."""
    return "\n\n".join(
        _summary(name, [r for r in rows if r["protocol"] == name])
        for name in dict.fromkeys(r["protocol"] for r in rows)
    )


def _summary(protocol: str, rows: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in rows})
    held = list(dict.fromkeys(r["held_out"] for r in rows))
    value = {(r["seed"], r["held_out"], r["model"]): r["challenge_metric"] for r in rows}
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    lines = [
        f"{protocol}: challenge metric per held-out database, mean over seeds {seeds} (min to max)",
        f"{'held out':>14} {'records':>8} " + " ".join(f"{m:>19}" for m in models),
    ]
    records = {r["held_out"]: r["records"] for r in rows}
    for h in [*held, "mean"]:
        cells = []
        for m in models:
            if h == "mean":
                per_seed = [np.mean([value[s, d, m] for d in held]) for s in seeds]
            else:
                per_seed = [value[s, h, m] for s in seeds]
            cells.append(f"{np.mean(per_seed):6.3f} ({min(per_seed):.2f} to {max(per_seed):.2f})")
        count = sum(records.values()) if h == "mean" else records[h]
        lines.append(f"{h:>14} {count:>8} " + " ".join(f"{c:>19}" for c in cells))
    return "\n".join(lines)


def write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
