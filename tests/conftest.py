"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ecg_gcn import config, synth, train


@pytest.fixture(scope="session")
def smoke_model_dir(tmp_path_factory) -> Path:
    """A model folder trained with the smoke profile on 16 synthetic records (seconds)."""
    folder = tmp_path_factory.mktemp("smoke_model")
    synth.generate(folder / "train", 16, seed=1, seconds=8.0)
    train.train(
        folder / "train",
        folder / "model",
        *config.profile("smoke"),
        cache_dir=folder / "cache",
        device=torch.device("cpu"),
        progress=False,
    )
    return folder / "model"


@pytest.fixture(scope="session")
def small_records(tmp_path_factory) -> Path:
    """Eight short records (read only): six of 8 s at the synthetic mix of rates, two of 12 s
    at 257 Hz (HZ00000, HZ00001)."""
    folder = tmp_path_factory.mktemp("small_records")
    synth.generate(folder, 6, seed=3, seconds=8.0)
    synth.generate(folder, 2, seed=4, prefix="HZ", fs=257, seconds=12.0)
    return folder
