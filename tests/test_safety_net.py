"""The safety net's rules, each on values it must find and look-alikes it must leave: what it masks
is masked whatever the model did, so a false positive costs text and a miss costs a leak."""
from __future__ import annotations

import pytest

from pii_redact.core.alignment import align
from pii_redact.inference.safety_net import luhn_ok, safety_net


@pytest.mark.parametrize("digits, valid", [
    ("4111111111111111", True), ("5500005555555559", True), ("378282246310005", True), ("79927398713", True),
    ("4111111111111112", False), ("1234567812345678", False), ("79927398710", False),
])
def test_luhn(digits, valid):
    assert luhn_ok(digits) is valid


@pytest.mark.parametrize("value, label", [
    ("anna.berg+news@mail.example.org", "EMAIL"),
    ("DE89 3704 0044 0532 0130 00", "ACCOUNTNUM"),   # mod 97 == 1
    ("GB82WEST12345698765432", "ACCOUNTNUM"),
    ("4111 1111 1111 1111", "CREDITCARDNUMBER"),      # a card prefix and a valid Luhn digit
    ("5500-0055-5555-5559", "CREDITCARDNUMBER"),
    ("+49 30 1234567", "TELEPHONENUM"),
    ("+33 1 42 68 53 00", "TELEPHONENUM"),
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
])
def test_look_alikes_are_left_as_they_are(value):
    source = f"Write to {value} today."
    assert safety_net(source, source) == (source, 0)


def test_numbering_follows_the_placeholders_already_there():
    """A new value gets its label's next number; the same value, masked by the model elsewhere,
    keeps the model's number; nothing inside a placeholder is looked at."""
    source = "Mail anna@x.io or bo@y.io; again anna@x.io."
    prediction = "Mail [EMAIL_1] or bo@y.io; again anna@x.io."
    text, added = safety_net(source, prediction)
    assert (text, added) == ("Mail [EMAIL_1] or [EMAIL_2]; again [EMAIL_1].", 2)
