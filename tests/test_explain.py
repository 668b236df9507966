"""`explain`: one recording's 12 leads on ECG paper, evidence strips and probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecg_gcn import __main__ as cli
from ecg_gcn import checkpoint, config, explain, predict, signal, synth
from ecg_gcn import labels as lbl

REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "real_sample"
SETTINGS = signal.Preprocess(window_seconds=10.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def predictor(untrained_predictor) -> predict.Predictor:
    return untrained_predictor(SETTINGS)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """A 10 s record at 500 Hz with PVCs (SYN00000), and one of 25 s at 1000 Hz (LONG00000)."""
    folder = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(3)
    x, _ = synth.synthesize(rng, [synth.NSR, synth.PVC], 500, 10.0)
    synth.write_record(folder, "SYN00000", x, 500, [synth.NSR, synth.PVC], 60, "Male")
    x, _ = synth.synthesize(rng, [synth.AF], 1000, 25.0)
    synth.write_record(folder, "LONG00000", x, 1000, [synth.AF], 70, "Female")
    return folder


def _axes(fig) -> dict[str, object]:
    return {ax.get_label(): ax for ax in fig.axes}


def test_the_figure_is_a_12_lead_ecg_with_a_rhythm_strip_evidence_and_probabilities(
    predictor, records
):
    e = explain.explain(predictor, records / "SYN00000.hea", ["PVC", "164889003"])
    fig = explain.figure(e, predictor.thresholds)
    axes = _axes(fig)
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert set(axes) == {*leads, "rhythm II", "evidence PVC", "evidence AF", "probabilities"}
    # The clinical layout: four columns of 2.5 s, three leads each, in the standard order.
    for column, names in enumerate((leads[0:3], leads[3:6], leads[6:9], leads[9:12])):
        for name in names:
            assert axes[name].get_xlim() == pytest.approx((2.5 * column, 2.5 * column + 2.5))
    # ECG paper: 1 mm squares of 0.04 s and 0.1 mV, 5 mm squares of 0.2 s and 0.5 mV, and
    # 25 mm/s against 10 mm/mV.
    ax = axes["V1"]
    for gid, seconds, millivolts in (("paper-1mm", 0.04, 0.1), ("paper-5mm", 0.2, 0.5)):
        vertical, horizontal = [c for c in ax.collections if c.get_gid() == gid]
        x = sorted(segment[0][0] for segment in vertical.get_segments())
        y = sorted(segment[0][1] for segment in horizontal.get_segments())
        assert np.diff(x) == pytest.approx(seconds) and x[0] == pytest.approx(5.0)
        assert np.diff(y) == pytest.approx(millivolts) and len(x) == round(2.5 / seconds) + 1
    assert ax.get_aspect() == pytest.approx(10 / 25)
    assert ax.get_ylabel() == "mV" and ax.get_xlabel() == "s"
    # The rhythm strip and the evidence strips cover the window the model scored.
    assert axes["rhythm II"].get_xlim() == pytest.approx((0, 10))
    assert axes["evidence PVC"].get_xlim() == pytest.approx((0, 10))
    # The drawn lead is the preprocessed signal, about its median.
    (line,) = axes["II"].get_lines()
    window = e.window[1] - np.median(e.window[1])
    np.testing.assert_allclose(line.get_ydata(), window[:1250], rtol=1e-6)
    # Probabilities against thresholds, the header's #Dx marked.
    probabilities = axes["probabilities"]
    assert len(probabilities.patches) == lbl.NUM_CLASSES
    ticks = [t.get_text() for t in probabilities.get_yticklabels()]
    assert "PVC *" in ticks and "NSR *" in ticks and "AF" in ticks
    assert "the header's #Dx: NSR, PVC" in fig.texts[0].get_text()


def test_a_long_recording_shows_its_highest_scoring_window_and_says_so(predictor, records):
    e = explain.explain(predictor, records / "LONG00000.mat", ["AF"])
    x = signal.preprocess(
        explain.records.load_record(records / "LONG00000.hea").signal, 1000, SETTINGS
    )
    windows = signal.windows(x, SETTINGS.window)
    assert e.windows == len(windows) == 3 and e.fs == 500  # 25 s at 1000 Hz, seen at 500 Hz
    scores = predictor.probabilities_many(iter(windows))[:, lbl.CLASSES.index(synth.AF)]
    best = int(np.argmax(scores))
    np.testing.assert_array_equal(e.window, windows[best])
    assert e.start_s == pytest.approx(
        signal.window_starts(x.shape[-1], SETTINGS.window)[best] / 500
    )
    title = explain.figure(e, predictor.thresholds).texts[0].get_text()
    assert f"of {e.windows}, the one scored highest for AF" in title


def test_by_default_the_labelled_classes_are_explained(predictor, records):
    e = explain.explain(predictor, records / "SYN00000")
    expected = [k for k in np.argsort(-e.probabilities) if e.decided[k]][: explain.MAX_STRIPS]
    assert e.classes == expected and len(e.classes) >= 1


@pytest.mark.parametrize("method", explain.METHODS)
def test_evidence_is_zero_where_the_input_is_silent(predictor, method):
    """Integrated gradients from a flat baseline and gradient x input give no share to a flat
    stretch; Grad-CAM, seeing about 1 s per step, is only asked to be non-negative and of the
    window's length."""
    rng = np.random.default_rng(0)
    window = np.zeros((12, SETTINGS.window), dtype=np.float32)
    window[:, :2000] = rng.normal(0, 0.5, (12, 2000))
    strips = explain.evidence(predictor, window, [0, 5], method)
    assert strips.shape == (2, SETTINGS.window) and (strips >= 0).all()
    if method != "gradcam":
        smooth = round(explain.EVIDENCE_SMOOTH_S * 500)
        assert strips[:, 2000 + smooth :].max() == 0 and strips[:, :2000].max() > 0


def test_unknown_classes_and_methods_are_refused_by_name(predictor, records):
    with pytest.raises(ValueError, match="not a scored class: XYZ"):
        explain.explain(predictor, records / "SYN00000.hea", ["AF", "XYZ"])
    with pytest.raises(ValueError, match="evidence method 'lime'"):
        explain.evidence(predictor, np.zeros((12, 100), np.float32), [0], "lime")


def test_the_command_writes_a_png_and_names_a_bad_record(predictor, records, tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    train_config = config.TrainConfig(preprocess=SETTINGS)
    checkpoint.save(
        model_dir / checkpoint.CHECKPOINT_FILE,
        predictor.model,
        predictor.model_config,
        train_config,
        predictor.thresholds,
    )
    out = tmp_path / "figure.png"
    cli.main(["explain", str(model_dir), str(records / "SYN00000.hea"), "--out", str(out)])
    assert out.read_bytes()[:8] == PNG_MAGIC and "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"MISSING\.hea"):
        cli.main(["explain", str(model_dir), str(tmp_path / "MISSING"), "--out", str(out)])


@pytest.mark.parametrize("name", ["A0001", "S0002", "HR00001"])
def test_real_records_at_500_and_1000_hz(predictor, tmp_path, name):
    if not REAL_SAMPLE.is_dir():
        pytest.skip(f"{REAL_SAMPLE} is absent: the real-record tests need ../shared/real_sample")
    out = explain.write(predictor, REAL_SAMPLE / f"{name}.hea", tmp_path / f"{name}.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
