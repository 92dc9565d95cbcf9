"""Rules that find PII without a model: a pattern, and where a pattern alone is not sure enough, a
validator of what it matched (a checksum, a card prefix, a count of digits).

Each pattern and validator is written once here; which label a rule finds, whether it runs
behind the model (the safety net) or only as the regex baseline, and which rule wins where two
overlap, is the label's entry in `labels.REGISTRY`. The IBAN pattern serves both: the safety net
keeps only IBANs whose check digits pass (`iban_ok`), the baseline masks every IBAN-shaped
string. `find_all` runs a list of rules over a text, the earlier rule winning an overlap.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator


def _anything(match: str) -> bool:
    return True


@dataclass(frozen=True)
class Recognizer:
    """Finds values where `pattern` matches and `valid` accepts the whole match. A pattern with a
    group finds only the group: a cue word before it ("born", "zip") stays in clear."""

    pattern: re.Pattern[str]
    valid: Callable[[str], bool] = _anything

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        """(start, end) of each valid match in `text`, left to right."""
        for m in self.pattern.finditer(text):
            if self.valid(m.group(0)):
                yield m.span(1 if self.pattern.groups else 0)


def find_all(rules: list[tuple[str, Recognizer]], text: str,
             keep: Callable[[int, int], bool] = lambda start, end: True) -> list[tuple[int, int, str]]:
    """(start, end, label) of what the (label, recognizer) rules find in `text` where `keep`
    agrees, none overlapping: where two overlap, the earlier rule's match wins."""
    spans: list[tuple[int, int, str]] = []
    for label, recognizer in rules:
        for start, end in recognizer.find(text):
            if keep(start, end) and all(end <= a or start >= b for a, b, _ in spans):
                spans.append((start, end, label))
    return spans


# --------------------------------------------------------------------------------------------
# validators

def digits_of(text: str) -> str:
    return re.sub(r"\D", "", text)


def luhn_ok(digits: str) -> bool:
    """The Luhn check every payment card number passes."""
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d)
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    iban = text.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


def digits_luhn_ok(text: str) -> bool:
    """The match's digits pass the Luhn check, whatever their prefix and number."""
    return luhn_ok(digits_of(text))


_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5)|35")


def card_ok(text: str) -> bool:
    """A payment card number: a card network's prefix, 15 to 19 digits, a valid Luhn digit."""
    digits = digits_of(text)
    return luhn_ok(digits) and _CARD_PREFIX.match(text) is not None and 15 <= len(digits) <= 19


def digit_count(low: int, high: int) -> Callable[[str], bool]:
    """A validator: the match holds `low` to `high` digits."""
    return lambda text: low <= len(digits_of(text)) <= high


# --------------------------------------------------------------------------------------------
# patterns

# An address the safety net is sure of: not glued to a word before it, a domain with a dot.
EMAIL_STRICT = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
DIGITS_14_TO_19 = re.compile(r"\b\d(?:[ -]?\d){13,18}\b")  # in groups of any size, by spaces or hyphens
DIGITS_13_TO_19 = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
US_SOCIAL = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
# A phone number written with a `+` country code: the only form sure enough to mask unasked.
PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?)(?:[ .-]?\d{2,5}){1,5}\b")
_DATE = r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}-\d{2}-\d{2}|\d{1,2}(?:st|nd|rd|th)? [A-Z][a-z]+ \d{4}"
PHONE = re.compile(  # not a date: those are only PII after a birth cue word
    r"(?<![\w+])(?!(?:" + _DATE + r")\b)(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}\b")
BIRTH_DATE_AFTER_CUE = re.compile(
    r"(?i:\b(?:born(?: on)?|d\.?o\.?b\.?|date of birth|birth ?date|birthday)\b\W{0,3})(" + _DATE + ")")
POSTCODE_AFTER_CUE = re.compile(
    r"(?i:\b(?:zip(?: ?code)?|postal code|post ?code|PLZ|CAP|code postal)\b\W{0,3})(\d{4,5}|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})")
