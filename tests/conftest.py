"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg_gcn import config, graph, nets, predict, signal, synth, train
from ecg_gcn import labels as lbl


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


@pytest.fixture(scope="session")
def untrained_predictor() -> Callable[[signal.Preprocess], predict.Predictor]:
    """Makes a Predictor on the CPU around an untrained smoke-profile network (the same weights
    every time: seed 0), every threshold 0.5, with the given preprocessing settings."""

    def make(settings: signal.Preprocess) -> predict.Predictor:
        torch.manual_seed(0)
        model_config = config.profile("smoke")[0]
        labels = np.random.default_rng(0).random((200, lbl.NUM_CLASSES)) < 0.2
        model = nets.build_model(model_config, graph.adjacency(labels, 0.4, 0.25)).eval()
        thresholds = np.full(lbl.NUM_CLASSES, 0.5)
        return predict.Predictor(model, model_config, thresholds, settings, torch.device("cpu"))

    return make
