"""See what the model sees: one recording in the clinical 12-lead layout, with where each
diagnosis came from.

    python -m ecg_gcn explain MODEL RECORD [--out FILE.png] [--classes AF PVC ...]

The recording is read and preprocessed by the driver's own path (`records.load_record`,
`signal.preprocess` with the checkpoint's settings), so the figure shows what the model saw.
It holds:

- the 12 leads as a clinical ECG prints them: four columns of 2.5 s (I, II, III; aVR, aVL, aVF;
  V1-V3; V4-V6) and a rhythm strip of lead II, on ECG paper (1 mm squares, 25 mm/s, 10 mm/mV);
- for each class explained, an evidence strip under the rhythm strip: how much each stretch of
  the window drove that class's output;
- the probabilities of the 24 classes against their thresholds, and the header's `#Dx` labels.

The model scores a long recording window by window and averages; the figure shows the window
that scored highest for the first class explained, and says so.

Evidence: integrated gradients (Sundararajan et al. 2017) from a flat baseline (each lead at its
median) to the recording, IG_STEPS midpoints, summed over the leads; its positive part,
smoothed over EVIDENCE_SMOOTH_S: how much each stretch of the signal, against a flat line,
pushed the class's logit up. Chosen by measurement on simulated ectopic beats at known times
(`bench/bench_evidence.py`, BENCHMARKS.md "Evidence"): on the demo model its peak fell within
150 ms of the single PVC in 82 % of records and of the single PAC in 97 % (chance 3 %), where
plain gradient x input found 18 % and 15 %, Grad-CAM on the last convolutional stage (one value
per 512 input samples, about 1 s) 9 % and 14 %, and occlusion of 160 ms stretches 65 % and
90 % at four times the cost. Both alternatives stay on offer (`method`). The strip is not a
diagnosis, and not a proof of cause: it shows where the output is sensitive.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ecg_gcn import checkpoint, measure, nets, records, signal
from ecg_gcn import labels as lbl
from ecg_gcn.header import LEADS
from ecg_gcn.predict import Predictor

logger = logging.getLogger(__name__)

METHODS = ("integrated", "gradient", "gradcam")
IG_STEPS = 16  # midpoints of the path from the flat baseline to the recording
GALLERY_CLASSES = 2  # the report's gallery: this many classes, those with the most errors
EVIDENCE_SMOOTH_S = 0.06  # the evidence's moving average: about a QRS wide
MAX_STRIPS = 4
# The clinical layout: columns of 2.5 s, each with three leads (indices into LEADS).
LAYOUT = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11))
COLUMN_S = 2.5
RHYTHM_LEAD = 1  # II
PAPER_MINOR, PAPER_MAJOR = "#f6c9c9", "#e58c8c"  # the 1 mm and 5 mm lines of ECG paper
MM_PER_S, MM_PER_MV = 25.0, 10.0
MAX_MV = 3.0  # the voltage scale stops here: a taller wave is cut at the panel's edge


def evidence(
    predictor: Predictor, window: np.ndarray, classes: Sequence[int], method: str = "integrated"
) -> np.ndarray:
    """(len(classes), n) evidence per sample of one preprocessed (12, n) window for each class
    index: non-negative, larger where the stretch drove the class's logit up (module
    docstring). `method`: "integrated" (integrated gradients), "gradient" (gradient x input)
    or "gradcam"."""
    if method not in METHODS:
        raise ValueError(f"evidence method {method!r}: expected one of {', '.join(METHODS)}")
    model = predictor.model.eval()
    if method == "gradcam" and isinstance(model, nets.Ensemble):
        raise ValueError(
            "Grad-CAM reads the feature maps of one network, and this model is an ensemble of "
            f"{len(model.members)}: use --method integrated or gradient"
        )
    window = np.ascontiguousarray(window, dtype=np.float32)
    if method == "integrated":
        baseline = np.median(window, axis=-1, keepdims=True)  # each lead flat at its baseline
        alphas = ((np.arange(IG_STEPS) + 0.5) / IG_STEPS).astype(np.float32)[:, None, None]
        path = baseline + alphas * (window - baseline)
    else:
        path = window[None]
    x = torch.from_numpy(np.ascontiguousarray(path)).to(predictor.device)
    x.requires_grad_(method != "gradcam")
    captured: dict[str, torch.Tensor] = {}
    hook = None
    if method == "gradcam":
        hook = model.cnn.register_forward_hook(lambda _m, _i, o: captured.__setitem__("a", o))
    try:
        with torch.enable_grad():
            logits = model(x)
            rows = []
            for k in classes:
                target = captured["a"] if method == "gradcam" else x
                (grad,) = torch.autograd.grad(logits[:, k].sum(), target, retain_graph=True)
                if method == "integrated":  # the path's mean gradient times the distance
                    difference = torch.from_numpy(window - baseline).to(grad.device)
                    rows.append(_positive((grad.mean(0) * difference).sum(0)))
                else:
                    rows.append(_row(method, grad, target, window.shape[-1]))
    finally:
        if hook is not None:
            hook.remove()
    smooth = max(1, round(EVIDENCE_SMOOTH_S * predictor.preprocess.fs))
    out = np.stack(rows) if rows else np.zeros((0, window.shape[-1]))
    smoothed = scipy.ndimage.uniform_filter1d(out, smooth, axis=-1, mode="constant")
    return np.maximum(smoothed, 0.0)  # the running sum's rounding leaves -1e-16 here and there


def _positive(share: torch.Tensor) -> np.ndarray:
    return share.clamp(min=0).detach().cpu().double().numpy()


def _row(method: str, grad: torch.Tensor, target: torch.Tensor, n: int) -> np.ndarray:
    if method == "gradient":
        return _positive((grad * target)[0].sum(0))  # each sample's share, over the leads
    weights = grad[0].mean(-1, keepdim=True)  # one weight per channel: its mean gradient
    cam = _positive((weights * target[0]).sum(0))
    # Each feature step stands for n / len(cam) input samples: spread it back over them.
    centres = (np.arange(cam.size) + 0.5) * n / cam.size
    return np.interp(np.arange(n), centres, cam)


@dataclass
class Explanation:
    """What the figure shows: the window the model scored, and its evidence."""

    name: str
    window: np.ndarray  # (12, n) mV, preprocessed
    start_s: float  # the window's start in the recording
    windows: int  # how many windows the recording has
    probabilities: np.ndarray  # (24,) the recording's, averaged over its windows
    decided: np.ndarray  # (24,) the entry's labels
    classes: list[int]  # the classes explained
    strips: np.ndarray  # (len(classes), n) evidence
    dx: tuple[str, ...]  # the header's #Dx codes
    fs: int


def explain(
    predictor: Predictor,
    record_path: str | Path,
    classes: Sequence[str] | None = None,
    method: str = "integrated",
) -> Explanation:
    """The explanation of one recording (its `.hea`, `.mat` or the name without either).
    `classes`: abbreviations (AF, PVC...) or SNOMED codes; by default the classes the entry
    labels positive (at most MAX_STRIPS, most probable first)."""
    path = Path(record_path)
    base = path.with_suffix("") if path.suffix.lower() in (".hea", ".mat") else path
    record = records.load_record(records.companion(base, ".hea"))
    settings = predictor.preprocess
    x = signal.preprocess(record.signal, record.fs, settings)  # finite: preprocess sees to it
    starts = signal.window_starts(x.shape[-1], settings.window)
    windows = signal.windows(x, settings.window)
    per_window = predictor.probabilities_many(iter(windows))
    probabilities = per_window.mean(axis=0)
    decided = predictor.decide(probabilities[None], predictor.measured([x]))[0]
    chosen = (
        _class_indices(classes)
        if classes
        else [int(k) for k in np.argsort(-probabilities) if decided[k]][:MAX_STRIPS]
    )
    best = int(np.argmax(per_window[:, chosen[0]]))
    window = windows[best]
    return Explanation(
        name=record.name,
        window=window,
        start_s=float(starts[best]) / settings.fs if x.shape[-1] > settings.window else 0.0,
        windows=len(windows),
        probabilities=probabilities,
        decided=decided,
        classes=chosen,
        strips=evidence(predictor, window, chosen, method),
        dx=tuple(record.header.dx),
        fs=settings.fs,
    )


def _class_indices(names: Sequence[str]) -> list[int]:
    """Class indices of abbreviations or codes, in the order given; a ValueError names one
    that is not scored."""
    by_name = {}
    for k, code in enumerate(lbl.CLASSES):
        by_name[code] = by_name[lbl.abbreviations()[code].upper()] = k
    for code in lbl.SCORED_CODES:
        by_name[code] = by_name[lbl.representative(code)]
    unknown = [name for name in names if name.upper() not in by_name]
    if unknown:
        known = ", ".join(lbl.abbreviations()[c] for c in lbl.CLASSES)
        raise ValueError(f"not a scored class: {', '.join(unknown)} (the classes: {known})")
    indices = [by_name[name.upper()] for name in names]
    return list(dict.fromkeys(indices))[:MAX_STRIPS]


# ---------------------------------------------------------------------------------------------
# The figure


def figure(explanation: Explanation, thresholds: np.ndarray) -> Figure:
    """The figure of an explanation: the 12 leads, the rhythm strip, one evidence strip per
    class and the probabilities. Axes carry their role in `ax.get_label()`: lead names,
    "rhythm II", "evidence <class>", "probabilities"."""
    e = explanation
    n_strips = len(e.classes)
    heights = [1.0, 1.0, 1.0, 1.0] + [0.45] * n_strips
    fig = Figure(figsize=(16, 2.3 * 4 + 1.0 * n_strips + 0.6), layout="constrained")
    outer = fig.add_gridspec(1, 2, width_ratios=[5.2, 1.0])
    left = outer[0].subgridspec(4 + n_strips, 4, height_ratios=heights)
    names = lbl.abbreviations()
    # Each lead drawn about its own baseline (its median), all on one voltage scale.
    leads = e.window - np.median(e.window, axis=-1, keepdims=True)
    shown = leads[:, : round(len(LAYOUT) * COLUMN_S * e.fs)]
    low = float(np.clip(np.floor(shown.min() * 2) / 2, -MAX_MV, -1.0))
    high = float(np.clip(np.ceil(shown.max() * 2) / 2, 1.0, MAX_MV))
    for column, rows in enumerate(LAYOUT):
        for row, lead in enumerate(rows):
            ax = fig.add_subplot(left[row, column], label=LEADS[lead])
            start = column * COLUMN_S
            _trace(ax, leads[lead], e.fs, (start, start + COLUMN_S), (low, high), LEADS[lead])
    rhythm = fig.add_subplot(left[3, :], label=f"rhythm {LEADS[RHYTHM_LEAD]}")
    length_s = e.window.shape[-1] / e.fs
    name = f"{LEADS[RHYTHM_LEAD]} (rhythm)"
    # The strip's own voltage range (same scale, fewer squares) keeps it as wide as the
    # evidence strips under it, whatever the other leads' heights.
    strip = leads[RHYTHM_LEAD]
    volts = (
        float(np.clip(np.floor(strip.min() * 2) / 2, -MAX_MV, -1.0)),
        float(np.clip(np.ceil(strip.max() * 2) / 2, 1.0, MAX_MV)),
    )
    _trace(rhythm, strip, e.fs, (0.0, length_s), volts, name)
    for i, k in enumerate(e.classes):
        name = names[lbl.CLASSES[k]]
        ax = fig.add_subplot(left[4 + i, :], label=f"evidence {name}")
        _strip(ax, e.strips[i], e.fs, name, e.probabilities[k], thresholds[k])
    ax.set_xlabel("time in the window (s)")
    _probabilities(fig.add_subplot(outer[1], label="probabilities"), e, thresholds)
    fig.suptitle(_title(e), fontsize=11)
    return fig


def _title(e: Explanation) -> str:
    names = lbl.abbreviations()
    said = [names[lbl.CLASSES[k]] for k in np.flatnonzero(e.decided)]
    dx = [names.get(lbl.representative(c), c) for c in e.dx] or ["none"]
    where = (
        f"window {e.start_s:.1f}-{e.start_s + e.window.shape[-1] / e.fs:.1f} s of "
        f"{e.windows}, the one scored highest for {names[lbl.CLASSES[e.classes[0]]]}"
        if e.windows > 1
        else "the whole recording"
    )
    return (
        f"{e.name}: the entry says {', '.join(said)}; the header's #Dx: {', '.join(dx)}\n"
        f"shown: {where}. 25 mm/s, 10 mm/mV. The evidence strips show where the output is "
        "sensitive, to first order: not a diagnosis, not a proof of cause."
    )


def _paper(ax: Axes, start: float, stop: float, low: float, high: float) -> None:
    """ECG paper: 1 mm squares (0.04 s, 0.1 mV), 5 mm squares darker, at 25 mm/s and 10 mm/mV.
    The lines are two collections (gid "paper-1mm" and "paper-5mm"), one labelled tick a
    second and a millivolt: a tick object per paper line would take seconds to draw."""
    ax.set_xlim(start, stop)
    ax.set_ylim(low, high)
    for step, colour, width, gid in (
        (0.04, PAPER_MINOR, 0.3, "1mm"),
        (0.2, PAPER_MAJOR, 0.6, "5mm"),
    ):
        times = np.arange(np.ceil(start / step - 1e-6), np.floor(stop / step + 1e-6) + 1) * step
        volts = np.arange(np.ceil(low / step / 2.5 - 1e-6), np.floor(high / step / 2.5 + 1e-6) + 1)
        volts = volts * step * 2.5  # 1 mm is 0.04 s across and 0.1 mV up
        lines = ax.vlines(times, low, high, colors=colour, linewidth=width, zorder=0)
        lines.set_gid(f"paper-{gid}")
        rows = ax.hlines(volts, start, stop, colors=colour, linewidth=width, zorder=0)
        rows.set_gid(f"paper-{gid}")
    ax.set_xticks(np.arange(np.ceil(start - 1e-6), np.floor(stop + 1e-6) + 1))
    ax.set_yticks(np.arange(np.ceil(low - 1e-6), np.floor(high + 1e-6) + 1))
    # 1 s is 25 mm and 1 mV is 10 mm: a data unit up is 10/25 of a data unit across.
    ax.set_aspect(MM_PER_MV / MM_PER_S, adjustable="box")
    ax.tick_params(length=0, labelsize=6)


def _trace(
    ax: Axes,
    lead: np.ndarray,
    fs: int,
    span: tuple[float, float],
    volts: tuple[float, float],
    name: str,
) -> None:
    first, last = round(span[0] * fs), min(round(span[1] * fs), lead.size)
    _paper(ax, *span, *volts)
    ax.plot(np.arange(first, last) / fs, lead[first:last], color="black", linewidth=0.7)
    ax.text(0.01, 0.97, name, transform=ax.transAxes, va="top", fontsize=8, fontweight="bold")
    ax.set_ylabel("mV", fontsize=6, labelpad=1)
    ax.set_xlabel("s", fontsize=6, labelpad=0)


def _strip(
    ax: Axes, values: np.ndarray, fs: int, name: str, probability: float, threshold: float
) -> None:
    t = np.arange(values.size) / fs
    peak = float(values.max()) if values.size else 0.0
    shown = values / peak if peak > 0 else values
    ax.fill_between(t, 0, shown, color="tab:orange", alpha=0.8, linewidth=0)
    ax.set_xlim(0, values.size / fs)
    ax.set_ylim(0, 1.05)
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    ax.text(
        0.995,
        0.9,
        f"p {probability:.2f} (threshold {threshold:.2f})",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7,
    )
    ax.tick_params(labelsize=6)


def _probabilities(ax: Axes, e: Explanation, thresholds: np.ndarray) -> None:
    names = [lbl.abbreviations()[c] for c in lbl.CLASSES]
    y = np.arange(len(names))
    colours = ["tab:red" if d else "tab:gray" for d in e.decided]
    ax.barh(y, e.probabilities, color=colours, height=0.7)
    ax.scatter(thresholds, y, marker="|", s=120, color="black", label="threshold", zorder=3)
    labelled = set(lbl.encode(list(e.dx)).nonzero()[0])
    ax.set_yticks(y, [f"{n} *" if k in labelled else n for k, n in enumerate(names)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability (red: labelled; | threshold; * in #Dx)", fontsize=7)
    ax.tick_params(labelsize=7)


def write(
    predictor: Predictor,
    record_path: str | Path,
    out: str | Path,
    classes: Sequence[str] | None = None,
    method: str = "integrated",
) -> Path:
    """Explain one recording into the PNG `out`; returns its path."""
    fig = figure(explain(predictor, record_path, classes, method), predictor.thresholds)
    out = Path(out)
    fig.savefig(out, dpi=110)
    return out


# ---------------------------------------------------------------------------------------------
# The report's gallery


def gallery(
    predictor: Predictor, model_dir: str | Path, data_dir: str | Path, out_dir: str | Path
) -> list[tuple[str, str]]:
    """Figures of the validation split's worst mistakes, for the report: for each of the
    GALLERY_CLASSES classes with the most errors, its most confident false positive and its
    most confident false negative. Returns (file name in `out_dir`, caption) of each."""
    with open(Path(model_dir) / checkpoint.SPLIT_FILE, newline="") as f:
        names = [row["record"] for row in csv.DictReader(f) if row["part"] == "validation"]
    paths = [Path(data_dir) / f"{name}.hea" for name in names]
    read: list[Path] = []  # the records read, in the order their probabilities come
    seen: list[np.ndarray] = []  # their labels
    measured: list[np.ndarray] = []  # their measured beats, for the measured rules

    def signals():  # one record in memory at a time, however large the validation split
        for path in paths:
            try:
                record = records.load_record(records.companion(path.with_suffix(""), ".hea"))
            except (OSError, ValueError) as error:  # it has no place in the gallery
                logger.info("gallery: %s left out (%s)", path, error)
                continue
            read.append(path)
            seen.append(record.labels)
            x = signal.preprocess(record.signal, record.fs, predictor.preprocess)
            measured.append(measure.record(x, predictor.preprocess.fs))
            yield x

    probabilities = predictor.probabilities_many(signals())
    if not read:
        return []
    truth = np.array(seen)
    decided = predictor.decide(probabilities, np.array(measured).reshape(-1, measure.COLUMNS))
    errors = (decided != truth).sum(axis=0)
    worst = [int(k) for k in np.argsort(-errors, kind="stable")[:GALLERY_CLASSES] if errors[k]]
    figures = []
    for k in worst:
        name = lbl.abbreviations()[lbl.CLASSES[k]]
        wrong = {
            "false positive": np.flatnonzero(decided[:, k] & ~truth[:, k]),
            "false negative": np.flatnonzero(~decided[:, k] & truth[:, k]),
        }
        for kind, rows in wrong.items():
            if not rows.size:
                continue
            sign = 1 if kind == "false positive" else -1  # the most confident mistake
            i = int(rows[np.argmax(sign * probabilities[rows, k])])
            path = read[i]
            file = f"gallery-{name}-{kind.replace(' ', '-')}.png"
            write(predictor, path, Path(out_dir) / file, [name])
            caption = (
                f"{name}, most confident {kind} of the validation split ({errors[k]} errors): "
                f"{path.stem}, p {probabilities[i, k]:.2f} against {predictor.thresholds[k]:.2f}"
            )
            figures.append((file, caption))
    return figures
