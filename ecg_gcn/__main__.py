"""Command line of the package: `python -m ecg_gcn VERB ...`.

synth OUT --n N --seed S     labelled synthetic records in the Challenge format
describe                     a profile's network, its parameters and FLOPs
demo [FOLDER]                the whole official flow on synthetic data, scored
cv DATA / ablation DATA      cross-validation beside baselines / the paper's Table 1
report MODEL                 figures and a summary of a trained model
download DIR                 the 2020 training data from PhysioNet, every record flat in DIR

The speed and memory benchmarks live beside the package, in bench/ (`make bench`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecg_gcn import ROOT
from ecg_gcn.config import PROFILE_ENV, PROFILES, PROTOCOL_MODELS, VARIANTS
from ecg_gcn.records import MAX_FS, MIN_FS, MIN_SECONDS


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _within(low: float, high: float) -> Callable[[str], float]:
    """A number within the bounds every reader of the records enforces (records.py)."""

    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must lie within {low:g} to {high:g}, got {text}")
        return value

    return parse


def _prefix(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: letters, digits, '_' and '-' only (it names files inside OUT)"
        )
    return text


def _synth(args: argparse.Namespace) -> None:
    from ecg_gcn import synth

    names = synth.generate(
        args.out,
        args.n,
        args.seed,
        n_jobs=args.jobs,
        prefix=args.prefix,
        fs=args.fs,
        seconds=args.seconds,
        progress=True,
    )
    print(f"wrote {len(names)} records to {args.out}")


def _describe(args: argparse.Namespace) -> None:
    import numpy as np

    from ecg_gcn import config, graph, nets
    from ecg_gcn.labels import NUM_CLASSES

    model_config, train_config = config.profile(args.profile)
    if args.variant:
        model_config = nets.variant(args.variant, model_config)
    # Any label matrix gives the graph's shape; the real one comes from the training labels.
    placeholder = graph.adjacency(np.eye(NUM_CLASSES, dtype=bool), model_config.tau, model_config.p)
    model = nets.build_model(model_config, placeholder)
    window = train_config.preprocess.window
    print(model)
    print(f"\nprofile {args.profile}" + (f", variant {args.variant}" if args.variant else ""))
    print(f"model:    {config.to_dict(model_config)}")
    print(f"training: {config.to_dict(train_config)}")
    print(f"parameters: {nets.count_parameters(model):,}")
    print(f"stride: {model_config.stride} samples; feature size D = {model_config.feature_dim}")
    for length in sorted({window, 9000}):
        print(
            f"forward: {nets.forward_flops(model, length):.2f} GFLOP per "
            f"{length / train_config.preprocess.fs:g} s window"
        )


def _profile(name: str | None):
    from ecg_gcn import config

    return config.profile(name) if name else config.profile_from_env()


def _with_pool(data: str, train_config):
    """The data's cache, and the synthetic pool appended to it when training uses one."""
    from ecg_gcn import cache as preprocessing
    from ecg_gcn import synthetic, train

    cache = preprocessing.build_cache(data, preprocess=train_config.preprocess)
    if not train_config.synthetic:
        return cache, None
    pool = synthetic.pool(
        train_config.synthetic, train_config.synthetic_seed, preprocess=train_config.preprocess
    )
    return train.with_pool(cache, pool)


def _cv(args: argparse.Namespace) -> None:
    from ecg_gcn import crossval

    model_config, train_config = _profile(args.profile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.by_source or args.train_on:
        _new_hospitals(args, model_config, train_config, out)
        return
    cache, pool = _with_pool(args.data, train_config)
    rows = crossval.cross_validate(
        cache, out, model_config, train_config, args.folds, synthetic=pool
    )
    rows += crossval.mean_rows(rows)
    crossval.write_rows(out / "crossval.csv", rows)
    print(f"\n{args.folds}-fold cross-validation on the records of {args.data}:")
    print(crossval.format_table(rows))
    print(f"\nwritten to {out / 'crossval.csv'}")


def _new_hospitals(args: argparse.Namespace, model_config, train_config, out: Path) -> None:
    from ecg_gcn import cache as preprocessing
    from ecg_gcn import hospitals

    cache = preprocessing.build_cache(args.data, preprocess=train_config.preprocess)
    protocols = ([None] if args.by_source else []) + (
        [args.train_on.split(",")] if args.train_on else []
    )
    rows, class_rows = hospitals.run(
        cache,
        out,
        model_config,
        train_config,
        seeds=args.seeds,
        protocols=tuple(protocols),
        min_records=args.min_records,
        models=tuple(args.models),
    )
    hospitals.write_csv(out / "hospitals.csv", hospitals.ROW_FIELDS, rows)
    hospitals.write_csv(out / "hospitals_classes.csv", hospitals.CLASS_FIELDS, class_rows)
    print(f"\nnew-hospital protocols on the records of {args.data}:\n")
    print(hospitals.summary(rows))
    print(f"\nper fold: {out / 'hospitals.csv'}; per class: {out / 'hospitals_classes.csv'}")


def _ablation(args: argparse.Namespace) -> None:
    from ecg_gcn import crossval

    model_config, train_config = _profile(args.profile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache, pool = _with_pool(args.data, train_config)
    table, rows = crossval.ablation(
        cache, out, model_config, train_config, args.folds, synthetic=pool
    )
    crossval.write_rows(out / "ablation.csv", rows + crossval.mean_rows(rows))
    print(f"\nTable 1 on the records of {args.data}, {args.folds}-fold:")
    print(table)
    print(f"\nevery fold in {out / 'ablation.csv'}")


def _report(args: argparse.Namespace) -> None:
    from ecg_gcn.evaluation import EvaluationError
    from ecg_gcn.report import write_report

    try:
        path = write_report(args.model_dir, args.labels, args.outputs, args.data)
    except (OSError, ValueError, EvaluationError) as error:  # ReportError is an OSError
        sys.exit(f"error: {error}")
    print(f"wrote {path} and its figures")


def _explain(args: argparse.Namespace) -> None:
    import torch

    from ecg_gcn import explain, predict

    out = Path(args.out or Path(args.record).with_suffix(".png").name)
    try:
        predictor = predict.load(args.model_dir, device=torch.device("cpu"))
        path = explain.write(predictor, args.record, out, args.classes, args.method)
    except (OSError, ValueError) as error:  # RecordError and HeaderError are ValueErrors
        sys.exit(f"error: {error}")
    print(f"wrote {path}")


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    """Run one step of the demo as a user would type it, and stop the demo if it fails."""
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    print(f"\n$ {shown + ' ' if shown else ''}{shlex.join(command)}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, **(env or {})})


def _check_records(folder: Path) -> None:
    """Read every record back with the shared reader: the demo data must be what it claims."""
    from ecg_gcn import records

    names = records.find_records(folder)
    rates = {}
    for name in names:
        record = records.load_record(folder / f"{name}.hea")
        rates[record.fs] = rates.get(record.fs, 0) + 1
    summary = ", ".join(f"{n} at {fs:g} Hz" for fs, n in sorted(rates.items()))
    print(f"checked {len(names)} records in {folder}: {summary}")


def _write_constant(data: Path, out: Path, answer: tuple) -> None:
    """Give every record of `data` the same answer: the baselines of the score table."""
    from ecg_gcn import outputs, records

    out.mkdir(exist_ok=True)
    labels, scores, classes = answer
    for name in records.find_records(data):
        text = outputs.format_output(name, classes, labels, scores)
        outputs.write_output(out, f"{name}.mat", text)


def _demo(args: argparse.Namespace) -> None:
    from ecg_gcn import baseline, outputs
    from ecg_gcn.evaluation import evaluate

    folder = Path(args.folder).resolve()
    train, test, model = folder / "train", folder / "test", folder / "model"
    py = sys.executable
    for data, n, seed in ((train, args.n_train, args.seed), (test, args.n_test, args.seed + 1)):
        if not data.is_dir():
            _run([py, "-m", "ecg_gcn", "synth", str(data), "--n", str(n), "--seed", str(seed)])
        _check_records(data)
    profile = os.environ.get(PROFILE_ENV) or "demo"
    _run([py, "train_model.py", str(train), str(model)], env={PROFILE_ENV: profile})
    _run([py, "driver.py", str(model), str(test), str(folder / "outputs")])
    scores = folder / "scores.csv"
    _run([py, "evaluate_12ECG_score.py", str(test), str(folder / "outputs"), str(scores)])

    _write_constant(test, folder / "always_normal", outputs.normal_answer())
    prevalence = baseline.answer(baseline.fit(train))
    _write_constant(test, folder / "prevalence", prevalence)
    quiet = dict(log=lambda *_: None)
    rows = [
        (f"model ({profile})", evaluate(test, folder / "outputs", **quiet)),
        ("prevalence", evaluate(test, folder / "prevalence", **quiet)),
        ("always normal", evaluate(test, folder / "always_normal", **quiet)),
    ]
    print(f"\nscores on {len(os.listdir(folder / 'outputs'))} synthetic test records:")
    names = ("AUROC", "AUPRC", "Accuracy", "F-measure", "Challenge")
    print(f"{'':>16}" + "".join(f"{name:>11}" for name in names))
    for label, result in rows:
        values = (
            result.auroc,
            result.auprc,
            result.accuracy,
            result.f_measure,
            result.challenge_metric,
        )
        print(f"{label:>16}" + "".join(f"{v:>11.3f}" for v in values))


def _download(args: argparse.Namespace) -> None:
    from ecg_gcn import download

    # Options left out take the module's defaults, spelled there only.
    given = {"base_url": args.base_url, "sources": args.sources, "jobs": args.jobs}
    options = {key: value for key, value in given.items() if value is not None}
    try:
        summary = download.download(args.folder, progress=True, **options)
    except (OSError, ValueError) as error:  # DownloadError is an OSError
        sys.exit(f"error: {error}")
    print("\n".join(summary.lines()))
    if summary.failed:
        names = sorted(summary.failed)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        left = f" ({len(summary.untried)} more not tried)" if summary.untried else ""
        sys.exit(f"error: could not fetch {shown}{left}; run the command again to retry")
    folder = shlex.quote(args.folder)
    print(f"records in {args.folder}: python train_model.py {folder} MODEL_DIR")


def _add_synth(verbs) -> None:
    synth = verbs.add_parser("synth", help="write labelled synthetic records")
    synth.add_argument("out", help="folder to write the records into (made if missing)")
    synth.add_argument(
        "--n", type=_positive(int), default=100, help="number of records (default 100)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--jobs", type=int, default=-1, help="processes (default: all cores)")
    synth.add_argument(
        "--prefix", type=_prefix, default="SYN", help="record name prefix (default SYN)"
    )
    synth.add_argument("--fs", type=_within(MIN_FS, MAX_FS), help="force one sampling rate in Hz")
    synth.add_argument(
        "--seconds", type=_within(MIN_SECONDS, 3600.0), help="force one duration in seconds"
    )
    synth.set_defaults(run=_synth)


def _add_describe(verbs) -> None:
    describe = verbs.add_parser("describe", help="print a profile's network and its size")
    describe.add_argument("--profile", default="paper", choices=PROFILES, help="(default paper)")
    describe.add_argument("--variant", choices=VARIANTS, help="a row of the paper's Table 1")
    describe.set_defaults(run=_describe)


def _add_cv(verbs) -> None:
    cv = verbs.add_parser("cv", help="cross-validate beside the baselines")
    cv.add_argument("data", help="folder of .hea/.mat records")
    cv.add_argument("--folds", type=int, default=5, help="stratified folds (default 5)")
    cv.add_argument("--by-source", action="store_true", help="leave one database out")
    cv.add_argument(
        "--train-on", metavar="DB[,DB]", help="train on these databases alone (e.g. CPSC)"
    )
    cv.add_argument("--seeds", type=int, nargs="+", default=[0], help="(--by-source, --train-on)")
    cv.add_argument(
        "--min-records",
        type=int,
        default=10,
        help="fewest labelled records of a database scored (default 10)",
    )
    cv.add_argument(
        "--models",
        nargs="+",
        choices=PROTOCOL_MODELS,
        default=list(PROTOCOL_MODELS),
        metavar="MODEL",
        help="(--by-source, --train-on) the trained columns, of: "
        + ", ".join(f"'{m}'" for m in PROTOCOL_MODELS)
        + " (default all; the baselines are always scored)",
    )
    cv.add_argument("--profile", choices=PROFILES, help="(default: $ECG_GCN_PROFILE)")
    cv.add_argument("--out", default="crossval", help="folder for fold models and the CSV")
    cv.set_defaults(run=_cv)


def _add_ablation(verbs) -> None:
    ablation = verbs.add_parser("ablation", help="the paper's Table 1 on these data")
    ablation.add_argument("data", help="folder of .hea/.mat records")
    ablation.add_argument("--folds", type=int, default=5, help="stratified folds (default 5)")
    ablation.add_argument("--profile", choices=PROFILES, help="(default: $ECG_GCN_PROFILE)")
    ablation.add_argument("--out", default="ablation", help="folder for fold models and the CSV")
    ablation.set_defaults(run=_ablation)


def _add_demo(verbs) -> None:
    demo = verbs.add_parser("demo", help="train, classify and score on synthetic data")
    demo.add_argument("folder", nargs="?", default="demo", help="working folder (default demo)")
    demo.add_argument("--n-train", type=int, default=3000, help="training records (default 3000)")
    demo.add_argument("--n-test", type=int, default=500, help="test records (default 500)")
    demo.add_argument("--seed", type=int, default=2020, help="random seed (default 2020)")
    demo.set_defaults(run=_demo)


def _add_report(verbs) -> None:
    report = verbs.add_parser("report", help="figures and a markdown summary of a trained model")
    report.add_argument("model_dir", help="the folder train_model.py wrote (model.pt, history.csv)")
    report.add_argument("--labels", help="label folder (WFDB headers): adds P(x | y) of its labels")
    report.add_argument("--outputs", help="driver.py's outputs for --labels: adds the scores")
    report.add_argument(
        "--data", help="the training data: adds a gallery of the validation split's worst mistakes"
    )
    report.set_defaults(run=_report)


def _add_explain(verbs) -> None:
    explain = verbs.add_parser(
        "explain", help="one recording's 12 leads, with where each diagnosis came from (PNG)"
    )
    explain.add_argument("model_dir", help="the folder train_model.py wrote")
    explain.add_argument("record", help="the recording: its .hea, its .mat, or its name")
    explain.add_argument("--out", help="the PNG to write (default: RECORD.png here)")
    explain.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help="classes to explain, by abbreviation or SNOMED code (default: those labelled)",
    )
    explain.add_argument(
        "--method",
        choices=("integrated", "gradient", "gradcam"),
        default="integrated",
        help="how the evidence is drawn (default integrated: integrated gradients)",
    )
    explain.set_defaults(run=_explain)


def _add_download(verbs) -> None:
    download = verbs.add_parser(
        "download",
        help="fetch the 2020 training data from PhysioNet",
        description="Fetch the .hea/.mat records of the 2020 training data, as SHA256SUMS.txt of "
        "the PhysioNet project lists and hashes them, into one flat folder (the server's "
        "training/<source>/gN/ folders are not kept): the folder train_model.py reads. A rerun "
        "keeps the files whose hash is right, resumes the .part files and retries the rest.",
    )
    download.add_argument("folder", help="folder for every record, flat (made if missing)")
    download.add_argument(
        "--base-url", help="the project's files (default physionet.org/files/challenge-2020/1.0.2/)"
    )
    download.add_argument(
        "--sources",
        nargs="+",
        metavar="SOURCE",
        help="cpsc_2018 cpsc_2018_extra georgia ptb ptb-xl st_petersburg_incart (default: all)",
    )
    download.add_argument("--jobs", type=int, help="files fetched at once (default 8)")
    download.set_defaults(run=_download)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ecg_gcn", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    _add_synth(verbs)
    _add_describe(verbs)
    _add_cv(verbs)
    _add_ablation(verbs)
    _add_demo(verbs)
    _add_report(verbs)
    _add_explain(verbs)
    _add_download(verbs)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verb == "report" and args.outputs and not args.labels:
        parser.error("report: --outputs needs --labels")
    args.run(args)


if __name__ == "__main__":
    main()
