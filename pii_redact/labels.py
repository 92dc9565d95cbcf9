"""The 17 ai4privacy PII labels and the `[LABEL_n]` placeholders that stand for them.

A redaction is the source text with each PII value replaced by a placeholder. `align` recovers
the replaced character spans of the source from a (source, redaction) pair; it is exact, so it
also decides whether a response is a faithful redaction of its source (non-PII text unchanged).

Where a redaction allows more than one split (`Via Giuseppe Verdi 12` as `[STREET_1]
[BUILDINGNUM_1]`: the literal " " could follow any of the first three words), the reading is
chosen by what each label's values look like (`shape_faults`: a building number starts with a
digit, a name has none...) and where entities may begin and end (`boundary_faults`); what is
still tied goes to the earliest. A reading that the other side of a comparison has (`prefer`)
wins over both: any split a redaction allows is a correct reading of it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

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
# What stands for the rest of a text whose redaction ran out of its token budget: masked, never
# copied, and not a claim that the text there is PII (scoring counts it as neither entity nor text).
UNFINISHED = "[UNFINISHED]"


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
        if placeholder_label(m.group(1)) not in LABELS and m.group(0) not in source and m.group(0) != UNFINISHED
    ]


def mask_rest(text: str) -> str:
    """`text` with the content of each of its lines replaced by UNFINISHED (line breaks kept)."""
    return re.sub(r"[^\r\n]*\S[^\r\n]*", UNFINISHED, text)


# --------------------------------------------------------------------------------------------
# What values look like, and where they may begin and end

def _digits(v: str) -> int:
    return sum(c.isdigit() for c in v)


def _letters(v: str) -> int:
    return sum(c.isalpha() for c in v)


# label -> rules its values keep (each broken rule is one fault). Deliberately loose: they only
# choose between readings of one redaction, e.g. a street before a building number.
_NAME = [lambda v: _digits(v) == 0, lambda v: _letters(v) > 0, lambda v: "@" not in v]
SHAPES = {
    "GIVENNAME": _NAME + [lambda v: len(v.split()) <= 3],
    "SURNAME": _NAME + [lambda v: len(v.split()) <= 4],
    "CITY": _NAME + [lambda v: len(v.split()) <= 5,
                     lambda v: not re.match(r"[A-Z]{2}\b", v)],  # "AB Den Haag": the postcode's letters
    "STREET": [lambda v: _letters(v) > 0, lambda v: "@" not in v, lambda v: len(v.split()) <= 7,
               lambda v: not v.split()[-1].isdigit()],  # a final number is the building's
    "BUILDINGNUM": [lambda v: v[0].isdigit(), lambda v: len(v) <= 12, lambda v: len(v.split()) <= 2],
    "ZIPCODE": [lambda v: _digits(v.split()[0]) > 0, lambda v: len(v.split()) <= 2, lambda v: len(v) <= 10],
    "EMAIL": [lambda v: "@" in v, lambda v: not any(c.isspace() for c in v)],
    "USERNAME": [lambda v: not any(c.isspace() for c in v)],
    "PASSWORD": [lambda v: not any(c.isspace() for c in v)],
    "DATEOFBIRTH": [lambda v: _digits(v) > 0, lambda v: len(v.split()) <= 5],
    "TELEPHONENUM": [lambda v: _digits(v) >= 5, lambda v: _letters(v) <= 3, lambda v: v[0] in "+(0123456789"],
    "CREDITCARDNUMBER": [lambda v: _digits(v) >= 12, lambda v: _letters(v) == 0],
    "ACCOUNTNUM": [lambda v: _digits(v) >= 5, lambda v: "@" not in v],
    **{label: [lambda v: _digits(v) >= 2, lambda v: len(v.split()) <= 7, lambda v: "@" not in v]
       for label in ("SOCIALNUM", "TAXNUM", "IDCARDNUM", "DRIVERLICENSENUM")},
}


@lru_cache(maxsize=1 << 16)
def shape_faults(label: str, value: str) -> int:
    """How many of its label's shape rules `value` breaks (0 for an unknown label)."""
    value = value.strip()
    if not value:
        return 1
    return sum(not rule(value) for rule in SHAPES.get(label, ()))


# Characters next to which an entity may begin or end, and escapes that stand for them in
# JSON, URLs and HTML (`\n`, `%20`, `&amp;`): a value glued to them is still a separate word.
_SEPARATOR = r"""\s=:;,()\[\]{}<>"'|!?“”‘’«»„‚¿¡—–…·•"""
_ESCAPE = r"\\[nrtbf\"'/\\]|\\u[0-9A-Fa-f]{4}|%[0-9A-Fa-f]{2}|&#?\w+;"
_END_OK = re.compile(rf"(?:$|[{_SEPARATOR}]|{_ESCAPE}|[.\-/@_+#*~^]+(?:$|[{_SEPARATOR}]|{_ESCAPE}))")
_START_OK = re.compile(rf"(?:^|[{_SEPARATOR}]|{_ESCAPE}|(?:^|[{_SEPARATOR}]|{_ESCAPE})[.\-/@_+#*~^]+)$")


def can_start(text: str, i: int) -> bool:
    """Whether an entity may begin at `text[i]`: not inside a word or a dotted, hyphenated or
    @-joined string (`anna@x.|io`, `Rossi-|Bianchi`), but after the `/` of a URL path
    (`linkedin.com/in/|jdoe`)."""
    # what decides lies within a few characters (a joiner run, an escape): look no further
    return (i > 0 and text[i - 1] == "/" and text[i:i + 1] != "/") or \
        _START_OK.search(text, max(0, i - 16), i) is not None


def can_end(text: str, i: int) -> bool:
    """Whether an entity may end just before `text[i]` (`anna@x|.io` may not, `Lyon|.` may)."""
    return _END_OK.match(text, i, i + 16) is not None


def boundary_faults(text: str, start: int, end: int) -> int:
    """0, 1 or 2: how many ends of `text[start:end]` lie where an entity cannot begin or end."""
    return (not can_start(text, start)) + (not can_end(text, end))


def occurrences(text: str, value: str) -> int:
    """Occurrences of `value` in `text` that stand as a word of their own: not inside a longer
    word or number (a masked `12` does not occur in `1234`), where escapes and markup count as
    separators (`\\nAnna`, `q=Anna%20Berg`, `<b>Anna</b>` all hold `Anna`). A scan, not a regex:
    compiling a pattern per value costs more than the rest of the scoring."""
    if not value:
        return 0
    check_left, check_right = value[0].isalnum() or value[0] == "_", value[-1].isalnum() or value[-1] == "_"
    count, pos = 0, text.find(value)
    while pos >= 0:
        end = pos + len(value)
        if (check_left and pos and not _word_break_before(text, pos)) or (
                check_right and end < len(text) and not _word_break_after(text, end)):
            pos = text.find(value, pos + 1)
        else:
            count += 1
            pos = text.find(value, end)
    return count


_ESCAPE_BEFORE = re.compile(rf"(?:{_ESCAPE})$")
_ESCAPE_AFTER = re.compile(_ESCAPE)


def _word_break_before(text: str, pos: int) -> bool:
    c = text[pos - 1]
    return not (c.isalnum() or c == "_") or _ESCAPE_BEFORE.search(text, max(0, pos - 6), pos) is not None


def _word_break_after(text: str, end: int) -> bool:
    c = text[end]
    return not (c.isalnum() or c == "_") or _ESCAPE_AFTER.match(text, end) is not None


# --------------------------------------------------------------------------------------------
# Alignment of a redaction with its source

@dataclass
class Alignment:
    """The entities of the chosen reading, and how many of them another equally good reading
    would place elsewhere (`ambiguous`: the redaction alone cannot say where they are)."""

    entities: list[Entity]
    ambiguous: int = 0


def _parse(redacted: str) -> tuple[list[str], list[tuple[str, int | None]]]:
    """The literal pieces of a redaction and its placeholders' (label, number)s, interleaved:
    pieces[0] tag[0] pieces[1] ... tag[n-1] pieces[n]."""
    pieces, tags, last = [], [], 0
    for m in PLACEHOLDER_RE.finditer(redacted):
        pieces.append(redacted[last:m.start()])
        tags.append((m.group(1), int(m.group(2)) if m.group(2) else None))
        last = m.end()
    pieces.append(redacted[last:])
    return pieces, tags


def _literal_bounds(source: str, pieces: list[str]) -> tuple[list[int], list[int]] | None:
    """Earliest and latest start in `source` of each inner literal (pieces[1:-1]) such that all
    of them fit, in order, with a non-empty entity before and after each; None if they cannot."""
    lo, hi = len(pieces[0]), len(source) - len(pieces[-1])  # the entities lie in source[lo:hi]
    inner = pieces[1:-1]
    earliest, pos = [], lo
    for literal in inner:
        found = source.find(literal, pos + 1, hi) if literal else pos + 1
        if found < 0:
            return None
        earliest.append(found)
        pos = found + len(literal)
    if pos >= hi:
        return None
    latest, end = [], hi
    for literal in reversed(inner):
        found = source.rfind(literal, 0, end - 1) if literal else end - 1
        latest.append(found)
        end = found
    return earliest, latest[::-1]


def _candidates(source: str, literal: str, first: int, last: int) -> list[int]:
    """Where `literal` can start in source[first:last + 1] (an empty one: anywhere there)."""
    if not literal:
        return list(range(first, last + 1))
    out, pos = [], source.find(literal, first)
    while 0 <= pos <= last:
        out.append(pos)
        pos = source.find(literal, pos + 1)
    return out


MAX_READINGS_WORK = 200_000  # (previous end, end) pairs weighed before settling for the earliest reading


def alignment(source: str, redacted: str, prefer: list[Entity] | None = None) -> Alignment | None:
    """The entities `redacted` replaces, or None if it is not `source` with some non-empty spans
    replaced (it changed non-PII text). Of the readings of an ambiguous redaction: the one with the
    most spans in `prefer`, then the fewest shape and boundary faults, then the earliest. A
    placeholder over the very same text in the source (`[EMAIL_1]` written in the input) is that
    text copied, not an entity."""
    found = _alignment(source, redacted, prefer)
    if found is not None:
        found.entities = [e for e in found.entities if e.value != _placeholder_text(e)]
    return found


def _placeholder_text(entity: Entity) -> str:
    return f"[{entity.label}]" if entity.index is None else f"[{entity.label}_{entity.index}]"


def _alignment(source: str, redacted: str, prefer: list[Entity] | None) -> Alignment | None:
    pieces, tags = _parse(redacted)
    if not tags:
        return Alignment([]) if source == redacted else None
    head, tail = pieces[0], pieces[-1]
    if len(head) + len(tail) >= len(source) or not source.startswith(head) or not source.endswith(tail):
        return None
    bounds = _literal_bounds(source, pieces)
    if bounds is None:
        return None
    # ends[i]: where entity i can end (where the literal after it starts); the last ends at the tail
    ends = [_candidates(source, literal, first, last) for literal, first, last in zip(pieces[1:-1], *bounds)]
    ends.append([len(source) - len(tail)])
    if all(len(e) == 1 for e in ends):  # one reading: nothing to weigh
        return Alignment(_entities(source, pieces, tags, [e[0] for e in ends]))
    if sum(len(a) * len(b) for a, b in zip(ends, ends[1:])) > MAX_READINGS_WORK:
        ends = [[first] for first in bounds[0]] + [ends[-1]]  # pathological: the earliest reading
    return _best_reading(source, pieces, tags, ends, {(e.start, e.end, e.label) for e in prefer or ()})


def _entities(source: str, pieces: list[str], tags: list[tuple[str, int | None]], ends: list[int]) -> list[Entity]:
    starts = [len(pieces[0])] + [end + len(literal) for end, literal in zip(ends, pieces[1:-1])]
    return [Entity(a, b, label, source[a:b], index) for a, b, (label, index) in zip(starts, ends, tags)]


def _best_reading(source: str, pieces: list[str], tags: list[tuple[str, int | None]], ends: list[list[int]],
                  preferred: set[tuple[int, int, str]]) -> Alignment | None:
    """A dynamic programme over where each entity ends. The cost of a reading is (-preferred
    spans, faults), compared in that order (a reading the other side has is a correct one);
    ties keep the earliest split."""
    n = len(tags)
    prevs: list[list[int | None]] = [[None], *ends[:-1]]

    def span(i: int, prev_end: int | None, end: int) -> tuple[int, int]:
        return (len(pieces[0]) if prev_end is None else prev_end + len(pieces[i])), end

    faults: list[dict[tuple, int]] = []
    for i in range(n):
        row = {}
        for prev_end in prevs[i]:
            for end in ends[i]:
                start, _ = span(i, prev_end, end)
                if end > start:
                    row[(prev_end, end)] = 2 * shape_faults(tags[i][0], source[start:end]) + boundary_faults(source, start, end)
        faults.append(row)
    # forward: best (faults, -preferred) to end entity i at `end`, and the previous end it came from
    forward: list[dict] = [{None: ((0, 0), None)}]
    for i in range(n):
        row: dict = {}
        for (prev_end, end), f in faults[i].items():
            if prev_end not in forward[-1]:
                continue
            cost = forward[-1][prev_end][0]
            new = (cost[0] - ((*span(i, prev_end, end), tags[i][0]) in preferred), cost[1] + f)
            if end not in row or new < row[end][0]:
                row[end] = (new, prev_end)
        if not row:
            return None
        forward.append(row)
    end = ends[-1][0]
    if end not in forward[-1]:
        return None
    entities = []
    for i in range(n - 1, -1, -1):
        prev_end = forward[i + 1][end][1]
        start, _ = span(i, prev_end, end)
        entities.append(Entity(start, end, tags[i][0], source[start:end], tags[i][1]))
        end = prev_end
    entities.reverse()
    return Alignment(entities, _ambiguous(faults, n, ends))


def _ambiguous(faults: list[dict[tuple, int]], n: int, ends: list[list[int]]) -> int:
    """How many entities lie elsewhere in another reading with as few faults as the best."""
    if all(len(e) == 1 for e in ends):
        return 0
    inf = float("inf")
    ahead: list[dict] = [{None: 0}]  # fewest faults of entities 0..i ending at `end`
    for i in range(n):
        row: dict = {}
        for (prev_end, end), f in faults[i].items():
            if prev_end in ahead[-1]:
                row[end] = min(row.get(end, inf), ahead[-1][prev_end] + f)
        ahead.append(row)
    behind: list[dict] = [dict() for _ in range(n)] + [{}]  # fewest faults of entities after i
    behind[n - 1] = {ends[-1][0]: 0}
    for i in range(n - 1, 0, -1):
        for (prev_end, end), f in faults[i].items():
            if end in behind[i]:
                behind[i - 1][prev_end] = min(behind[i - 1].get(prev_end, inf), behind[i][end] + f)
    best = ahead[n].get(ends[-1][0], inf)
    count = 0
    for i in range(n):
        spans = {key for key, f in faults[i].items()
                 if key[0] in ahead[i] and key[1] in behind[i] and ahead[i][key[0]] + f + behind[i][key[1]] == best}
        count += len(spans) > 1
    return count


def align(source: str, redacted: str, prefer: list[Entity] | None = None) -> list[Entity] | None:
    """`alignment(...).entities`, or None (see there)."""
    found = alignment(source, redacted, prefer)
    return None if found is None else found.entities


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
