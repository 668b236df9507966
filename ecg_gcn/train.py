"""The training loop: data, split, graph, model, epochs, the best checkpoint.

A plain loop with its dependencies passed in (nanoGPT's habit): the device and precision are
decided once; each epoch appends one row to history.csv; the best epoch is the one with the
best validation challenge metric (thresholds tuned on the validation predictions, the same
rule inference applies), and its checkpoint is the model.

Interruption: after every epoch the whole training state (weights, optimizer, scheduler, RNG,
history) is written atomically to training_state.pt; running the same training again on the
same data with the same configuration resumes after the last finished epoch. The state file is
removed when training ends.

Several processes (torchrun; ecg_gcn.distributed): each trains on its share of the records
through DistributedDataParallel, rank 0 alone validates and writes every file, and the others
follow its validation loss and stop decision. Checkpoints and the training state hold the plain
model's weights, so a run resumes and a model loads with or without torchrun.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ecg_gcn import (
    checkpoint,
    dataset,
    distributed,
    graph,
    nets,
    predict,
    scoring,
    synthetic,
    thresholds,
)
from ecg_gcn import config as cfg
from ecg_gcn import labels as lbl
from ecg_gcn.augment import Augment, augment_batch
from ecg_gcn.cache import Cache, build_cache, concat, load_cache
from ecg_gcn.device import pick_device, precision, seed_everything

logger = logging.getLogger(__name__)


def _split(
    labels: np.ndarray, indices: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) record indices: a stratified hold-out of `indices`. With too few
    records to hold any out, validate on the training records themselves (and say so)."""
    n = len(indices)
    if round(n * fraction) < 1 or n - round(n * fraction) < 1:
        logger.warning("only %d records: validating on the training records", n)
        return indices, indices
    train_pos, val_pos = dataset.stratified_split(labels[indices], fraction, seed)
    return indices[train_pos], indices[val_pos]


def _signature(
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    cache: Cache,
    indices: np.ndarray,
) -> str:
    """What a saved training state must match to be resumed: configurations and data."""
    digest = hashlib.sha1()
    configs = [cfg.to_dict(model_config), cfg.to_dict(train_config)]
    digest.update(json.dumps(configs, sort_keys=True).encode())
    digest.update("\n".join(cache.names[i] for i in indices).encode())
    digest.update(cache.lengths[indices].tobytes())
    digest.update(cache.labels[indices].tobytes())
    return digest.hexdigest()


def _validate(
    predictor: predict.Predictor, cache: Cache, indices: np.ndarray
) -> tuple[np.ndarray, float]:
    """(probabilities, BCE loss) of the validation records, through the inference path."""
    predictor.model.eval()
    # A generator: the validation records are read one by one, never all held at once.
    probabilities = predictor.probabilities_many(cache.signal(int(i)) for i in indices)
    truth = cache.labels[indices].astype(np.float64)
    if not truth.size:  # a handful of training records can leave no validation part
        return probabilities, float("nan")
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    loss = -np.mean(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped))
    return probabilities, float(loss)


def train(
    data_dir: str | Path,
    model_dir: str | Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    *,
    cache_dir: str | Path | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict:
    """Fit the model on every readable record of `data_dir`; write it into `model_dir`.

    Launched by torchrun with several processes, they train one model together (ecg_gcn.
    distributed): each process returns the same summary, and rank 0 alone writes `model_dir`.

    Returns a summary: best epoch, its validation challenge metric and thresholds, and the
    trained model as a Predictor (what loading the saved checkpoint gives back).
    """
    with distributed.process_group(device) as (context, device):
        progress = progress and context.is_main
        model_dir = Path(model_dir)
        if context.is_main:
            model_dir.mkdir(parents=True, exist_ok=True)
        cache = distributed.in_turn(
            lambda: build_cache(
                data_dir, cache_dir, preprocess=train_config.preprocess, progress=progress
            ),
            context,
        )
        if cache.skipped and context.is_main:
            checkpoint.write_rows(
                model_dir / checkpoint.SKIPPED_FILE, ("record", "reason"), cache.skipped
            )
            logger.warning(
                "skipped %d unreadable records (listed in %s)",
                len(cache.skipped),
                model_dir / checkpoint.SKIPPED_FILE,
            )
        if len(cache) == 0:
            raise ValueError(
                f"{data_dir}: none of the recordings could be read; nothing to train on"
            )
        if not cache.labels.any():  # a model would learn only "nothing", and fire at random
            raise ValueError(
                f"{data_dir}: none of the {len(cache)} readable recordings has a scored "
                "diagnosis on its #Dx line (the codes of dx_mapping_scored.csv); nothing to "
                "learn from"
            )
        return fit_replicas(
            cache,
            np.arange(len(cache)),
            model_dir,
            model_config,
            train_config,
            pool_root=Path(cache_dir).parent if cache_dir else None,
            device=device,
            context=context,
            progress=progress,
        )


def replica_settings(train_config: cfg.TrainConfig, r: int) -> cfg.TrainConfig:
    """How replica r of the model trains (TrainConfig.replicas): as one model would, from
    `seed` + r on the pool of `synthetic_seed` + r."""
    return replace(
        train_config,
        seed=train_config.seed + r,
        synthetic_seed=train_config.synthetic_seed + r,
        replicas=1,
    )


def fit_replicas(
    cache: Cache,
    indices: np.ndarray,
    model_dir: str | Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    *,
    pool_root: str | Path | None = None,
    device: torch.device | None = None,
    context: distributed.Context | None = None,
    progress: bool = True,
) -> dict:
    """Fit the model of `train_config` on the real records `indices` of `cache`: with a
    synthetic pool (made and cached under `pool_root`), `fit_members` on the records and the
    pool; with `replicas` > 1, replica r so into `model_dir`/replica-r (`replica_settings`),
    and the model is their mean (TrainConfig.replicas), saved in `model_dir`/model.pt.
    Returns `fit_members`' summary; with replicas, "validation" holds the records every
    replica validated, at the mean of their probabilities."""
    context = context or distributed.Context()
    model_dir = Path(model_dir)
    count = train_config.replicas
    summaries = []
    for r in range(count):
        settings = replica_settings(train_config, r)
        data, pool = cache, None
        if settings.synthetic:
            pool_cache = distributed.in_turn(
                lambda settings=settings: synthetic.pool(
                    settings.synthetic,
                    settings.synthetic_seed,
                    preprocess=settings.preprocess,
                    root=pool_root,
                    progress=progress,
                ),
                context,
            )
            data, pool = with_pool(cache, pool_cache)
        if progress and count > 1:
            tqdm.write(f"replica {r + 1} of {count}")
        summaries.append(
            fit_members(
                data,
                indices,
                model_dir if count == 1 else model_dir / f"replica-{r + 1}",
                model_config,
                settings,
                synthetic=pool,
                device=device,
                context=context,
                progress=progress,
            )
        )
    if count == 1:
        return summaries[0]
    return _mean_of_replicas(
        summaries, cache.labels, model_dir, model_config, train_config, context
    )


def _positions(indices: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of `wanted` stands in `indices` (every one of them is there)."""
    order = np.argsort(indices)
    return order[np.searchsorted(indices, wanted, sorter=order)]


def _mean_of_replicas(
    summaries: list[dict],
    labels: np.ndarray,
    model_dir: Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    context: distributed.Context,
) -> dict:
    """The model that averages the replicas' `summaries`: every replica's networks in one
    Ensemble, at their weights over the replicas' count, and the mean of their thresholds;
    saved in `model_dir`."""
    networks, weights = [], []
    for summary in summaries:
        model = summary["predictor"].model
        parts = list(model.members) if isinstance(model, nets.Ensemble) else [model]
        shares = model.weights.tolist() if isinstance(model, nets.Ensemble) else [1.0]
        networks += parts
        weights += [w / len(summaries) for w in shares]
    ensemble = nets.Ensemble(networks, weights).eval()
    final = np.mean([s["thresholds"] for s in summaries], axis=0)
    # Out of fold for every replica: the records each of them validated, probabilities averaged.
    common = summaries[0]["validation"]["indices"]
    for summary in summaries[1:]:
        common = np.intersect1d(common, summary["validation"]["indices"])
    probabilities = np.mean(
        [
            s["validation"]["probabilities"][_positions(s["validation"]["indices"], common)]
            for s in summaries
        ],
        axis=0,
    )
    score = scoring.challenge_metric(labels[common], thresholds.decide(probabilities, final))
    epochs = [int(s["epoch"]) for s in summaries]
    if context.is_main:
        checkpoint.save(
            model_dir / checkpoint.CHECKPOINT_FILE,
            ensemble,
            model_config,
            train_config,
            final,
            epoch=epochs[0],
            replica_epochs=epochs,
            replicas=len(summaries),
        )
    first = summaries[0]["predictor"]
    predictor = predict.Predictor(
        ensemble,
        model_config,
        final,
        train_config.preprocess,
        first.device,
        **predict.rule_flags(train_config),
    )
    return {
        "epoch": epochs[0],
        "replica_epochs": epochs,
        "challenge_metric": score,
        "thresholds": final,
        "validation": {"indices": common, "probabilities": probabilities},
        "predictor": predictor,
    }


def with_pool(cache: Cache, pool_cache: Cache) -> tuple[Cache, SyntheticPool]:
    """The data's cache with the synthetic pool's records appended, and where they are."""
    combined = concat(cache, pool_cache)
    indices = np.arange(len(cache), len(combined))
    return combined, SyntheticPool(indices, pool_cache.folder)


def train_step(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    autocast,
    loss_fn: torch.nn.Module,
    device: torch.device,
    augment: Augment | None = None,
) -> torch.Tensor:
    """One optimiser step on a batch as the loader gives it (x float16 as cached, moved to the
    device and made float32 there, then augmented); returns the batch's loss."""
    x = x.to(device, non_blocking=True).float()
    y = y.to(device, non_blocking=True)
    if augment is not None:
        x = augment_batch(x, augment)
    with autocast():
        loss = loss_fn(model(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


@dataclass
class _Run:
    """The running state of one training: its history, the best epoch so far, stale epochs."""

    history: list[list] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    best_probabilities: np.ndarray | None = None
    stale: int = 0
    next_epoch: int = 1


@dataclass
class _Fitting:
    """What the steps of one fit share: the data and its validation part, the model folder,
    the configurations, this process's place among several, and what is being trained. The
    running state (`_Run`) is apart: it is what a resumed training restores."""

    cache: Cache
    val_idx: np.ndarray
    model_dir: Path
    model_config: cfg.ModelConfig
    train_config: cfg.TrainConfig
    context: distributed.Context
    device: torch.device
    model: nets.ECGNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    signature: str  # what a saved training state must match to be resumed
    progress: bool

    def __post_init__(self) -> None:
        # Validation goes through the inference path; the thresholds come at the end.
        self.predictor = predict.Predictor(
            self.model,
            self.model_config,
            np.full(lbl.NUM_CLASSES, 0.5),
            self.train_config.preprocess,
            self.device,
        )

    def validate_and_select(self, run: _Run, epoch: int, train_loss: float, seconds: float) -> bool:
        """Rank 0: validate, log the epoch, keep it if it is the best; True when training
        stops."""
        probabilities, val_loss = _validate(self.predictor, self.cache, self.val_idx)
        val_labels = self.cache.labels[self.val_idx]
        cut, score = thresholds.tune(probabilities, val_labels, mode="global")
        macro_f1 = scoring.f_measure(val_labels, thresholds.decide(probabilities, cut))[0]
        lr = self.optimizer.param_groups[0]["lr"]
        run.history.append(
            [epoch, train_loss, val_loss, score, macro_f1, float(cut[0]), lr, seconds]
        )
        checkpoint.write_rows(
            self.model_dir / checkpoint.HISTORY_FILE, checkpoint.HISTORY_FIELDS, run.history
        )
        if self.progress:
            tqdm.write(
                f"epoch {epoch:3d}  loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                f"challenge {score:.3f}  F1 {macro_f1:.3f}  lr {lr:.0e}  {seconds:.0f} s"
            )
        criterion = score if self.train_config.select_metric == "challenge" else -val_loss
        if criterion > run.best_score:
            run.best_score, run.best_epoch, run.stale = criterion, epoch, 0
            run.best_state = copy.deepcopy(self.model.state_dict())
            run.best_probabilities = probabilities
            self._save_checkpoint(cut, epoch=epoch)
        else:
            run.stale += 1
        return run.stale >= self.train_config.early_stop_patience

    def _save_checkpoint(self, cut: np.ndarray, **extra: object) -> None:
        checkpoint.save(
            self.model_dir / checkpoint.CHECKPOINT_FILE,
            self.model,
            self.model_config,
            self.train_config,
            cut,
            **extra,
        )

    def end_epoch(self, run: _Run, epoch: int, stop: bool) -> bool:
        """Every process: step the schedule on rank 0's validation loss, save the state to
        resume from (rank 0); True when rank 0 says stop."""
        context = self.context
        val_loss = run.history[-1][2] if context.is_main else math.nan
        # Every process steps its scheduler on the same loss and stops with rank 0.
        val_loss, stop = distributed.broadcast((val_loss, stop), context)
        self.scheduler.step(val_loss)
        rng = distributed.all_gather((torch.get_rng_state(), self.generator.get_state()), context)
        if context.is_main:
            state = {
                "signature": self.signature,
                "epoch": epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,  # (torch, loader) generator states, one pair per rank
                "history": run.history,
                "stale": run.stale,
                "best_score": float(run.best_score),
                "best_epoch": run.best_epoch,
                "best_probabilities": torch.from_numpy(run.best_probabilities),
            }
            checkpoint.atomic_save(state, self.model_dir / checkpoint.STATE_FILE)
        return stop

    def resume(self) -> _Run:
        """The running state to continue from: a saved one of this very training, or a fresh
        one."""
        context, model_dir = self.context, self.model_dir
        # Rank 0 alone reads the model folder (on several nodes, only its node has it).
        resumed = checkpoint.load_state(model_dir, self.signature) if context.is_main else None
        resumed = distributed.broadcast(resumed, context)
        run = _Run()
        if resumed is None:
            return run
        self.model.load_state_dict(resumed["model"])
        self.optimizer.load_state_dict(resumed["optimizer"])
        self.scheduler.load_state_dict(resumed["scheduler"])
        self.scaler.load_state_dict(resumed["scaler"])
        # A process the interrupted run did not have keeps the fresh stream drawn above.
        if context.rank < len(resumed["rng"]):
            torch_rng, loader_rng = resumed["rng"][context.rank]
            torch.set_rng_state(torch_rng)
            self.generator.set_state(loader_rng)
        run.history, run.stale = resumed["history"], resumed["stale"]
        run.next_epoch = resumed["epoch"] + 1
        if context.is_main:
            run.best_score, run.best_epoch = resumed["best_score"], resumed["best_epoch"]
            run.best_state = checkpoint.read(model_dir, self.device)["state_dict"]
            run.best_probabilities = resumed["best_probabilities"].numpy()
            logger.warning(
                "resuming after epoch %d from %s",
                resumed["epoch"],
                model_dir / checkpoint.STATE_FILE,
            )
        return run

    def finish(self, run: _Run, synthetic: SyntheticPool | None) -> dict:
        """Rank 0: the best epoch's weights and their final thresholds into the checkpoint;
        every process returns that model."""
        context, model = self.context, self.model
        if context.distributed:
            _check_agreement(model, context)
        summary: dict | None = None
        if context.is_main:
            model.load_state_dict(run.best_state)
            final, score = _final_thresholds(
                run.best_probabilities, self.cache.labels[self.val_idx], self.train_config
            )
            self._save_checkpoint(final, epoch=run.best_epoch, synthetic_pool=_pool_note(synthetic))
            (self.model_dir / checkpoint.STATE_FILE).unlink(missing_ok=True)
            summary = {
                "epoch": run.best_epoch,
                "challenge_metric": score,
                "thresholds": final,
                "validation": {"indices": self.val_idx, "probabilities": run.best_probabilities},
            }
        if context.distributed:
            # Every process returns rank 0's best model, once it is saved.
            state = {k: v.cpu() for k, v in model.state_dict().items()} if context.is_main else None
            summary, state = distributed.broadcast((summary, state), context)
            model.load_state_dict(state)
        self.predictor.thresholds = summary["thresholds"]
        for name, on in predict.rule_flags(self.train_config).items():
            setattr(self.predictor, name, on)
        model.eval()
        return {**summary, "predictor": self.predictor}


def fit(
    cache: Cache,
    indices: np.ndarray,
    model_dir: str | Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    *,
    synthetic: SyntheticPool | None = None,
    device: torch.device | None = None,
    context: distributed.Context | None = None,
    progress: bool = True,
    validation: np.ndarray | None = None,
) -> dict:
    """Fit one network on the cached records `indices` (a validation part is held out of them
    to pick the epoch and tune the thresholds); write it into `model_dir`. Cross-validation
    calls this with each fold's training part, so nothing of the scored fold is ever seen.

    `validation`: the records of `indices` to validate on (the others train), in place of a
    `validation_fraction` hold-out; `fit_members` gives each member its part.

    `synthetic`: the synthetic pool's records in the same cache. The network is pre-trained on
    them (`pretrain`, cached), then every epoch mixes a fresh draw of them into the real
    training records; validation, and so the epoch and the thresholds, use real records only.

    `context` places this process among several (see `train`); by default it is the only one.
    """
    context = context or distributed.Context()
    fitting, loader, autocast = _set_up(
        cache,
        np.asarray(indices),
        Path(model_dir),
        model_config,
        train_config,
        synthetic,
        device or pick_device(),
        context,
        progress,
        validation,
    )
    run = fitting.resume()
    # Compiled first, then wrapped (nanoGPT's order); the plain model is what gets saved.
    step_model = torch.compile(fitting.model) if train_config.compile else fitting.model
    step_model = distributed.wrap(step_model, context, fitting.device)
    step = _stepper(
        fitting.optimizer, fitting.scaler, autocast, fitting.device, train_config.augment
    )
    for epoch in range(run.next_epoch, train_config.max_epochs + 1):
        start = time.perf_counter()
        train_loss = _train_epoch(step_model, loader, step, epoch, context, progress)
        seconds = time.perf_counter() - start
        stop = context.is_main and fitting.validate_and_select(run, epoch, train_loss, seconds)
        if fitting.end_epoch(run, epoch, stop):
            break
    return fitting.finish(run, synthetic)


def fit_members(
    cache: Cache,
    indices: np.ndarray,
    model_dir: str | Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    *,
    synthetic: SyntheticPool | None = None,
    device: torch.device | None = None,
    context: distributed.Context | None = None,
    progress: bool = True,
) -> dict:
    """Fit the model of `train_config`: one network (`fit`) or, with `members` > 1, a
    cross-fitted ensemble (TrainConfig.members). Member i is fitted into `model_dir`/member-i
    on every part of the records but the i-th, which it validates on. With a synthetic pool,
    the synthetic-only network joins them as an anchor (TrainConfig.synthetic_anchor). The
    ensemble's thresholds are tuned on all the records' out-of-fold probabilities (the
    anchor's share included) and, with a pool, moved toward those tuned on fresh synthetic
    records (TrainConfig.synthetic_threshold_records); then raised where a class would fire on
    too many of the records (TrainConfig.firing_cap). Its checkpoint is `model_dir`/model.pt.
    Returns `fit`'s summary, "validation" being out-of-fold."""
    indices = np.asarray(indices)
    k = min(train_config.members, len(indices))
    common = {"synthetic": synthetic, "device": device, "context": context, "progress": progress}
    if k < 2:
        return fit(cache, indices, model_dir, model_config, train_config, **common)
    context = context or distributed.Context()
    model_dir = Path(model_dir)
    part = dataset.stratified_folds(cache.labels[indices], k, train_config.seed)
    summaries = []
    for i in range(k):
        if progress:
            tqdm.write(
                f"member {i + 1} of {k}: validating on {np.count_nonzero(part == i)} records"
            )
        summaries.append(
            fit(
                cache,
                indices,
                model_dir / f"member-{i + 1}",
                model_config,
                train_config,
                validation=indices[part == i],
                **common,
            )
        )
    val_idx = np.concatenate([s["validation"]["indices"] for s in summaries])
    probabilities = np.concatenate([s["validation"]["probabilities"] for s in summaries])
    networks = [s["predictor"].model for s in summaries]
    weights = [1.0 / k] * k
    device = summaries[0]["predictor"].device
    share = train_config.anchor_share(len(indices))
    anchors = _anchors(synthetic, share, model_config, train_config, device, context, progress)
    if not anchors:
        share = 0.0
    else:
        anchor_probabilities = predict.Predictor(
            nets.Ensemble(anchors),
            model_config,
            np.full(lbl.NUM_CLASSES, 0.5),
            train_config.preprocess,
            device,
        ).probabilities_many(cache.signal(int(j)) for j in val_idx)
        probabilities = (1 - share) * probabilities + share * anchor_probabilities
        networks += anchors
        weights = [(1 - share) / k] * k + [share / len(anchors)] * len(anchors)
    ensemble = nets.Ensemble(networks, weights).eval()
    final, _ = _final_thresholds(probabilities, cache.labels[val_idx], train_config)
    final, threshold_share = _with_synthetic_thresholds(
        final, ensemble, synthetic, model_config, train_config, len(indices), device, context
    )
    uncapped = final
    final = thresholds.cap_firing_rate(
        probabilities,
        cache.labels[val_idx],
        final,
        train_config.firing_cap,
        train_config.firing_cap_prevalence,
    )
    score = scoring.challenge_metric(cache.labels[val_idx], thresholds.decide(probabilities, final))
    epochs = [int(s["epoch"]) for s in summaries]
    if context.is_main:
        checkpoint.save(
            model_dir / checkpoint.CHECKPOINT_FILE,
            ensemble,
            model_config,
            train_config,
            final,
            epoch=epochs[0],
            member_epochs=epochs,
            anchor_share=share,
            anchors=len(anchors),
            synthetic_threshold_share=threshold_share,
            firing_capped=[lbl.CLASSES[j] for j in np.flatnonzero(final > uncapped)],
            synthetic_pool=_pool_note(synthetic),
        )
        # Which member validated each record (and so gave its out-of-fold probability).
        checkpoint.write_rows(
            model_dir / checkpoint.SPLIT_FILE,
            ("record", "part"),
            sorted((cache.names[j], f"member-{part[n] + 1}") for n, j in enumerate(indices)),
        )
    predictor = predict.Predictor(
        ensemble,
        model_config,
        final,
        train_config.preprocess,
        device,
        **predict.rule_flags(train_config),
    )
    return {
        "epoch": epochs[0],
        "member_epochs": epochs,
        "challenge_metric": score,
        "thresholds": final,
        "validation": {"indices": val_idx, "probabilities": probabilities},
        "predictor": predictor,
    }


def _with_synthetic_thresholds(
    final: np.ndarray,
    ensemble: nets.Ensemble,
    pool: SyntheticPool | None,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    n_records: int,
    device: torch.device,
    context: distributed.Context,
) -> tuple[np.ndarray, float]:
    """(thresholds, share): the ensemble's thresholds `final` (tuned on the real out-of-fold
    records) moved toward those tuned on fresh synthetic records by the share
    TrainConfig.synthetic_threshold_share gives them; unmoved, share 0, without a pool."""
    share = train_config.synthetic_threshold_share(n_records) if pool else 0.0
    if not share:
        return final, 0.0
    fresh = distributed.in_turn(
        lambda: synthetic.pool(
            train_config.synthetic_threshold_records,
            train_config.synthetic_seed + synthetic.THRESHOLD_SEED_OFFSET,
            preprocess=train_config.preprocess,
            root=pool.folder.parent,
            progress=False,
        ),
        context,
    )
    probabilities = predict.Predictor(
        ensemble, model_config, final, train_config.preprocess, device
    ).probabilities_many(fresh.signal(i) for i in range(len(fresh)))
    tuned, _ = _final_thresholds(probabilities, fresh.labels, train_config)
    return (1 - share) * final + share * tuned, share


# Below this share of the answer the anchor is left out, and its training with it: on the full
# data (share 0.003) it would cost a training on the pool to move the answer by nothing.
MIN_ANCHOR_SHARE = 0.01


def _anchors(
    synthetic: SyntheticPool | None,
    share: float,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    device: torch.device,
    context: distributed.Context,
    progress: bool,
) -> list[nets.ECGNet]:
    """The ensemble's anchor: the `synthetic_anchors` synthetic-only networks
    (`fit_synthetic_only`, cached), or none when there is no pool or its `share` is below
    MIN_ANCHOR_SHARE."""
    if synthetic is None or share < MIN_ANCHOR_SHARE:
        return []
    return [
        predict.load(
            fit_synthetic_only(synthetic, model_config, train_config, device, context, progress, k),
            device,
        ).model
        for k in range(train_config.synthetic_anchors)
    ]


def anchor_settings(train_config: cfg.TrainConfig, k: int = 0) -> cfg.TrainConfig:
    """How the k-th synthetic-only network trains (TrainConfig.synthetic_anchors): one network
    on its pool alone, from seed `seed` + k, for at most `synthetic_anchor_epochs` epochs."""
    return replace(
        train_config,
        synthetic=0,
        members=1,
        seed=train_config.seed + k,
        synthetic_seed=train_config.synthetic_seed + k,
        max_epochs=min(train_config.max_epochs, train_config.synthetic_anchor_epochs),
    )


def _pool_like(pool: SyntheticPool, settings: cfg.TrainConfig, progress: bool) -> Cache:
    """The cached pool of as many synthetic records as `pool`, drawn from
    `settings.synthetic_seed`, beside it (made if need be)."""
    return synthetic.pool(
        len(pool.indices),
        settings.synthetic_seed,
        preprocess=settings.preprocess,
        root=pool.folder.parent,
        progress=progress,
    )


def fit_synthetic_only(
    synthetic: SyntheticPool,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    device: torch.device | None = None,
    context: distributed.Context | None = None,
    progress: bool = True,
    k: int = 0,
) -> Path:
    """The model folder of the k-th network trained on synthetic records alone
    (`anchor_settings`): network 0 on the pool `synthetic`, network k on the pool drawn from
    `synthetic_seed` + k, of the same size (made if need be). It trains as `fit` trains one on
    data, the pool's own validation part picking the epoch and tuning the thresholds, and
    never sees a real record: one of the ensemble's anchors, and of the protocols'
    synthetic-only model. Cached in its pool's folder, keyed by the network's and the
    training's settings; made once, one process at a time."""
    settings = anchor_settings(train_config, k)
    named = {
        key: value for key, value in cfg.to_dict(settings).items() if key not in ENSEMBLE_ONLY_KEYS
    }

    def make() -> Path:
        pool_folder = synthetic.folder
        if k:
            pool_folder = _pool_like(synthetic, settings, progress).folder
        folder = pool_folder / f"synthetic-only-{_key(model_config, named)}"
        done = folder / "done"
        if not done.is_file():  # absent or interrupted (`fit` resumes where it stopped)
            if progress:
                tqdm.write(f"training synthetic-only network {k + 1} on its pool alone")
            pool_cache = load_cache(pool_folder)
            every = np.arange(len(pool_cache))
            fit(pool_cache, every, folder, model_config, settings, device=device, progress=progress)
            done.write_text("")
        return folder

    return distributed.in_turn(make, context or distributed.Context())


def _final_thresholds(
    probabilities: np.ndarray, labels: np.ndarray, train_config: cfg.TrainConfig
) -> tuple[np.ndarray, float]:
    """The thresholds a model is saved with, tuned on its validation probabilities as
    `train_config` says (a member's part, or an ensemble's out-of-fold records)."""
    return thresholds.tune(
        probabilities,
        labels,
        mode=train_config.threshold_mode,
        min_positives=train_config.threshold_min_positives,
    )


def _pool_note(synthetic: SyntheticPool | None) -> dict | None:
    """What the checkpoint records of the synthetic pool: its size and folder."""
    if synthetic is None:
        return None
    return {"records": len(synthetic.indices), "folder": synthetic.folder.name}


def _set_up(
    cache: Cache,
    indices: np.ndarray,
    model_dir: Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    synthetic: SyntheticPool | None,
    device: torch.device,
    context: distributed.Context,
    progress: bool,
    validation: np.ndarray | None = None,
) -> tuple[_Fitting, DataLoader, object]:
    """(the fit's shared parts, its training batches, its autocast): the split, the network
    (pre-trained when there is a pool), its optimiser and the loader, in the order that draws
    the seed's random numbers."""
    main = context.is_main
    if main:
        model_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(train_config.seed, train_config.deterministic)
    autocast, scaler = precision(device, train_config.amp)
    _warn_absent(cache.labels[indices], main)
    if validation is None:
        train_idx, val_idx = _split(
            cache.labels, indices, train_config.validation_fraction, train_config.seed
        )
    else:
        val_idx = np.asarray(validation)
        train_idx = indices[~np.isin(indices, val_idx)]
    if main:
        _write_split(model_dir / checkpoint.SPLIT_FILE, cache, train_idx, val_idx)
    pool = synthetic.indices if synthetic is not None else np.zeros(0, dtype=np.int64)
    known = _known(cache, train_idx, pool, train_config, main)
    model, pretrained = _initial_model(
        cache, train_idx, synthetic, model_config, train_config, device, context, progress
    )
    optimizer, scheduler = _optimiser(model, train_config, pretrained)
    # Every process draws its own crops and dropout masks: rank 0 keeps the seed's stream (that
    # of a single-process run), the others start from the seed plus their rank.
    if context.rank:
        torch.manual_seed(train_config.seed + context.rank)
    generator = torch.Generator().manual_seed(train_config.seed + context.rank)
    per_epoch = _synthetic_per_epoch(train_config, len(train_idx), len(pool))
    loader = loader_for(
        cache,
        train_idx,
        train_config,
        context,
        device,
        generator,
        pool=pool,
        per_epoch=per_epoch,
        known=known,
    )
    if context.distributed:
        logger.info(
            "rank %d of %d: %d training windows per epoch in %d batches",
            *(context.rank, context.world_size, len(loader.sampler), len(loader)),
        )
    fitting = _Fitting(
        cache=cache,
        val_idx=val_idx,
        model_dir=model_dir,
        model_config=model_config,
        train_config=train_config,
        context=context,
        device=device,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        generator=generator,
        signature=_signature(
            model_config, train_config, cache, np.concatenate([train_idx, pool, val_idx])
        ),
        progress=progress,
    )
    return fitting, loader, autocast


def _known(
    cache: Cache, train_idx: np.ndarray, pool: np.ndarray, train_config: cfg.TrainConfig, main: bool
) -> np.ndarray | None:
    """Which labels the loss may use (labels.known_classes), or None for all."""
    if not train_config.mask_unlabelled:
        return None
    known = lbl.known_classes(cache.names, cache.labels, np.concatenate([train_idx, pool]), pool)
    _log_unknown(cache, train_idx, known, main)
    return known


def _initial_model(
    cache: Cache,
    train_idx: np.ndarray,
    synthetic: SyntheticPool | None,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    device: torch.device,
    context: distributed.Context,
    progress: bool,
) -> tuple[nets.ECGNet, bool]:
    """(the network to train, whether it starts from synthetic pre-training). Its label graph
    comes from the real training records and the synthetic pool together."""
    pool = synthetic.indices if synthetic is not None else np.zeros(0, dtype=np.int64)
    graph_labels = cache.labels[np.concatenate([train_idx, pool])]
    adjacency = graph.adjacency(graph_labels, model_config.tau, model_config.p)
    model = nets.build_model(model_config, adjacency).to(device)
    if synthetic is None:
        return model, False
    if train_config.pretrain_from_anchor:
        folder = fit_synthetic_only(
            synthetic, model_config, train_config, device, context, progress
        )
        pretrained = checkpoint.read(folder)["state_dict"]
    elif train_config.synthetic_pretrain_epochs:
        pretrained = distributed.in_turn(  # made by one process at a time: the first caches it
            lambda: pretrain(cache, synthetic, model_config, train_config, device, progress),
            context,
        )
    else:
        return model, False
    model.load_state_dict(
        {k: v for k, v in pretrained.items() if not k.endswith("adjacency")}, strict=False
    )
    # Pre-training drew random numbers only when it was not cached: start afresh either way.
    seed_everything(train_config.seed, train_config.deterministic)
    return model, True


def _optimiser(model: torch.nn.Module, train_config: cfg.TrainConfig, pretrained: bool):
    """(Adam, its plateau schedule): after pre-training at `synthetic_finetune_lr` if set."""
    lr = train_config.lr
    if pretrained and train_config.synthetic_finetune_lr is not None:
        lr = train_config.synthetic_finetune_lr
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=train_config.lr_factor, patience=train_config.lr_patience
    )
    return optimizer, scheduler


def masked_bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the known labels (y not NaN); with every label known,
    BCEWithLogitsLoss's mean."""
    known = ~torch.isnan(y)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(y), reduction="none"
    )
    return (loss * known).sum() / known.sum().clamp(min=1)


def _log_unknown(cache: Cache, train_idx: np.ndarray, known: np.ndarray, main: bool) -> None:
    """Say, per database, which classes its records do not label (left out of their loss)."""
    if not main:
        return
    names = lbl.abbreviations()
    by_source: dict[str, np.ndarray] = {}
    for i in train_idx:
        by_source.setdefault(lbl.source_of(cache.names[i]), known[i])
    for source, row in sorted(by_source.items()):
        if not row.all():
            unknown = [names[c] for c, k in zip(lbl.CLASSES, row, strict=True) if not k]
            logger.info("%s labels none of %s: left out of its loss", source, ", ".join(unknown))


@dataclass
class SyntheticPool:
    """The synthetic pool's records within a training cache, and where the pool is cached."""

    indices: np.ndarray
    folder: Path


def _warn_absent(labels: np.ndarray, main: bool) -> None:
    absent = [
        lbl.abbreviations()[c] for c, n in zip(lbl.CLASSES, labels.sum(0), strict=True) if n == 0
    ]
    if absent and main:
        logger.warning("no training example of: %s", ", ".join(absent))


def _write_split(path: Path, cache: Cache, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    part = {int(i): "train" for i in train_idx} | {int(i): "validation" for i in val_idx}
    checkpoint.write_rows(
        path, ("record", "part"), [(cache.names[i], part[i]) for i in sorted(part)]
    )


def _synthetic_per_epoch(train_config: cfg.TrainConfig, n_real: int, n_pool: int) -> int:
    """Synthetic records mixed into each epoch on the data."""
    return min(n_pool, round(train_config.synthetic_mix * n_real))


def loader_for(
    cache: Cache,
    train_idx: np.ndarray,
    train_config: cfg.TrainConfig,
    context: distributed.Context,
    device: torch.device,
    generator: torch.Generator,
    *,
    pool: np.ndarray | None = None,
    per_epoch: int = 0,
    known: np.ndarray | None = None,
) -> DataLoader:
    """Shuffled batches of training windows of `train_idx`, and with `per_epoch` > 0 as many
    records drawn afresh each epoch from `pool`; with several processes, this process's share.
    `known`: which labels of each cached record the loss may use (None: all).
    Call `loader.sampler.set_epoch(epoch)` before each epoch."""
    pool = np.zeros(0, dtype=np.int64) if pool is None or not per_epoch else np.asarray(pool)
    crops = dataset.CropDataset(
        cache, np.concatenate([train_idx, pool]), train_config.preprocess.window, known=known
    )
    sampler = dataset.MixSampler(
        len(train_idx), len(pool), per_epoch, train_config.seed, context.rank, context.world_size
    )
    # No more loading processes than cores: on a 2-core machine 4 workers only contend.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(train_config.num_workers, cores or 1)
    return DataLoader(
        crops,
        batch_size=train_config.batch_size,
        sampler=sampler,
        collate_fn=dataset.CropDataset.collate,  # its __getitems__ stacks each batch itself
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=generator,
    )


def _stepper(optimizer, scaler, autocast, device: torch.device, augment: Augment):
    """`train_step` bound to one optimiser, precision and device: step(model, x, y) -> loss."""
    return partial(
        train_step,
        optimizer=optimizer,
        scaler=scaler,
        autocast=autocast,
        loss_fn=masked_bce,
        device=device,
        augment=augment,
    )


def _train_epoch(
    step_model: torch.nn.Module,
    loader: DataLoader,
    step,
    epoch: int,
    context: distributed.Context,
    progress: bool,
) -> float:
    """One pass over the loader; the mean training loss over every process's batches."""
    loader.sampler.set_epoch(epoch)
    step_model.train()
    running, seen = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
    for x, y in bar:
        loss = step(step_model, x, y)
        running += loss.item() * len(x)
        seen += len(x)
        bar.set_postfix(loss=f"{running / seen:.4f}")
    shares = distributed.all_gather((running, seen), context)
    return sum(r for r, _ in shares) / max(sum(n for _, n in shares), 1)


def pretrain(
    cache: Cache,
    synthetic: SyntheticPool,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    device: torch.device,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """The network's weights after `synthetic_pretrain_epochs` epochs on the synthetic pool
    alone (Adam at the configured rate, no validation), cached beside the pool: the same
    configuration and pool give the same weights, so cross-validation folds share them."""
    keys = {k: v for k, v in cfg.to_dict(train_config).items() if k in PRETRAIN_KEYS}
    path = synthetic.folder / f"pretrained-{_key(model_config, keys)}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a damaged file is made again
            logger.warning("%s: unreadable (%s); pre-training again", path, error)
    seed_everything(train_config.seed, train_config.deterministic)
    adjacency = graph.adjacency(cache.labels[synthetic.indices], model_config.tau, model_config.p)
    model = nets.build_model(model_config, adjacency).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
    )
    autocast, scaler = precision(device, train_config.amp)
    generator = torch.Generator().manual_seed(train_config.seed)
    loader = loader_for(
        cache, synthetic.indices, train_config, distributed.Context(), device, generator
    )
    step = _stepper(optimizer, scaler, autocast, device, train_config.augment)
    step_model = torch.compile(model) if train_config.compile else model
    for epoch in range(1, train_config.synthetic_pretrain_epochs + 1):
        start = time.perf_counter()
        loss = _train_epoch(step_model, loader, step, epoch, distributed.Context(), progress)
        if progress:
            tqdm.write(
                f"pre-training on synthetic records, epoch {epoch:3d}  loss {loss:.4f}  "
                f"{time.perf_counter() - start:.0f} s"
            )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint.atomic_save(state, path)
    return state


def _key(model_config: cfg.ModelConfig, settings: dict) -> str:
    """A short digest of the network's configuration and `settings`: the name of a network
    cached beside the synthetic pool."""
    text = json.dumps([cfg.to_dict(model_config), settings], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# Settings that only an ensemble reads (fit_members: its thresholds' cap, how many anchor
# networks, whether its members start from the anchor; fit_replicas: how many replicas; an
# anchor's epochs reach it as `max_epochs`): they shape no synthetic-only network, so its
# cached name leaves them out.
ENSEMBLE_ONLY_KEYS = (
    "firing_cap",
    "firing_cap_prevalence",
    "synthetic_anchors",
    "synthetic_anchor_epochs",
    "pretrain_from_anchor",
    "replicas",
)

# The settings that shape pre-training (with the model's configuration and the pool's folder).
PRETRAIN_KEYS = (
    "lr",
    "weight_decay",
    "batch_size",
    "preprocess",
    "seed",
    "amp",
    "synthetic_pretrain_epochs",
    "augment",
)


def _check_agreement(model: torch.nn.Module, context: distributed.Context) -> None:
    """Log whether the processes ended with the same parameters, as averaged gradients make
    them; a difference means they trained apart (warned, not fatal: rank 0's model is saved)."""
    sums = [float(p.detach().double().sum()) for p in model.parameters()]
    everyone = distributed.all_gather(sums, context)
    if all(np.allclose(other, sums, rtol=1e-6, atol=1e-9) for other in everyone):
        if context.is_main:
            logger.info("the %d processes ended with the same parameters", context.world_size)
    else:
        logger.warning(
            "rank %d: the processes ended with different parameters; saving rank 0's",
            context.rank,
        )
