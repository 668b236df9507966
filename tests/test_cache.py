"""The preprocessing cache: contents, reuse, per-record rebuilds, skipped records."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import scipy.io

from ecg_gcn import records, signal, synth
from ecg_gcn.cache import INDEX_FILE, build_cache
from ecg_gcn.signal import Preprocess


@pytest.fixture
def data(small_records, tmp_path):
    """A private copy of the records, free to change."""
    copy = tmp_path / "data"
    shutil.copytree(small_records, copy)
    return copy


def _shards(cache_dir):
    return sorted(path.name for path in cache_dir.glob("shard*.f16"))


def _touch(path, seconds=1):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 10**9))


def test_the_cache_holds_what_the_shared_preprocessing_gives(small_records, tmp_path):
    cache = build_cache(small_records, tmp_path / "cache", n_jobs=1, progress=False)
    assert cache.names == records.find_records(small_records) and cache.built == 8
    for i, name in enumerate(cache.names):
        record = records.load_record(small_records / f"{name}.hea")
        expected = signal.preprocess(record.signal, record.fs)
        got = cache.signal(i)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-3)  # float16 storage
        np.testing.assert_array_equal(cache.labels[i], records.labels_of(record.header))
        np.testing.assert_array_equal(cache.signal(i, 100, 50), got[:, 100:150])
    hz = cache.names.index("HZ00000")
    assert cache.lengths[hz] == round(12.0 * 257 * 500 / 257)


def test_a_fresh_cache_is_reused_without_reading_a_record(data, tmp_path):
    cache_dir = tmp_path / "cache"
    first = build_cache(data, cache_dir, n_jobs=1, progress=False)
    index = cache_dir / INDEX_FILE
    written = index.stat().st_mtime_ns
    again = build_cache(data, cache_dir, n_jobs=1, progress=False)
    assert again.built == 0 and index.stat().st_mtime_ns == written
    assert again.names == first.names
    np.testing.assert_array_equal(again.signal(3), first.signal(3))


def test_only_new_and_changed_records_are_preprocessed_again(data, tmp_path):
    cache_dir = tmp_path / "cache"
    before = build_cache(data, cache_dir, n_jobs=1, progress=False)
    old_shards = _shards(cache_dir)
    kept = before.signal(before.names.index("SYN00002"))

    # One record rewritten with another's signal, one touched, one removed, one added.
    shutil.copyfile(data / "SYN00001.mat", data / "SYN00000.mat")
    _touch(data / "SYN00003.hea")
    (data / "SYN00004.hea").unlink()
    (data / "SYN00004.mat").unlink()
    synth.generate(data, 1, seed=9, prefix="NEW", seconds=8.0)

    after = build_cache(data, cache_dir, n_jobs=1, progress=False)
    assert after.built == 3  # SYN00000, SYN00003, NEW00000
    assert after.names == records.find_records(data)
    assert "SYN00004" not in after.names and "NEW00000" in after.names
    np.testing.assert_array_equal(after.signal(after.names.index("SYN00002")), kept)
    for name in ("SYN00000", "NEW00000"):
        record = records.load_record(data / f"{name}.hea")
        np.testing.assert_allclose(
            after.signal(after.names.index(name)),
            signal.preprocess(record.signal, record.fs),
            atol=2e-3,
            rtol=1e-3,
        )
    assert not np.array_equal(
        after.signal(after.names.index("SYN00000")), before.signal(before.names.index("SYN00000"))
    )
    assert old_shards[0] in _shards(cache_dir)  # still holds the unchanged records
    assert build_cache(data, cache_dir, n_jobs=1, progress=False).built == 0


def test_unreferenced_shards_are_deleted(data, tmp_path):
    cache_dir = tmp_path / "cache"
    build_cache(data, cache_dir, n_jobs=1, progress=False)
    (cache_dir / "shard09999.f16").write_bytes(b"left by an interrupted build")
    for name in records.find_records(data):
        _touch(data / f"{name}.mat")
    cache = build_cache(data, cache_dir, n_jobs=1, progress=False)
    assert cache.built == 8
    assert _shards(cache_dir) == ["shard00001.f16"]  # shard 0 lost its last record


BANDED = Preprocess(band=(0.5, 45.0))


def test_other_settings_or_a_lost_shard_rebuild_what_they_must(data, tmp_path):
    cache_dir = tmp_path / "cache"
    build_cache(data, cache_dir, n_jobs=1, progress=False)
    banded = build_cache(data, cache_dir, preprocess=BANDED, n_jobs=1, progress=False)
    assert banded.built == 8
    for path in cache_dir.glob("shard*.f16"):
        path.unlink()
    assert build_cache(data, cache_dir, preprocess=BANDED, n_jobs=1, progress=False).built == 8
    (cache_dir / INDEX_FILE).write_text("{not json")
    assert build_cache(data, cache_dir, preprocess=BANDED, n_jobs=1, progress=False).built == 8


def test_a_truncated_shard_is_rebuilt_by_itself(data, tmp_path):
    cache_dir = tmp_path / "cache"
    first = build_cache(data, cache_dir, n_jobs=1, progress=False)
    expected = [first.signal(i).copy() for i in range(len(first))]
    (shard,) = cache_dir.glob("shard*.f16")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    again = build_cache(data, cache_dir, n_jobs=1, progress=False)
    assert again.built == len(first)
    for i, x in enumerate(expected):
        np.testing.assert_array_equal(again.signal(i), x)


def test_the_parallel_build_gives_the_same_cache(data, tmp_path):
    one = build_cache(data, tmp_path / "one", n_jobs=1, progress=False)
    two = build_cache(data, tmp_path / "two", n_jobs=2, progress=False)
    assert one.names == two.names
    for i in range(len(one)):
        np.testing.assert_array_equal(one.signal(i), two.signal(i))


def test_unreadable_records_are_skipped_and_listed(data, tmp_path):
    (data / "SYN00001.mat").write_bytes(b"garbage")
    cache_dir = tmp_path / "cache"
    cache = build_cache(data, cache_dir, n_jobs=1, progress=False)
    assert "SYN00001" not in cache.names and len(cache) == 7
    assert [name for name, _ in cache.skipped] == ["SYN00001"]
    assert "SYN00001.mat" in cache.skipped[0][1]
    again = build_cache(data, cache_dir, n_jobs=1, progress=False)
    assert again.built == 0 and again.skipped == cache.skipped  # not retried while unchanged


def test_recordings_outside_the_bounds_are_skipped_before_they_are_loaded(data, tmp_path):
    # a stated rate of 5e9 Hz, and a compressed `.mat` that declares 12 x 3,000,000 samples:
    # once, each killed a worker process and with it the whole training
    header = (data / "SYN00002.hea").read_text().splitlines(keepends=True)
    fields = header[0].split()
    fields[2] = "5e9"
    (data / "SYN00002.hea").write_text(" ".join(fields) + "\n" + "".join(header[1:]))
    bomb = {"val": np.zeros((12, records.MAX_SAMPLES + 1), np.int16)}
    scipy.io.savemat(data / "SYN00003.mat", bomb, do_compression=True)
    cache = build_cache(data, tmp_path / "cache", n_jobs=2, progress=False)
    assert len(cache) == 6
    reasons = dict(cache.skipped)
    assert sorted(reasons) == ["SYN00002", "SYN00003"]
    assert "5e+09 Hz is outside the plausible bounds" in reasons["SYN00002"]
    assert "(12, 2000001) is outside the plausible bounds" in reasons["SYN00003"]


def test_upper_case_extensions_are_read_and_a_record_is_never_counted_twice(data, tmp_path):
    for suffix in (".hea", ".mat"):  # SYN00001 as SYN00001.HEA / SYN00001.MAT only
        (data / f"SYN00001{suffix}").rename(data / f"SYN00001{suffix.upper()}")
    # SYN00002 twice: the lower-case pair and an upper-case copy of its header
    (data / "SYN00002.HEA").write_bytes((data / "SYN00002.hea").read_bytes())
    cache = build_cache(data, tmp_path / "cache", n_jobs=1, progress=False)
    assert cache.skipped == []
    assert len(cache) == 8 and sorted(cache.names) == sorted(set(cache.names))
    assert "SYN00001" in cache.names


def test_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no recordings"):
        build_cache(tmp_path, tmp_path / "cache", progress=False)
