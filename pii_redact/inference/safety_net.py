"""The safety net: high-precision rules that mask what a model left in clear.

After generation, the few rules whose precision stays high (e-mail addresses, IBANs that pass
the mod-97 check, card numbers with a card prefix and a valid Luhn digit, phone numbers written
with a `+` country code: each label's `net` rule in `labels.REGISTRY`) run over the text outside
placeholders, and what they find is masked, numbered consistently with the placeholders already
there.
"""
from __future__ import annotations

from ..core.alignment import align
from ..core.labels import PLACEHOLDER_RE, ranked
from ..core.recognizers import find_all

RULES = ranked(lambda spec: spec.net)  # by rank: an earlier rule wins overlapping matches


def safety_net(source: str, prediction: str) -> tuple[str, int]:
    """`prediction` with what the rules find in its clear text masked, and how many entities
    that added. A value the prediction already masked elsewhere keeps that placeholder's number;
    a new one gets the label's next free number."""
    placeholders = [m.span() for m in PLACEHOLDER_RE.finditer(prediction)]
    spans = find_all(RULES, prediction, lambda start, end: not any(a < end and start < b for a, b in placeholders))
    if not spans:
        return prediction, 0
    known = {(e.label, e.value): e.index for e in align(source, prediction) or [] if e.index is not None}
    used: dict[str, int] = {}
    for m in PLACEHOLDER_RE.finditer(prediction):
        if m.group(2):
            used[m.group(1)] = max(used.get(m.group(1), 0), int(m.group(2)))
    out, pos = [], 0
    for start, end, label in sorted(spans):
        value = prediction[start:end]
        if (label, value) not in known:
            used[label] = known[(label, value)] = used.get(label, 0) + 1
        out += [prediction[pos:start], f"[{label}_{known[(label, value)]}]"]
        pos = end
    return "".join(out + [prediction[pos:]]), len(spans)
