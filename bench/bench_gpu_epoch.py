"""Seconds of one training epoch of the `paper` network, and the GPU's utilisation meanwhile.

    python -m bench.bench_gpu_epoch [--n 43101] [--data DIR] [--profile paper] [--batches N]

Writes N synthetic 10 s, 500 Hz records into DIR (default: a folder under the system's temporary
folder, kept and reused; 43,101 is the size of the 2020 training set), builds their
preprocessing cache, then runs one epoch of training exactly as `train.fit` does (the same
DataLoader, autocast and TF32 on CUDA), without the validation, and prints the epoch's seconds,
records/s and, on CUDA, the GPU utilisation `nvidia-smi` reports every 200 ms during the epoch.
`--batches` stops the epoch early (to try the script on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.benchmark import gpu_utilisation_sampler, synthetic_folder
from ecg_gcn import config, distributed, graph, nets, train
from ecg_gcn.cache import build_cache
from ecg_gcn.device import pick_device, precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=43_101, help="records (default 43101)")
    parser.add_argument("--data", type=Path, help="records folder (made and reused)")
    parser.add_argument("--profile", default="paper", choices=list(config.PROFILES))
    parser.add_argument("--batches", type=int, help="stop after this many batches")
    args = parser.parse_args()

    data = args.data or Path(tempfile.gettempdir()) / f"ecg_gcn_epoch_{args.n}"
    synthetic_folder(data, args.n, seed=43, prefix="G", fs=500, seconds=10.0)
    cache = build_cache(data, data.parent / f"{data.name}_cache")
    model_config, train_config = config.profile(args.profile)
    device = pick_device()
    autocast, scaler = precision(device, train_config.amp)
    torch.manual_seed(train_config.seed)
    model = nets.build_model(
        model_config, graph.adjacency(cache.labels, model_config.tau, model_config.p)
    ).to(device)
    step_model = torch.compile(model) if train_config.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(train_config.seed)
    loader = train.loader_for(
        cache, np.arange(len(cache)), train_config, distributed.Context(), device, generator
    )
    loader.sampler.set_epoch(1)

    sampler = gpu_utilisation_sampler() if device.type == "cuda" else None
    model.train()
    seen, start = 0, time.perf_counter()
    for batch, (x, y) in enumerate(loader, 1):
        loss = train.train_step(step_model, x, y, optimizer, scaler, autocast, loss_fn, device)
        seen += len(x)
        if args.batches and batch >= args.batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{args.profile} profile, {seen} records of {len(cache)} on {name}: {seconds:.1f} s, "
        f"{seen / seconds:,.0f} records/s (loss {loss.item():.4f})"
    )
    if sampler is not None:
        sampler.terminate()
        samples = [int(v) for v in sampler.communicate()[0].split() if v.strip().isdigit()]
        if samples:
            print(
                f"GPU utilisation over the epoch: mean {statistics.mean(samples):.0f} %, "
                f"median {statistics.median(samples):.0f} % ({len(samples)} samples)"
            )


if __name__ == "__main__":
    main()
