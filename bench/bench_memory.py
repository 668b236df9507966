"""Peak resident memory of training on many records (the issue's 20,000).

    python -m bench.bench_memory [--data DIR] [--n 20000] [--profile quick] [--epochs 1]
                                 [--seconds LIMIT]

Writes N synthetic records into DIR (default: a folder under the system's temporary folder,
kept and reused), then trains on them in this process with the chosen profile for --epochs
epochs: preprocessing cache, stratified split, label graph, DataLoader epochs and the streamed
validation. The kernel's high-water mark of this process's resident memory (VmHWM) is printed at
the end, and a thread samples every 0.5 s the proportional set size (PSS: shared pages split
among their sharers) summed over this process and its children, the DataLoader workers and the
cache's workers: the memory the whole training holds. With --seconds the run stops there and reports
what it reached (the `paper` network's epoch over 18,000 records takes about half an hour on
2 cores). The cache's worker processes are short-lived and reported separately.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.benchmark import synthetic_folder
from ecg_gcn import config, train


def status_kib(field: str, pid: str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def tree(pid: str) -> list[str]:
    """`pid` and all its descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += tree(child)
    return found


def tree_pss_kib() -> int:
    """PSS summed over this process and its descendants (those that vanish meanwhile: 0)."""
    total = 0
    for pid in tree(str(os.getpid())):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


PEAK_PSS = [0]


def report(started: float, phase: str) -> None:
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        f"\n{phase} after {time.perf_counter() - started:.0f} s: "
        f"this process's peak resident memory (VmHWM) {status_kib('VmHWM') / 1024:,.0f} MiB; "
        f"peak PSS of it and its children {PEAK_PSS[0] / 1024:,.0f} MiB; "
        f"largest finished child {children / 1024:,.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="records folder (made and reused)")
    parser.add_argument("--n", type=int, default=20_000, help="records (default 20000)")
    parser.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    parser.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    parser.add_argument("--seconds", type=float, help="stop after this long and report")
    args = parser.parse_args()

    data = args.data or Path(tempfile.gettempdir()) / f"ecg_gcn_memory_{args.n}"
    synthetic_folder(data, args.n, seed=20_000, prefix="M")
    model_config, train_config = config.profile(args.profile)
    train_config = dataclasses.replace(train_config, max_epochs=args.epochs)

    started = time.perf_counter()

    def watch() -> None:
        while True:
            PEAK_PSS[0] = max(PEAK_PSS[0], tree_pss_kib())
            if args.seconds and time.perf_counter() - started > args.seconds:
                report(started, f"stopped ({args.profile} profile, {args.n} records)")
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        train.train(
            data,
            Path(tmp) / "model",
            model_config,
            train_config,
            cache_dir=Path(tmp) / "cache",
            device=torch.device("cpu"),
        )
    report(started, f"trained ({args.profile} profile, {args.n} records, {args.epochs} epochs)")


if __name__ == "__main__":
    main()
