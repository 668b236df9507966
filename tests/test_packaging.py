"""The image and the set-up files: what no Docker engine here can check by building."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def instructions(path: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile_keeps_the_organisers_lines_and_installs_the_requirements():
    lines = instructions(ROOT / "Dockerfile")
    assert lines[0].startswith("FROM ")
    base = lines[0].split()[1]
    assert ":" in base and not base.endswith(":latest"), "pin the base image"
    organisers = ["RUN mkdir /physionet", "COPY ./ /physionet", "WORKDIR /physionet"]
    start = lines.index(organisers[0])
    assert lines[start : start + 3] == organisers
    install = lines.index("RUN pip install -r requirements.txt")
    assert install > start + 2, "install from the copied repository"
    assert not any(line.startswith(("CMD", "ENTRYPOINT")) for line in lines)


def test_dockerfile_holds_no_secret_and_fetches_nothing_at_run_time():
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"(?i)(token|password|secret|api_key)\s*=", text)
    assert not re.search(r"(?i)\b(curl|wget)\b", text)


def test_requirements_pin_the_named_packages():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line}: pin an exact version"
            pins[name.lower()] = version
    assert pins["torch"] == "2.13.0"
    assert {"numpy", "scipy", "joblib", "wfdb"} <= set(pins)
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev
    assert "pytest" not in (ROOT / "requirements.txt").read_text()


def test_readme_gives_the_two_commands_first_then_the_official_usage():
    text = (ROOT / "README.md").read_text()
    demo, test = text.index("make demo"), text.index("make test")
    for later in ("docker build", "train_model.py", "driver.py", "evaluate_12ECG_score.py"):
        assert text.index(later) > max(demo, test), later


def test_model_folder_holds_no_code():
    tracked = [p for p in (ROOT / "model").iterdir() if p.name != "README.md"]
    assert not [p for p in tracked if p.suffix == ".py"]


def test_the_package_runs_from_any_folder(tmp_path):
    # installed into .venv in editable mode by the Makefile (make test, make demo)
    done = subprocess.run(
        [sys.executable, "-m", "ecg_gcn", "describe", "--profile", "smoke"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert done.returncode == 0, done.stderr
    assert "parameters" in done.stdout
