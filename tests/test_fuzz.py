"""Fuzzing the input boundary: the header parser raises only HeaderError, and `predict.classify`
never raises and always returns a valid answer, whatever the header and the signal."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecg_gcn import labels as lbl
from ecg_gcn import predict
from ecg_gcn.header import LEADS, Header, HeaderError, parse_header

NAMES = [*LEADS, "avr", "v1", "X", "lead13", "", "II II"]
NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-0", "1e400", "0x10", "1/2", "500(0)", "abc", "½"]),
)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@st.composite
def record_lines(draw) -> str:
    fields = [
        draw(st.one_of(st.sampled_from(["A0001", "E00001.mat", "rec/2"]), TEXT)),
        draw(st.one_of(st.integers(-2, 20).map(str), NUMBERS)),
        draw(st.one_of(st.sampled_from(["500", "257", "137.5", "500/10(0)"]), NUMBERS, TEXT)),
        draw(NUMBERS),
        draw(TEXT),
    ]
    return " ".join(fields[: draw(st.integers(0, len(fields)))])


@st.composite
def lead_lines(draw) -> str:
    gain = draw(st.one_of(NUMBERS, st.sampled_from(["1000/mV", "200(5)/uV", "0/V", "1e9/mV"])))
    fields = [
        draw(st.sampled_from(["A0001.mat", "x"])),
        draw(st.one_of(st.sampled_from(["16", "16+24", "212", "16x2:3+4"]), TEXT)),
        gain,
        *[draw(NUMBERS) for _ in range(5)],
        draw(st.one_of(st.sampled_from(NAMES), TEXT)),
    ]
    return " ".join(fields[: draw(st.integers(0, len(fields)))])


comment_lines = st.one_of(
    st.sampled_from(["#Dx: ,,426783006,", "#Dx:164889003", "#Age: NaN", "#Sex: F", "#Dx"]),
    TEXT.map(lambda text: "#" + text),
)


@st.composite
def header_texts(draw) -> str:
    lines = [draw(record_lines())]
    lines += draw(st.lists(st.one_of(lead_lines(), comment_lines, TEXT), max_size=16))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


@settings(max_examples=300, deadline=None)
@given(st.one_of(header_texts(), TEXT, st.binary(max_size=200)))
def test_parse_header_returns_a_header_or_raises_header_error(source):
    try:
        parsed = parse_header(source)
    except HeaderError:
        return
    assert isinstance(parsed, Header)
    assert parsed.n_leads == len(parsed.gains) == len(parsed.lead_names)
    assert parsed.fs > 0 and all(gain > 0 for gain in parsed.gains)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(lead_lines(), comment_lines, TEXT, st.binary(max_size=40)), max_size=20))
def test_parse_header_accepts_lines_as_the_driver_passes_them(lines):
    with contextlib.suppress(HeaderError):
        assert isinstance(parse_header(lines), Header)


# ---------------------------------------------------------------------------------------------
# classify


@pytest.fixture(scope="module")
def predictor(smoke_model_dir) -> predict.Predictor:
    return predict.load(smoke_model_dir, device=torch.device("cpu"))


RATES = st.one_of(
    st.sampled_from([257, 500, 1000, 137.5, 2000]), st.floats(50, 2000).map(lambda x: round(x, 3))
)
GAINS = st.sampled_from(["1000/mV", "500", "0", "-5/mV", "1e9/mV", "4880/mV", "2000000/mV", ""])
VALUES = st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 3e38, -32768.0, 32767.0])
DTYPES = st.sampled_from([np.int16, np.int32, np.int64, np.float32, np.float64])


@st.composite
def recordings(draw) -> tuple[np.ndarray, list[str]]:
    n_leads = draw(st.integers(1, 15))
    fs = draw(RATES)
    n = draw(st.integers(1, int(60 * fs)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data = rng.normal(0, draw(st.sampled_from([0, 1, 1000, 1e6])), (n_leads, n))
    for _ in range(draw(st.integers(0, 3))):  # sprinkle special values
        data[rng.integers(n_leads), rng.integers(n)] = draw(VALUES)
    dtype = draw(DTYPES)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.nan_to_num(data), info.min, info.max)
    with np.errstate(over="ignore", invalid="ignore"):
        data = data.astype(dtype)
    header_leads = draw(st.integers(0, 15))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=header_leads, max_size=header_leads))
    lines = [f"fuzz {header_leads} {fs} {n}"]
    lines += [f"fuzz.mat 16 {draw(GAINS)} 16 0 0 0 0 {name}" for name in names]
    lines += ["#Age: 50", f"#Dx: {draw(st.sampled_from(['', '426783006', ',,164889003,']))}"]
    if draw(st.booleans()):
        data = data.astype(np.float64)  # what the official driver passes
    return data, [line + "\n" for line in lines]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(recording=recordings())
def test_classify_always_returns_a_valid_answer(predictor, recording):
    data, header_lines = recording
    logging.disable(logging.WARNING)  # the warnings are checked in test_bad_input.py
    try:
        labels, scores, classes = predict.classify(data, header_lines, predictor)
    finally:
        logging.disable(logging.NOTSET)
    assert classes == list(lbl.SCORED_CODES)
    assert all(type(code) is str for code in classes)
    assert len(labels) == len(scores) == len(classes)
    assert all(type(x) is int and x in (0, 1) for x in labels) and 1 in labels
    assert all(type(x) is float and 0.0 <= x <= 1.0 for x in scores)
