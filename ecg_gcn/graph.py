"""The label graph of the GCN head: co-occurrence -> correlation matrix -> normalised adjacency.

The recipe is ML-GCN's (Chen et al. 2019, "Multi-label image recognition with graph
convolutional networks"): conditional probabilities of label pairs counted on the TRAINING
labels, binarised at tau to drop rare, noisy co-occurrences, re-weighted with p so a node does
not drown its own features in its neighbours' (over-smoothing), then normalised as in Kipf &
Welling 2017.

Orientation, as the paper's Fig. 2: entry [x, y] is P(x | y), the probability of label x (row)
when label y (column) appears. The GCN layer computes A_hat @ H, so row x of A_hat is what node x
gathers: node x listens to the labels y whose presence makes x likely (P(x | y) >= tau). A node's
neighbours are therefore the columns of its row, and each ROW is re-weighted. This is also the
direction in which ML-GCN's published code passes messages (its matrix holds P(y | x) and is
transposed before use), so tau = 0.4 and p = 0.25 keep the meaning they were tuned with.
"""

from __future__ import annotations

import numpy as np


def conditional_probability(labels: np.ndarray) -> np.ndarray:
    """(N, C) multi-hot labels -> (C, C) matrix with entry [x, y] = P(x | y).

    P(x | y) = count(x and y) / count(y). A class that never occurs has a zero column (nothing
    is known given it) instead of a division by zero. The diagonal is P(y | y): 1 for a class
    that occurs, 0 otherwise; `correlation_matrix` replaces it with the self-loop.
    """
    y = _as_labels(labels).astype(np.int64)
    both = y.T @ y  # (C, C): count(x and y); its diagonal is count(y)
    count = np.diag(both).astype(np.float64)
    out = np.zeros(both.shape, dtype=np.float64)
    np.divide(both, count[None, :], out=out, where=count[None, :] > 0)
    return out


def check_tau_p(tau: float, p: float) -> None:
    """tau in (0, 1] (a probability threshold), p in [0, 1): p = 1 would leave a node no
    self-loop and could make a degree zero."""
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1] (a probability threshold), got {tau!r}")
    if not 0 <= p < 1:
        raise ValueError(f"p must be in [0, 1), got {p!r}")


def correlation_matrix(conditional: np.ndarray, tau: float = 0.4, p: float = 0.25) -> np.ndarray:
    """Binarise P(x | y) at tau and re-weight each node's neighbours; adds the self-loops.

    Off the diagonal, an edge y -> x exists when P(x | y) >= tau. Each row x with at least one
    neighbour is scaled so its neighbours sum to p and its self-loop is 1 - p. A node without
    neighbours keeps a self-loop of weight 1 (not 1 - p): every row then sums to 1, so every
    node's update is a weighted average, whether it has neighbours or not.
    """
    conditional = np.asarray(conditional, dtype=np.float64)
    if conditional.ndim != 2 or conditional.shape[0] != conditional.shape[1]:
        raise ValueError(f"expected a square (C, C) matrix, got shape {conditional.shape}")
    check_tau_p(tau, p)
    n = conditional.shape[0]
    off_diagonal = ~np.eye(n, dtype=bool)
    edges = ((conditional >= tau) & off_diagonal).astype(np.float64)
    degree = edges.sum(axis=1, keepdims=True)  # (C, 1): neighbours of each node (row)
    has_neighbours = degree[:, 0] > 0
    weights = np.divide(p * edges, degree, out=np.zeros_like(edges), where=degree > 0)
    weights[np.diag_indices(n)] = np.where(has_neighbours, 1 - p, 1.0)
    return weights


def symmetric_normalise(a: np.ndarray) -> np.ndarray:
    """D^-1/2 A D^-1/2 with D the column sums of A (each node's total outgoing weight).

    The rows of A already sum to 1 after `correlation_matrix`, so normalising by row sums would
    change nothing; the column sums are what ML-GCN's code normalises by in this orientation,
    and they damp the messages of a hub label that many others listen to, as Kipf & Welling's
    normalisation damps high-degree nodes. For a symmetric A both choices agree.
    """
    a = np.asarray(a, dtype=np.float64)
    degree = a.sum(axis=0)
    if np.any(degree <= 0):
        raise ValueError("every node needs a positive degree (add self-loops first)")
    scale = 1.0 / np.sqrt(degree)
    return scale[:, None] * a * scale[None, :]


def adjacency(labels: np.ndarray, tau: float = 0.4, p: float = 0.25) -> np.ndarray:
    """The GCN head's A_hat (C, C), float32, from (N, C) training labels."""
    a = correlation_matrix(conditional_probability(labels), tau=tau, p=p)
    return symmetric_normalise(a).astype(np.float32)


def _as_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected (records, classes) labels, got shape {labels.shape}")
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean or 0/1")
        labels = labels.astype(bool)
    return labels
