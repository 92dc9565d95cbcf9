"""Where a redaction's placeholders lie in its source: the entities it replaced.

Exact (`alignment`, `align`): for a faithful redaction, the source with some spans replaced by
`[LABEL_n]` and nothing else changed. It is exact, so it also decides whether a response is a
faithful redaction of its source (non-PII text unchanged). Where a redaction allows more than one
split (`Via Giuseppe Verdi 12` as `[STREET_1] [BUILDINGNUM_1]`: the literal " " could follow any of
the first three words), the reading is chosen by what each label's values look like
(`labels.shape_faults`: a building number starts with a digit, a name has none...) and where
entities may begin and end (`labels.boundary_faults`); what is still tied goes to the earliest. A
reading that the other side of a comparison has (`prefer`) wins over both: any split a redaction
allows is a correct reading of it.

Robust (`align_robust`): for an output that edited the non-PII text as well.
    Every placeholder-shaped token of the prediction (`[LABEL]`, `[LABEL_n]`, unknown labels like
    `[PERSON]` included, but not a token copied from the source such as `[INFO]`) becomes one
    sentinel character. The source and the collapsed prediction are aligned in two levels:
    difflib.SequenceMatcher(autojunk=False) over word tokens finds anchors, and each stretch
    between anchors is aligned exactly by a small dynamic program over words, single
    punctuation characters and whitespace runs, minimising the characters deleted from the
    source plus the characters inserted, where a placeholder covers a run of one or more source
    tokens (at most 40) at the cost of its faults: 2 per broken shape rule of its label and 1
    per end that falls inside a word or a dotted/hyphenated/@-joined string
    (`labels.shape_faults`, `labels.boundary_faults`); covering none costs 1. So a hallucinated
    placeholder (`... [EMAIL_1]. [PERSON_1] [EMAIL_9]`) covers nothing rather than stealing a
    piece of a correct entity. The source text a placeholder covers, minus surrounding
    whitespace, is its entity span; one covering nothing is a false positive with an empty
    span. Words stay whole: `colour` -> `color` loses the word, not one letter. Stretches over
    40,000 token pairs (an output unrelated to its source) are not aligned: their placeholders
    split the stretch evenly.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable, Iterator

from .labels import (
    LABELS,
    PLACEHOLDER_LIKE_RE,
    PLACEHOLDER_RE,
    Entity,
    boundary_faults,
    placeholder_label,
    shape_faults,
)

Span = tuple[int, int]


# --------------------------------------------------------------------------------------------
# exact

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


# --------------------------------------------------------------------------------------------
# robust

# One private-use character stands for a whole placeholder, so the aligner sees it as one symbol
# that never equals a source character.
SENTINEL = "\ue000"
# Alignment tokens (see `_opcodes`); the sentinel is a "other character" token.
_COARSE_RE = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")
_FINE_RE = re.compile(r"\w+|[^\w\s]|\s+")
_DP_MAX_CELLS = 40_000


def _collapse(source: str, text: str) -> tuple[str, list[tuple[str, int | None]]]:
    """`text` with each placeholder replaced by SENTINEL, and the placeholders' (label, index)."""
    parts: list[str] = []
    tags: list[tuple[str, int | None]] = []
    last = 0
    for m in PLACEHOLDER_LIKE_RE.finditer(text):
        label = placeholder_label(m.group(1))
        if label not in LABELS and m.group(0) in source:
            continue  # bracketed text copied from the source, e.g. `[INFO]` in a log line
        number = m.group(1)[len(label) + 1:]
        parts += [text[last:m.start()], SENTINEL]
        tags.append((label, int(number) if number else None))
        last = m.end()
    parts.append(text[last:])
    return "".join(parts), tags


def _common_affixes(a: str, b: str) -> tuple[int, int]:
    """Lengths of the common prefix and (non-overlapping) common suffix of a and b."""
    limit = min(len(a), len(b))
    p = 0
    while p < limit and a[p] == b[p]:
        p += 1
    s = 0
    while s < limit - p and a[-1 - s] == b[-1 - s]:
        s += 1
    return p, s


Opcode = tuple[str, int, int, int, int]  # SequenceMatcher's (op, i1, i2, j1, j2)


def _offsets(tokens: list[str]) -> list[int]:
    offsets = [0]
    for token in tokens:
        offsets.append(offsets[-1] + len(token))
    return offsets


MAX_COVER = 40  # fine tokens one placeholder may cover in the robust alignment
CoverCost = Callable[[int, int, int], int]  # (source start, source end, prediction position) -> cost


def _dp_opcodes(a: list[str], b: list[str], cover_cost: Callable[[int, int, int], int]) -> list[Opcode]:
    """Cheapest alignment of source tokens `a` with prediction tokens `b` (SENTINEL = placeholder).

    Costs: equal tokens 0; deleting a source token or inserting a literal token costs its
    length; placeholder b[j-1] covering a[k:i] (1 to MAX_COVER tokens) costs cover_cost(k, i, j-1),
    covering none costs 1. Ties go to the earliest placeholder end. O(len(a) * len(b)) plus
    O(len(a) * MAX_COVER) per placeholder: only used on the small stretches between anchors."""
    n, m = len(a), len(b)
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    # back[i][j]: the move that reached (i, j): "=", "-", "+", "0" (empty placeholder) or the
    # start k of the source tokens a[k:i] that placeholder b[j-1] covers
    back: list[list[str | int]] = [[""] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0
    for i in range(n + 1):
        row, prev = cost[i], cost[i - 1] if i else None
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            best, move = inf, ""
            token = b[j - 1] if j else None
            if i and j and token != SENTINEL and a[i - 1] == token:
                best, move = prev[j - 1], "="
            if token == SENTINEL:
                for k in range(max(0, i - MAX_COVER), i):
                    if cost[k][j - 1] < best:  # cheap bound first: the cover cost is never negative
                        c = cost[k][j - 1] + cover_cost(k, i, j - 1)
                        if c < best:
                            best, move = c, k
                if row[j - 1] + 1 < best:
                    best, move = row[j - 1] + 1, "0"
            elif j and row[j - 1] + len(token) < best:
                best, move = row[j - 1] + len(token), "+"
            if i and prev[j] + len(a[i - 1]) < best:
                best, move = prev[j] + len(a[i - 1]), "-"
            row[j], back[i][j] = best, move
    ops: list[Opcode] = []
    i, j = n, m
    while i or j:
        move = back[i][j]
        if move == "=":
            ops.append(("equal", i - 1, i, j - 1, j))
            i, j = i - 1, j - 1
        elif move == "-":
            ops.append(("delete", i - 1, i, j, j))
            i -= 1
        elif move == "+" or move == "0":
            ops.append(("insert", i, i, j - 1, j))
            j -= 1
        else:
            ops.append(("replace", move, i, j - 1, j))
            i, j = move, j - 1
    return ops[::-1]


def _opcodes(a: str, b: str, cover_cost: CoverCost) -> Iterator[Opcode]:
    """Character opcodes of source `a` vs collapsed prediction `b`, in which every non-equal
    block holding a placeholder is that placeholder alone (except past the size guard below).
    `cover_cost(start, end, position)`: the cost of the placeholder at `b[position]` covering
    `a[start:end]`.

    Two levels: SequenceMatcher over coarse tokens (a word or other character with its trailing
    whitespace: a sparse alphabet, so it is fast and anchors on whole words), then each stretch
    between anchors, minus its common prefix and suffix, is aligned exactly (`_dp_opcodes`) over
    fine tokens (words, single other characters, whitespace runs). Words stay whole, so an
    inserted word cannot anchor on a stray letter inside a masked value."""
    a_tokens, b_tokens = _COARSE_RE.findall(a), _COARSE_RE.findall(b)
    a_at, b_at = _offsets(a_tokens), _offsets(b_tokens)
    coarse = SequenceMatcher(None, a_tokens, b_tokens, autojunk=False)
    for op, i1, i2, j1, j2 in coarse.get_opcodes():
        ca1, ca2, cb1, cb2 = a_at[i1], a_at[i2], b_at[j1], b_at[j2]
        if op == "equal":
            yield op, ca1, ca2, cb1, cb2
            continue
        head, tail = _common_affixes(a[ca1:ca2], b[cb1:cb2])
        if head:
            yield "equal", ca1, ca1 + head, cb1, cb1 + head
        ca1, cb1, ca2, cb2 = ca1 + head, cb1 + head, ca2 - tail, cb2 - tail
        fine_a, fine_b = _FINE_RE.findall(a[ca1:ca2]), _FINE_RE.findall(b[cb1:cb2])
        if len(fine_a) * len(fine_b) > _DP_MAX_CELLS:
            # an output unrelated to its source: not worth an exact alignment
            yield "replace", ca1, ca2, cb1, cb2
        else:
            fa, fb = _offsets(fine_a), _offsets(fine_b)

            def cost(k: int, i: int, j: int, ca1=ca1, cb1=cb1, fa=fa, fb=fb) -> int:
                return cover_cost(ca1 + fa[k], ca1 + fa[i], cb1 + fb[j])

            for op2, x1, x2, y1, y2 in _dp_opcodes(fine_a, fine_b, cost):
                yield op2, ca1 + fa[x1], ca1 + fa[x2], cb1 + fb[y1], cb1 + fb[y2]
        if tail:
            yield "equal", ca2, ca2 + tail, cb2, cb2 + tail


def _trimmed(source: str, a: int, b: int) -> tuple[int, int]:
    while a < b and source[a].isspace():  # `[GIVENNAME_1][SURNAME_1]` over `Anna Rossi`
        a += 1
    while b > a and source[b - 1].isspace():
        b -= 1
    return a, b


def align_robust(source: str, text: str) -> tuple[list[Entity], list[Span], int]:
    """(entities, source spans aligned to identical text characters, inserted literal characters)
    of a redaction `text` that may have edited the non-PII text; see the module docstring."""
    collapsed, tags = _collapse(source, text)
    # The common prefix and suffix are matched as they are: cheap, and the anchors a good model
    # leaves. Only the middle goes to the (slower) matcher.
    p, s = _common_affixes(source, collapsed)
    sentinels = [i for i, c in enumerate(collapsed) if c == SENTINEL]

    def cover_cost(start: int, end: int, position: int) -> int:
        a, b = _trimmed(source, start + p, end + p)
        if a == b:
            return 1  # whitespace only: as good as covering nothing
        label = tags[bisect_left(sentinels, position + p)][0]
        return 2 * shape_faults(label, source[a:b]) + boundary_faults(source, a, b)

    entities: list[Entity] = []
    matched: list[Span] = [(0, p)] if p else []
    inserted = 0
    tag_iter = iter(tags)
    for op, i1, i2, j1, j2 in _opcodes(source[p:len(source) - s], collapsed[p:len(collapsed) - s], cover_cost):
        i1, i2, j1, j2 = i1 + p, i2 + p, j1 + p, j2 + p
        if op == "equal":
            matched.append((i1, i2))
            continue
        block = collapsed[j1:j2]
        k = block.count(SENTINEL)
        inserted += len(block) - k
        # k is 0 or 1 except past the size guard, where placeholders share the stretch evenly
        for n in range(k):
            a, b = _trimmed(source, i1 + (i2 - i1) * n // k, i1 + (i2 - i1) * (n + 1) // k)
            label, index = next(tag_iter)
            entities.append(Entity(a, b, label, source[a:b], index))
    if s:
        matched.append((len(source) - s, len(source)))
    return entities, matched, inserted


def complement(spans: list[Span], length: int) -> list[Span]:
    out, pos = [], 0
    for a, b in spans:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < length:
        out.append((pos, length))
    return out
