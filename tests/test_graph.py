"""The label graph: orientation P(x | y), binarisation at tau, re-weighting by p, normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecg_gcn import graph


def records(*label_sets: set[int], n_classes: int) -> np.ndarray:
    y = np.zeros((len(label_sets), n_classes), dtype=bool)
    for i, labels in enumerate(label_sets):
        y[i, list(labels)] = True
    return y


# Class 0 in 10 records, class 1 in 2 of them only, class 2 alone in 2 others, class 3 never.
LABELS = records(*[{0}] * 8, *[{0, 1}] * 2, *[{2}] * 2, n_classes=4)


def test_entry_x_y_is_the_probability_of_x_given_y():
    p = graph.conditional_probability(LABELS)
    assert p[1, 0] == pytest.approx(0.2)  # P(1 | 0): 2 of the 10 records with class 0
    assert p[0, 1] == pytest.approx(1.0)  # P(0 | 1): every record with class 1 has class 0
    assert p[2, 0] == 0 and p[0, 2] == 0
    np.testing.assert_array_equal(np.diag(p), [1, 1, 1, 0])


def test_a_class_that_never_occurs_gives_a_zero_column_not_a_nan():
    p = graph.conditional_probability(LABELS)
    assert np.isfinite(p).all()
    np.testing.assert_array_equal(p[:, 3], 0)
    np.testing.assert_array_equal(p[3, :], 0)


def test_binarisation_keeps_the_entries_at_or_above_tau():
    conditional = np.array(
        [
            [1.0, 0.4, 0.39],
            [0.41, 1.0, 0.0],
            [1.0, 0.1, 1.0],
        ]
    )
    a = graph.correlation_matrix(conditional, tau=0.4, p=0.25)
    np.testing.assert_array_equal(a > 0, [[1, 1, 0], [1, 1, 0], [1, 0, 1]])


def test_neighbours_share_p_and_the_self_loop_keeps_one_minus_p():
    conditional = np.array(
        [
            [1.0, 0.9, 0.5, 0.0],  # node 0 listens to 1 and 2
            [0.8, 1.0, 0.0, 0.0],  # node 1 listens to 0
            [0.0, 0.0, 1.0, 0.0],  # node 2 listens to nobody
            [0.0, 0.0, 0.0, 0.0],  # node 3: an empty class
        ]
    )
    a = graph.correlation_matrix(conditional, tau=0.4, p=0.3)
    expected = np.array(
        [
            [0.7, 0.15, 0.15, 0],
            [0.3, 0.7, 0, 0],
            [0, 0, 1, 0],  # no neighbour: a self-loop of weight 1
            [0, 0, 0, 1],
        ]
    )
    np.testing.assert_allclose(a, expected)
    np.testing.assert_allclose(a.sum(axis=1), 1)


def test_the_diagonal_of_the_probabilities_is_not_an_edge():
    a = graph.correlation_matrix(np.eye(3), tau=0.4, p=0.25)
    np.testing.assert_array_equal(a, np.eye(3))


def test_adjacency_by_hand():
    a_hat = graph.adjacency(LABELS, tau=0.4, p=0.25)
    # Before normalisation: node 0 listens to node 1 (P(0 | 1) = 1 >= 0.4), not the reverse
    # (P(1 | 0) = 0.2), so A = [[0.75, 0.25], [0, 1]] on classes 0 and 1; classes 2 and 3 are
    # isolated. Column sums (degrees): 0.75, 1.25, 1, 1.
    expected = np.zeros((4, 4))
    expected[0, 0] = 0.75 / 0.75
    expected[0, 1] = 0.25 / math.sqrt(0.75 * 1.25)
    expected[1, 1] = 1 / 1.25
    expected[2, 2] = expected[3, 3] = 1
    assert a_hat.dtype == np.float32 and a_hat.shape == (4, 4)
    np.testing.assert_allclose(a_hat, expected, rtol=1e-6)


def test_symmetric_normalisation_divides_by_the_square_roots_of_both_degrees():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (6, 6)) * (rng.uniform(0, 1, (6, 6)) < 0.5) + np.eye(6)
    a_hat = graph.symmetric_normalise(a)
    degree = a.sum(axis=0)
    np.testing.assert_allclose(a_hat * np.sqrt(np.outer(degree, degree)), a)


def test_a_symmetric_graph_stays_symmetric_with_spectral_radius_one():
    rng = np.random.default_rng(1)
    b = rng.uniform(0, 1, (7, 7)) * (rng.uniform(0, 1, (7, 7)) < 0.4)
    a = b + b.T + np.eye(7)
    a_hat = graph.symmetric_normalise(a)
    np.testing.assert_allclose(a_hat, a_hat.T)
    eigenvalues = np.linalg.eigvalsh(a_hat)
    assert eigenvalues.max() == pytest.approx(1.0)
    assert eigenvalues.min() >= -1 - 1e-12


def test_normalisation_needs_positive_degrees():
    with pytest.raises(ValueError, match="degree"):
        graph.symmetric_normalise(np.zeros((3, 3)))


def test_adjacency_of_realistic_labels_is_finite_and_keeps_every_self_loop():
    rng = np.random.default_rng(2)
    labels = rng.uniform(0, 1, (500, 24)) < rng.uniform(0, 0.3, 24)
    labels[:, [5, 17]] = False  # two classes absent from the training set
    a_hat = graph.adjacency(labels)
    assert a_hat.shape == (24, 24) and np.isfinite(a_hat).all()
    assert (np.diag(a_hat) > 0).all() and (a_hat >= 0).all()
    for empty in (5, 17):
        np.testing.assert_array_equal(a_hat[empty], np.eye(24)[empty])
        np.testing.assert_array_equal(a_hat[:, empty], np.eye(24)[empty])


def test_no_labels_at_all_give_the_identity():
    np.testing.assert_array_equal(graph.adjacency(np.zeros((0, 5), dtype=bool)), np.eye(5))


def test_zero_one_integers_are_labels_too():
    np.testing.assert_array_equal(graph.adjacency(LABELS.astype(np.int8)), graph.adjacency(LABELS))


@pytest.mark.parametrize("labels", [np.zeros(4), np.full((3, 4), 2), np.full((3, 4), 0.5)])
def test_bad_labels_are_refused(labels):
    with pytest.raises(ValueError, match="labels"):
        graph.conditional_probability(labels)


@pytest.mark.parametrize(("tau", "p"), [(0.0, 0.25), (1.5, 0.25), (0.4, 1.0), (0.4, -0.1)])
def test_bad_tau_or_p_are_refused(tau, p):
    with pytest.raises(ValueError):
        graph.adjacency(LABELS, tau=tau, p=p)
