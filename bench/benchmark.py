"""The speed and memory figures of BENCHMARKS.md, measured here.

    python -m bench.benchmark [--records 2000] [--profile paper] [--steps 3]

(from the repository root; `make bench` runs it.)

One table: the scorer on 10,000 recordings; the preprocessing cache's build rate; one epoch of
loading crops from the cache against reading and resampling every `.mat` file again; training
records/s; inference per 18 s window through the organisers' path, against the floor the
machine's matrix-multiply rate sets; the peak resident memory of it all.

Every figure is measured on synthetic records (10 s at 500 Hz: the most common Challenge
record) written to a temporary folder, and with the `paper` network unless told otherwise.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.io import loadmat

from ecg_gcn import cache as preprocessing
from ecg_gcn import config, dataset, graph, nets, predict, records, signal, synth
from ecg_gcn import labels as lbl

ROOT = Path(__file__).resolve().parents[1]
SCORER_CASES = ROOT / "tests" / "data" / "scorer_cases"


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed calls, in seconds (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n x n float32 matrix product on this machine's CPU threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


# The scorer.


def scorer_folders(folder: Path, n: int, mixed: bool = False) -> tuple[Path, Path]:
    """The golden cases' label headers and output files copied round-robin, n of each; with
    `mixed`, each output file's columns in an order of its own (as if every file came from a
    different program), which defeats grouping the files by their code line."""
    headers = sorted(SCORER_CASES.glob("*/labels/*.hea"))
    if not headers:
        raise FileNotFoundError(f"{SCORER_CASES}: the scorer's golden cases are missing")
    pairs = [(h, h.parent.parent / "outputs" / f"{h.stem}.csv") for h in headers]
    labels, outputs = folder / "labels", folder / "outputs"
    labels.mkdir(parents=True)
    outputs.mkdir(parents=True)
    for i in range(n):
        header, output = pairs[i % len(pairs)]
        shutil.copyfile(header, labels / f"R{i:06d}.hea")
        if mixed:
            text = _shuffle_columns(output.read_text(), np.random.default_rng(i))
            (outputs / f"R{i:06d}.csv").write_text(text)
        else:
            shutil.copyfile(output, outputs / f"R{i:06d}.csv")
    return labels, outputs


def _shuffle_columns(text: str, rng: np.random.Generator) -> str:
    """An output file with the columns of its code, label and score lines permuted alike;
    comment, blank and malformed files unchanged."""
    lines = text.splitlines()
    data = [j for j, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    widths = {lines[j].count(",") for j in data}
    if len(data) != 3 or len(widths) != 1:
        return text
    order = rng.permutation(widths.pop() + 1)
    for j in data:
        fields = lines[j].split(",")
        lines[j] = ",".join(fields[c] for c in order)
    return "\n".join(lines) + "\n"


def scorer_seconds(labels: Path, outputs: Path, scores: Path, repeats: int = 3) -> float:
    """The whole command `evaluate_12ECG_score.py LABELS OUTPUTS SCORES`, interpreter start
    included, best of `repeats`."""
    command = [sys.executable, str(ROOT / "evaluate_12ECG_score.py"), labels, outputs, scores]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


# The input pipeline.


class RereadDataset(torch.utils.data.Dataset):
    """What the cache saves: each record read from its `.mat` file, converted and resampled
    again every time it is drawn, then cropped or padded as `dataset.CropDataset` does."""

    def __init__(self, data_dir: Path, names: list[str], length: int):
        self.data_dir, self.names, self.length = data_dir, names, length

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = records.load_record(self.data_dir / f"{self.names[i]}.hea")
        x = signal.preprocess(record.signal, record.fs)
        spare = x.shape[1] - self.length
        start = int(torch.randint(spare + 1, ()).item()) if spare > 0 else 0
        crop = signal.pad_or_crop(x[:, start:], self.length)
        y = records.labels_of(record.header).astype(np.float32)
        return torch.from_numpy(crop), torch.from_numpy(y)


def epoch_rate(
    data: torch.utils.data.Dataset, batch_size: int, collate=None, repeats: int = 3
) -> float:
    """Records/s of one pass of a single-process DataLoader over `data` (nothing trained),
    the best of `repeats` passes."""
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, num_workers=0, collate_fn=collate
    )
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in loader:
            pass
        best = min(best, time.perf_counter() - start)
    return len(data) / best


# The network.


def random_model(model_config: config.ModelConfig) -> nets.ECGNet:
    """The network with untrained weights and a label graph of random labels: the same work."""
    labels = np.random.default_rng(0).random((1000, lbl.NUM_CLASSES)) < 0.1
    return nets.build_model(model_config, graph.adjacency(labels, model_config.tau, model_config.p))


def training_rate(model: nets.ECGNet, batch_size: int, window: int, steps: int) -> float:
    """Records/s of Adam steps on batches of `window`-sample inputs (CPU, float32)."""
    x = torch.randn(batch_size, model.config.n_leads, window) * 0.3
    y = (torch.rand(batch_size, lbl.NUM_CLASSES) < 0.1).float()
    optimizer = torch.optim.Adam(model.parameters())
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()

    def step() -> None:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return batch_size / best_of(step, steps)


def cpu_predictor(
    model: torch.nn.Module, model_config: config.ModelConfig, train_config: config.TrainConfig
) -> predict.Predictor:
    """A Predictor on the CPU around `model` (in eval mode), every threshold 0.5."""
    thresholds = np.full(lbl.NUM_CLASSES, 0.5)
    return predict.Predictor(
        model.eval(), model_config, thresholds, train_config.preprocess, torch.device("cpu")
    )


def driver_seconds(predictor: predict.Predictor, data_dir: Path, names: list[str]) -> float:
    """Mean seconds per record of what driver.py does for each one: read the `.mat` file and
    the header, then `run_12ECG_classifier` (conversion, resampling, windows, the network)."""

    def one(name: str) -> None:
        data = loadmat(data_dir / f"{name}.mat")["val"]
        header = (data_dir / f"{name}.hea").read_text().splitlines(keepends=True)
        predict.classify(data, header, predictor)

    one(names[0])  # warm-up
    start = time.perf_counter()
    for name in names:
        one(name)
    return (time.perf_counter() - start) / len(names)


def synthetic_folder(folder: Path, n: int, seed: int, prefix: str, **kwargs) -> list[str]:
    """`folder` holding at least n synthetic records: kept between runs, topped up when short
    (`kwargs` go to `synth.generate`: fs, seconds). Returns the names of the records in it."""
    have = len(records.find_records(folder)) if folder.is_dir() else 0
    if have < n:
        print(f"writing {n - have} synthetic records into {folder} ...", flush=True)
        synth.generate(
            folder, n - have, seed=seed + have, prefix=f"{prefix}{have}_", progress=True, **kwargs
        )
    return records.find_records(folder)


def gpu_utilisation_sampler() -> subprocess.Popen | None:
    """nvidia-smi printing the GPU's utilisation (%) every 200 ms, or None without it."""
    try:
        return subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-lms",
                "200",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
    except OSError:
        return None


def _mixed(folder: Path, n: int) -> tuple[Path, list[str]]:
    """n synthetic records as the Challenge mixes them: mostly 10 s at 500 Hz, some 6-60 s, some
    at 1000 Hz (PTB) and 257 Hz (INCART); see `synth`."""
    return folder, synth.generate(folder, n, seed=9)


@dataclass
class Row:
    measure: str
    value: str
    note: str = ""


def run(
    n_records: int = 2000,
    profile: str = "paper",
    steps: int = 3,
    log: Callable[[str], object] = print,
    scorer_recordings: int = 10_000,
) -> list[Row]:
    """Measure everything; `log` reports progress as it goes. Returns the table's rows."""
    model_config, train_config = config.profile(profile)
    window = train_config.preprocess.window
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        log(f"scorer: {scorer_recordings:,} recordings ...")
        labels, outputs = scorer_folders(tmp / "scorer", scorer_recordings)
        seconds = scorer_seconds(labels, outputs, tmp / "scorer" / "scores.csv")
        rows.append(
            Row(
                f"scorer, {scorer_recordings:,} recordings",
                f"{seconds:.2f} s",
                "official: ~8.4 s" if scorer_recordings == 10_000 else "",
            )
        )

        log(f"cache: writing {n_records} synthetic 10 s, 500 Hz records ...")
        data = tmp / "records"
        names = synth.generate(data, n_records, seed=7, fs=500, seconds=10.0)
        start = time.perf_counter()
        cache = preprocessing.build_cache(data, tmp / f"cache-{data.name}", progress=False)
        build = n_records / (time.perf_counter() - start)
        rows.append(Row("cache build", f"{build:,.0f} records/s", "target >= 1,000"))

        log("loading: one epoch from the cache and one re-reading every file ...")
        for label, folder, folder_names in (
            ("10 s, 500 Hz", data, names),
            ("Challenge-like mix", *_mixed(tmp / "mixed", n_records // 2)),
        ):
            # The 10 s records' cache was built above: this finds it fresh.
            cache = preprocessing.build_cache(folder, tmp / f"cache-{folder.name}", progress=False)
            crops = dataset.CropDataset(cache, np.arange(len(cache)), window)
            cached = epoch_rate(crops, train_config.batch_size, dataset.CropDataset.collate)
            reread = epoch_rate(
                RereadDataset(folder, folder_names, window), train_config.batch_size
            )
            rows.append(Row(f"epoch from the cache, {label}", f"{cached:,.0f} records/s"))
            rows.append(Row(f"epoch re-reading .mat files, {label}", f"{reread:,.0f} records/s"))
            rows.append(
                Row(f"cache / re-reading, {label}", f"{cached / reread:.1f}x", "target >= 20x")
            )

        log(f"network: {profile} profile ...")
        model = random_model(model_config)
        rate = training_rate(model, train_config.batch_size, window, steps)
        rows.append(
            Row(
                "training",
                f"{rate:.1f} records/s",
                f"batch {train_config.batch_size} x {window / train_config.preprocess.fs:g} s, CPU",
            )
        )

        log("inference: driver path and matrix-multiply floor ...")
        gemm = matmul_rate()
        gflop = nets.forward_flops(model, window)
        floor_ms = gflop / gemm * 1e3
        predictor = cpu_predictor(model, model_config, train_config)
        short = driver_seconds(predictor, data, names[:20]) * 1e3
        long_names = synth.generate(
            tmp / "long",
            3,
            seed=8,
            fs=500,
            seconds=predict.WINDOW_BATCH * window / train_config.preprocess.fs,
        )
        per_long = driver_seconds(predictor, tmp / "long", long_names) * 1e3
        batched = per_long / predict.WINDOW_BATCH
        # The same records with the measured rules, as a trained entry answers (rhythm_rules,
        # rbbb_rule, veto_rules): the beats are found and measured besides the network.
        ruled = replace(predictor, rhythm_rules=True, rbbb_rule=True, veto_rules=True)
        short_ruled = driver_seconds(ruled, data, names[:20]) * 1e3
        rows.append(Row("matrix product 2048^2", f"{gemm:.0f} GFLOP/s", "float32"))
        rows.append(
            Row(
                "forward, one window",
                f"{gflop:.2f} GFLOP",
                f"floor {floor_ms:.1f} ms = GFLOP / matmul rate",
            )
        )
        for label, ms in (
            ("driver, 10 s record (1 window)", short),
            (f"driver, {predict.WINDOW_BATCH}-window record", batched),
        ):
            rows.append(
                Row(
                    f"{label}",
                    f"{ms:.1f} ms/window",
                    f"{ms / floor_ms:.2f}x floor, {gflop / ms * 1e3 / gemm:.0%} of matmul rate",
                )
            )
        rows.append(
            Row(
                "measured rules on: driver, 10 s record",
                f"{short_ruled:.1f} ms/record",
                f"measuring the beats adds {short_ruled - short:.1f} ms",
            )
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    rows.append(Row("peak resident memory", f"{peak:,.0f} MiB", "this process"))
    return rows


def format_table(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("measure", "value")]
    return "\n".join(
        f"{r.measure:<{widths[0]}}  {r.value:>{widths[1]}}  {r.note}".rstrip() for r in rows
    )


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records (default 2000)")
    parser.add_argument(
        "--profile", default="paper", choices=config.PROFILES, help="the network (default paper)"
    )
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (default 3)")
    args = parser.parse_args(argv)
    print(
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"{args.records} synthetic 10 s 500 Hz records, {args.profile} network",
        flush=True,
    )
    rows = run(args.records, args.profile, args.steps, log=_to_stderr)
    print(format_table(rows))


if __name__ == "__main__":
    main()
