"""What shape a generated text has: free prose, a single sentence, or laid out (fields, markup,
speakers, address blocks), and the shares of a set of records by shape (`--stats`).

Free prose is running text a person writes: not of a genre made of fields or markup (forms,
HTML, JSON, CSV, logs), no markup (tags, braces, `key=value`, tabs, `|`), no
line that opens with a label or speaker and a colon (`Email: ...`, `CALLER: ...`, `09:14 ...`), no
bullet or numbered lines, and no line that holds nothing but PII values and punctuation (an
address block, a name as a heading), except in a signature: the last three lines after a line
ending in a comma (`Best regards,` / `Anna Jansen` / `+31 6 1234 5678`); a first line ending in a
colon is a salutation (`Estimado Sr. Ruiz:`), not a field. Greetings and
signatures are prose, because that is where names stand in real mail.
A single sentence is free prose on one line with one sentence end at most (`Mr.`, `J.` and other
short capitalised abbreviations do not end a sentence).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from ..core.labels import REGISTRY, Entity
from .genres import STRUCTURED

PROSE, SENTENCE, LAID_OUT = "prose", "sentence", "laid_out"
# names of people and places (`LabelSpec.named`): the values the prose share of names counts
NAMED_LABELS = frozenset(name for name, spec in REGISTRY.items() if spec.named)

_MARKUP = re.compile(r"<[/a-zA-Z][^<>]*>|[{}|\t]|\w=\S")
# a label or speaker before a colon early in a line, a time stamp, a bullet or a numbered item
_FIELD_LINE = re.compile(r"^(?:[^\n.!?]{1,40}?:(?:[ \t]|$)|\d{1,2}:\d{2}\s|[-*•·]\s|\d+\.\s)")
# a sentence end: punctuation, closing quotes, space, then the next sentence
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”»)]*\s+(?=\S)")
# Mr. / Sra. / J. / dhr. / int. / the 3. of a German date
_ABBREVIATION = re.compile(r"(?:^|[\s(])(?:[A-ZÀ-Ý]\w{0,2}|[a-zà-ÿ]|\d{1,2}|dhr|mevr|dr|ca|int|appt?|apto|nr|tel|geb|bzw|usw)\.$")
SIGNATURE_LINES = 3
LAID_OUT_KINDS = frozenset(STRUCTURED) | {"log"}  # genres written as fields, markup or log lines


def _value_only(line: str, start: int, entities: list[Entity]) -> bool:
    """Whether a line's text is nothing but PII values, spaces and punctuation."""
    end = start + len(line)
    rest = list(line)
    for e in entities:
        if e.start < end and e.end > start:
            for i in range(max(e.start, start), min(e.end, end)):
                rest[i - start] = " "
    return not any(c.isalnum() for c in rest) and bool(line.strip())


def is_free_prose(source: str, entities: list[Entity], kind: str) -> bool:
    if kind in LAID_OUT_KINDS or _MARKUP.search(source):
        return False
    lines, starts, pos = source.split("\n"), [], 0
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    filled = [i for i, line in enumerate(lines) if line.strip()]
    # the signature: what follows the last line ending in a comma, if it is short
    commas = [i for i in filled if lines[i].rstrip().endswith(",")]
    signature_from = commas[-1] + 1 if commas and len([j for j in filled if j > commas[-1]]) <= SIGNATURE_LINES \
        else len(lines)
    for i in filled:
        salutation = i == filled[0] and lines[i].rstrip().endswith(":")  # "Estimado Sr. Ruiz:"
        if _FIELD_LINE.match(lines[i]) and not salutation:
            return False
        if i < signature_from and _value_only(lines[i], starts[i], entities):
            return False
    return True


def sentence_count(text: str) -> int:
    """How many sentences a one-line text holds (an abbreviation's full stop ends none)."""
    text, count = text.strip(), 1
    for m in _SENTENCE_END.finditer(text):
        if not _ABBREVIATION.search(text, 0, m.start()):
            count += 1
    return count


def shape(source: str, entities: list[Entity], kind: str) -> str:
    """SENTENCE, PROSE (free prose of more than one sentence or line) or LAID_OUT, for a text of
    genre `kind` and its PII spans."""
    if not is_free_prose(source, entities, kind):
        return LAID_OUT
    return SENTENCE if "\n" not in source and sentence_count(source) == 1 else PROSE


@dataclass
class Shares:
    """The shares the third version of the generated set is built to raise."""

    free_prose: float  # records of free prose (single sentences included)
    sentences: float   # records of a single sentence
    names_in_prose: float  # GIVENNAME, SURNAME and CITY values that stand in free prose

    def __str__(self) -> str:
        return (f"free prose {self.free_prose:.1%}, single sentences {self.sentences:.1%}, "
                f"names and cities in prose {self.names_in_prose:.1%}")


def shares(records: Iterable[tuple[str, list[Entity], str]]) -> Shares:
    """The shares of (source, entities, genre) records by shape."""
    total = prose = sentences = names = names_in_prose = 0
    for source, entities, kind in records:
        form = shape(source, entities, kind)
        n = sum(e.label in NAMED_LABELS for e in entities)
        total, names = total + 1, names + n
        if form != LAID_OUT:
            prose, names_in_prose = prose + 1, names_in_prose + n
            sentences += form == SENTENCE
    return Shares(prose / max(total, 1), sentences / max(total, 1), names_in_prose / max(names, 1))
