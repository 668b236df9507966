"""Decision thresholds that maximise the challenge metric on validation predictions.

The challenge metric, not F1, decides the ranking, and it punishes a false positive on a
labelled recording twice (it dilutes the credit of every true label and earns only a partial
weight), so thresholds tuned on it sit well above 0.5 for rare classes and below for common
ones. Every candidate is scored with the same rule that inference applies (`decide`), so the
tuned thresholds are exactly what the driver will use.

Where no class reaches its threshold, the entry answers sinus rhythm alone: the answer the
metric takes as its zero, so a recording the network is unsure of costs nothing against
always-normal. The most probable class instead (the older rule, kept for baselines in
`binarize`) turned a weak guess into a false positive on the normal recordings of a new
hospital: on the held-out databases of `cv --by-source` it lost 0.04 of the mean challenge
metric (BENCHMARKS.md, "New hospitals").
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ecg_gcn import measure
from ecg_gcn.labels import (
    AF_INDEX,
    CRBBB_INDEX,
    IAVB_INDEX,
    IRBBB_INDEX,
    LPR_INDEX,
    LQRSV_INDEX,
    LQT_INDEX,
    NORMAL_INDEX,
    NSIVCB_INDEX,
    PAC_INDEX,
    PVC_INDEX,
    SA_INDEX,
)
from ecg_gcn.scoring import ChallengeMetric

Mode = Literal["global", "per_class", "global_then_per_class"]
MODES: tuple[str, ...] = ("global", "per_class", "global_then_per_class")

# Cut points tried per search step: quantiles of the predictions plus a fixed grid, which keeps
# each search to a few thousand matrix products whatever the validation size.
_CANDIDATES = 64


def binarize(
    probabilities: np.ndarray, thresholds: np.ndarray | float, fallback: int | None = None
) -> np.ndarray:
    """Labels from probabilities: at or above the threshold; where nothing is, class
    `fallback` alone (the most probable class when None), so no recording is ever left
    without a label."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    outputs = probabilities >= np.asarray(thresholds, dtype=np.float64)
    empty = ~outputs.any(axis=-1)
    if np.any(empty):
        top = (
            np.argmax(probabilities, axis=-1)
            if fallback is None
            else np.full(empty.shape, fallback)
        )
        outputs[empty, top[empty]] = True
    return outputs


def decide(
    probabilities: np.ndarray,
    thresholds: np.ndarray | float,
    measured: np.ndarray | None = None,
) -> np.ndarray:
    """The entry's labels over the 24 classes: at or above the threshold, and sinus rhythm
    alone where nothing is (module docstring).

    With the recordings' `measured` beats (`measure.records`: (N, measure.COLUMNS), NaN where
    unmeasured), the ruler decides where it is clear (ecg_gcn.measure): AF never under
    measure.AF_REGULAR and always from measure.AF_IRREGULAR on; where a premature beat is
    measured in a rhythm not that irregular, and neither PAC nor PVC is answered, the one of
    the two with the higher probability against its threshold is; where V1 ends its QRS on a
    late positive deflection (measure.RBBB_V1) and neither complete nor incomplete RBBB is
    answered, complete RBBB is; where it ends on its S wave (under measure.NO_R_PRIME_V1),
    incomplete RBBB never is, and where on a tall R' (measure.COMPLETE_RBBB_V1 or more), an
    answered incomplete RBBB is a complete one. The vetoes: no nonspecific intraventricular
    conduction delay on a QRS measured under measure.NARROW_QRS_S; no sinus arrhythmia on RR
    intervals that spread over less than measure.STEADY_RR_S; where the RR spread is
    measured, neither PAC nor PVC without a measured premature beat in a rhythm under
    measure.AF_IRREGULAR, and neither a first-degree AV block nor a prolonged PR interval
    beside AF (which has no PR interval) or on a PR interval measured under
    measure.SHORT_PR_S, no prolonged QT interval on a QTc measured under
    measure.SHORT_QTC_S, and no low QRS voltage where a limb lead's QRS measures
    measure.TALL_LIMB_QRS_MV or more and a chest lead's measure.TALL_CHEST_QRS_MV or more."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if measured is None:
        return binarize(probabilities, thresholds, fallback=NORMAL_INDEX)
    shape = (*probabilities.shape[:-1], measure.COLUMNS)
    measured = np.broadcast_to(np.asarray(measured, dtype=np.float64), shape)
    irregular = measured[..., measure.IRREGULARITY]
    cut = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probabilities.shape[-1:])
    outputs = probabilities >= cut
    with np.errstate(invalid="ignore"):  # NaN compares False: the thresholds stand
        outputs[..., AF_INDEX] &= ~(irregular < measure.AF_REGULAR)
        outputs[..., AF_INDEX] |= irregular >= measure.AF_IRREGULAR
        early = (measured[..., measure.PREMATURE_BEAT] == 1) & ~(irregular >= measure.AF_IRREGULAR)
        v1 = measured[..., measure.V1_TERMINAL]
        late_r = v1 >= measure.RBBB_V1
        outputs[..., IRBBB_INDEX] &= ~(v1 < measure.NO_R_PRIME_V1)
        tall_r = outputs[..., IRBBB_INDEX] & (v1 >= measure.COMPLETE_RBBB_V1)
        outputs[..., IRBBB_INDEX] &= ~tall_r
        outputs[..., CRBBB_INDEX] |= tall_r
        outputs[..., NSIVCB_INDEX] &= ~(measured[..., measure.QRS_DURATION] < measure.NARROW_QRS_S)
        spread = measured[..., measure.RR_SPREAD]
        outputs[..., SA_INDEX] &= ~(spread < measure.STEADY_RR_S)
        # The spread's presence marks the vetoes on (a NaN column is a rule turned off).
        vetoes = spread >= 0
        quiet = vetoes & (measured[..., measure.PREMATURE_BEAT] == 0)
        quiet &= irregular < measure.AF_IRREGULAR
    outputs[..., PAC_INDEX] &= ~quiet
    outputs[..., PVC_INDEX] &= ~quiet
    early &= ~(outputs[..., PAC_INDEX] | outputs[..., PVC_INDEX])
    against = probabilities / np.maximum(cut, 1e-12)
    atrial = against[..., PAC_INDEX] >= against[..., PVC_INDEX]
    outputs[..., PAC_INDEX] |= early & atrial
    outputs[..., PVC_INDEX] |= early & ~atrial
    outputs[..., CRBBB_INDEX] |= late_r & ~(outputs[..., CRBBB_INDEX] | outputs[..., IRBBB_INDEX])
    no_pr = vetoes & outputs[..., AF_INDEX]  # AF has no PR interval to prolong
    with np.errstate(invalid="ignore"):
        no_pr |= measured[..., measure.PR_INTERVAL] < measure.SHORT_PR_S
        no_qt = measured[..., measure.QTC] < measure.SHORT_QTC_S
        tall = measured[..., measure.LIMB_QRS] >= measure.TALL_LIMB_QRS_MV
        tall &= measured[..., measure.CHEST_QRS] >= measure.TALL_CHEST_QRS_MV
    outputs[..., IAVB_INDEX] &= ~no_pr
    outputs[..., LPR_INDEX] &= ~no_pr
    outputs[..., LQT_INDEX] &= ~no_qt
    outputs[..., LQRSV_INDEX] &= ~tall  # low voltage is all limb leads or all chest leads low
    return binarize(outputs.astype(np.float64), 0.5, fallback=NORMAL_INDEX)


def _candidates(values: np.ndarray) -> np.ndarray:
    grid = np.linspace(0.02, 0.98, 49)
    quantiles = np.quantile(values, np.linspace(0, 1, _CANDIDATES)) if values.size else []
    return np.unique(np.clip(np.concatenate([grid, quantiles]), 1e-6, 1.0))


def tune(
    probabilities: np.ndarray,
    labels: np.ndarray,
    mode: Mode = "global_then_per_class",
    rounds: int = 2,
    min_positives: int = 0,
) -> tuple[np.ndarray, float]:
    """(thresholds per class, challenge metric they reach) on these predictions.

    global: one cut point for every class, the best of the candidates. per_class: coordinate
    ascent from 0.5, one class at a time, `rounds` passes. global_then_per_class: per-class
    ascent started from the best global cut point. A step is taken only when it improves the
    metric, so the result is never worse than its starting point (0.5, or the global one).

    A class with fewer than `min_positives` positive validation records keeps its starting
    cut point: tuned on one or two examples, a threshold learns those records, not the class
    (on a small validation part it drops to 0 to catch one positive, and then fires on every
    recording of a new hospital).
    """
    if mode not in MODES:
        raise ValueError(f"threshold mode {mode!r}: expected one of {', '.join(MODES)}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if probabilities.shape != labels.shape:
        raise ValueError(f"probabilities {probabilities.shape} and labels {labels.shape} differ")
    metric = ChallengeMetric(labels)
    num_classes = labels.shape[1]

    thresholds = np.full(num_classes, 0.5)
    best = metric(decide(probabilities, thresholds))
    if mode != "per_class":
        for cut in _candidates(probabilities.ravel()):
            score = metric(decide(probabilities, cut))
            if score > best:
                best, thresholds = score, np.full(num_classes, cut)
    if mode == "global":
        return thresholds, best

    tunable = np.flatnonzero(labels.sum(axis=0) >= min_positives)
    for _ in range(rounds):
        improved = False
        for k in tunable:
            trial = thresholds.copy()
            for cut in _candidates(probabilities[:, k]):
                trial[k] = cut
                score = metric(decide(probabilities, trial))
                if score > best:
                    best, thresholds, improved = score, trial.copy(), True
        if not improved:
            break
    return thresholds, best


def cap_firing_rate(
    probabilities: np.ndarray,
    labels: np.ndarray,
    cutoffs: np.ndarray,
    share: float,
    prevalence_factor: float,
) -> np.ndarray:
    """`cutoffs` raised, class by class, until no class is answered on more of these records
    than `share` of them or `prevalence_factor` times the share that carry it, whichever is
    larger. Share 0 leaves them as they are.

    Cut-offs tuned on other records (the simulator's) can fire a class on a third of a real
    hospital's recordings; cut-offs tuned on these records fire near the prevalence, and the
    cap does not bind.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    capped = np.array(cutoffs, dtype=np.float64)
    if share <= 0 or probabilities.shape[0] == 0:
        return capped
    allowed = np.maximum(share, prevalence_factor * np.asarray(labels, dtype=bool).mean(axis=0))
    for k in np.flatnonzero(allowed < 1):
        capped[k] = max(capped[k], float(np.quantile(probabilities[:, k], 1 - allowed[k])))
    return capped
