"""Training data: crops of the cached records for the DataLoader, and stratified partitions.

The records themselves come from the preprocessing cache (`ecg_gcn.cache`), read, converted and
resampled once; an epoch only reads its crops out of the cache's shard files.
"""

from __future__ import annotations

import numpy as np
import torch

from ecg_gcn import header
from ecg_gcn.cache import Cache


class CropDataset(torch.utils.data.Dataset):
    """Fixed-length windows of cached records with their labels, for training.

    Longer records give a random crop each time they are drawn (fresh augmentation every
    epoch); shorter ones are zero-padded at the end, as the paper pads to 18 s.

    A DataLoader fetches a whole batch at once (`__getitems__`): each record's crop is read from
    the cache straight into its row of the batch array. Batches stay float16, as stored: half
    the bytes to pin and move to a GPU; `.float()` them on the device. Pass
    `collate_fn=CropDataset.collate`, since the batch comes out already stacked.
    """

    def __init__(
        self,
        cache: Cache,
        indices: np.ndarray,
        length: int,
        random_crop: bool = True,
        known: np.ndarray | None = None,
    ):
        self.cache = cache
        self.indices = np.asarray(indices)
        self.length = length
        self.random_crop = random_crop
        # (records of the cache, classes) bool, or None for all: an unknown label is NaN in y,
        # and the training loss leaves it out (labels.known_classes).
        self.known = known

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([item])
        return x[0], y[0]

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (B, 12, length) float16, y (B, 24) float32, NaN where unknown) of the records at these
        positions."""
        chosen = self.indices[np.asarray(items, dtype=np.int64)]
        spare = np.maximum(self.cache.lengths[chosen] - self.length, 0)
        # torch's generator, so DataLoader workers draw different, reproducible crops.
        draws = torch.rand(len(chosen), dtype=torch.float64).numpy()
        starts = (draws * (spare + 1)).astype(np.int64) if self.random_crop else 0 * spare
        lengths = np.minimum(self.cache.lengths[chosen] - starts, self.length)
        x = np.empty((len(chosen), len(header.LEADS), self.length), dtype=np.float16)
        rows = zip(x, chosen.tolist(), starts.tolist(), lengths.tolist(), strict=True)
        for row, i, start, m in rows:
            self.cache.read_into(i, row[:, :m], start)
            row[:, m:] = 0
        y = self.cache.labels[chosen].astype(np.float32)
        if self.known is not None:
            y[~self.known[chosen]] = np.nan
        return torch.from_numpy(x), torch.from_numpy(y)

    @staticmethod
    def collate(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The DataLoader's collate_fn: `__getitems__` has stacked the batch already."""
        return batch


class MixSampler(torch.utils.data.Sampler[int]):
    """The positions of one epoch: every one of the `real` first positions of the dataset, plus
    `per_epoch` drawn afresh each epoch (without replacement) from the `pool` positions after
    them, shuffled together. With several processes (`world` > 1), each takes its share of the
    same shuffle, padded by repetition to equal shares, as DistributedSampler does.

    The draw depends on (seed, epoch) alone, so an interrupted training resumes on the same
    epochs. Call `set_epoch` before each epoch.
    """

    def __init__(
        self, real: int, pool: int, per_epoch: int, seed: int, rank: int = 0, world: int = 1
    ):
        if not 0 <= per_epoch <= pool:
            raise ValueError(f"{per_epoch} records per epoch from a pool of {pool}")
        self.real, self.pool, self.per_epoch = real, pool, per_epoch
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-(self.real + self.per_epoch) // self.world)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        drawn = torch.randperm(self.pool, generator=generator)[: self.per_epoch] + self.real
        positions = torch.cat([torch.arange(self.real), drawn])
        positions = positions[torch.randperm(len(positions), generator=generator)]
        total = len(self) * self.world
        if total > len(positions):
            positions = torch.cat([positions, positions[: total - len(positions)]])
        return iter(positions[self.rank :: self.world].tolist())


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
