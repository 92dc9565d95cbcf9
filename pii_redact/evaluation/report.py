"""What an evaluation leaves behind: metrics.json, report.md, per_label_f1.png, a console table,
and `compare` to put several metrics files side by side (base vs fine-tuned vs baseline).

Metric definitions live in `metrics`.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.files import read_json, write_json, write_text
from ..core.labels import LABELS
from ..inference.prediction import Prediction
from ..core.run_dir import RunDir
from .metrics import SampleScore, lookup

# (dotted path into metrics.json, what the row is called); rates are shown with 4 decimals.
SUMMARY_ROWS: list[tuple[str, str]] = [
    ("n_samples", "samples"),
    ("exact_match", "exact match"),
    ("entity.precision", "entity precision"),
    ("entity.recall", "entity recall"),
    ("entity.f1", "entity F1"),
    ("entity.f2", "entity F2"),
    ("entity.macro_f1", "entity macro F1 (labels)"),
    ("span.precision", "span precision"),
    ("span.recall", "span recall"),
    ("span.f1", "span F1"),
    ("leak_rate", "leak rate (entities) ↓"),
    ("samples_with_leak", "samples with a leak ↓"),
    ("text_fidelity", "text fidelity"),
    ("format_valid_rate", "format valid"),
    ("unfinished_rate", "unfinished (hit token budget) ↓"),
    ("exact_alignment_rate", "non-PII text untouched"),
]
# Diff tokens: a placeholder stays whole so a swapped label shows as one change.
_DIFF_TOKEN_RE = re.compile(r"\[[A-Z][A-Z0-9_]*\]|\w+|\s+|[^\w\s]")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _value(metrics: dict[str, Any], dotted: str) -> Any:
    try:
        return lookup(metrics, dotted)
    except KeyError:
        return None


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---"] + ["---:"] * (len(headers) - 1)  # names left, numbers right
    return "\n".join([line(headers), "| " + " | ".join(align) + " |", *map(line, rows)])


def _per_label_rows(metrics: dict[str, Any]) -> list[list[str]]:
    return [
        [label, *(_fmt(stats[k]) for k in ("precision", "recall", "f1", "support", "predicted"))]
        for label, stats in metrics["per_label"].items()
    ]


def inline_diff(reference: str, prediction: str) -> str:
    """Word-level diff: `[-reference only-]{+prediction only+}`, shared text as is.

    Changes separated only by punctuation or spaces are shown as one change (a leaked
    `anna@x.io.` would otherwise pair its last `.` with the reference's), trimmed of the
    characters both sides share at their ends."""
    a, b = _DIFF_TOKEN_RE.findall(reference), _DIFF_TOKEN_RE.findall(prediction)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    # merged runs: [shared text] or [reference text, prediction text]
    runs: list[list[str]] = []
    for n, (op, i1, i2, j1, j2) in enumerate(ops):
        old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
        between_changes = 0 < n < len(ops) - 1 and not any(c.isalnum() for c in old)
        if op == "equal" and not between_changes:
            runs.append([old])
        elif runs and len(runs[-1]) == 2:
            runs[-1][0] += old
            runs[-1][1] += new
        else:
            runs.append([old, new])
    out = []
    for run in runs:
        if len(run) == 1:
            out.append(run[0])
            continue
        old, new = run
        head = len(os.path.commonprefix([old, new]))
        tail = len(os.path.commonprefix([old[head:][::-1], new[head:][::-1]]))
        out.append(old[:head])
        if len(old) > head + tail:
            out.append("[-" + old[head:len(old) - tail] + "-]")
        if len(new) > head + tail:
            out.append("{+" + new[head:len(new) - tail] + "+}")
        out.append(old[len(old) - tail:])
    return "".join(out)


def _worst_section(samples: list[SampleScore], predictions: list[Prediction], worst: int) -> str:
    # Most errors first, then least fidelity; samples with nothing wrong are never "worst".
    ranked = sorted(
        (i for i, s in enumerate(samples) if s.errors or s.fidelity < 1.0),
        key=lambda i: (-samples[i].errors, samples[i].fidelity),
    )[:worst]
    if not ranked:
        return "No errors: every prediction is correct.\n"
    parts = ["Diff of reference vs prediction: `[-reference only-]{+prediction only+}`.\n"]
    for rank, i in enumerate(ranked, 1):
        s, p = samples[i], predictions[i]
        missed = len(s.ref_entities) - s.tp
        spurious = len(s.pred_entities) - s.tp
        flags = [f"{missed} missed", f"{spurious} spurious", f"{s.leaked} leaked",
                 f"fidelity {s.fidelity:.3f}"]
        flags += [] if s.format_valid else ["malformed placeholders"]
        flags += ["unfinished"] if s.unfinished else []
        parts.append(f"### {rank}. sample {i if p.index is None else p.index} — {', '.join(flags)}\n\n"
                     f"````text\n{inline_diff(p.response, p.redaction)}\n````\n")
    return "\n".join(parts)


def plot_per_label_f1(metrics: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training box or in CI
    import matplotlib.pyplot as plt

    per_label = metrics["per_label"]
    labels = list(reversed(LABELS))  # barh draws bottom-up: keep the alphabetical order top-down
    f1 = [per_label[label]["f1"] or 0.0 for label in labels]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    ax.barh(labels, f1, color="#4c72b0")
    for y, label in enumerate(labels):
        stats = per_label[label]
        text = "n/a" if stats["f1"] is None else f"{stats['f1']:.2f}  (n={stats['support']})"
        ax.text(min(f1[y], 1.0) + 0.01, y, text, va="center", fontsize=8)
    ax.set_xlim(0, 1.25)  # room for the value labels
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("entity F1 (span and label match)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(metrics: dict[str, Any], samples: list[SampleScore],
                 predictions: list[Prediction], out_dir: str | Path, title: str,
                 worst: int = 10) -> list[Path]:
    """Write metrics.json, report.md and per_label_f1.png into out_dir; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path, report_path, plot_path = out / "metrics.json", out / "report.md", out / "per_label_f1.png"
    write_json(metrics_path, metrics)

    summary = _md_table(["metric", "value"],
                        [[name, _fmt(_value(metrics, key))] for key, name in SUMMARY_ROWS])
    per_label = _md_table(["label", "precision", "recall", "F1", "support", "predicted"],
                          _per_label_rows(metrics))
    sections = [f"# {title}\n", "## Summary\n", summary, "\nMetric definitions: "
                "`pii_redact/evaluation/metrics.py`. ↓ = lower is better.\n",
                "## Per label\n", per_label, f"\n![per-label F1]({plot_path.name})\n"]
    if metrics.get("confusions"):
        top = list(metrics["confusions"].items())[:10]
        sections += ["## Label confusions (same span, other label)\n",
                     _md_table(["reference -> predicted", "count"], [[k, str(v)] for k, v in top]),
                     ""]
    sections += [f"## Worst {worst} examples\n", _worst_section(samples, predictions, worst)]
    write_text(report_path, "\n".join(sections))
    plot_per_label_f1(metrics, plot_path, title)
    return [metrics_path, report_path, plot_path]


def print_summary(metrics: dict[str, Any], title: str = "Evaluation") -> None:
    """The summary table on the console."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, name in SUMMARY_ROWS:
        table.add_row(name, _fmt(_value(metrics, key)))
    Console().print(table)


def _load(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(column name, metrics) per path; a directory stands for its metrics.json. Columns are
    named after the file's directory (`metrics.json`) or stem, with more of the path on clashes."""
    files = [Path(p) / "metrics.json" if Path(p).is_dir() else Path(p) for p in paths]
    loaded = [read_json(f, what="metrics JSON file") for f in files]
    for f, metrics in zip(files, loaded):
        if not isinstance(metrics, dict) or "per_label" not in metrics:
            raise UserError(f"{f}: not a metrics.json written by evaluate.py")
    # outputs/<run>/eval/metrics.json is named after the run, not "eval"
    stems = [RunDir.named_after(f.parent) if f.name == "metrics.json" else f.with_suffix("") for f in files]
    for depth in range(1, max(1, *(len(s.parts) for s in stems)) + 1):
        names = ["/".join(s.parts[-depth:]) or str(s) for s in stems]
        if len(set(names)) == len(names):
            break
    return list(zip(names, loaded))


def _compare_rows(columns: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    rows = [[name, *(_fmt(_value(m, key)) for _, m in columns)] for key, name in SUMMARY_ROWS]
    rows += [[f"F1 {label}", *(_fmt(_value(m, f"per_label.{label}.f1")) for _, m in columns)]
             for label in LABELS]
    return rows


def compare(paths: list[str]) -> str:
    """A markdown table of several metrics files side by side, one column each."""
    columns = _load(paths)
    return _md_table(["metric", *(name for name, _ in columns)], _compare_rows(columns)) + "\n"


def print_compare(paths: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = _load(paths)
    table = Table(title="Comparison")
    table.add_column("metric")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for row in _compare_rows(columns):
        table.add_row(*row)
    Console().print(table)
