"""The preprocessing cache: every record read, converted and resampled once, stored on disk.

Each record goes through the one preprocessing path inference uses (`records.load_record`,
`signal.preprocess`, under one `signal.Preprocess`) and is stored at its rate (500 Hz by
default) as float16 mV, lead-major ((12, n) per record), in shard files written in parallel;
an index (JSON) holds each record's shard, offset, length, labels and the size and
modification time of its two files. Epochs then read just their crops
from the shard files: random access, as a memory map gives (the shards are plain arrays that
np.memmap opens), but read with pread (see `Cache.stored` for why), so training memory does not
grow with the data set.

Rebuilding is per record: a record whose files keep their size and modification time keeps its
stored signal; new and changed records are preprocessed into new shards; shards nobody refers to
any more are deleted. Other preprocessing settings (target rate, band-pass, format) rebuild it
all. The index is written last and whole, so an interrupted build leaves the previous cache
usable. float16 keeps about three significant digits: 1 uV at 1 mV, far below ECG noise.

This module does not import torch: the build's worker processes start in a fraction of a
second instead of spending one loading it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from ecg_gcn import header, records, signal
from ecg_gcn import labels as lbl
from ecg_gcn.atomic import write_atomically

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
SHARD_PATTERN = "shard{:05d}.f16"
CACHE_VERSION = 2
CACHE_ENV = "ECG_GCN_CACHE"
# Records per shard file: small enough to balance the work over the cores and to show
# progress, large enough that 43,101 records make under two hundred files.
RECORDS_PER_SHARD = 256
_LEADS = len(header.LEADS)


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


def _stat(data_dir: Path, name: str) -> list[int]:
    """[size, mtime] of the record's header and signal file ([-1, -1] for a missing one)."""
    row = []
    for suffix in (".hea", ".mat"):
        try:
            stat = records.companion(data_dir / name, suffix).stat()
            row += [stat.st_size, stat.st_mtime_ns]
        except OSError:
            row += [-1, -1]
    return row


def _preprocess_shard(
    data_dir: Path, names: list[str], path: Path, settings: signal.Preprocess
) -> list[dict]:
    """Read one shard's records, write their preprocessed signals to `path`, return their
    entries."""
    entries, offset = [], 0
    with open(path, "wb") as f:
        for name in names:
            stat = _stat(data_dir, name)  # before reading: a later change is seen next time
            try:
                record = records.load_record(data_dir / f"{name}.hea")
                x = signal.preprocess(record.signal, record.fs, settings)
                if x.shape[1] == 0:
                    raise ValueError("the recording has no samples")
            except (OSError, ValueError) as error:
                entries.append(
                    {"name": name, "stat": stat, "skipped": f"{type(error).__name__}: {error}"}
                )
                continue
            f.write(x.astype(np.float16).data)  # (12, n), C order
            entries.append(
                {
                    "name": name,
                    "stat": stat,
                    "offset": offset,
                    "length": x.shape[1],
                    "dx": list(record.header.dx),
                }
            )
            offset += x.shape[1]
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
    built: int = 0  # records preprocessed by the call that returned this cache (0: all reused)
    # The file of each shard that is not `folder`/SHARD_PATTERN (a concatenation; `concat`).
    shard_paths: dict[int, Path] = field(default_factory=dict)
    _files: dict[int, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def _file(self, shard: int) -> int:
        # Opened lazily, per process; pread never moves a file position, so processes forked
        # with the descriptor open (DataLoader workers) may share it.
        if shard not in self._files:
            path = self.shard_paths.get(shard, self.folder / SHARD_PATTERN.format(shard))
            self._files[shard] = os.open(path, os.O_RDONLY)
        return self._files[shard]

    def stored(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Record i (or samples start .. start + length of it) as stored: (12, n) float16 mV at
        preprocessing rate, read from its shard file."""
        n = int(self.lengths[i])
        start = min(max(start, 0), n)
        end = n if length is None else min(start + length, n)
        out = np.empty((_LEADS, end - start), dtype=np.float16)
        self.read_into(i, out, start)
        return out

    def read_into(self, i: int, out: np.ndarray, start: int = 0) -> None:
        """Fill `out` (12, m) float16, each lead's row contiguous (a slice of a batch array will
        do), with samples start .. start + m of record i, straight from its shard file.

        pread rather than np.memmap: every page a mapping has touched counts as the process's
        resident memory until the kernel needs it back, so over an epoch a memory map makes
        training look as large as the whole data set. A whole record is one read scattered
        into the 12 rows; a crop is one read per lead.
        """
        n, m = int(self.lengths[i]), out.shape[1]
        if start < 0 or start + m > n:
            raise ValueError(f"samples {start}..{start + m} of a record of {n}")
        fd, first = self._file(self.shards[i]), 2 * _LEADS * int(self.offsets[i])  # bytes
        if m == n:
            _read_exactly(fd, list(out), first)
        elif m:
            for lead, row in enumerate(out):
                _read_exactly(fd, [row], first + 2 * (lead * n + start))

    def signal(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Record i (or a slice of it) as (12, n) float32 mV at the preprocessing rate."""
        return self.stored(i, start, length).astype(np.float32)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"] = {}  # descriptors do not travel to other processes
        return state

    def close(self) -> None:
        """Close the shard files this process opened (they reopen when read again)."""
        while self._files:
            os.close(self._files.popitem()[1])

    def __del__(self) -> None:
        self.close()


def concat(*caches: Cache) -> Cache:
    """One cache of the records of several, in order (the first's records first); their shard
    files stay where they are. Record names must not repeat."""
    names = [name for c in caches for name in c.names]
    if len(set(names)) != len(names):
        raise ValueError("the caches to concatenate share record names")
    shards, shard_paths, first = [], {}, 0
    for c in caches:
        shards += [first + s for s in c.shards]
        for s in set(c.shards):
            shard_paths[first + s] = c.shard_paths.get(s, c.folder / SHARD_PATTERN.format(s))
        first += 1 + max(c.shards, default=-1)
    return Cache(
        folder=caches[0].folder,
        names=names,
        shards=shards,
        offsets=np.concatenate([c.offsets for c in caches]),
        lengths=np.concatenate([c.lengths for c in caches]),
        labels=np.concatenate([c.labels for c in caches]),
        skipped=[entry for c in caches for entry in c.skipped],
        shard_paths=shard_paths,
    )


def load_cache(folder: str | Path) -> Cache:
    """The cache stored in `folder` as its index describes it, without checking any data
    folder (for caches whose records are gone once stored, as the synthetic pool's are)."""
    folder = Path(folder)
    index = _read_index(folder / INDEX_FILE)
    if not index:
        raise ValueError(f"{folder}: no readable cache index ({INDEX_FILE})")
    cache = _from_entries(folder, index["records"], built=0)
    ends = cache.offsets + cache.lengths
    for shard in set(cache.shards):
        need = 2 * _LEADS * int(ends[np.asarray(cache.shards) == shard].max())
        path = folder / SHARD_PATTERN.format(shard)
        if not path.is_file() or path.stat().st_size < need:
            raise ValueError(f"{path}: missing or truncated cache shard")
    return cache


def _intact_shards(folder: Path, entries: list[dict]) -> set[str]:
    """Names of the shards present in `folder` and long enough for every record the index puts
    in them: the records of a truncated shard are preprocessed again, not failed on later."""
    need: dict[str, int] = {}
    for e in entries:
        if "shard" in e:
            name = SHARD_PATTERN.format(e["shard"])
            need[name] = max(need.get(name, 0), 2 * _LEADS * (e["offset"] + e["length"]))
    intact = set()
    for path in folder.glob("shard*.f16"):
        if path.stat().st_size >= need.get(path.name, 0):
            intact.add(path.name)
        else:
            logger.warning("cache shard %s is truncated: preprocessing its records again", path)
    return intact


def _read_exactly(fd: int, buffers: list[np.ndarray], offset: int) -> None:
    """Fill the contiguous arrays `buffers`, in turn, from byte `offset` of the file `fd`."""
    if os.preadv(fd, buffers, offset) != sum(b.nbytes for b in buffers):
        raise OSError(
            f"cache shard truncated near byte {offset}: run training again to rebuild it, or "
            f"delete the cache folder ({CACHE_ENV}, default ~/.cache/ecg_gcn)"
        )


def build_cache(
    data_dir: str | Path,
    cache_dir: str | Path | None = None,
    *,
    preprocess: signal.Preprocess | None = None,
    n_jobs: int = -1,
    progress: bool = True,
) -> Cache:
    """The cache of `data_dir` under the `preprocess` settings (the default ones when None):
    what is fresh is reused, the rest preprocessed in parallel."""
    preprocess = preprocess or signal.Preprocess()
    data_dir = Path(data_dir)
    names = records.find_records(data_dir)
    if not names:
        raise ValueError(f"{data_dir}: no recordings (.hea files) found")
    folder = Path(cache_dir) if cache_dir else cache_dir_for(data_dir)
    # Plain lists and numbers, so they compare equal to what the JSON index gives back.
    settings = {"version": CACHE_VERSION, **preprocess.cache_settings()}
    index = _read_index(folder / INDEX_FILE)
    if index.get("settings") != settings:
        if index:
            logger.info("cache %s: other preprocessing settings; rebuilding it all", folder)
        shutil.rmtree(folder, ignore_errors=True)
        index = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as error:
        raise OSError(
            f"cache folder {folder}: {error.strerror}; point {CACHE_ENV} at a writable folder"
        ) from error

    stats = {name: _stat(data_dir, name) for name in names}
    present = _intact_shards(folder, index.get("records", []))
    kept = {
        e["name"]: e
        for e in index.get("records", [])
        if stats.get(e["name"]) == e["stat"]
        and ("skipped" in e or SHARD_PATTERN.format(e["shard"]) in present)
    }
    todo = [name for name in names if name not in kept]
    if not todo and len(kept) == len(index.get("records", [])):
        return _from_entries(folder, [kept[name] for name in names], built=0)

    # New shards are numbered after every shard the current index refers to, so a build that
    # is interrupted never overwrites what the current index still uses.
    first = 1 + max((e["shard"] for e in index.get("records", []) if "shard" in e), default=-1)
    chunks = [todo[i : i + RECORDS_PER_SHARD] for i in range(0, len(todo), RECORDS_PER_SHARD)]
    jobs = (
        delayed(_preprocess_shard)(
            data_dir, chunk, folder / SHARD_PATTERN.format(first + s), preprocess
        )
        for s, chunk in enumerate(chunks)
    )
    if kept:
        logger.info("cache %s: %d records reused, %d to preprocess", folder, len(kept), len(todo))
    bar = tqdm(total=len(todo), desc="preprocessing", unit="rec", disable=not progress)
    for s, result in enumerate(Parallel(n_jobs=n_jobs, return_as="generator")(jobs)):
        for entry in result:
            if "skipped" not in entry:
                entry["shard"] = first + s
            kept[entry["name"]] = entry
        bar.update(len(result))
    bar.close()
    entries = [kept[name] for name in names]
    index = {"settings": settings, "records": entries}
    write_atomically(folder / INDEX_FILE, lambda tmp: Path(tmp).write_text(json.dumps(index)))
    used = {SHARD_PATTERN.format(e["shard"]) for e in entries if "shard" in e}
    for path in folder.glob("shard*.f16"):
        if path.name not in used:
            path.unlink()
    return _from_entries(folder, entries, built=len(todo))


def _read_index(path: Path) -> dict:
    """The cache index at `path`, or {} when there is none or it is unreadable."""
    try:
        index = json.loads(path.read_text())
        if all("name" in e and "stat" in e for e in index["records"]):
            return index
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}


def _from_entries(folder: Path, entries: list[dict], built: int) -> Cache:
    kept = [e for e in entries if "skipped" not in e]
    labels = np.array([lbl.encode(e["dx"]) for e in kept], dtype=bool).reshape(-1, lbl.NUM_CLASSES)
    return Cache(
        folder=folder,
        names=[e["name"] for e in kept],
        shards=[e["shard"] for e in kept],
        offsets=np.array([e["offset"] for e in kept], dtype=np.int64),
        lengths=np.array([e["length"] for e in kept], dtype=np.int64),
        labels=labels,
        skipped=[(e["name"], e["skipped"]) for e in entries if "skipped" in e],
        built=built,
    )
