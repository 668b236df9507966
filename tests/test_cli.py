"""The package's command line: python -m ecg_gcn VERB."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecg_gcn import config, graph, nets, records
from ecg_gcn.labels import NUM_CLASSES

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ecg_gcn", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_describe_prints_the_parameter_count_of_the_profile():
    done = cli("describe", "--profile", "smoke")
    assert done.returncode == 0, done.stderr
    model_config, _ = config.profile("smoke")
    adjacency = graph.adjacency(np.eye(NUM_CLASSES, dtype=bool), model_config.tau, model_config.p)
    expected = nets.count_parameters(nets.build_model(model_config, adjacency))
    assert f"parameters: {expected:,}" in done.stdout
    assert re.search(r"forward: \d+\.\d+ GFLOP per 10 s window", done.stdout)


def test_synth_writes_readable_records(tmp_path):
    done = cli("synth", str(tmp_path / "out"), "--n", "3", "--seed", "5", "--fs", "257")
    assert done.returncode == 0, done.stderr
    names = records.find_records(tmp_path / "out")
    assert len(names) == 3
    assert {records.load_record(tmp_path / "out" / f"{n}.hea").fs for n in names} == {257.0}


@pytest.mark.parametrize(
    "verb, option, value",
    [("describe", "--profile", "fast"), ("describe", "--variant", "resnet_gcn")],
)
def test_an_unknown_profile_or_variant_is_a_usage_error_listing_the_choices(verb, option, value):
    from ecg_gcn import config

    done = cli(verb, option, value)
    assert done.returncode == 2 and "invalid choice" in done.stderr
    known = config.PROFILES if option == "--profile" else config.VARIANTS
    assert all(name in done.stderr for name in known)


def test_an_unknown_verb_is_a_usage_error():
    done = cli("train-everything")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


@pytest.mark.parametrize(
    "option, value",
    [("--n", "-3"), ("--fs", "-5"), ("--fs", "0"), ("--seconds", "0"), ("--seconds", "0.001"),
     ("--prefix", "../x")],
)  # fmt: skip
def test_synth_refuses_values_outside_the_bounds_with_a_usage_error(tmp_path, option, value):
    done = cli("synth", str(tmp_path / "out"), "--n", "2", option, value)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"argument {option}:" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.hea").exists()


def test_cv_offers_the_protocols_models_and_refuses_others():
    done = cli("cv", "data", "--by-source", "--models", "default", "paper")
    assert done.returncode == 2 and "invalid choice: 'paper'" in done.stderr
    assert all(f"'{name}'" in done.stderr for name in config.PROTOCOL_MODELS)


def test_cv_trains_only_the_models_asked_for(tmp_path, monkeypatch):
    from ecg_gcn import __main__, hospitals
    from ecg_gcn import cache as preprocessing

    asked = {}

    def run(cache, out, model_config, train_config, **options):
        asked.update(options)
        return [], []

    monkeypatch.setattr(preprocessing, "build_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(hospitals, "run", run)
    monkeypatch.setattr(hospitals, "summary", lambda rows: "")
    argv = ["cv", "data", "--by-source", "--train-on", "CPSC", "--seeds", "5", "6"]
    __main__.main([*argv, "--models", "synthetic only", "--out", str(tmp_path / "a")])
    assert asked["models"] == ("synthetic only",) and asked["seeds"] == [5, 6]
    assert asked["protocols"] == (None, ["CPSC"])
    __main__.main([*argv, "--out", str(tmp_path / "b")])
    assert asked["models"] == hospitals.TRAINED
