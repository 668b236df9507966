"""`bench/gpu_check.py` in its CPU mode: the GPU run's every section works before a GPU comes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_every_section_on_the_cpu_and_writes_its_figures(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "bench.gpu_check", str(out), "--tiny", "--work", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads((out / "gpu_check.json").read_text())
    assert list(figures) == [
        "machine",
        "data",
        "workers",
        "epoch",
        "precision",
        "nccl",
        "inference",
    ]
    errors = {name: s["error"] for name, s in figures.items() if "error" in s}
    assert not errors, errors
    assert figures["data"]["records"] == 48
    assert figures["epoch"]["records"] > 0 and figures["epoch"]["records_per_s"] > 0
    assert 0 <= figures["epoch"]["data_wait_share"] <= 1
    nccl = figures["nccl"]
    assert nccl["torchrun_train_rc"] == 0 and nccl["driver_rc"] == 0
    assert nccl["driver_outputs"] == nccl["recordings"] > 0  # the torchrun model was used
    inference = figures["inference"]
    assert inference["outputs"] == inference["recordings"] == 6
    assert inference["ms_per_recording"] > 0
    table = (out / "gpu_check.md").read_text()
    assert "| epoch | records_per_s |" in table and "| inference | ms_per_recording |" in table
