"""Training with several processes: torchrun, gloo on the CPU, one model written by rank 0."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from scipy.io import loadmat

from ecg_gcn import checkpoint, config, distributed, predict, records, synth
from ecg_gcn import labels as lbl
from run_12ECG_classifier import load_12ECG_model, run_12ECG_classifier

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "environ", [{}, {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}], ids=["plain", "one"]
)
def test_without_several_processes_nothing_is_initialised(environ):
    with distributed.process_group(CPU, environ=environ) as (context, device):
        assert context == distributed.Context(rank=0, local_rank=0, world_size=1)
        assert context.is_main and not context.distributed
        assert device == CPU
        assert not dist.is_initialized()
        assert distributed.broadcast("rank 0's", context) == "rank 0's"
        assert distributed.all_gather(3, context) == [3]
        assert distributed.in_turn(lambda: 7, context) == 7
        model = torch.nn.Linear(2, 2)
        assert distributed.wrap(model, context, device) is model
    assert not dist.is_initialized()
    assert distributed.is_main_process(environ)


def test_a_partial_torchrun_environment_is_a_clear_error():
    with pytest.raises(ValueError, match=r"RANK.*torchrun"):
        distributed.from_env({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="out of range"):
        distributed.from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    assert distributed.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == (
        distributed.Context(rank=3, local_rank=1, world_size=4)
    )


def test_two_processes_train_one_model_that_loads_and_predicts(tmp_path):
    data, model = tmp_path / "data", tmp_path / "model"
    synth.generate(data, 24, seed=31, seconds=8.0)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "train_model.py", str(data), str(model),
    ]  # fmt: skip
    env = {
        **os.environ,
        "ECG_GCN_PROFILE": "smoke",
        "ECG_GCN_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log

    # Each process trained on its own half of the training records, a batch of 8 at a time.
    with open(model / checkpoint.SPLIT_FILE) as f:
        n_train = sum(row["part"] == "train" for row in csv.DictReader(f))
    share = math.ceil(n_train / 2)
    batches = math.ceil(share / config.profile("smoke")[1].batch_size)
    for rank in (0, 1):
        assert f"rank {rank} of 2: {share} training windows per epoch in {batches} batches" in log
    # Averaged gradients kept the two copies of the model identical.
    assert "the 2 processes ended with the same parameters" in log
    with open(model / checkpoint.HISTORY_FILE) as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]
    assert not (model / checkpoint.STATE_FILE).exists()

    # The checkpoint holds the plain model: it loads and classifies without torchrun.
    state = torch.load(model / checkpoint.CHECKPOINT_FILE, weights_only=True)
    assert not any(key.startswith("module.") for key in state["state_dict"])
    assert predict.load(model, device=CPU).preprocess == config.profile("smoke")[1].preprocess
    name = records.find_records(data)[0]
    signal = np.asarray(loadmat(data / f"{name}.mat")["val"], dtype=np.float64)
    header = (data / f"{name}.hea").read_text().splitlines(keepends=True)
    labels, scores, classes = run_12ECG_classifier(signal, header, load_12ECG_model(model))
    assert classes == list(lbl.SCORED_CODES)
    assert set(labels) <= {0, 1} and 1 in labels
    assert all(0.0 <= s <= 1.0 for s in scores)
