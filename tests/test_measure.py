"""The measured beats (ecg_gcn.measure) and the rules they feed (thresholds.decide)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecg_gcn import measure, signal, synth
from ecg_gcn.labels import (
    AF_INDEX,
    CRBBB_INDEX,
    IAVB_INDEX,
    IRBBB_INDEX,
    LPR_INDEX,
    LQRSV_INDEX,
    LQT_INDEX,
    NORMAL_INDEX,
    NSIVCB_INDEX,
    NUM_CLASSES,
    PAC_INDEX,
    PVC_INDEX,
    SA_INDEX,
)
from ecg_gcn.thresholds import decide


def _record(codes, seed, fs=500, seconds=10.0, **kwargs):
    return synth.synthesize(np.random.default_rng(seed), codes, fs, seconds, **kwargs)


def irregularity(x, fs):
    return measure.record(x, fs)[measure.IRREGULARITY]


def premature(x, fs):
    return measure.record(x, fs)[measure.PREMATURE_BEAT]


@pytest.mark.parametrize(("codes", "seed"), [((synth.NSR,), 0), ((synth.AF,), 1), ((synth.SB,), 2)])
def test_beats_are_the_simulated_ones(codes, seed):
    x, info = _record(codes, seed)
    onsets = np.asarray(info["beat_onsets"]) * 500
    onsets = onsets[(onsets > 100) & (onsets < x.shape[1] - 100)]  # whole beats only
    found = measure.beats(x, 500)
    # Each simulated beat has a detection within 150 ms of its onset (the detector marks the QRS
    # peak, a little after the onset), and no detection is left over.
    nearest = np.abs(found[None, :] - onsets[:, None]).min(axis=1)
    assert np.all(nearest < 75)
    assert len(found) <= len(onsets) + 2


@pytest.mark.parametrize("seed", range(6))
def test_a_regular_rhythm_is_never_af_and_af_is_irregular(seed):
    regular, _ = _record((synth.NSR,), seed)
    brady, _ = _record((synth.SB,), seed)
    flutter, _ = _record((synth.AFL,), seed)
    af, _ = _record((synth.AF,), seed)
    for x in (regular, brady, flutter):
        assert irregularity(x, 500) < measure.AF_REGULAR
    assert irregularity(af, 500) >= measure.AF_REGULAR


def test_simulated_af_mostly_reaches_the_irregular_cut_off():
    values = [irregularity(_record((synth.AF,), seed)[0], 500) for seed in range(20)]
    assert np.mean(np.array(values) >= measure.AF_IRREGULAR) >= 0.8


def test_the_rate_does_not_change_the_measure():
    x, _ = _record((synth.AF,), 3, fs=1000)
    at_1000 = irregularity(x, 1000)
    at_500 = irregularity(signal.resample(x, 1000, 500), 500)
    at_300 = irregularity(signal.resample(x, 1000, 300), 300)
    assert at_500 == pytest.approx(at_1000, abs=0.01)
    assert at_300 == pytest.approx(at_1000, abs=0.01)


def test_dead_leads_are_passed_over_and_a_dead_record_measures_nothing():
    x, _ = _record((synth.AF,), 5)
    whole = irregularity(x, 500)
    x_dead = x.copy()
    x_dead[[1, 6, 7, 8, 9]] = 0.0  # like JS45544 of the real sample: five all-zero leads
    assert irregularity(x_dead, 500) == pytest.approx(whole, abs=0.02)
    assert math.isnan(irregularity(np.zeros((12, 5000)), 500))
    x_nan = x.copy()
    x_nan[:, :100] = np.nan
    assert np.isfinite(irregularity(x_nan, 500))


def test_too_few_beats_measure_nothing():
    x, _ = _record((synth.NSR,), 0, seconds=3.0, heart_rate=60.0)  # 3 beats
    assert math.isnan(irregularity(x, 500))
    assert np.isnan(measure.record(x, 500)).all()
    with pytest.raises(ValueError, match="leads, samples"):
        measure.record(np.zeros(5000), 500)


def _rhythm(
    irregularity,
    premature=0.0,
    v1_terminal=np.nan,
    qrs=np.nan,
    spread=np.nan,
    pr=np.nan,
    qtc=np.nan,
    limb=np.nan,
    chest=np.nan,
):
    columns = np.broadcast_arrays(
        irregularity, premature, v1_terminal, qrs, spread, pr, qtc, limb, chest
    )
    return np.column_stack(columns).astype(float)


def test_decide_lets_the_rhythm_decide_af_where_it_is_clear():
    p = np.full((4, NUM_CLASSES), 0.1)
    p[0, AF_INDEX] = 0.9  # the network says AF on a regular rhythm: vetoed
    p[1, AF_INDEX] = 0.0  # the network says nothing on an irregular one: AF all the same
    p[2, AF_INDEX] = 0.9  # in between, the threshold decides
    p[3, AF_INDEX] = 0.9  # unmeasured: the threshold decides
    rhythm = _rhythm([0.01, 0.3, 0.07, np.nan])
    decided = decide(p, 0.5, rhythm)
    assert decided[:, AF_INDEX].tolist() == [False, True, True, True]
    # A vetoed AF leaves the recording empty: it answers sinus rhythm alone, as always.
    assert decided[0].sum() == 1 and decided[0, NORMAL_INDEX]
    assert decided[1].sum() == 1
    # Without a rhythm, the thresholds alone, as before.
    assert decide(p, 0.5)[:, AF_INDEX].tolist() == [True, False, True, True]
    # Without a premature beat, the rule touches AF alone.
    others = np.delete(np.arange(NUM_CLASSES), AF_INDEX)
    q = np.random.default_rng(0).random((50, NUM_CLASSES))
    irregular = _rhythm(np.random.default_rng(1).random(50) * 0.2)
    assert np.array_equal(decide(q, 0.5, irregular)[:, others], decide(q, 0.5)[:, others])


def test_a_measured_premature_beat_answers_the_ectopic_class_the_network_puts_higher():
    cut = np.full(NUM_CLASSES, 0.5)
    cut[PVC_INDEX] = 0.2
    p = np.full((5, NUM_CLASSES), 0.05)
    p[0, [PAC_INDEX, PVC_INDEX]] = 0.3, 0.1  # 0.6 and 0.5 of their cut-offs: PAC
    p[1, [PAC_INDEX, PVC_INDEX]] = 0.2, 0.1  # 0.4 and 0.5: PVC
    p[2, [PAC_INDEX, PVC_INDEX]] = 0.3, 0.1  # no premature beat: neither
    p[3, [PAC_INDEX, PVC_INDEX]] = 0.3, 0.1  # a premature beat in AF's irregularity: neither
    p[4, [PAC_INDEX, PVC_INDEX]] = 0.1, 0.3  # PVC already answered: nothing added
    rhythm = _rhythm([0.02, 0.02, 0.02, 0.2, 0.02], [1, 1, 0, 1, 1])
    decided = decide(p, cut, rhythm)
    assert decided[:, PAC_INDEX].tolist() == [True, False, False, False, False]
    assert decided[:, PVC_INDEX].tolist() == [False, True, False, False, True]
    assert decided[3, AF_INDEX] and not decided[3, NORMAL_INDEX]
    assert decided[2].sum() == 1 and decided[2, NORMAL_INDEX]  # nothing: sinus rhythm alone
    # An unmeasured rhythm adds nothing.
    assert np.array_equal(decide(p, cut, _rhythm(np.nan, np.nan)), decide(p, cut))


def test_the_simulated_premature_beats_are_measured_and_a_regular_rhythm_has_none():
    early = [premature(_record((synth.NSR, synth.PAC), seed)[0], 500) for seed in range(8)]
    late = [premature(_record((synth.NSR,), seed)[0], 500) for seed in range(8)]
    assert np.mean(early) >= 0.75
    assert not any(late)


def test_decide_takes_one_recording_and_one_rhythm():
    p = np.full(NUM_CLASSES, 0.1)
    unmeasured = [np.nan] * (measure.COLUMNS - 2)
    assert decide(p[None], 0.5, np.array([0.2, 0.0, *unmeasured]))[0, AF_INDEX]
    assert not decide(p[None], 0.5, np.array([0.0, 0.0, *unmeasured]))[0, AF_INDEX]


def v1_terminal(x, fs=500):
    return measure.record(x, fs)[measure.V1_TERMINAL]


@pytest.mark.parametrize("seed", range(4))
def test_a_right_bundle_branch_block_ends_v1_on_a_late_r_and_others_do_not(seed):
    """The simulator's complete and incomplete RBBB reach the cut-off; sinus rhythm, left
    bundle branch block (whose V1 ends deep and negative), AF and an old left anterior
    fascicular block do not."""
    for code in (synth.CRBBB, synth.IRBBB):
        assert v1_terminal(_record((code,), seed)[0]) >= measure.RBBB_V1
    for code in (synth.NSR, synth.LBBB, synth.AF, synth.LANFB, synth.SB):
        assert v1_terminal(_record((code,), seed)[0]) < measure.RBBB_V1


def test_the_qrs_is_found_whole_on_a_wide_notched_beat():
    x, _ = _record((synth.LBBB,), 0)
    peaks = measure.beats(x, 500)
    beat, at = measure.median_beat(x, peaks, 500)
    onset, offset = measure.qrs_bounds(beat, at, 500)
    assert (offset - onset) / 500 >= 0.12  # a left bundle branch block: 120 ms or more
    x, _ = _record((synth.NSR,), 0)
    peaks = measure.beats(x, 500)
    beat, at = measure.median_beat(x, peaks, 500)
    onset, offset = measure.qrs_bounds(beat, at, 500)
    assert 0.05 <= (offset - onset) / 500 < 0.11


def test_the_rate_does_not_change_v1s_terminal_deflection():
    x, _ = _record((synth.CRBBB,), 1, fs=1000)
    at_1000 = v1_terminal(x, 1000)
    assert v1_terminal(signal.resample(x, 1000, 500), 500) == pytest.approx(at_1000, abs=0.05)
    assert v1_terminal(signal.resample(x, 1000, 300), 300) == pytest.approx(at_1000, abs=0.05)


def test_a_flat_v1_measures_no_terminal_deflection_but_the_rhythm_still():
    x, _ = _record((synth.CRBBB,), 2)
    x[measure.V1] = 0.0
    measured = measure.record(x, 500)
    assert math.isnan(measured[measure.V1_TERMINAL])
    assert np.isfinite(measured[[measure.IRREGULARITY, measure.PREMATURE_BEAT]]).all()


def test_a_late_r_in_v1_answers_complete_rbbb_where_no_right_bundle_branch_block_is():
    cut = np.full(NUM_CLASSES, 0.5)
    cut[IRBBB_INDEX] = 0.2
    p = np.full((5, NUM_CLASSES), 0.05)
    p[0, [CRBBB_INDEX, IRBBB_INDEX]] = 0.3, 0.1  # neither answered: complete
    p[1, [CRBBB_INDEX, IRBBB_INDEX]] = 0.1, 0.3  # incomplete answered: nothing added
    p[2, [CRBBB_INDEX, IRBBB_INDEX]] = 0.3, 0.1  # V1 ends negative: neither
    p[3, [CRBBB_INDEX, IRBBB_INDEX]] = 0.3, 0.1  # V1 unmeasured: neither
    p[4, [CRBBB_INDEX, IRBBB_INDEX]] = 0.6, 0.1  # complete answered by its threshold
    late_r = _rhythm(0.02, 0.0, [0.3, 0.3, -0.2, np.nan, 0.3])
    decided = decide(p, cut, late_r)
    assert decided[:, CRBBB_INDEX].tolist() == [True, False, False, False, True]
    assert decided[:, IRBBB_INDEX].tolist() == [False, True, False, False, False]
    assert decided[2].sum() == 1 and decided[2, NORMAL_INDEX]
    # The rule touches the two classes alone, and the answer stays the network's elsewhere.
    others = np.delete(np.arange(NUM_CLASSES), [CRBBB_INDEX, IRBBB_INDEX, NORMAL_INDEX])
    assert np.array_equal(decided[:, others], decide(p, cut)[:, others])


def test_v1_ending_on_its_s_wave_is_never_incomplete_rbbb():
    p = np.full((4, NUM_CLASSES), 0.05)
    p[:, [CRBBB_INDEX, IRBBB_INDEX]] = 0.6  # the network says both everywhere
    v1 = _rhythm(0.02, 0.0, [-0.5, -0.2, np.nan, 0.3])
    decided = decide(p, 0.5, v1)
    assert decided[:, IRBBB_INDEX].tolist() == [False, True, True, True]
    assert decided[:, CRBBB_INDEX].all()  # complete RBBB is never vetoed
    # On the simulator's records, a normal V1 ends under the veto's cut-off; an incomplete
    # block's never does.
    normal = [v1_terminal(_record((synth.NSR,), seed)[0]) for seed in range(6)]
    incomplete = [v1_terminal(_record((synth.IRBBB,), seed)[0]) for seed in range(6)]
    assert np.mean(np.array(normal) < measure.NO_R_PRIME_V1) >= 0.5
    assert min(incomplete) > measure.NO_R_PRIME_V1


def test_a_tall_r_prime_makes_an_answered_incomplete_block_complete():
    p = np.full((5, NUM_CLASSES), 0.05)
    p[:, IRBBB_INDEX] = 0.6  # the network says incomplete...
    p[3, CRBBB_INDEX] = 0.6  # ...and on one recording complete too
    p[4, IRBBB_INDEX] = 0.05  # ...but not on the last
    v1 = _rhythm(0.02, 0.0, [0.8, 0.3, np.nan, 0.8, 0.8])
    decided = decide(p, 0.5, v1)
    assert decided[:, IRBBB_INDEX].tolist() == [False, True, True, False, False]
    assert decided[:, CRBBB_INDEX].tolist() == [True, False, False, True, True]
    others = np.delete(np.arange(NUM_CLASSES), [CRBBB_INDEX, IRBBB_INDEX, NORMAL_INDEX])
    assert np.array_equal(decided[:, others], decide(p, 0.5)[:, others])
    # The cut-off parts the simulator's two blocks: most complete ones measure over it, most
    # incomplete ones under.
    complete = [v1_terminal(_record((synth.CRBBB,), seed)[0]) for seed in range(8)]
    incomplete = [v1_terminal(_record((synth.IRBBB,), seed)[0]) for seed in range(8)]
    assert np.median(complete) > measure.COMPLETE_RBBB_V1 > np.median(incomplete)


def qrs_duration(x, fs=500):
    return measure.record(x, fs)[measure.QRS_DURATION]


def rr_spread(x, fs=500):
    return measure.record(x, fs)[measure.RR_SPREAD]


@pytest.mark.parametrize("seed", range(4))
def test_a_wide_qrs_measures_wide_and_a_normal_one_narrow(seed):
    """The simulator's conduction blocks, nonspecific ones included, measure over the cut-off
    that vetoes NSIVCB; a normal QRS under it."""
    for code in (synth.NSIVCB, synth.LBBB, synth.CRBBB):
        assert qrs_duration(_record((code,), seed)[0]) >= measure.NARROW_QRS_S
    for code in (synth.NSR, synth.SB, synth.STACH):
        assert qrs_duration(_record((code,), seed)[0]) < 0.11


@pytest.mark.parametrize("seed", range(4))
def test_sinus_arrhythmia_spreads_its_rr_intervals_and_a_steady_rhythm_does_not(seed):
    assert rr_spread(_record((synth.SA,), seed)[0]) >= measure.STEADY_RR_S
    for code in (synth.NSR, synth.SB, synth.STACH):
        assert rr_spread(_record((code,), seed)[0]) < measure.STEADY_RR_S


def test_the_rate_does_not_change_the_qrs_or_the_rr_spread():
    x, _ = _record((synth.LBBB,), 0, fs=1000)
    y, _ = _record((synth.SA,), 1, fs=1000)
    for rate in (500, 300):
        assert qrs_duration(signal.resample(x, 1000, rate), rate) == pytest.approx(
            qrs_duration(x, 1000), abs=0.01
        )
        assert rr_spread(signal.resample(y, 1000, rate), rate) == pytest.approx(
            rr_spread(y, 1000), abs=0.01
        )


def test_the_vetoes_strike_a_class_whose_defining_measure_is_absent():
    p = np.full((6, NUM_CLASSES), 0.05)
    p[:, [NSIVCB_INDEX, SA_INDEX, PAC_INDEX, PVC_INDEX]] = 0.9  # the network says all four
    measured = _rhythm(
        irregularity=[0.02, 0.07, 0.02, 0.2, 0.02, np.nan],
        premature=[0, 0, 1, 0, 0, np.nan],
        qrs=[0.07, 0.12, 0.07, 0.07, np.nan, np.nan],
        spread=[0.02, 0.2, 0.02, 0.3, np.nan, np.nan],
    )
    decided = decide(p, 0.5, measured)
    # A narrow QRS: no NSIVCB; a wide or unmeasured one: the threshold.
    assert decided[:, NSIVCB_INDEX].tolist() == [False, True, False, False, True, True]
    # A steady rhythm: no sinus arrhythmia; a spread or unmeasured one: the threshold.
    assert decided[:, SA_INDEX].tolist() == [False, True, False, True, True, True]
    # No premature beat measured in a rhythm under AF's irregularity: neither PAC nor PVC. A
    # premature beat, an AF-irregular rhythm or no measure of the spread leave them to the
    # thresholds.
    for index in (PAC_INDEX, PVC_INDEX):
        assert decided[:, index].tolist() == [False, False, True, True, True, True]
    # Every other class is left as the thresholds answered it.
    struck = [NSIVCB_INDEX, SA_INDEX, PAC_INDEX, PVC_INDEX, AF_INDEX, NORMAL_INDEX]
    struck += [IAVB_INDEX, LPR_INDEX]  # beside AF (the next test)
    others = np.delete(np.arange(NUM_CLASSES), struck)
    q = np.random.default_rng(0).random((6, NUM_CLASSES))
    assert np.array_equal(decide(q, 0.5, measured)[:, others], decide(q, 0.5)[:, others])
    # All four struck: sinus rhythm alone.
    assert decided[0].sum() == 1 and decided[0, NORMAL_INDEX]


def test_no_pr_interval_class_is_answered_beside_af():
    p = np.full((4, NUM_CLASSES), 0.05)
    p[:, [IAVB_INDEX, LPR_INDEX]] = 0.9  # the network says both everywhere
    p[1, AF_INDEX] = 0.9  # and AF on the second recording by its threshold
    measured = _rhythm([0.2, 0.07, 0.02, 0.2], spread=[0.3, 0.1, 0.02, np.nan])
    decided = decide(p, 0.5, measured)
    assert decided[:, AF_INDEX].tolist() == [True, True, False, True]
    # AF, by the rhythm or the threshold: no PR interval, so neither class; a sinus rhythm,
    # or the vetoes off (no spread measured), leave them to the thresholds.
    for index in (IAVB_INDEX, LPR_INDEX):
        assert decided[:, index].tolist() == [False, False, True, True]


def test_a_pr_interval_measured_short_of_a_block_is_never_iavb():
    p = np.full((3, NUM_CLASSES), 0.05)
    p[:, [IAVB_INDEX, LPR_INDEX]] = 0.9
    measured = _rhythm(0.02, spread=0.02, pr=[0.14, 0.25, np.nan])
    decided = decide(p, 0.5, measured)
    for index in (IAVB_INDEX, LPR_INDEX):
        assert decided[:, index].tolist() == [False, True, True]


def pr_interval(x, fs=500):
    return measure.record(x, fs)[measure.PR_INTERVAL]


@pytest.mark.parametrize("seed", range(3))
def test_the_pr_interval_is_read_near_the_simulated_one(seed):
    for code in (synth.NSR, synth.IAVB, synth.SB, synth.LBBB):
        x, info = _record((code,), seed)
        assert pr_interval(x) * 1000 == pytest.approx(info["pr_ms"], abs=25)
    x, info = _record((synth.IAVB,), seed)
    assert pr_interval(x) >= 0.2 > measure.SHORT_PR_S
    at_1000 = pr_interval(signal.resample(x, 500, 1000), 1000)
    assert pr_interval(signal.resample(x, 500, 300), 300) == pytest.approx(at_1000, abs=0.01)


def test_a_qtc_measured_short_of_a_long_qt_is_never_lqt():
    p = np.full((3, NUM_CLASSES), 0.05)
    p[:, LQT_INDEX] = 0.9
    decided = decide(p, 0.5, _rhythm(0.02, spread=0.02, qtc=[0.40, 0.47, np.nan]))
    assert decided[:, LQT_INDEX].tolist() == [False, True, True]
    assert decided[0, NORMAL_INDEX] and decided[0].sum() == 1


def qtc(x, fs=500):
    return measure.record(x, fs)[measure.QTC]


@pytest.mark.parametrize("seed", range(3))
def test_the_qtc_is_read_near_the_simulated_one(seed):
    for codes in ((synth.NSR,), (synth.SB,), (synth.NSR, synth.LQT), (synth.SB, synth.LQT)):
        x, info = _record(codes, seed)
        assert qtc(x) * 1000 == pytest.approx(info["qtc_ms"], abs=25), codes
    x, _ = _record((synth.NSR, synth.LQT), seed)
    assert qtc(x) > 0.46 > measure.SHORT_QTC_S
    at_1000 = qtc(signal.resample(x, 500, 1000), 1000)
    assert qtc(signal.resample(x, 500, 300), 300) == pytest.approx(at_1000, abs=0.01)


def test_a_long_qt_with_a_flat_or_biphasic_t_wave_never_reads_short():
    # The simulator's abnormal T waves are flat or biphasic; the T wave's end is read off its
    # last fall, so the dip between a biphasic T wave's two halves is not taken for its end.
    for seed in range(8):
        x, info = _record((synth.NSR, synth.LQT, synth.TAB), seed)
        assert not qtc(x) < measure.SHORT_QTC_S, (seed, info["plan"].t_wave)


def test_no_pr_interval_is_read_where_the_previous_t_wave_meets_the_qrs():
    for rate in (120.0, 160.0):
        x, info = _record((synth.STACH,), 0, heart_rate=rate)
        assert info["heart_rate"] == pytest.approx(rate, abs=1.0)
        assert math.isnan(pr_interval(x))
    x, _ = _record((synth.NSR,), 0, heart_rate=90.0)
    assert not math.isnan(pr_interval(x))


def test_a_qrs_tall_in_a_limb_and_in_a_chest_lead_is_never_low_voltage():
    p = np.full((5, NUM_CLASSES), 0.05)
    p[:, LQRSV_INDEX] = 0.9
    limb = [1.0, 0.4, 1.0, np.nan, 0.7]
    chest = [1.5, 1.5, 0.8, 1.5, 1.2]
    decided = decide(p, 0.5, _rhythm(0.02, spread=0.02, limb=limb, chest=chest))
    # Low limb voltages or low chest voltages alone make low QRS voltage: either keeps it.
    assert decided[:, LQRSV_INDEX].tolist() == [False, True, True, True, False]
    assert decided[0, NORMAL_INDEX] and decided[0].sum() == 1


def heights(x, fs=500):
    return measure.record(x, fs)[[measure.LIMB_QRS, measure.CHEST_QRS]]


def test_the_qrs_heights_keep_every_simulated_low_voltage_and_follow_the_gain():
    tall = (measure.TALL_LIMB_QRS_MV, measure.TALL_CHEST_QRS_MV)
    for seed in range(10):
        for rhythm in (synth.NSR, synth.SB, synth.AF):
            x, _ = _record((rhythm, synth.LQRSV), seed)
            assert not np.all(heights(x) >= tall), (seed, rhythm)
    normal = np.array([heights(_record((synth.NSR,), seed)[0]) for seed in range(10)])
    assert np.mean(np.all(normal >= tall, axis=1)) >= 0.7
    x, _ = _record((synth.NSR,), 3)
    # Millivolts, whatever the rate: half the gain reads half as tall.
    assert heights(x * 0.5) == pytest.approx(heights(x) * 0.5, rel=1e-6)
    at_1000 = heights(signal.resample(x, 500, 1000), 1000)
    assert heights(signal.resample(x, 500, 300), 300) == pytest.approx(at_1000, abs=0.05)
    # Dead chest leads read nothing tall there: the veto does not act on a record missing them.
    dead = x.copy()
    dead[measure.CHEST :] = 0.0
    assert heights(dead)[1] == 0.0
