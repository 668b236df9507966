"""Does a model score recordings resampled to another rate as it scores them at their own?

An acceptance check on a new hospital's recordings may score them twice: at their own rate
and resampled to 300 Hz. This reads every record of DATA, answers each with MODEL as read and
again after resampling it to RATE (`signal.resample`, the entry's own polyphase resampler;
the entry then brings both to its own rate as always), and prints per database (by record
name) and for all: the challenge metric of both readings, and how far a probability moved.

    python -m bench.bench_rate MODEL DATA [--rate 300]

Run it with a model that never saw DATA (a fold model of `cv --by-source`, say) to read the
two columns of such a check side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ecg_gcn import labels as lbl
from ecg_gcn import predict, records, scoring, signal


def measure(
    predictor: predict.Predictor, recordings: list[records.Record], rate: float
) -> list[dict]:
    """One row per database and one for all: records, the challenge metric as read and at
    `rate`, and the mean and largest change of a probability."""
    settings = predictor.preprocess
    native_x = [signal.preprocess(r.signal, r.fs, settings) for r in recordings]
    moved_x = [
        signal.preprocess(signal.resample(r.signal, r.fs, rate), rate, settings) for r in recordings
    ]
    native = predictor.probabilities_many(native_x)
    moved = predictor.probabilities_many(moved_x)
    native_measured, moved_measured = predictor.measured(native_x), predictor.measured(moved_x)
    truth = np.stack([r.labels for r in recordings])
    sources = np.array([lbl.source_of(r.name) for r in recordings])
    native_decided = predictor.decide(native, native_measured)
    moved_decided = predictor.decide(moved, moved_measured)
    rows = []
    for name in [*sorted(set(sources)), "all"]:
        m = np.ones(len(recordings), bool) if name == "all" else sources == name
        change = np.abs(native[m] - moved[m])
        rows.append(
            {
                "database": name,
                "records": int(m.sum()),
                "native": scoring.challenge_metric(truth[m], native_decided[m]),
                "resampled": scoring.challenge_metric(truth[m], moved_decided[m]),
                "mean change": float(change.mean()),
                "largest change": float(change.max()),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a trained model folder")
    parser.add_argument("data_dir", help="a folder of WFDB records (.hea + .mat)")
    parser.add_argument("--rate", type=float, default=300.0, help="Hz to resample to (300)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    predictor = predict.load(args.model_dir, device=torch.device("cpu"))
    folder = Path(args.data_dir)
    recordings = [records.load_record(folder / name) for name in records.find_records(folder)]
    print(f"| database | records | as read | at {args.rate:g} Hz | mean change | largest |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in measure(predictor, recordings, args.rate):
        print(
            f"| {r['database']} | {r['records']} | {r['native']:.3f} | {r['resampled']:.3f} | "
            f"{r['mean change']:.4f} | {r['largest change']:.2f} |"
        )


if __name__ == "__main__":
    main()
