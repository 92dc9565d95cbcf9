"""The 17 ai4privacy PII labels, what each is, and the `[LABEL_n]` placeholders that stand for them.

What a label is lives in one entry of `REGISTRY` (a `LabelSpec`): its name, what one placeholder
may cover (`Bounds`, and its most words), the shape of its values (`shape_faults`), how
propagation treats it, and the rules that find it without a model (`core.recognizers`: the
safety net's and the regex baseline's, in the order `ranked` gives). The faithful constraint,
alignment, propagation, the safety net and the baseline all read it there, so a new label is
one entry.

A redaction is the source text with each PII value replaced by a placeholder, numbered per label
by first appearance (`Numbering`, `mask`, `renumber`). Where an entity may begin and end
(`can_start`, `can_end`) is a rule alignment, decoding and scoring share; `occurrences` finds a
value standing as a word of its own. Recovering the spans a redaction replaced is `alignment`'s job.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

from .recognizers import (
    BIRTH_DATE_AFTER_CUE,
    DIGITS_13_TO_19,
    DIGITS_14_TO_19,
    EMAIL,
    EMAIL_STRICT,
    IBAN,
    PHONE,
    PHONE_INTERNATIONAL,
    POSTCODE_AFTER_CUE,
    US_SOCIAL,
    Recognizer,
    card_ok,
    digit_count,
    digits_luhn_ok,
    iban_ok,
)

# --------------------------------------------------------------------------------------------
# What a placeholder may stand for

@dataclass(frozen=True)
class Bounds:
    """The most a value of one label spans, from the training set's values with a margin
    (`tests/test_labels.py` checks that every value of the committed set fits): words, characters,
    whether digits may occur or must, and which punctuation (None: any). Faithful decoding lets a
    placeholder cover only text within its label's bounds, so a surname cannot swallow four words
    and a parenthesis, a given name never covers a colon, and a social security number is never
    an ordinary word."""

    words: int
    chars: int
    digits: bool = True
    symbols: str | None = ""  # punctuation besides letters, digits, spaces and combining marks
    needs: str = ""  # characters of which every value has one (a digit, an @), if any

    def allows(self, value: str) -> bool:
        """Whether `value` stays within the bounds: false for every longer cover too."""
        return (len(value) <= self.chars and len(value.split()) <= self.words
                and (self.digits or not any(c.isdigit() for c in value))
                and (self.symbols is None or all(c in self.symbols for c in _symbols(value))))

    def fits(self, value: str) -> bool:
        """Whether `value` may be a whole value of the label: within the bounds, with a digit
        where the label's values always have one."""
        return self.allows(value) and (not self.needs or any(c in self.needs for c in value))


def _symbols(value: str) -> set[str]:
    return {c for c in value if not (c.isalnum() or c.isspace() or unicodedata.category(c).startswith("M"))}


# --------------------------------------------------------------------------------------------
# What each label is

DIGITS = "0123456789"
ShapeRule = Callable[[str], bool]  # a value -> whether it keeps the rule


def _digits(v: str) -> int:
    return sum(c.isdigit() for c in v)


def _letters(v: str) -> int:
    return sum(c.isalpha() for c in v)


def _no_at(v: str) -> bool:
    return "@" not in v


def _no_space(v: str) -> bool:
    return not any(c.isspace() for c in v)


_NAME_SHAPE: tuple[ShapeRule, ...] = (lambda v: _digits(v) == 0, lambda v: _letters(v) > 0, _no_at)
_NUMBER_SHAPE: tuple[ShapeRule, ...] = (lambda v: _digits(v) >= 2, lambda v: len(v.split()) <= 7, _no_at)


@dataclass(frozen=True)
class LabelSpec:
    """What one label is: everything a part of the suite decides about its values, in one entry.

    Shape rules are deliberately loose (each broken one is one fault): they only choose between
    readings of one redaction, e.g. a street before a building number."""

    name: str
    bounds: Bounds  # what one placeholder may cover with `--placeholder-bounds label`
    shape: tuple[ShapeRule, ...] = ()  # rules its values keep, besides those of a name
    # the most words of a value: what one placeholder may cover with `--placeholder-bounds words`
    max_words: int = 7
    # a name of a person or place: no digit, a letter, no @, at most max_words words; with the
    # word bounds a placeholder never covers a digit
    named: bool = False
    # each word of a multi-word value is masked wherever it stands alone too (a surname without
    # the given name, one of two given names)
    parts_alone: bool = False
    # propagation masks a value only right after a masked value of this label, never alone
    # ("12" alone is in every price: a building number only beside its street)
    only_after: str | None = None
    net: Recognizer | None = None  # a rule sure enough to run behind the model (the safety net)
    baseline: Recognizer | None = None  # the regex baseline's rule
    # where two labels' rules find overlapping text, the lower rank wins: an e-mail before the
    # digits in it, an IBAN before the card number its digits hold, any rule before a phone number
    rank: int = 0

    def shape_rules(self) -> tuple[ShapeRule, ...]:
        if not self.named:
            return self.shape
        max_words = self.max_words
        return (*_NAME_SHAPE, lambda v: len(v.split()) <= max_words, *self.shape)


# One entry per label, in the order of their names (reports and counts list them so).
REGISTRY: dict[str, LabelSpec] = {spec.name: spec for spec in (
    LabelSpec("ACCOUNTNUM", Bounds(7, 48, symbols="-", needs=DIGITS),
              shape=(lambda v: _digits(v) >= 5, _no_at),
              net=Recognizer(IBAN, iban_ok), baseline=Recognizer(IBAN), rank=2),
    LabelSpec("BUILDINGNUM", Bounds(2, 16, symbols="-./"),
              shape=(lambda v: v[0].isdigit(), lambda v: len(v) <= 12, lambda v: len(v.split()) <= 2),
              only_after="STREET"),
    LabelSpec("CITY", Bounds(5, 48, digits=False, symbols="'’()-./"), max_words=5, named=True,
              shape=(lambda v: not re.match(r"[A-Z]{2}\b", v),)),  # "AB Den Haag": the postcode's letters
    LabelSpec("CREDITCARDNUMBER", Bounds(4, 28, symbols="-", needs=DIGITS),
              shape=(lambda v: _digits(v) >= 12, lambda v: _letters(v) == 0),
              net=Recognizer(DIGITS_14_TO_19, card_ok), baseline=Recognizer(DIGITS_13_TO_19, digits_luhn_ok), rank=3),
    LabelSpec("DATEOFBIRTH", Bounds(5, 32, symbols=",-./", needs=DIGITS),
              shape=(lambda v: _digits(v) > 0, lambda v: len(v.split()) <= 5),
              baseline=Recognizer(BIRTH_DATE_AFTER_CUE), rank=5),
    LabelSpec("DRIVERLICENSENUM", Bounds(3, 24, symbols="-/", needs=DIGITS), shape=_NUMBER_SHAPE),
    LabelSpec("EMAIL", Bounds(1, 80, symbols="-.@_+"), shape=(lambda v: "@" in v, _no_space),
              net=Recognizer(EMAIL_STRICT), baseline=Recognizer(EMAIL), rank=1),
    LabelSpec("GIVENNAME", Bounds(3, 40, digits=False, symbols="-.'’"), max_words=3, named=True, parts_alone=True),
    LabelSpec("IDCARDNUM", Bounds(3, 20, symbols="-/"), shape=_NUMBER_SHAPE),
    LabelSpec("PASSWORD", Bounds(3, 32, symbols=None), shape=(_no_space,)),
    LabelSpec("SOCIALNUM", Bounds(7, 32, symbols="-/.", needs=DIGITS), shape=_NUMBER_SHAPE,
              baseline=Recognizer(US_SOCIAL), rank=4),
    LabelSpec("STREET", Bounds(6, 56, symbols="'’,-./"),
              shape=(lambda v: _letters(v) > 0, _no_at, lambda v: len(v.split()) <= 7,
                     lambda v: not v.split()[-1].isdigit())),  # a final number is the building's
    LabelSpec("SURNAME", Bounds(4, 48, digits=False, symbols="-'’,"), max_words=4, named=True, parts_alone=True),
    LabelSpec("TAXNUM", Bounds(5, 24, symbols="-/.", needs=DIGITS), shape=_NUMBER_SHAPE),
    LabelSpec("TELEPHONENUM", Bounds(6, 32, symbols="()+-./", needs=DIGITS),
              shape=(lambda v: _digits(v) >= 5, lambda v: _letters(v) <= 3, lambda v: v[0] in "+(0123456789"),
              net=Recognizer(PHONE_INTERNATIONAL, digit_count(9, 15)),
              baseline=Recognizer(PHONE, digit_count(7, 15)), rank=7),
    LabelSpec("USERNAME", Bounds(1, 48, symbols="-._"), shape=(_no_space,)),
    LabelSpec("ZIPCODE", Bounds(3, 14, symbols="-", needs=DIGITS),
              shape=(lambda v: _digits(v.split()[0]) > 0, lambda v: len(v.split()) <= 2, lambda v: len(v) <= 10),
              baseline=Recognizer(POSTCODE_AFTER_CUE), rank=6),
)}
LABELS: tuple[str, ...] = tuple(REGISTRY)
BOUNDS: dict[str, Bounds] = {name: spec.bounds for name, spec in REGISTRY.items()}
_SHAPE_RULES = {name: spec.shape_rules() for name, spec in REGISTRY.items()}


@lru_cache(maxsize=1 << 16)
def shape_faults(label: str, value: str) -> int:
    """How many of its label's shape rules `value` breaks (0 for an unknown label)."""
    value = value.strip()
    if not value:
        return 1
    return sum(not rule(value) for rule in _SHAPE_RULES.get(label, ()))


def ranked(pick: Callable[[LabelSpec], Recognizer | None]) -> list[tuple[str, Recognizer]]:
    """(label, recognizer) of each label that `pick` (`lambda spec: spec.net`) finds a rule in,
    by rank: where two of them find overlapping text, the first wins (`recognizers.find_all`)."""
    specs = sorted((spec for spec in REGISTRY.values() if pick(spec) is not None), key=lambda spec: spec.rank)
    return [(spec.name, pick(spec)) for spec in specs]


# --------------------------------------------------------------------------------------------
# Placeholders

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


# The content of a line that UNFINISHED stands for: all of it, where it has more than whitespace.
UNFINISHED_LINE = re.compile(r"[^\r\n]*\S[^\r\n]*")


def mask_rest(text: str) -> str:
    """`text` with the content of each of its lines replaced by UNFINISHED (line breaks kept)."""
    return UNFINISHED_LINE.sub(UNFINISHED, text)


# --------------------------------------------------------------------------------------------
# Where values may begin and end

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
    """How many times `value` stands in `text` as a word of its own (`word_starts`)."""
    return len(word_starts(text, value))


def word_starts(text: str, value: str) -> list[int]:
    """Where `value` stands in `text` as a word of its own: not inside a longer word or number (a
    masked `12` does not occur in `1234`), where escapes and markup count as separators (`\\nAnna`,
    `q=Anna%20Berg`, `<b>Anna</b>` all hold `Anna`); non-overlapping, left to right. A scan, not a
    regex: compiling a pattern per value costs more than the rest of the scoring."""
    if not value:
        return []
    check_left, check_right = value[0].isalnum() or value[0] == "_", value[-1].isalnum() or value[-1] == "_"
    starts, pos = [], text.find(value)
    while pos >= 0:
        end = pos + len(value)
        if (check_left and pos and not _word_break_before(text, pos)) or (
                check_right and end < len(text) and not _word_break_after(text, end)):
            pos = text.find(value, pos + 1)
        else:
            starts.append(pos)
            pos = text.find(value, end)
    return starts


_ESCAPE_BEFORE = re.compile(rf"(?:{_ESCAPE})$")
_ESCAPE_AFTER = re.compile(_ESCAPE)


def _word_break_before(text: str, pos: int) -> bool:
    c = text[pos - 1]
    return not (c.isalnum() or c == "_") or _ESCAPE_BEFORE.search(text, max(0, pos - 6), pos) is not None


def _word_break_after(text: str, end: int) -> bool:
    c = text[end]
    return not (c.isalnum() or c == "_") or _ESCAPE_AFTER.match(text, end) is not None


class Numbering:
    """The data's numbering rule: per label, 1, 2, ... in order of first appearance of each
    distinct key (a value's text, or a placeholder's original number), skipping the `reserved`
    (label, number) pairs: placeholders the source itself holds (`placeholders_in`), so that a
    new value is never given a number a reader would take for the one already there."""

    def __init__(self, reserved: Iterable[tuple[str, int]] = ()) -> None:
        self._numbers: dict[tuple[str, object], int] = {}
        self._counts: dict[str, int] = {}
        self._reserved = set(reserved)

    def __call__(self, label: str, key: object) -> int:
        if (label, key) not in self._numbers:
            n = self._counts.get(label, 0) + 1
            while (label, n) in self._reserved:
                n += 1
            self._counts[label] = self._numbers[(label, key)] = n
        return self._numbers[(label, key)]


def placeholders_in(text: str) -> set[tuple[str, int]]:
    """The numbered placeholders written in `text` itself, as (label, number)."""
    return {(m.group(1), int(m.group(2))) for m in PLACEHOLDER_RE.finditer(text) if m.group(2)}


def mask(source: str, spans: list[tuple[int, int, str]],
         key: Callable[[str, str], object] | None = None) -> tuple[str, list[Entity]]:
    """`source` with each (start, end, label) span replaced by `[LABEL_n]`, numbered by value
    (the same value keeps its number); the spans must not overlap. Returns (redaction, entities).
    `key(label, value)`, where given, is what numbers a value instead of its text, so that one
    value written in other forms (`Amsterdam`, `amsterdam`; `Jan`, `J.`) keeps one number."""
    number = Numbering()
    out: list[str] = []
    entities: list[Entity] = []
    pos = 0
    for start, end, label in sorted(spans):
        if start < pos or end <= start:
            raise ValueError(f"overlapping or empty span {(start, end, label)}")
        value = source[start:end]
        index = number(label, value if key is None else key(label, value))
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
