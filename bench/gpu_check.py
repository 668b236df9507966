"""Every GPU check in one prepared run: the machine, the epoch, precision, NCCL, inference.

    python -m bench.gpu_check OUT [--records 43101] [--tiny] [--budget 450]

(from the repository root, with the package importable: installed, or the root on the path).

Writes OUT/gpu_check.json (every figure) and OUT/gpu_check.md (one table), section by section,
so that a run cut short still leaves what it measured. Each section that fails records its
error and the run goes on. Sections:

- machine: GPU, driver, torch, CUDA, bf16 support, cores;
- data: `--records` synthetic records with the Challenge's mix of rates and lengths (`synth`),
  made on every core, and their preprocessing cache;
- workers: records/s of the `paper` profile's training steps with each number of DataLoader
  workers, and the share of each step spent waiting for the batch;
- epoch: one whole epoch after a warm-up with the best worker count: seconds, records/s, GPU
  utilisation (`nvidia-smi`, every 200 ms), peak memory, time waiting for data;
- compile: records/s with `torch.compile` after its warm-up, and the epoch that rate implies;
- precision: the same weights in bf16 autocast and in float32 on `--check-records` records:
  the largest probability difference and the labels that flip at thresholds tuned on float32;
- nccl: an all-reduce over NCCL under torchrun, then `train_model.py` under
  `torchrun --nproc_per_node=1` (smoke profile) and `driver.py` using the model it wrote;
- inference: `driver.py` over `--infer-records` records, ms per recording.

`--tiny` runs the same code on the CPU in seconds (a few records, a few batches), as the test
suite does, so the script cannot rot before a GPU comes. BENCHMARKS.md, "GPU", has the command
that runs it on the lent machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from bench.benchmark import gpu_utilisation_sampler
from ecg_gcn import (
    checkpoint,
    config,
    distributed,
    graph,
    nets,
    predict,
    synth,
    thresholds,
    train,
)
from ecg_gcn.cache import Cache, build_cache
from ecg_gcn.device import pick_device, precision

ROOT = Path(__file__).resolve().parents[1]


class Report:
    """The figures so far, rewritten to OUT after every section."""

    def __init__(self, out: Path):
        self.out, self.sections, self.start = out, {}, time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run(self, name: str, check, *args) -> dict | None:
        began = time.perf_counter()
        try:
            result = check(*args)
        except Exception as error:  # one broken check must not hide the others' figures
            result = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
        result = {**(result or {}), "section_seconds": round(time.perf_counter() - began, 2)}
        self.sections[name] = result
        self.write()
        print(f"[{self.elapsed():6.1f} s] {name}: {_brief(result)}", flush=True)
        return result

    def write(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.sections, indent=2) + "\n")
        lines = ["| section | measure | value |", "|---|---|---|"]
        for name, figures in self.sections.items():
            for key, value in figures.items():
                if key != "trace":
                    lines.append(f"| {name} | {key} | {value} |")
        (self.out / "gpu_check.md").write_text("\n".join(lines) + "\n")


def _brief(result: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in result.items() if k != "trace")[:300]


def machine() -> dict:
    figures = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "device": str(pick_device()),
    }
    if torch.cuda.is_available():
        figures |= {
            "gpu": torch.cuda.get_device_name(0),
            "bf16": torch.cuda.is_bf16_supported(),
            "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
            "driver": _nvidia_smi("driver_version"),
        }
    return figures


def _nvidia_smi(query: str) -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def make_data(folder: Path, n: int, cores: int) -> tuple[dict, Cache]:
    start = time.perf_counter()
    synth.generate(folder / "records", n, seed=2020, n_jobs=cores)
    made = time.perf_counter() - start
    start = time.perf_counter()
    cache = build_cache(folder / "records", folder / "cache", n_jobs=cores, progress=False)
    return {
        "records": len(cache),
        "synth_seconds": round(made, 1),
        "cache_seconds": round(time.perf_counter() - start, 1),
        "hours_of_signal": round(float(cache.lengths.sum()) / 500 / 3600, 1),
    }, cache


class Trainer:
    """The `paper` profile's model, optimiser and step, as `train.fit` runs them."""

    def __init__(self, cache: Cache, profile: str, compiled: bool = False):
        self.cache = cache
        self.model_config, self.train_config = config.profile(profile)
        self.device = pick_device()
        self.autocast, self.scaler = precision(self.device, self.train_config.amp)
        torch.manual_seed(0)
        adjacency = graph.adjacency(cache.labels, self.model_config.tau, self.model_config.p)
        self.model = nets.build_model(self.model_config, adjacency).to(self.device)
        self.step_model = torch.compile(self.model) if compiled else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.train_config.lr)

    def loader(self, workers: int):
        train_config = dataclasses.replace(self.train_config, num_workers=workers)
        generator = torch.Generator().manual_seed(0)
        loader = train.loader_for(
            self.cache,
            np.arange(len(self.cache)),
            train_config,
            distributed.Context(),
            self.device,
            generator,
        )
        loader.sampler.set_epoch(1)
        return loader

    def steps(self, loader, batches: int | None, skip: int = 0) -> dict:
        """Train on the loader's batches (all, or `batches` after `skip` untimed ones)."""
        self.model.train()
        waited = seen = 0.0
        iterator = iter(loader)
        for _ in range(skip):
            self._step(*next(iterator))
        self._sync()
        start = time.perf_counter()
        done = 0
        while batches is None or done < batches:
            before = time.perf_counter()
            try:
                x, y = next(iterator)
            except StopIteration:
                break
            waited += time.perf_counter() - before
            self._step(x, y)
            seen += len(x)
            done += 1
        self._sync()
        seconds = time.perf_counter() - start
        return {
            "records": int(seen),
            "seconds": round(seconds, 2),
            "records_per_s": round(seen / seconds, 1) if seconds else None,
            "data_wait_share": round(waited / seconds, 3) if seconds else None,
        }

    def _step(self, x, y) -> None:
        loss = train.train_step(
            self.step_model,
            x,
            y,
            self.optimizer,
            self.scaler,
            self.autocast,
            train.masked_bce,
            self.device,
        )
        loss.item()  # as train's epoch loop does: one synchronisation per step

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def worker_sweep(trainer: Trainer, counts: list[int], batches: int) -> dict:
    figures = {}
    for workers in counts:
        result = trainer.steps(trainer.loader(workers), batches, skip=min(5, batches))
        figures[f"workers_{workers}_records_per_s"] = result["records_per_s"]
        figures[f"workers_{workers}_data_wait_share"] = result["data_wait_share"]
    best = max(counts, key=lambda w: figures[f"workers_{w}_records_per_s"] or 0)
    return figures | {"best_workers": best}


def epoch(trainer: Trainer, workers: int, batches: int | None) -> dict:
    sampler = gpu_utilisation_sampler() if trainer.device.type == "cuda" else None
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = trainer.steps(trainer.loader(workers), batches, skip=10 if batches is None else 1)
    figures = {"workers": workers, **result}
    if sampler is not None:
        sampler.terminate()
        samples = [int(v) for v in sampler.communicate()[0].split() if v.strip().isdigit()]
        if samples:
            figures["gpu_utilisation_mean_pct"] = round(statistics.mean(samples), 1)
            figures["gpu_utilisation_median_pct"] = statistics.median(samples)
        figures["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    figures["epoch_seconds_all_records"] = (
        round(len(trainer.cache) / result["records_per_s"], 1) if result["records_per_s"] else None
    )
    return figures


def compiled_rate(cache: Cache, profile: str, workers: int, batches: int) -> dict:
    trainer = Trainer(cache, profile, compiled=True)
    start = time.perf_counter()
    trainer.steps(trainer.loader(workers), 3)  # compilation happens here
    warm = time.perf_counter() - start
    result = trainer.steps(trainer.loader(workers), batches, skip=2)
    rate = result["records_per_s"]
    return {
        "compile_warmup_seconds": round(warm, 1),
        "records_per_s": rate,
        "epoch_seconds_all_records": round(len(cache) / rate, 1) if rate else None,
    }


def precision_parity(trainer: Trainer, n: int) -> dict:
    """The trainer's current weights, bf16 autocast against float32, on n records."""
    if trainer.device.type != "cuda":
        return {"skipped": "bf16 autocast runs on CUDA only"}
    model = trainer.model.eval()
    signals = [trainer.cache.signal(i) for i in range(min(n, len(trainer.cache)))]
    labels = trainer.cache.labels[: len(signals)]
    settings = trainer.train_config.preprocess
    plain = predict.Predictor(
        model, trainer.model_config, np.full(24, 0.5), settings, trainer.device
    )
    full = plain.probabilities_many(signals)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        half = plain.probabilities_many(signals)
    cut, _ = thresholds.tune(full, labels)
    flips = int((thresholds.decide(full, cut) != thresholds.decide(half, cut)).sum())
    return {
        "records": len(signals),
        "max_abs_probability_difference": float(np.abs(full - half).max()),
        "label_flips_at_tuned_thresholds": flips,
    }


def nccl(folder: Path, records: Path) -> dict:
    figures = {}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1"]
    if torch.cuda.is_available():
        probe = (
            "import torch, torch.distributed as d; d.init_process_group('nccl'); "
            "t = torch.ones(4, device='cuda'); d.all_reduce(t); "
            "print(d.get_backend(), float(t.sum())); d.destroy_process_group()"
        )
        done = subprocess.run(
            [*torchrun, "--no-python", sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=180,
        )
        figures["all_reduce"] = done.stdout.strip() or done.stderr.strip()[-300:]
    small = folder / "nccl_data"
    names = _linked_subset(records, small, 64)
    model, out = folder / "nccl_model", folder / "nccl_outputs"
    env = {**os.environ, "ECG_GCN_PROFILE": "smoke", "ECG_GCN_CACHE": str(folder / "nccl_cache")}
    start = time.perf_counter()
    done = subprocess.run(
        [*torchrun, str(ROOT / "train_model.py"), str(small), str(model)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    figures["torchrun_train_rc"] = done.returncode
    figures["torchrun_train_seconds"] = round(time.perf_counter() - start, 1)
    if done.returncode:
        figures["torchrun_train_error"] = done.stderr.strip()[-500:]
        return figures
    figures["driver_rc"], figures["driver_outputs"], _ = _run_driver(model, small, out)
    figures["recordings"] = len(names)
    return figures


def inference(trainer: Trainer, folder: Path, records: Path, n: int) -> dict:
    """driver.py over n recordings, with the trainer's network as it stands."""
    subset = folder / "infer_data"
    names = _linked_subset(records, subset, n)
    model = folder / "model"
    model.mkdir(exist_ok=True)
    checkpoint.save(
        model / checkpoint.CHECKPOINT_FILE,
        trainer.model,
        trainer.model_config,
        trainer.train_config,
        np.full(24, 0.5),
    )
    returncode, outputs, seconds = _run_driver(model, subset, folder / "infer_outputs")
    return {
        "driver_rc": returncode,
        "recordings": len(names),
        "outputs": outputs,
        "seconds_with_start_up": round(seconds, 1),
        "ms_per_recording": round(1000 * seconds / max(len(names), 1), 2),
    }


def _linked_subset(records: Path, folder: Path, n: int) -> list[str]:
    """The first n records of `records` (by name), linked into `folder`; their names."""
    folder.mkdir(exist_ok=True)
    names = sorted(p.stem for p in records.glob("*.hea"))[:n]
    for name in names:
        for suffix in (".hea", ".mat"):
            target = folder / f"{name}{suffix}"
            if not target.exists():
                target.symlink_to(records / f"{name}{suffix}")
    return names


def _run_driver(model: Path, data: Path, out: Path) -> tuple[int, int, float]:
    """(exit status, output files written, seconds) of `driver.py MODEL DATA OUT`."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "driver.py"), str(model), str(data), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    seconds = time.perf_counter() - start
    return done.returncode, len(list(out.glob("*.csv"))) if out.is_dir() else 0, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--records", type=int, default=43_101, help="records (default 43101)")
    parser.add_argument("--check-records", type=int, default=300, help="precision parity records")
    parser.add_argument("--infer-records", type=int, default=1000, help="driver.py records")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ecg_gcn_gpu_check",
        help="scratch folder for the records and caches, kept out of OUT (tens of GB at full size)",
    )
    parser.add_argument("--tiny", action="store_true", help="a CPU run of seconds, for the tests")
    parser.add_argument(
        "--budget", type=float, default=450, help="seconds before optional parts are skipped"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.records, args.check_records, args.infer_records = 48, 8, 6
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    report = Report(args.out)
    figures = report.run("machine", machine)
    cores = figures.get("cores") or 1
    profile = "smoke" if args.tiny else "paper"
    made = {}

    def data() -> dict:
        result, made["cache"] = make_data(work, args.records, cores)
        return result

    report.run("data", data)
    cache = made.get("cache")
    if cache is None:
        return
    trainer = Trainer(cache, profile)
    counts = [0] if args.tiny else sorted({4, 8, max(1, cores - 2), cores})
    sweep = report.run("workers", worker_sweep, trainer, counts, 3 if args.tiny else 40)
    best = sweep.get("best_workers", counts[-1])
    report.run("epoch", epoch, trainer, best, 2 if args.tiny else None)
    if report.elapsed() < args.budget and trainer.device.type == "cuda":
        report.run("compile", compiled_rate, cache, profile, best, 60)
    report.run("precision", precision_parity, trainer, args.check_records)
    report.run("nccl", nccl, work, work / "records")
    report.run("inference", inference, trainer, work, work / "records", args.infer_records)
    print(f"done in {report.elapsed():.0f} s: {args.out / 'gpu_check.md'}")


if __name__ == "__main__":
    main()
