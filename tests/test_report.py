"""`ecg_gcn.report`: the figures and the markdown summary of a trained model folder."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg_gcn import (
    checkpoint,
    config,
    explain,
    predict,
    records,
    report,
    signal,
    synth,
    thresholds,
    train,
)
from ecg_gcn import labels as lbl

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALWAYS = (report.ADJACENCY_PNG, report.CURVES_PNG, report.THRESHOLDS_PNG)
WITH_LABELS = (report.CONDITIONAL_PNG,)
WITH_OUTPUTS = (report.CLASS_SCORES_PNG, report.CONFUSION_PNG)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """A smoke-profile model, a small test folder and the driver's outputs for it."""
    root = tmp_path_factory.mktemp("report")
    synth.generate(root / "train", 16, seed=1, seconds=8.0, n_jobs=1)
    synth.generate(root / "test", 6, seed=2, seconds=8.0, prefix="TST", n_jobs=1)
    model = root / "model"
    train.train(
        root / "train",
        model,
        *config.profile("smoke"),
        cache_dir=root / "cache",
        device=torch.device("cpu"),
        progress=False,
    )
    command = [sys.executable, "driver.py", str(model), str(root / "test"), str(root / "outputs")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"driver.py failed:\n{done.stdout}\n{done.stderr}"
    return {"model": model, "labels": root / "test", "outputs": root / "outputs"}


def copy_model(source: Path, target: Path) -> Path:
    """The model folder without its report, so that each test sees only what it wrote."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(checkpoint.REPORT_FOLDER))
    return target


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"


def test_the_full_report_has_every_figure_and_the_scores(run, tmp_path):
    model = copy_model(run["model"], tmp_path / "model")
    markdown = report.write_report(model, run["labels"], run["outputs"])
    assert markdown == model / checkpoint.REPORT_FOLDER / report.MARKDOWN_FILE
    text = markdown.read_text()
    for name in ALWAYS + WITH_LABELS + WITH_OUTPUTS:
        assert_png(markdown.parent / name)
        assert f"]({name})" in text, f"report.md does not embed {name}"
    assert "Challenge metric" in text and "AUROC" in text and "F-measure" in text
    assert "| always normal |" in text
    baseline = next(line for line in text.splitlines() if line.startswith("| always normal |"))
    assert baseline.rstrip(" |").endswith("0.000"), "always normal scores 0 by definition"
    assert "Best epoch" in text


def test_without_labels_and_outputs_the_report_is_the_model_alone(run, tmp_path):
    model = copy_model(run["model"], tmp_path / "model")
    text = report.write_report(model).read_text()
    written = {p.name for p in (model / checkpoint.REPORT_FOLDER).glob("*.png")}
    assert written == set(ALWAYS)
    for name in ALWAYS:
        assert_png(model / checkpoint.REPORT_FOLDER / name)
        assert f"]({name})" in text
    assert "Scores on" not in text


def test_labels_alone_add_the_conditional_probabilities(run, tmp_path):
    model = copy_model(run["model"], tmp_path / "model")
    report.write_report(model, labels_dir=run["labels"])
    written = {p.name for p in (model / checkpoint.REPORT_FOLDER).glob("*.png")}
    assert written == set(ALWAYS + WITH_LABELS)


def test_outputs_without_labels_are_refused(run, tmp_path):
    with pytest.raises(ValueError, match="labels"):
        report.write_report(run["model"], outputs_dir=run["outputs"])


@pytest.mark.parametrize("missing", [checkpoint.CHECKPOINT_FILE, checkpoint.HISTORY_FILE])
def test_a_missing_model_file_is_named(run, tmp_path, missing):
    model = copy_model(run["model"], tmp_path / "model")
    (model / missing).unlink()
    with pytest.raises(report.ReportError, match=missing):
        report.write_report(model)
    assert not (model / checkpoint.REPORT_FOLDER).exists()


def test_the_best_epoch_is_the_one_the_checkpoint_holds(run, tmp_path):
    # Chosen by validation loss, the saved epoch need not have the best challenge metric.
    model = copy_model(run["model"], tmp_path / "model")
    saved = checkpoint.read(model)
    history = (model / checkpoint.HISTORY_FILE).read_text().splitlines()
    assert len(history) == 3, "the smoke profile runs two epochs"
    column = history[0].split(",").index("challenge_metric")
    rows = [line.split(",") for line in history[1:]]
    rows[0][column], rows[1][column] = "0.9", "0.1"  # epoch 1 best by the metric
    saved["epoch"] = 2
    checkpoint.atomic_save(saved, model / checkpoint.CHECKPOINT_FILE)
    lines = [history[0], *(",".join(row) for row in rows)]
    (model / checkpoint.HISTORY_FILE).write_text("\n".join(lines) + "\n")
    text = report.write_report(model).read_text()
    assert "Best epoch 2: challenge metric 0.100" in text


def test_the_report_names_the_classes_whose_thresholds_the_firing_cap_raised(run, tmp_path):
    model = copy_model(run["model"], tmp_path / "model")
    assert "which fired on more than" not in report.write_report(model).read_text()
    saved = checkpoint.read(model)
    saved["firing_capped"] = ["111975006", "164934002"]  # long QT, T-wave abnormal
    checkpoint.atomic_save(saved, model / checkpoint.CHECKPOINT_FILE)
    text = report.write_report(model).read_text()
    assert (
        "raised for LQT, TAb, which fired on more than 15% of the training records "
        "(or 4 times their prevalence)" in text
    )


def test_the_data_adds_a_gallery_of_the_most_confident_mistakes(run, tmp_path):
    model = copy_model(run["model"], tmp_path / "model")
    text = report.write_report(model, data_dir=run["model"].parent / "train").read_text()
    # What the gallery should hold, worked out here from the split and the saved model.
    predictor = predict.load(model, device=torch.device("cpu"))
    with open(model / checkpoint.SPLIT_FILE, newline="") as f:
        names = [r["record"] for r in csv.DictReader(f) if r["part"] == "validation"]
    loaded = [records.load_record(run["model"].parent / "train" / f"{n}.hea") for n in names]
    truth = np.array([r.labels for r in loaded])
    x = [signal.preprocess(r.signal, r.fs, predictor.preprocess) for r in loaded]
    probabilities = predictor.probabilities_many(x)
    decided = thresholds.decide(probabilities, predictor.thresholds)
    errors = (decided != truth).sum(axis=0)
    assert errors.any(), "the smoke model makes no mistake here: the test would prove nothing"
    expected = set()
    for k in np.argsort(-errors, kind="stable")[: explain.GALLERY_CLASSES]:
        name = lbl.abbreviations()[lbl.CLASSES[k]]
        if (decided[:, k] & ~truth[:, k]).any():
            expected.add(f"gallery-{name}-false-positive.png")
        if (~decided[:, k] & truth[:, k]).any():
            expected.add(f"gallery-{name}-false-negative.png")
    written = {p.name for p in (model / checkpoint.REPORT_FOLDER).glob("gallery-*.png")}
    assert written == expected and expected
    for name in expected:
        assert_png(model / checkpoint.REPORT_FOLDER / name)
        assert f"]({name})" in text


def test_the_report_says_how_the_measured_rules_decide(run, tmp_path):
    model = copy_model(run["model"], tmp_path / "model")
    text = report.write_report(model).read_text()
    assert "- rhythm rules: AF by the measured RR irregularity where it is clear (never " in text
    assert "a measured premature beat answers PAC or PVC" in text
    assert "- RBBB rule: where V1's QRS ends on a late R' (0.1 mV or more over its last 40 ms)" in (
        text
    )
    assert "is answered, complete RBBB; never incomplete RBBB where V1 ends under -0.3 mV" in text
    saved = checkpoint.read(model)
    saved["train_config"]["rhythm_rules"] = False
    saved["train_config"]["rbbb_rule"] = False
    checkpoint.atomic_save(saved, model / checkpoint.CHECKPOINT_FILE)
    text = report.write_report(model).read_text()
    assert "- rhythm rules: AF, PAC and PVC by their thresholds alone" in text
    assert "- RBBB rule: complete and incomplete RBBB by their thresholds alone" in text


@pytest.mark.parametrize(
    ("anchors", "words"),
    [
        (None, "; a network trained on them alone is the ensemble's anchor, 0.5 of the answer"),
        (
            3,
            "; 3 networks trained on synthetic records alone (up to 4 epochs, each on a pool of "
            "its own) are the ensemble's anchor, 0.5 of the answer",
        ),
    ],
)
def test_the_report_counts_the_anchor_networks(anchors, words):
    """A checkpoint from before several anchors (no count) had one network."""
    training = {
        "synthetic": 6000,
        "synthetic_seed": 0,
        "synthetic_pretrain_epochs": 6,
        "synthetic_mix": 1.0,
        "max_epochs": 10,
        "synthetic_anchor_epochs": 4,
    }
    saved = {"train_config": training, "anchor_share": 0.5}
    if anchors is not None:
        saved["anchors"] = anchors
    assert words in report._synthetic_line(saved)
