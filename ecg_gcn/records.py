"""Challenge records: the `.mat` reader, ADC units -> mV, lead order, plausible bounds.

A record is a WFDB header (`.hea`) and a MATLAB file (`.mat`, variable `val`, ADC units, leads x
samples). Training reads both from disk (`load_record`); at inference the official driver hands
`run_12ECG_classifier` the loaded array and the header's lines (`from_arrays`). Both go through
the same `_build_record`, so the two can never disagree.

The header is read by `ecg_gcn.header`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.io

from ecg_gcn import labels
from ecg_gcn.header import (
    LEAD_INDEX,
    LEADS,
    Header,
    lead_name,
    parse_header,
)

logger = logging.getLogger(__name__)

# Gain sanity (see `check_gains`). 1000 ADC units per mV is what the Challenge stores (CPSC,
# Chapman, Ningbo, and the corrected 2021 headers of Georgia and PTB-XL for the very same data).
NOMINAL_GAIN = 1000.0
# A stated gain at least this factor away from NOMINAL_GAIN is replaced by it. The wrong gains of
# the real data (Georgia 4880/mV, PTB 2000000/mV, PTB-XL 200/mV) are all 4.88x or more away;
# gains within the factor (500/mV and 2000/mV included) are kept as stated.
MIN_GAIN_RATIO = 3.0

# Plausible bounds of a recording, checked before anything is allocated for it: a header or a
# `.mat` outside them is refused with a RecordError (the driver answers always-normal, training
# lists it in skipped.csv). Without them one header could sink a whole run: a stated rate of
# 5e9 Hz made the resampler build a filter of gigabytes, 0.5 Hz an output 1000 times the input,
# and an 823 KB compressed `.mat` decompresses to 12 x 30 M samples. The Challenge's own data
# lie well inside: 257 Hz (INCART) to 1000 Hz (PTB), 6 s to 30 minutes (INCART's 462,600
# samples).
MIN_FS = 50.0  # Hz: below it the QRS (10-40 Hz) cannot be represented
MAX_FS = 20_000.0  # Hz: research ECG hardware samples at up to about 16 kHz
MIN_SECONDS = 1.0  # less than one heartbeat cannot be classified
MAX_BASELINE = 2.0**31  # ADC units: a 32-bit converter's range
MAX_SAMPLES = 2_000_000  # per lead: 33 minutes at 1000 Hz, an hour at 500 Hz
MAX_VALUES = 12 * MAX_SAMPLES  # in all: 192 MB as the driver's float64
_BOUNDS = (
    f"plausible bounds: {MIN_FS:g}-{MAX_FS:g} Hz, at least {MIN_SECONDS:g} s, "
    f"at most {MAX_SAMPLES:,} samples per lead and {MAX_VALUES:,} in all"
)

_RECORD_SUFFIX = re.compile(r"\.(mat|hea|dat)$", re.IGNORECASE)


class RecordError(ValueError):
    """A recording that cannot be read (missing or unreadable file, no `val`, bad shape)."""


# ---------------------------------------------------------------------------------------------
# Signals


def check_mat_size(path: str | Path) -> None:
    """Refuse a `.mat` whose `val` would not fit the bounds once loaded, from the shapes the
    file declares (`scipy.io.whosmat` reads them without decompressing anything)."""
    try:
        variables = scipy.io.whosmat(path)
    except Exception as error:  # whosmat, like loadmat, fails with many exception types
        raise RecordError(f"{path}: not a readable MATLAB file ({error})") from error
    for name, shape, _ in variables:
        if name == "val":
            check_shape(shape, str(path))


def check_shape(shape: Sequence[int], source: str) -> None:
    """Refuse a signal array of more samples than the bounds allow (either layout)."""
    if shape and (max(shape) > MAX_SAMPLES or math.prod(shape) > MAX_VALUES):
        raise RecordError(f"{source}: a signal of shape {tuple(shape)} is outside the {_BOUNDS}")


def check_timing(fs: float, n_samples: int, source: str) -> None:
    """Refuse a sampling rate or a duration outside the bounds (before any resampling)."""
    if not MIN_FS <= fs <= MAX_FS:
        raise RecordError(f"{source}: a sampling rate of {fs:g} Hz is outside the {_BOUNDS}")
    if n_samples / fs < MIN_SECONDS:
        raise RecordError(
            f"{source}: {n_samples} samples at {fs:g} Hz ({n_samples / fs:.3g} s) is too short "
            f"to classify; the {_BOUNDS}"
        )


def load_mat(path: str | Path) -> np.ndarray:
    """The `val` array of a Challenge `.mat` file (leads x samples, ADC units, as stored)."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such file")
    check_mat_size(path)
    try:
        contents = scipy.io.loadmat(path)
    except Exception as error:  # loadmat reports a corrupt file with many exception types
        raise RecordError(f"{path}: not a readable MATLAB file ({error})") from error
    if "val" not in contents:
        found = ", ".join(key for key in contents if not key.startswith("__")) or "nothing"
        raise RecordError(f"{path}: no variable 'val' (found: {found})")
    val = np.asarray(contents["val"])
    if val.ndim == 1:
        val = val[np.newaxis]
    if val.ndim != 2 or not np.issubdtype(val.dtype, np.number):  # a cell, a struct, sparse
        raise RecordError(f"{path}: 'val' is a {val.ndim}-d {val.dtype} array, not leads x samples")
    if np.iscomplexobj(val):
        raise RecordError(f"{path}: 'val' holds complex numbers, not ADC samples")
    return val


def to_millivolts(adc: np.ndarray, header: Header) -> np.ndarray:
    """(adc - baseline) / gain for each lead, as float32 (leads in header order)."""
    adc = np.asarray(adc)
    if adc.ndim != 2 or adc.shape[0] != header.n_leads:
        raise ValueError(f"expected {header.n_leads} leads x samples, got shape {adc.shape}")
    # float32 holds every 16-bit (indeed every < 2**24) integer exactly, so int16 from disk and
    # float64 from the driver give identical results.
    signal = adc.astype(np.float32)
    signal -= np.asarray(header.baselines, dtype=np.float32)[:, np.newaxis]
    signal /= np.asarray(header.gains, dtype=np.float32)[:, np.newaxis]
    return signal


def standard_leads(
    signal: np.ndarray, names: Sequence[str], *, source: str | None = None
) -> np.ndarray:
    """Rows reordered by lead name into LEADS order: (12, n). A missing lead is zeros; unknown
    and repeated names are ignored with a warning (`source` names the record in it)."""
    signal = np.asarray(signal)
    names = tuple(lead_name(name) for name in names)
    if names == LEADS and signal.shape[0] == len(LEADS):
        return signal
    if len(names) != signal.shape[0]:
        raise ValueError(f"{len(names)} lead names for {signal.shape[0]} signal rows")
    out = np.zeros((len(LEADS), signal.shape[-1]), dtype=signal.dtype)
    filled = np.zeros(len(LEADS), dtype=bool)
    ignored = []
    for row, name in enumerate(names):
        index = LEAD_INDEX.get(name)
        if index is None or filled[index]:
            ignored.append(name)
            continue
        out[index] = signal[row]
        filled[index] = True
    if ignored:
        logger.warning("%s: leads ignored (unknown or repeated): %s", source or "record", ignored)
    return out


def check_gains(adc: np.ndarray, header: Header, *, source: str | None = None) -> Header:
    """The header with every gain at least MIN_GAIN_RATIO away from 1000/mV replaced by 1000/mV.

    Real Challenge headers state wrong gains: early Georgia 4880/mV, PTB 2000000/mV, PTB-XL (2020
    release) 200/mV, where the data are stored at 1000/mV like every other database of the
    Challenge (the organisers' 2021 headers of the same Georgia and PTB-XL data say 1000/mV). All
    of them are a factor of 4.88 or more away from 1000/mV; so a gain at least MIN_GAIN_RATIO (3)
    away is taken for such an error and replaced, and a gain within that factor (500/mV, 2000/mV)
    is kept. A missing gain, which WFDB reads as 200/mV, is therefore read as 1000/mV too. Each
    replacement adds a "gain corrected: ..." note to the header and is logged at INFO.

    The decision depends on the stated gain (in per-mV units) only, never on the samples: `adc`
    is unused and kept for the callers. Deciding per recording from its amplitude cannot work,
    because a factor of ~5 is within the spread of real amplitudes: any amplitude threshold for
    one stated gain maps the recordings just below and just above it to amplitudes a factor of 5
    apart in the wrong order (an earlier rule of that kind read a 0.39 mV PTB-XL recording at its
    stated 200/mV as 1.95 mV and a 2.3 mV Georgia one at its stated 4880/mV as 0.47 mV, inverting
    low QRS voltage exactly where it matters). With a rule on the stated gain alone, recordings
    that state the same gain keep the order of their true amplitudes.
    """
    del adc  # unused on purpose: the decision must not depend on the samples
    notes = []
    corrected = list(header.gains)
    for gain in sorted(set(header.gains)):
        ratio = max(gain, NOMINAL_GAIN) / min(gain, NOMINAL_GAIN)
        if ratio < MIN_GAIN_RATIO:
            continue
        leads = [name for name, g in zip(header.lead_names, header.gains, strict=True) if g == gain]
        corrected = [NOMINAL_GAIN if g == gain else g for g in corrected]
        which = "all leads" if len(leads) == header.n_leads else "leads " + ", ".join(leads)
        notes.append(
            f"gain corrected: {gain:.10g}/mV ({which}) is {ratio:.3g}x away from the Challenge's "
            f"{NOMINAL_GAIN:g}/mV; used {NOMINAL_GAIN:g}/mV"
        )
        # INFO, not WARNING: a whole database can carry the same wrong gain, and the correction
        # is recorded in the header's notes anyway.
        logger.info("%s: %s", source or header.record_name, notes[-1])
    if not notes:
        return header
    return replace(header, gains=tuple(corrected), notes=header.notes + tuple(notes))


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, eq=False)
class Record:
    """A recording ready for `signal.preprocess`: (12, n) float32 mV in LEADS order at `fs`."""

    name: str
    header: Header
    signal: np.ndarray
    fs: float

    @property
    def labels(self) -> np.ndarray:
        """Multi-hot over the 24 scored classes."""
        return labels_of(self.header)


def load_record(path: str | Path, *, fix_gains: bool = True) -> Record:
    """Read a record from its `.hea` or `.mat` path (or the path without an extension)."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in (".hea", ".mat") else path
    header_path = companion(base, ".hea")
    mat_path = companion(base, ".mat")
    try:
        text = header_path.read_bytes()
    except OSError as error:
        raise RecordError(f"{header_path}: cannot read the header ({error})") from error
    header = parse_header(text, path=header_path)
    return _build_record(load_mat(mat_path), header, base.name, str(base), fix_gains)


def from_arrays(
    data: np.ndarray,
    header_lines: str | bytes | Sequence[str],
    *,
    name: str | None = None,
    fix_gains: bool = True,
) -> Record:
    """The record `run_12ECG_classifier(data, header_data, model)` receives: `data` is the
    loaded `val` (leads x samples, ADC units), `header_lines` the header's lines."""
    header = parse_header(header_lines)
    name = name or header.record_name
    return _build_record(np.asarray(data), header, name, name, fix_gains)


def _build_record(
    adc: np.ndarray, header: Header, name: str, source: str, fix_gains: bool
) -> Record:
    adc, header = _align(adc, header, source)
    # Without a single standard lead the network would see only zeros and answer anyway: an
    # unreadable recording must say so (the caller then answers always-normal), not guess.
    if not any(lead_name(name) in LEAD_INDEX for name in header.lead_names):
        raise RecordError(f"{source}: no standard lead among {list(header.lead_names)}")
    if any(abs(b) > MAX_BASELINE for b in header.baselines):
        raise RecordError(
            f"{source}: a baseline of {max(header.baselines, key=abs):g} ADC units "
            f"is outside any converter's range (at most {MAX_BASELINE:.0e})"
        )
    if fix_gains:
        header = check_gains(adc, header, source=source)
    signal = standard_leads(to_millivolts(adc, header), header.lead_names, source=source)
    if not np.any(np.ptp(np.nan_to_num(signal), axis=1) > 0):
        logger.warning(
            "%s: every lead is flat (a constant signal): the answer means little", source
        )
    return Record(name=name, header=header, signal=signal, fs=header.fs)


def _align(adc: np.ndarray, header: Header, source: str) -> tuple[np.ndarray, Header]:
    """Match the array's rows to the header's lead lines, tolerating a transposed array and
    extra rows or lines (the surplus is dropped). Each fix is noted on the header and logged."""
    if adc.ndim == 1:
        adc = adc[np.newaxis]
    if adc.ndim != 2 or not np.issubdtype(adc.dtype, np.number):
        raise RecordError(f"{source}: the signal is a {adc.ndim}-d {adc.dtype} array")
    check_shape(adc.shape, source)
    notes = []
    if adc.shape[0] != header.n_leads and adc.shape[1] == header.n_leads:
        notes.append("the signal was samples x leads: transposed")
        adc = adc.T
    # An empty or all-NaN signal would reach the network as zeros and get an answer that looks
    # like a reading; a partly non-finite one is usable (preprocessing zeroes those samples) but
    # must be reported.
    if adc.shape[1] == 0:
        raise RecordError(f"{source}: the signal has no samples (shape {adc.shape})")
    check_timing(header.fs, adc.shape[1], source)
    if not np.issubdtype(adc.dtype, np.integer):
        finite = np.isfinite(adc)
        if not finite.any():
            raise RecordError(f"{source}: no finite sample (all NaN or inf)")
        if not finite.all():
            notes.append(f"{finite.size - np.count_nonzero(finite)} non-finite samples: set to 0")
    n = min(adc.shape[0], header.n_leads)
    if adc.shape[0] != header.n_leads:
        notes.append(f"{adc.shape[0]} signal rows for {header.n_leads} lead lines: used {n}")
        adc = adc[:n]
        header = replace(
            header,
            n_leads=n,
            files=header.files[:n],
            gains=header.gains[:n],
            baselines=header.baselines[:n],
            lead_names=header.lead_names[:n],
        )
    if header.n_samples is not None and header.n_samples != adc.shape[1]:
        notes.append(f"the header states {header.n_samples} samples, the signal has {adc.shape[1]}")
    for note in notes:
        logger.warning("%s: %s", source, note)
    if notes:
        header = replace(header, notes=header.notes + tuple(notes))
    return adc, header


def labels_of(header: Header) -> np.ndarray:
    """Multi-hot (bool) over the 24 scored classes from the header's `#Dx` codes."""
    return labels.encode(header.dx)


def find_records(folder: str | Path) -> list[str]:
    """Record names in `folder`, as the official code finds them: regular files not starting with
    '.' whose name ends in 'hea' (any case); sorted, each once (`A.hea` beside `A.HEA` is one
    record, read from `A.hea`: see `companion`)."""
    names = set()
    for entry in Path(folder).iterdir():
        if entry.name.startswith(".") or not entry.name.lower().endswith("hea"):
            continue
        if entry.is_file():
            stem = entry.name[:-4] if entry.name.lower().endswith(".hea") else entry.name[:-3]
            names.add(stem)
    return sorted(names)


def companion(base: str | Path, suffix: str) -> Path:
    """The file `base` + `suffix` (".hea" or ".mat"), or, when there is none, the one beside it
    whose name differs only in case (`U9.MAT`): training, the driver and the cache all find a
    record's files by this one rule. The folder is listed only when the exact name is absent."""
    base = Path(base)
    exact = base.with_name(base.name + suffix)
    if exact.exists() or exact.is_symlink():
        return exact
    wanted = exact.name.lower()
    try:
        matches = sorted(e for e in base.parent.iterdir() if e.name.lower() == wanted)
    except OSError:
        return exact
    return matches[0] if matches else exact
