"""WFDB headers of Challenge records, read tolerantly: `parse_header` -> `Header`.

Why our own parser: `wfdb.rdheader` rejects real Challenge headers (Georgia's record line names
the record `E00001.mat`, which its record-line grammar does not allow), and the baseline code's
`int()` / `': '` splitting breaks on float rates, float gains and `#Dx:code`. The parser follows
the WFDB header format (header(5) of the WFDB manual: field order, a baseline defaulting to the
ADC zero, a missing gain meaning 200/mV) and tolerates the rest; the tests check it against
`wfdb.rdheader` on the headers wfdb can read. wfdb itself is not imported here: it pulls in
pandas (half a second, and deprecation warnings) for one regular expression.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
LEAD_INDEX: dict[str, int] = {name: i for i, name in enumerate(LEADS)}
_CANONICAL_LEAD = {name.lower(): name for name in LEADS}

DEFAULT_GAIN = 200.0  # WFDB: a missing, zero (or here: negative) gain means 200 ADC units per mV

_RECORD_SUFFIX = re.compile(r"\.(mat|hea|dat)$", re.IGNORECASE)
_FORMAT = re.compile(r"\d+(x\d+)?(:\d+)?(\+\d+)?")  # format[xsamples][:skew][+offset]
_GAIN_FIELD = re.compile(r"([^(/]*)(?:\(([^)]*)\))?(?:/(.*))?")  # gain[(baseline)][/units]
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_MALE = {"male", "m", "man"}
_FEMALE = {"female", "f", "woman"}
# Units that are not mV: factor from "ADC units per <unit>" to "ADC units per mV".
_UNIT_SCALE = {"mv": 1.0, "uv": 1000.0, "µv": 1000.0, "μv": 1000.0, "v": 0.001}


class HeaderError(ValueError):
    """A header that cannot be read at all (empty, no record line, no sampling rate)."""


@dataclass(frozen=True)
class Header:
    """What a Challenge header says, cleaned up.

    The per-lead tuples (files, gains, baselines, lead_names) have one entry per lead line found,
    in file order; `n_leads` is their length (the record line's own count may differ: see notes).
    Gains are ADC units per mV, baselines ADC units. `notes` lists every quirk that was tolerated
    or corrected, in words.
    """

    record_name: str
    n_leads: int
    fs: float
    n_samples: int | None
    files: tuple[str, ...]
    gains: tuple[float, ...]
    baselines: tuple[int, ...]
    lead_names: tuple[str, ...]
    age: float | None = None
    sex: str | None = None
    dx: tuple[str, ...] = ()
    rx: str | None = None
    hx: str | None = None
    sx: str | None = None
    notes: tuple[str, ...] = ()


class _Lead(NamedTuple):
    file: str
    gain: float
    baseline: int
    name: str


def parse_header(
    source: str | bytes | Sequence[str] | Sequence[bytes], *, path: str | Path | None = None
) -> Header:
    """Parse a WFDB header of the Challenge, tolerating every quirk seen in its data.

    `source` is the header's text, its bytes, or its lines as `readlines()` gives them (the
    official driver passes those). `path` only names the file in messages. Raises HeaderError,
    and only HeaderError, when the text cannot be a header.
    """
    where = str(path) if path is not None else "header"
    if not isinstance(source, str | bytes | bytearray | Sequence):
        raise HeaderError(f"{where}: expected text, bytes or lines, got {type(source).__name__}")
    lines = _text_lines(source)
    notes: list[str] = []
    comments: list[str] = []
    record_line: str | None = None
    signal_lines: list[str] = []
    for line in lines:
        if line.startswith("#"):
            comments.append(line)
        elif record_line is None:
            record_line = line
        else:
            signal_lines.append(line)
    if record_line is None:
        raise HeaderError(f"{where}: no record line (the header is empty or only comments)")

    name, stated_leads, fs, n_samples = _parse_record_line(record_line, where, notes)
    leads = _parse_signal_lines(signal_lines, notes)
    if len(leads) != stated_leads:
        notes.append(f"the record line states {stated_leads} leads, {len(leads)} lead lines found")
        logger.warning("%s: %s", where, notes[-1])
    fields = _parse_comments(comments, notes)

    if notes:
        logger.debug("%s: %s", where, "; ".join(notes))
    return Header(
        record_name=name,
        n_leads=len(leads),
        fs=fs,
        n_samples=n_samples,
        files=tuple(lead.file for lead in leads),
        gains=tuple(lead.gain for lead in leads),
        baselines=tuple(lead.baseline for lead in leads),
        lead_names=tuple(lead.name for lead in leads),
        age=_parse_age(fields.get("age")),
        sex=_parse_sex(fields.get("sex")),
        dx=_parse_dx(fields.get("dx")),
        rx=fields.get("rx"),
        hx=fields.get("hx"),
        sx=fields.get("sx"),
        notes=tuple(notes),
    )


def _text_lines(source: str | bytes | Sequence[str] | Sequence[bytes]) -> list[str]:
    """Stripped, non-blank lines of any form of header text (CRLF, BOM and bad bytes included)."""
    if isinstance(source, bytes | bytearray):
        text = bytes(source).decode("utf-8", errors="replace")
    elif isinstance(source, str):
        text = source
    else:
        text = "\n".join(
            item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
            for item in source
        )
    text = text.lstrip("\ufeff")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _parse_record_line(
    line: str, where: str, notes: list[str]
) -> tuple[str, int, float, int | None]:
    """`name[/segments] n_leads fs[/counter[(base)]] [n_samples [time [date]]]`."""
    tokens = line.split()
    if len(tokens) < 2:
        raise HeaderError(f"{where}: the record line {line!r} has no lead count")
    # Georgia writes `E00001.mat` here; the record is `E00001`.
    name = _RECORD_SUFFIX.sub("", tokens[0].split("/")[0])
    n_leads = _parse_count(tokens[1])
    if n_leads is None:
        raise HeaderError(f"{where}: the record line {line!r} has no lead count")
    if n_leads < 1:
        raise HeaderError(f"{where}: the record line {line!r} states {n_leads} leads")
    if len(tokens) < 3:
        raise HeaderError(f"{where}: the record line {line!r} has no sampling frequency")
    fs = _to_float(re.split(r"[/(]", tokens[2])[0])
    if fs is None or not math.isfinite(fs) or fs <= 0:
        raise HeaderError(f"{where}: the sampling frequency {tokens[2]!r} is not a positive number")
    n_samples = _parse_count(tokens[3]) if len(tokens) > 3 else None
    if len(tokens) > 3 and n_samples is None:
        notes.append(f"the sample count {tokens[3]!r} is not a count: ignored")
    return name, n_leads, fs, n_samples


def _parse_count(text: str) -> int | None:
    value = _to_float(text)
    if value is None or not math.isfinite(value) or value < 0 or value != int(value):
        return None
    return int(value)


def _parse_signal_lines(lines: list[str], notes: list[str]) -> list[_Lead]:
    leads = []
    for line in lines:
        lead = _parse_signal_line(line, len(leads), notes)
        if lead is None:
            notes.append(f"not a lead line, ignored: {line!r}")
        else:
            leads.append(lead)
    return leads


def _parse_signal_line(line: str, index: int, notes: list[str]) -> _Lead | None:
    """One lead line (WFDB header(5)): `file format gain[(baseline)][/units] resolution adc_zero
    initial_value checksum block_size description`; trailing fields may be missing."""
    tokens = line.split(maxsplit=8)
    if len(tokens) < 2 or not _FORMAT.fullmatch(tokens[1]):
        return None
    if len(tokens) == 9:
        name, numbers = tokens[8], tokens[2:8]
    elif len(tokens) > 2 and lead_name(tokens[-1]) in LEAD_INDEX:
        name, numbers = tokens[-1], tokens[2:-1]  # a short line that still ends in a lead name
    else:
        name, numbers = "", tokens[2:]
    name = lead_name(name)
    if not name:
        # The Challenge writes its leads in the standard order, so position is the best guess.
        name = LEADS[index] if index < len(LEADS) else f"lead{index + 1}"
        notes.append(f"lead line {index + 1} has no lead name: taken as {name}")
    gain_field = _GAIN_FIELD.fullmatch(numbers[0]) if numbers else None
    gain_text, baseline_text, units = gain_field.groups(default="") if gain_field else ("", "", "")
    gain = _parse_gain(gain_text, units, name, notes)
    # WFDB: a baseline omitted from the gain field equals the ADC zero (the 3rd number).
    baseline = _to_int(baseline_text)
    if baseline is None:
        baseline = (_to_int(numbers[2]) if len(numbers) > 2 else None) or 0
    return _Lead(file=tokens[0], gain=gain, baseline=baseline, name=name)


def _parse_gain(text: str, units: str, lead: str, notes: list[str]) -> float:
    gain = _to_float(text)
    if gain is None or not math.isfinite(gain) or gain <= 0:
        note = f"lead {lead}: gain {text!r} missing or not positive: used {DEFAULT_GAIN:g}/mV"
        if gain is not None and gain != 0:  # stated, and wrong: say so (0 is WFDB for "none")
            logger.warning("%s", note)
        notes.append(note)
        return DEFAULT_GAIN
    unit = units.strip().lower()
    if unit in _UNIT_SCALE:
        return gain * _UNIT_SCALE[unit]
    if unit:
        notes.append(f"lead {lead}: unknown unit {units!r}: gain taken as per mV")
    return gain


def _parse_comments(lines: list[str], notes: list[str]) -> dict[str, str]:
    """`#Key: value` (with or without spaces) -> {key (lower case): value}; `#Dx` lines add up."""
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.lstrip("#").partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "dx" and key in fields:
            notes.append("more than one #Dx line: their codes are joined")
            value = f"{fields[key]},{value}"
        fields[key] = value
    return fields


def _parse_age(text: str | None) -> float | None:
    if text is None:
        return None
    match = _NUMBER.match(text)
    age = float(match.group()) if match else math.nan
    return age if math.isfinite(age) and age >= 0 else None


def _parse_sex(text: str | None) -> str | None:
    value = (text or "").strip().lower()
    if value in _MALE:
        return "Male"
    if value in _FEMALE:
        return "Female"
    return None


def _parse_dx(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(code.strip() for code in text.split(",") if code.strip())


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _to_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def lead_name(name: str) -> str:
    """The standard spelling of a lead name in any case (`avr` -> `aVR`); others unchanged."""
    name = name.strip()
    return _CANONICAL_LEAD.get(name.lower(), name)
