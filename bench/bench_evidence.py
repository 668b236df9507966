"""Does the evidence strip point at the right place? And how long does `explain` take?

The simulator knows where it put each ectopic beat. This makes records of sinus rhythm with
exactly one PVC (or one PAC) at a known time, and counts how often the peak of the class's
evidence strip lies within TOLERANCE_S of that beat's QRS, against the chance rate: the share
of the strip that lies that close to a true event. Both evidence methods of `ecg_gcn.explain`
are measured.

    python -m bench.bench_evidence demo/model [--records 100] [--seed 0]

The timing part renders a real recording from ../shared/real_sample (or a synthetic one where
that folder is absent), model load included, in this process and as the command a user types.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecg_gcn import ROOT, explain, predict, signal, synth
from ecg_gcn import labels as lbl

TOLERANCE_S = 0.15
EVENTS = {"PVC": (synth.PVC, "V"), "PAC": (synth.PAC, "A")}
REAL_SAMPLE = ROOT.parent / "shared" / "real_sample"


def single_event_records(
    code: str, kind: str, n: int, seconds: float, seed: int
) -> list[tuple[np.ndarray, float]]:
    """n records (12, samples at 500 Hz) of sinus rhythm with exactly one ectopic beat of
    `kind`, each with the time (s) of that beat: its QRS onset plus half the dominant QRS
    duration. Records with none or several are drawn and left out."""
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < n:
        x, info = synth.synthesize(rng, [synth.NSR, code], 500, seconds)
        kinds = info["beat_kinds"]
        if kinds.count(kind) != 1:
            continue
        onset = info["beat_onsets"][kinds.index(kind)]
        found.append((x, float(onset + info["qrs_ms"] / 2000)))
    return found


def chance(event: float, length_s: float) -> float:
    """The share of a strip of `length_s` seconds within TOLERANCE_S of the event."""
    return (min(length_s, event + TOLERANCE_S) - max(0.0, event - TOLERANCE_S)) / length_s


def measure(predictor: predict.Predictor, n: int, seed: int) -> list[dict]:
    settings = predictor.preprocess
    seconds = settings.window_seconds
    rows = []
    for name, (code, kind) in EVENTS.items():
        k = lbl.CLASSES.index(lbl.representative(code))
        records = single_event_records(code, kind, n, seconds, seed)
        hits = {method: [] for method in explain.METHODS}
        rates, positive = [], []
        for x, event in records:
            window = signal.windows(signal.preprocess(x, 500, settings), settings.window)[0]
            probability = predictor.probabilities(window)[k]
            positive.append(probability >= predictor.thresholds[k])
            for method in explain.METHODS:
                strip = explain.evidence(predictor, window, [k], method)[0]
                hits[method].append(abs(np.argmax(strip) / settings.fs - event) <= TOLERANCE_S)
            rates.append(chance(event, window.shape[-1] / settings.fs))
        for method in explain.METHODS:
            found = np.array(hits[method])
            rows.append(
                {
                    "class": name,
                    "method": method,
                    "records": len(records),
                    "peak within 150 ms": float(found.mean()),
                    "among those labelled": float(found[positive].mean())
                    if any(positive)
                    else None,
                    "labelled": int(np.sum(positive)),
                    "chance": float(np.mean(rates)),
                }
            )
    return rows


def timing(model_dir: str) -> dict:
    """Seconds to render one recording: in this process (model load, explanation, PNG) and as
    the command (Python start and imports as well)."""
    with tempfile.TemporaryDirectory() as tmp:
        record = REAL_SAMPLE / "A0001.hea"
        if not record.is_file():
            x, _ = synth.synthesize(np.random.default_rng(0), [synth.NSR], 500, 10.0)
            record = synth.write_record(tmp, "SYN00000", x, 500, [synth.NSR], 60, "Male")
        start = time.perf_counter()
        predictor = predict.load(model_dir, device=torch.device("cpu"))
        explain.write(predictor, record, Path(tmp) / "warm.png")
        in_process = time.perf_counter() - start
        start = time.perf_counter()
        command = [sys.executable, "-m", "ecg_gcn", "explain", model_dir, str(record)]
        subprocess.run([*command, "--out", str(Path(tmp) / "cold.png")], check=True, cwd=ROOT)
        return {
            "record": record.name,
            "in process": in_process,
            "command": time.perf_counter() - start,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a trained model folder (the demo's: demo/model)")
    parser.add_argument("--records", type=int, default=100, help="records per class (100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    predictor = predict.load(args.model_dir, device=torch.device("cpu"))
    print("| class | method | records | peak within 150 ms | among those labelled | chance |")
    print("|---|---|---:|---:|---:|---:|")
    for r in measure(predictor, args.records, args.seed):
        among = "-" if r["among those labelled"] is None else f"{r['among those labelled']:.0%}"
        print(
            f"| {r['class']} | {r['method']} | {r['records']} | {r['peak within 150 ms']:.0%} | "
            f"{among} ({r['labelled']}) | {r['chance']:.1%} |"
        )
    times = timing(args.model_dir)
    print(
        f"\nrendering {times['record']}: {times['in process']:.2f} s in process (model load "
        f"included), {times['command']:.2f} s as the command"
    )


if __name__ == "__main__":
    main()
