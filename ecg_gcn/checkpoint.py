"""The model folder: what train_model.py writes into it, under which names, and how the
checkpoint is saved and read back.

One checkpoint file holds everything inference needs (weights of the unwrapped model, both
configurations as plain dicts, classes, thresholds, the preprocessing settings) and loads with
`torch.load(..., weights_only=True)`: nothing from a model folder is unpickled. Every file is
written atomically: a reader never meets half of one, and a symlink planted in its place is
replaced, never followed.

Format 2 stores the preprocessing settings (signal.Preprocess) once, under "preprocessing", and
not again in the training configuration. A checkpoint of format 1 does not load: retrain it.
"""

from __future__ import annotations

import csv
import logging
import pickle
from pathlib import Path

import numpy as np
import torch

from ecg_gcn import config as cfg
from ecg_gcn import labels as lbl
from ecg_gcn import signal
from ecg_gcn.atomic import write_atomically

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"  # the trained model: all that inference reads
STATE_FILE = "training_state.pt"  # an unfinished training's state, to resume from
HISTORY_FILE = "history.csv"  # one row per epoch
SPLIT_FILE = "split.csv"  # which records trained and which validated
SKIPPED_FILE = "skipped.csv"  # the records training could not read, and why
REPORT_FOLDER = "report"  # `python -m ecg_gcn report`
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
FORMAT = 2
_KEYS = ("format", "classes", "model_config", "state_dict", "thresholds", "preprocessing")


def save(
    path: str | Path,
    model: torch.nn.Module,
    model_config: cfg.ModelConfig,
    train_config: cfg.TrainConfig,
    thresholds: np.ndarray,
    **extra: object,
) -> Path:
    """Write the self-sufficient checkpoint atomically (never a half-written model); `extra`
    holds plain values such as the epoch it comes from."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model)  # DistributedDataParallel wrapper
    training = cfg.to_dict(train_config)
    del training["preprocess"]  # stored once, below
    state = {
        "format": FORMAT,
        "model_config": cfg.to_dict(model_config),
        "train_config": training,
        "classes": list(lbl.CLASSES),
        "thresholds": [float(t) for t in thresholds],
        "preprocessing": train_config.preprocess.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    return atomic_save(state, path)


def atomic_save(obj: object, path: str | Path) -> Path:
    """torch.save to a temporary file beside `path`, then rename: `path` is always whole."""
    return write_atomically(path, lambda tmp: torch.save(obj, tmp))


def write_rows(path: Path, fields: tuple[str, ...] | list[str], rows: list) -> None:
    """A csv written atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(fields)
            writer.writerows(rows)

    write_atomically(path, write)


def read(model_dir: str | Path, device: torch.device | str = "cpu") -> dict:
    """The checkpoint of `model_dir` as saved, tensors on `device`: a FileNotFoundError when
    there is none, a ValueError naming the file when it cannot be read safely."""
    path = Path(model_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no trained model here; train one with train_model.py DATA {model_dir}"
        )
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():  # not torch's hint to load it unsafely
            raise ValueError(
                f"{path}: refused: it holds Python objects, not only tensors and plain data"
            ) from error
        raise ValueError(
            f"{path}: not a loadable checkpoint: damaged (not a torch file)"
        ) from error
    except Exception as error:  # torch raises RuntimeError, EOFError... on a damaged file
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        reason = f"{type(error).__name__}: {first}" if first else type(error).__name__
        raise ValueError(
            f"{path}: not a loadable checkpoint: empty, truncated or damaged ({reason})"
        ) from error


def validated(state: object, path: Path) -> tuple:
    """(model_config, thresholds, preprocess) of a checkpoint, each checked: a checkpoint that
    loads but is wrong must fail here, naming the field, not answer nonsense later."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a checkpoint of format {FORMAT}")
    missing = [key for key in _KEYS if key not in state]
    if missing:
        raise ValueError(f"{path}: the checkpoint lacks {', '.join(missing)}")
    if list(state["classes"]) != list(lbl.CLASSES):
        raise ValueError(f"{path}: trained on other classes than weights.csv's")
    try:
        model_config = cfg.model_config_from_dict(state["model_config"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: model_config: {error}") from error
    thresholds = np.asarray(state["thresholds"], dtype=np.float64)
    if thresholds.shape != (lbl.NUM_CLASSES,) or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise ValueError(
            f"{path}: thresholds must be {lbl.NUM_CLASSES} numbers in [0, 1], "
            f"got shape {thresholds.shape}"
        )
    preprocessing = state["preprocessing"]
    fields = ("window_seconds", "band", "fs")
    if not isinstance(preprocessing, dict) or set(preprocessing) != set(fields):
        raise ValueError(f"{path}: preprocessing must hold exactly {', '.join(fields)}")
    try:
        preprocess = signal.Preprocess.from_dict(preprocessing)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: preprocessing.{error}") from None
    return model_config, thresholds, preprocess


def load_state(model_dir: Path, signature: str) -> dict | None:
    """The training state saved in `model_dir` if it belongs to this very training (its
    `signature`), else None."""
    path = Path(model_dir) / STATE_FILE
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
