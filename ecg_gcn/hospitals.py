"""The new-hospital protocol: train on some databases, score on one the model never saw.

The 2020 Challenge was lost on new hospitals (the paper's entry: 0.627 in cross-validation,
-0.012 on the hidden test). Two protocols imitate that on real records:

- leave one database out (`cv --by-source`): each database with at least `min_records`
  labelled records is scored by models trained on every other record;
- train on some databases alone (`cv --train-on CPSC`) and score each other database.

Side by side, on the same held-out records: the entry's default (synthetic pre-training, then
the real training records with synthetic ones mixed in, the synthetic-only networks kept as the
ensemble's anchor), the real-only model (synthetic off), the synthetic-only model (those
networks alone, no real record at all; trained once per seed), always-normal (0 by
the metric's definition) and prevalence. Each seed draws its own synthetic pool, weights,
crops and validation split. Per class and per held-out database: AUROC and F1 (a CSV).

A database is held out only when at least `min_records` of its records carry a scored label. The
challenge metric counts a recording only through its labels (its score matrix adds nothing for a
recording without one, whatever the answer), so an unlabelled recording cannot move the score. In
`../shared/real_sample`, 8 of the 10 PTB records and 13 of the 14 CPSC-Extra records carry no
scored code: a mean that held them out would be a mean over three recordings' noise.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from ecg_gcn import baseline, measure, nets, predict, scoring, synthetic, train
from ecg_gcn import config as cfg
from ecg_gcn import labels as lbl
from ecg_gcn.cache import Cache
from ecg_gcn.labels import source_of

logger = logging.getLogger(__name__)

TRAINED = cfg.PROTOCOL_MODELS
MODELS = (*TRAINED, "prevalence", "always normal")
ROW_FIELDS = (
    "protocol",
    "seed",
    "held_out",
    "records",
    "labelled",
    "model",
    "challenge_metric",
    "macro_f1",
    "macro_auroc",
)
# The held-out name of the row that scores every held-out recording of a protocol together.
ONE_SET = "all, one set"
CLASS_FIELDS = ("protocol", "seed", "held_out", "model", "class", "positives", "auroc", "f1")


def folds(
    cache: Cache, *, train_on: list[str] | None = None, min_records: int = 10
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(held-out database, training indices, scored indices) of each protocol fold: every
    database with at least `min_records` labelled records that is not trained on."""
    sources = np.array([source_of(name) for name in cache.names])
    names = np.unique(sources)
    labelled = cache.labels.any(axis=1)
    big = [str(n) for n in names if np.count_nonzero(labelled[sources == n]) >= min_records]
    if train_on:
        unknown = sorted(set(train_on) - set(names.tolist()))
        if unknown:
            raise ValueError(f"no records of {', '.join(unknown)}; databases: {', '.join(names)}")
        train_idx = np.flatnonzero(np.isin(sources, train_on))
        return [(s, train_idx, np.flatnonzero(sources == s)) for s in big if s not in train_on]
    if len(big) < 2:
        raise ValueError(
            f"fewer than two databases of {min_records} or more labelled records: {big}"
        )
    return [(s, np.flatnonzero(sources != s), np.flatnonzero(sources == s)) for s in big]


def _scores(truth: np.ndarray, probabilities: np.ndarray, decided: np.ndarray) -> dict:
    return {**scoring.summary(truth, probabilities, decided), "decided": decided}


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
    synthetic-only model, which sees no real record, is trained once per seed for all. Beside
    a row per held-out database, each seed and protocol gets a row ONE_SET: every held-out
    recording scored together, which small databases make far less noisy than their mean."""
    unknown = sorted(set(models) - set(TRAINED))
    if unknown:
        raise ValueError(f"unknown models {unknown}; the trained models are {TRAINED}")
    work_dir = Path(work_dir)
    plans = {protocol_name(p): folds(cache, train_on=p, min_records=min_records) for p in protocols}
    n_pool = train_config.synthetic or cfg.TrainConfig.synthetic
    rows, class_rows = [], []
    for seed in seeds:
        config = dataclasses.replace(train_config, seed=seed, synthetic_seed=seed, synthetic=n_pool)
        pool_cache = synthetic.pool(n_pool, seed, preprocess=config.preprocess, root=cache_root)
        fold = _Fold(cache, pool_cache, model_config, config, models, device, cache_root)
        if "synthetic only" in models:
            fold.train_synthetic_only(work_dir / f"seed{seed}" / "synthetic-only")
        for protocol, plan in plans.items():
            pooled: dict[str, list] = {}
            for held_out, train_idx, test_idx in plan:
                logger.warning(
                    "seed %d, %s, %s: training on %d records, scoring %d",
                    *(seed, protocol, held_out, len(train_idx), len(test_idx)),
                )
                fold_dir = work_dir / f"seed{seed}" / protocol.replace(" ", "-") / held_out
                truth, results = fold.score(train_idx, test_idx, fold_dir)
                for model, scores in results.items():
                    pooled.setdefault(model, []).append((truth, scores["decided"]))
                key = {"protocol": protocol, "seed": seed, "held_out": held_out}
                _add_rows(rows, class_rows, key, truth, results)
            key = {"protocol": protocol, "seed": seed, "held_out": ONE_SET}
            rows += [_one_set_row(key, model, pairs) for model, pairs in pooled.items()]
    return rows, class_rows


class _Fold:
    """The models of one seed, trained and scored fold by fold."""

    def __init__(
        self,
        cache: Cache,
        pool_cache: Cache,
        model_config: cfg.ModelConfig,
        config: cfg.TrainConfig,
        models: tuple[str, ...],
        device: torch.device | None,
        pool_root: str | Path | None = None,
    ) -> None:
        self.cache, self.pool_cache, self.models, self.device = cache, pool_cache, models, device
        self.pool_root = pool_root
        self.pool = train.with_pool(cache, pool_cache)[1]
        self.model_config, self.config = model_config, config
        self.real_only = dataclasses.replace(config, synthetic=0)
        self.synthetic_only = None

    def _fit(self, cache: Cache, indices: np.ndarray, folder: Path, config, **extra) -> dict:
        return train.fit_members(
            cache,
            indices,
            folder,
            self.model_config,
            config,
            device=self.device,
            progress=False,
            **extra,
        )

    def train_synthetic_only(self, folder: Path) -> None:
        """The synthetic-only model: the default's anchors themselves
        (`train.fit_synthetic_only`, cached with their pools), copied into `folder`/anchor-k;
        their mean probability, at the mean of their thresholds."""
        count = self.config.replicas * self.config.synthetic_anchors
        logger.warning(
            "the synthetic-only model, %d networks of %d records", count, len(self.pool_cache)
        )
        anchors = []
        for r in range(self.config.replicas):
            settings = train.replica_settings(self.config, r)
            pool = self.pool
            if r:
                pool_cache = synthetic.pool(
                    len(self.pool_cache),
                    settings.synthetic_seed,
                    preprocess=settings.preprocess,
                    root=self.pool_root,
                )
                pool = train.with_pool(self.cache, pool_cache)[1]
            for k in range(settings.synthetic_anchors):
                cached = train.fit_synthetic_only(
                    pool, self.model_config, settings, self.device, progress=False, k=k
                )
                target = folder / f"anchor-{len(anchors) + 1}"
                shutil.copytree(cached, target, dirs_exist_ok=True)
                anchors.append(predict.load(target, self.device))
        self.synthetic_only = predict.Predictor(
            nets.Ensemble([a.model for a in anchors]),
            self.model_config,
            np.mean([a.thresholds for a in anchors], axis=0),
            self.config.preprocess,
            anchors[0].device,
            **predict.rule_flags(anchors[0]),
        )

    def score(
        self, train_idx: np.ndarray, test_idx: np.ndarray, fold_dir: Path
    ) -> tuple[np.ndarray, dict[str, dict]]:
        """(held-out labels, scores per model and baseline); the fold's models, probabilities
        and validation predictions (what threshold studies need) go under `fold_dir`."""
        fitted = {}
        if "default" in self.models:
            fitted["default"] = train.fit_replicas(
                self.cache,
                train_idx,
                fold_dir / "default",
                self.model_config,
                self.config,
                pool_root=self.pool_root,
                device=self.device,
                progress=False,
            )
        if "real only" in self.models:
            fitted["real only"] = self._fit(
                self.cache, train_idx, fold_dir / "real-only", self.real_only
            )
        predictors = {model: summary["predictor"] for model, summary in fitted.items()}
        if self.synthetic_only is not None:
            predictors["synthetic only"] = self.synthetic_only
        truth = self.cache.labels[test_idx]
        names = np.array(self.cache.names)
        saved = {"labels": truth, "names": names[test_idx]}
        for model, summary in fitted.items():
            validation = summary["validation"]
            key = model.replace(" ", "_")
            saved[f"{key}_validation"] = validation["probabilities"]
            saved[f"{key}_validation_labels"] = self.cache.labels[validation["indices"]]
            # Names too, so that a threshold study can group them by database.
            saved[f"{key}_validation_names"] = names[validation["indices"]]
        # The measured beats of the held-out recordings, for the models' measured rules.
        measured = measure.records(
            (self.cache.signal(int(i)) for i in test_idx), self.config.preprocess.fs
        )
        saved["measured"] = measured
        results = {}
        for model, predictor in predictors.items():
            signals = (self.cache.signal(int(i)) for i in test_idx)
            probabilities = predictor.probabilities_many(signals)
            saved[model.replace(" ", "_")] = probabilities
            results[model] = _scores(
                truth, probabilities, predictor.decide(probabilities, measured)
            )
        prior = self.cache.labels[train_idx].mean(axis=0)
        for name, answers in baseline.baselines(prior, len(truth)).items():
            results[name] = _scores(truth, *answers)
        fold_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(fold_dir / "probabilities.npz", **saved)
        return truth, results


def _add_rows(
    rows: list[dict], class_rows: list[dict], key: dict, truth: np.ndarray, results: dict
) -> None:
    for model, scores in results.items():
        counts = {"records": len(truth), "labelled": int(truth.any(axis=1).sum())}
        rows.append({**key, **counts, "model": model, **{k: scores[k] for k in ROW_FIELDS[6:]}})
        per_class = zip(scores["auroc_per_class"], scores["f1_per_class"], strict=True)
        for k, (auroc, f1) in enumerate(per_class):
            class_rows.append(
                {
                    **key,
                    "model": model,
                    "class": lbl.abbreviations()[lbl.CLASSES[k]],
                    "positives": int(truth[:, k].sum()),
                    "auroc": auroc,
                    "f1": f1,
                }
            )


def _one_set_row(key: dict, model: str, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The challenge metric and F1 of every held-out recording of a protocol, scored together
    (AUROC is left out: the folds' probabilities come from different models)."""
    truth = np.vstack([t for t, _ in pairs])
    decided = np.vstack([d for _, d in pairs])
    return {
        **key,
        "records": len(truth),
        "labelled": int(truth.any(axis=1).sum()),
        "model": model,
        "challenge_metric": scoring.challenge_metric(truth, decided),
        "macro_f1": scoring.f_measure(truth, decided)[0],
        "macro_auroc": float("nan"),
    }


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
    held = [h for h in dict.fromkeys(r["held_out"] for r in rows) if h != ONE_SET]
    value = {(r["seed"], r["held_out"], r["model"]): r["challenge_metric"] for r in rows}
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    lines = [
        f"{protocol}: challenge metric per held-out database, mean over seeds {seeds} (min to max)",
        f"{'held out':>14} {'labelled':>8} " + " ".join(f"{m:>19}" for m in models),
    ]
    labelled = {r["held_out"]: r["labelled"] for r in rows}
    labelled["mean"] = sum(labelled[h] for h in held)
    pooled = ONE_SET in labelled
    for h in [*held, "mean", *([ONE_SET] if pooled else [])]:
        cells = []
        for m in models:
            if h == "mean":
                per_seed = [np.mean([value[s, d, m] for d in held]) for s in seeds]
            else:
                per_seed = [value[s, h, m] for s in seeds]
            cells.append(f"{np.mean(per_seed):6.3f} ({min(per_seed):.2f} to {max(per_seed):.2f})")
        lines.append(f"{h:>14} {labelled[h]:>8} " + " ".join(f"{c:>19}" for c in cells))
    return "\n".join(lines)


def write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
