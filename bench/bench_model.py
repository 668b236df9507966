"""Training and inference speed of the network on this machine.

    python bench/bench_model.py [--profile paper] [--steps 5]

Prints, for the chosen profile's network: its parameters and forward GFLOP per 18 s window;
training records per second (Adam steps on batches of 18 s windows, after a warm-up step);
inference milliseconds per 10 s recording through the organisers' path (run_12ECG_classifier
on the raw ADC array and header lines) and per 18 s window, with the FLOP rate that implies.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.io import loadmat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from ecg_gcn import config, graph, nets, predict, synth
from ecg_gcn import labels as lbl


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=list(config.PROFILES))
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--records", type=int, default=20, help="timed inference records")
    args = parser.parse_args()

    model_config, train_config = config.profile(args.profile)
    window = 9000  # the paper's 18 s at 500 Hz, whatever the profile trains on
    rng = np.random.default_rng(0)
    labels = rng.random((500, lbl.NUM_CLASSES)) < 0.1
    model = nets.build_model(
        model_config, graph.adjacency(labels, model_config.tau, model_config.p)
    )
    print(
        f"profile {args.profile}: {nets.count_parameters(model):,} parameters, "
        f"{nets.forward_flops(model, window):.2f} GFLOP forward per 18 s window, "
        f"{torch.get_num_threads()} threads"
    )

    batch = train_config.batch_size
    x = torch.randn(batch, 12, window) * 0.3
    y = torch.from_numpy(labels[:batch].astype(np.float32))
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        model.train()
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    seconds = best_of(step, args.steps)
    print(f"training: {batch / seconds:.1f} records/s ({seconds:.2f} s per batch of {batch})")

    with tempfile.TemporaryDirectory() as tmp:
        names = synth.generate(tmp, args.records, seed=1, fs=500, seconds=10.0)
        predictor = predict.Predictor(
            model.eval(), model_config, np.full(lbl.NUM_CLASSES, 0.5), window, torch.device("cpu")
        )
        inputs = []
        for name in names:
            data = np.asarray(loadmat(Path(tmp) / f"{name}.mat")["val"], dtype=np.float64)
            inputs.append((data, (Path(tmp) / f"{name}.hea").read_text().splitlines(True)))
        predict.classify(*inputs[0], predictor)  # warm-up
        start = time.perf_counter()
        for data, header in inputs:
            predict.classify(data, header, predictor)
        per_record = (time.perf_counter() - start) / len(inputs)
    one = torch.randn(1, 12, window)
    with torch.inference_mode():
        per_window = best_of(lambda: model(one), 5)
    gflop = nets.forward_flops(model, window)
    print(
        f"inference: {per_record * 1e3:.1f} ms per 10 s record (padded to one 18 s window), "
        f"{per_window * 1e3:.1f} ms per 18 s window = {gflop / per_window:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
