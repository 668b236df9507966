"""Training survives interruption, the same seed gives the same model, nothing unsafe loads."""

from __future__ import annotations

import csv
import errno
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg_gcn import checkpoint, config, graph, nets, predict, records, synth, train
from ecg_gcn import signal as sig

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    synth.generate(folder, 24, seed=21, seconds=8.0)
    return folder


def first_signal(data: Path) -> np.ndarray:
    name = records.find_records(data)[0]
    record = records.load_record(data / f"{name}.hea")
    return sig.preprocess(record.signal, record.fs)


def test_the_same_seed_gives_the_same_weights_and_outputs(data, tmp_path):
    model_config, train_config = config.profile("smoke")
    runs = []
    for run in ("a", "b"):
        summary = train.train(
            data, tmp_path / run, model_config, train_config,
            cache_dir=tmp_path / f"cache-{run}", device=CPU, progress=False,
        )  # fmt: skip
        runs.append(summary["predictor"])
    first, second = (r.model.state_dict() for r in runs)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    x = first_signal(data)
    np.testing.assert_array_equal(runs[0].probabilities(x), runs[1].probabilities(x))
    np.testing.assert_array_equal(runs[0].thresholds, runs[1].thresholds)


def _saved_checkpoint(tmp_path: Path) -> Path:
    model_config, train_config = config.profile("smoke")
    labels = np.eye(24, dtype=bool)
    model = nets.build_model(model_config, graph.adjacency(labels, 0.4, 0.25))
    path = tmp_path / checkpoint.CHECKPOINT_FILE
    checkpoint.save(path, model, model_config, train_config, np.full(24, 0.5))
    return path


class Payload:
    """Stands for any object a hostile checkpoint could smuggle in to run code on load."""


def test_a_checkpoint_carrying_a_pickled_object_is_refused(tmp_path):
    path = _saved_checkpoint(tmp_path)
    assert predict.load(tmp_path, device=CPU).preprocess.window == 5000  # the plain one loads
    state = torch.load(path, weights_only=True)
    state["extra"] = Payload()
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"model\.pt: refused"):
        predict.load(tmp_path, device=CPU)


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    _saved_checkpoint(tmp_path).write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"model\.pt: not a loadable checkpoint"):
        predict.load(tmp_path, device=CPU)


def _set(*keys, value):
    def change(state):
        inner = state
        for key in keys[:-1]:
            inner = inner[key]
        inner[keys[-1]] = value

    return change


def _drop(key):
    return lambda state: state.pop(key)


def _drop_from(key, field):
    return lambda state: state[key].pop(field)


def _wider_gru(state):
    state["model_config"]["gru_hidden"] *= 2


BROKEN = {
    # change to the saved state: words the error must contain
    "thresholds_short": (_set("thresholds", value=torch.full((23,), 0.5)), "thresholds"),
    "thresholds_above_one": (_set("thresholds", value=torch.full((24,), 2.0)), "thresholds"),
    "window_zero": (
        _set("preprocessing", "window_seconds", value=0),
        "preprocessing.window_seconds",
    ),
    "no_rate": (_drop_from("preprocessing", "fs"), "preprocessing must hold exactly"),
    "band_reversed": (_set("preprocessing", "band", value=[40.0, 0.5]), "preprocessing.band"),
    "no_thresholds": (_drop("thresholds"), "lacks thresholds"),
    "no_state_dict": (_drop("state_dict"), "lacks state_dict"),
    "config_and_weights_differ": (_wider_gru, "do not match the model_config"),
    "unknown_head": (_set("model_config", "head", value="mlp"), "model_config"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_loadable_but_broken_checkpoint_is_refused_naming_the_field(tmp_path, name):
    change, words = BROKEN[name]
    path = _saved_checkpoint(tmp_path)
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    with pytest.raises(ValueError, match="model.pt: .*" + re.escape(words)):
        predict.load(tmp_path, device=CPU)


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty, truncated or damaged"), (b"PK\x03\x04 half a zip", "damaged")],
)
def test_an_empty_or_truncated_checkpoint_is_one_clear_line(tmp_path, content, words):
    _saved_checkpoint(tmp_path).write_bytes(content)
    with pytest.raises(ValueError, match=words) as caught:
        predict.load(tmp_path, device=CPU)
    assert "\n" not in str(caught.value)


def test_a_refused_pickle_does_not_suggest_loading_it_unsafely(tmp_path):
    path = _saved_checkpoint(tmp_path)
    state = torch.load(path, weights_only=True)
    state["extra"] = Payload()
    torch.save(state, path)
    with pytest.raises(ValueError, match="refused") as caught:
        predict.load(tmp_path, device=CPU)
    assert "weights_only" not in str(caught.value)


TRAIN_SCRIPT = """
import sys
import torch
from ecg_gcn import config, train
model_config, _ = config.profile("smoke")
train_config = config.TrainConfig(max_epochs=5, batch_size=8, num_workers=0,
                                  preprocess={"window_seconds": 10.0},
                                  early_stop_patience=10, synthetic=0, members=1)
train.train(sys.argv[1], sys.argv[2], model_config, train_config, cache_dir=sys.argv[3],
            device=torch.device("cpu"), progress=False)
"""


def test_training_killed_mid_way_resumes_and_the_model_loads(data, tmp_path, caplog):
    model_dir, cache = tmp_path / "model", tmp_path / "cache"
    command = [sys.executable, "-c", TRAIN_SCRIPT, str(data), str(model_dir), str(cache)]
    process = subprocess.Popen(command, cwd=ROOT)
    state = model_dir / checkpoint.STATE_FILE
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state.exists(), "the training ended before it could be interrupted"
    # Killed mid-training: the model folder holds a whole model, never half of one.
    predict.load(model_dir, device=CPU)
    done = torch.load(state, weights_only=True)["epoch"]
    assert done < 5

    model_config, _ = config.profile("smoke")
    train_config = config.TrainConfig(
        max_epochs=5,
        batch_size=8,
        preprocess={"window_seconds": 10.0},
        num_workers=0,
        early_stop_patience=10,
        synthetic=0,
        members=1,
    )
    with caplog.at_level(logging.WARNING):
        summary = train.train(
            data, model_dir, model_config, train_config, cache_dir=cache, device=CPU,
            progress=False,
        )  # fmt: skip
    assert f"resuming after epoch {done}" in caplog.text
    with open(model_dir / checkpoint.HISTORY_FILE) as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [1, 2, 3, 4, 5]
    assert not state.exists()
    loaded = predict.load(model_dir, device=CPU)
    x = first_signal(data)
    np.testing.assert_array_equal(loaded.probabilities(x), summary["predictor"].probabilities(x))


def test_a_state_from_another_training_is_not_resumed(data, tmp_path, caplog):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    torch.save({"signature": "another training", "epoch": 3}, model_dir / checkpoint.STATE_FILE)
    with caplog.at_level(logging.WARNING):
        train.train(
            data, model_dir, *config.profile("smoke"), cache_dir=tmp_path / "cache", device=CPU,
            progress=False,
        )  # fmt: skip
    assert "saved by another training" in caplog.text
    with open(model_dir / checkpoint.HISTORY_FILE) as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]


def test_training_on_nothing_usable_stops_with_a_clear_message(data, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in records.find_records(data)[:2]:
        (folder / f"{name}.hea").write_bytes((data / f"{name}.hea").read_bytes())
        (folder / f"{name}.mat").write_bytes(b"truncated")
    command = [sys.executable, "train_model.py", str(folder), str(tmp_path / "model")]
    env = {"ECG_GCN_PROFILE": "smoke", "ECG_GCN_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}
    )
    assert done.returncode != 0
    assert "none of the recordings could be read" in done.stderr
    with open(tmp_path / "model" / checkpoint.SKIPPED_FILE) as f:
        skipped = list(csv.DictReader(f))
    assert len(skipped) == 2 and all(".mat" in row["reason"] for row in skipped)


@pytest.mark.parametrize("dx", ["#Dx: 164865005,164884008", "#Age: 50"])  # unscored only; none
def test_training_on_recordings_without_a_scored_label_stops(data, tmp_path, dx):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for name in records.find_records(data)[:3]:
        lines = (data / f"{name}.hea").read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("#Dx")]
        (folder / f"{name}.hea").write_text("".join(kept) + dx + "\n")
        (folder / f"{name}.mat").write_bytes((data / f"{name}.mat").read_bytes())
    command = [sys.executable, "train_model.py", str(folder), str(tmp_path / "model")]
    env = {"ECG_GCN_PROFILE": "smoke", "ECG_GCN_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}
    )
    assert done.returncode != 0
    assert "none of the 3 readable recordings has a scored diagnosis" in done.stderr
    assert not (tmp_path / "model" / "model.pt").exists()


def _run(script: str, *args: Path | str, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, script, *map(str, args)]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}
    )


def _one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(word in last for word in words), done.stderr


def test_driver_problems_with_its_folders_are_one_line_each(smoke_model_dir, data, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _one_line_error(_run("driver.py", smoke_model_dir, data, a_file), str(a_file))
    missing_parent = tmp_path / "no" / "out"
    _one_line_error(_run("driver.py", smoke_model_dir, data, missing_parent), str(missing_parent))
    _one_line_error(_run("driver.py", a_file, data, tmp_path / "o1"), str(a_file), "is a file")
    no_model = tmp_path / "no_model"
    _one_line_error(_run("driver.py", no_model, data, tmp_path / "o2"), str(no_model))
    (tmp_path / "empty_model").mkdir()
    (tmp_path / "empty_model" / "model.pt").write_bytes(b"")
    _one_line_error(_run("driver.py", tmp_path / "empty_model", data, tmp_path / "o3"), "model.pt")


def test_training_problems_with_its_folders_are_one_line_each(data, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    smoke = {"ECG_GCN_PROFILE": "smoke"}
    done = _run("train_model.py", data, a_file, ECG_GCN_CACHE=str(tmp_path / "c"), **smoke)
    _one_line_error(done, str(a_file))
    unwritable = a_file / "cache"  # under a file: no folder can be made there
    done = _run("train_model.py", data, tmp_path / "m", ECG_GCN_CACHE=str(unwritable), **smoke)
    _one_line_error(done, str(unwritable), "ECG_GCN_CACHE")


def test_training_csvs_replace_a_planted_symlink_instead_of_following_it(data, tmp_path):
    model_dir, victim = tmp_path / "model", tmp_path / "victim.txt"
    model_dir.mkdir()
    victim.write_text("precious")
    for name in (checkpoint.HISTORY_FILE, checkpoint.SPLIT_FILE):
        (model_dir / name).symlink_to(victim)
    model_config, train_config = config.profile("smoke")
    train.train(
        data, model_dir, model_config, train_config, cache_dir=tmp_path / "c", progress=False
    )
    assert victim.read_text() == "precious"
    for name in (checkpoint.HISTORY_FILE, checkpoint.SPLIT_FILE):
        assert not (model_dir / name).is_symlink()
        assert (model_dir / name).read_text().startswith(("epoch", "record"))


# Running as root here, chmod cannot make a folder unwritable and no read-only mount can be
# made, so the operating system's refusal is injected where the driver meets it.
@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EROFS, errno.EACCES], ids=["disk_full", "read_only", "unwritable"]
)
def test_a_refused_write_stops_the_driver_with_one_line(
    smoke_model_dir, data, tmp_path, monkeypatch, code
):
    import driver  # the official-style script, imported to fail its writes from inside

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(driver, "write_output", refuse)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        driver.main(["driver.py", str(smoke_model_dir), str(data), str(out)])
    assert str(stopped.value) == f"error: cannot write into {out}: {os.strerror(code)}"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES], ids=["read_only", "unwritable"])
def test_a_parent_that_refuses_the_output_folder_is_one_line(
    smoke_model_dir, data, tmp_path, monkeypatch, code
):
    import driver

    def refuse(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(driver.os, "mkdir", refuse)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        driver.main(["driver.py", str(smoke_model_dir), str(data), str(out)])
    assert str(stopped.value) == f"error: cannot make the output folder {out}: {os.strerror(code)}"


def test_an_empty_data_folder_is_reported(smoke_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    done = _run("driver.py", smoke_model_dir, tmp_path / "empty", tmp_path / "out")
    assert done.returncode == 0
    assert f"No recording (.mat or .hea) found in {tmp_path / 'empty'}" in done.stdout
