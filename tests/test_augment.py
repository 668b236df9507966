"""Hospital-change augmentation of ECG batches."""

from __future__ import annotations

import math

import pytest
import torch

from ecg_gcn.augment import Augment, augment_batch

FS = 500.0
ALL = Augment(scale=0.3, wander=0.5, mains=0.2, noise=0.05, drop_lead=0.2, probability=1.0)


def batch(records: int = 8, seconds: float = 10.0, seed: int = 0) -> torch.Tensor:
    """Random nonzero signals (B, 12, T) in mV."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(records, 12, round(seconds * FS), generator=generator)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def added(settings: Augment, records: int = 16, seconds: float = 10.0, seed: int = 0):
    """The part `augment_batch` added to a small random batch: (x, y - x)."""
    x = 0.01 * batch(records, seconds)
    y = augment_batch(x, settings, seeded(seed), fs=FS)
    return x, y - x


@pytest.mark.parametrize(
    "settings",
    [Augment(), Augment(scale=0.5, noise=0.1, probability=0.0), Augment(probability=1.0)],
)
def test_inactive_settings_return_the_input_itself(settings):
    assert not settings.active
    x = batch(2)
    assert augment_batch(x, settings, seeded()) is x


def test_active():
    assert Augment(mains=0.1).active
    assert Augment(drop_lead=0.1).active
    assert not Augment(scale=0.1, probability=0.0).active


def test_shape_dtype_device_kept_and_input_untouched():
    x = batch(4)
    before = x.clone()
    y = augment_batch(x, ALL, seeded())
    assert y is not x
    assert (y.shape, y.dtype, y.device) == (x.shape, x.dtype, x.device)
    assert torch.equal(x, before)
    assert not torch.equal(y, x)


def test_a_seed_reproduces_the_output_and_another_seed_changes_it():
    x = batch(4)
    first = augment_batch(x, ALL, seeded(7))
    assert torch.equal(first, augment_batch(x, ALL, seeded(7)))
    assert not torch.equal(first, augment_batch(x, ALL, seeded(8)))


def test_scale_multiplies_each_record_and_each_lead_by_a_bounded_factor():
    scale = 0.4
    x = batch(64, seconds=2.0)
    y = augment_batch(x, Augment(scale=scale, probability=1.0), seeded())
    ratio = y / x
    factor = ratio[..., :1]  # (B, 12, 1): the gain of each lead of each record
    torch.testing.assert_close(ratio, factor.expand_as(ratio), rtol=1e-5, atol=0)
    assert factor.min() >= math.exp(-1.25 * scale) * (1 - 1e-6)
    assert factor.max() <= math.exp(1.25 * scale) * (1 + 1e-6)
    # Leads of one record share the record's factor: they differ only by the per-lead ones.
    log = factor.squeeze(-1).log()
    within = log.amax(dim=1) - log.amin(dim=1)
    assert within.max() <= 2 * scale / 4 + 1e-5
    assert within.min() > 0  # the per-lead factors are there
    record = log.mean(dim=1)
    assert record.max() - record.min() > scale  # and the per-record ones spread much wider


def test_probability_zero_leaves_the_batch_unchanged():
    x = batch(4)
    y = augment_batch(x, Augment(scale=0.5, noise=0.1, mains=0.1, probability=0.0), seeded())
    assert torch.equal(y, x)


def test_probability_augments_about_that_share_of_records_and_leaves_the_others_alone():
    x = batch(400, seconds=0.2)
    y = augment_batch(x, Augment(noise=0.1, probability=0.3), seeded())
    changed = (y != x).flatten(1).any(dim=1)
    assert 0.22 < changed.float().mean() < 0.38
    assert torch.equal(y[~changed], x[~changed])


def test_drop_lead_zeroes_about_that_share_of_leads_never_all_twelve():
    x = batch(2000, seconds=0.1)
    y = augment_batch(x, Augment(drop_lead=0.5, probability=1.0), seeded())
    zero = (y == 0).all(dim=-1)
    assert 0.47 < zero.float().mean() < 0.53
    assert not zero.all(dim=1).any()
    kept = ~zero
    assert torch.equal(y[kept], x[kept])  # the other leads pass as they are


def test_a_record_that_would_lose_all_twelve_leads_keeps_one():
    x = batch(500, seconds=0.1)
    y = augment_batch(x, Augment(drop_lead=0.95, probability=1.0), seeded())
    zero = (y == 0).all(dim=-1)
    assert not zero.all(dim=1).any()  # 0.95 ** 12: about 270 of 500 records lost all twelve
    assert (zero.sum(dim=1) == 11).float().mean() > 0.5


def spectrum(signal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Power along the last axis (Hann window, against leakage) and its frequencies in Hz."""
    window = torch.hann_window(signal.shape[-1], periodic=False, dtype=torch.float64)
    power = torch.fft.rfft(signal.double() * window, dim=-1).abs() ** 2
    return power, torch.fft.rfftfreq(signal.shape[-1], 1 / FS)


def test_mains_is_a_hum_at_50_or_60_hz_the_same_in_all_leads_of_a_record():
    mains = 0.2
    _, hum = added(Augment(mains=mains, probability=1.0), records=32)
    power, hz = spectrum(hum)
    peak = hz[power.argmax(dim=-1)]  # (B, 12)
    assert set(peak.unique().tolist()) == {50.0, 60.0}  # both occur in 32 records
    assert (peak == peak[:, :1]).all()
    assert hum.abs().max() <= mains + 1e-6
    assert (hum.abs().amax(dim=-1).std(dim=1) > 0).all()  # amplitudes differ between leads


def test_wander_is_slow_and_bounded():
    wander = 0.5
    _, drift = added(Augment(wander=wander, probability=1.0), seconds=30.0)
    power, hz = spectrum(drift)
    slow = power[..., hz < 1.0].sum(dim=-1) / power.sum(dim=-1)
    assert slow.min() > 0.999
    assert drift.abs().max() <= wander + 1e-6
    assert drift.abs().max() > wander / 10


def test_noise_is_white_with_a_std_up_to_the_setting():
    noise = 0.1
    _, hiss = added(Augment(noise=noise, probability=1.0), records=64)
    std = hiss.std(dim=(1, 2))
    assert std.max() <= 1.05 * noise
    assert std.max() - std.min() > noise / 2  # drawn per record
    power, hz = spectrum(hiss)
    power = power.sum(dim=(0, 1))
    low, high = power[(hz > 1) & (hz < 120)].mean(), power[hz > 130].mean()
    assert 0.9 < low / high < 1.1


def test_the_zero_padded_tail_stays_zero():
    x = batch(6, seconds=4.0)
    ends = [2000, 1500, 1999, 1, 0, 2000]
    for i, end in enumerate(ends):
        x[i, :, end:] = 0
    x[1, 5, 1400:1500] = 0  # one lead ending early does not shorten the record
    y = augment_batch(x, ALL, seeded())
    for i, end in enumerate(ends):
        assert (y[i, :, end:] == 0).all()
    assert (y[1, 5, 1400:1500] != 0).any() or (y[1, 5] == 0).all()  # unless the lead dropped
    assert (y[0, :, 1999] != x[0, :, 1999]).any()  # the last valid sample is still augmented


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scale", -0.1),
        ("wander", float("nan")),
        ("mains", float("inf")),
        ("noise", -1.0),
        ("drop_lead", 1.0),
        ("drop_lead", -0.5),
        ("probability", 1.5),
        ("probability", -0.1),
    ],
)
def test_invalid_settings_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"Augment\.{field}\b"):
        Augment(**{field: value})


def test_a_batch_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="12"):
        augment_batch(torch.zeros(2, 8, 100), ALL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_the_device_gives_what_the_cpu_gives():
    x = batch(4)
    cpu = augment_batch(x, ALL, seeded(3))
    gpu = augment_batch(x.cuda(), ALL, seeded(3))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
