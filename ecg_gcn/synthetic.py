"""Synthetic records as part of training: a pool drawn by seed, made and cached once.

`train_model.py` pre-trains the network on records of the simulator (`ecg_gcn.synth`), whose
every scored class leaves a physiologically motivated trace, then trains it on the data with
synthetic records mixed into each epoch (`ecg_gcn.train`). A few hundred real records teach a
network their own hospital; the simulator's physiology is what survives a hospital it never saw
(README, "New hospitals"; BENCHMARKS.md).

The pool is made inside training, with no command for the user to run: the records are written
to a temporary folder, preprocessed into a cache of their own under the cache root
(`$ECG_GCN_CACHE`), and deleted; the cache alone is kept. Its folder is named by the number of
records, the seed and a digest of the simulator's source, so a changed simulator makes a new
pool, and the same (n, seed) always gives the same records (`synth.generate` draws record i
from the i-th child of the seed alone).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

from ecg_gcn import cache as preprocessing
from ecg_gcn import synth
from ecg_gcn.signal import TARGET_FS, Preprocess

logger = logging.getLogger(__name__)

PREFIX = "SYNTHETIC"  # record names of the pool: SYNTHETIC00000, ...
DONE_FILE = "pool.json"  # written last: the pool is complete
# An ensemble's fresh synthetic records for its thresholds (TrainConfig.synthetic_threshold_records)
# are drawn from the pool's seed plus this: another stream, so none of them is in the pool.
THRESHOLD_SEED_OFFSET = 1_000_000


def simulator_digest() -> str:
    """A short digest of the simulator's source: a changed simulator gives another pool."""
    digest = hashlib.sha1()
    for module in ("synth.py", "synth_beats.py"):
        digest.update((Path(synth.__file__).parent / module).read_bytes())
    return digest.hexdigest()[:10]


def pool_dir(n: int, seed: int, preprocess: Preprocess, root: str | Path | None) -> Path:
    """Where the pool of `n` records drawn from `seed` is cached, preprocessed by `preprocess`
    (its name tells a band-pass or a rate other than 500 Hz)."""
    root = Path(root) if root else preprocessing.default_cache_root()
    band = preprocess.band
    tag = "" if band is None else f"-band{band[0]:g}-{band[1]:g}"
    tag += "" if preprocess.fs == TARGET_FS else f"-{preprocess.fs}Hz"
    return root / f"synthetic-{simulator_digest()}-n{n}-seed{seed}{tag}"


def pool(
    n: int,
    seed: int,
    *,
    preprocess: Preprocess | None = None,
    root: str | Path | None = None,
    progress: bool = True,
) -> preprocessing.Cache:
    """The cached pool of `n` synthetic records drawn from `seed`, made first if need be, under
    the `preprocess` settings (the default ones when None)."""
    preprocess = preprocess or Preprocess()
    folder = pool_dir(n, seed, preprocess, root)
    settings = {"n": n, "seed": seed, "band": preprocess.cache_settings()["band"]}
    if preprocess.fs != TARGET_FS:
        settings["fs"] = preprocess.fs
    try:
        if json.loads((folder / DONE_FILE).read_text()) == settings:
            return preprocessing.load_cache(folder)
    except (OSError, ValueError):
        pass  # absent, unfinished or damaged: made again below
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        logger.warning("making %d synthetic records (seed %d) into %s", n, seed, folder)
    with tempfile.TemporaryDirectory(prefix=".synthetic-", dir=folder.parent) as tmp:
        synth.generate(tmp, n, seed, n_jobs=-1, prefix=PREFIX, progress=progress)
        cache = preprocessing.build_cache(tmp, folder, preprocess=preprocess, progress=progress)
    (folder / DONE_FILE).write_text(json.dumps(settings))
    return cache
