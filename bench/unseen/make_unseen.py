#!/usr/bin/env python3
"""Build bench/unseen/unseen.jsonl from the hand-written bench/unseen/unseen.yaml.

Run from the repository root:  python bench/unseen/make_unseen.py

Each YAML entry has `language`, `genre`, `text` and `pii` (a list of [value, LABEL] in the order
the values appear in the text, a value repeated each time it appears). Spans are found by
searching each value in the text, each search starting after the previous match; a match must
stand as a word of its own (not inside a longer word or number), except next to CJK characters,
which are written without spaces. The prompt and response are made with the project's own
`build_prompt` and `mask`, so they match the training format. Deterministic: reruns write the
same bytes.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from pii_redact.core.chat import build_prompt  # noqa: E402
from pii_redact.core.labels import LABELS, mask, occurrences  # noqa: E402

SOURCE = HERE / "unseen.yaml"
TARGET = HERE / "unseen.jsonl"
LANGUAGES = ("en", "de", "fr", "it", "es", "nl")
GENRES = ("news", "assistant", "institution", "cv", "oneliner", "address", "email", "chat", "review",
          "social", "minutes", "transcript", "letter", "medical", "ticket", "form", "log", "bio")


class EntryError(Exception):
    pass


def is_word_char(c: str) -> bool:
    """A letter, digit or `_` of a script that separates words with spaces (not CJK)."""
    return (c.isalnum() or c == "_") and not ("\u3000" <= c <= "\u9fff")


def stands_alone(text: str, start: int, end: int) -> bool:
    """`text[start:end]` is not glued to a longer word or number on either side."""
    left_ok = start == 0 or not (is_word_char(text[start - 1]) and is_word_char(text[start]))
    right_ok = end == len(text) or not (is_word_char(text[end - 1]) and is_word_char(text[end]))
    return left_ok and right_ok


def find_spans(text: str, pii: list) -> list[tuple[int, int, str]]:
    spans, pos = [], 0
    for item in pii:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise EntryError(f"pii item {item!r} is not a [value, LABEL] pair of strings")
        value, label = item
        if label not in LABELS:
            raise EntryError(f"unknown label {label!r} (value {value!r})")
        if not value or value != value.strip():
            raise EntryError(f"value {value!r} is empty or has surrounding whitespace")
        start = text.find(value, pos)
        while start >= 0 and not stands_alone(text, start, start + len(value)):
            start = text.find(value, start + 1)
        if start < 0:
            raise EntryError(f"value {value!r} ({label}) not found after position {pos}")
        spans.append((start, start + len(value), label))
        pos = start + len(value)
    return spans


def build_record(entry: dict, number: int) -> dict:
    if not isinstance(entry, dict) or set(entry) != {"language", "genre", "text", "pii"}:
        raise EntryError("an entry needs exactly the keys language, genre, text, pii")
    language, genre, text, pii = entry["language"], entry["genre"], entry["text"], entry["pii"]
    if language not in LANGUAGES:
        raise EntryError(f"unknown language {language!r}")
    if genre not in GENRES:
        raise EntryError(f"unknown genre {genre!r}")
    if not isinstance(text, str) or not text or text != text.strip() or "\r" in text:
        raise EntryError("text must be a non-empty string, stripped, without \\r")
    if not isinstance(pii, list):
        raise EntryError("pii must be a list")
    response, entities = mask(text, find_spans(text, pii))
    for value in sorted({e.value for e in entities}):
        if occurrences(response, value):
            raise EntryError(f"value {value!r} is masked once but still appears in clear in the response")
    return {
        "prompt": build_prompt(text),
        "response": response,
        "entities": [[e.start, e.end, e.label] for e in entities],
        "language": language,
        "genre": genre,
        "template": f"unseen/{language}/{genre}/{number}",
    }


def main() -> None:
    entries = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    records, seen_texts, per_template = [], set(), Counter()
    for i, entry in enumerate(entries, 1):
        where = f"{SOURCE.name} entry {i}"
        if isinstance(entry, dict):
            where += f" ({entry.get('language')}/{entry.get('genre')}: {str(entry.get('text'))[:50]!r})"
        try:
            key = (entry.get("language"), entry.get("genre")) if isinstance(entry, dict) else None
            per_template[key] += 1
            record = build_record(entry, per_template[key])
        except EntryError as err:
            raise SystemExit(f"{where}: {err}")
        if entry["text"] in seen_texts:
            raise SystemExit(f"{where}: duplicate text")
        seen_texts.add(entry["text"])
        records.append(record)

    with open(TARGET, "w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

    labels = Counter(span[2] for r in records for span in r["entities"])
    no_pii = sum(not r["entities"] for r in records)
    print(f"wrote {len(records)} records, {sum(labels.values())} entities to {TARGET.relative_to(ROOT)}")
    print("per language:", dict(Counter(r["language"] for r in records)))
    print("per genre:   ", dict(sorted(Counter(r["genre"] for r in records).items())))
    print("per label:   ", {label: labels[label] for label in LABELS})
    print(f"no PII:       {no_pii} of {len(records)} ({no_pii / len(records):.0%})")
    rare = [label for label in LABELS if labels[label] < 8]
    if rare:
        print("warning: fewer than 8 entities for", ", ".join(rare))


if __name__ == "__main__":
    main()
