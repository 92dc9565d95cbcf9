"""The baselines the model is measured against: pattern rules, no model.

`identity` masks nothing; `regex_redact` covers what patterns can find: e-mails, IBANs (as
ACCOUNTNUM), Luhn-valid card numbers, US social security numbers, phone numbers, and dates of
birth or postcodes right after a cue word ("born", "DOB", "zip", "PLZ", ...). Names, streets,
cities and passwords need context it does not have: that gap is what the fine-tuned model is
measured against. (The few rules precise enough to run behind the model are its safety net:
`inference.safety_net`.)
"""
from __future__ import annotations

import re

from ..core.labels import mask
from ..inference.safety_net import luhn_ok

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
    "CREDITCARDNUMBER": lambda digits: luhn_ok(digits),
    "TELEPHONENUM": lambda digits: 7 <= len(digits) <= 15,
}


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
