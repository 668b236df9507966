"""Labelled synthetic 12-lead ECG records in the exact format of the 2020 Challenge.

Label sets are drawn from the real joint distribution of the 27 scored codes (data/label_sets.csv,
derived from the 43,101 training records); each code leaves the trace that defines it
clinically (the rules below: a rate, a rhythm, an interval, a QRS pattern, an axis, a voltage
or a repolarisation change, each past its clinical threshold), drawn by the dipole model of
`ecg_gcn.synth_beats` (McSharry et al. 2003 waves, Edenbrandt & Pahlm 1988 lead projection).
Records are written as a WFDB header and a MATLAB v4 `val` matrix (int16, 12 x n), as the
Challenge ships them.

    generate("out", 100, seed=0)            # out/SYN00000.hea + .mat, ...
    signal, info = synthesize(rng, ["164889003"], 500, 10)   # one AF record in memory
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.io

from ecg_gcn.header import LEADS
from ecg_gcn.labels import SCORED_CODES
from ecg_gcn.synth_beats import Plan, render

LABEL_SETS_CSV = Path(__file__).resolve().parent / "data" / "label_sets.csv"

# The scored codes by what they look like (both members of an equivalent pair where there is one).
NSR, SB, STACH, BRADY, SA = "426783006", "426177001", "427084000", "426627000", "427393009"
AF, AFL, PACED = "164889003", "164890007", "10370003"
IAVB, LPR = "270492004", "164947007"
CRBBB, RBBB, IRBBB, LBBB, NSIVCB = "713427006", "59118001", "713426002", "164909002", "698252002"
LANFB, LAD, RAD = "445118002", "39732003", "47665007"
LQRSV, QAB, TAB, TINV, LQT = "251146004", "164917005", "164934002", "59931005", "111975006"
PAC, SVPB, PVC, VPB = "284470004", "63593006", "427172004", "17338001"
# Unscored diagnoses with a trace of their own, given to records whose label set has no scored
# code (the real ones had only unscored codes) so that no record is unlearnable noise.
LVH, STD = "164873001", "429622005"
UNSCORED_WITH_TRACE = (LVH, STD)

SAMPLING_RATES = (500, 1000, 257)  # most sources, PTB, INCART
SAMPLING_WEIGHTS = (0.9, 0.06, 0.04)
GAINS = (1000, 500)
GAIN_WEIGHTS = (0.85, 0.15)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ---------------------------------------------------------------------------------------------
# Label sets


def derive_label_sets(src_csv: Path | str, dst_csv: Path | str) -> None:
    """Count the distinct combinations of scored codes in a per-record 0/1 table.

    `src_csv` has one row per training record and one 0/1 column per scored code (named by the
    code, e.g. scored_labels_2020.csv); other columns are ignored. `dst_csv` gets `codes,count`:
    each distinct set (its codes in weights.csv order, joined by ';', empty for records without a
    scored code) and how many records have it, most frequent first, ties by the codes.
    """
    with open(src_csv, newline="") as f:
        reader = csv.DictReader(f)
        missing = [code for code in SCORED_CODES if code not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{src_csv}: no column for the scored codes {missing}")
        counts = Counter(
            ";".join(code for code in SCORED_CODES if int(float(row[code]))) for row in reader
        )
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    with open(dst_csv, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["codes", "count"])
        writer.writerows(rows)


@lru_cache(maxsize=4)
def load_label_sets(
    path: Path | str = LABEL_SETS_CSV,
) -> tuple[tuple[tuple[str, ...], ...], np.ndarray]:
    """The label sets of `path` (written by `derive_label_sets`) and their probabilities."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    sets = tuple(tuple(code for code in row["codes"].split(";") if code) for row in rows)
    counts = np.array([int(row["count"]) for row in rows], dtype=float)
    return sets, counts / counts.sum()


def draw_codes(rng: np.random.Generator) -> tuple[str, ...]:
    """A real label set, drawn with its frequency in the training data.

    A set without scored codes gets one unscored code that has a trace; a few others get one too,
    as real headers carry unscored diagnoses beside scored ones.
    """
    sets, prob = load_label_sets()
    codes = sets[rng.choice(len(sets), p=prob)]
    if not codes:
        return (UNSCORED_WITH_TRACE[rng.integers(len(UNSCORED_WITH_TRACE))],)
    if rng.random() < 0.05:
        extra = STD if LQRSV in codes or rng.random() < 0.5 else LVH
        codes = (*codes, extra)
    return codes


# ---------------------------------------------------------------------------------------------
# From diagnoses to a plan


def _has(codes: Iterable[str], *wanted: str) -> bool:
    return any(code in codes for code in wanted)


def _rhythm(codes: set[str]) -> str:
    """One rhythm for the record. Real sets sometimes combine rhythm labels (AF with AFL, NSR with
    AF...): the most specific wins, the labels stay as they are."""
    if PACED in codes:
        return "paced"
    if AFL in codes:
        return "afl"
    if AF in codes:
        return "af"
    return "sinus"


def _rate_range(codes: set[str], rhythm: str) -> tuple[float, float]:
    """Ventricular rate range: under 60 for SB and Brady, over 100 for STach, else 60-100."""
    slow = _has(codes, SB, BRADY)
    if rhythm == "paced":
        return (50.0, 58.0) if slow else (60.0, 78.0)
    if slow:
        return (40.0, 57.0)
    if STACH in codes:
        return (103.0, 150.0)
    if rhythm == "af":
        return (62.0, 125.0)
    if SA in codes:
        return (62.0, 92.0)
    return (62.0, 97.0)


def _conduction(codes: set[str]) -> str:
    if LBBB in codes:
        return "lbbb"
    if _has(codes, RBBB, CRBBB):
        return "rbbb"
    if IRBBB in codes:
        return "irbbb"
    if NSIVCB in codes:
        return "nsivcb"
    return "normal"


_QRS_RANGES = {  # seconds; with margins around the 100, 110 and 120 ms thresholds
    "normal": (0.075, 0.098),
    "irbbb": (0.104, 0.116),
    "nsivcb": (0.118, 0.14),
    "rbbb": (0.128, 0.16),
    "lbbb": (0.13, 0.17),
    "paced": (0.13, 0.17),
}


def _axis(rng: np.random.Generator, codes: set[str], rhythm: str) -> float:
    """Frontal QRS axis: LAnFB -50 to -85, LAD -40 to -80, RAD +100 to +160, else -20 to +80.
    Right-ventricular apical pacing points the axis up and to the left."""
    if LANFB in codes:
        return rng.uniform(-85, -50)
    if LAD in codes:
        return rng.uniform(-80, -40)
    if RAD in codes:
        return rng.uniform(100, 160)
    if rhythm == "paced":
        return rng.uniform(-80, -40)
    return rng.uniform(-20, 80)


def _flutter(
    rng: np.random.Generator, codes: set[str], heart_rate: float | None
) -> tuple[float, int]:
    """Atrial rate (per minute) and conduction ratio of flutter: usually 2:1, often 4:1, slower
    only with Brady or SB; a forced heart rate picks the ratio (2 to 4) that comes closest."""
    atrial_rate = rng.uniform(260, 330)
    if heart_rate is not None:
        return atrial_rate, int(np.clip(round(atrial_rate / heart_rate), 2, 4))
    if _has(codes, SB, BRADY):
        return atrial_rate, math.ceil(atrial_rate / 57)
    if STACH not in codes and rng.random() < 0.4:
        return atrial_rate, 4
    return atrial_rate, 2


def _t_wave(rng: np.random.Generator, codes: set[str]) -> str:
    if TINV in codes:
        return "inverted"
    if TAB in codes:
        return "flat" if rng.random() < 0.6 else "biphasic"
    return "normal"


def _voltage(codes: set[str]) -> str:
    if LQRSV in codes:
        return "low"
    if LVH in codes:
        return "high"
    return "normal"


def plan_for_codes(
    rng: np.random.Generator, codes: Sequence[str], heart_rate: float | None = None
) -> Plan:
    """The physiology a record with these diagnoses shows (their clinical definitions), its free
    parameters drawn at random. `heart_rate` forces the ventricular rate (for flutter, through
    the ratio). Unknown codes are ignored."""
    codes = set(codes)
    rhythm = _rhythm(codes)
    conduction = _conduction(codes)
    low, high = _rate_range(codes, rhythm)
    if rhythm == "sinus" and _has(codes, PAC, SVPB):
        high -= 0.1 * high  # early beats raise the mean rate: keep SB under 60, NSR under 100
    rate = heart_rate if heart_rate is not None else rng.uniform(low, high)
    atrial_rate, ratio = _flutter(rng, codes, heart_rate)
    if rhythm == "afl":
        rate = atrial_rate / ratio
    qrs_kind = "paced" if rhythm == "paced" else conduction
    qrs = rng.uniform(*_QRS_RANGES[qrs_kind])
    if LANFB in codes and qrs_kind == "normal":
        qrs = rng.uniform(0.085, 0.098)
    return Plan(
        rhythm=rhythm,
        heart_rate=float(rate),
        sinus_arrhythmia=SA in codes and rhythm == "sinus",
        pr=rng.uniform(0.22, 0.32) if _has(codes, IAVB, LPR) else rng.uniform(0.13, 0.19),
        qrs=float(qrs),
        qtc=rng.uniform(0.48, 0.54) if LQT in codes else rng.uniform(0.37, 0.43),
        axis=float(_axis(rng, codes, rhythm)),
        conduction=conduction,
        fascicular_block=LANFB in codes,
        q_wave=("inferior" if rng.random() < 0.5 else "anterior") if QAB in codes else None,
        t_wave=_t_wave(rng, codes),
        voltage=_voltage(codes),
        st_depression=STD in codes,
        pac=_has(codes, PAC, SVPB),
        pvc=_has(codes, PVC, VPB),
        pacing="DDD" if rng.random() < 0.4 else "VVI",
        atrial_rate=float(atrial_rate),
        flutter_ratio=int(ratio),
    )


def synthesize(
    rng: np.random.Generator,
    codes: Sequence[str],
    fs: float,
    seconds: float,
    *,
    noise: float = 1.0,
    heart_rate: float | None = None,
) -> tuple[np.ndarray, dict]:
    """One record in memory: the (12, n) signal in mV (leads I, II, III, aVR, aVL, aVF, V1-V6)
    and its ground truth.

    `info` holds rhythm, heart_rate (bpm), beat_onsets (s) and beat_kinds ('N' dominant, 'A'
    PAC, 'V' PVC), pr_ms (None without P waves), qrs_ms, qt_ms and qtc_ms (Bazett), axis_deg
    (frontal QRS axis from net areas), qrs_p2p_mv (per lead) and the Plan. `noise` scales
    baseline wander, mains hum and muscle noise (0: none).
    """
    plan = plan_for_codes(rng, codes, heart_rate)
    signal, info = render(rng, plan, fs, seconds, noise)
    info["codes"] = tuple(codes)
    return signal, info


# ---------------------------------------------------------------------------------------------
# The Challenge file format


def wfdb_checksum(samples: np.ndarray) -> np.ndarray:
    """WFDB checksum of each row: the sum of its samples as a signed 16-bit number."""
    total = samples.astype(np.int64).sum(axis=-1)
    return (total + 32768) % 65536 - 32768


def to_adc(signal_mv: np.ndarray, gain: float) -> np.ndarray:
    """mV -> int16 ADC units (baseline 0), rounded and clipped to the int16 range."""
    scaled = np.rint(np.asarray(signal_mv, float) * gain)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def header_text(
    name: str,
    adc: np.ndarray,
    fs: float,
    codes: Sequence[str],
    age: float | None,
    sex: str,
    gain: float,
    timestamp: dt.datetime,
) -> str:
    """The .hea text of a record: WFDB record and signal lines, then the Challenge comments."""
    if sex not in ("Male", "Female"):
        raise ValueError(f"sex must be 'Male' or 'Female', not {sex!r}")
    stamp = f"{timestamp.day:02d}-{_MONTHS[timestamp.month - 1]}-{timestamp.year:04d}"
    lines = [f"{name} {adc.shape[0]} {_number(fs)} {adc.shape[1]} {stamp} {timestamp:%H:%M:%S}"]
    for lead, first, check in zip(LEADS, adc[:, 0], wfdb_checksum(adc), strict=True):
        lines.append(f"{name}.mat 16+24 {_number(gain)}/mV 16 0 {first} {check} 0 {lead}")
    age_text = "NaN" if age is None or not np.isfinite(age) else str(round(age))
    lines += [
        f"#Age: {age_text}",
        f"#Sex: {sex}",
        f"#Dx: {','.join(codes)}",
        "#Rx: Unknown",
        "#Hx: Unknown",
        "#Sx: Unknown",
    ]
    return "".join(line + "\n" for line in lines)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def write_record(
    folder: Path | str,
    name: str,
    signal_mv: np.ndarray,
    fs: float,
    codes: Sequence[str],
    age: float | None,
    sex: str,
    gain: float = 1000,
    timestamp: dt.datetime | None = None,
) -> Path:
    """Write `name.hea` and `name.mat` into `folder` (which must exist); returns the .hea path.

    The .mat is MATLAB v4 with one int16 matrix `val`, 12 x n, whose data start at byte 24 (the
    header's "16+24"); `age` None or NaN is written as NaN, as in the real data.
    """
    if signal_mv.ndim != 2 or signal_mv.shape[0] != len(LEADS):
        raise ValueError(f"signal must be (12, n), not {signal_mv.shape}")
    folder = Path(folder)
    adc = to_adc(signal_mv, gain)
    timestamp = timestamp or dt.datetime(2020, 1, 1)
    scipy.io.savemat(folder / f"{name}.mat", {"val": adc}, format="4")
    header = folder / f"{name}.hea"
    with open(header, "w", newline="") as f:
        f.write(header_text(name, adc, fs, codes, age, sex, gain, timestamp))
    return header


# ---------------------------------------------------------------------------------------------
# Many records


def _draw_demographics(rng: np.random.Generator, codes: Sequence[str]) -> tuple[float | None, str]:
    """Age and sex, close to the training set (age 60 +- 17, 52 % men): ages 58 +- 16, 8 years
    more with AF, AFL, pacing, blocks or PACs, 8 less with SA or RAD, clipped to 18-95; NaN in
    0.4 % of records, as in the real headers."""
    shift = 8.0 * _has(codes, AF, AFL, PACED, LBBB, CRBBB, IAVB, LPR, LANFB, PAC)
    shift -= 8.0 * _has(codes, SA, RAD)
    age = None if rng.random() < 0.004 else float(np.clip(rng.normal(58 + shift, 16), 18, 95))
    sex = "Male" if rng.random() < 0.52 else "Female"
    return age, sex


def _draw_format(rng: np.random.Generator) -> tuple[int, float, int, dt.datetime]:
    """Sampling rate, duration (s), gain and timestamp: mostly 500 Hz, 10 s, 1000/mV."""
    fs = int(rng.choice(SAMPLING_RATES, p=SAMPLING_WEIGHTS))
    roll = rng.random()
    if roll < 0.8:
        seconds = 10.0
    elif roll < 0.95:
        seconds = float(rng.integers(6, 31))
    else:
        seconds = float(rng.integers(31, 61))
    gain = int(rng.choice(GAINS, p=GAIN_WEIGHTS))
    stamp = dt.datetime(2000, 1, 1) + dt.timedelta(seconds=int(rng.integers(0, 21 * 365 * 86400)))
    return fs, seconds, gain, stamp


def record_name(prefix: str, index: int, n: int) -> str:
    """`prefix` and the index, zero-padded to 5 digits or as many as n - 1 has."""
    return f"{prefix}{index:0{max(5, len(str(n - 1)))}d}"


def _write_records(
    out_dir: Path,
    jobs: list[tuple[str, np.random.SeedSequence]],
    fs: float | None,
    seconds: float | None,
) -> list[str]:
    """Draw and write one record per (name, seed); what runs in each worker."""
    names = []
    for name, seed in jobs:
        rng = np.random.default_rng(seed)
        codes = draw_codes(rng)
        age, sex = _draw_demographics(rng, codes)
        rate, duration, gain, stamp = _draw_format(rng)
        rate = fs or rate
        duration = seconds or duration
        noise = rng.uniform(0.3, 1.5)
        signal, _ = synthesize(rng, codes, rate, duration, noise=noise)
        write_record(out_dir, name, signal, rate, codes, age, sex, gain, stamp)
        names.append(name)
    return names


def generate(
    out_dir: Path | str,
    n: int,
    seed: int,
    *,
    n_jobs: int = 1,
    prefix: str = "SYN",
    fs: float | None = None,
    seconds: float | None = None,
    progress: bool = False,
) -> list[str]:
    """Write n labelled records into out_dir (created if missing) and return their names.

    Record i is drawn from the i-th child of SeedSequence(seed) alone, so the output depends only
    on (seed, n, fs, seconds), not on n_jobs. `fs` and `seconds` force the sampling rate and the
    duration of every record.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(seed).spawn(n)
    jobs = [(record_name(prefix, i, n), s) for i, s in enumerate(seeds)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="rec", desc="synth")
    names: list[str] = []
    if n_jobs == 1:
        results: Iterable[list[str]] = (
            _write_records(out_dir, jobs[i : i + 64], fs, seconds) for i in range(0, n, 64)
        )
    else:
        from joblib import Parallel, delayed, effective_n_jobs

        # chunks big enough to hide the dispatch cost, small enough to keep every worker busy
        size = max(1, min(64, math.ceil(n / (4 * effective_n_jobs(n_jobs)))))
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_write_records)(out_dir, jobs[i : i + size], fs, seconds)
            for i in range(0, n, size)
        )
    for done in results:
        names += done
        if bar is not None:
            bar.update(len(done))
    if bar is not None:
        bar.close()
    return names
