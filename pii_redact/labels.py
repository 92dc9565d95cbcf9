"""The 17 ai4privacy PII labels and the `[LABEL_n]` placeholders that stand for them.

A redaction is the source text with each PII value replaced by a placeholder. `align` recovers
the replaced character spans of the source from a (source, redaction) pair; it is exact, so it
also decides whether a response is a faithful redaction of its source (non-PII text unchanged).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

LABELS: tuple[str, ...] = (
    "ACCOUNTNUM", "BUILDINGNUM", "CITY", "CREDITCARDNUMBER", "DATEOFBIRTH", "DRIVERLICENSENUM",
    "EMAIL", "GIVENNAME", "IDCARDNUM", "PASSWORD", "SOCIALNUM", "STREET", "SURNAME", "TAXNUM",
    "TELEPHONENUM", "USERNAME", "ZIPCODE",
)

# A placeholder for a known label, numbered (`[EMAIL_2]`, what the data uses) or not (`[EMAIL]`).
PLACEHOLDER_RE = re.compile(r"\[(" + "|".join(LABELS) + r")(?:_(\d+))?\]")
# Anything shaped like a placeholder, known label or not (`[PERSON]`, `[CREDIT_CARD_1]`).
# Text like `[INFO]` in a log line has this shape too, so callers compare against the source.
PLACEHOLDER_LIKE_RE = re.compile(r"\[([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)\]")


@dataclass(frozen=True)
class Entity:
    """A PII span of the source text: `source[start:end] == value`, shown as `[label_index]`."""

    start: int
    end: int
    label: str
    value: str
    index: int | None = None


def placeholder_label(token: str) -> str:
    """`CREDIT_CARD_12` -> `CREDIT_CARD`: the label part of a placeholder body (drops a `_n`)."""
    return re.sub(r"_\d+$", "", token)


def unknown_placeholders(source: str, text: str) -> list[str]:
    """Placeholder-shaped tokens of `text` whose label is not one of LABELS and that are not
    literally in `source` (so `[INFO]` copied from a log line is fine, `[PERSON]` is not)."""
    return [
        m.group(0) for m in PLACEHOLDER_LIKE_RE.finditer(text)
        if placeholder_label(m.group(1)) not in LABELS and m.group(0) not in source
    ]


def align(source: str, redacted: str) -> list[Entity] | None:
    """Entities of `source` that `redacted` replaces with placeholders, or None if `redacted` is
    not `source` with some non-empty spans replaced (i.e. it changed non-PII text).

    The literal pieces between placeholders must appear in `source` in order; each is placed at
    its earliest position, which is linear-time (a backtracking regex can blow up on texts with
    many placeholders) and matches a non-greedy reading. Ambiguous layouts such as
    `[STREET_1] [BUILDINGNUM_1]` split at the first possible boundary.
    """
    pieces: list[str] = []
    tags: list[tuple[str, int | None]] = []
    last = 0
    for m in PLACEHOLDER_RE.finditer(redacted):
        pieces.append(redacted[last:m.start()])
        tags.append((m.group(1), int(m.group(2)) if m.group(2) else None))
        last = m.end()
    pieces.append(redacted[last:])
    if not tags:
        return [] if source == redacted else None

    head, tail = pieces[0], pieces[-1]
    if not source.startswith(head) or not source.endswith(tail):
        return None
    limit = len(source) - len(tail)  # where the last entity must end
    entities: list[Entity] = []
    pos = len(head)
    for (label, index), literal in zip(tags, pieces[1:]):
        is_last = len(entities) == len(tags) - 1
        # an entity is at least one character, so the next literal starts after pos
        if is_last:
            end = limit
        elif literal:
            end = source.find(literal, pos + 1, limit)
        else:  # adjacent placeholders, e.g. `[GIVENNAME_1][SURNAME_1]`: shortest first value
            end = pos + 1
        if end < 0 or end <= pos or end > limit:
            return None
        entities.append(Entity(pos, end, label, source[pos:end], index))
        pos = end + len(literal)
    return entities


class Numbering:
    """The data's numbering rule: per label, 1, 2, ... in order of first appearance of each
    distinct key (a value's text, or a placeholder's original number)."""

    def __init__(self) -> None:
        self._numbers: dict[tuple[str, object], int] = {}
        self._counts: dict[str, int] = {}

    def __call__(self, label: str, key: object) -> int:
        if (label, key) not in self._numbers:
            self._counts[label] = self._numbers[(label, key)] = self._counts.get(label, 0) + 1
        return self._numbers[(label, key)]


def mask(source: str, spans: list[tuple[int, int, str]]) -> tuple[str, list[Entity]]:
    """`source` with each (start, end, label) span replaced by `[LABEL_n]`, numbered by value
    (the same value keeps its number); the spans must not overlap. Returns (redaction, entities)."""
    number = Numbering()
    out: list[str] = []
    entities: list[Entity] = []
    pos = 0
    for start, end, label in sorted(spans):
        if start < pos or end <= start:
            raise ValueError(f"overlapping or empty span {(start, end, label)}")
        value = source[start:end]
        index = number(label, value)
        out += [source[pos:start], f"[{label}_{index}]"]
        entities.append(Entity(start, end, label, value, index))
        pos = end
    out.append(source[pos:])
    return "".join(out), entities


def unnumbered(text: str) -> str:
    """Every placeholder without its number: `[EMAIL_2]` -> `[EMAIL]`."""
    return PLACEHOLDER_RE.sub(lambda m: f"[{m.group(1)}]", text)


def renumber(text: str) -> str:
    """Canonical numbering: per label, `_1, _2, ...` by first appearance of each original tag.
    Unnumbered placeholders stay unnumbered. Two redactions that differ only in numbering
    become equal."""
    number = Numbering()

    def sub(m: re.Match) -> str:
        label, n = m.group(1), m.group(2)
        return m.group(0) if n is None else f"[{label}_{number(label, n)}]"

    return PLACEHOLDER_RE.sub(sub, text)
