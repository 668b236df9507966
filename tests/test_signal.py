"""Resampling, the shared preprocessing, pad/crop and windows."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ecg_gcn import signal
from ecg_gcn.signal import TARGET_FS, Preprocess

FREQ, AMPLITUDE, PHASE = 7.3, 1.5, 0.4  # Hz, mV, rad


def sine(fs: float, seconds: float = 10.0, leads: int = 12) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    return np.tile(AMPLITUDE * np.sin(2 * np.pi * FREQ * t + PHASE), (leads, 1))


@pytest.mark.parametrize("fs", [257, 300, 1000, 250, 360, 128, 256.9, 44100 / 127])
def test_resampling_keeps_a_sinusoid(fs):
    x = sine(fs)
    y = signal.resample(x, fs)
    assert y.shape == (12, round(x.shape[-1] * TARGET_FS / fs))
    expected = sine(TARGET_FS, seconds=y.shape[-1] / TARGET_FS)
    inner = slice(TARGET_FS // 2, -TARGET_FS // 2)  # the filter's edge effects aside
    np.testing.assert_allclose(y[:, inner], expected[:, inner], atol=0.01 * AMPLITUDE)
    spectrum = np.abs(np.fft.rfft(y[0]))
    peak = np.fft.rfftfreq(y.shape[-1], 1 / TARGET_FS)[spectrum.argmax()]
    assert peak == pytest.approx(FREQ, abs=0.1)


def test_resampling_at_500_hz_is_the_identity():
    x = sine(500)
    assert signal.resample(x, 500) is x
    assert signal.resample(x, 500.0) is x


def test_resampling_down_to_300_hz_keeps_slow_waves():
    # the acceptance check's second reading (bench/bench_rate.py): 500 Hz down to 300 Hz
    t = np.arange(5000) / 500
    x = np.stack([np.sin(2 * np.pi * 7 * t), np.cos(2 * np.pi * 3 * t)])
    y = signal.resample(x, 500, 300)
    assert y.shape == (2, 3000)
    t300 = np.arange(3000) / 300
    inner = slice(100, -100)  # away from the filter's edges
    assert y[0, inner] == pytest.approx(np.sin(2 * np.pi * 7 * t300)[inner], abs=1e-2)
    assert y[1, inner] == pytest.approx(np.cos(2 * np.pi * 3 * t300)[inner], abs=1e-2)
    assert signal.resample(np.zeros((12, 10000)), 1000, 300).shape == (12, 3000)


@pytest.mark.parametrize(("n", "fs", "length"), [(38400, 1000, 19200), (7, 1000, 4), (1, 257, 2)])
def test_resampled_length_is_rounded(n, fs, length):
    assert signal.resample(np.ones((2, n)), fs).shape == (2, length)


@pytest.mark.parametrize(
    ("fs", "ratio"),
    [
        (257, Fraction(500, 257)),
        (1000, Fraction(1, 2)),
        (44100, Fraction(5, 441)),
        (1e6, Fraction(1, 2000)),
    ],
)
def test_rational_ratio(fs, ratio):
    assert signal.rational_ratio(fs) == ratio


@pytest.mark.parametrize("fs", [0, -250, float("nan"), float("inf")])
def test_bad_rates_are_refused(fs):
    with pytest.raises(ValueError, match="positive finite"):
        signal.resample(np.ones((12, 100)), fs)


def test_preprocess_resamples_to_float32():
    x = sine(1000, seconds=38.4)
    y = signal.preprocess(x, 1000)
    assert y.shape == (12, 19200) and y.dtype == np.float32 and y.flags.c_contiguous


def test_preprocess_zeroes_non_finite_samples():
    x = sine(500)
    x[0, 100] = np.nan
    x[3, 200:300] = np.inf
    y = signal.preprocess(x, 500)
    assert np.isfinite(y).all()
    assert y[0, 100] == 0 and not y[3, 200:300].any()
    np.testing.assert_array_equal(y[1], x[1].astype(np.float32))
    assert np.isnan(x[0, 100])  # the caller's array is untouched


def test_preprocess_band_pass_removes_drift_and_keeps_the_ecg_band():
    x = sine(500) + 2.0 + np.linspace(0, 1, 5000)  # offset and a slow drift
    y = signal.preprocess(x, 500, Preprocess(band=(0.5, 40.0)))
    inner = slice(500, -500)
    np.testing.assert_allclose(y[:, inner], sine(500)[:, inner], atol=0.05 * AMPLITUDE)


def test_preprocess_band_pass_survives_a_short_record():
    assert signal.preprocess(np.ones((12, 5)), 500, Preprocess(band=(0.5, 40.0))).shape == (12, 5)


@pytest.mark.parametrize("band", [(40.0, 0.5), (0.0, 40.0), (0.5, 250.0)])
def test_preprocess_refuses_a_bad_band(band):
    with pytest.raises(ValueError, match="band"):
        signal.preprocess(sine(500), 500, Preprocess(band=band))


def test_pad_or_crop_pads_zeros_at_the_end():
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    y = signal.pad_or_crop(x, 20)
    assert y.shape == (2, 20) and y.dtype == x.dtype
    np.testing.assert_array_equal(y[:, :12], x)
    assert not y[:, 12:].any()


def test_pad_or_crop_crops_the_start_without_rng():
    x = np.arange(24).reshape(2, 12)
    np.testing.assert_array_equal(signal.pad_or_crop(x, 5), x[:, :5])
    np.testing.assert_array_equal(signal.pad_or_crop(x, 12), x)


def test_pad_or_crop_crops_at_random_with_rng():
    x = np.tile(np.arange(100), (2, 1))
    starts = set()
    for seed in range(50):
        y = signal.pad_or_crop(x, 30, rng=np.random.default_rng(seed))
        start = int(y[0, 0])
        np.testing.assert_array_equal(y, x[:, start : start + 30])
        starts.add(start)
    assert min(starts) >= 0 and max(starts) <= 70 and len(starts) > 10
    first = signal.pad_or_crop(x, 30, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(first, signal.pad_or_crop(x, 30, rng=np.random.default_rng(1)))


@pytest.mark.parametrize("n", [9000, 9001, 18000, 20000, 27001])
@pytest.mark.parametrize("hop", [None, 4500, 2999])
def test_windows_cover_every_sample(n, hop):
    x = np.arange(12 * n, dtype=np.float32).reshape(12, n)
    w = signal.windows(x, 9000, hop=hop)
    starts = signal.window_starts(n, 9000, hop)
    assert w.shape == (len(starts), 12, 9000)
    covered = np.zeros(n, dtype=bool)
    for window, start in zip(w, starts, strict=True):
        np.testing.assert_array_equal(window, x[:, start : start + 9000])
        covered[start : start + 9000] = True
    assert covered.all() and starts[-1] == n - 9000
    assert np.all(np.diff(starts) <= (hop or 9000))


def test_a_short_record_gives_one_padded_window():
    x = np.ones((12, 5000), dtype=np.float32)
    w = signal.windows(x, 9000)
    assert w.shape == (1, 12, 9000)
    assert w[0, :, :5000].all() and not w[0, :, 5000:].any()


def test_bad_window_arguments_are_refused():
    with pytest.raises(ValueError):
        signal.windows(np.ones((12, 100)), 0)
    with pytest.raises(ValueError):
        signal.windows(np.ones((12, 100)), 10, hop=0)
