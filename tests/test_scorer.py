"""The scorer against the official golden files, and the metrics against first principles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecg_gcn import labels as lbl
from ecg_gcn import scoring
from ecg_gcn.evaluation import EvaluationError, evaluate, load_outputs

ROOT = Path(__file__).resolve().parents[1]
SCORER = ROOT / "evaluate_12ECG_score.py"
CASES = ROOT / "tests" / "data" / "scorer_cases"


def run_scorer(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCORER), *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("case", ["basic", "edge"])
def test_score_files_are_byte_identical_to_the_official_ones(case, tmp_path):
    labels, outputs = CASES / case / "labels", CASES / case / "outputs"
    # Run from a folder without weights.csv: the scorer must find its own.
    done = run_scorer(labels, outputs, "scores.csv", "class_scores.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = CASES / case / "expected_scores.csv"
    assert (tmp_path / "scores.csv").read_bytes() == expected.read_bytes()
    expected_classes = CASES / case / "expected_class_scores.csv"
    assert (tmp_path / "class_scores.csv").read_bytes() == expected_classes.read_bytes()


def test_files_that_order_their_columns_each_their_own_way_score_the_same(tmp_path):
    # The official scorer maps every file's columns by its code line: the order is free.
    from bench.benchmark import scorer_folders

    scored = {}
    for mixed in (False, True):
        labels, outputs = scorer_folders(tmp_path / str(mixed), 120, mixed=mixed)
        done = run_scorer(labels, outputs, "scores.csv", "classes.csv", cwd=tmp_path / str(mixed))
        assert done.returncode == 0, done.stderr
        scored[mixed] = [
            (tmp_path / str(mixed) / f).read_bytes() for f in ("scores.csv", "classes.csv")
        ]
    code_lines = {(outputs / f"R{i:06d}.csv").read_text().splitlines()[1] for i in range(120)}
    assert len(code_lines) > 60  # the layouts really differ
    assert scored[True] == scored[False]


def test_printed_lines_match_the_official_ones(tmp_path):
    outputs = CASES / "basic" / "outputs"
    done = run_scorer(CASES / "basic" / "labels", outputs, tmp_path / "s.csv", cwd=tmp_path)
    expected = (CASES / "basic" / "expected_stdout.txt").read_text()
    # The golden run lived in another folder; the lines name each malformed file by its path.
    expected = expected.replace("/tmp/vis/basic/outputs", str(outputs))
    score_lines = (CASES / "basic" / "expected_scores.csv").read_text() + "\n"
    assert done.stdout == expected.removesuffix(score_lines)


def test_two_arguments_print_the_scores(tmp_path):
    done = run_scorer(CASES / "basic" / "labels", CASES / "basic" / "outputs", cwd=tmp_path)
    expected = (CASES / "basic" / "expected_scores.csv").read_text()
    assert done.stdout.endswith(expected + "\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("count", [1, 5])
def test_wrong_argument_count_is_a_usage_error(count, tmp_path):
    done = run_scorer(*(["x"] * count), cwd=tmp_path)
    assert done.returncode == 2
    assert "usage" in done.stderr.lower() or "evaluate_12ECG_score.py" in done.stderr


def test_a_missing_output_file_names_the_file(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "outputs").mkdir()
    (tmp_path / "labels" / "R1.hea").write_text("R1 12 500 5000\n#Dx: 426783006\n")
    done = run_scorer(tmp_path / "labels", tmp_path / "outputs", cwd=tmp_path)
    assert done.returncode == 1
    assert "R1.csv not found for label file R1.hea" in done.stderr


def write_case(folder: Path, dx: list[str], rows: list[str]) -> None:
    (folder / "labels").mkdir()
    (folder / "outputs").mkdir()
    for i, (codes, text) in enumerate(zip(dx, rows, strict=True)):
        (folder / "labels" / f"R{i}.hea").write_text(f"R{i} 12 500 5000\n#Dx: {codes}\n")
        (folder / "outputs" / f"R{i}.csv").write_text(text)


def output_text(codes: list[str], binary: list[str], scores: list[str]) -> str:
    return f"#R\n{','.join(codes)}\n{','.join(binary)}\n{','.join(scores)}\n"


def test_binary_values_are_read_as_the_official_scorer_reads_them(tmp_path):
    codes = ["164889003", "426783006"]
    tokens = ["1", "True", "true", "T", "t", "1.0", "yes", "0"]
    rows = [output_text(codes, [token, "0"], ["0.9", "0.1"]) for token in tokens]
    write_case(tmp_path, ["164889003"] * len(tokens), rows)
    files = sorted(str(p) for p in (tmp_path / "outputs").iterdir())
    binary, scores = load_outputs(files, lbl.CLASSES, log=lambda *_: None)
    af = lbl.CLASS_INDEX["164889003"]
    assert binary[:, af].tolist() == [True] * 5 + [False] * 3
    assert scores[:, af].tolist() == [0.9] * len(tokens)


def test_equivalent_pairs_are_or_ed_and_nan_averaged(tmp_path):
    codes = ["713427006", "59118001", "426783006"]
    rows = [
        output_text(codes, ["0", "1", "0"], ["0.2", "0.6", "0.1"]),
        output_text(codes, ["0", "0", "0"], ["nan", "0.6", "abc"]),
        output_text(codes, ["0", "0", "0"], ["nan", "nan", "inf"]),
    ]
    write_case(tmp_path, ["59118001"] * 3, rows)
    files = sorted(str(p) for p in (tmp_path / "outputs").iterdir())
    binary, scores = load_outputs(files, lbl.CLASSES, log=lambda *_: None)
    rbbb, normal = lbl.CLASS_INDEX["713427006"], lbl.NORMAL_INDEX
    assert binary[:, rbbb].tolist() == [True, False, False]
    assert scores[:, rbbb] == pytest.approx([0.4, 0.6, 0.0])
    assert scores[:, normal].tolist() == [0.1, 0.0, float("inf")]


def test_malformed_files_count_as_all_negative_and_are_reported(tmp_path):
    rows = [
        "#R\n164889003,426783006\n1,0\n",  # two lines only
        "#R\n164889003,426783006\n1,0\n0.9\n",  # ragged
        "\n# comment\n164889003 , 426783006\n\n1 , 0\n0.9,0.1\n",  # blank lines, spaces: fine
    ]
    write_case(tmp_path, ["164889003"] * 3, rows)
    files = sorted(str(p) for p in (tmp_path / "outputs").iterdir())
    said: list[str] = []
    binary, _ = load_outputs(files, lbl.CLASSES, log=said.append)
    assert binary[:, lbl.CLASS_INDEX["164889003"]].tolist() == [False, False, True]
    assert len(said) == 2
    for path, line in zip(files, said, strict=False):
        assert line == f"- The output file {path} has formatting errors, so all outputs are " + (
            "assumed to be negative for this recording."
        )


def test_a_header_without_dx_is_a_clear_error(tmp_path):
    write_case(tmp_path, ["426783006"], [output_text(["426783006"], ["1"], ["1"])])
    (tmp_path / "labels" / "R0.hea").write_text("R0 12 500 5000\n#Age: 50\n")
    with pytest.raises(EvaluationError, match=r"R0\.hea.*0 '#Dx' lines"):
        evaluate(tmp_path / "labels", tmp_path / "outputs", log=lambda *_: None)


def random_case(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random((n, lbl.NUM_CLASSES)) < 0.12
    scores = np.clip(labels * 0.3 + rng.random(labels.shape) * 0.8, 0, 1)
    return labels, scores, scores > 0.5


def test_perfect_outputs_score_one_and_always_normal_scores_zero():
    labels, _, _ = random_case(0)
    assert scoring.challenge_metric(labels, labels) == 1.0
    normal = np.zeros_like(labels)
    normal[:, lbl.NORMAL_INDEX] = True
    assert scoring.challenge_metric(labels, normal) == 0.0
    # Where most recordings are normal, flagging every class is worse than always-normal.
    labels[:240] = False
    labels[:240, lbl.NORMAL_INDEX] = True
    everything = np.ones_like(labels)
    assert scoring.challenge_metric(labels, everything) < 0


def test_modified_confusion_matches_its_definition():
    labels, _, outputs = random_case(1, n=60)
    expected = np.zeros((lbl.NUM_CLASSES, lbl.NUM_CLASSES))
    for y, b in zip(labels, outputs, strict=True):
        n = max(np.count_nonzero(y | b), 1)
        expected += np.outer(y, b) / n
    np.testing.assert_allclose(scoring.modified_confusion(labels, outputs), expected, atol=1e-12)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_fast_challenge_metric_agrees_with_the_exact_one(seed):
    labels, _, outputs = random_case(seed)
    fast = scoring.ChallengeMetric(labels)
    assert fast(outputs) == pytest.approx(scoring.challenge_metric(labels, outputs), abs=1e-12)


def test_auroc_equals_the_rank_statistic_without_ties():
    labels, scores, _ = random_case(5)
    auroc, _ = scoring.auc_per_class(labels, scores)
    for k in range(lbl.NUM_CLASSES):
        pos, neg = scores[labels[:, k], k], scores[~labels[:, k], k]
        wins = (pos[:, None] > neg[None, :]).mean()
        assert auroc[k] == pytest.approx(wins, abs=1e-12)


def test_auc_is_nan_for_a_class_without_positives():
    labels, scores, _ = random_case(6)
    labels[:, 3] = False
    auroc, auprc = scoring.auc_per_class(labels, scores)
    assert np.isnan(auroc[3]) and np.isnan(auprc[3])
    assert not np.isnan(auroc[4])


def test_f_measure_and_accuracy_on_a_hand_made_case():
    labels = np.zeros((4, lbl.NUM_CLASSES), dtype=bool)
    outputs = np.zeros_like(labels)
    labels[:2, 0] = True  # two positives of class 0
    outputs[[0, 2], 0] = True  # one hit, one false alarm
    outputs[3, 1] = True  # a false alarm on class 1
    macro, per_class = scoring.f_measure(labels, outputs)
    assert per_class[0] == pytest.approx(0.5)  # 2*1 / (2*1 + 1 + 1)
    assert per_class[1] == 0.0
    assert np.isnan(per_class[2:]).all()
    assert macro == pytest.approx(0.25)
    assert scoring.accuracy(labels, outputs) == 0.25  # only recording 0 matches exactly


def test_the_27_code_answer_gives_both_members_of_a_pair_their_class_and_writes_ints():
    from ecg_gcn import outputs

    labels = np.zeros(lbl.NUM_CLASSES, dtype=bool)
    scores = np.linspace(0.0, 1.0, lbl.NUM_CLASSES)
    pair_class = lbl.CLASS_INDEX[lbl.EQUIVALENT_PAIRS[0][0]]
    labels[pair_class] = True
    binary, values, classes = outputs.answer(labels, scores)
    assert classes == list(lbl.SCORED_CODES) and len(classes) == 27
    assert all(type(x) is int for x in binary) and all(type(x) is float for x in values)
    for member in lbl.EQUIVALENT_PAIRS[0]:
        assert binary[classes.index(member)] == 1
        assert values[classes.index(member)] == scores[pair_class]
    assert sum(binary) == 2
    normal, normal_scores, _ = outputs.normal_answer()
    assert normal == normal_scores and sum(normal) == 1
    assert normal[classes.index(lbl.NORMAL_CODE)] == 1
