"""report.md / metrics.json / PNG writing, the console table and the side-by-side comparison."""
from __future__ import annotations

import json

import pytest

from pii_redact.core.errors import UserError
from pii_redact.evaluation.metrics import score
from pii_redact.inference.prediction import Prediction
from pii_redact.evaluation.report import (
    compare,
    inline_diff,
    print_compare,
    print_summary,
    write_report,
)

SRC = "Anna Rossi lives in Lyon. Mail anna@x.io."
REF = "[GIVENNAME_1] [SURNAME_1] lives in [CITY_1]. Mail [EMAIL_1]."


def scored(*texts: str):
    predictions = [Prediction(SRC, REF, text) for text in texts]
    metrics, samples = score(predictions)
    return metrics, samples, predictions


def test_inline_diff_keeps_placeholders_whole():
    assert inline_diff("Mail [EMAIL_1].", "Mail anna@x.io.") == "Mail [-[EMAIL_1]-]{+anna@x.io+}."


def test_write_report(tmp_path):
    metrics, samples, records = scored(REF, "[GIVENNAME_1] [SURNAME_1] lives in [CITY_1]. Mail anna@x.io.")
    paths = write_report(metrics, samples, records, tmp_path / "eval", "Fine-tuned", worst=5)
    assert [p.name for p in paths] == ["metrics.json", "report.md", "per_label_f1.png"]

    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == metrics
    report = (tmp_path / "eval" / "report.md").read_text()
    assert report.startswith("# Fine-tuned\n")
    assert "| entity recall | 0.8750 |" in report  # 7 of 8
    assert "| EMAIL | 1.0000 | 0.5000 | 0.6667 | 2 | 1 |" in report
    assert "| TAXNUM | – | – | – | 0 | 0 |" in report
    # only the leaking sample is a worst example
    assert "### 1. sample 1 — 1 missed, 0 spurious, 1 leaked, fidelity 1.000" in report
    assert "### 2." not in report
    assert "Mail [-[EMAIL_1]-]{+anna@x.io+}." in report
    assert (tmp_path / "eval" / "per_label_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_perfect_report_has_no_worst_examples(tmp_path):
    write_report(*scored(REF), tmp_path, "perfect")
    assert "No errors" in (tmp_path / "report.md").read_text()


def test_compare_and_console_tables(tmp_path, capsys):
    for run, prediction in [("base", SRC), ("finetuned", REF)]:
        metrics, samples, records = scored(prediction)
        write_report(metrics, samples, records, tmp_path / run, run)
    table = compare([str(tmp_path / "base" / "metrics.json"), str(tmp_path / "finetuned")])
    lines = table.splitlines()
    assert lines[0] == "| metric | base | finetuned |"
    assert "| entity F1 | 0.0000 | 1.0000 |" in lines
    assert "| leak rate (entities) ↓ | 1.0000 | 0.0000 |" in lines
    assert "| F1 EMAIL | 0.0000 | 1.0000 |" in lines

    print_compare([str(tmp_path / "base"), str(tmp_path / "finetuned")])
    print_summary(json.loads((tmp_path / "base" / "metrics.json").read_text()), title="base")
    out = capsys.readouterr().out
    assert "finetuned" in out and "entity F1" in out


def test_compare_names_clashing_columns_by_more_of_the_path(tmp_path):
    for run in ("x/run", "y/run", "a/eval", "b/eval"):
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "metrics.json").write_text(json.dumps(scored(REF)[0]))
    assert compare([str(tmp_path / "x/run"), str(tmp_path / "y/run")]).startswith(
        "| metric | x/run | y/run |")
    # a run's evaluation (outputs/<run>/eval) is named after the run
    assert compare([str(tmp_path / "a/eval"), str(tmp_path / "b/eval")]).startswith("| metric | a | b |")
    with pytest.raises(UserError, match="missing.json: no such file"):
        compare([str(tmp_path / "missing.json")])
