"""Training-time augmentation of ECG batches that imitates a change of hospital.

The 2020 Challenge was lost on hospitals the models never saw. Records of another hospital differ
in ways that say nothing about the heart: the amplitude calibration of the cart and the electrode
contact (a gain per record and per lead), the baseline wander of breathing and movement (slow
sinusoids), the mains frequency of the country (50 or 60 Hz hum), the electrode and amplifier noise
(white noise) and failed or unconnected leads (a lead of zeros). `augment_batch` draws these on a
float32 batch (B, 12, T) in mV at 500 Hz, on the batch's own device.

Nothing here warps time: sinus bradycardia and tachycardia, long QT and prolonged PR are defined
by the heart rate and the intervals, so stretching or resampling a record would change its labels.

Every random number comes from one CPU `torch.Generator`, so a seed gives the same batch on any
device. The zero-padded tail of a record (its last samples that are 0 in all leads) stays zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

LEADS = 12
MAINS_HZ = (50.0, 60.0)
WANDER_HZ = (0.05, 0.5)
WANDER_COMPONENTS = 3  # the third one is present with probability 1/2: 2-3 sinusoids per lead
LEAD_SCALE_SHARE = 0.25  # the per-lead gain spans a quarter of the per-record log-range


@dataclass(frozen=True)
class Augment:
    """Strengths of the hospital-change augmentation; all zero (the default) turns it off.

    scale: each record is multiplied by exp(U(-scale, scale)), all leads alike, and each lead
        by exp(U(-scale/4, scale/4)).
    wander: baseline wander, a sum of 2-3 sinusoids at 0.05-0.5 Hz with random phases per lead;
        its peak is at most U(0, wander) mV.
    mains: 50 or 60 Hz hum (chosen per record, the same in all leads), amplitude U(0, mains) mV
        and a random phase per lead.
    noise: white gaussian noise of std U(0, noise) mV, drawn per record.
    drop_lead: probability that a lead of a record is set to zeros (never all 12 of a record).
    probability: each record of the batch is augmented with this probability; the others pass
        unchanged.
    """

    scale: float = 0.0
    wander: float = 0.0
    mains: float = 0.0
    noise: float = 0.0
    drop_lead: float = 0.0
    probability: float = 0.5

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Augment.{item.name} must be a finite number >= 0, got {value!r}")
        if self.probability > 1:
            raise ValueError(f"Augment.probability must be in [0, 1], got {self.probability!r}")
        if self.drop_lead >= 1:
            raise ValueError(f"Augment.drop_lead must be below 1, got {self.drop_lead!r}")

    @property
    def active(self) -> bool:
        """Whether `augment_batch` can change anything."""
        strengths = (self.scale, self.wander, self.mains, self.noise, self.drop_lead)
        return self.probability > 0 and any(s > 0 for s in strengths)


def augment_batch(
    x: torch.Tensor,
    settings: Augment,
    generator: torch.Generator | None = None,
    fs: float = 500.0,
) -> torch.Tensor:
    """A new, augmented copy of the batch `x` (B, 12, T) in mV; `x` itself is not modified.

    Random numbers come from `generator` (a CPU generator; None: torch's global one), so a seed
    reproduces the output. When `settings` are not active, `x` itself is returned.
    """
    if not settings.active:
        return x
    if x.ndim != 3 or x.shape[1] != LEADS:
        raise ValueError(f"x must be a batch (B, {LEADS}, T), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point, got {x.dtype}")
    if not math.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs must be a positive finite rate in Hz, got {fs!r}")
    batch, _, length = x.shape
    draw = _Draw(generator, x)
    chosen = draw.uniform(batch, 1, 1) < settings.probability
    y = x * _gains(draw, batch, settings.scale) if settings.scale > 0 else x
    additive = _additive(draw, settings, batch, length, fs)
    if additive is not None:
        y = y + additive * _valid(x)
    if settings.drop_lead > 0:
        y = y * _kept_leads(draw, batch, settings.drop_lead)
    return torch.where(chosen, y, x)  # a new tensor even where nothing was chosen


class _Draw:
    """Random tensors drawn on the CPU from one generator, handed over on the batch's device."""

    def __init__(self, generator: torch.Generator | None, like: torch.Tensor) -> None:
        self.generator = generator
        self.device = like.device
        self.dtype = like.dtype

    def _out(self, values: torch.Tensor) -> torch.Tensor:
        return values.to(device=self.device, dtype=self.dtype)

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        values = torch.rand(shape, generator=self.generator)
        return self._out(low + (high - low) * values)

    def normal(self, *shape: int) -> torch.Tensor:
        return self._out(torch.randn(shape, generator=self.generator))

    def integers(self, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(high, shape, generator=self.generator).to(self.device)


def _gains(draw: _Draw, batch: int, scale: float) -> torch.Tensor:
    """exp(U(-scale, scale)) per record times exp(U(-scale/4, scale/4)) per lead: (B, 12, 1)."""
    record = draw.uniform(batch, 1, 1, low=-scale, high=scale)
    lead_scale = LEAD_SCALE_SHARE * scale
    lead = draw.uniform(batch, LEADS, 1, low=-lead_scale, high=lead_scale)
    return torch.exp(record + lead)


def _additive(
    draw: _Draw, settings: Augment, batch: int, length: int, fs: float
) -> torch.Tensor | None:
    """Wander, hum and noise summed (B, 12, T), or None when all three are off."""
    t = torch.arange(length, device=draw.device, dtype=draw.dtype) / fs
    parts = []
    if settings.wander > 0:
        parts.append(_wander(draw, batch, t, settings.wander))
    if settings.mains > 0:
        parts.append(_mains(draw, batch, t, settings.mains))
    if settings.noise > 0:
        parts.append(_noise(draw, batch, length, settings.noise))
    return sum(parts[1:], parts[0]) if parts else None


def _sinusoid(
    amplitude: torch.Tensor, hz: torch.Tensor, phase: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """amplitude * sin(2 pi hz t + phase), parameters (B, 12, 1) broadcast against t (T,)."""
    cycles = torch.remainder(hz * t, 1.0)  # keeps the angle small, so float32 stays precise
    return amplitude * torch.sin(2 * math.pi * cycles + phase)


def _wander(draw: _Draw, batch: int, t: torch.Tensor, peak: float) -> torch.Tensor:
    """2-3 slow sinusoids per lead whose weights sum to 1, so the peak is at most U(0, peak)."""
    shape = (batch, LEADS, WANDER_COMPONENTS)
    weights = draw.uniform(*shape)
    weights[..., -1] *= draw.uniform(batch, LEADS) < 0.5
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    amplitude = draw.uniform(batch, LEADS, 1, high=peak)
    hz = draw.uniform(*shape, low=WANDER_HZ[0], high=WANDER_HZ[1])
    phase = draw.uniform(*shape, high=2 * math.pi)
    total = torch.zeros(batch, LEADS, t.numel(), device=t.device, dtype=t.dtype)
    for k in range(WANDER_COMPONENTS):
        component = (slice(None), slice(None), slice(k, k + 1))
        total += _sinusoid(amplitude * weights[component], hz[component], phase[component], t)
    return total


def _mains(draw: _Draw, batch: int, t: torch.Tensor, peak: float) -> torch.Tensor:
    """Hum at 50 or 60 Hz per record, amplitude U(0, peak) and phase drawn per lead."""
    choices = torch.tensor(MAINS_HZ, device=t.device, dtype=t.dtype)
    hz = choices[draw.integers(len(MAINS_HZ), batch)].view(batch, 1, 1)
    amplitude = draw.uniform(batch, LEADS, 1, high=peak)
    phase = draw.uniform(batch, LEADS, 1, high=2 * math.pi)
    return _sinusoid(amplitude, hz, phase, t)


def _noise(draw: _Draw, batch: int, length: int, peak: float) -> torch.Tensor:
    """White gaussian noise whose std is U(0, peak) per record."""
    std = draw.uniform(batch, 1, 1, high=peak)
    return std * draw.normal(batch, LEADS, length)


def _valid(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) 1 up to each record's last sample that is nonzero in any lead, 0 after it."""
    index = torch.arange(x.shape[-1], device=x.device)
    nonzero = (x != 0).any(dim=1)
    last = torch.where(nonzero, index, -1).amax(dim=-1, keepdim=True)
    return (index <= last).unsqueeze(1).to(x.dtype)


def _kept_leads(draw: _Draw, batch: int, drop: float) -> torch.Tensor:
    """(B, 12, 1) 0 for a dropped lead, else 1; a record that lost all 12 keeps one at random."""
    dropped = draw.uniform(batch, LEADS) < drop
    rescued = torch.nn.functional.one_hot(draw.integers(LEADS, batch), LEADS).bool()
    dropped &= ~(rescued & dropped.all(dim=1, keepdim=True))
    return (~dropped).unsqueeze(-1).to(draw.dtype)
