"""Signal helpers: resampling to 500 Hz, the shared preprocessing, pad/crop and windows.

`Preprocess` holds the settings that make a record the network's input (the rate, the band-pass,
the window), and `preprocess` is the one function that applies them to a record's (12, n) mV
signal at its own rate. Training, the caches and inference all take the same object, and the
checkpoint stores it once, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from functools import lru_cache

import numpy as np
import scipy.signal

TARGET_FS = 500
# Bounds the polyphase filter (about 20 * max(up, down) taps); the rate error of the rational
# approximation is then below 1e-6, far under any real clock's accuracy.
MAX_RATIO_TERM = 1000
BANDPASS_ORDER = 2  # per direction; sosfiltfilt doubles it and keeps the phase


def resample(x: np.ndarray, fs: float, target: float = TARGET_FS) -> np.ndarray:
    """Resample along the last axis from `fs` to `target` Hz with a polyphase filter.

    The output has round(n * target / fs) samples. At `fs == target` the input is returned as it
    is (no copy).
    """
    for name, rate in (("fs", fs), ("target", target)):
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"{name} must be a positive finite rate in Hz, got {rate!r}")
    x = np.asarray(x)
    if fs == target:
        return x
    ratio = rational_ratio(fs, target)
    y = scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    return _fit_length(y, round(x.shape[-1] * target / fs))


def rational_ratio(fs: float, target: float = TARGET_FS) -> Fraction:
    """up/down with target/fs ≈ up/down, both terms at most MAX_RATIO_TERM (exact for 257 Hz,
    44100/k Hz and every integer rate up to 1000 Hz)."""
    ratio = Fraction(target) / Fraction(fs)
    approx = ratio.limit_denominator(MAX_RATIO_TERM)
    if approx == 0:  # a ratio below 1/MAX_RATIO_TERM: bound the inverse instead
        approx = 1 / (1 / ratio).limit_denominator(MAX_RATIO_TERM)
    return approx


def _fit_length(y: np.ndarray, length: int) -> np.ndarray:
    """resample_poly gives ceil(n * up / down) samples of an approximated ratio; trim or pad (by
    repeating the last sample) to the exact length."""
    if y.shape[-1] >= length:
        return y[..., :length]
    pad = [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])]
    return np.pad(y, pad, mode="edge")


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How every recording becomes the network's input, in training and inference alike:
    resampled to `fs` Hz, band-passed where `band` = (low, high) Hz is set (a zero-phase
    Butterworth), and seen through windows of `window_seconds` (training crops one at random,
    inference averages them all).

    The band-pass is off by default: it did not help on synthetic or real held-out records, and
    it blunts pacing spikes (BENCHMARKS.md, "Band-pass filter"). The augmentation of training
    batches is not here: inference never applies it (config.Augment)."""

    window_seconds: float = 18.0  # records are zero-padded / randomly cropped to 18 s
    band: tuple[float, float] | None = None
    fs: int = TARGET_FS

    def __post_init__(self) -> None:
        if isinstance(self.fs, bool) or not isinstance(self.fs, int) or self.fs <= 0:
            raise ValueError(f"fs must be a positive whole number of Hz, got {self.fs!r}")
        seconds = self.window_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"window_seconds must be > 0, got {seconds!r}")
        if self.window < 1:
            raise ValueError(f"window_seconds {seconds!r} is under one sample at {self.fs} Hz")
        if self.band is not None:  # JSON gives a list
            object.__setattr__(self, "band", checked_band(self.band, self.fs))

    @property
    def window(self) -> int:
        """The window in samples at `fs` (9000 for 18 s at 500 Hz)."""
        return round(self.window_seconds * self.fs)

    def to_dict(self) -> dict:
        return {
            "window_seconds": self.window_seconds,
            "band": list(self.band) if self.band else None,
            "fs": self.fs,
        }

    @classmethod
    def from_dict(cls, values: Mapping) -> Preprocess:
        """The settings of `to_dict` (a missing one takes its default); a ValueError names a
        field that is unknown or wrong."""
        unknown = sorted(set(values) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown preprocessing settings: {', '.join(unknown)}")
        return cls(**values)

    def cache_settings(self) -> dict:
        """What a cache of preprocessed records depends on (not the window: it cuts later)."""
        return {"fs": self.fs, "band": list(self.band) if self.band else None}


def preprocess(signal_mv: np.ndarray, fs: float, settings: Preprocess | None = None) -> np.ndarray:
    """A record's (leads, n) mV signal at `fs` -> (leads, round(n * settings.fs / fs)) float32.

    Non-finite samples become 0 (before resampling, so they cannot smear); then the record is
    resampled and, where `settings.band` is set, band-passed.
    """
    settings = settings or Preprocess()
    x = np.asarray(signal_mv)
    if x.ndim != 2:
        raise ValueError(f"expected a (leads, samples) signal, got shape {x.shape}")
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    x = resample(x, fs, settings.fs)
    if settings.band is not None:
        x = bandpass(x, settings.band, settings.fs)
    return np.ascontiguousarray(x, dtype=np.float32)


def checked_band(band: Sequence[float], fs: float = TARGET_FS) -> tuple[float, float]:
    """A band-pass setting as (low, high) floats, or ValueError: 0 < low < high < Nyquist of
    the rate `fs` the network sees."""
    try:
        low, high = (float(f) for f in band)
    except (TypeError, ValueError):
        raise ValueError(f"band must be (low, high) in Hz, got {band!r}") from None
    if not 0 < low < high < fs / 2:
        raise ValueError(
            f"band must be (low, high) with 0 < low < high < {fs / 2:g} Hz, got {band!r}"
        )
    return low, high


def bandpass(x: np.ndarray, band: tuple[float, float], fs: float) -> np.ndarray:
    """Zero-phase Butterworth band-pass along the last axis."""
    sos = _butter_bandpass(float(band[0]), float(band[1]), float(fs))
    # scipy's default edge padding (a dozen samples) leaves a transient of about a second at each
    # end; one period of the low cut-off removes most of it. sosfiltfilt needs padlen < n.
    padlen = min(round(fs / band[0]), x.shape[-1] - 1)
    if padlen < 0:
        return x
    return scipy.signal.sosfiltfilt(sos, x, axis=-1, padlen=padlen)


@lru_cache(maxsize=16)
def _butter_bandpass(low: float, high: float, fs: float) -> np.ndarray:
    if not 0 < low < high < fs / 2:
        raise ValueError(f"the band must satisfy 0 < low < high < {fs / 2:g} Hz, got {low, high}")
    return scipy.signal.butter(BANDPASS_ORDER, (low, high), btype="bandpass", fs=fs, output="sos")


def pad_or_crop(
    x: np.ndarray, length: int, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Fit the last axis to `length`: zero-pad at the end, or crop (at a random start when `rng`
    is given, else from the start; a crop is a view)."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    x = np.asarray(x)
    n = x.shape[-1]
    if n < length:
        out = np.zeros((*x.shape[:-1], length), dtype=x.dtype)
        out[..., :n] = x
        return out
    start = int(rng.integers(0, n - length + 1)) if rng is not None else 0
    return x[..., start : start + length]


def window_starts(n: int, length: int, hop: int | None = None) -> np.ndarray:
    """Start indices of windows of `length` every `hop` (default: `length`) samples over n
    samples, plus one aligned to the end so that no sample is left out."""
    hop = length if hop is None else hop
    if length < 1 or hop < 1:
        raise ValueError(f"length and hop must be positive, got {length} and {hop}")
    if n <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n - length + 1, hop)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    return starts


def windows(x: np.ndarray, length: int, *, hop: int | None = None) -> np.ndarray:
    """(leads, n) -> (k, leads, length) windows covering every sample (see `window_starts`); a
    record shorter than `length` gives one zero-padded window."""
    x = np.asarray(x)
    starts = window_starts(x.shape[-1], length, hop)
    if x.shape[-1] < length:
        return pad_or_crop(x, length)[np.newaxis]
    view = np.lib.stride_tricks.sliding_window_view(x, length, axis=-1)  # (leads, n-len+1, len)
    return np.ascontiguousarray(view[..., starts, :].swapaxes(0, -2))  # (k, leads, len)
