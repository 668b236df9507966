"""Training and inference speed of one profile's network on this machine.

    python -m bench.bench_model [--profile paper] [--steps 3] [--records 20]

Prints, for the chosen profile's network: its parameters and forward GFLOP per 18 s window;
training records per second (Adam steps on batches of the profile's windows, after a warm-up
step); inference milliseconds per 10 s recording through the organisers' path (reading the
.mat file and header, then run_12ECG_classifier), with the share of the machine's float32
matrix-multiply rate that implies. `python -m bench.benchmark` gives the whole table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bench.benchmark import (
    cpu_predictor,
    driver_seconds,
    matmul_rate,
    random_model,
    training_rate,
)
from ecg_gcn import config, nets, synth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=list(config.PROFILES))
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--records", type=int, default=20, help="timed inference records")
    args = parser.parse_args()

    model_config, train_config = config.profile(args.profile)
    window = train_config.preprocess.window
    model = random_model(model_config)
    gflop = nets.forward_flops(model, window)
    print(
        f"profile {args.profile}: {nets.count_parameters(model):,} parameters, "
        f"{gflop:.2f} GFLOP forward per {train_config.preprocess.window_seconds:g} s window, "
        f"{torch.get_num_threads()} threads"
    )
    rate = training_rate(model, train_config.batch_size, window, args.steps)
    print(f"training: {rate:.1f} records/s (batches of {train_config.batch_size})")

    predictor = cpu_predictor(model, model_config, train_config)
    with tempfile.TemporaryDirectory() as tmp:
        names = synth.generate(tmp, args.records, seed=1, fs=500, seconds=10.0)
        ms = driver_seconds(predictor, Path(tmp), names) * 1e3
    gemm = matmul_rate()
    print(
        f"inference: {ms:.1f} ms per 10 s record (one window) = {gflop / ms * 1e3:.0f} GFLOP/s, "
        f"{gflop / ms * 1e3 / gemm:.0%} of the {gemm:.0f} GFLOP/s matrix product"
    )


if __name__ == "__main__":
    main()
