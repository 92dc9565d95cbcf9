"""The safety net: high-precision rules that mask what a model left in clear.

After generation, the few detectors whose precision stays high (e-mail addresses, IBANs that
pass the mod-97 check, card numbers with a card prefix and a valid Luhn digit, phone numbers
written with a `+` country code) run over the text outside placeholders, and what they find is
masked, numbered consistently with the placeholders already there.
"""
from __future__ import annotations

import re

from ..core.alignment import align
from ..core.labels import PLACEHOLDER_RE


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d)
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    iban = text.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5)|35")
DETECTORS: list[tuple[str, re.Pattern[str], object]] = [
    ("EMAIL", re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"), lambda m: True),
    ("ACCOUNTNUM", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), _iban_ok),
    ("CREDITCARDNUMBER", re.compile(r"\b\d(?:[ -]?\d){13,18}\b"),
     lambda m: luhn_ok(re.sub(r"\D", "", m)) and _CARD_PREFIX.match(m) is not None and 15 <= len(re.sub(r"\D", "", m)) <= 19),
    ("TELEPHONENUM", re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?)(?:[ .-]?\d{2,5}){1,5}\b"),
     lambda m: 9 <= len(re.sub(r"\D", "", m)) <= 15),
]


def safety_net(source: str, prediction: str) -> tuple[str, int]:
    """`prediction` with what the detectors find in its clear text masked, and how many entities
    that added. A value the prediction already masked elsewhere keeps that placeholder's number;
    a new one gets the label's next free number."""
    spans: list[tuple[int, int, str]] = []
    for label, pattern, check in DETECTORS:
        for m in pattern.finditer(prediction):
            start, end = m.span()
            inside = any(p.start() < end and start < p.end() for p in PLACEHOLDER_RE.finditer(prediction))
            if not inside and check(m.group(0)) and all(end <= a or start >= b for a, b, _ in spans):
                spans.append((start, end, label))
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
