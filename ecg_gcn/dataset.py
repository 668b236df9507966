"""Training data: every record read, converted and resampled once into a memory-mapped cache.

Each record goes through the one preprocessing path inference uses (`records.load_record`,
`signal.preprocess`) and is stored at 500 Hz as float16 mV, time-major, in shard files written
in parallel; an index (JSON) holds names, shard offsets, lengths and labels. Epochs then read
crops from the memory maps, so training memory does not grow with the data set. A cache is
reused while every record's files keep their size and modification time and the
preprocessing settings are the same; otherwise it is rebuilt.

float16 keeps about three significant digits: 1 uV at 1 mV, far below ECG noise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from tqdm import tqdm

from ecg_gcn import labels as lbl
from ecg_gcn import records, signal
from ecg_gcn.atomic import write_atomically

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
SHARD_PATTERN = "shard{:04d}.f16"
CACHE_VERSION = 1
CACHE_ENV = "ECG_GCN_CACHE"
_RECORDS_PER_SHARD = 512


def default_cache_root() -> Path:
    """$ECG_GCN_CACHE, else $XDG_CACHE_HOME/ecg_gcn, else ~/.cache/ecg_gcn."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ecg_gcn"


def cache_dir_for(data_dir: str | Path, root: str | Path | None = None) -> Path:
    """One cache folder per data folder (by absolute path), under the cache root."""
    data_dir = Path(data_dir).resolve()
    key = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    return Path(root or default_cache_root()) / f"{data_dir.name}-{key}"


def _fingerprint(data_dir: Path, names: list[str]) -> list[list]:
    """(name, size, mtime) of each record's two files: what decides whether a cache is stale."""
    rows = []
    for name in names:
        row: list = [name]
        for suffix in (".hea", ".mat"):
            try:
                stat = (data_dir / f"{name}{suffix}").stat()
                row += [stat.st_size, stat.st_mtime_ns]
            except OSError:
                row += [-1, -1]
        rows.append(row)
    return rows


def _preprocess_shard(
    data_dir: Path, names: list[str], path: Path, band: tuple[float, float] | None
) -> list[dict]:
    """Read one shard's records, write their 500 Hz signals to `path`, return their entries."""
    entries, arrays, offset = [], [], 0
    for name in names:
        try:
            record = records.load_record(data_dir / f"{name}.hea")
            x = signal.preprocess(record.signal, record.fs, band=band)
            if x.shape[1] == 0:
                raise ValueError("the recording has no samples")
        except (OSError, ValueError) as error:
            entries.append({"name": name, "skipped": f"{type(error).__name__}: {error}"})
            continue
        arrays.append(np.ascontiguousarray(x.T, dtype=np.float16))  # (12, n) -> (n, 12)
        entries.append(
            {
                "name": name,
                "offset": offset,
                "length": x.shape[1],
                "dx": list(record.header.dx),
            }
        )
        offset += x.shape[1]
    with open(path, "wb") as f:
        for array in arrays:
            f.write(array.tobytes())
    return entries


@dataclass
class Cache:
    """The preprocessed records of one data folder (skipped ones listed with their reason)."""

    folder: Path
    names: list[str]
    shards: list[int]
    offsets: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray  # (N, 24) bool
    skipped: list[tuple[str, str]]

    def __post_init__(self) -> None:
        self._maps: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.names)

    def _map(self, shard: int) -> np.ndarray:
        # Opened lazily, per process: DataLoader workers each map the files themselves.
        if shard not in self._maps:
            path = self.folder / SHARD_PATTERN.format(shard)
            if path.stat().st_size == 0:
                return np.zeros((0, len(records.LEADS)), dtype=np.float16)
            self._maps[shard] = np.memmap(path, dtype=np.float16, mode="r").reshape(
                -1, len(records.LEADS)
            )
        return self._maps[shard]

    def signal(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Record i (or a slice of it) as (12, n) float32 mV at 500 Hz."""
        end = self.lengths[i] if length is None else min(start + length, self.lengths[i])
        rows = self._map(self.shards[i])[self.offsets[i] + start : self.offsets[i] + end]
        return rows.T.astype(np.float32)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state


def build_cache(
    data_dir: str | Path,
    cache_dir: str | Path | None = None,
    *,
    band: tuple[float, float] | None = None,
    n_jobs: int = -1,
    progress: bool = True,
) -> Cache:
    """The cache of `data_dir`, reused when fresh, else (re)built in parallel."""
    data_dir = Path(data_dir)
    names = records.find_records(data_dir)
    if not names:
        raise ValueError(f"{data_dir}: no recordings (.hea files) found")
    folder = Path(cache_dir) if cache_dir else cache_dir_for(data_dir)
    # Plain lists and numbers, so they compare equal to what the JSON index gives back.
    settings = {"version": CACHE_VERSION, "fs": signal.TARGET_FS, "band": list(band or []) or None}
    fingerprint = _fingerprint(data_dir, names)
    index = _read_index(folder / INDEX_FILE)
    if index.get("settings") == settings and index.get("fingerprint") == fingerprint:
        return _from_index(folder, index)
    if index:
        logger.info("cache %s is stale: rebuilding it", folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)

    chunks = [names[i : i + _RECORDS_PER_SHARD] for i in range(0, len(names), _RECORDS_PER_SHARD)]
    jobs = (
        delayed(_preprocess_shard)(data_dir, chunk, folder / SHARD_PATTERN.format(s), band)
        for s, chunk in enumerate(chunks)
    )
    results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    bar = tqdm(total=len(names), desc="preprocessing", unit="rec", disable=not progress)
    entries = []
    for shard, result in enumerate(results):
        for entry in result:
            entry["shard"] = shard
        entries += result
        bar.update(len(result))
    bar.close()
    index = {"settings": settings, "fingerprint": fingerprint, "records": entries}
    # The index last, and whole: a cache without one is never used.
    write_atomically(folder / INDEX_FILE, lambda tmp: Path(tmp).write_text(json.dumps(index)))
    return _from_index(folder, index)


def _read_index(path: Path) -> dict:
    """The cache index at `path`, or {} when there is none or it is unreadable."""
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _from_index(folder: Path, index: dict) -> Cache:
    kept = [e for e in index["records"] if "skipped" not in e]
    skipped = [(e["name"], e["skipped"]) for e in index["records"] if "skipped" in e]
    labels = np.array([lbl.encode(e["dx"]) for e in kept], dtype=bool).reshape(-1, lbl.NUM_CLASSES)
    return Cache(
        folder=folder,
        names=[e["name"] for e in kept],
        shards=[e["shard"] for e in kept],
        offsets=np.array([e["offset"] for e in kept], dtype=np.int64),
        lengths=np.array([e["length"] for e in kept], dtype=np.int64),
        labels=labels,
        skipped=skipped,
    )


class CropDataset(torch.utils.data.Dataset):
    """Fixed-length windows of cached records with their labels, for training.

    Longer records give a random crop each time they are drawn (fresh augmentation every
    epoch); shorter ones are zero-padded at the end, as the paper pads to 18 s.
    """

    def __init__(self, cache: Cache, indices: np.ndarray, length: int, random_crop: bool = True):
        self.cache = cache
        self.indices = np.asarray(indices)
        self.length = length
        self.random_crop = random_crop

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(self.indices[item])
        spare = int(self.cache.lengths[i]) - self.length
        start = int(torch.randint(spare + 1, ()).item()) if self.random_crop and spare > 0 else 0
        x = np.zeros((len(records.LEADS), self.length), dtype=np.float32)
        part = self.cache.signal(i, start, self.length)
        x[:, : part.shape[1]] = part
        return torch.from_numpy(x), torch.from_numpy(self.cache.labels[i].astype(np.float32))


def stratified_parts(labels: np.ndarray, proportions: list[float], seed: int) -> np.ndarray:
    """The part (0 .. len(proportions) - 1) of each record: a multi-label stratified partition.

    Iterative stratification (Sechidis et al. 2011), simplified: records are placed rarest
    label first, each into the part that still lacks the most of that label (ties: the part
    that lacks the most records), so every class is spread over the parts in proportion.
    """
    labels = np.asarray(labels, dtype=bool)
    proportions = np.asarray(proportions, dtype=np.float64)
    n = len(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    wanted = proportions * n  # records each part still lacks
    wanted_per_class = np.outer(proportions, labels.sum(axis=0))
    counts = labels.sum(axis=0).astype(float)
    counts[counts == 0] = np.inf
    # The rarest label of each record decides its turn; records without a label go last.
    rarest = np.min(np.where(labels, counts, np.inf), axis=1)
    part = np.full(n, -1)
    for i in order[np.argsort(rarest[order], kind="stable")]:
        if labels[i].any():
            k = int(np.argmin(np.where(labels[i], counts, np.inf)))
            need = wanted_per_class[:, k]
            candidates = np.flatnonzero(need == need.max())
            # Among the parts that lack the rarest label most, the one that lacks the record's
            # other labels most, so common classes stay balanced too.
            others = wanted_per_class[candidates][:, labels[i]].sum(axis=1)
            candidates = candidates[others == others.max()]
        else:
            candidates = np.arange(len(proportions))
        choice = int(candidates[np.argmax(wanted[candidates])])
        part[i] = choice
        wanted[choice] -= 1
        wanted_per_class[choice] -= labels[i]
    return part


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a multi-label stratified hold-out of `fraction`."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction {fraction}: expected a number between 0 and 1")
    part = stratified_parts(labels, [fraction, 1 - fraction], seed)
    return np.flatnonzero(part == 1), np.flatnonzero(part == 0)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0 .. k - 1) of each record: k multi-label stratified folds of equal size."""
    if k < 2 or k > len(labels):
        raise ValueError(f"{k} folds of {len(labels)} records: expected 2 <= folds <= records")
    return stratified_parts(labels, [1 / k] * k, seed)
