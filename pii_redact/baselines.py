"""Pattern rules: the baselines the model is measured against, and the safety net behind it.

`identity` masks nothing; `regex_redact` covers what patterns can find: e-mails, IBANs (as
ACCOUNTNUM), Luhn-valid card numbers, US social security numbers, phone numbers, and dates of
birth or postcodes right after a cue word ("born", "DOB", "zip", "PLZ", ...). Names, streets,
cities and passwords need context it does not have: that gap is what the fine-tuned model is
measured against.

`safety_net` runs the few detectors whose precision stays high (e-mail addresses, IBANs that pass
the mod-97 check, card numbers with a card prefix and a valid Luhn digit, phone numbers written
with a `+` country code) over the text a model left in clear, and masks what they find.
"""
from __future__ import annotations

import re

from .labels import PLACEHOLDER_RE, Numbering, align, mask

# (label, pattern), by priority: an earlier rule wins overlapping matches. A pattern with a
# group masks only the group (the cue word stays).
_DATE = r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}-\d{2}-\d{2}|\d{1,2}(?:st|nd|rd|th)? [A-Z][a-z]+ \d{4}"
RULES: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("ACCOUNTNUM", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")),
    ("CREDITCARDNUMBER", re.compile(r"\b\d(?:[ -]?\d){12,18}\b")),
    ("SOCIALNUM", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("DATEOFBIRTH", re.compile(
        r"(?i:\b(?:born(?: on)?|d\.?o\.?b\.?|date of birth|birth ?date|birthday)\b\W{0,3})(" + _DATE + ")")),
    ("ZIPCODE", re.compile(
        r"(?i:\b(?:zip(?: ?code)?|postal code|post ?code|PLZ|CAP|code postal)\b\W{0,3})(\d{4,5}|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})")),
    ("TELEPHONENUM", re.compile(  # not a date: those are only PII after a birth cue word
        r"(?<![\w+])(?!(?:" + _DATE + r")\b)(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}\b")),
]
# Checks a match must also pass: a checksum, or a plausible number of digits.
CHECKS = {
    "CREDITCARDNUMBER": lambda digits: _luhn_ok(digits),
    "TELEPHONENUM": lambda digits: 7 <= len(digits) <= 15,
}


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d)
    return total % 10 == 0


def identity(source: str) -> str:
    return source


def regex_redact(source: str) -> str:
    """`source` with rule matches replaced by `[LABEL_n]`, n counting distinct values per label
    in order of appearance (the data's numbering)."""
    spans: list[tuple[int, int, str]] = []
    for label, pattern in RULES:
        for m in pattern.finditer(source):
            start, end = m.span(1 if pattern.groups else 0)
            if label in CHECKS and not CHECKS[label](re.sub(r"\D", "", m.group(0))):
                continue
            if all(end <= a or start >= b for a, b, _ in spans):
                spans.append((start, end, label))
    return mask(source, spans)[0]


# --------------------------------------------------------------------------------------------
# the safety net

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
     lambda m: _luhn_ok(re.sub(r"\D", "", m)) and _CARD_PREFIX.match(m) is not None and 15 <= len(re.sub(r"\D", "", m)) <= 19),
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
