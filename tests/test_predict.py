"""Inference: windows of any number of recordings, streamed in batches, averaged per record."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from ecg_gcn import checkpoint, measure, predict, signal, synth
from ecg_gcn import labels as lbl

WINDOW = 1000
SETTINGS = signal.Preprocess(window_seconds=WINDOW / signal.TARGET_FS)


@pytest.fixture(scope="module")
def predictor(untrained_predictor) -> predict.Predictor:
    return untrained_predictor(SETTINGS)


def by_hand(predictor: predict.Predictor, x: np.ndarray) -> np.ndarray:
    """The mean over the record's windows, each window run alone."""
    with torch.inference_mode():
        probs = [
            torch.sigmoid(predictor.model(torch.from_numpy(w[None]))).numpy()[0]
            for w in signal.windows(x, WINDOW)
        ]
    return np.mean(probs, axis=0)


def test_streamed_batches_give_each_record_the_mean_of_its_windows(predictor):
    rng = np.random.default_rng(1)
    # 1 window, exactly 1, 2, 3 (last aligned to the end), and more than a batch of windows.
    lengths = [300, WINDOW, 2 * WINDOW, 2 * WINDOW + 1, (predict.WINDOW_BATCH + 3) * WINDOW, 50]
    signals = [rng.normal(0, 0.3, (12, n)).astype(np.float32) for n in lengths]
    assert sum(len(signal.windows(x, WINDOW)) for x in signals) > predict.WINDOW_BATCH + 3

    many = predictor.probabilities_many(x for x in signals)  # a generator: streamed
    assert many.shape == (len(signals), lbl.NUM_CLASSES)
    for x, got in zip(signals, many, strict=True):
        np.testing.assert_allclose(got, by_hand(predictor, x), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(predictor.probabilities(x), got, rtol=1e-4, atol=1e-6)


def test_no_recording_gives_no_rows(predictor):
    assert predictor.probabilities_many(iter([])).shape == (0, lbl.NUM_CLASSES)


def test_the_measured_rules_travel_with_the_checkpoint(smoke_model_dir, tmp_path):
    """Training's rhythm_rules, rbbb_rule and veto_rules are saved and loaded; a checkpoint
    saved without one (before the rule) decides by its thresholds alone there, as it was
    tuned."""
    loaded = predict.load(smoke_model_dir, torch.device("cpu"))
    rules = ("rhythm_rules", "rbbb_rule", "veto_rules")
    assert all(getattr(loaded, key) is True for key in rules)  # the defaults
    for key in rules:
        old = tmp_path / key
        shutil.copytree(smoke_model_dir, old)
        state = checkpoint.read(old)
        del state["train_config"][key]
        checkpoint.atomic_save(state, old / checkpoint.CHECKPOINT_FILE)
        reloaded = predict.load(old, torch.device("cpu"))
        assert getattr(reloaded, key) is False
        assert all(getattr(reloaded, other) is True for other in rules if other != key)


def test_the_answer_applies_the_rhythm_rules_to_the_recording(predictor):
    af, _ = synth.synthesize(np.random.default_rng(2), (synth.AF,), 500, 10.0)
    regular, _ = synth.synthesize(np.random.default_rng(2), (synth.NSR,), 500, 10.0)
    nothing = np.zeros(lbl.NUM_CLASSES)
    sure = np.zeros(lbl.NUM_CLASSES)
    sure[lbl.AF_INDEX] = 1.0
    af_code = lbl.CLASSES[lbl.AF_INDEX]

    def said(p: predict.Predictor, probabilities: np.ndarray, x: np.ndarray | None) -> bool:
        labels, _, codes = p.answer(probabilities, x)
        return bool(labels[codes.index(af_code)])

    ruled = replace(predictor, rhythm_rules=True)
    assert said(ruled, nothing, af)  # an irregular rhythm is AF
    assert not said(ruled, sure, regular)  # a regular one never is
    assert said(ruled, sure, None)  # no recording: the threshold alone
    assert not said(predictor, nothing, af)  # the rule off: the threshold alone
    assert said(predictor, sure, regular)
    measured = ruled.measured([af, regular])
    assert measured.shape == (2, measure.COLUMNS)
    irregular = measured[:, measure.IRREGULARITY]
    assert irregular[0] >= measure.AF_IRREGULAR > measure.AF_REGULAR > irregular[1]
    assert predictor.measured([af]) is None


def test_each_rule_acts_only_where_the_model_was_trained_with_it(predictor):
    """A model with the rhythm rules and without the RBBB rule leaves a measured late R' to its
    thresholds, and the other way round."""
    rbbb, _ = synth.synthesize(np.random.default_rng(1), (synth.CRBBB,), 500, 10.0)
    af, _ = synth.synthesize(np.random.default_rng(2), (synth.AF,), 500, 10.0)
    nothing = np.zeros((2, lbl.NUM_CLASSES))
    both = replace(predictor, rhythm_rules=True, rbbb_rule=True)
    measured = both.measured([rbbb, af])
    assert measured[0, measure.V1_TERMINAL] >= measure.RBBB_V1
    block = [lbl.CRBBB_INDEX, lbl.IRBBB_INDEX]
    assert both.decide(nothing, measured)[0, block].any()
    assert both.decide(nothing, measured)[1, lbl.AF_INDEX]
    rhythm_only = replace(predictor, rhythm_rules=True, rbbb_rule=False)
    assert not rhythm_only.decide(nothing, measured)[0, block].any()
    assert rhythm_only.decide(nothing, measured)[1, lbl.AF_INDEX]
    rbbb_only = replace(predictor, rhythm_rules=False, rbbb_rule=True)
    assert rbbb_only.decide(nothing, measured)[0, block].any()
    assert not rbbb_only.decide(nothing, measured)[1, lbl.AF_INDEX]
    assert np.isfinite(measured).all()  # deciding does not change what was measured


def test_the_vetoes_act_only_where_the_model_was_trained_with_them(predictor):
    """A steady sinus rhythm with a narrow QRS: NSIVCB, SA, PAC and PVC are struck with the
    vetoes, left to the thresholds without them."""
    regular, _ = synth.synthesize(np.random.default_rng(3), (synth.NSR,), 500, 10.0)
    sure = np.zeros((1, lbl.NUM_CLASSES))
    struck = [lbl.NSIVCB_INDEX, lbl.SA_INDEX, lbl.PAC_INDEX, lbl.PVC_INDEX]
    sure[0, struck] = 1.0
    vetoing = replace(predictor, rhythm_rules=True, veto_rules=True)
    measured = vetoing.measured([regular])
    assert not vetoing.decide(sure, measured)[0, struck].any()
    assert vetoing.decide(sure, measured)[0, lbl.NORMAL_INDEX]
    without = replace(predictor, rhythm_rules=True, veto_rules=False)
    assert without.decide(sure, measured)[0, struck].all()
    assert replace(predictor, veto_rules=True).measured([regular]) is not None
