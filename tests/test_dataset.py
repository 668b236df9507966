"""The training crops and the stratified split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_gcn import dataset
from ecg_gcn import labels as lbl
from ecg_gcn.cache import build_cache


def test_crops_are_padded_or_cut_to_the_window(small_records, tmp_path):
    cache = build_cache(small_records, tmp_path / "cache", n_jobs=1, progress=False)
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


def test_the_loader_gets_whole_batches_equal_to_the_single_crops(small_records, tmp_path):
    cache = build_cache(small_records, tmp_path / "cache", n_jobs=1, progress=False)
    crops = dataset.CropDataset(cache, np.arange(len(cache)), 4500, random_crop=False)
    loader = torch.utils.data.DataLoader(crops, batch_size=3, collate_fn=crops.collate)
    batches = list(loader)
    assert [len(x) for x, _ in batches] == [3, 3, 2]
    x, y = batches[1]
    assert x.dtype == torch.float16 and x.shape == (3, 12, 4500) and x.is_contiguous()
    for row, item in enumerate(range(3, 6)):
        single_x, single_y = crops[item]
        torch.testing.assert_close(x[row], single_x, rtol=0, atol=0)
        torch.testing.assert_close(y[row], single_y, rtol=0, atol=0)
        np.testing.assert_array_equal(y[row].numpy(), cache.labels[item])


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


CODE_OF = {name: code for code, name in lbl.abbreviations().items()}


def _codes(*abbreviations: str) -> np.ndarray:
    return lbl.encode([CODE_OF[a] for a in abbreviations])


def test_a_class_is_unknown_only_where_its_database_never_gives_it():
    af, nsr, stach, lad = (lbl.CLASS_INDEX[CODE_OF[a]] for a in ("AF", "NSR", "STach", "LAD"))
    names = ["A0001", "A0002", "E00001", "E00002", "SYN0", "SYN1", "HR00001"]
    labels = np.array(
        [
            _codes("AF"),
            _codes("NSR"),
            _codes("STach"),
            _codes("NSR"),
            _codes("LAD"),
            _codes("AF", "STach"),
            _codes("NSR"),  # held out: not among the training records
        ]
    )
    known = lbl.known_classes(names, labels, among=np.arange(6), fully_labelled=[4, 5])
    assert known[:2, af].all() and known[:2, nsr].all()
    assert not known[:2, stach].any() and not known[:2, lad].any()  # CPSC never says them
    assert known[2:4, stach].all() and known[2:4, nsr].all()
    assert not known[2:4, af].any() and not known[2:4, lad].any()
    assert known[4:6].all()  # the simulator's records: every label known
    assert known[6].all()  # a database training never saw
    never = [c for c in range(lbl.NUM_CLASSES) if not labels[:6, c].any()]
    assert never and known[:, never].all()  # carried by no record: negatives everywhere


def test_crops_mark_unknown_labels_as_nan(small_records, tmp_path):
    cache = build_cache(small_records, tmp_path / "cache", n_jobs=1, progress=False)
    known = np.ones(cache.labels.shape, dtype=bool)
    known[1, :5] = False
    crops = dataset.CropDataset(cache, np.array([0, 1]), 4000, known=known)
    _, y = crops.__getitems__([0, 1])
    assert torch.isnan(y[1, :5]).all() and not torch.isnan(y[1, 5:]).any()
    torch.testing.assert_close(y[1, 5:], torch.from_numpy(cache.labels[1, 5:]).float())
    assert not torch.isnan(y[0]).any()
