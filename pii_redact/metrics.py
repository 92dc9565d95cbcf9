r"""Scoring redactions: entities, leaks, text fidelity, format, and CI thresholds.

A record is one JSON object with the source text (`source`, or a `prompt` it is taken from), the
reference redaction (`response`) and the model's redaction (`prediction`), plus optionally
`finish_reason` (`"length"` = the generation hit its token budget).

Entities
    An entity is a character span of the source that a redaction replaces with a placeholder.
    For the reference: the record's exact `entities` ([start, end, LABEL] of the source, which
    prepare_data.py keeps where the data has them), else `labels.alignment`. For a prediction:
    `labels.alignment` when it is a faithful redaction (non-PII text untouched), otherwise the
    robust alignment below. A redaction can allow several splits (`[STREET_1] [BUILDINGNUM_1]`
    over `Via Giuseppe Verdi 12`). A reading the other side has wins (any split a redaction
    allows is a correct reading of it): the prediction's towards the reference's spans and, for a
    reference without exact spans, the reference's towards the prediction's. Otherwise
    `labels.alignment` picks the reading whose values fit their labels' shapes and entity
    boundaries best. `reference_ambiguous_entities` counts the reference entities (without exact
    spans) that no label shape could place.

Robust alignment (`align_robust`)
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

Metrics (`score`; micro-averaged over all samples unless said otherwise)
    exact_match        renumber(prediction.strip()) == renumber(reference.strip()).
    entity.*           match = same (start, end, label). precision = tp / predicted entities,
                       recall = tp / reference entities, f1, f2 = 5PR / (4P + R). Zero division
                       gives 0.0 (sklearn's zero_division=0): no predicted entities -> precision 0.
                       macro_f1 = mean per-label f1 over labels with support > 0.
    span.*             the same with match = same (start, end), label ignored.
    leak_rate          leaked / reference entities. A reference entity leaks when its characters
                       survive in clear where the alignment puts them (a run of at least
                       min(4, n) of its n letters and digits aligned to identical prediction
                       characters: `12` of `12`, `Lena` of `Anna-Lena`, not `io` of `anna@x.io`),
                       or when its value occurs in clear in the prediction more often than in the
                       reference: per distinct value v, leaked(v) = max(in place, min(#entities
                       with value v, occ(prediction, v) - occ(reference, v))), where occ counts
                       occurrences not inside a longer word or number, escapes and markup being
                       separators (`labels.occurrences`: `\nAnna`, `q=Anna%20Berg` hold `Anna`).
                       The subtraction keeps a value that also occurs as non-PII text of the
                       reference from counting; a privacy metric errs toward counting a leak.
    samples_with_leak  fraction of samples with at least one leaked entity.
    text_fidelity      sum(preserved) / sum(non_pii + inserted): non_pii = source characters
                       outside reference entities; preserved = those aligned to an identical
                       prediction character; inserted = literal prediction characters not aligned
                       to an identical source character. Identity and perfect output give 1.0;
                       deleted, over-masked, substituted or inserted text lowers it. 1.0 when the
                       denominator is 0.
    format_valid_rate  predictions with no unknown-label placeholder (`labels.unknown_placeholders`)
                       and no malformed one: a bracketed word (`[` + optional spaces + a word of
                       letters/digits/underscores + optional spaces + optional `]`) that is not an
                       exact `[LABEL]` / `[LABEL_n]` and does not occur in the source, e.g.
                       `[email_1]`, `[ EMAIL ]`, `[EMAIL_1` or a cut-off `[EMAIL_`. An empty
                       prediction is format-valid (it scores 0 recall and 0 fidelity instead).
    unfinished_rate    records with finish_reason == "length". Where such a redaction was completed
                       by masking, `[UNFINISHED]` stands for the rest of each line: its text is
                       neither preserved (fidelity drops) nor a predicted entity, nor a leak.
    per_label          per known label: precision, recall, f1 (null where the label has neither
                       reference nor predicted entities), support (reference entities), predicted.
    confusions         "REF->PRED": count of span matches whose label differs, most frequent first.
    Diagnostics: entity.tp / predicted / support and span.tp (counts), leaked_entities,
    exact_alignment_rate (predictions that are faithful redactions: `labels.align` succeeds),
    reference_misaligned (references that are not, hence aligned robustly: a data problem),
    reference_ambiguous_entities (see Entities).
"""
from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .chat import TEXT_MARKER, source_from_prompt
from .errors import UserError
from .labels import (
    LABELS, PLACEHOLDER_LIKE_RE, PLACEHOLDER_RE, UNFINISHED, Entity, alignment, boundary_faults, occurrences,
    placeholder_label, renumber, shape_faults, unknown_placeholders,
)

# One private-use character stands for a whole placeholder, so the aligner sees it as one symbol
# that never equals a source character.
SENTINEL = "\ue000"
# Candidates for a malformed placeholder; see "format_valid_rate" above.
BRACKETED_WORD_RE = re.compile(r"\[ *[A-Za-z_][A-Za-z0-9_]* *\]?")
# Alignment tokens (see `_opcodes`); the sentinel is a "other character" token.
_COARSE_RE = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")
_FINE_RE = re.compile(r"\w+|[^\w\s]|\s+")
_DP_MAX_CELLS = 40_000

Span = tuple[int, int]


@dataclass
class SampleScore:
    """Everything `score` aggregates about one record."""

    ref_entities: list[Entity]
    pred_entities: list[Entity]
    tp: int                    # span and label match
    span_tp: int               # span match
    leaked: int                # reference entities whose value survives in the prediction
    non_pii: int               # source characters outside reference entities
    preserved: int             # ... of which the prediction kept
    inserted: int              # literal prediction characters not aligned to the source
    exact_match: bool
    format_valid: bool
    unfinished: bool
    exact_alignment: bool      # the prediction is a faithful redaction (labels.align succeeded)
    reference_aligned: bool    # the reference is (otherwise it is aligned robustly)
    reference_ambiguous: int   # reference entities no label shape could place
    confusions: list[tuple[str, str]]  # (reference label, predicted label) of same-span entities

    @property
    def fidelity(self) -> float:
        denominator = self.non_pii + self.inserted
        return self.preserved / denominator if denominator else 1.0

    @property
    def errors(self) -> int:
        """Missed + spurious entities + leaks + a malformed output: what ranks worst examples."""
        missed = len(self.ref_entities) - self.tp
        spurious = len(self.pred_entities) - self.tp
        return missed + spurious + self.leaked + (not self.format_valid)


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


def _complement(spans: list[Span], length: int) -> list[Span]:
    out, pos = [], 0
    for a, b in spans:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < length:
        out.append((pos, length))
    return out


def _overlap(xs: list[Span], ys: list[Span]) -> int:
    """Total length of the intersection of two sorted lists of disjoint spans."""
    total = i = j = 0
    while i < len(xs) and j < len(ys):
        total += max(0, min(xs[i][1], ys[j][1]) - max(xs[i][0], ys[j][0]))
        if xs[i][1] <= ys[j][1]:
            i += 1
        else:
            j += 1
    return total


def _survives(source: str, entity: Entity, matched: list[Span]) -> bool:
    """Whether a run of at least min(4, n) of the entity's n letters and digits is aligned to
    identical prediction characters: the value, or a telling piece of it, left in place."""
    alnum = [i for i in range(entity.start, entity.end) if source[i].isalnum()]
    if not alnum:
        return False
    need = min(4, len(alnum))
    run = 0
    for a, b in matched:
        if b <= entity.start or a >= entity.end:
            continue
        for i in range(max(a, entity.start), min(b, entity.end)):
            run = run + 1 if source[i].isalnum() else (run if source[i] in "-'. " and run else 0)
            if source[i].isalnum() and run >= need:
                return True
        run = 0  # a gap in the alignment ends the run
    return False


def _leaked(source: str, reference: str, prediction: str, entities: list[Entity], matched: list[Span]) -> int:
    """Reference entities leaked in the prediction: left in place, or their value occurring in
    clear more often than the reference has it (see the module docstring)."""
    by_value: dict[str, list[Entity]] = {}
    for e in entities:
        if e.value.strip():
            by_value.setdefault(e.value, []).append(e)
    leaked = 0
    for value, group in by_value.items():
        in_place = sum(_survives(source, e, matched) for e in group)
        searched = 0
        # plain counting first: the boundary-checking scan only runs for values that may leak
        if prediction.count(value) > reference.count(value):
            searched = min(len(group), max(0, occurrences(prediction, value) - occurrences(reference, value)))
        leaked += max(in_place, searched)
    return leaked


def format_valid(source: str, prediction: str) -> bool:
    """No unknown-label and no malformed placeholder; see the module docstring."""
    if unknown_placeholders(source, prediction):
        return False
    return all(
        PLACEHOLDER_RE.fullmatch(m.group(0)) or PLACEHOLDER_LIKE_RE.fullmatch(m.group(0))
        or m.group(0) in source
        for m in BRACKETED_WORD_RE.finditer(prediction)
    )


def _reference(source: str, reference: str, exact: list[Entity] | None) -> tuple[list[Entity], int, bool]:
    """(entities, how many are ambiguous, whether the reference is a faithful redaction)."""
    if exact is not None:
        return exact, 0, True
    found = alignment(source, reference)
    if found is None:
        return align_robust(source, reference)[0], 0, False
    return found.entities, found.ambiguous, True


def score_sample(source: str, reference: str, prediction: str, *, unfinished: bool = False,
                 reference_entities: list[Entity] | None = None) -> SampleScore:
    """Entities, matches, leaks and fidelity counts of one prediction (definitions above).
    `reference_entities`: the reference's exact spans, where the data has them."""
    ref_entities, ambiguous, reference_aligned = _reference(source, reference, reference_entities)
    found = alignment(source, prediction, prefer=ref_entities)
    exact_alignment = found is not None
    if found is None:
        pred_entities, matched, inserted = align_robust(source, prediction)
        # what UNFINISHED masks is not matched (fidelity pays for it) and not a claimed entity
        pred_entities = [e for e in pred_entities if e.label != UNFINISHED[1:-1]]
    else:  # a faithful redaction keeps every character outside its entities
        pred_entities, inserted = found.entities, 0
        matched = _complement([(e.start, e.end) for e in pred_entities], len(source))
    if reference_entities is None and reference_aligned:  # a split the prediction has is a correct one
        ref_entities = alignment(source, reference, prefer=pred_entities).entities

    ref_spans = [(e.start, e.end) for e in ref_entities]
    ref_labelled = {(e.start, e.end): e.label for e in ref_entities}
    pred_labelled = {(e.start, e.end): e.label for e in pred_entities}
    shared = ref_labelled.keys() & pred_labelled.keys()
    confusions = [(ref_labelled[k], pred_labelled[k]) for k in sorted(shared)
                  if ref_labelled[k] != pred_labelled[k]]
    ref_pii = sum(b - a for a, b in ref_spans)
    matched_chars = sum(b - a for a, b in matched)
    return SampleScore(
        ref_entities=ref_entities,
        pred_entities=pred_entities,
        tp=len(shared) - len(confusions),
        span_tp=len(shared),
        leaked=_leaked(source, reference, prediction, ref_entities, matched),
        non_pii=len(source) - ref_pii,
        preserved=matched_chars - _overlap(matched, ref_spans),
        inserted=inserted,
        exact_match=renumber(prediction.strip()) == renumber(reference.strip()),
        format_valid=format_valid(source, prediction),
        unfinished=unfinished,
        exact_alignment=exact_alignment,
        reference_aligned=reference_aligned,
        reference_ambiguous=ambiguous,
        confusions=confusions,
    )


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _prf(tp: int, n_pred: int, n_ref: int) -> dict[str, float]:
    p, r = _ratio(tp, n_pred), _ratio(tp, n_ref)
    return {"precision": p, "recall": r, "f1": _ratio(2 * p * r, p + r),
            "f2": _ratio(5 * p * r, 4 * p + r)}


def record_source(record: dict[str, Any]) -> str | None:
    """The text a record redacts: its `source`, else the text inside its `prompt`."""
    if isinstance(record.get("source"), str):
        return record["source"]
    if isinstance(record.get("prompt"), str):
        return source_from_prompt(record["prompt"])
    return None


def record_entities(record: dict[str, Any], source: str) -> list[Entity] | None:
    """The exact reference spans a record carries (`entities`: [[start, end, LABEL], ...]), or None."""
    spans = record.get("entities")
    if spans is None:
        return None
    from .data import check_spans

    checked = check_spans(source, record["response"], spans)
    if isinstance(checked, str):
        raise UserError(f"{record.get('where') or 'record ' + str(record.get('index', '?'))}: {checked}")
    return checked


def score(records: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], list[SampleScore]]:
    """metrics.json content and per-record scores (same order) for records with a source (or
    prompt), `response` and `prediction`, as `read_predictions` returns them."""
    samples = []
    for i, r in enumerate(records):
        source = record_source(r)
        if source is None:
            raise UserError(f"record {i}: no source text (a 'source', or a 'prompt' with a {TEXT_MARKER!r} marker)")
        samples.append(score_sample(source, r["response"], r["prediction"],
                                    unfinished=r.get("finish_reason") == "length",
                                    reference_entities=record_entities(r, source)))
    if not samples:
        raise UserError("no predictions to score")
    return aggregate(samples), samples


def _per_label(samples: list[SampleScore]) -> dict[str, dict[str, Any]]:
    label_tp: Counter[str] = Counter()
    label_pred: Counter[str] = Counter(e.label for s in samples for e in s.pred_entities)
    label_ref: Counter[str] = Counter(e.label for s in samples for e in s.ref_entities)
    for s in samples:
        ref = {(e.start, e.end, e.label) for e in s.ref_entities}
        label_tp.update(e.label for e in s.pred_entities if (e.start, e.end, e.label) in ref)
    per_label: dict[str, dict[str, Any]] = {}
    for label in LABELS:
        stats = _prf(label_tp[label], label_pred[label], label_ref[label])
        defined = label_pred[label] or label_ref[label]
        per_label[label] = {
            **{k: stats[k] if defined else None for k in ("precision", "recall", "f1")},
            "support": label_ref[label],
            "predicted": label_pred[label],
        }
    return per_label


GROUP_METRICS = ("n_samples", "entity_f1", "leak_rate", "samples_with_leak", "exact_alignment_rate", "text_fidelity")


def by_group(samples: list[SampleScore], groups: list[str]) -> dict[str, dict[str, float]]:
    """The headline metrics per group (e.g. per genre), largest group first."""
    members: dict[str, list[SampleScore]] = {}
    for sample, group in zip(samples, groups):
        members.setdefault(group, []).append(sample)
    out = {}
    for group, subset in sorted(members.items(), key=lambda kv: -len(kv[1])):
        m = aggregate(subset)
        out[group] = {"n_samples": m["n_samples"], "entity_f1": m["entity"]["f1"], "leak_rate": m["leak_rate"],
                      "samples_with_leak": m["samples_with_leak"], "exact_alignment_rate": m["exact_alignment_rate"],
                      "text_fidelity": m["text_fidelity"]}
    return out


def aggregate(samples: list[SampleScore]) -> dict[str, Any]:
    """The metrics of a set of scored samples (see the module docstring)."""
    n = len(samples)
    tp = sum(s.tp for s in samples)
    span_tp = sum(s.span_tp for s in samples)
    n_pred = sum(len(s.pred_entities) for s in samples)
    n_ref = sum(len(s.ref_entities) for s in samples)
    leaked = sum(s.leaked for s in samples)
    per_label = _per_label(samples)
    supported = [v["f1"] for v in per_label.values() if v["support"]]
    non_pii = sum(s.non_pii for s in samples)
    inserted = sum(s.inserted for s in samples)
    preserved = sum(s.preserved for s in samples)
    span = _prf(span_tp, n_pred, n_ref)
    return {
        "n_samples": n,
        "exact_match": sum(s.exact_match for s in samples) / n,
        "entity": {**_prf(tp, n_pred, n_ref),
                   "macro_f1": sum(supported) / len(supported) if supported else 0.0,
                   "tp": tp, "predicted": n_pred, "support": n_ref},
        "span": {"precision": span["precision"], "recall": span["recall"], "f1": span["f1"],
                 "tp": span_tp},
        "leak_rate": _ratio(leaked, n_ref),
        "leaked_entities": leaked,
        "samples_with_leak": sum(s.leaked > 0 for s in samples) / n,
        "text_fidelity": preserved / (non_pii + inserted) if non_pii + inserted else 1.0,
        "format_valid_rate": sum(s.format_valid for s in samples) / n,
        "unfinished_rate": sum(s.unfinished for s in samples) / n,
        "exact_alignment_rate": sum(s.exact_alignment for s in samples) / n,
        "reference_misaligned": sum(not s.reference_aligned for s in samples),
        "reference_ambiguous_entities": sum(s.reference_ambiguous for s in samples),
        "per_label": per_label,
        "confusions": dict(Counter(f"{a}->{b}" for s in samples for a, b in s.confusions).most_common()),
    }


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Records of a predictions JSONL, each with `source` filled in (from `prompt` if needed).

    Raises UserError naming the first malformed line as FILE:LINE and how many others there are.
    """
    from .files import BadRecord, iter_records

    records: list[dict[str, Any]] = []
    errors: list[str] = []
    for index, record in iter_records(path):
        where = f"{path}:{index + 1}"
        if isinstance(record, BadRecord):
            errors.append(str(record))
            continue
        if not isinstance(record, dict):
            errors.append(f"{where}: expected a JSON object")
            continue
        missing = [k for k in ("response", "prediction") if not isinstance(record.get(k), str)]
        source = record_source(record)
        if source is None:
            missing.insert(0, f"source or prompt (with a {TEXT_MARKER!r} marker)")
        if missing:
            errors.append(f"{where}: missing or non-string {', '.join(missing)}")
            continue
        tags = [k for k in ("language", "genre", "template") if record.get(k) is not None and not isinstance(record[k], str)]
        if tags:
            errors.append(f"{where}: '{tags[0]}' must be a string, not {type(record[tags[0]]).__name__}")
            continue
        try:
            record_entities({**record, "where": where}, source)
        except UserError as exc:
            errors.append(str(exc))
            continue
        records.append({**record, "source": source})
    if errors:
        more = f" (and {len(errors) - 1} more malformed lines)" if len(errors) > 1 else ""
        raise UserError(errors[0] + more)
    if not records:
        raise UserError(f"{path}: no predictions")
    return records


_THRESHOLD_RE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(>=|<=|=)\s*(\S+)\s*$")
# For these, `METRIC=VALUE` gates from above: the metric must be at most VALUE.
LOWER_IS_BETTER = frozenset({"leak_rate", "samples_with_leak", "leaked_entities",
                             "unfinished_rate", "reference_misaligned"})


def lookup(metrics: dict[str, Any], dotted: str) -> Any:
    """`per_label.EMAIL.f1` -> metrics["per_label"]["EMAIL"]["f1"], or KeyError."""
    value: Any = metrics
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(dotted)
        value = value[key]
    return value


def check_thresholds(metrics: dict[str, Any], specs: Iterable[str], *,
                     validate_only: bool = False) -> list[str]:
    """Failed gates, one message each, for specs `METRIC=VALUE` with METRIC a dotted path into
    metrics.json (`entity.f1`, `per_label.EMAIL.recall`): the metric must be at least VALUE, or
    at most VALUE for LOWER_IS_BETTER metrics; `METRIC>=VALUE` / `METRIC<=VALUE` say it
    explicitly. Raises UserError on bad syntax or a path that is not a numeric metric.
    `validate_only` checks the specs against the metrics schema (call it before a long run)."""
    # a trivial sample has every key a real score has (confusions aside)
    schema = score([{"source": "", "response": "", "prediction": ""}])[0] if validate_only else metrics
    failures = []
    for spec in specs:
        m = _THRESHOLD_RE.match(spec)
        try:
            if not m:
                raise ValueError
            name, op, limit = m.group(1), m.group(2), float(m.group(3))
            if not math.isfinite(limit):  # nan compares false with everything: a gate that never fails
                raise ValueError
        except ValueError:
            raise UserError(f"--fail-under {spec!r}: expected METRIC=VALUE, e.g. entity.f1=0.9 "
                            "or leak_rate=0.01") from None
        try:
            value = lookup(schema, name)
        except KeyError:
            parts = name.split(".")
            if len(parts) == 3 and parts[0] in ("by_language", "by_genre") and parts[2] in GROUP_METRICS:
                if not validate_only:  # a gate on a group the data does not have fails, never passes
                    failures.append(f"{name}: no group {parts[1]!r} in this evaluation's data")
                continue
            value = {}  # reported just below
        # None: a per-label score with nothing to score, a metric all the same
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            scalars = [k for k, v in schema.items() if isinstance(v, (int, float))]
            raise UserError(f"--fail-under: no numeric metric {name!r} (try {', '.join(scalars)}, "
                            "entity.f1, span.f1, per_label.EMAIL.f1, ...)")
        if validate_only:
            continue
        at_most = op == "<=" or (op == "=" and name.split(".")[-1] in LOWER_IS_BETTER)
        if value is None:
            failures.append(f"{name} is undefined (no reference or predicted entities)")
        elif (value > limit) if at_most else (value < limit):
            failures.append(f"{name} = {value:.4f} is {'above' if at_most else 'below'} {limit:g}")
    return failures
