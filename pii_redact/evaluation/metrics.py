r"""Scoring redactions: entities, leaks, text fidelity, format, and CI thresholds.

What is scored is a `Prediction` (`inference.prediction`, a predictions.jsonl row): the source
text, the reference redaction (`response`) and the model's redaction (after what follows
generation, `Prediction.redaction`), plus its finish reason (`"length"` = the generation hit its
token budget) and the reference's exact spans where the data has them.

Entities
    An entity is a character span of the source that a redaction replaces with a placeholder.
    For the reference: the record's exact `entities` ([start, end, LABEL] of the source, which
    prepare_data.py keeps where the data has them), else `alignment.alignment`. For a prediction:
    `alignment.alignment` when it is a faithful redaction (non-PII text untouched), otherwise the
    robust alignment below. A redaction can allow several splits (`[STREET_1] [BUILDINGNUM_1]`
    over `Via Giuseppe Verdi 12`). A reading the other side has wins (any split a redaction
    allows is a correct reading of it): the prediction's towards the reference's spans and, for a
    reference without exact spans, the reference's towards the prediction's. Otherwise
    `alignment.alignment` picks the reading whose values fit their labels' shapes and entity
    boundaries best. `reference_ambiguous_entities` counts the reference entities (without exact
    spans) that no label shape could place.

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
    exact_alignment_rate (predictions that are faithful redactions: `alignment.align` succeeds),
    reference_misaligned (references that are not, hence aligned robustly: a data problem),
    reference_ambiguous_entities (see Entities).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..core.alignment import Span, align_robust, alignment, complement
from ..core.errors import UserError
from ..core.labels import (
    LABELS,
    PLACEHOLDER_LIKE_RE,
    PLACEHOLDER_RE,
    UNFINISHED,
    Entity,
    occurrences,
    renumber,
    unknown_placeholders,
)
from ..inference.prediction import Prediction

# Candidates for a malformed placeholder; see "format_valid_rate" above.
BRACKETED_WORD_RE = re.compile(r"\[ *[A-Za-z_][A-Za-z0-9_]* *\]?")


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
    exact_alignment: bool      # the prediction is a faithful redaction (alignment.align succeeded)
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
        matched = complement([(e.start, e.end) for e in pred_entities], len(source))
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


def score(predictions: Iterable[Prediction]) -> tuple[dict[str, Any], list[SampleScore]]:
    """metrics.json content and per-prediction scores (same order)."""
    samples = [score_sample(p.source, p.response, p.redaction, unfinished=p.unfinished, reference_entities=p.entities)
               for p in predictions]
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


def read_predictions(path: str | Path) -> list[Prediction]:
    """The predictions of a predictions JSONL, each row checked (`Prediction.from_row`).

    Raises UserError naming the first malformed line as FILE:LINE and how many others there are.
    """
    from ..core.files import BadRecord, iter_records

    predictions: list[Prediction] = []
    errors: list[str] = []
    for index, row in iter_records(path):
        if isinstance(row, BadRecord):
            errors.append(str(row))
            continue
        try:
            predictions.append(Prediction.from_row(row, f"{path}:{index + 1}"))
        except UserError as exc:
            errors.append(str(exc))
    if errors:
        more = f" (and {len(errors) - 1} more malformed lines)" if len(errors) > 1 else ""
        raise UserError(errors[0] + more)
    if not predictions:
        raise UserError(f"{path}: no predictions")
    return predictions


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
    schema = score([Prediction("", "", "")])[0] if validate_only else metrics
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
