"""A trained model's report: PNG figures and a short markdown summary in `MODEL_DIR/report/`.

    python -m ecg_gcn report MODEL_DIR [--labels DIR --outputs DIR] [--data DIR]

From the model folder alone (model.pt, history.csv): the label graph the GCN head was built with
(its normalised adjacency A_hat), the learning curves and the decision thresholds. With a label
folder (WFDB headers), also the conditional probabilities P(x | y) of those labels, the paper's
Fig. 2; with the driver's outputs for those recordings as well, the per-class F1 and AUROC and the
challenge metric's confusion matrix, with the scores beside the always-normal baseline. With the
training data, a gallery of the validation split's most confident mistakes (`explain.gallery`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colors, ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ecg_gcn import checkpoint, evaluation, explain, graph, measure, outputs, predict, scoring
from ecg_gcn import labels as lbl

MARKDOWN_FILE = "report.md"

ADJACENCY_PNG = "label_graph.png"
CONDITIONAL_PNG = "conditional_probability.png"
CURVES_PNG = "learning_curves.png"
THRESHOLDS_PNG = "thresholds.png"
CLASS_SCORES_PNG = "class_scores.png"
CONFUSION_PNG = "confusion.png"

DPI = 110


@dataclass(frozen=True)
class Scores:
    """What a label folder and an output folder give: the arrays and the summary scores."""

    labels: np.ndarray  # (N, K) bool
    binary: np.ndarray  # (N, K) bool
    probabilities: np.ndarray  # (N, K) float
    auroc: np.ndarray  # (K,) per class, NaN where undefined
    f1: np.ndarray  # (K,) per class, NaN where undefined
    summary: dict[str, float]  # AUROC, AUPRC, Accuracy, F-measure, Challenge metric


class ReportError(FileNotFoundError):
    """The model folder lacks a file the report needs; the message names it."""


def class_names(classes: list[str] | tuple[str, ...]) -> list[str]:
    """Short names of the classes; a merged pair shows both names (CRBBB|RBBB)."""
    abbreviations = lbl.abbreviations()
    partners = {a: b for a, b in lbl.EQUIVALENT_PAIRS}
    names = []
    for code in classes:
        name = abbreviations.get(code, code)
        if code in partners:
            name += "|" + abbreviations.get(partners[code], partners[code])
        names.append(name)
    return names


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ReportError(f"{path}: missing; the report needs the {path.name} of a trained model")
    return path


def read_history(path: Path) -> dict[str, np.ndarray]:
    """history.csv as one float array per column."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no epochs recorded")
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def read_scores(labels_dir: Path, outputs_dir: Path | None) -> tuple[np.ndarray, Scores | None]:
    """The labels of `labels_dir` (classes in the scorer's order) and, with outputs, the scores."""
    classes = lbl.CLASSES
    if outputs_dir is None:
        files = [str(labels_dir / name) for name in evaluation.label_names(labels_dir)]
        if not files:
            raise evaluation.EvaluationError(f"{labels_dir}: no .hea label files")
        return evaluation.load_labels(files, classes), None
    label_files, output_files = evaluation.find_challenge_files(str(labels_dir), str(outputs_dir))
    labels = evaluation.load_labels(label_files, classes)
    binary, probabilities = evaluation.load_outputs(output_files, classes, log=lambda *_: None)
    return labels, _score(labels, binary, probabilities)


def _score(labels: np.ndarray, binary: np.ndarray, probabilities: np.ndarray) -> Scores:
    mean_auroc, mean_auprc, auroc, _ = scoring.auc(labels, probabilities)
    f_measure, f1 = scoring.f_measure(labels, binary)
    summary = {
        "AUROC": mean_auroc,
        "AUPRC": mean_auprc,
        "Accuracy": scoring.accuracy(labels, binary),
        "F-measure": f_measure,
        "Challenge metric": scoring.challenge_metric(labels, binary),
    }
    return Scores(labels, binary, probabilities, auroc, f1, summary)


def always_normal(labels: np.ndarray) -> Scores:
    """The scores of answering sinus rhythm for every recording (challenge metric 0)."""
    binary = outputs.always_normal(len(labels))
    return _score(labels, binary, binary.astype(np.float64))


# ---- figures ---------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    """A figure outside pyplot: no display, no global state; savefig renders it with Agg."""
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _annotate(ax: Axes, values: np.ndarray, image, text) -> None:
    """Write text(v) in every cell with a non-zero value, dark on light cells and vice versa."""
    for (i, j), value in np.ndenumerate(values):
        if value == 0 or np.isnan(value):
            continue
        red, green, blue, _ = image.cmap(image.norm(value))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        ax.text(
            j, i, text(value), ha="center", va="center", fontsize=6.5,
            color="black" if light else "white",
        )  # fmt: skip


def _short(value: float) -> str:
    """A probability in three characters: .25, 1, <.01."""
    if value >= 0.995:
        return "1"
    if value < 0.005:
        return "<.01"
    return f"{value:.2f}".lstrip("0")


def plot_matrix(
    matrix: np.ndarray,
    names: list[str],
    path: Path,
    title: str,
    *,
    xlabel: str,
    ylabel: str,
    colorbar: str,
    norm: colors.Normalize | None = None,
    text=_short,
    cmap: str = "Blues",
) -> Path:
    """A class x class heatmap, rows and columns named, non-zero cells annotated."""
    fig = _figure(11, 9.6)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap=cmap, norm=norm or colors.Normalize(0, 1))
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=90, fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _annotate(ax, matrix, image, text)
    fig.colorbar(image, ax=ax, shrink=0.8, label=colorbar)
    return _save(fig, path)


def plot_curves(history: dict[str, np.ndarray], best_epoch: int, path: Path) -> Path:
    """Losses, validation scores and the learning rate against the epoch."""
    epoch = history["epoch"]
    fig = _figure(14, 4.2)
    axes = fig.subplots(1, 3)
    panels = (
        (axes[0], (("loss", "training loss"), ("val_loss", "validation loss")), "BCE loss"),
        (
            axes[1],
            (("challenge_metric", "challenge metric"), ("macro_f1", "macro F1")),
            "validation score",
        ),
        (axes[2], (("lr", "learning rate"),), "learning rate"),
    )
    for ax, series, ylabel in panels:
        for key, label in series:
            ax.plot(epoch, history[key], marker="o", markersize=4, label=label)
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlim(epoch.min() - 0.5, epoch.max() + 0.5)
        if len(epoch) <= 20:
            ax.set_xticks(epoch)
        else:
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes[0].set_title("Losses")
    axes[1].set_title("Validation challenge metric and macro F1")
    axes[2].set_title("Learning rate (log scale)")
    return _save(fig, path)


def plot_thresholds(thresholds: np.ndarray, names: list[str], path: Path) -> Path:
    """One bar per class, with the 0.5 line."""
    fig = _figure(11, 4.5)
    ax = fig.subplots()
    x = np.arange(len(names))
    bars = ax.bar(x, thresholds, color="tab:blue")
    ax.bar_label(bars, [_short(t) for t in thresholds], fontsize=7, padding=2)
    ax.axhline(0.5, color="tab:red", linestyle="--", label="0.5")
    ax.set_xticks(x, names, rotation=90, fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0, max(1.0, float(np.max(thresholds)) * 1.05))
    ax.set_xlabel("class")
    ax.set_ylabel("decision threshold")
    ax.set_title("Decision thresholds per class (a probability at or above it means present)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_class_scores(scores: Scores, names: list[str], path: Path) -> Path:
    """Per-class F1 and AUROC bars; a class that is undefined (never present) is marked n/a."""
    fig = _figure(11, 7)
    axes = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(names))
    support = scores.labels.sum(axis=0)
    panels = ((axes[0], scores.f1, "F1", "tab:green"), (axes[1], scores.auroc, "AUROC", "tab:blue"))
    for ax, values, label, colour in panels:
        bars = ax.bar(x, np.nan_to_num(values), color=colour)
        texts = ["n/a" if np.isnan(v) else f"{v:.2f}".lstrip("0") for v in values]
        ax.bar_label(bars, texts, fontsize=7, padding=2)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel(label)
        ax.set_title(f"{label} per class (mean {np.nanmean(values):.3f})")
        ax.grid(axis="y", alpha=0.3)
    axes[1].axhline(0.5, color="tab:red", linestyle="--", label="chance (0.5)")
    axes[1].legend(fontsize=8, loc="lower right")
    axes[1].set_xticks(x, [f"{n} ({s})" for n, s in zip(names, support, strict=True)], rotation=90)
    axes[1].tick_params(axis="x", labelsize=8)
    axes[1].set_xlim(-0.6, len(names) - 0.4)
    axes[1].set_xlabel("class (positive recordings)")
    return _save(fig, path)


def _count(value: float) -> str:
    """A fractional count in at most three characters: <.1, 2.7, 14."""
    if value < 0.05:
        return "<.1"
    return f"{value:.0f}" if value >= 9.95 else f"{value:.1f}"


# ---- the report ------------------------------------------------------------------------------


def write_report(
    model_dir: str | Path,
    labels_dir: str | Path | None = None,
    outputs_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    """Write the figures and report.md into `model_dir/report/`; return the markdown's path.

    `data_dir` (the training data) adds a gallery: the validation split's most confident false
    positive and false negative of the classes with the most errors, each explained.
    `labels_dir` (a folder of WFDB headers) adds P(x | y) of its labels; `outputs_dir` (the
    driver's CSVs for those recordings) adds the scores and needs `labels_dir`.
    """
    model_dir = Path(model_dir)
    if outputs_dir is not None and labels_dir is None:
        raise ValueError("the outputs can only be scored against labels: give labels_dir too")
    _require(model_dir / checkpoint.CHECKPOINT_FILE)
    saved = checkpoint.read(model_dir)
    described = model_dir
    if saved.get("replicas"):  # TrainConfig.replicas: replica 1 tells how each was trained
        described = model_dir / "replica-1"
        saved = {
            **checkpoint.read(described),
            "replicas": saved["replicas"],
            "thresholds": saved["thresholds"],
            "train_config": saved["train_config"],
        }
    # An ensemble's learning curves and gallery are its first member's (TrainConfig.members).
    first = described / "member-1" if "member_epochs" in saved else described
    history = read_history(_require(first / checkpoint.HISTORY_FILE))
    out = model_dir / checkpoint.REPORT_FOLDER
    out.mkdir(exist_ok=True)
    classes = list(saved["classes"])
    names = class_names(classes)
    thresholds = np.asarray(saved["thresholds"], dtype=np.float64)
    best = _best_row(history, saved)
    best_epoch = int(history["epoch"][best])

    images = _graph_figures(saved, names, out)
    scores = baseline = None
    if labels_dir is not None:
        labels, scores = read_scores(
            Path(labels_dir), None if outputs_dir is None else Path(outputs_dir)
        )
        images += _label_figure(labels, labels_dir, out)
        baseline = always_normal(labels)

    plot_curves(history, best_epoch, out / CURVES_PNG)
    images.append((CURVES_PNG, "Learning curves"))
    plot_thresholds(thresholds, names, out / THRESHOLDS_PNG)
    images.append((THRESHOLDS_PNG, "Decision thresholds per class"))

    if scores is not None:
        images += _score_figures(scores, out)
    if data_dir is not None:
        images += _gallery(first, data_dir, out)

    markdown = _markdown(model_dir, described, saved, history, best, images, scores, baseline)
    path = out / MARKDOWN_FILE
    path.write_text(markdown)
    return path


def _gallery(model_dir: Path, data_dir: str | Path, out: Path) -> list[tuple[str, str]]:
    """The validation split's most confident mistakes, each explained (ecg_gcn.explain)."""
    predictor = predict.load(model_dir)  # on the GPU when there is one: the split may be large
    return explain.gallery(predictor, model_dir, data_dir, out)


def _graph_figures(saved: dict, names: list[str], out: Path) -> list[tuple[str, str]]:
    """The GCN head's label graph, when the model has one: [(file name, caption)]."""
    adjacency = next(
        (v for k, v in saved["state_dict"].items() if k.endswith("head.adjacency")), None
    )
    if adjacency is None:
        return []
    model_config = saved["model_config"]
    plot_matrix(
        adjacency.float().numpy(),
        names,
        out / ADJACENCY_PNG,
        f"Label graph of the GCN head: normalised adjacency $\\hat{{A}}$ "
        f"(tau = {model_config['tau']}, p = {model_config['p']})",
        xlabel="y (column: the neighbour that node x gathers from)",
        ylabel="x (row: the node that gathers)",
        colorbar="edge weight",
    )
    return [(ADJACENCY_PNG, "Label graph: the GCN head's normalised adjacency A_hat")]


def _label_figure(labels: np.ndarray, labels_dir: str | Path, out: Path) -> list[tuple[str, str]]:
    plot_matrix(
        graph.conditional_probability(labels),
        class_names(lbl.CLASSES),
        out / CONDITIONAL_PNG,
        f"Conditional probability P(x | y) of the labels of {len(labels)} recordings",
        xlabel="y (given label)",
        ylabel="x",
        colorbar="P(x | y)",
    )
    return [(CONDITIONAL_PNG, f"P(x | y) of the labels in {labels_dir}")]


def _score_figures(scores: Scores, out: Path) -> list[tuple[str, str]]:
    """F1 and AUROC per class, and the challenge metric's confusion matrix."""
    scored_names = class_names(lbl.CLASSES)
    plot_class_scores(scores, scored_names, out / CLASS_SCORES_PNG)
    confusion = scoring.modified_confusion(scores.labels, scores.binary)
    plot_matrix(
        confusion,
        scored_names,
        out / CONFUSION_PNG,
        f"Challenge-metric confusion matrix ({len(scores.labels)} recordings; "
        "each adds 1/|labels ∪ predictions| per pair)",
        xlabel="predicted class",
        ylabel="true class",
        colorbar="recordings (fractional; square-root scale)",
        norm=colors.PowerNorm(0.5, vmin=0, vmax=max(float(confusion.max()), 1.0)),
        text=_count,
        cmap="Oranges",
    )
    return [
        (CLASS_SCORES_PNG, "F1 and AUROC per class"),
        (CONFUSION_PNG, "Challenge-metric confusion matrix"),
    ]


def _best_row(history: dict[str, np.ndarray], saved: dict) -> int:
    """The history row of the epoch whose weights the checkpoint holds (training picked it by
    its `select_metric`); the best challenge metric for a checkpoint that does not say."""
    rows = np.flatnonzero(history["epoch"] == saved.get("epoch", -1))
    return int(rows[0]) if len(rows) else int(np.nanargmax(history["challenge_metric"]))


def _split_counts(model_dir: Path) -> str:
    path = model_dir / checkpoint.SPLIT_FILE
    if not path.is_file():
        return "not recorded (no split.csv)"
    with open(path, newline="") as f:
        parts = [row["part"] for row in csv.DictReader(f)]
    members = {part for part in parts if part.startswith("member-")}
    if members:
        return (
            f"{len(parts)} recordings in {len(members)} cross-fitted parts, one per ensemble "
            "member (learning curves and gallery: member 1)"
        )
    return f"{parts.count('train')} training, {parts.count('validation')} validation recordings"


def _synthetic_line(saved: dict) -> str:
    training, pool = saved["train_config"], saved.get("synthetic_pool") or {}
    if not training.get("synthetic"):
        return "none (real records only)"
    return (
        f"a pool of {training['synthetic']} (seed {training['synthetic_seed']}"
        + (f", `{pool['folder']}`" if pool else "")
        + f"): {_pretraining_text(training)}, "
        f"then {training['synthetic_mix']:g} per real training record mixed into every epoch"
        + (
            f"; {_anchor_networks(saved, training)} "
            f"{'is' if saved.get('anchors', 1) == 1 else 'are'} the ensemble's anchor, "
            f"{share:.2g} of the answer"
            if (share := saved.get("anchor_share"))
            else ""
        )
        + _synthetic_thresholds_text(saved)
    )


def _pretraining_text(training: dict) -> str:
    if training.get("pretrain_from_anchor"):
        return "the members start from the first network trained on them alone"
    return f"{training['synthetic_pretrain_epochs']} epochs of pre-training on them alone"


def _anchor_networks(saved: dict, training: dict) -> str:
    """The anchor's networks in words: one (as checkpoints before several were saved) or
    several, each on its own pool."""
    n = saved.get("anchors", 1)
    if n == 1:
        return "a network trained on them alone"
    # Saved with the count: a checkpoint with several anchors has the setting.
    epochs = min(training["max_epochs"], training["synthetic_anchor_epochs"])
    return (
        f"{n} networks trained on synthetic records alone (up to {epochs} epochs, each on a "
        "pool of its own)"
    )


def _replicas_lines(saved: dict) -> list[str]:
    """TrainConfig.replicas in words, or nothing for one model."""
    n = saved.get("replicas")
    if not n:
        return []
    return [
        f"- replicas: {n}, replica r trained from seed + r on the pool of synthetic_seed + r; "
        "the answer is their mean probability at the mean of their thresholds (below: how "
        "replica 1 was trained)"
    ]


def _synthetic_thresholds_text(saved: dict) -> str:
    share = saved.get("synthetic_threshold_share")
    if not share:
        return ""
    n = saved["train_config"]["synthetic_threshold_records"]
    if share >= 1:
        return f"; thresholds tuned on {n} fresh synthetic records"
    return (
        f"; thresholds {share:.2g} tuned on {n} fresh synthetic records, "
        f"{1 - share:.2g} on the out-of-fold records"
    )


def _firing_cap_text(saved: dict) -> str:
    capped = saved.get("firing_capped")
    if not capped:
        return ""
    training, abbreviations = saved["train_config"], lbl.abbreviations()
    return (
        f"; raised for {', '.join(abbreviations.get(code, code) for code in capped)}, which "
        f"fired on more than {training['firing_cap']:.0%} of the training records (or "
        f"{training['firing_cap_prevalence']:g} times their prevalence)"
    )


def _rhythm_text(training: dict) -> str:
    if not training.get("rhythm_rules"):
        return "AF, PAC and PVC by their thresholds alone"
    return (
        f"AF by the measured RR irregularity where it is clear (never under "
        f"{measure.AF_REGULAR:g}, always from {measure.AF_IRREGULAR:g}), by its threshold "
        "in between; a measured premature beat answers PAC or PVC, whichever stands higher "
        "against its threshold"
    )


def _rbbb_text(training: dict) -> str:
    if not training.get("rbbb_rule"):
        return "complete and incomplete RBBB by their thresholds alone"
    return (
        f"where V1's QRS ends on a late R' ({measure.RBBB_V1:g} mV or more over its last "
        f"{measure.TERMINAL_S * 1000:.0f} ms) and neither complete nor incomplete RBBB is "
        f"answered, complete RBBB; never incomplete RBBB where V1 ends under "
        f"{measure.NO_R_PRIME_V1:g} mV (on its S wave); an answered incomplete RBBB is "
        f"complete where V1's R' stands {measure.COMPLETE_RBBB_V1:g} mV or more"
    )


def _veto_text(training: dict) -> str:
    if not training.get("veto_rules"):
        return "none: NSIVCB, SA, PAC, PVC, IAVB, LPR, LQT and LQRSV by their thresholds alone"
    return (
        f"no NSIVCB on a QRS under {measure.NARROW_QRS_S * 1000:.0f} ms; no SA on RR "
        f"intervals spread over less than {measure.STEADY_RR_S * 1000:.0f} ms (10th to 90th "
        f"percentile); no PAC or PVC without a measured premature beat in a rhythm under "
        f"{measure.AF_IRREGULAR:g}; no IAVB or LPR beside AF or on a PR interval under "
        f"{measure.SHORT_PR_S * 1000:.0f} ms; no LQT on a QTc under "
        f"{measure.SHORT_QTC_S * 1000:.0f} ms; no LQRSV where a limb lead's QRS stands "
        f"{measure.TALL_LIMB_QRS_MV:g} mV or more and a chest lead's {measure.TALL_CHEST_QRS_MV:g}"
        " mV or more"
    )


def _preprocessing_text(saved: dict) -> str:
    settings = saved["preprocessing"]
    band = settings["band"]
    return f"{settings['window_seconds']:g} s windows at {settings['fs']} Hz, " + (
        f"band-pass {band[0]:g}-{band[1]:g} Hz" if band else "no band-pass"
    )


def _markdown(
    model_dir: Path,
    described: Path,
    saved: dict,
    history: dict[str, np.ndarray],
    best: int,
    images: list[tuple[str, str]],
    scores: Scores | None,
    baseline: Scores | None,
) -> str:
    model, training = saved["model_config"], saved["train_config"]
    thresholds = np.asarray(saved["thresholds"])
    width = f"{model['filters']} filters, {model['n_blocks']} residual blocks"
    gru = f"BiGRU {model['gru_hidden']} x 2" if model["gru"] else "no GRU"
    head = (
        f"GCN head (hidden widths {'-'.join(map(str, model['gcn_hidden']))}, "
        f"tau {model['tau']}, p {model['p']})"
        if model["head"] == "gcn"
        else "linear head"
    )
    lines = [
        f"# Report: `{model_dir.resolve().name}`",
        "",
        "## Model",
        "",
        f"- network: {width}, {gru}, {model['pooling']} pooling, {head}",
        f"- training: Adam lr {training['lr']:g}, batch {training['batch_size']}, "
        f"up to {training['max_epochs']} epochs, {_preprocessing_text(saved)}, "
        f"thresholds tuned {training['threshold_mode']}",
        f"- data: {_split_counts(described)}",
        *_replicas_lines(saved),
        f"- synthetic records: {_synthetic_line(saved)}",
        f"- saved epoch: {saved.get('epoch', '?')} of {len(history['epoch'])} run",
        f"- thresholds: {thresholds.min():.3f} to {thresholds.max():.3f} "
        f"(median {np.median(thresholds):.3f}){_firing_cap_text(saved)}",
        f"- rhythm rules: {_rhythm_text(training)}",
        f"- RBBB rule: {_rbbb_text(training)}",
        f"- vetoes: {_veto_text(training)}",
        "",
        "## Validation (history.csv)",
        "",
        f"Best epoch {int(history['epoch'][best])}: challenge metric "
        f"{history['challenge_metric'][best]:.3f}, macro F1 {history['macro_f1'][best]:.3f}, "
        f"validation loss {history['val_loss'][best]:.4f}.",
        "",
    ]
    if scores is not None and baseline is not None:
        names = list(scores.summary)
        lines += [
            f"## Scores on {len(scores.labels)} recordings",
            "",
            "| | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
            "| model | " + " | ".join(f"{scores.summary[n]:.3f}" for n in names) + " |",
            "| always normal | " + " | ".join(f"{baseline.summary[n]:.3f}" for n in names) + " |",
            "",
            "The challenge metric is 0 for the always-normal answer and 1 for the labels "
            "themselves, by definition.",
            "",
        ]
    lines += ["## Figures", ""]
    for name, caption in images:
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines)
