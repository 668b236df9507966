"""Bad input never costs an output: every recording of a folder, however broken, gets a valid
output file from driver.py, and `predict.classify` never raises.

One input folder holds good synthetic records beside one record per kind of damage. Each case
states what it should get: the model's answer on what can be used ("model"), or the always-normal
answer ("normal") when nothing can, with a warning naming the record.
"""

from __future__ import annotations

import logging
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch

from ecg_gcn import labels as lbl
from ecg_gcn import outputs, predict, synth
from ecg_gcn.header import LEADS

ROOT = Path(__file__).resolve().parents[1]
NORMAL = lbl.NORMAL_CODE
FS = 500
GOOD = ("SYN00000", "SYN00001", "SYN00002")


# ---------------------------------------------------------------------------------------------
# Writing records


def header(
    name: str,
    n_samples: int,
    *,
    fs: float | str = FS,
    leads: tuple[str, ...] = LEADS,
    gain: str = "1000/mV",
    comments: tuple[str, ...] = ("#Age: 60", "#Sex: Male", f"#Dx: {NORMAL}"),
) -> str:
    """A Challenge-like header: record line, one line per lead, comments."""
    lines = [f"{name} {len(leads)} {fs} {n_samples} 01-Jan-2020 00:00:00"]
    lines += [f"{name}.mat 16+24 {gain} 16 0 0 0 0 {lead}" for lead in leads]
    return "\n".join([*lines, *comments]) + "\n"


def write(folder: Path, name: str, adc: np.ndarray, text: str | bytes | None = None, **kw) -> None:
    """`name.mat` (MATLAB v4, `val`) and `name.hea` (`text`, or `header(...)` from `kw`)."""
    scipy.io.savemat(folder / f"{name}.mat", {"val": adc}, format="4")
    text = header(name, adc.shape[-1], **kw) if text is None else text
    (folder / f"{name}.hea").write_bytes(text.encode() if isinstance(text, str) else text)


def ecg(seconds: float, fs: float = FS, leads: int = 12) -> np.ndarray:
    """A plausible int16 ECG in ADC units (1000/mV): synthetic sinus rhythm."""
    rng = np.random.default_rng(0)
    signal, _ = synth.synthesize(rng, (NORMAL,), fs, seconds)
    adc = synth.to_adc(signal, 1000)
    return np.resize(adc, (leads, adc.shape[1]))  # rows repeat for more than 12 leads


@dataclass(frozen=True)
class Case:
    make: Callable[[Path, str], None]
    answer: str  # "model" or "normal"


def _missing_header(folder: Path, name: str) -> None:
    scipy.io.savemat(folder / f"{name}.mat", {"val": ecg(10)}, format="4")


def _truncated(folder: Path, name: str) -> None:
    write(folder, name, ecg(10))
    path = folder / f"{name}.mat"
    path.write_bytes(path.read_bytes()[:100])


def _no_val(folder: Path, name: str) -> None:
    write(folder, name, ecg(10))
    scipy.io.savemat(folder / f"{name}.mat", {"data": ecg(10)}, format="4")


def _with_values(value: float, where: slice) -> Callable[[Path, str], None]:
    def make(folder: Path, name: str) -> None:
        adc = ecg(10).astype(np.float64)
        adc[:, where] = value
        write(folder, name, adc)

    return make


def _lead_set(leads: tuple[str, ...]) -> Callable[[Path, str], None]:
    return lambda folder, name: write(folder, name, ecg(10, leads=len(leads)), leads=leads)


def _rate(fs: float, seconds: float = 10) -> Callable[[Path, str], None]:
    return lambda folder, name: write(folder, name, ecg(seconds, fs), fs=f"{fs:g}")


def _comments(*comments: str) -> Callable[[Path, str], None]:
    return lambda folder, name: write(folder, name, ecg(10), comments=comments)


def _raw_header(text: bytes) -> Callable[[Path, str], None]:
    return lambda folder, name: write(folder, name, ecg(10), text.replace(b"NAME", name.encode()))


def _zero_lead(folder: Path, name: str) -> None:
    adc = ecg(10)
    adc[3] = 0
    write(folder, name, adc)


def _flat_lead(folder: Path, name: str) -> None:
    adc = ecg(10)
    adc[3] = 512
    write(folder, name, adc)


def _non_utf8(folder: Path, name: str) -> None:
    text = header(name, ecg(10).shape[1], comments=()).encode()
    text += b"#Age: 6\xff0\n#Sex: \x80\xfe\n#Dx: " + NORMAL.encode() + b"\n"
    write(folder, name, ecg(10), text)


def _stated_rate(fs: str) -> Callable[[Path, str], None]:
    """Ten seconds at 500 Hz under a header that states another rate."""
    return lambda folder, name: write(folder, name, ecg(10), fs=fs)


def _header_only(folder: Path, name: str) -> None:
    (folder / f"{name}.hea").write_text(header(name, 5000))


def _mat_is_a_folder(folder: Path, name: str) -> None:
    (folder / f"{name}.mat").mkdir()
    (folder / f"{name}.hea").write_text(header(name, 5000))


def _dangling_symlink(folder: Path, name: str) -> None:
    (folder / f"{name}.mat").symlink_to(folder / "nowhere" / f"{name}.mat")
    (folder / f"{name}.hea").write_text(header(name, 5000))


# 12 x 3,000,000 int16 samples: 72 MB as an array, a few hundred KB as a compressed v5 file
BOMB_SHAPE = (12, 3_000_000)


def _decompression_bomb(folder: Path, name: str) -> None:
    scipy.io.savemat(
        folder / f"{name}.mat", {"val": np.zeros(BOMB_SHAPE, np.int16)}, do_compression=True
    )
    (folder / f"{name}.hea").write_text(header(name, BOMB_SHAPE[1]))


def _val_as(value: Callable[[np.ndarray], object]) -> Callable[[Path, str], None]:
    """A v5 `.mat` whose `val` is `value(ecg)`: a cell, a sparse matrix, complex numbers."""

    def make(folder: Path, name: str) -> None:
        write(folder, name, ecg(10))
        scipy.io.savemat(folder / f"{name}.mat", {"val": value(ecg(10))})

    return make


def _cell(adc: np.ndarray) -> np.ndarray:
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = adc, adc
    return cell


def _upper_case(folder: Path, name: str) -> None:
    write(folder, name, ecg(10))
    for suffix in (".hea", ".mat"):
        (folder / f"{name}{suffix}").rename(folder / f"{name}{suffix.upper()}")


LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
PERMUTED = LEADS[6:] + LEADS[:6]
GOOD_LEADS = "".join(f"NAME.mat 16 1000/mV 16 0 0 0 0 {lead}\n" for lead in LEADS)
CASES: dict[str, Case] = {
    "missing_header": Case(_missing_header, "normal"),
    "truncated_mat": Case(_truncated, "normal"),
    "no_val": Case(_no_val, "normal"),
    "val_float64": Case(lambda f, n: write(f, n, ecg(10).astype(np.float64)), "model"),
    "val_int32": Case(lambda f, n: write(f, n, ecg(10).astype(np.int32)), "model"),
    "nan_samples": Case(_with_values(np.nan, slice(1000, 1500)), "model"),
    "inf_samples": Case(_with_values(np.inf, slice(2000, 2100)), "model"),
    "all_nan": Case(_with_values(np.nan, slice(None)), "normal"),
    "zero_lead": Case(_zero_lead, "model"),
    "flat_lead": Case(_flat_lead, "model"),
    "six_limb_leads": Case(_lead_set(LIMB), "model"),
    "lead_II_only": Case(_lead_set(("II",)), "model"),
    "fifteen_leads": Case(_lead_set((*LEADS, "X", "Y", "Z")), "model"),
    "unknown_lead_names": Case(_lead_set(tuple(f"ch{i}" for i in range(12))), "normal"),
    "permuted_leads": Case(_lead_set(PERMUTED), "model"),
    "fs_257": Case(_rate(257), "model"),
    "fs_300": Case(_rate(300), "model"),
    "fs_1000": Case(_rate(1000), "model"),
    "fs_137_5": Case(_rate(137.5), "model"),
    "one_second": Case(_rate(FS, 1), "model"),
    "one_sample": Case(lambda f, n: write(f, n, ecg(10)[:, :1]), "normal"),
    "half_a_second": Case(_rate(FS, 0.5), "normal"),
    "fs_5e9": Case(_stated_rate("5e9"), "normal"),
    "fs_half_hertz": Case(_stated_rate("0.5"), "normal"),
    "fs_negative": Case(_stated_rate("-500"), "normal"),
    "header_without_mat": Case(_header_only, "normal"),
    "mat_is_a_folder": Case(_mat_is_a_folder, "normal"),
    "mat_dangling_symlink": Case(_dangling_symlink, "normal"),
    "decompression_bomb": Case(_decompression_bomb, "normal"),
    "upper_case_extensions": Case(_upper_case, "model"),
    "all_leads_flat": Case(lambda f, n: write(f, n, np.full((12, 5000), 512, np.int16)), "model"),
    "baseline_huge": Case(lambda f, n: write(f, n, ecg(10), gain=f"1000({10**20})/mV"), "normal"),
    "gain_negative": Case(lambda f, n: write(f, n, ecg(10), gain="-1000/mV"), "model"),
    "val_cell": Case(_val_as(_cell), "normal"),
    "val_sparse": Case(_val_as(lambda adc: scipy.sparse.csc_matrix(adc.astype(float))), "normal"),
    "val_complex": Case(_val_as(lambda adc: adc * (1 + 1j)), "normal"),
    "thirty_minutes": Case(_rate(257, 1800), "model"),
    "gain_zero": Case(lambda f, n: write(f, n, ecg(10), gain="0/mV"), "model"),
    "gain_missing": Case(lambda f, n: write(f, n, ecg(10), gain="16"), "model"),
    "gain_absurd": Case(lambda f, n: write(f, n, ecg(10), gain="1e9/mV"), "model"),
    "garbled_record_line": Case(
        _raw_header(b"NAME twelve 500Hz\n" + GOOD_LEADS.encode()), "normal"
    ),
    "empty_header": Case(_raw_header(b""), "normal"),
    "no_sampling_rate": Case(_raw_header(b"NAME 12\n" + GOOD_LEADS.encode()), "normal"),
    "garbled_lead_lines": Case(_raw_header(b"NAME 12 500 5000\n" + b"x y z\n" * 12), "normal"),
    "lead_lines_short": Case(_raw_header(b"NAME 12 500\n" + b"NAME.mat 16\n" * 12), "model"),
    "non_utf8_comments": Case(_non_utf8, "model"),
    "no_dx": Case(_comments("#Age: 60", "#Sex: Female"), "model"),
    "empty_dx_elements": Case(_comments(f"#Dx: ,,{NORMAL},"), "model"),
}


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def model_dir(smoke_model_dir) -> Path:
    return smoke_model_dir


@pytest.fixture(scope="module")
def predictor(model_dir) -> predict.Predictor:
    return predict.load(model_dir, device=torch.device("cpu"))


@dataclass(frozen=True)
class Run:
    inputs: Path
    outputs: Path
    labels: Path
    stderr: str
    peak_bytes: int


@pytest.fixture(scope="module")
def driver_run(model_dir: Path) -> Run:
    """driver.py over one folder of good and bad records, and the scorer over its outputs."""
    root = model_dir.parent
    inputs, out, label_dir = root / "inputs", root / "outputs", root / "labels"
    inputs.mkdir()
    label_dir.mkdir()
    for name in GOOD:
        for suffix in (".hea", ".mat"):
            shutil.copy(root / "train" / f"{name}{suffix}", inputs)
    for name, case in CASES.items():
        case.make(inputs, name)
    for name in recordings(inputs):  # the scorer's labels: one header with a #Dx per record
        (label_dir / f"{name}.hea").write_text(header(name, 5000, comments=(f"#Dx: {NORMAL}",)))
    command = [sys.executable, "driver.py", model_dir, inputs, out]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # the most any child process of this test process has held (the driver among them)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return Run(inputs, out, label_dir, done.stderr, peak)


def recordings(folder: Path) -> list[str]:
    """Every record of the folder: a `.mat` or a `.hea` (either may be missing)."""
    return sorted({p.stem for p in folder.iterdir() if p.suffix.lower() in (".mat", ".hea")})


def read_output(path: Path) -> tuple[str, list[str], list[str], list[str]]:
    lines = path.read_text().split("\n")
    assert len(lines) == 5 and lines[4] == "", f"{path}: not four newline-ended lines"
    return lines[0], lines[1].split(","), lines[2].split(","), lines[3].split(",")


def check_answer(labels: list, scores: list, classes: list) -> None:
    """The contract of run_12ECG_classifier's answer."""
    assert classes == list(lbl.SCORED_CODES)
    assert len(labels) == len(scores) == len(classes)
    assert all(type(x) is int and x in (0, 1) for x in labels) and 1 in labels
    assert all(type(x) is float and 0.0 <= x <= 1.0 for x in scores)


def is_normal_answer(labels: list, scores: list) -> bool:
    normal_labels, normal_scores, _ = outputs.normal_answer()
    return list(labels) == normal_labels and list(scores) == normal_scores


# ---------------------------------------------------------------------------------------------
# The driver


def test_every_recording_gets_a_valid_output(driver_run):
    names = recordings(driver_run.inputs)
    assert len(names) == len(GOOD) + len(CASES)
    assert sorted(p.stem for p in driver_run.outputs.glob("*.csv")) == names
    for name in names:
        record_line, codes, binary, scores = read_output(driver_run.outputs / f"{name}.csv")
        assert record_line == f"#{name}"
        assert codes == list(lbl.SCORED_CODES)
        assert set(binary) <= {"0", "1"} and "1" in binary, name
        assert all(0.0 <= float(s) <= 1.0 for s in scores), name


@pytest.mark.parametrize("name", [*GOOD, *CASES])
def test_each_case_gets_the_expected_answer(driver_run, name):
    _, _, binary, scores = read_output(driver_run.outputs / f"{name}.csv")
    expected = CASES[name].answer if name in CASES else "model"
    normal = is_normal_answer([int(b) for b in binary], [float(s) for s in scores])
    assert normal == (expected == "normal"), f"{name}: expected the {expected} answer"


# classify() only sees the header's lines, which may not name the record (an empty header):
# the driver puts the path of the file it is reading in front of every warning.
@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.answer == "normal"])
def test_the_driver_names_each_record_it_cannot_read(driver_run, name):
    assert name in driver_run.stderr


@pytest.mark.parametrize("name", ["val_cell", "val_sparse", "val_complex"])
def test_a_val_that_is_not_a_real_array_is_named_in_the_warning(driver_run, name):
    line = next(line for line in driver_run.stderr.splitlines() if f"{name}.mat" in line)
    assert "'val'" in line and "sequence" not in line


@pytest.mark.parametrize(
    "name, words",
    [("gain_negative", "'-1000' missing or not positive: used 200/mV"),
     ("all_leads_flat", "every lead is flat")],
)  # fmt: skip
def test_a_suspect_recording_is_answered_with_a_warning_naming_it(driver_run, name, words):
    line = next(line for line in driver_run.stderr.splitlines() if f"{name}.mat" in line)
    assert words in line


def test_absurd_rates_and_sizes_are_refused_before_memory_is_spent(driver_run):
    # a rate of 5e9 Hz once cost 9.7 GB, and the bomb decompresses to 72 MB of zeros
    assert driver_run.peak_bytes < 1.5 * 2**30
    assert "outside the plausible bounds" in driver_run.stderr


def test_the_scorer_accepts_the_outputs(driver_run):
    scores = driver_run.outputs.parent / "scores.csv"
    command = [sys.executable, "evaluate_12ECG_score.py", driver_run.labels, driver_run.outputs]
    done = subprocess.run([*command, scores], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert scores.read_text().startswith("AUROC")


# ---------------------------------------------------------------------------------------------
# classify on in-memory input

HEADER = header("mem", 5000).splitlines(keepends=True)
IN_MEMORY = {
    # name: (data, header_lines, a word of the warning)
    "empty_1d": (np.zeros(0), HEADER, "samples"),
    "no_samples": (np.zeros((12, 0)), HEADER, "samples"),
    "all_nan": (np.full((12, 5000), np.nan), HEADER, "finite"),
    "no_header": (np.zeros((12, 5000)), [], "no record line"),
    "garbage_header": (np.zeros((12, 5000)), ["\x00\xff garbage ###\n", "more"], "lead count"),
    "not_numbers": (np.full((12, 10), "x"), HEADER, "array"),
    "none": (None, HEADER, "array"),
    "three_dimensional": (np.zeros((2, 12, 5000)), HEADER, "3-d"),
}


@pytest.mark.parametrize("name", IN_MEMORY)
def test_classify_answers_always_normal_and_warns_when_nothing_is_usable(predictor, caplog, name):
    data, header_lines, problem = IN_MEMORY[name]
    with caplog.at_level(logging.WARNING):
        labels, scores, classes = predict.classify(data, header_lines, predictor)
    check_answer(labels, scores, classes)
    assert is_normal_answer(labels, scores)
    assert any(problem in r.getMessage() for r in caplog.records), caplog.text


def test_classify_uses_a_one_dimensional_signal_as_the_first_lead(predictor, caplog):
    with caplog.at_level(logging.WARNING):
        answer = predict.classify(ecg(10)[0].astype(np.float64), HEADER, predictor)
    check_answer(*answer)
    assert not is_normal_answer(*answer[:2])
    assert any("1 signal rows for 12 lead lines" in r.getMessage() for r in caplog.records)


def test_classify_warns_about_non_finite_samples_and_uses_the_rest(predictor, caplog):
    adc = ecg(10).astype(np.float64)
    adc[:, :100] = np.nan
    with caplog.at_level(logging.WARNING):
        answer = predict.classify(adc, header("mem", adc.shape[1]).splitlines(), predictor)
    check_answer(*answer)
    assert not is_normal_answer(*answer[:2])
    assert any("mem" in r.getMessage() and "finite" in r.getMessage() for r in caplog.records)


def test_a_good_record_is_classified_without_warnings(predictor, caplog):
    adc = ecg(10).astype(np.float64)
    with caplog.at_level(logging.WARNING):
        answer = predict.classify(adc, header("mem", adc.shape[1]).splitlines(), predictor)
    check_answer(*answer)
    assert not is_normal_answer(*answer[:2])
    assert not caplog.records
