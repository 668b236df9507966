"""The official flow end to end on tiny synthetic data: train_model.py -> driver.py -> scorer."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import loadmat

from ecg_gcn import checkpoint, config, predict, records, signal, synth, train
from ecg_gcn import labels as lbl

ROOT = Path(__file__).resolve().parents[1]


def run(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, *map(str, args)]
    environ = {**os.environ, **(env or {})}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environ)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("flow")
    synth.generate(folder / "train", 24, seed=11, seconds=8.0)
    synth.generate(folder / "test", 6, seed=12, prefix="TST")
    # The hidden test's new hospital recorded at 300 Hz, a rate no training record has.
    synth.generate(folder / "test", 2, seed=13, prefix="HZ300_", fs=300)
    return folder


def smoke(folder: Path) -> dict[str, str]:
    """The environment of a seconds-long training run whose cache stays in `folder`."""
    return {"ECG_GCN_PROFILE": "smoke", "ECG_GCN_CACHE": str(folder / "cache")}


def parse(path: Path) -> tuple[str, list[str], list[str], list[str]]:
    lines = path.read_text().split("\n")
    assert len(lines) == 5 and lines[4] == "", f"{path}: four newline-ended lines"
    return lines[0], lines[1].split(","), lines[2].split(","), lines[3].split(",")


def test_the_official_flow_runs_and_every_output_is_valid(data):
    model, outputs = data / "model", data / "outputs"
    run("train_model.py", data / "train", model, env=smoke(data))
    assert (model / checkpoint.CHECKPOINT_FILE).is_file()
    assert (model / checkpoint.HISTORY_FILE).read_text().startswith("epoch,loss,val_loss")
    report_dir = model / checkpoint.REPORT_FOLDER  # train_model.py writes the report at the end
    assert (report_dir / "report.md").is_file() and (report_dir / "learning_curves.png").is_file()
    run("driver.py", model, data / "test", outputs)
    names = records.find_records(data / "test")
    assert sorted(p.stem for p in outputs.iterdir()) == names
    for name in names:
        record_line, codes, binary, scores = parse(outputs / f"{name}.csv")
        assert record_line == f"#{name}"
        assert codes == list(lbl.SCORED_CODES)
        assert set(binary) <= {"0", "1"} and "1" in binary
        values = [float(s) for s in scores]
        assert all(0.0 <= v <= 1.0 for v in values)
        for first, second in lbl.EQUIVALENT_PAIRS:
            i, j = codes.index(first), codes.index(second)
            assert (binary[i], scores[i]) == (binary[j], scores[j])
    for name in ("HZ300_00000", "HZ300_00001"):  # 300 Hz: the model's own answer, no fallback
        _, _, _, scores = parse(outputs / f"{name}.csv")
        assert any(0.0 < float(v) < 1.0 for v in scores)
    run("evaluate_12ECG_score.py", data / "test", outputs, data / "scores.csv")
    header, values = (data / "scores.csv").read_text().split("\n")
    assert header.startswith("AUROC,AUPRC,Accuracy")
    assert len(values.split(",")) == 7


def test_the_driver_gives_an_unreadable_recording_the_always_normal_answer(data, tmp_path):
    model = tmp_path / "model"
    run("train_model.py", data / "train", model, env=smoke(tmp_path))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("TST00000", "TST00001"):
        for suffix in (".hea", ".mat"):
            (inputs / f"{name}{suffix}").write_bytes(
                (data / "test" / f"{name}{suffix}").read_bytes()
            )
    (inputs / "TST00001.mat").write_bytes(b"not a MATLAB file")
    done = run("driver.py", model, inputs, tmp_path / "outputs")
    assert "TST00001.mat" in done.stderr
    _, codes, binary, _ = parse(tmp_path / "outputs" / "TST00001.csv")
    assert [c for c, b in zip(codes, binary, strict=True) if b == "1"] == [lbl.NORMAL_CODE]
    assert (tmp_path / "outputs" / "TST00000.csv").is_file()


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.pt.*train_model\.py"):
        predict.load(tmp_path)


def test_trained_saved_and_loaded_models_predict_identically(data, tmp_path):
    model_config, train_config = config.profile("smoke")
    # With a band-pass: inference must apply the very filter training applied.
    settings = dataclasses.replace(train_config.preprocess, band=(0.5, 45.0))
    train_config = dataclasses.replace(train_config, preprocess=settings)
    summary = train.train(
        data / "train",
        tmp_path / "model",
        model_config,
        train_config,
        cache_dir=tmp_path / "cache",
        device=torch.device("cpu"),
        progress=False,
    )
    loaded = predict.load(tmp_path / "model", device=torch.device("cpu"))
    trained = summary["predictor"]
    np.testing.assert_array_equal(loaded.thresholds, trained.thresholds)
    name = records.find_records(data / "test")[0]
    record = records.load_record(data / "test" / f"{name}.hea")
    assert loaded.preprocess == settings
    x = signal.preprocess(record.signal, record.fs, settings)
    np.testing.assert_array_equal(loaded.probabilities(x), trained.probabilities(x))
    # The organisers' path (raw ADC array and header lines) gives the same answer.
    data_adc = np.asarray(loadmat(data / "test" / f"{name}.mat")["val"], dtype=np.float64)
    header_lines = (data / "test" / f"{name}.hea").read_text().splitlines(keepends=True)
    assert predict.classify(data_adc, header_lines, loaded) == loaded.answer(
        loaded.probabilities(x), x
    )
    state = torch.load(tmp_path / "model" / checkpoint.CHECKPOINT_FILE, weights_only=True)
    assert state["model_config"] == config.to_dict(model_config)
    assert "head.adjacency" in state["state_dict"]
