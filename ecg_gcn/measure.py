"""The beats measured with a ruler rather than learnt: the entry's measured rules.

Atrial fibrillation is defined by its rhythm, irregularly irregular, as much as by its shape
(no P waves, fibrillatory waves); a premature beat by its timing, early and followed by a
pause, as much as by its shape. The network learns the shapes from the simulator and a few
hundred real records, and on a new hospital it misses much AF and many premature beats, and
fires AF on regular rhythms. An RR interval does not change with the hospital, its filters or
its labellers. So the entry lets the measured rhythm decide where it is clear
(`thresholds.decide`; `TrainConfig.rhythm_rules` turns it off):

- AF: never on a regular rhythm (irregularity under AF_REGULAR), always on a clearly irregular
  one (AF_IRREGULAR or more), by the network's threshold in between;
- premature beats: where one is measured in a rhythm that is not clearly irregular and the
  network answered neither PAC nor PVC, the one of the two that stands higher against its
  threshold is answered. Which of the two it is, atrial or ventricular, is the QRS's shape:
  the network's to say.

The irregularity is the median of the successive RR differences over the median RR: AF's
intervals change at random from beat to beat, so most successive differences are large;
sinus rhythm's change slowly (sinus arrhythmia included), and a few premature beats change only
a few differences, which the median passes over. Frequent ectopy (bigeminy) reads as
irregular; labelled PACs scored there as AF earn the metric's partial credit (0.34).
A premature beat is an RR interval under PREMATURE of the median RR, followed by one at least
more than PAUSE times as long as itself.

The AF cut-offs come from the simulator's records, never from the real sample (BENCHMARKS.md,
"Round twelve"): 0.05 lies below all but 1 % of simulated AF (1st percentile 0.07) and above
99 % of its regular rhythms (99th percentile 0.04); 0.10 keeps 96 % of simulated AF above it.
The premature beat's are set from CPSC's premature atrial beats, which come at 0.48 to 0.85 of
the preceding RR (10th to 90th percentile; round nine).

A right bundle branch block is defined by the QRS's shape as much as a rhythm by its intervals:
the right ventricle is activated late, so the last part of the QRS points to the right and
forward, toward V1, which ends on a late positive deflection (R') where a normal V1 ends on its
S wave. The network misses most of them on a new hospital (BENCHMARKS.md, "Round thirteen").
So where the median beat's last 40 ms in V1 stand RBBB_V1 or more above V1 just before the QRS
and the network answered neither complete nor incomplete RBBB, the entry answers complete RBBB
(`TrainConfig.rbbb_rule`): it is the more frequent of the two (3,071 of the 43,101 Challenge
recordings against 1,611), and on new hospitals the network answered incomplete on 85 of the
154 labelled complete blocks it missed. The cut-off comes from the simulator's records: 0.1 mV
lies above every one of 1,332 records without a right bundle branch block (99th percentile
-0.09 mV) and below 98 % of its complete and incomplete ones (2nd percentiles 0.27 and
0.14 mV).

The other way round, an incomplete RBBB is an rSr' in V1: where V1's last 40 ms stand under
NO_R_PRIME_V1, V1 ends on its S wave and incomplete RBBB is not answered, whatever the network
says (normal QRSs measure -0.43 mV at the median). The cut-off lies well under every simulated
incomplete block (the lowest -0.08 mV), since the measure runs lower on real records than on
the simulator's: a tenth of the sample's labelled complete blocks measure under -0.26 mV.
Complete RBBB is not vetoed: its real records reach -0.49 mV.

Which of the two a block is shows in the R' too: an incomplete block's is a small r', a
complete block's a tall, broad R'. Where the network answered incomplete RBBB and V1's last
40 ms stand COMPLETE_RBBB_V1 or more, the entry answers complete RBBB instead. The network
confused the two on new hospitals: held out, CPSC's 35 complete blocks were answered as
incomplete alone 13 times a seed, and 10 of these measure 0.45 mV or more, up to 1.2 mV
(BENCHMARKS.md, "Round seventeen"). The cut-off comes from the simulator's records and the
Challenge's prevalence: on 600 fresh complete and 600 incomplete blocks, 0.45 mV is where
the errors of the two, weighed 3,071 to 1,611, are fewest (16 % of complete blocks measure
under it, 28 % of incomplete ones over).

Some classes are defined by a measure, and where the measure says the class is absent the
entry does not answer it, whatever the network says (`TrainConfig.veto_rules`): the vetoes.
On the normal recordings of new hospitals the network fired these classes on recordings that
plainly carry none (BENCHMARKS.md, "Round sixteen"):

- a nonspecific intraventricular conduction delay is a QRS over 110 ms without a bundle
  branch block's shape: never on a QRS measured under NARROW_QRS_S (90 ms). The measure runs
  short on real records (their complete RBBBs measure 96 ms at the median), hence the margin;
  the simulator's NSIVCBs measure 114 ms and more;
- sinus arrhythmia is a sinus rhythm whose intervals vary by more than 120 ms: never where
  the RR intervals' 10th to 90th percentile spread less than STEADY_RR_S (80 ms). The
  simulator's measure 170 ms and more (1st percentile);
- a premature beat comes early: neither PAC nor PVC where no premature beat is measured in a
  rhythm under AF_IRREGULAR (where the premature-beat rule above would find one). Every
  simulated PAC and 9 of 10 simulated PVCs keep theirs (600 fresh records); 3 of the
  sample's 14 labelled PAC records, all CPSC's, measure none;
- a first-degree AV block, or a prolonged PR interval, is a PR interval over 200 ms, and AF
  has no PR interval: neither is answered beside AF (by the rhythm or the network). The
  Challenge's labellers agree: 24 of its 3,475 AF recordings carry IAVB, none LPR. Held out,
  the network answered IAVB on 10 of CPSC's 27 AF recordings a seed. Nor is either answered
  on a PR interval measured under SHORT_PR_S (160 ms): 40 ms short of the definition, where
  the simulator's first-degree blocks measure 230 ms and more (1st percentile) and the
  sample's labelled ones, CPSC's, 204 ms and more;
- a prolonged QT interval is a QTc (Bazett) over 450 ms in men and 460 ms in women: no LQT on
  a QTc measured under SHORT_QTC_S (430 ms). The simulator's long QTs (QTc 480 to 540 ms)
  measure 480 ms and more (1st percentile, flat and biphasic T waves included), its other
  records 3 ms over the truth at the median; the sample's one labelled long QT measures
  488 ms and its recordings 405 ms at the median.
- low QRS voltages are QRSs under 0.5 mV peak to peak in every limb lead or under 1 mV in
  every chest lead: no LQRSV where the tallest limb lead's QRS measures TALL_LIMB_QRS_MV
  (0.7 mV) or more and the tallest chest lead's TALL_CHEST_QRS_MV (1.2 mV) or more, on the
  median beat. The margins (0.2 mV over either bound) leave room for a header's gain that is
  somewhat off. The simulator's low-voltage records measure 0.40 and 0.78 mV at most (99th
  percentiles, 150 records), its normal ones 1.03 and 1.75 mV at the median (89 % of them
  reach both cut-offs); the sample's one labelled low voltage (PTB-XL's) measures 0.63 and
  1.67 mV.

The PR interval is read off the P wave's peak, which stands out more plainly on a real
recording than its onset: on the median of the beats in a 1-15 Hz band, between the QRS's
onset and the previous beat's T wave (its QT by Bazett's formula at a QTc of 420 ms, and
50 ms more; at most 400 ms back), the P wave is where the live leads stand farthest from the
window's chord (which takes out a drifting baseline), and its onset P_HALF_S (50 ms) before.
Where the window reaches less than 200 ms back (a rate over about 105 a minute), a block's
P wave could hide in the T wave, and nothing is read. On the simulator's records it reads
9 ms over the truth at the median.

The QT interval runs from the QRS's onset to the T wave's end, on the median of the beats in a
0.5-20 Hz band reaching up to 0.9 of the RR interval (at most 750 ms) after the beat, and no
further than the next beat's P wave where a PR interval is read. The live leads' distance from
their level before the QRS peaks on the T wave at least T_GAP_S after the QRS; the T wave's
end is where the tangent at its steepest last fall (around where it last stands half its
height, so that a biphasic T wave's dip is passed over) meets that level. A T wave still high
at the reach's edge, or under T_MIN_MV, reads nothing: the veto never acts on a QT it cannot
see end.

The QRS is found on the median beat of all live leads: from the beat's peak, outward while the
spatial speed (the root sum of squares of the leads' slopes) stays over ONSET_SHARE of the way
from the baseline's speed to its peak, bridging dips of up to 40 ms (a notched or split QRS).

Beats are found by wfdb's XQRS detector (`wfdb.processing.xqrs_detect`) on one trace made from
all twelve leads: their first principal component in the QRS band, so a flat, missing or noisy
lead does not hide the beats. Fewer than MIN_BEATS beats, or every lead flat, give NaN, and a
NaN decides nothing: the network's thresholds alone stand; so does a flat V1 for the RBBB rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import wfdb.processing
from scipy import signal as sps

from ecg_gcn.header import LEADS

AF_REGULAR = 0.05  # irregularity under this: a regular rhythm, never AF
AF_IRREGULAR = 0.10  # at or above this: AF, whatever the network says
PREMATURE = 0.8  # an RR under this share of the median RR is early...
PAUSE = 1.15  # ...and a premature beat when the next RR is more than this many times as long
MIN_BEATS = 6  # fewer beats than this measure nothing (5 RR intervals, 4 differences)
RBBB_V1 = 0.1  # mV: V1's last 40 ms of QRS at least this high is a right bundle branch block
NO_R_PRIME_V1 = -0.3  # mV: this low, V1 ends on its S wave: no incomplete RBBB
COMPLETE_RBBB_V1 = 0.45  # mV: this high, V1's R' is a complete block's, not an incomplete one's
NARROW_QRS_S = 0.09  # a QRS measured under this is narrow: no nonspecific IVCD
STEADY_RR_S = 0.08  # RR intervals spread over less than this (10th to 90th percentile): no SA
SHORT_PR_S = 0.16  # a PR interval measured under this is short of a block: no IAVB or LPR
SHORT_QTC_S = 0.43  # a QTc (Bazett) measured under this is short of a long QT: no LQT
# mV: a QRS this tall in a limb lead and this tall in a chest lead is not low voltage: no LQRSV
TALL_LIMB_QRS_MV, TALL_CHEST_QRS_MV = 0.7, 1.2
# The columns of `record`'s answer.
(
    IRREGULARITY,
    PREMATURE_BEAT,
    V1_TERMINAL,
    QRS_DURATION,
    RR_SPREAD,
    PR_INTERVAL,
    QTC,
    LIMB_QRS,
    CHEST_QRS,
) = range(9)
COLUMNS = 9
FLAT_MV = 0.01  # a lead whose QRS-band trace never leaves +-10 uV is flat (or absent)
QRS_BAND_HZ = (5.0, 25.0)
# The median beat: this stretch around each detected beat, band-passed to keep its shape.
BEAT_WINDOW_S = (0.25, 0.45)  # before, after
BEAT_BAND_HZ = (0.5, 40.0)
QRS_SEARCH_S = (0.12, 0.18)  # the QRS lies within this before and after the detected beat
BASELINE_S = (0.25, 0.15)  # before the beat: the speed of the baseline (PR segment) is read here
ONSET_SHARE = 0.15
QRS_GAP_S = 0.04
TERMINAL_S = 0.04
FLAT_BEAT_MV = 0.02  # a median beat that never leaves +-20 uV is a flat lead
P_BAND_HZ = (1.0, 15.0)
P_SEARCH_S = (0.2, 0.4)  # the P wave is sought at least and at most this far before the QRS...
P_GAP_S = 0.02  # ...and up to this short of it
QTC_S = 0.42  # the previous beat's T wave is over by its QT (Bazett at this QTc) and 50 ms more
P_MIN_MV = 0.03  # a P wave leaves the chord of its window by at least this (all live leads)
P_HALF_S = 0.05  # a P wave's onset lies this far before its peak
T_BAND_HZ = (0.5, 20.0)
T_REACH = (0.9, 0.75)  # the T wave is sought up to this share of the RR interval, and s at most
T_GAP_S = 0.08  # its peak at least this long after the QRS
T_MIN_MV = 0.05  # a T wave stands at least this far from the level before the QRS (live leads)
T_FALL_S = 0.04  # its end is read off its steepest fall within this of where it last stands half
V1 = CHEST = LEADS.index("V1")  # the chest leads are V1 to V6, after the six limb leads


def _band(x: np.ndarray, fs: float, band: tuple[float, float]) -> np.ndarray:
    # Zero-phase, its top held under Nyquist so that any rate measures. signal.bandpass refuses
    # such a band and pads the ends for a second; the cut-offs here were read with scipy's own
    # padding, so the measure keeps it.
    sos = sps.butter(2, [band[0], min(band[1], 0.45 * fs)], "band", fs=fs, output="sos")
    return sps.sosfiltfilt(sos, x, axis=-1)


def beat_trace(x: np.ndarray, fs: float) -> np.ndarray | None:
    """One trace for the beat detector from a (leads, n) mV recording, or None when every lead
    is flat."""
    band = _band(x, fs, QRS_BAND_HZ)
    live = np.abs(band).max(axis=1) > FLAT_MV
    if not live.any():
        return None
    # The first principal component of the live leads' QRS band: the direction the QRS takes
    # in lead space, so every live lead adds its share of each beat.
    weights = np.linalg.svd(band[live], full_matrices=False)[0][:, 0]
    wander = sps.butter(2, 0.5, "high", fs=fs, output="sos")
    trace = weights @ sps.sosfiltfilt(wander, x[live], axis=-1)
    if -trace.min() > trace.max():  # the detector wants the tallest deflection upright
        trace = -trace
    return trace


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if x.ndim != 2:
        raise ValueError(f"expected a (leads, samples) signal, got shape {x.shape}")
    return x


def beats(x: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of the QRS complexes of a (leads, n) mV recording at `fs` Hz."""
    return _beats(_finite(x), fs)


def _beats(x: np.ndarray, fs: float) -> np.ndarray:
    trace = beat_trace(x, fs)
    if trace is None:
        return np.zeros(0, dtype=int)
    return np.asarray(wfdb.processing.xqrs_detect(trace, fs=fs, verbose=False), dtype=int)


def median_beat(
    x: np.ndarray,
    peaks: np.ndarray,
    fs: float,
    band: tuple[float, float] = BEAT_BAND_HZ,
    after: int | None = None,
) -> tuple[np.ndarray, int] | None:
    """(leads, samples) median of the beats around `peaks` in `band`, from BEAT_WINDOW_S
    before each to `after` samples after it (BEAT_WINDOW_S's), and the index of the detected
    beat in it; None with fewer than two whole beats."""
    before = round(BEAT_WINDOW_S[0] * fs)
    after = round(BEAT_WINDOW_S[1] * fs) if after is None else after
    peaks = peaks[(peaks >= before) & (peaks + after <= x.shape[1])]
    if len(peaks) < 2:
        return None
    filtered = _band(x, fs, band)
    segments = np.stack([filtered[:, p - before : p + after] for p in peaks])
    return np.median(segments, axis=0), before


def qrs_bounds(beat: np.ndarray, at: int, fs: float) -> tuple[int, int] | None:
    """(onset, offset) sample indices of the QRS of a median beat whose detected beat lies at
    `at` (module docstring); None when fewer than three leads are live."""
    live = np.abs(beat).max(axis=1) > FLAT_BEAT_MV
    if live.sum() < 3:
        return None
    speed = np.sqrt((np.diff(beat[live], axis=1) ** 2).sum(axis=0)) * fs
    smooth = max(1, round(0.008 * fs))
    speed = np.convolve(speed, np.ones(smooth) / smooth, "same")
    low, high = at - round(QRS_SEARCH_S[0] * fs), at + round(QRS_SEARCH_S[1] * fs)
    peak = low + int(np.argmax(speed[low:high]))
    floor = float(np.median(speed[at - round(BASELINE_S[0] * fs) : at - round(BASELINE_S[1] * fs)]))
    cut = floor + ONSET_SHARE * (speed[peak] - floor)
    above = low + np.flatnonzero(speed[low:high] > cut)
    gap = round(QRS_GAP_S * fs)
    onset = offset = peak
    for i in above[::-1]:  # outward from the peak, across dips shorter than the gap
        if i < onset and onset - i <= gap:
            onset = i
    for i in above:
        if i > offset and i - offset <= gap:
            offset = i
    return onset, offset


def median_qrs(x: np.ndarray, peaks: np.ndarray, fs: float) -> tuple[np.ndarray, int, int] | None:
    """(median beat, QRS onset, QRS offset) of the beats at `peaks`, or None without a median
    beat or a QRS."""
    median = median_beat(x, peaks, fs)
    if median is None:
        return None
    beat, at = median
    bounds = qrs_bounds(beat, at, fs)
    return None if bounds is None else (beat, *bounds)


def v1_terminal(qrs: tuple[np.ndarray, int, int] | None, fs: float) -> float:
    """mV: the mean of V1's last TERMINAL_S of QRS on a `median_qrs` beat, above V1's level
    just before the QRS; NaN without a median beat, a QRS or a live V1."""
    if qrs is None or np.abs(qrs[0][V1]).max() <= FLAT_BEAT_MV:
        return math.nan
    beat, onset, offset = qrs
    level = beat[V1, max(0, onset - round(0.02 * fs)) : onset + 1].mean()
    return float(beat[V1, max(onset, offset - round(TERMINAL_S * fs)) : offset + 1].mean() - level)


def qrs_heights(qrs: tuple[np.ndarray, int, int] | None) -> tuple[float, float]:
    """mV: the tallest QRS, peak to peak on a `median_qrs` beat, of the limb leads (I to aVF)
    and of the chest leads (V1 to V6); NaN without a median beat or a QRS."""
    if qrs is None:
        return math.nan, math.nan
    beat, onset, offset = qrs
    height = np.ptp(beat[:, onset : offset + 1], axis=1)
    return float(height[:CHEST].max()), float(height[CHEST:].max())


def pr_interval(
    x: np.ndarray, peaks: np.ndarray, qrs: tuple[np.ndarray, int, int] | None, fs: float
) -> float:
    """s: from the P wave's onset to the QRS's on the beats at `peaks` of a (leads, n) mV
    recording, whose `median_qrs` is `qrs`; NaN without one, or where no P wave stands out
    between the previous beat's T wave and the QRS (module docstring)."""
    if qrs is None:
        return math.nan
    beat, onset, _ = qrs
    onset -= round(BEAT_WINDOW_S[0] * fs)  # samples from the detected beat
    rr = float(np.median(np.diff(peaks))) / fs
    span = min(P_SEARCH_S[1], rr - QTC_S * math.sqrt(rr) - 0.05)
    if span < P_SEARCH_S[0]:  # too fast: a block's P wave could hide in the T wave
        return math.nan
    start, stop = onset - round(span * fs), onset - round(P_GAP_S * fs)
    peaks = peaks[(peaks + start >= 0) & (peaks + stop <= x.shape[1])]
    if len(peaks) < 2:
        return math.nan
    live = np.abs(beat).max(axis=1) > FLAT_BEAT_MV
    band = _band(x[live], fs, P_BAND_HZ)
    window = np.median(np.stack([band[:, p + start : p + stop] for p in peaks]), axis=0)
    # Apart from the chord from the window's first 10 ms to its last: a baseline that drifts,
    # or a PR segment pulled by the atrial repolarisation, does not read as a P wave.
    edge = max(1, round(0.01 * fs))
    first, last = window[:, :edge].mean(axis=1), window[:, -edge:].mean(axis=1)
    chord = first[:, None] + np.outer(last - first, np.linspace(0.0, 1.0, window.shape[1]))
    apart = np.sqrt(((window - chord) ** 2).sum(axis=0))
    top = int(np.argmax(apart))
    if apart[top] < P_MIN_MV or top < edge * 2:  # none, or the previous T wave's tail
        return math.nan
    return (onset - start - top) / fs + P_HALF_S


def qtc(
    x: np.ndarray,
    peaks: np.ndarray,
    qrs: tuple[np.ndarray, int, int] | None,
    fs: float,
    pr: float = math.nan,
) -> float:
    """s: the QT interval corrected by Bazett's formula (QT over the square root of the RR in
    s) on the beats at `peaks` of a (leads, n) mV recording, whose `median_qrs` is `qrs` and
    `pr_interval` `pr`; NaN without a QRS, or where no T wave ends within reach (module
    docstring)."""
    if qrs is None:
        return math.nan
    _, onset, offset = qrs
    rr = float(np.median(np.diff(peaks))) / fs
    before = round(BEAT_WINDOW_S[0] * fs)
    after = round(min(T_REACH[0] * rr, T_REACH[1]) * fs)
    if pr > 0:  # the reach ends where the next beat's P wave begins
        after = min(after, onset - before + round((rr - pr - P_GAP_S) * fs))
    median = median_beat(x, peaks, fs, T_BAND_HZ, after)
    if median is None:
        return math.nan
    beat = median[0][np.abs(median[0]).max(axis=1) > FLAT_BEAT_MV]
    start = offset + round(T_GAP_S * fs)
    if len(beat) < 3 or start >= beat.shape[1] - 2:
        return math.nan
    level = beat[:, max(0, onset - round(0.02 * fs)) : onset + 1].mean(axis=1)
    apart = np.sqrt(((beat - level[:, None]) ** 2).sum(axis=0))
    top = start + int(np.argmax(apart[start:]))
    # The T wave's last fall: around where it last stands half its height (a biphasic T wave
    # falls twice), its steepest slope; the tangent there meets the level before the QRS at
    # the T wave's end.
    last = top + int(np.flatnonzero(apart[top:] >= apart[top] / 2)[-1])
    edge = round(T_FALL_S * fs)
    slope = np.diff(apart[max(top, last - edge) : last + edge + 1]) * fs
    if apart[top] < T_MIN_MV or last >= apart.size - 2 or slope.min() >= 0:
        return math.nan  # no T wave, or one still high at the reach's edge: it may go on
    steep = max(top, last - edge) + int(np.argmin(slope))
    end = steep + apart[steep] / -slope.min() * fs
    if end >= apart.size:  # past the reach: the QT may be long; nothing is read
        return math.nan
    return (end - onset) / fs / math.sqrt(rr)


def record(x: np.ndarray, fs: float) -> np.ndarray:
    """(COLUMNS,) of a (leads, n) mV recording at `fs` Hz: [IRREGULARITY] the median
    |successive RR difference| over the median RR, [PREMATURE_BEAT] 1.0 where a premature beat
    is measured, else 0.0, [V1_TERMINAL] `v1_terminal`, [QRS_DURATION] s, the median beat's
    QRS (`qrs_bounds`; NaN without one), [RR_SPREAD] s, the 10th to 90th percentile of the RR
    intervals, [PR_INTERVAL] s, `pr_interval`, [QTC] s, `qtc`, [LIMB_QRS] and [CHEST_QRS] mV,
    `qrs_heights`; all NaN with fewer than MIN_BEATS beats."""
    x = _finite(x)
    peaks = _beats(x, fs)
    measured = np.full(COLUMNS, math.nan)
    if len(peaks) < MIN_BEATS:
        return measured
    rr = np.diff(peaks) / fs
    median = np.median(rr)
    early = (rr[:-1] < PREMATURE * median) & (rr[1:] > PAUSE * rr[:-1])
    measured[IRREGULARITY] = np.median(np.abs(np.diff(rr))) / median
    measured[PREMATURE_BEAT] = float(early.any())
    low, high = np.percentile(rr, [10, 90])
    measured[RR_SPREAD] = high - low
    qrs = median_qrs(x, peaks, fs)
    measured[V1_TERMINAL] = v1_terminal(qrs, fs)
    if qrs is not None:
        measured[QRS_DURATION] = (qrs[2] - qrs[1]) / fs
    measured[PR_INTERVAL] = pr_interval(x, peaks, qrs, fs)
    measured[QTC] = qtc(x, peaks, qrs, fs, measured[PR_INTERVAL])
    measured[LIMB_QRS], measured[CHEST_QRS] = qrs_heights(qrs)
    return measured


def records(signals: Iterable[np.ndarray], fs: float) -> np.ndarray:
    """(N, COLUMNS) `record` of each recording of an iterable of (leads, n) signals at `fs`."""
    return np.array([record(x, fs) for x in signals], dtype=np.float64).reshape(-1, COLUMNS)
