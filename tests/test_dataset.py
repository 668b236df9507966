"""The preprocessing cache, the training crops and the stratified split."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ecg_gcn import dataset, records, signal, synth
from ecg_gcn import labels as lbl


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    synth.generate(data, 6, seed=3, seconds=8.0)
    synth.generate(data, 2, seed=4, prefix="HZ", fs=257, seconds=12.0)
    return data


def test_the_cache_holds_what_the_shared_preprocessing_gives(folder, tmp_path):
    cache = dataset.build_cache(folder, tmp_path / "cache", n_jobs=1, progress=False)
    assert cache.names == records.find_records(folder)
    for i, name in enumerate(cache.names):
        record = records.load_record(folder / f"{name}.hea")
        expected = signal.preprocess(record.signal, record.fs)
        got = cache.signal(i)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-3)  # float16 storage
        np.testing.assert_array_equal(cache.labels[i], records.labels_of(record.header))
    hz = cache.names.index("HZ00000")
    assert cache.lengths[hz] == round(12.0 * 257 * 500 / 257)


def test_a_fresh_cache_is_reused_and_a_changed_file_rebuilds_it(folder, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in folder.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    cache_dir = tmp_path / "cache"
    dataset.build_cache(data, cache_dir, n_jobs=1, progress=False)
    index = cache_dir / dataset.INDEX_FILE
    built = index.stat().st_mtime_ns
    dataset.build_cache(data, cache_dir, n_jobs=1, progress=False)
    assert index.stat().st_mtime_ns == built  # reused, not rewritten
    header = data / "SYN00000.hea"
    stat = header.stat()
    os.utime(header, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    dataset.build_cache(data, cache_dir, n_jobs=1, progress=False)
    assert index.stat().st_mtime_ns != built


def test_unreadable_records_are_skipped_and_listed(folder, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in folder.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    (data / "SYN00001.mat").write_bytes(b"garbage")
    cache = dataset.build_cache(data, tmp_path / "cache", n_jobs=1, progress=False)
    assert "SYN00001" not in cache.names and len(cache) == 7
    assert [name for name, _ in cache.skipped] == ["SYN00001"]
    assert "SYN00001.mat" in cache.skipped[0][1]


def test_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no recordings"):
        dataset.build_cache(tmp_path, tmp_path / "cache", progress=False)


def test_crops_are_padded_or_cut_to_the_window(folder, tmp_path):
    cache = dataset.build_cache(folder, tmp_path / "cache", n_jobs=1, progress=False)
    short = cache.names.index("SYN00000")  # 8 s = 4000 samples
    long = cache.names.index("HZ00000")  # 12 s = 6000 samples
    crops = dataset.CropDataset(cache, np.array([short, long]), 5000)
    x, y = crops[0]
    assert x.shape == (12, 5000) and y.shape == (lbl.NUM_CLASSES,)
    assert x[:, 4000:].abs().max() == 0 and x[:, :4000].abs().max() > 0
    full = cache.signal(long)
    starts = set()
    for _ in range(5):  # each draw is some 5000-sample stretch of the record
        x = crops[1][0].numpy()
        found = [s for s in range(1001) if np.array_equal(full[:, s : s + 5000], x)]
        assert found
        starts.add(found[0])
    assert len(starts) > 1
    fixed = dataset.CropDataset(cache, np.array([long]), 5000, random_crop=False)
    np.testing.assert_array_equal(fixed[0][0].numpy(), full[:, :5000])


def test_the_stratified_split_keeps_each_class_in_proportion():
    rng = np.random.default_rng(0)
    labels = rng.random((2000, lbl.NUM_CLASSES)) < np.linspace(0.01, 0.3, lbl.NUM_CLASSES)
    train, val = dataset.stratified_split(labels, 0.1, seed=1)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 2000
    assert abs(len(val) - 200) <= 2
    share = labels[val].sum(axis=0) / labels.sum(axis=0)
    assert np.all(np.abs(share - 0.1) < 0.04), share
    again, _ = dataset.stratified_split(labels, 0.1, seed=1)
    np.testing.assert_array_equal(train, again)
    other, _ = dataset.stratified_split(labels, 0.1, seed=2)
    assert not np.array_equal(train, other)
    with pytest.raises(ValueError, match="between 0 and 1"):
        dataset.stratified_split(labels, 1.5, seed=1)
