"""The safety net's rules, each on values it must find and look-alikes it must leave: what it masks
is masked whatever the model did, so a false positive costs text and a miss costs a leak."""
from __future__ import annotations

import pytest

from pii_redact.core.alignment import align
from pii_redact.core.recognizers import iban_ok, luhn_ok
from pii_redact.inference.safety_net import safety_net


@pytest.mark.parametrize("digits, valid", [
    ("4111111111111111", True), ("5500005555555559", True), ("378282246310005", True), ("79927398713", True),
    ("4111111111111112", False), ("1234567812345678", False), ("79927398710", False),
])
def test_luhn(digits, valid):
    assert luhn_ok(digits) is valid


@pytest.mark.parametrize("text, valid", [
    ("GB82WEST12345698765432", True), ("GB82 WEST 1234 5698 7654 32", True), ("DE89370400440532013000", True),
    ("GB83WEST12345698765432", False),   # a wrong check digit
    ("GB82WEST12345698765433", False),   # a changed account digit
    ("DE89 3704", False),                # shorter than any IBAN
    ("DE89" + "1" * 31, False),          # longer than any IBAN
])
def test_iban_check(text, valid):
    assert iban_ok(text) is valid


@pytest.mark.parametrize("value, label", [
    ("anna.berg+news@mail.example.org", "EMAIL"),
    ("DE89 3704 0044 0532 0130 00", "ACCOUNTNUM"),   # mod 97 == 1
    ("GB82WEST12345698765432", "ACCOUNTNUM"),
    ("4111 1111 1111 1111", "CREDITCARDNUMBER"),      # a card prefix and a valid Luhn digit
    ("5500-0055-5555-5559", "CREDITCARDNUMBER"),
    ("+49 30 1234567", "TELEPHONENUM"),
    ("+33 1 42 68 53 00", "TELEPHONENUM"),
    ("3782 822463 10005", "CREDITCARDNUMBER"),        # 15 digits in an American Express grouping
    ("4111111111111111003", "CREDITCARDNUMBER"),      # 19 digits
    ("+1 (555) 123-4567", "TELEPHONENUM"),
    ("+49-30-1234567", "TELEPHONENUM"),
])
def test_each_rule_masks_what_it_is_sure_of(value, label):
    source = f"Write to {value} today."
    text, added = safety_net(source, source)
    assert (text, added) == (f"Write to [{label}_1] today.", 1)
    assert [(e.label, e.value) for e in align(source, text)] == [(label, value)]


@pytest.mark.parametrize("value", [
    "DE88 3704 0044 0532 0130 00",   # an IBAN with a wrong check digit
    "4111 1111 1111 1112",           # a card number that fails Luhn
    "1234 5678 9012 3456",           # no card prefix, fails Luhn
    "+49 30",                        # too few digits for a phone number
    "49 30 1234567",                 # no '+': the rule stays high-precision
    "order 5521-0042",
    "anna@localhost",                # no domain with a dot: not an address the rule is sure of
    "GB83WEST12345698765432",        # an IBAN with a wrong check digit, ungrouped
    "DE89 3704",                     # IBAN-shaped, too short for one
    "41111111111114",                # a card prefix and a valid Luhn digit, but 14 digits
    "1234567890123452",              # a valid Luhn digit, but no card prefix
    "+49 30 1234 5678 9012 345",     # too many digits for a phone number
    "030 1234567",                   # a national number: without '+' it may be anything
    # values inside longer tokens: a word or number goes on around them
    "ID4111111111111111",
    "4111111111111111X",
    "XDE89370400440532013000",
    "DE89370400440532013000X",
    "abc+49301234567",
    "+49 30 1234567x",
    "anna@x.io2",
])
def test_look_alikes_are_left_as_they_are(value):
    source = f"Write to {value} today."
    assert safety_net(source, source) == (source, 0)


@pytest.mark.parametrize("value, label, masked", [
    ("tel:+49 30 1234567", "TELEPHONENUM", "tel:[TELEPHONENUM_1]"),
    ("mailto:anna@x.io", "EMAIL", "mailto:[EMAIL_1]"),
    ("(GB82WEST12345698765432)", "ACCOUNTNUM", "([ACCOUNTNUM_1])"),
])
def test_values_after_a_separator_are_found(value, label, masked):
    """A scheme or a bracket before a value is not part of it: the value is masked, they stay."""
    source = f"Write to {value} today."
    assert safety_net(source, source) == (f"Write to {masked} today.", 1)


def test_numbering_follows_the_placeholders_already_there():
    """A new value gets its label's next number; the same value, masked by the model elsewhere,
    keeps the model's number; nothing inside a placeholder is looked at."""
    source = "Mail anna@x.io or bo@y.io; again anna@x.io."
    prediction = "Mail [EMAIL_1] or bo@y.io; again anna@x.io."
    text, added = safety_net(source, prediction)
    assert (text, added) == ("Mail [EMAIL_1] or [EMAIL_2]; again [EMAIL_1].", 2)
