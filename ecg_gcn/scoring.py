"""The 2020 Challenge's metrics, vectorised with numpy.

Each function gives the official scorer's number to the last bit (evaluation-2020 at 8ad0242):
the golden files in tests/data/scorer_cases pin that. Where the official code sums in a loop,
these functions sum in the same order (a running sum, not numpy's pairwise `np.sum`, which may
differ in the last bit), so a value that rounds differently at 3 decimals cannot arise.

`ChallengeMetric` is the fast form for threshold tuning: labels fixed, outputs varied thousands
of times, one matrix product each (equal to the exact form to about 1e-15).

Arrays: labels and outputs are (N, K) boolean, scores (N, K) float, K = 24 classes in
labels.CLASSES order.
"""

from __future__ import annotations

import numpy as np

from ecg_gcn import labels as lbl

# Recordings per block of the exact challenge metric's (n, K, K) contributions: about 45 MB.
_CHUNK = 10_000


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den == 0, as the official code writes `float('nan')` there."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.true_divide(num, den)
    return np.where(den == 0, np.nan, out)


def _nanmean(values: np.ndarray) -> float:
    """np.nanmean without the warning on an all-NaN input (the result is NaN all the same)."""
    if np.all(np.isnan(values)):
        return float("nan")
    return float(np.nanmean(values))


def auc_per_class(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AUPRC of each class, from every distinct score value used as a threshold.

    AUROC is the trapezoidal area under TNR against TPR; AUPRC is the step sum
    sum_j (TPR_{j+1} - TPR_j) PPV_{j+1}. A class without positives (or negatives) is NaN.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    num_classes = labels.shape[1]
    auroc = np.zeros(num_classes)
    auprc = np.zeros(num_classes)
    for k in range(num_classes):
        auroc[k], auprc[k] = _auc_one(labels[:, k], scores[:, k])
    return auroc, auprc


def _auc_one(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    # Thresholds: one above the maximum, then each distinct value, descending.
    distinct = np.unique(s)[::-1]
    # Records at or above each threshold; -s_desc is ascending, so searchsorted counts them.
    at_or_above = np.searchsorted(-s_desc, -distinct, side="right")
    positives_seen = np.concatenate(([0], np.cumsum(y_desc)))
    negatives_seen = np.concatenate(([0], np.cumsum(~y_desc)))
    tp = np.concatenate(([0], positives_seen[at_or_above])).astype(np.float64)
    fp = np.concatenate(([0], negatives_seen[at_or_above])).astype(np.float64)
    num_pos = float(np.count_nonzero(y))
    num_neg = float(y.size - num_pos)
    tpr = _divide(tp, np.full_like(tp, num_pos))
    tnr = _divide(num_neg - fp, np.full_like(fp, num_neg))
    ppv = _divide(tp, tp + fp)
    d_tpr = tpr[1:] - tpr[:-1]
    # Same operation order as the official loop: 0.5 * dTPR * (TNR_{j+1} + TNR_j).
    auroc_terms = 0.5 * d_tpr * (tnr[1:] + tnr[:-1])
    auprc_terms = d_tpr * ppv[1:]
    return float(np.cumsum(auroc_terms)[-1]), float(np.cumsum(auprc_terms)[-1])


def auc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(macro AUROC, macro AUPRC, AUROC per class, AUPRC per class); macro = NaN-mean."""
    auroc, auprc = auc_per_class(labels, scores)
    return _nanmean(auroc), _nanmean(auprc), auroc, auprc


def accuracy(labels: np.ndarray, outputs: np.ndarray) -> float:
    """Fraction of recordings whose whole label row is predicted exactly."""
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    correct = int(np.count_nonzero(np.all(labels == outputs, axis=1)))
    return float(correct) / float(labels.shape[0])


def f_measure(labels: np.ndarray, outputs: np.ndarray) -> tuple[float, np.ndarray]:
    """(macro F1, F1 per class) from ordinary per-class confusion counts; NaN where undefined."""
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    tp = np.count_nonzero(labels & outputs, axis=0).astype(np.float64)
    fp = np.count_nonzero(~labels & outputs, axis=0).astype(np.float64)
    fn = np.count_nonzero(labels & ~outputs, axis=0).astype(np.float64)
    per_class = _divide(2 * tp, 2 * tp + fp + fn)
    return _nanmean(per_class), per_class


def beta_measures(labels: np.ndarray, outputs: np.ndarray, beta: float = 2) -> tuple[float, float]:
    """Macro F-beta and G-beta from confusion counts where each recording weighs 1/|labels|."""
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    weight = 1.0 / np.maximum(labels.sum(axis=1), 1).astype(np.float64)
    cells = np.stack([labels & outputs, ~labels & outputs, labels & ~outputs], axis=1)
    # Sequential sum over recordings, in file order, as the official loop adds them.
    tp, fp, fn = np.cumsum(cells * weight[:, None, None], axis=0)[-1]
    b2 = beta**2
    f_beta = _divide((1 + b2) * tp, (1 + b2) * tp + fp + b2 * fn)
    g_beta = _divide(tp, tp + fp + beta * fn)
    return _nanmean(f_beta), _nanmean(g_beta)


def modified_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The challenge's K x K confusion matrix (rows true, columns predicted), summed exactly.

    Recording i adds 1/n_i to A[j, k] for every true class j and predicted class k, with
    n_i = max(|labels_i union outputs_i|, 1).
    """
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    num_classes = labels.shape[1]
    weight = 1.0 / np.maximum((labels | outputs).sum(axis=1), 1).astype(np.float64)
    contributes = labels.any(axis=1) & outputs.any(axis=1)
    labels, outputs, weight = labels[contributes], outputs[contributes], weight[contributes]
    total = np.zeros(num_classes * num_classes)
    for start in range(0, labels.shape[0], _CHUNK):
        part = slice(start, start + _CHUNK)
        # (n, K, 1) * (n, 1, K) -> (n, K*K): recording i's contribution to each cell.
        cells = labels[part, :, None] * (outputs[part] * weight[part, None])[:, None, :]
        # One vector addition per recording, in file order: the official loop's sums exactly.
        for row in cells.reshape(-1, num_classes * num_classes):
            total += row
    return total.reshape(num_classes, num_classes)


def challenge_metric(
    labels: np.ndarray,
    outputs: np.ndarray,
    weights: np.ndarray = lbl.WEIGHTS,
    normal_index: int = lbl.NORMAL_INDEX,
) -> float:
    """The normalised challenge score: 1 for the labels themselves, 0 for always-normal."""
    labels = np.asarray(labels, dtype=bool)
    observed = np.nansum(weights * modified_confusion(labels, outputs))
    correct = np.nansum(weights * modified_confusion(labels, labels))
    normal = np.zeros_like(labels)
    normal[:, normal_index] = True
    inactive = np.nansum(weights * modified_confusion(labels, normal))
    if correct == inactive:
        return 0.0
    return float(observed - inactive) / float(correct - inactive)


class ChallengeMetric:
    """The challenge metric for fixed labels and many candidate outputs (threshold tuning).

    `metric(outputs)` costs one (K x N) @ (N x K) product. Recordings without a scored label add
    nothing whatever the output, so they are dropped up front.
    """

    def __init__(
        self,
        labels: np.ndarray,
        weights: np.ndarray = lbl.WEIGHTS,
        normal_index: int = lbl.NORMAL_INDEX,
    ) -> None:
        self.labels = np.asarray(labels, dtype=bool)
        self.weights = weights
        self._used = self.labels.any(axis=1)
        self._labels = self.labels[self._used].astype(np.float64)
        self._label_count = self._labels.sum(axis=1)
        self._correct = self._raw(self.labels[self._used])
        normal = np.zeros_like(self.labels[self._used])
        normal[:, normal_index] = True
        self._inactive = self._raw(normal)

    def _raw(self, outputs: np.ndarray) -> float:
        outputs = np.asarray(outputs, dtype=np.float64)
        overlap = (self._labels * outputs).sum(axis=1)
        union = self._label_count + outputs.sum(axis=1) - overlap
        scaled = outputs / np.maximum(union, 1.0)[:, None]
        return float(np.sum(self.weights * (self._labels.T @ scaled)))

    def __call__(self, outputs: np.ndarray) -> float:
        """Score (N, K) binary outputs for the labels given at construction."""
        outputs = np.asarray(outputs)
        if outputs.shape != self.labels.shape:
            raise ValueError(f"outputs have shape {outputs.shape}, labels {self.labels.shape}")
        if self._correct == self._inactive:
            return 0.0
        observed = self._raw(outputs[self._used])
        return (observed - self._inactive) / (self._correct - self._inactive)


def summary(labels: np.ndarray, scores: np.ndarray, outputs: np.ndarray) -> dict:
    """One set of answers scored: the challenge metric, macro F1 and macro AUROC, and F1 and
    AUROC per class (NaN where a class has no positive, as in `auc`)."""
    macro_f1, f1_per_class = f_measure(labels, outputs)
    macro_auroc, _, auroc_per_class, _ = auc(labels, scores)
    return {
        "challenge_metric": challenge_metric(labels, outputs),
        "macro_f1": macro_f1,
        "macro_auroc": macro_auroc,
        "f1_per_class": f1_per_class,
        "auroc_per_class": auroc_per_class,
    }
