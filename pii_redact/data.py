"""prepare_data.py: prompt/response JSON -> validated, deduplicated, chat-formatted splits.

One streaming pass: read a record, validate it, drop exact duplicates, measure its length with
the real tokenizer and chat template (in batches), assign it to a split and write it. Only hashes,
counters and token lengths stay in memory (a JSON list is parsed whole, being one document;
JSONL is read line by line), so no stage holds its own copy of the data.

Splits are assigned by a stable hash of (seed, masked text): records that share a template but
differ in PII values ("near-duplicates") always land in the same split, so the test split
never has a twin in train. Every record that is not written is counted in report.json by reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import chat, labels
from .cli import UserError, config_dict, parse_config
from .config import DataConfig

SPLITS = ("train", "val", "test")
# Reasons a record is invalid: these obey --on-error (fail or drop).
INVALID = ("invalid_json", "wrong_type", "missing_field", "empty_field", "no_text_marker",
           "unknown_label", "inconsistent_response")
# Reasons a valid record is not written: always dropped and counted, never fatal.
FILTERED = ("duplicate", "conflicting_response", "too_long")
EXAMPLES_PER_REASON = 5
ENCODE_BATCH = 1024  # records tokenized per call: big enough to keep the Rust tokenizer busy


@dataclass
class Record:
    prompt: str
    response: str
    source: str
    file: str
    index: int  # 0-based position in its file (JSONL: line number - 1)
    language: str
    labels: Counter


@dataclass
class Invalid:
    reason: str
    detail: str
    where: str  # "file:line:col" or "file record N": what a person opens to fix it


@dataclass
class SplitStats:
    records: int = 0
    groups: set = field(default_factory=set)
    labels: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    lengths: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# reading

def _invalid_json_location(path: Path, exc: json.JSONDecodeError, line: int | None = None) -> str:
    return f"{path}:{line or exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file (a prepared split). Malformed lines are fatal, named file:line:col."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(_invalid_json_location(path, exc, n)) from None
                if not isinstance(obj, dict):
                    raise UserError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
                yield obj
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _raw_records(path: Path) -> Iterator[tuple[int, Any | Invalid]]:
    """(index, parsed object or Invalid) for each record of a JSON list or JSONL file.

    A JSON list is one document, so a syntax error anywhere makes the whole file unreadable:
    fatal. A JSONL line stands alone, so a bad one is a record error like any other.
    """
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        try:
            records = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise UserError(_invalid_json_location(path, exc) + " (the file is one JSON list, so "
                            "nothing in it can be read until this is fixed)") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        yield from enumerate(records)
        return
    if head and not head.startswith(b"{"):
        raise UserError(f"{path}: expected a JSON list of records or JSONL (one object per line)")
    with path.open("rb") as f:
        for index, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                yield index, json.loads(raw.decode("utf-8-sig"))
            except UnicodeDecodeError as exc:
                yield index, Invalid("invalid_json", f"not UTF-8 ({exc.reason})", f"{path}:{index + 1}")
            except json.JSONDecodeError as exc:
                yield index, Invalid("invalid_json", f"invalid JSON: {exc.msg}", f"{path}:{index + 1}:{exc.colno}")


def _count_records(path: Path) -> int | None:
    """Progress bar total: lines of a JSONL file (cheap); unknown for a JSON list."""
    with path.open("rb") as f:
        if f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            return None
        f.seek(0)
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


# --------------------------------------------------------------------------------------------
# validation

_STOPWORDS = {
    "en": "the and of to is in that it for you with on are this be was your at have please our will from by"
          " dear regards hello thanks name surname address street city phone birth password username",
    "de": "der die das und ist nicht ein eine ich sie mit auf für den dem des zu sich auch wir ihr ihre bitte wird sind von bei"
          " hallo grüße geehrte freundlichen vorname nachname anschrift straße strasse ort telefon geburtsdatum kennwort"
          " passwort benutzername hausnummer kontonummer kreditkarte",
    "fr": "le la les et est une des du pour pas que qui dans sur nous vous avec votre au aux ce cette sont merci"
          " bonjour cordialement madame monsieur prénom nom adresse rue ville téléphone naissance passe utilisateur",
    "it": "il lo gli della delle che è per non una con sono di da nel alla questo questa si grazie vostro"
          " buongiorno saluti gentile cordiali cognome indirizzo città telefono nascita codice utente",
    "es": "el los las del que es y por con para se su sus al está este esta gracias usted nuestro"
          " hola saludos estimado estimada apellido apellidos dirección calle ciudad teléfono nacimiento"
          " contraseña usuario",
    # not "de" or "en": as frequent in French and Spanish, they would pull those texts to Dutch
    "nl": "het een van niet dat op te met voor zijn ook je uw wij bij naar dit deze worden wordt kan"
          " hallo groeten geachte beste naam voornaam achternaam adres straat woonplaats telefoon geboortedatum"
          " wachtwoord gebruikersnaam huisnummer rekeningnummer",
}
# word -> the languages it is a function word of (some, like "que" or "con", serve several)
_LANGUAGES_OF: dict[str, list[str]] = {}
for _lang, _words in _STOPWORDS.items():
    for _word in _words.split():
        _LANGUAGES_OF.setdefault(_word, []).append(_lang)
_WORD_RE = re.compile(r"[^\W\d_]+")


def guess_language(text: str) -> str:
    """The language whose frequent function words (and the words forms and letters use: greetings,
    field names) occur most often; "unknown" if none do. Crude, but enough to report coverage
    for data that does not name its language.
    """
    scores: Counter = Counter()
    for word in _WORD_RE.findall(text):
        scores.update(_LANGUAGES_OF.get(word.lower(), ()))
    return scores.most_common(1)[0][0] if scores else "unknown"


def _string_fields(obj: dict, names: tuple[str, str], where: str) -> tuple[str, str] | Invalid:
    for name in names:
        if name not in obj:
            return Invalid("missing_field", f"no '{name}' field", where)
        if not isinstance(obj[name], str):
            return Invalid("wrong_type", f"'{name}' is {type(obj[name]).__name__}, not a string", where)
        if not obj[name].strip():
            return Invalid("empty_field", f"'{name}' is empty", where)
    return obj[names[0]], obj[names[1]]


def to_record(obj: Any, file: str, index: int) -> Record | Invalid:
    """A parsed object -> a validated Record, or why it is invalid.

    Two shapes are accepted: the seed's {"prompt", "response"}, and raw ai4privacy rows
    ({"source_text", "masked_text", "language", ...}), which get the seed's instruction.
    """
    where = f"{file} record {index}"
    if not isinstance(obj, dict):
        return Invalid("wrong_type", f"a record must be a JSON object, got {type(obj).__name__}", where)
    language = None
    if "source_text" in obj and "prompt" not in obj:
        fields = _string_fields(obj, ("source_text", "masked_text"), where)
        if isinstance(fields, Invalid):
            return fields
        source, response = fields
        prompt = chat.build_prompt(source)
        if isinstance(obj.get("language"), str) and obj["language"]:
            language = obj["language"]
    else:
        fields = _string_fields(obj, ("prompt", "response"), where)
        if isinstance(fields, Invalid):
            return fields
        prompt, response = fields
        source = chat.source_from_prompt(prompt)
        if source is None:
            return Invalid("no_text_marker", f"the prompt has no {chat.TEXT_MARKER!r} before the text to redact", where)
        if not source.strip():
            return Invalid("empty_field", f"the prompt has no text after {chat.TEXT_MARKER!r}", where)
    unknown = labels.unknown_placeholders(source, response)
    if unknown:
        return Invalid("unknown_label", f"placeholder {unknown[0]} is not one of the {len(labels.LABELS)} labels", where)
    entities = labels.align(source, response)
    if entities is None:
        return Invalid("inconsistent_response", "the response is not the source text with PII replaced "
                       "(non-PII text differs)", where)
    return Record(prompt, response, source, file, index, language or guess_language(source),
                  Counter(e.label for e in entities))


# --------------------------------------------------------------------------------------------
# splitting

def split_of(group: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Stable across runs and machines (sha256, not Python's salted hash()); same group, same split."""
    digest = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


# --------------------------------------------------------------------------------------------
# the pass

def load_tokenizer(model: str):
    """The tokenizer (with a chat template) of a hub id or local directory, or a UserError."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        if Path(model).is_dir():
            raise UserError(f"cannot load tokenizer from {model}: {str(exc).splitlines()[0]}") from None
        raise UserError(f"cannot load tokenizer '{model}': no network or no such model; pass --model "
                        "<local directory> holding a Hugging Face checkpoint") from None
    chat.ensure_chat_template(tokenizer)
    return tokenizer


class _Drops:
    """Counts and a few example locations per drop reason; raises under --on-error fail."""

    def __init__(self, on_error: str):
        self.on_error = on_error
        self.counts: Counter = Counter()
        self.examples: dict[str, list[dict]] = {}

    def add(self, reason: str, file: str, index: int, detail: str, where: str | None = None) -> None:
        if reason in INVALID and self.on_error == "fail":
            raise UserError(f"{where or f'{file} record {index}'}: {detail} [{reason}]; fix or remove "
                            "the record, or pass --on-error drop to drop such records")
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append({"file": file, "index": index, "detail": detail})

    def report(self) -> dict[str, dict]:
        return {r: {"count": self.counts[r], "examples": self.examples[r]}
                for r in INVALID + FILTERED if self.counts[r]}


def _percentiles(lengths: list[int]) -> dict[str, int]:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    stats = {f"p{q}": ordered[min(len(ordered) - 1, len(ordered) * q // 100)] for q in (50, 90, 99)}
    return {**stats, "max": ordered[-1], "mean": round(sum(ordered) / len(ordered), 1)}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prepare(config: DataConfig) -> dict[str, Any]:
    """Read, validate, deduplicate, measure and split `config.input`; write the three splits and
    report.json to `config.output_dir`; return the report. UserError on anything fatal."""
    if not config.input:
        raise UserError("no --input given")
    for name, value in (("--val-fraction", config.val_fraction), ("--test-fraction", config.test_fraction)):
        if not 0 <= value < 1:
            raise UserError(f"{name} must be in [0, 1), got {value}")
    if config.val_fraction + config.test_fraction >= 1:
        raise UserError("--val-fraction + --test-fraction must leave something to train on (< 1)")
    if config.max_seq_length <= 0:
        raise UserError(f"--max-seq-length must be positive, got {config.max_seq_length}")
    inputs = [Path(p) for p in config.input]
    for path in inputs:
        if not path.is_file():
            raise UserError(f"input file not found: {path} (pass --input FILE)")

    started = time.perf_counter()
    tokenizer = load_tokenizer(config.model)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Splits are written to temporary names and renamed at the end: a run that fails halfway
    # must not leave files that finetune.py would take for prepared data.
    partial = {s: out_dir / f".{s}.jsonl.partial" for s in SPLITS}
    writers = {s: partial[s].open("w", encoding="utf-8") for s in SPLITS}
    drops = _Drops(config.on_error)
    stats = {s: SplitStats() for s in SPLITS}
    seen: dict[bytes, bytes] = {}  # prompt hash -> response hash, for exact and conflicting duplicates
    records_in = 0
    longest: dict[str, Any] | None = None

    def flush(batch: list[Record]) -> None:
        nonlocal longest
        encoded = chat.encode_examples(tokenizer, [(r.prompt, r.response) for r in batch])
        for record, ids in zip(batch, encoded):
            n = len(ids["input_ids"])
            if n > config.max_seq_length:
                drops.add("too_long", record.file, record.index, f"{n} tokens > --max-seq-length {config.max_seq_length}")
                continue
            group = labels.renumber(record.response)
            split = split_of(group, config.seed, config.val_fraction, config.test_fraction)
            s = stats[split]
            s.records += 1
            s.groups.add(hashlib.sha1(group.encode()).digest())
            s.labels.update(record.labels)
            s.languages[record.language] += 1
            s.lengths.append(n)
            if longest is None or n > longest["num_tokens"]:
                longest = {"file": record.file, "index": record.index, "split": split, "num_tokens": n}
            writers[split].write(json.dumps({
                "messages": chat.to_messages(record.prompt, record.response),
                "source": record.source,
                "origin": {"file": record.file, "index": record.index},
                "language": record.language,
                "labels": dict(sorted(record.labels.items())),
                "num_tokens": n,
            }, ensure_ascii=False) + "\n")

    from rich.console import Console
    from rich.progress import Progress

    try:
        console = Console(stderr=True)
        # a progress bar only for a person watching; logs and pipes get the summary alone
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            for path in inputs:
                file = str(path)
                task = progress.add_task(f"reading {path.name}", total=_count_records(path))
                batch: list[Record] = []
                for index, obj in _raw_records(path):
                    records_in += 1
                    progress.advance(task)
                    record = obj if isinstance(obj, Invalid) else to_record(obj, file, index)
                    if isinstance(record, Invalid):
                        drops.add(record.reason, file, index, record.detail, record.where)
                        continue
                    prompt_key = hashlib.sha1(record.prompt.encode()).digest()
                    response_key = hashlib.sha1(record.response.encode()).digest()
                    if prompt_key in seen:
                        if seen[prompt_key] == response_key:
                            drops.add("duplicate", file, index, "same prompt and response as an earlier record")
                        else:  # two answers to one question: keeping both teaches noise
                            drops.add("conflicting_response", file, index,
                                      "same prompt as an earlier record, different response (first kept)")
                        continue
                    seen[prompt_key] = response_key
                    batch.append(record)
                    if len(batch) == ENCODE_BATCH:
                        flush(batch)
                        batch = []
                flush(batch)
    except BaseException:
        for s in SPLITS:
            writers[s].close()
            partial[s].unlink(missing_ok=True)
        raise
    for s in SPLITS:
        writers[s].close()

    records_out = sum(s.records for s in stats.values())
    report: dict[str, Any] = {
        "counts": {"records_in": records_in, "records_out": records_out,
                   "dropped": sum(drops.counts.values()),
                   **{f"{s}_records": stats[s].records for s in SPLITS}},
        "drops": drops.report(),
        "splits": {s: {
            "records": st.records,
            "templates": len(st.groups),
            "labels": dict(sorted(st.labels.items())),
            "missing_labels": [lab for lab in labels.LABELS if not st.labels[lab]],
            "languages": dict(st.languages.most_common()),
            "tokens": _percentiles(st.lengths),
        } for s, st in stats.items()},
        "tokens": _percentiles([n for st in stats.values() for n in st.lengths]),
        "longest": longest,
        "model": config.model,
        "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer)},
        "config": config_dict(config),
        "inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in inputs],
        "seconds": round(time.perf_counter() - started, 2),
    }
    if not records_out:
        for s in SPLITS:
            partial[s].unlink(missing_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        raise UserError(f"no usable records in {', '.join(config.input)}: all {records_in} were dropped "
                        f"(reasons in {out_dir / 'report.json'})")
    report["outputs"] = {}
    for s in SPLITS:
        final = out_dir / f"{s}.jsonl"
        os.replace(partial[s], final)
        report["outputs"][s] = {"path": str(final), "sha256": sha256_file(final)}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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
    for col in ("split", "records", "templates", "tokens p50", "p90", "p99", "max", "languages"):
        table.add_column(col, justify="left" if col in ("split", "languages") else "right")
    for s, st in report["splits"].items():
        t = st["tokens"]
        table.add_row(s, str(st["records"]), str(st["templates"]),
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
        if not st["records"]:
            console.print(f"[yellow]warning:[/] the {s} split is empty (too few distinct templates for "
                          f"its fraction)")
    console.print(f"wrote {', '.join(f'{output_dir}/{s}.jsonl' for s in SPLITS)} and {output_dir}/report.json")


def main(argv: list[str] | None = None) -> int:
    config = parse_config(
        DataConfig, "data", argv, prog="prepare_data.py",
        description="Validate prompt/response JSON and write chat-formatted, leak-free "
                    "train/val/test splits plus a report.",
    )
    report = prepare(config)
    print_summary(report, config.output_dir)
    return 0

