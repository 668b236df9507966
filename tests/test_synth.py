"""The synthetic records: Challenge file format, label sets, and the trace each class must leave.

Morphology is measured on the written files (loadmat 'val' / header gain) with simple detectors
written here: R peaks from band-passed energy, a median beat, QRS bounds from the spatial velocity,
P onset and T end (tangent method) in single leads. Ground truth from `synthesize` is used only
where a measurement would need a full delineator.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy import signal as sps

from ecg_gcn import synth, synth_beats
from ecg_gcn.header import LEADS
from ecg_gcn.labels import CLASSES, SCORED_CODES, encode

REPO = Path(__file__).resolve().parent.parent
SOURCE_CSV = REPO / ".." / "shared" / "reference" / "scored_labels_2020.csv"
LEAD_I, II, III, AVR, AVL, AVF, V1, V2, V3, V4, V5, V6 = range(12)


# ---------------------------------------------------------------------------------------------
# Reading records back and measuring them


def read_record(header: Path) -> tuple[np.ndarray, float, dict[str, str]]:
    """Signal in mV (12, n), sampling rate and '#Key: value' comments, parsed by hand."""
    lines = header.read_text().splitlines()
    fs = float(lines[0].split()[2])
    gains = np.array([float(line.split()[2].split("/")[0]) for line in lines[1:13]])
    val = scipy.io.loadmat(header.with_suffix(".mat"))["val"]
    comments = dict(line[1:].split(": ", 1) for line in lines[13:])
    return val / gains[:, None], fs, comments


def written(
    tmp_path: Path,
    codes: list[str],
    seed: int,
    *,
    fs: int = 500,
    seconds: float = 10,
    noise: float = 1.0,
    heart_rate: float | None = None,
) -> tuple[np.ndarray, float, dict]:
    """Synthesize a record, write it, read it back: (signal mV, fs, ground truth)."""
    rng = np.random.default_rng(seed)
    signal, info = synth.synthesize(rng, codes, fs, seconds, noise=noise, heart_rate=heart_rate)
    header = synth.write_record(tmp_path, f"T{seed}", signal, fs, codes, 60, "Male")
    read, read_fs, _ = read_record(header)
    return read, read_fs, info


def bandpass(x: np.ndarray, fs: float, lo: float, hi: float) -> np.ndarray:
    sos = sps.butter(2, [lo, hi], "bandpass", fs=fs, output="sos")
    return sps.sosfiltfilt(sos, x, axis=-1)


def r_peaks(sig: np.ndarray, fs: float) -> np.ndarray:
    """QRS positions: peaks of the 5-25 Hz energy summed over the leads, 300 ms apart at least."""
    energy = (bandpass(sig, fs, 5, 25) ** 2).sum(axis=0)
    k = max(1, int(0.05 * fs))
    energy = np.convolve(energy, np.ones(k) / k, "same")
    height = 0.2 * np.percentile(energy, 99.5)
    peaks, _ = sps.find_peaks(energy, distance=int(0.3 * fs), height=height)
    return peaks


def rr_intervals(sig: np.ndarray, fs: float) -> np.ndarray:
    return np.diff(r_peaks(sig, fs)) / fs


def median_beat(sig: np.ndarray, fs: float, before: float = 0.6, after: float = 0.7):
    """Median of the 0.5-40 Hz beats around each R peak, and the index of the R peak in it.

    The beat is cut short 0.25 s before the next R peak (usually), where the next P may start.
    """
    peaks = r_peaks(sig, fs)
    after = min(after, float(np.median(np.diff(peaks))) / fs - 0.25)
    b, a = int(before * fs), int(after * fs)
    filtered = bandpass(sig, fs, 0.5, 40)
    peaks = [p for p in peaks if p - b >= 0 and p + a <= sig.shape[1]]
    return np.median([filtered[:, p - b : p + a] for p in peaks], axis=0), b


def qrs_bounds(beat: np.ndarray, fs: float, centre: int, frac: float = 0.15) -> tuple[int, int]:
    """QRS onset and end: where the spatial velocity stays above frac of its peak, small dips
    (under 12 ms, between waves) bridged."""
    v = np.sqrt((np.diff(beat, axis=1) ** 2).sum(axis=0))
    k = max(1, int(0.008 * fs))
    v = np.convolve(v, np.ones(k) / k, "same")
    lo, hi = centre - int(0.13 * fs), centre + int(0.13 * fs)
    peak = lo + int(np.argmax(v[lo:hi]))
    above = v > frac * v[peak]
    gap = max(1, int(0.012 * fs))
    onset = peak
    while onset - gap >= 0 and above[onset - gap : onset].any():
        onset -= 1
    end = peak
    while end + gap < v.size and above[end + 1 : end + 1 + gap].any():
        end += 1
    return onset, end


def qrs_width_ms(sig: np.ndarray, fs: float, frac: float = 0.15) -> float:
    beat, centre = median_beat(sig, fs)
    onset, end = qrs_bounds(beat, fs, centre, frac)
    return (end - onset) / fs * 1000


def pr_ms(sig: np.ndarray, fs: float) -> float:
    """PR in lead II: P onset to QRS onset. The baseline is the line from the TP segment to the
    QRS onset (slow drift survives the median beat); the P onset is where the tangent at the
    steepest part of the P upstroke meets it."""
    beat, centre = median_beat(sig, fs)
    onset, _ = qrs_bounds(beat, fs, centre)
    lead = beat[II]
    tp = onset - int(0.41 * fs)
    level = np.median(lead[tp - int(0.04 * fs) : tp + int(0.04 * fs)])
    start = onset - int(0.36 * fs)
    line = level + (lead[onset] - level) * (np.arange(start, onset) - tp) / (onset - tp)
    d = lead[start:onset] - line
    peak = int(np.argmax(d))
    first = max(0, peak - int(0.06 * fs))
    slope = np.gradient(d)
    steep = first + int(np.argmax(slope[first : peak + 1]))
    p_onset = start + steep - d[steep] / slope[steep]
    return (onset - p_onset) / fs * 1000


def t_wave(beat: np.ndarray, fs: float, onset: int, end: int, lead: int) -> tuple[int, float]:
    """T peak index and deflection (mV from the level at QRS onset) in one lead."""
    d = beat[lead] - beat[lead, onset]
    lo, hi = end + int(0.06 * fs), min(beat.shape[1], onset + int(0.6 * fs))
    peak = lo + int(np.argmax(np.abs(d[lo:hi])))
    return peak, float(d[peak])


def qt_ms(sig: np.ndarray, fs: float) -> float:
    """QT by the tangent method in the lead with the largest T: the tangent at the steepest
    descent after the T peak meets the baseline."""
    beat, centre = median_beat(sig, fs)
    onset, end = qrs_bounds(beat, fs, centre)
    lead = max(range(12), key=lambda k: abs(t_wave(beat, fs, onset, end, k)[1]))
    peak, height = t_wave(beat, fs, onset, end, lead)
    d = (beat[lead] - beat[lead, onset]) * np.sign(height)
    slope = np.gradient(d, 1 / fs)
    window = slice(peak, peak + int(0.15 * fs))
    steepest = peak + int(np.argmin(slope[window]))
    t_end = steepest / fs + d[steepest] / -slope[steepest]
    return (t_end - onset / fs) * 1000


def qrs_area(beat: np.ndarray, fs: float, centre: int) -> np.ndarray:
    """Net QRS area (mV s) per lead from the median beat, against the level at QRS onset."""
    onset, end = qrs_bounds(beat, fs, centre)
    return (beat[:, onset:end] - beat[:, onset : onset + 1]).sum(axis=1) / fs


def band_power_between_beats(lead: np.ndarray, fs: float, after: float, before: float) -> float:
    """Mean 4-9 Hz power of one lead in the windows from `after` s past each R peak to `before`
    s ahead of the next one."""
    filtered = bandpass(lead, fs, 4, 9)
    peaks = r_peaks(lead[None, :], fs)
    parts = [
        filtered[p + int(after * fs) : q - int(before * fs)]
        for p, q in itertools.pairwise(peaks)
        if q - p > int((after + before + 0.1) * fs)
    ]
    return float(np.mean(np.concatenate(parts) ** 2))


# ---------------------------------------------------------------------------------------------
# Label sets


def test_label_table_matches_its_source(tmp_path: Path) -> None:
    if not SOURCE_CSV.exists():
        pytest.skip(f"the source table {SOURCE_CSV} is not in this checkout (shared/reference)")
    derived = tmp_path / "label_sets.csv"
    synth.derive_label_sets(SOURCE_CSV, derived)
    assert derived.read_bytes() == synth.LABEL_SETS_CSV.read_bytes()


def test_label_table_is_the_real_joint_distribution() -> None:
    lines = synth.LABEL_SETS_CSV.read_text().splitlines()
    assert lines[0] == "codes,count"
    rows = [line.rsplit(",", 1) for line in lines[1:]]
    counts = [int(count) for _, count in rows]
    assert sum(counts) == 43101  # every training record once
    assert counts == sorted(counts, reverse=True)
    sets = [tuple(codes.split(";")) if codes else () for codes, _ in rows]
    assert len(set(sets)) == len(sets)
    order = {code: i for i, code in enumerate(SCORED_CODES)}
    for codes in sets:
        assert all(code in order for code in codes)
        assert [order[c] for c in codes] == sorted(order[c] for c in codes)
    assert sets[0] == (synth.NSR,) and sets[1] == ()  # the two commonest in the 2020 data
    both_rbbb = {code for codes in sets for code in codes}
    assert {synth.RBBB, synth.CRBBB} <= both_rbbb  # original codes kept, not merged


def test_every_label_set_gives_a_plan_and_a_finite_signal() -> None:
    sets, _ = synth.load_label_sets()
    rng = np.random.default_rng(0)
    for codes in sets:
        codes = codes or (synth.STD,)
        signal, _ = synth.synthesize(rng, codes, 257, 3.0, noise=1.5)
        assert signal.shape == (12, 771) and np.isfinite(signal).all()
        assert np.abs(signal).max() < 32.0, codes  # stays inside int16 at 1000/mV


# ---------------------------------------------------------------------------------------------
# Every class has its trace (the plan) and reaches the signal


# What the plan of each of the 24 classes must show (the definitions in ecg_gcn/synth.py).
TRACES = {
    synth.NSR: lambda q: q.rhythm == "sinus" and 60 < q.heart_rate < 100 and q.qrs < 0.1,
    synth.SB: lambda q: q.rhythm == "sinus" and q.heart_rate < 60,
    synth.STACH: lambda q: q.rhythm == "sinus" and q.heart_rate > 100,
    synth.BRADY: lambda q: q.heart_rate < 60,
    synth.SA: lambda q: q.sinus_arrhythmia,
    synth.AF: lambda q: q.rhythm == "af",
    synth.AFL: lambda q: q.rhythm == "afl" and 240 < q.atrial_rate < 340,
    synth.IAVB: lambda q: q.pr > 0.2,
    synth.LPR: lambda q: q.pr > 0.2,
    synth.CRBBB: lambda q: q.conduction == "rbbb" and q.qrs >= 0.12,
    synth.IRBBB: lambda q: q.conduction == "irbbb" and 0.1 <= q.qrs < 0.12,
    synth.LBBB: lambda q: q.conduction == "lbbb" and q.qrs >= 0.12,
    synth.NSIVCB: lambda q: q.conduction == "nsivcb" and q.qrs > 0.11,
    synth.LANFB: lambda q: q.fascicular_block and -90 <= q.axis <= -45 and q.qrs < 0.12,
    synth.LAD: lambda q: q.axis < -30,
    synth.RAD: lambda q: q.axis > 90,
    synth.LQRSV: lambda q: q.voltage == "low",
    synth.QAB: lambda q: q.q_wave in ("inferior", "anterior"),
    synth.TAB: lambda q: q.t_wave in ("flat", "biphasic"),
    synth.TINV: lambda q: q.t_wave == "inverted",
    synth.LQT: lambda q: q.qtc > 0.46,
    synth.PAC: lambda q: q.pac,
    synth.PVC: lambda q: q.pvc,
    synth.PACED: lambda q: q.rhythm == "paced",
}


@pytest.mark.parametrize("code", CLASSES)
def test_each_class_has_its_trace(code: str) -> None:
    """The plan of a class alone shows its trace; a plain sinus rhythm plan does not."""
    check = TRACES[code]
    rng = np.random.default_rng(1)
    for _ in range(30):
        plan = synth.plan_for_codes(rng, [code])
        assert check(plan), plan
        plain = synth.plan_for_codes(rng, [synth.NSR])
        assert code == synth.NSR or not check(plain), plain


def test_equivalent_codes_look_the_same() -> None:
    for first, second in ((synth.CRBBB, synth.RBBB), (synth.PAC, synth.SVPB)):
        a = synth.plan_for_codes(np.random.default_rng(5), [first])
        b = synth.plan_for_codes(np.random.default_rng(5), [second])
        assert a == b
    a = synth.plan_for_codes(np.random.default_rng(5), [synth.PVC])
    assert a == synth.plan_for_codes(np.random.default_rng(5), [synth.VPB])


@pytest.mark.parametrize(
    ("code", "low", "high"),
    [(synth.LAD, -90, -30), (synth.LANFB, -90, -45), (synth.RAD, 90, 180), (synth.NSR, -30, 90)],
)
def test_the_axis_is_reached(code: str, low: float, high: float) -> None:
    rng = np.random.default_rng(2)
    for _ in range(10):
        _, info = synth.synthesize(rng, [code], 500, 2.0, noise=0)
        assert low < info["axis_deg"] < high


# ---------------------------------------------------------------------------------------------
# Measured on the written records: rate and rhythm


def test_heart_rate_of_bradycardia_and_tachycardia(tmp_path: Path) -> None:
    for seed in range(3):
        sb, fs, _ = written(tmp_path, [synth.SB], seed)
        tach, _, _ = written(tmp_path, [synth.STACH], seed)
        normal, _, _ = written(tmp_path, [synth.NSR], seed)
        brady_af, _, _ = written(tmp_path, [synth.AF, synth.BRADY], seed)
        assert 60 / rr_intervals(sb, fs).mean() < 60
        assert 60 / rr_intervals(brady_af, fs).mean() < 60
        assert 60 / rr_intervals(tach, fs).mean() > 100
        assert 60 < 60 / rr_intervals(normal, fs).mean() < 100


def test_af_is_irregularly_irregular(tmp_path: Path) -> None:
    for seed in range(3):
        af, fs, _ = written(tmp_path, [synth.AF], seed)
        sinus, _, _ = written(tmp_path, [synth.NSR], seed)
        cv = [rr.std() / rr.mean() for rr in (rr_intervals(af, fs), rr_intervals(sinus, fs))]
        assert cv[0] > 0.1 > 0.05 > cv[1]


def test_af_strip_shorter_than_a_beat_has_finite_beat_times() -> None:
    plan = synth_beats.Plan(rhythm="af", heart_rate=45.0)
    for seed in range(5):
        onsets, kinds, _ = synth_beats.schedule(np.random.default_rng(seed), plan, 0.5)
        assert onsets.size == kinds.size > 0 and np.isfinite(onsets).all()


def test_af_has_fibrillatory_waves_between_beats(tmp_path: Path) -> None:
    for seed in range(3):
        af, fs, _ = written(tmp_path, [synth.AF], seed, heart_rate=55)
        sinus, _, _ = written(tmp_path, [synth.NSR], seed, heart_rate=55)
        power_af = band_power_between_beats(af[V1], fs, 0.5, 0.35)
        power_sinus = band_power_between_beats(sinus[V1], fs, 0.5, 0.35)
        assert power_af > 4 * power_sinus


def test_flutter_has_a_sawtooth_at_about_300_per_minute(tmp_path: Path) -> None:
    """Lead II between the T end and the next QRS (4:1 conduction leaves room): a periodogram of
    those windows together, phase kept (Lomb-Scargle), peaks at the atrial rate; the slopes are
    skewed, a slow fall and a quick rise."""
    freqs = np.linspace(3.8, 6.2, 241)  # 230-370 per minute
    for seed in range(3):
        sig, fs, info = written(tmp_path, [synth.AFL], seed, heart_rate=70)
        assert info["plan"].flutter_ratio == 4
        lead = bandpass(sig[II], fs, 1, 30)
        peaks = r_peaks(sig, fs)
        times, parts = [], []
        for p, q in itertools.pairwise(peaks):
            window = np.arange(p + int(0.4 * fs), q - int(0.06 * fs))
            if window.size >= int(0.15 * fs):
                times.append(window / fs)
                parts.append(sps.detrend(lead[window]))
        power = sps.lombscargle(np.concatenate(times), np.concatenate(parts), 2 * np.pi * freqs)
        assert abs(freqs[np.argmax(power)] - info["plan"].atrial_rate / 60) < 0.3
        slopes = np.concatenate([np.diff(part) for part in parts])
        skew = ((slopes - slopes.mean()) ** 3).mean() / slopes.std() ** 3
        assert skew > 1.0


def test_flutter_conducts_regularly(tmp_path: Path) -> None:
    sig, fs, info = written(tmp_path, [synth.AFL], 4)
    rr = rr_intervals(sig, fs)
    assert rr.std() < 0.01
    assert info["plan"].flutter_ratio in (2, 3, 4)
    assert abs(60 / rr.mean() - info["plan"].atrial_rate / info["plan"].flutter_ratio) < 3


def test_sinus_arrhythmia_swings_rr_by_more_than_120_ms(tmp_path: Path) -> None:
    for seed in range(4):
        sa, fs, _ = written(tmp_path, [synth.SA], seed)
        sinus, _, _ = written(tmp_path, [synth.NSR], seed)
        assert np.ptp(rr_intervals(sa, fs)) > 0.12
        assert np.ptp(rr_intervals(sinus, fs)) < 0.12


def _premature_beats(sig: np.ndarray, fs: float) -> list[tuple[float, float, float]]:
    """(coupling RR, RR after, QRS width ms) of each beat that comes 15 % early or more."""
    peaks = r_peaks(sig, fs)
    rr = np.diff(peaks) / fs
    usual = np.median(rr)
    filtered = bandpass(sig, fs, 0.5, 40)
    found = []
    for i in range(1, len(peaks) - 1):
        if rr[i - 1] < 0.85 * usual:
            onset, end = qrs_bounds(filtered, fs, int(peaks[i]))
            found.append((rr[i - 1] / usual, rr[i] / usual, (end - onset) / fs * 1000))
    return found


def test_pvcs_are_early_wide_and_followed_by_a_compensatory_pause(tmp_path: Path) -> None:
    tested = 0
    for seed in range(6):
        sig, fs, info = written(tmp_path, [synth.PVC], seed, noise=0.5)
        if "VNV" in info["beat_kinds"]:
            continue  # bigeminy: no two sinus beats in a row to take the sinus cycle from
        tested += 1
        found = _premature_beats(sig, fs)
        assert len(found) == info["beat_kinds"][1:-1].count("V") >= 1
        for coupling, after, width in found:
            assert width >= 120
            assert abs(coupling + after - 2) < 0.12  # the sinus node was not reset
    assert tested >= 3


def test_pacs_are_early_narrow_and_reset_the_sinus_node(tmp_path: Path) -> None:
    for seed in range(3):
        sig, fs, info = written(tmp_path, [synth.PAC], seed, noise=0.5)
        found = _premature_beats(sig, fs)
        assert len(found) == info["beat_kinds"][1:-1].count("A") >= 1
        for coupling, after, width in found:
            assert width < 110
            assert coupling + after < 1.88  # not compensatory


def test_pacing_spikes(tmp_path: Path) -> None:
    for seed in range(3):
        paced, fs, info = written(tmp_path, [synth.PACED], seed)
        normal, _, _ = written(tmp_path, [synth.NSR], seed)
        steep = np.abs(np.diff(paced, axis=1)).max(axis=0)
        spikes, _ = sps.find_peaks(steep, height=1.0, distance=int(0.05 * fs))
        per_beat = 2 if info["plan"].pacing == "DDD" else 1
        assert abs(len(spikes) - per_beat * len(info["beat_onsets"])) <= per_beat
        assert np.abs(np.diff(normal, axis=1)).max() < 0.4
        rate = 60 / rr_intervals(paced, fs).mean()
        assert 55 < rate < 80
        # spikes (two samples) removed first: their ringing would dwarf the QRS velocity
        assert qrs_width_ms(sps.medfilt(paced, [1, 5]), fs, frac=0.1) >= 120


# ---------------------------------------------------------------------------------------------
# Measured on the written records: intervals, axis, voltages, Q and T


def test_qrs_width_of_bundle_branch_blocks(tmp_path: Path) -> None:
    for seed in range(3):
        widths = {
            code: qrs_width_ms(written(tmp_path, [code], seed)[0], 500)
            for code in (synth.NSR, synth.RBBB, synth.CRBBB, synth.LBBB, synth.IRBBB, synth.NSIVCB)
        }
        assert widths[synth.NSR] < 110
        assert widths[synth.RBBB] >= 120 and widths[synth.CRBBB] >= 120
        assert widths[synth.LBBB] >= 120
        assert 98 <= widths[synth.IRBBB] < 120
        assert widths[synth.NSIVCB] > 110


def test_rbbb_has_rsr_prime_in_v1_and_wide_s_in_v6(tmp_path: Path) -> None:
    sig, fs, _ = written(tmp_path, [synth.RBBB], 3, noise=0.5)
    beat, centre = median_beat(sig, fs)
    onset, end = qrs_bounds(beat, fs, centre)
    v1 = beat[V1, onset:end] - beat[V1, onset]
    peaks, _ = sps.find_peaks(v1, prominence=0.05)
    assert len(peaks) >= 2 and v1[peaks[-1]] > v1[peaks[0]]  # r then a taller R'
    assert v1[peaks[0] : peaks[-1]].min() < 0  # with an S between them
    v6 = beat[V6, onset:end] - beat[V6, onset]
    last_third = v6[2 * v6.size // 3 :]
    assert last_third.min() < -0.1  # terminal S


def test_lbbb_has_qs_in_v1_and_discordant_t_in_v6(tmp_path: Path) -> None:
    sig, fs, _ = written(tmp_path, [synth.LBBB], 3, noise=0.5, heart_rate=70)
    beat, centre = median_beat(sig, fs)
    onset, end = qrs_bounds(beat, fs, centre)
    v1 = beat[V1, onset:end] - beat[V1, onset]
    assert v1.max() < 0.25 * -v1.min()  # QS or rS
    for lead in (LEAD_I, V6):
        qrs = beat[lead, onset:end] - beat[lead, onset]
        assert qrs.max() > 0.3 and qrs.min() > -0.25 * qrs.max()  # broad R, no septal q
        assert t_wave(beat, fs, onset, end, lead)[1] < 0  # T against the QRS


def test_pr_of_first_degree_block(tmp_path: Path) -> None:
    for seed in range(3):
        block, fs, info = written(tmp_path, [synth.IAVB], seed, heart_rate=60)
        normal, _, _ = written(tmp_path, [synth.NSR], seed, heart_rate=60)
        assert pr_ms(block, fs) > 200
        assert pr_ms(normal, fs) < 200
        assert abs(pr_ms(block, fs) - info["pr_ms"]) < 20


def test_qtc_of_long_qt(tmp_path: Path) -> None:
    for seed in range(3):
        long_qt, fs, info = written(tmp_path, [synth.LQT], seed, heart_rate=62)
        normal, _, truth = written(tmp_path, [synth.NSR], seed, heart_rate=62)
        for sig, expected in ((long_qt, info), (normal, truth)):
            qtc = qt_ms(sig, fs) / np.sqrt(rr_intervals(sig, fs).mean())
            assert abs(qtc - expected["qtc_ms"]) < 25
            if sig is long_qt:
                assert qtc > 460
            else:
                assert qtc < 450


@pytest.mark.parametrize(("code", "sign_i", "sign_avf"), [(synth.LAD, 1, -1), (synth.RAD, -1, 1)])
def test_axis_deviation_from_net_qrs_area(
    tmp_path: Path, code: str, sign_i: int, sign_avf: int
) -> None:
    for seed in range(4):
        sig, fs, info = written(tmp_path, [code], seed)
        beat, centre = median_beat(sig, fs)
        area = qrs_area(beat, fs, centre)
        assert np.sign(area[LEAD_I]) == sign_i and np.sign(area[AVF]) == sign_avf
        axis = np.degrees(np.arctan2(2 * area[AVF] / np.sqrt(3), area[LEAD_I]))
        assert abs(axis - info["axis_deg"]) < 15


def test_left_anterior_fascicular_block_has_qr_in_avl_and_rs_in_inferior_leads(
    tmp_path: Path,
) -> None:
    sig, fs, _ = written(tmp_path, [synth.LANFB, synth.LAD], 2, noise=0.5)
    beat, centre = median_beat(sig, fs)
    onset, end = qrs_bounds(beat, fs, centre)
    for lead, first, last in ((AVL, -1, 1), (II, 1, -1), (III, 1, -1), (AVF, 1, -1)):
        qrs = beat[lead, onset:end] - beat[lead, onset]
        big = np.flatnonzero(np.abs(qrs) > 0.04)
        assert np.sign(qrs[big[0]]) == first  # q before R, or r before S
        biggest = qrs[np.argmax(np.abs(qrs))]
        assert np.sign(biggest) == last


def test_low_qrs_voltages(tmp_path: Path) -> None:
    for seed in range(3):
        for code in (synth.LQRSV, synth.NSR):
            sig, fs, _ = written(tmp_path, [code], seed)
            beat, centre = median_beat(sig, fs)
            onset, end = qrs_bounds(beat, fs, centre)
            p2p = np.ptp(beat[:, onset:end], axis=1)
            low = p2p[:6].max() < 0.5 and p2p[6:].max() < 1.0
            assert low == (code == synth.LQRSV), p2p


def test_pathological_q_waves(tmp_path: Path) -> None:
    kinds = set()
    for seed in range(6):
        for code in (synth.QAB, synth.NSR):
            sig, fs, info = written(tmp_path, [code], seed)
            beat, centre = median_beat(sig, fs)
            onset, end = qrs_bounds(beat, fs, centre, frac=0.05)  # a slow Q is QRS too
            kind = info["plan"].q_wave
            for group, leads in (("inferior", (II, III, AVF)), ("anterior", (V1, V2, V3, V4))):
                qs = 0
                for lead in leads:
                    qrs = beat[lead, onset:end] - beat[lead, onset]
                    first = np.flatnonzero(np.abs(qrs) > 0.05)
                    if first.size and qrs[first[0]] < 0:
                        negative = np.flatnonzero(qrs >= 0)
                        back = negative[negative > first[0]]
                        width = ((back[0] if back.size else qrs.size) / fs) * 1000
                        deep = -qrs.min() > 0.25 * max(qrs.max(), 0.0)
                        qs += width >= 40 or deep
                assert (qs >= 2) == (kind == group), (code, group, qs)
            kinds.add(kind)
    assert kinds == {None, "inferior", "anterior"}


def test_t_wave_inversion(tmp_path: Path) -> None:
    for seed in range(3):
        for code, sign in ((synth.TINV, -1), (synth.NSR, 1)):
            sig, fs, _ = written(tmp_path, [code], seed)
            beat, centre = median_beat(sig, fs)
            onset, end = qrs_bounds(beat, fs, centre)
            for lead in (LEAD_I, II, V3, V4, V5, V6):  # where T is upright in health
                assert np.sign(t_wave(beat, fs, onset, end, lead)[1]) == sign, lead


def test_flat_t_waves() -> None:
    def t_to_r(signal: np.ndarray) -> float:
        beat, centre = median_beat(signal, 500)
        onset, end = qrs_bounds(beat, 500, centre)
        ratios = [
            abs(t_wave(beat, 500, onset, end, k)[1]) / np.ptp(beat[k, onset:end]) for k in range(12)
        ]
        return float(np.median(ratios))

    flat, normal_ratios = 0, []
    for seed in range(8):
        signal, info = synth.synthesize(
            np.random.default_rng(seed), [synth.TAB], 500, 10, noise=0.5
        )
        if info["plan"].t_wave == "flat":
            assert t_to_r(signal) < 0.1  # T under a tenth of R
            flat += 1
        normal, _ = synth.synthesize(np.random.default_rng(seed), [synth.NSR], 500, 10)
        normal_ratios.append(t_to_r(normal))
    assert flat >= 2
    # normal T waves are never flat, and as tall as real ones: on the 31 sinus-rhythm-only
    # recordings of ../shared/real_sample this ratio runs 0.13 (5th centile) to 0.26 (median)
    assert min(normal_ratios) > 0.1
    assert 0.18 < np.median(normal_ratios) < 0.35


# ---------------------------------------------------------------------------------------------
# Noise


def test_noise_is_wander_hum_and_muscle() -> None:
    codes = [synth.NSR]
    clean, _ = synth.synthesize(np.random.default_rng(9), codes, 500, 20, noise=0)
    noisy, _ = synth.synthesize(np.random.default_rng(9), codes, 500, 20, noise=1.5)
    noise = noisy - clean
    freqs, psd = sps.welch(noise, fs=500, nperseg=10000, axis=1)
    psd = psd.mean(axis=0)
    wander = psd[(freqs >= 0.05) & (freqs <= 0.5)].mean()
    mains = max(psd[np.abs(freqs - 50) < 0.2].max(), psd[np.abs(freqs - 60) < 0.2].max())
    floor = np.median(psd[(freqs > 20) & (freqs < 200)])
    assert wander > 100 * floor  # baseline wander
    assert mains > 20 * floor  # hum
    assert floor > 0 and np.median(psd[(freqs > 100) & (freqs < 240)]) > 0.3 * floor  # broadband
    assert np.allclose(noise[III], noise[II] - noise[LEAD_I])  # made at the electrodes


# ---------------------------------------------------------------------------------------------
# The Challenge file format


def _example(tmp_path: Path, gain: float = 1000) -> tuple[Path, np.ndarray]:
    signal, _ = synth.synthesize(np.random.default_rng(4), [synth.AF, synth.RBBB], 500, 10)
    header = synth.write_record(
        tmp_path, "SYN00042", signal, 500, [synth.AF, synth.RBBB], 74, "Male", gain=gain
    )
    return header, signal


def test_header_lines(tmp_path: Path) -> None:
    header, _ = _example(tmp_path)
    text = header.read_text()
    assert text.endswith("\n") and "\r" not in text
    lines = text.split("\n")[:-1]
    assert len(lines) == 19
    assert re.fullmatch(r"SYN00042 12 500 5000 \d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d", lines[0])
    val = scipy.io.loadmat(header.with_suffix(".mat"))["val"]
    for k, line in enumerate(lines[1:13]):
        fields = line.split(" ")
        assert fields[:5] == ["SYN00042.mat", "16+24", "1000/mV", "16", "0"]
        assert int(fields[5]) == val[k, 0]
        total = int(val[k].astype(np.int64).sum())
        assert int(fields[6]) == (total + 2**15) % 2**16 - 2**15
        assert fields[7:] == ["0", LEADS[k]]
    assert lines[13:] == [
        "#Age: 74",
        "#Sex: Male",
        "#Dx: 164889003,59118001",
        "#Rx: Unknown",
        "#Hx: Unknown",
        "#Sx: Unknown",
    ]


def test_mat_file_is_matlab_v4_int16_with_data_at_byte_24(tmp_path: Path) -> None:
    header, _ = _example(tmp_path)
    raw = header.with_suffix(".mat").read_bytes()
    mopt, rows, cols, imag, namelen = np.frombuffer(raw[:20], "<i4")
    assert (mopt, rows, cols, imag, namelen) == (30, 12, 5000, 0, 4)  # 30: little-endian int16
    assert raw[20:24] == b"val\x00"
    assert len(raw) == 24 + 2 * 12 * 5000
    val = scipy.io.loadmat(header.with_suffix(".mat"))["val"]
    assert val.dtype == np.int16 and val.shape == (12, 5000)
    # column-major after byte 24: WFDB format 16, leads interleaved
    assert np.array_equal(np.frombuffer(raw[24:], "<i2").reshape(5000, 12).T, val)


def test_wfdb_reads_the_record(tmp_path: Path) -> None:
    wfdb = pytest.importorskip("wfdb")
    header, signal = _example(tmp_path, gain=500)
    record = wfdb.rdheader(str(header.with_suffix("")))
    assert record.fs == 500 and record.sig_len == 5000 and record.n_sig == 12
    assert record.sig_name == list(LEADS)
    assert record.adc_gain == [500.0] * 12 and record.fmt == ["16"] * 12
    assert record.byte_offset == [24] * 12
    assert record.comments[:3] == ["Age: 74", "Sex: Male", "Dx: 164889003,59118001"]
    mine, fs, comments = read_record(header)
    assert record.checksum == list(synth.wfdb_checksum(np.rint(mine * 500).astype(np.int16)))
    assert fs == 500 and comments["Dx"] == "164889003,59118001"
    samples = wfdb.rdrecord(str(header.with_suffix(""))).p_signal.T
    assert np.allclose(samples, mine)
    assert np.abs(mine - signal).max() <= 0.5 / 500 + 1e-12  # rounding only


def test_einthoven_holds_on_the_stored_samples(tmp_path: Path) -> None:
    header, signal = _example(tmp_path)
    assert np.allclose(signal[III], signal[II] - signal[LEAD_I])
    val = scipy.io.loadmat(header.with_suffix(".mat"))["val"].astype(float)
    assert np.abs(val[III] - (val[II] - val[LEAD_I])).max() <= 1
    assert np.abs(val[AVR] + (val[LEAD_I] + val[II]) / 2).max() <= 1.5
    assert np.abs(val[AVL] - (val[LEAD_I] - val[II] / 2)).max() <= 1.5
    assert np.abs(val[AVF] - (val[II] - val[LEAD_I] / 2)).max() <= 1.5


def test_clipping_and_missing_age(tmp_path: Path) -> None:
    signal = np.zeros((12, 100))
    signal[0, 10] = 50.0  # 50 mV: beyond int16 at 1000/mV
    header = synth.write_record(tmp_path, "X", signal, 257, [synth.LVH], None, "Female")
    sig, fs, comments = read_record(header)
    assert sig[0, 10] == 32.767 and fs == 257
    assert comments["Age"] == "NaN" and comments["Sex"] == "Female"
    with pytest.raises(ValueError):
        synth.write_record(tmp_path, "Y", signal, 500, [synth.NSR], 50, "M")


# ---------------------------------------------------------------------------------------------
# generate()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_generate_is_deterministic_and_independent_of_n_jobs(tmp_path: Path) -> None:
    names = synth.generate(tmp_path / "a", 6, seed=7, seconds=4)
    assert names == [f"SYN{i:05d}" for i in range(6)]
    synth.generate(tmp_path / "b", 6, seed=7, seconds=4)
    synth.generate(tmp_path / "c", 6, seed=7, seconds=4, n_jobs=2)
    synth.generate(tmp_path / "d", 6, seed=8, seconds=4)
    a = _files(tmp_path / "a")
    assert len(a) == 12
    assert a == _files(tmp_path / "b") == _files(tmp_path / "c")
    assert a != _files(tmp_path / "d")


def test_generate_shows_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = synth.generate(tmp_path, 3, seed=1, prefix="P", seconds=2, progress=True)
    assert names == ["P00000", "P00001", "P00002"]
    assert "3/3" in capsys.readouterr().err


def test_generated_records_follow_the_table(tmp_path: Path) -> None:
    names = synth.generate(tmp_path, 40, seed=11, prefix="G", fs=257)
    sets, _ = synth.load_label_sets()
    allowed = {frozenset(codes) for codes in sets}
    seen = []
    for name in names:
        sig, fs, comments = read_record(tmp_path / f"{name}.hea")
        codes = comments["Dx"].split(",")
        scored = frozenset(code for code in codes if code in SCORED_CODES)
        assert scored in allowed
        if not scored:
            assert len(codes) == 1 and codes[0] in synth.UNSCORED_WITH_TRACE
        assert fs == 257 and 6 <= sig.shape[1] / fs <= 60
        assert comments["Sex"] in ("Male", "Female")
        assert comments["Age"] == "NaN" or 18 <= int(comments["Age"]) <= 95
        seen.append(encode(codes))
    assert np.array(seen).any(axis=0).sum() >= 8  # a variety of classes


def test_record_formats_vary() -> None:
    rng = np.random.default_rng(0)
    drawn = [synth._draw_format(rng) for _ in range(2000)]
    rates = [fs for fs, _, _, _ in drawn]
    seconds = np.array([s for _, s, _, _ in drawn])
    gains = [g for _, _, g, _ in drawn]
    assert set(rates) == {257, 500, 1000} and rates.count(500) > 0.8 * len(rates)
    assert seconds.min() >= 6 and seconds.max() <= 60 and np.mean(seconds == 10) > 0.7
    assert set(gains) == {500, 1000} and gains.count(1000) > 0.7 * len(gains)
