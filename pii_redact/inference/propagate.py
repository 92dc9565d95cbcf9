"""Whole-document consistency: what a redaction masked once is masked everywhere, under one numbering.

A model that masks "Anna Schmidt" in a greeting often leaves "Mrs Schmidt" in clear three lines
later, or masks a phone number once and copies it the second time; and a long file redacted in
pieces restarts its numbering in every piece. `consistent` takes the redactions of a document's
pieces (one piece for an ordinary text) and

  * propagates (unless told not to): every other occurrence, in the clear text of any piece, of a
    value some piece masked gets that value's placeholder, and so does each word of a multi-word
    name (a surname alone, one given name of "María José": `labels.LabelSpec.parts_alone`) and
    a building number right after its masked street (`LabelSpec.only_after`). Values too short
    or too plain to tell a person are not propagated alone: words under three characters,
    numbers under four digits, building numbers apart from their street. Occurrences are whole
    words (`labels.word_starts`), as written or in capitals; a common word (`core.common_words`:
    `the`, `May`) is never looked for alone, whatever the model masked, so one false positive or
    a person named May cannot mask a whole document;
  * numbers placeholders once for the document: per label, 1, 2, ... in order of first
    appearance, the same value keeping its number in every piece and different values never
    sharing one (a surname found alone is numbered as that surname wherever it stands), and
    never a number a placeholder written in the source itself already has.

It works on faithful redactions (`alignment.align` must read them), unfinished ones included
(a redaction of the text's start, then `[UNFINISHED]` for each line of the rest, as faithful
decoding completes them); a piece it cannot read (free decoding that rewrote the text) is left as
it is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.alignment import align
from ..core.common_words import is_common_word
from ..core.labels import (
    REGISTRY,
    UNFINISHED,
    UNFINISHED_LINE,
    Numbering,
    can_end,
    mask_rest,
    placeholders_in,
    word_starts,
)

# What propagation reads of the labels (`labels.REGISTRY`): whose words are masked alone too, and
# which label's values are masked only right after a value of another (label -> that label).
PARTS_ALONE = frozenset(name for name, spec in REGISTRY.items() if spec.parts_alone)
FOLLOWS = {name: spec.only_after for name, spec in REGISTRY.items() if spec.only_after}
UNFINISHED_LABEL = UNFINISHED[1:-1]  # a segment that UNFINISHED stands for: masked, not an entity
_SEPARATOR_ONLY = re.compile(r"[ \t,]{1,3}")


@dataclass
class Segment:
    """A stretch of a source text as its redaction shows it: in clear, or covered by one placeholder."""

    text: str                  # the source text this segment covers
    label: str | None = None   # None: clear text
    number: int | None = None  # the placeholder's number, as written (None: `[LABEL]`)
    identity: tuple | None = None  # what it stands for: (label, value) of the value first masked

    def render(self) -> str:
        if self.label is None:
            return self.text
        return f"[{self.label}]" if self.number is None else f"[{self.label}_{self.number}]"


def segments(source: str, redaction: str) -> list[Segment] | None:
    """The redaction as clear and masked segments of its source, or None if it is not a faithful
    redaction of it (complete, or completed by masking its rest: `_unfinished_segments`)."""
    found = _faithful_segments(source, redaction)
    if found is None and UNFINISHED in redaction:  # (a source may hold the text `[UNFINISHED]` itself)
        found = _unfinished_segments(source, redaction)
    return found


def _faithful_segments(source: str, redaction: str) -> list[Segment] | None:
    entities = align(source, redaction)
    if entities is None:
        return None
    out, pos = [], 0
    for e in entities:
        if e.start > pos:
            out.append(Segment(source[pos:e.start]))
        out.append(Segment(e.value, e.label, e.index, (e.label, e.value)))
        pos = e.end
    if pos < len(source):
        out.append(Segment(source[pos:]))
    return out


def _unfinished_segments(source: str, redaction: str) -> list[Segment] | None:
    """Segments of an unfinished faithful redaction: a faithful redaction of `source[:p]`, then
    `mask_rest(source[p:])`, each line's content a segment that UNFINISHED stands for. The cut
    `p` is the first one that reads, and where the head ends in a placeholder, one where an
    entity may end (what `constraint.Constraint.complete` chooses)."""
    k = redaction.find(UNFINISHED)
    while k >= 0:
        head, tail = redaction[:k], redaction[k:]
        ends_masked = head.endswith("]")
        for p in _cuts(source, tail):
            if ends_masked and not can_end(source, p):
                continue
            found = _faithful_segments(source[:p], head) if head else []
            if found is not None:
                return found + _unfinished_lines(source[p:])
        k = redaction.find(UNFINISHED, k + 1)
    return None


def _cuts(source: str, tail: str) -> list[int]:
    """The positions p, ascending, with `mask_rest(source[p:]) == tail`: p lies on the line of the
    source that the tail's first line masks, and the source's lines after it give the tail's
    others (compared once, so a long line costs one pass, not one per position)."""
    breaks = [i for i, c in enumerate(source) if c in "\r\n"]
    n = sum(c in "\r\n" for c in tail)
    if n > len(breaks):
        return []
    low = breaks[len(breaks) - n - 1] + 1 if n < len(breaks) else 0
    eol = breaks[len(breaks) - n] if n else len(source)
    rest = mask_rest(source[eol:])
    if not tail.endswith(rest):
        return []
    first = tail[:len(tail) - len(rest)]
    return [p for p in range(low, eol + 1)
            if (first == UNFINISHED if source[p:eol].strip() else first == source[p:eol])]


def _unfinished_lines(rest: str) -> list[Segment]:
    out, pos = [], 0
    for m in UNFINISHED_LINE.finditer(rest):
        if m.start() > pos:
            out.append(Segment(rest[pos:m.start()]))
        out.append(Segment(m.group(0), UNFINISHED_LABEL))
        pos = m.end()
    return out + ([Segment(rest[pos:])] if pos < len(rest) else [])


def consistent(pieces: list[tuple[str, str]], *, propagate: bool = True) -> tuple[list[str], int]:
    """(redactions of the pieces with propagation and one numbering, entities propagation added)."""
    parsed, added = consistent_segments(pieces, propagate=propagate)
    return [redaction if piece is None else render(piece) for (_, redaction), piece in zip(pieces, parsed)], added


def consistent_segments(pieces: list[tuple[str, str]], *, propagate: bool = True
                        ) -> tuple[list[list[Segment] | None], int]:
    """`consistent` as segments (None for a piece left as it is). Segments say exactly which
    source text each placeholder covers, which the rendered text alone may not (`[GIVENNAME_1]
    [SURNAME_1]` over three words allows two readings)."""
    parsed = [segments(source, redaction) for source, redaction in pieces]
    added = 0
    if propagate:
        known = _known_values([s for s in parsed if s is not None])
        for k, piece in enumerate(parsed):
            if piece is not None:
                parsed[k], n = _propagated(piece, known)
                added += n
    number = Numbering(reserved=set().union(*(placeholders_in(source) for source, _ in pieces)))
    for piece in parsed:
        for segment in piece or ():
            if segment.label not in (None, UNFINISHED_LABEL):
                segment.number = number(segment.label, segment.identity)
    return parsed, added


def render(piece: list[Segment]) -> str:
    return "".join(segment.render() for segment in piece)


def _telling(label: str, value: str) -> bool:
    """Whether a masked value may be looked for on its own elsewhere."""
    letters, digits = sum(c.isalpha() for c in value), sum(c.isdigit() for c in value)
    if label == UNFINISHED_LABEL or label in FOLLOWS:
        return False  # "12" alone is in every price: only beside its street
    if is_common_word(value):
        return False  # a masked "the" or a person named May: looking for it would mask every one
    if digits and not letters:
        return digits >= 4
    return len(value) >= 3


def _known_values(pieces: list[list[Segment]]) -> dict[str, Segment]:
    """value text -> the placeholder it gets where found in clear: the label of the segment it
    was first seen in (or is a part of, for names), numbered as that value."""
    known: dict[str, Segment] = {}
    for piece in pieces:
        for segment in piece:
            if segment.label is None:
                continue
            value = segment.text.strip()
            if _telling(segment.label, value):
                known.setdefault(value, Segment(value, segment.label, None, (segment.label, value)))
            if segment.label in PARTS_ALONE and len(value.split()) > 1:
                for part in re.split(r"[\s-]+", value):
                    if len(part) >= 3 and part[:1].isupper() and part.isalpha() and not is_common_word(part):
                        known.setdefault(part, Segment(part, segment.label, None, (segment.label, part)))
    return known


def _variants(value: str) -> list[str]:
    """How a value may be written elsewhere: as it is, or in capitals (a header, a signature)."""
    return list(dict.fromkeys([value, value.upper()]))


def _propagated(piece: list[Segment], known: dict[str, Segment]) -> tuple[list[Segment], int]:
    """The piece with every clear occurrence of a known value masked (longest values first)."""
    candidates = sorted(((variant, segment) for value, segment in known.items() for variant in _variants(value)),
                        key=lambda vs: -len(vs[0]))
    out, added = [], 0
    for segment in piece:
        if segment.label is not None:
            out.append(segment)
            continue
        found = _matches(segment.text, candidates)
        added += len(found)
        out += _split(segment.text, found)
    return _with_followers(out, piece, added)


def _matches(text: str, candidates: list[tuple[str, Segment]]) -> list[tuple[int, int, Segment]]:
    """Non-overlapping (start, end, segment it stands for) of the candidates in `text`."""
    taken: list[tuple[int, int, Segment]] = []
    for variant, segment in candidates:
        for start in word_starts(text, variant):
            end = start + len(variant)
            if all(end <= a or start >= b for a, b, _ in taken):
                taken.append((start, end, segment))
    return sorted(taken, key=lambda t: t[0])


def _split(text: str, found: list[tuple[int, int, Segment]]) -> list[Segment]:
    out, pos = [], 0
    for start, end, segment in found:
        if start > pos:
            out.append(Segment(text[pos:start]))
        out.append(Segment(text[start:end], segment.label, segment.number, segment.identity))
        pos = end
    if pos < len(text):
        out.append(Segment(text[pos:]))
    return out


def _with_followers(out: list[Segment], original: list[Segment], added: int) -> tuple[list[Segment], int]:
    """A value masked right after the value it follows in the original (`LabelSpec.only_after`:
    "[STREET_1] [BUILDINGNUM_1]") is masked where that value was propagated and the same text
    follows it."""
    followers = {}  # identity of a masked value -> the masked value right after it that follows it
    for a, sep, b in zip(original, original[1:], original[2:]):
        if a.label is not None and FOLLOWS.get(b.label) == a.label and sep.label is None and _SEPARATOR_ONLY.fullmatch(sep.text):
            followers[a.identity] = b
    if not followers:
        return out, added
    result: list[Segment] = []
    for segment in out:
        follower = followers.get(result[-1].identity) if result and segment.label is None else None
        match = re.match(r"([ \t,]{1,3})" + re.escape(follower.text) + r"(?!\w)", segment.text) if follower else None
        if match:
            result += [Segment(match.group(1)), Segment(follower.text, follower.label, follower.number, follower.identity)]
            rest = segment.text[match.end():]
            result += [Segment(rest)] if rest else []
            added += 1
        else:
            result.append(segment)
    return result, added
