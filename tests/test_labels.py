"""Placeholder parsing and the exact source/redaction alignment everything else rests on; what a
placeholder may stand for (`labels.BOUNDS`)."""
from pathlib import Path

import pytest

from pii_redact.core.alignment import align
from pii_redact.core.labels import (
    Entity,
    mask,
    renumber,
    unknown_placeholders,
    unnumbered,
)

SOURCE = "My child faozzsd379223 (DOB: May/58) will see Dr. faozzsd379223. Call 0070.606.322.6244."
REDACTED = "My child [USERNAME_1] (DOB: [DATEOFBIRTH_1]) will see Dr. [USERNAME_1]. Call [TELEPHONENUM_1]."


def test_align_recovers_spans_values_labels_and_numbers():
    entities = align(SOURCE, REDACTED)
    assert [(e.label, e.value, e.index) for e in entities] == [
        ("USERNAME", "faozzsd379223", 1), ("DATEOFBIRTH", "May/58", 1),
        ("USERNAME", "faozzsd379223", 1), ("TELEPHONENUM", "0070.606.322.6244", 1)]
    assert all(SOURCE[e.start:e.end] == e.value for e in entities)
    # masking the recovered spans gives the redaction back
    assert mask(SOURCE, [(e.start, e.end, e.label) for e in entities]) == (REDACTED, entities)


def test_a_value_containing_the_following_literal_ends_at_the_text_end():
    # "." follows the phone placeholder and also occurs inside the phone number
    assert align("Call 0070.606.322.6244.", "Call [TELEPHONENUM_1].")[0].value == "0070.606.322.6244"


def test_changed_non_pii_text_is_not_a_redaction():
    assert align(SOURCE, REDACTED.replace("will see", "sees")) is None
    assert align(SOURCE, REDACTED + " ") is None
    assert align("abc", "abc") == [] and align("abc", "abd") is None


def test_unnumbered_and_adjacent_placeholders():
    assert align("Hi Anna", "Hi [GIVENNAME]") == [Entity(3, 7, "GIVENNAME", "Anna", None)]
    first, second = align("AB", "[GIVENNAME_1][SURNAME_1]")
    assert (first.value, second.value) == ("A", "B")
    assert align("x", "[GIVENNAME_1][SURNAME_1]") is None  # each entity needs a character


def test_renumber_is_canonical_per_label_by_first_appearance():
    assert renumber("[EMAIL_3] [EMAIL_1] [EMAIL_3] [CITY_2] [CITY]") == "[EMAIL_1] [EMAIL_2] [EMAIL_1] [CITY_1] [CITY]"


def test_unknown_placeholders_ignore_bracketed_source_text():
    assert unknown_placeholders("[INFO] login", "[INFO] [PERSON] [CREDIT_CARD_1] [EMAIL_1]") == ["[PERSON]", "[CREDIT_CARD_1]"]


def test_mask_numbers_values_per_label_by_first_appearance():
    source = "Bo met Al, then Bo met Cy at 5."
    spans = [(0, 2, "GIVENNAME"), (7, 9, "GIVENNAME"), (16, 18, "GIVENNAME"), (23, 25, "GIVENNAME"), (29, 30, "BUILDINGNUM")]
    redacted, entities = mask(source, spans)
    assert redacted == "[GIVENNAME_1] met [GIVENNAME_2], then [GIVENNAME_1] met [GIVENNAME_3] at [BUILDINGNUM_1]."
    assert [e.index for e in entities] == [1, 2, 1, 3, 1]
    assert unnumbered(redacted) == "[GIVENNAME] met [GIVENNAME], then [GIVENNAME] met [GIVENNAME] at [BUILDINGNUM]."


def test_every_value_of_the_training_set_fits_its_labels_bounds():
    """`labels.BOUNDS` is what faithful decoding lets a placeholder cover: taken from the committed
    data set with a margin, so it must hold every value the model was trained to mask."""
    import json

    from pii_redact.core.alignment import align
    from pii_redact.core.labels import BOUNDS

    records = json.loads((Path(__file__).resolve().parent.parent / "pii_redaction_train.json").read_text())
    checked = 0
    for record in records[::5]:
        source = record["prompt"].split("\n\nText:\n", 1)[1]
        spans = record.get("entities") or [(e.start, e.end, e.label) for e in align(source, record["response"])]
        for start, end, label in spans:
            assert BOUNDS[label].fits(source[start:end]), (label, record["template"])
            checked += 1
    assert checked > 30_000


@pytest.mark.parametrize("label, value, fits", [
    ("SURNAME", "Rossi", True), ("SURNAME", "van der Berg", True), ("SURNAME", "O'Connor", True),
    ("SURNAME", "called me (twice) about", False),   # runaway masking: words and a parenthesis
    ("GIVENNAME", "María José", True), ("GIVENNAME", "Anna: see", False), ("GIVENNAME", "Anna2", False),
    ("CITY", "Frankfurt (Oder)", True), ("CITY", "10115 Berlin", False),
    ("EMAIL", "a.b+c_d@x-y.io", True), ("EMAIL", "a b@x.io", False),
    ("PASSWORD", "!w)D6T*CB2^Sap", True), ("ZIPCODE", "SW1A 1AA", True), ("BUILDINGNUM", "12 to 14 a", False),
    ("SOCIALNUM", "Senior", False), ("SOCIALNUM", "123-45-6789", True), ("TELEPHONENUM", "call", False),
])
def test_bounds_of_a_label(label, value, fits):
    from pii_redact.core.labels import BOUNDS

    assert BOUNDS[label].fits(value) is fits


def test_the_registry_holds_one_entry_per_label():
    """What a label is lives in its `labels.REGISTRY` entry: the name list, the bounds and the
    rules are read from it, never kept beside it."""
    from pii_redact.core.labels import BOUNDS, LABELS, REGISTRY

    assert LABELS == tuple(sorted(REGISTRY)) and all(REGISTRY[name].name == name for name in LABELS)
    assert BOUNDS == {name: spec.bounds for name, spec in REGISTRY.items()}
    for spec in REGISTRY.values():
        assert spec.only_after is None or spec.only_after in REGISTRY
    with_rules = [spec.rank for spec in REGISTRY.values() if spec.net or spec.baseline]
    assert 0 not in with_rules and len(set(with_rules)) == len(with_rules)  # every rule has its place


def test_rules_run_by_rank_and_share_their_patterns():
    """Where two labels' rules overlap the earlier one wins, so their order is part of the output;
    the IBAN pattern is written once, for the safety net (with its check digits) and the baseline."""
    from pii_redact.core import recognizers
    from pii_redact.core.labels import REGISTRY, ranked

    assert [label for label, _ in ranked(lambda spec: spec.net)] == [
        "EMAIL", "ACCOUNTNUM", "CREDITCARDNUMBER", "TELEPHONENUM"]
    assert [label for label, _ in ranked(lambda spec: spec.baseline)] == [
        "EMAIL", "ACCOUNTNUM", "CREDITCARDNUMBER", "SOCIALNUM", "DATEOFBIRTH", "ZIPCODE", "TELEPHONENUM"]
    account = REGISTRY["ACCOUNTNUM"]
    assert account.net.pattern is account.baseline.pattern is recognizers.IBAN
    assert account.net.valid is recognizers.iban_ok


@pytest.mark.parametrize("label, value, faults", [
    ("GIVENNAME", "Anna", 0), ("GIVENNAME", "Anna Maria Luisa Berta", 1), ("GIVENNAME", "Anna2", 1),
    ("SURNAME", "van der Berg", 0), ("CITY", "AB Den Haag", 1), ("CITY", "12", 2),
    ("STREET", "Via Roma 12", 1), ("BUILDINGNUM", "12a", 0), ("BUILDINGNUM", "Roma", 1),
    ("EMAIL", "anna@x.io", 0), ("EMAIL", "anna at x", 2), ("TAXNUM", "DE 123 456", 0),
    ("PASSWORD", "", 1), ("NOT_A_LABEL", "anything", 0),
])
def test_shape_faults(label, value, faults):
    """A name's shape rules include its word limit, the one the word bounds of faithful decoding
    use (`LabelSpec.max_words`)."""
    from pii_redact.core.labels import shape_faults

    assert shape_faults(label, value) == faults
