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

import contextlib
import copy
import csv
import hashlib
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ecg_gcn import config as cfg
from ecg_gcn import dataset, distributed, graph, nets, predict, scoring, thresholds
from ecg_gcn import labels as lbl
from ecg_gcn.cache import Cache, build_cache

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.csv"
SPLIT_FILE = "split.csv"
SKIPPED_FILE = "skipped.csv"
STATE_FILE = "training_state.pt"
HISTORY_FIELDS = (
    "epoch",
    "loss",
    "val_loss",
    "challenge_metric",
    "macro_f1",
    "threshold",
    "lr",
    "seconds",
)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """One seed for Python and torch (CPU and CUDA); numpy randomness here always takes an
    explicit Generator seeded from the configuration."""
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _precision(device: torch.device, amp: bool):
    """Autocast on CUDA (bf16 where supported, else fp16 with a grad scaler); fp32 on the CPU."""
    if device.type != "cuda" or not amp:
        return contextlib.nullcontext, torch.amp.GradScaler(enabled=False)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _write_rows(path: Path, fields: tuple[str, ...] | list[str], rows: list) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        writer.writerows(rows)


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


def _load_state(path: Path, signature: str) -> dict | None:
    """The training state saved at `path` if it belongs to this very training, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a state we cannot read is a state we do not resume
        logger.warning("%s: cannot resume from it (%s); starting afresh", path, error)
        return None
    if not isinstance(state, dict) or state.get("signature") != signature:
        logger.warning(
            "%s: saved by another training (data or configuration); starting afresh", path
        )
        return None
    return state


def _validate(
    predictor: predict.Predictor, cache: Cache, indices: np.ndarray
) -> tuple[np.ndarray, float]:
    """(probabilities, BCE loss) of the validation records, through the inference path."""
    predictor.model.eval()
    # A generator: the validation records are read one by one, never all held at once.
    probabilities = predictor.probabilities_many(cache.signal(int(i)) for i in indices)
    truth = cache.labels[indices].astype(np.float64)
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
            lambda: build_cache(data_dir, cache_dir, band=train_config.band, progress=progress),
            context,
        )
        if cache.skipped and context.is_main:
            _write_rows(model_dir / SKIPPED_FILE, ("record", "reason"), cache.skipped)
            logger.warning(
                "skipped %d unreadable records (listed in %s)",
                len(cache.skipped),
                model_dir / SKIPPED_FILE,
            )
        if len(cache) == 0:
            raise ValueError(
                f"{data_dir}: none of the recordings could be read; nothing to train on"
            )
        return fit(
            cache,
            np.arange(len(cache)),
            model_dir,
            model_config,
            train_config,
            device=device,
            context=context,
            progress=progress,
        )


def train_step(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    autocast,
    loss_fn: torch.nn.Module,
    device: torch.device,
) -> torch.Tensor:
    """One optimiser step on a batch as the loader gives it (x float16 as cached, moved to the
    device and made float32 there); returns the batch's loss."""
    x = x.to(device, non_blocking=True).float()
    y = y.to(device, non_blocking=True)
    with autocast():
        loss = loss_fn(model(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def _loader(
    crops: dataset.CropDataset,
    train_config: cfg.TrainConfig,
    context: distributed.Context,
    device: torch.device,
    generator: torch.Generator,
) -> DataLoader:
    """Shuffled batches of training windows; with several processes, this process's share
    (DistributedSampler: a fresh shuffle per epoch by `set_epoch`, equal shares)."""
    sampler = None
    if context.distributed:
        sampler = DistributedSampler(
            crops,
            num_replicas=context.world_size,
            rank=context.rank,
            shuffle=True,
            seed=train_config.seed,
        )
    # No more loading processes than cores: on a 2-core machine 4 workers only contend.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(train_config.num_workers, cores or 1)
    return DataLoader(
        crops,
        batch_size=train_config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=dataset.CropDataset.collate,  # its __getitems__ stacks each batch itself
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=generator,
    )


def fit(
    cache: Cache,
    indices: np.ndarray,
    model_dir: str | Path,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    *,
    device: torch.device | None = None,
    context: distributed.Context | None = None,
    progress: bool = True,
) -> dict:
    """Fit the model on the cached records `indices` (a validation part is held out of them
    to pick the epoch and tune the thresholds); write it into `model_dir`. Cross-validation
    calls this with each fold's training part, so nothing of the scored fold is ever seen.

    `context` places this process among several (see `train`); by default it is the only one.
    """
    context = context or distributed.Context()
    main = context.is_main
    model_dir = Path(model_dir)
    if main:
        model_dir.mkdir(parents=True, exist_ok=True)
    indices = np.asarray(indices)
    seed_everything(train_config.seed, train_config.deterministic)
    device = device or predict.pick_device()
    autocast, scaler = _precision(device, train_config.amp)
    absent = [
        lbl.abbreviations()[c]
        for c, n in zip(lbl.CLASSES, cache.labels[indices].sum(0), strict=True)
        if n == 0
    ]
    if absent and main:
        logger.warning("no training example of: %s", ", ".join(absent))

    train_idx, val_idx = _split(
        cache.labels, indices, train_config.validation_fraction, train_config.seed
    )
    if main:
        part = {int(i): "train" for i in train_idx} | {int(i): "validation" for i in val_idx}
        _write_rows(
            model_dir / SPLIT_FILE,
            ("record", "part"),
            [(cache.names[i], part[i]) for i in sorted(part)],
        )

    adjacency = graph.adjacency(cache.labels[train_idx], model_config.tau, model_config.p)
    model = nets.build_model(model_config, adjacency).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=train_config.lr_factor, patience=train_config.lr_patience
    )
    # Every process draws its own crops and dropout masks: rank 0 keeps the seed's stream (that
    # of a single-process run), the others start from the seed plus their rank.
    if context.rank:
        torch.manual_seed(train_config.seed + context.rank)
    generator = torch.Generator().manual_seed(train_config.seed + context.rank)
    window = train_config.window_samples
    loader = _loader(
        dataset.CropDataset(cache, train_idx, window), train_config, context, device, generator
    )
    if context.distributed:
        logger.info(
            "rank %d of %d: %d training windows per epoch in %d batches",
            context.rank,
            context.world_size,
            len(loader.sampler),
            len(loader),
        )
    predictor = predict.Predictor(
        model, model_config, np.full(lbl.NUM_CLASSES, 0.5), window, device, train_config.band
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history: list[list] = []
    best = {"score": -math.inf, "epoch": 0, "state": None, "probabilities": None}
    stale, first_epoch = 0, 1
    signature = _signature(model_config, train_config, cache, indices)
    # Rank 0 alone reads the model folder (on several nodes, only its node has it).
    resumed = _load_state(model_dir / STATE_FILE, signature) if main else None
    resumed = distributed.broadcast(resumed, context)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        # A process the interrupted run did not have keeps the fresh stream drawn above.
        if context.rank < len(resumed["rng"]):
            torch_rng, loader_rng = resumed["rng"][context.rank]
            torch.set_rng_state(torch_rng)
            generator.set_state(loader_rng)
        history, stale = resumed["history"], resumed["stale"]
        first_epoch = resumed["epoch"] + 1
        if main:
            best_checkpoint = torch.load(
                model_dir / predict.CHECKPOINT_FILE, map_location=device, weights_only=True
            )
            best = {
                "score": resumed["best_score"],
                "epoch": resumed["best_epoch"],
                "state": best_checkpoint["state_dict"],
                "probabilities": resumed["best_probabilities"].numpy(),
            }
            logger.warning(
                "resuming after epoch %d from %s", resumed["epoch"], model_dir / STATE_FILE
            )
    # Compiled first, then wrapped (nanoGPT's order); the plain `model` is what gets saved.
    step_model = torch.compile(model) if train_config.compile else model
    step_model = distributed.wrap(step_model, context, device)
    for epoch in range(first_epoch, train_config.max_epochs + 1):
        start = time.perf_counter()
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        model.train()
        running, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
        for x, y in bar:
            loss = train_step(step_model, x, y, optimizer, scaler, autocast, loss_fn, device)
            running += loss.item() * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{running / seen:.4f}")
        shares = distributed.all_gather((running, seen), context)
        running, seen = sum(r for r, _ in shares), sum(n for _, n in shares)
        # Rank 0 validates alone while the others wait for its verdict below.
        val_loss, stop = math.nan, False
        if main:
            probabilities, val_loss = _validate(predictor, cache, val_idx)
            val_labels = cache.labels[val_idx]
            cut, score = thresholds.tune(probabilities, val_labels, mode="global")
            macro_f1 = scoring.f_measure(val_labels, thresholds.binarize(probabilities, cut))[0]
            lr = optimizer.param_groups[0]["lr"]
            seconds = time.perf_counter() - start
            train_loss = running / max(seen, 1)
            history.append(
                [epoch, train_loss, val_loss, score, macro_f1, float(cut[0]), lr, seconds]
            )
            _write_rows(model_dir / HISTORY_FILE, HISTORY_FIELDS, history)
            logger.debug(
                "epoch %d: loss %.4f, validation loss %.4f, challenge %.3f, F1 %.3f (%.0f s)",
                epoch,
                train_loss,
                val_loss,
                score,
                macro_f1,
                seconds,
            )
            if progress:
                tqdm.write(
                    f"epoch {epoch:3d}  loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                    f"challenge {score:.3f}  F1 {macro_f1:.3f}  lr {lr:.0e}  {seconds:.0f} s"
                )
            criterion = score if train_config.select_metric == "challenge" else -val_loss
            if criterion > best["score"]:
                best = {
                    "score": criterion,
                    "epoch": epoch,
                    "state": copy.deepcopy(model.state_dict()),
                    "probabilities": probabilities,
                }
                predict.save_checkpoint(
                    model_dir / predict.CHECKPOINT_FILE,
                    model,
                    model_config,
                    train_config,
                    cut,
                    epoch=epoch,
                )
                stale = 0
            else:
                stale += 1
            stop = stale > train_config.early_stop_patience
        # Every process steps its scheduler on the same loss and stops with rank 0.
        val_loss, stop = distributed.broadcast((val_loss, stop), context)
        scheduler.step(val_loss)
        rng = distributed.all_gather((torch.get_rng_state(), generator.get_state()), context)
        if main:
            predict.atomic_save(
                {
                    "signature": signature,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng,  # (torch, loader) generator states, one pair per rank
                    "history": history,
                    "stale": stale,
                    "best_score": float(best["score"]),
                    "best_epoch": best["epoch"],
                    "best_probabilities": torch.from_numpy(best["probabilities"]),
                },
                model_dir / STATE_FILE,
            )
        if stop:
            break

    if context.distributed:
        _check_agreement(model, context)
    summary: dict | None = None
    if main:
        model.load_state_dict(best["state"])
        val_labels = cache.labels[val_idx]
        final, score = thresholds.tune(
            best["probabilities"], val_labels, mode=train_config.threshold_mode
        )
        predict.save_checkpoint(
            model_dir / predict.CHECKPOINT_FILE,
            model,
            model_config,
            train_config,
            final,
            epoch=best["epoch"],
        )
        (model_dir / STATE_FILE).unlink(missing_ok=True)
        summary = {"epoch": best["epoch"], "challenge_metric": score, "thresholds": final}
    if context.distributed:
        # Every process returns rank 0's best model, once it is saved.
        state = {k: v.cpu() for k, v in model.state_dict().items()} if main else None
        summary, state = distributed.broadcast((summary, state), context)
        model.load_state_dict(state)
    predictor.thresholds = summary["thresholds"]
    model.eval()
    return {**summary, "predictor": predictor}


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
