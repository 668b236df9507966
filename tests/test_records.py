"""Header parsing, record loading, units and lead order, on hand-made headers and real records."""

from __future__ import annotations

import csv
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ecg_gcn import labels, records, signal
from ecg_gcn.header import DEFAULT_GAIN, LEADS, Header, HeaderError, parse_header
from ecg_gcn.records import RecordError

REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "real_sample"
# The real records whose headers state a wrong gain (see shared/real_sample/PROVENANCE.md).
WRONG_GAINS = {"4880": "Georgia 2020", "2000000": "PTB", "200": "PTB-XL 2020"}


def header_text(
    record_line: str = "A0001 12 500 5000 05-Feb-2020 11:39:16",
    lead_lines: list[str] | None = None,
    comments: tuple[str, ...] = ("#Age: 74", "#Sex: Male", "#Dx: 59118001"),
    newline: str = "\n",
) -> str:
    if lead_lines is None:
        lead_lines = [f"A0001.mat 16+24 1000/mV 16 0 0 0 0 {name}" for name in LEADS]
    return newline.join([record_line, *lead_lines, *comments]) + newline


def lead_line(gain_field: str, name: str = "I", tail: str = "16 0 0 0 0") -> str:
    return f"x.mat 16+24 {gain_field} {tail} {name}"


def parse_leads(*lines: str) -> Header:
    return parse_header(header_text(record_line=f"x {len(lines)} 500 10", lead_lines=list(lines)))


# --------------------------------------------------------------------------------------------
# The header parser, one quirk at a time


def test_a_plain_challenge_header():
    header = parse_header(header_text())
    assert header.record_name == "A0001"
    assert (header.n_leads, header.fs, header.n_samples) == (12, 500.0, 5000)
    assert header.lead_names == LEADS
    assert header.gains == (1000.0,) * 12 and header.baselines == (0,) * 12
    assert header.files == ("A0001.mat",) * 12
    assert (header.age, header.sex, header.dx) == (74.0, "Male", ("59118001",))
    assert header.notes == ()


def test_georgia_record_line_names_the_mat_file():
    header = parse_header(header_text(record_line="E00001.mat 12 500 5000 05-May-2020 14:50:55"))
    assert header.record_name == "E00001"


@pytest.mark.parametrize(
    ("field", "fs"),
    [("500", 500.0), ("500.0", 500.0), ("257/1000", 257.0), ("256.9", 256.9), ("1e3", 1000.0)],
)
def test_sampling_frequency_forms(field, fs):
    assert parse_header(header_text(record_line=f"A0001 12 {field} 5000")).fs == fs


def test_sample_count_is_optional():
    assert parse_header(header_text(record_line="A0001 12 500")).n_samples is None


@pytest.mark.parametrize(
    ("gain_field", "gain", "baseline"),
    [
        ("1000/mV", 1000.0, 0),
        ("1000", 1000.0, 0),  # units omitted: mV
        ("4880.5/mV", 4880.5, 0),
        ("1000(12)/mV", 1000.0, 12),  # WFDB: baseline in parentheses
        ("1000.0(-3)/mv", 1000.0, -3),
        ("1/uV", 1000.0, 0),
        ("0/mV", DEFAULT_GAIN, 0),  # zero: missing
        ("-5/mV", DEFAULT_GAIN, 0),  # negative: missing
        ("abc/mV", DEFAULT_GAIN, 0),
    ],
)
def test_gain_field_forms(gain_field, gain, baseline):
    header = parse_leads(lead_line(gain_field))
    assert (header.gains, header.baselines) == ((gain,), (baseline,))


def test_missing_gain_is_the_wfdb_default_and_noted():
    header = parse_leads("x.mat 16")
    assert header.gains == (DEFAULT_GAIN,)
    assert header.lead_names == ("I",)  # no name: the standard order by position
    assert len(header.notes) == 2


def test_a_short_lead_line_ending_in_a_lead_name():
    header = parse_leads("x.mat 16 1000/mV V2")
    assert (header.lead_names, header.gains, header.notes) == (("V2",), (1000.0,), ())


def test_a_line_that_is_no_lead_line_is_skipped():
    header = parse_header(header_text("x 2 500 10", [lead_line("1000/mV"), "hello world"]))
    assert header.lead_names == ("I",) and len(header.notes) == 2


def test_baseline_defaults_to_the_adc_zero():
    assert parse_leads(lead_line("1000/mV", tail="16 7 0 0 0")).baselines == (7,)


@pytest.mark.parametrize(("name", "canonical"), [("avr", "aVR"), ("AVR", "aVR"), ("v1", "V1")])
def test_lead_names_in_any_case(name, canonical):
    assert parse_leads(lead_line("1000/mV", name=name)).lead_names == (canonical,)


@pytest.mark.parametrize(
    ("comments", "age", "sex"),
    [
        ((), None, None),
        (("#Age: NaN", "#Sex: Unknown"), None, None),
        (("#Age:63", "#Sex:female"), 63.0, "Female"),
        (("# Age: 63.5", "# Sex: M"), 63.5, "Male"),
        (("#Age: 80", "#Sex: F"), 80.0, "Female"),
        (("#age: -1", "#SEX: MALE"), None, "Male"),
    ],
)
def test_age_and_sex(comments, age, sex):
    header = parse_header(header_text(comments=comments))
    assert (header.age, header.sex) == (age, sex)


@pytest.mark.parametrize(
    ("comments", "dx"),
    [
        (("#Dx:426783006",), ("426783006",)),
        (("#Dx: 164889003, 59118001 ,,",), ("164889003", "59118001")),
        (("#Dx: ",), ()),
        (("#Age: 50",), ()),
    ],
)
def test_dx_forms(comments, dx):
    assert parse_header(header_text(comments=comments)).dx == dx


def test_two_dx_lines_are_joined():
    header = parse_header(header_text(comments=("#Dx: 164889003", "#Dx: 59118001")))
    assert header.dx == ("164889003", "59118001") and len(header.notes) == 1


def test_raw_comment_fields():
    header = parse_header(header_text(comments=("#Rx: Unknown", "#Hx: none", "#Sx: Unknows")))
    assert (header.rx, header.hx, header.sx) == ("Unknown", "none", "Unknows")


def test_line_forms_give_the_same_header():
    text = header_text()
    expected = parse_header(text)
    crlf = text.replace("\n", "\r\n")
    assert parse_header(crlf) == expected
    assert parse_header(crlf.encode()) == expected
    assert parse_header(text.splitlines(keepends=True)) == expected  # as readlines() gives
    assert parse_header("\n\n" + text.replace("\n", "\n\n")) == expected  # blank lines
    assert parse_header("\ufeff" + text) == expected


def test_non_utf8_bytes_are_replaced():
    raw = header_text(comments=("#Age: 74", "#Sex: Male", "#Hx: caf\xe9", "#Dx: 59118001"))
    header = parse_header(raw.encode("latin-1"))
    assert header.dx == ("59118001",) and header.hx == "caf\ufffd"


def test_fewer_lead_lines_than_stated(caplog):
    lines = [lead_line("1000/mV", name=name) for name in LEADS[:10]]
    with caplog.at_level(logging.WARNING):
        header = parse_header(header_text(lead_lines=lines), path="A0001.hea")
    assert header.n_leads == 10 and header.lead_names == LEADS[:10]
    assert "A0001.hea" in caplog.text and "12 leads, 10 lead lines" in caplog.text


def test_more_lead_lines_than_stated():
    lines = [lead_line("1000/mV", name=name) for name in LEADS]
    header = parse_header(header_text(record_line="A0001 11 500 5000", lead_lines=lines))
    assert header.lead_names == LEADS and len(header.notes) == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\r\n",
        "#Age: 74\n#Dx: 426783006\n",
        "garbage",
        "A0001 twelve 500 5000\n",
        "A0001 12\n",
        "A0001 12 fast 5000\n",
        "A0001 12 -500 5000\n",
        "A0001 12 nan 5000\n",
        "A0001 0 500 5000\n",
        b"\x89PNG\r\n\x1a\n\x00\x00",
        None,
    ],
)
def test_garbage_raises_header_error(text):
    with pytest.raises(HeaderError):
        parse_header(text)


def test_header_error_names_the_file():
    with pytest.raises(HeaderError, match=r"bad\.hea.*sampling frequency"):
        parse_header("A0001 12 fast 5000\n", path="bad.hea")


# --------------------------------------------------------------------------------------------
# Signals: units, lead order, gain sanity


def test_to_millivolts_uses_each_leads_gain_and_baseline():
    header = parse_leads(lead_line("1000(10)/mV"), lead_line("200/mV", name="II"))
    adc = np.array([[10, 1010, -990], [0, 200, -100]], dtype=np.int16)
    mv = records.to_millivolts(adc, header)
    assert mv.dtype == np.float32
    np.testing.assert_array_equal(mv, [[0, 1, -1], [0, 1, -0.5]])


def test_standard_leads_reorders_and_fills_missing_with_zeros(caplog):
    x = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)
    with caplog.at_level(logging.WARNING):
        out = records.standard_leads(x, ["v6", "II", "mystery", "I"], source="R1")
    assert out.shape == (12, 3)
    np.testing.assert_array_equal(out[[0, 1, 11]], x[[3, 1, 0]])
    assert not out[[2, 3, 4, 5, 6, 7, 8, 9, 10]].any()
    assert "R1" in caplog.text and "mystery" in caplog.text


def test_standard_leads_in_order_is_not_copied():
    x = np.ones((12, 5), dtype=np.float32)
    assert records.standard_leads(x, LEADS) is x


def ecg_like_adc(gain: float, n: int = 5000, fs: float = 500.0) -> np.ndarray:
    """12 leads of 1 mV spikes once a second on a small wave, in ADC units at `gain`."""
    t = np.arange(n) / fs
    mv = 0.1 * np.sin(2 * np.pi * 0.3 * t)
    mv[(np.arange(n) % int(fs)) == 100] += 1.0
    return np.round(np.tile(mv, (12, 1)) * gain)


@pytest.mark.parametrize(
    ("stored", "stated", "expected"),
    [
        (1000, "4880/mV", 1000),  # Georgia 2020
        (1000, "2000000/mV", 1000),  # PTB
        (1000, "200/mV", 1000),  # PTB-XL 2020
        (1000, "0.2/uV", 1000),  # the same gain in other units
        (1000, "1000/mV", 1000),
        (1000, "1/uV", 1000),
        (1000, "1200/mV", 1200),  # within a factor of 3 of 1000/mV: kept
        (500, "500/mV", 500),
        (2000, "2000/mV", 2000),
        (2999, "2999/mV", 2999),
        (1000, "3000/mV", 1000),  # a factor of exactly 3: replaced
        (334, "334/mV", 334),
        (1000, "333/mV", 1000),
        (200, "200/mV", 1000),  # a genuine 200/mV record is read at 1000/mV: the rule's price
        (4880, "4880/mV", 1000),  # likewise 4880/mV
    ],
)
def test_gain_sanity(stored, stated, expected, caplog):
    lines = [f"R.mat 16+24 {stated} 16 0 0 0 0 {name}" for name in LEADS]
    adc = ecg_like_adc(stored)
    with caplog.at_level(logging.INFO):
        record = records.from_arrays(adc, header_text("R 12 500 5000", lines))
    assert record.header.gains == (float(expected),) * 12
    np.testing.assert_allclose(record.signal, adc / expected, rtol=1e-6)
    corrected = record.header.gains != parse_header(header_text("R 12 500 5000", lines)).gains
    assert ("gain corrected" in caplog.text) == corrected
    assert any("gain corrected" in note for note in record.header.notes) == corrected


def spikes(amplitude_adc: float, n: int = 5000, fs: float = 500.0) -> np.ndarray:
    """12 leads of one spike a second `amplitude_adc` high on a flat zero line (ADC units)."""
    adc = np.zeros((12, n))
    adc[:, 100 :: int(fs)] = amplitude_adc
    return adc


def amplitudes_mv(stated: str, amplitudes_adc: list[float]) -> list[float]:
    """Each recording's peak-to-peak amplitude in mV as read, all stating the gain `stated`."""
    lines = [f"R.mat 16+24 {stated} 16 0 0 0 0 {name}" for name in LEADS]
    out = []
    for amplitude in amplitudes_adc:
        record = records.from_arrays(spikes(amplitude), header_text("R 12 500 5000", lines))
        peak_to_peak = np.ptp(record.signal, axis=1)
        assert np.all(peak_to_peak == peak_to_peak[0])
        out.append(float(peak_to_peak[0]))
    return out


@pytest.mark.parametrize(
    ("stated", "amplitudes_adc"),
    [
        ("200/mV", [390, 2300]),  # PTB-XL 2020: 0.39 and 2.3 mV stored at 1000/mV
        ("200/mV", [420, 480]),  # either side of where an amplitude rule would switch
        ("4880/mV", [390, 2300]),  # Georgia 2020
        ("4880/mV", [2100, 2300]),
        ("2000000/mV", [390, 2300]),  # PTB
    ],
)
def test_wrong_gains_keep_the_order_of_true_amplitudes(stated, amplitudes_adc):
    """Recordings that state the same wrong gain come out at their true amplitudes (stored at
    1000/mV), so in the order of their true amplitudes, whatever those are."""
    read = amplitudes_mv(stated, amplitudes_adc)
    np.testing.assert_allclose(read, np.array(amplitudes_adc) / 1000.0, rtol=1e-6)
    assert read == sorted(read)


@pytest.mark.parametrize("stated", ["200/mV", "4880/mV", "1000/mV", "500/mV", "2000/mV"])
def test_amplitude_read_is_monotonic_in_the_stored_amplitude(stated):
    stored = np.geomspace(20, 32000, 60).round()
    read = amplitudes_mv(stated, list(stored))
    assert np.all(np.diff(read) > 0), stated
    gain = parse_header(header_text("R 1 500 10", [lead_line(stated)])).gains[0]
    expected_gain = gain if 1 / 3 < gain / 1000 < 3 else 1000.0
    np.testing.assert_allclose(read, stored / expected_gain, rtol=1e-6)


@pytest.mark.parametrize("stated", ["1000/mV", "500/mV"])
@pytest.mark.parametrize("amplitude", [0, 1, 50, 390, 2300, 20000, 32767])
def test_plausible_gains_are_never_changed(stated, amplitude, caplog):
    lines = [f"R.mat 16+24 {stated} 16 0 0 0 0 {name}" for name in LEADS]
    with caplog.at_level(logging.INFO):
        record = records.from_arrays(spikes(amplitude), header_text("R 12 500 5000", lines))
    gain = float(stated.split("/")[0])
    assert record.header.gains == (gain,) * 12 and record.header.notes == ()
    assert "gain corrected" not in caplog.text


def test_only_the_leads_with_a_wrong_gain_are_corrected():
    gains = ["200/mV"] * 3 + ["1000/mV"] * 6 + ["4880/mV"] * 3
    lines = [lead_line(gain, name=name) for gain, name in zip(gains, LEADS, strict=True)]
    record = records.from_arrays(spikes(1000), header_text("R 12 500 5000", lines))
    assert record.header.gains == (1000.0,) * 12
    np.testing.assert_allclose(np.ptp(record.signal, axis=1), 1.0)
    notes = [note for note in record.header.notes if note.startswith("gain corrected")]
    assert len(notes) == 2
    assert "200/mV (leads I, II, III)" in notes[0] and "4880/mV (leads V4, V5, V6)" in notes[1]


def test_gain_sanity_ignores_the_samples():
    """int16 extremes, non-finite samples, silence: the gain follows from the header alone."""
    lines = [f"R.mat 16+24 200/mV 16 0 0 0 0 {name}" for name in LEADS]
    extremes = np.zeros((12, 5000), dtype=np.int16)
    extremes[:, ::500] = 32767
    extremes[:, 250::500] = -32768
    noisy = ecg_like_adc(1000)
    noisy[:, ::7] = np.nan
    for adc in (extremes, noisy, np.zeros((12, 5000), dtype=np.int16)):
        record = records.from_arrays(adc, header_text("R 12 500 5000", lines))
        assert record.header.gains == (1000.0,) * 12


def test_gain_sanity_can_be_switched_off():
    lines = [f"R.mat 16+24 4880/mV 16 0 0 0 0 {name}" for name in LEADS]
    header_lines = header_text("R 12 500 5000", lines)
    record = records.from_arrays(ecg_like_adc(1000), header_lines, fix_gains=False)
    assert record.header.gains == (4880.0,) * 12


def test_labels_of_merges_equivalent_codes():
    header = parse_header(header_text(comments=("#Dx: 59118001,164884008",)))
    expected = np.zeros(labels.NUM_CLASSES, dtype=bool)
    expected[labels.CLASS_INDEX["713427006"]] = True
    np.testing.assert_array_equal(records.labels_of(header), expected)


# --------------------------------------------------------------------------------------------
# Files


def write_record(folder: Path, name: str, adc: np.ndarray, text: str) -> Path:
    scipy.io.savemat(folder / f"{name}.mat", {"val": adc})
    (folder / f"{name}.hea").write_text(text)
    return folder / f"{name}.hea"


def test_load_mat_errors_name_the_file(tmp_path):
    with pytest.raises(RecordError, match=r"nothere\.mat"):
        records.load_mat(tmp_path / "nothere.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"data": np.zeros((12, 10))})
    with pytest.raises(RecordError, match=r"other\.mat.*'val'"):
        records.load_mat(tmp_path / "other.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(RecordError, match=r"junk\.mat"):
        records.load_mat(tmp_path / "junk.mat")


def test_load_record_accepts_either_path(tmp_path):
    adc = ecg_like_adc(1000).astype(np.int16)
    hea = write_record(tmp_path, "R", adc, header_text("R 12 500 5000"))
    by_hea = records.load_record(hea)
    for path in (tmp_path / "R.mat", tmp_path / "R"):
        again = records.load_record(path)
        assert again.name == "R" and again.header == by_hea.header
        np.testing.assert_array_equal(again.signal, by_hea.signal)


def test_find_records_follows_the_official_rule(tmp_path):
    for name in ("B.hea", "A.HEA", ".hidden.hea", "C.mat", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "folder.hea").mkdir()
    assert records.find_records(tmp_path) == ["A", "B"]


def permuted(adc: np.ndarray, text: str, order: np.ndarray) -> tuple[np.ndarray, str]:
    """The same record with its rows and lead lines in `order`, lead names in lower case."""
    lines = text.splitlines(keepends=True)
    leads = []
    for i in order:
        head, name = lines[1 + i].rstrip("\r\n").rsplit(" ", 1)
        leads.append(f"{head} {name.lower()}\n")
    return adc[order], "".join([lines[0], *leads, *lines[13:]])


# --------------------------------------------------------------------------------------------
# The real records in ../shared/real_sample


@lru_cache(maxsize=1)
def real_rows() -> tuple[dict[str, str], ...]:
    if not (REAL_SAMPLE / "records.csv").is_file():
        pytest.skip(f"{REAL_SAMPLE} is absent: the real-record tests need ../shared/real_sample")
    with open(REAL_SAMPLE / "records.csv", newline="") as f:
        return tuple(csv.DictReader(f))


def real_table() -> dict[str, dict[str, str]]:
    return {row["record"]: row for row in real_rows()}


@lru_cache(maxsize=1)
def real_records() -> dict[str, records.Record]:
    return {name: records.load_record(REAL_SAMPLE / name) for name in real_table()}


def test_real_sample_is_found():
    """The folder holds exactly the records its table lists, once each, from every database."""
    rows = real_rows()
    names = sorted(real_table())
    assert len(names) == len(rows)  # no record listed twice
    assert records.find_records(REAL_SAMPLE) == names
    prefixes = {name.rstrip("0123456789") for name in names}
    assert prefixes == {"A", "E", "HR", "JS", "Q", "S"}


def test_real_records_match_their_table():
    for name, row in real_table().items():
        record = real_records()[name]
        fs, n = float(row["fs"]), int(row["n_samples"])
        codes = tuple(code.strip() for code in row["dx"].replace(";", ",").split(","))
        assert (record.name, record.fs, record.signal.shape) == (name, fs, (12, n)), name
        assert record.signal.dtype == np.float32, name
        assert record.header.lead_names == LEADS, name
        assert record.header.dx == codes, name
        np.testing.assert_array_equal(record.labels, labels.encode(codes), err_msg=name)
        x = signal.preprocess(record.signal, record.fs)
        assert x.shape == (12, round(n * signal.TARGET_FS / fs)) and x.dtype == np.float32, name
    assert signal.preprocess(real_records()["S0001"].signal, 1000.0).shape == (12, 19200)


def test_real_amplitudes_are_plausible_in_millivolts():
    """Per recorded lead (all-zero leads left out, see below), the 1st-99th percentile range of
    the 0.5-40 Hz band (without baseline wander, which reaches 6 mV in PTB's S0008); its median
    over the leads lies in 0.25-6 mV for every record (0.38-4.1 mV in fact; the highest is
    JS45545, paroxysmal VT in a 37-year-old). This catches a wrong unit (a factor of 1000) or
    PTB's gain as stated (0.0005 mV); a factor of ~5 (Georgia, PTB-XL as stated) lies within the
    spread of real amplitudes, which is why test_real_wrong_gains_are_corrected_and_only_those
    checks the gains themselves."""
    for name, record in real_records().items():
        recorded = record.signal[record.signal.any(axis=1)]
        x = signal.bandpass(recorded, (0.5, 40.0), record.fs)
        spread = np.percentile(x, 99, axis=1) - np.percentile(x, 1, axis=1)
        assert 0.25 < np.median(spread) < 6.0, (name, np.median(spread))


def test_real_all_zero_leads_are_the_known_ones():
    """Three Ningbo records store some precordial leads as all zeros in their `.mat` files:
    JS45542 V1-V6, JS45544 V2-V6, JS45551 V4-V6. No other record has an all-zero lead."""
    expected = {
        "JS45542": ("V1", "V2", "V3", "V4", "V5", "V6"),
        "JS45544": ("V2", "V3", "V4", "V5", "V6"),
        "JS45551": ("V4", "V5", "V6"),
    }
    found = {}
    for name, record in real_records().items():
        zero = tuple(lead for lead, row in zip(LEADS, record.signal, strict=True) if not row.any())
        if zero:
            found[name] = zero
    assert found == expected
    adc = records.load_mat(REAL_SAMPLE / "JS45544.mat")  # zero as stored, not made so by reading
    zero_rows = [i for i in range(adc.shape[0]) if not adc[i].any()]
    assert [real_records()["JS45544"].header.lead_names[i] for i in zero_rows] == list(
        expected["JS45544"]
    )


def test_real_wrong_gains_are_corrected_and_only_those():
    for name, record in real_records().items():
        stated = (REAL_SAMPLE / f"{name}.hea").read_text().splitlines()[1].split()[2]
        stated_gain = stated.split("/")[0]
        corrected = any("gain corrected" in note for note in record.header.notes)
        assert corrected == (stated_gain in WRONG_GAINS), name
        assert record.header.gains == (1000.0,) * 12, name


def test_real_quirks_are_parsed():
    table = {name: record.header for name, record in real_records().items()}
    assert table["E00001"].record_name == "E00001"
    assert table["E00001"].age is None  # NaN
    assert table["S0001"].sex == "Female"  # written "female"
    assert table["A0001"].sx == "Unknows"
    assert {header.sex for header in table.values()} == {"Male", "Female"}


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # wfdb's own use of pandas
def test_parser_agrees_with_wfdb_where_wfdb_reads_the_header():
    real_table()
    wfdb = pytest.importorskip("wfdb")
    for name in ("A0001", "HR00001", "JS00666", "S0001"):
        ours = parse_header((REAL_SAMPLE / f"{name}.hea").read_bytes())
        theirs = wfdb.rdheader(str(REAL_SAMPLE / name))
        assert (ours.fs, ours.n_samples, ours.n_leads) == (theirs.fs, theirs.sig_len, theirs.n_sig)
        assert list(ours.gains) == theirs.adc_gain and list(ours.baselines) == theirs.baseline
        assert list(ours.lead_names) == theirs.sig_name


@pytest.mark.parametrize("name", ["A0001", "E00001", "HR00001", "S0001"])
def test_from_arrays_equals_load_record(name):
    real_table()
    # What the official driver hands run_12ECG_classifier.
    data = np.asarray(scipy.io.loadmat(REAL_SAMPLE / f"{name}.mat")["val"], dtype=np.float64)
    with open(REAL_SAMPLE / f"{name}.hea") as f:
        header_lines = f.readlines()
    from_driver = records.from_arrays(data, header_lines)
    from_disk = real_records()[name]
    assert from_driver.header == from_disk.header and from_driver.fs == from_disk.fs
    np.testing.assert_array_equal(from_driver.signal, from_disk.signal)
    np.testing.assert_array_equal(
        signal.preprocess(from_driver.signal, from_driver.fs),
        signal.preprocess(from_disk.signal, from_disk.fs),
    )


def test_permuted_lead_lines_are_put_back_in_order(tmp_path):
    real_table()
    original = real_records()["E00001"]
    adc = scipy.io.loadmat(REAL_SAMPLE / "E00001.mat")["val"]
    text = (REAL_SAMPLE / "E00001.hea").read_text()
    order = np.random.default_rng(0).permutation(12)
    shuffled_adc, shuffled_text = permuted(adc, text, order)

    from_lines = records.from_arrays(shuffled_adc, shuffled_text.splitlines(keepends=True))
    np.testing.assert_array_equal(from_lines.signal, original.signal)
    from_files = records.load_record(write_record(tmp_path, "E00001", shuffled_adc, shuffled_text))
    np.testing.assert_array_equal(from_files.signal, original.signal)
    assert from_files.header.lead_names == tuple(LEADS[i] for i in order)


def test_a_missing_lead_is_zeros():
    real_table()
    original = real_records()["A0001"]
    adc = scipy.io.loadmat(REAL_SAMPLE / "A0001.mat")["val"]
    text = (REAL_SAMPLE / "A0001.hea").read_text()
    keep = np.array([i for i in range(12) if LEADS[i] != "V3"])
    lines = text.splitlines(keepends=True)
    fewer = "".join([lines[0].replace(" 12 ", " 11 "), *(lines[1 + i] for i in keep), *lines[13:]])
    record = records.from_arrays(adc[keep], fewer)
    assert records.from_arrays(adc[keep].T, fewer).header.notes[-1].endswith("transposed")
    v3 = LEADS.index("V3")
    assert not record.signal[v3].any()
    np.testing.assert_array_equal(record.signal[keep], original.signal[keep])
