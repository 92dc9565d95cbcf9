"""Scoring on hand-built cases; every expected value is worked out by hand in the comments."""
from __future__ import annotations

import json

import pytest

from pii_redact.core.chat import build_prompt
from pii_redact.core.errors import UserError
from pii_redact.core.labels import PLACEHOLDER_RE
from pii_redact.evaluation.baselines import identity, regex_redact
from pii_redact.evaluation.metrics import (
    check_thresholds,
    format_valid,
    read_predictions,
    score,
)
from pii_redact.inference.prediction import Prediction


def score_rows(rows) -> tuple:
    """`score` of predictions.jsonl rows, as a file holds them."""
    return score([Prediction.from_row(row, "row") for row in rows])

# 41 characters; entities Anna (0-4), Rossi (5-10), Lyon (20-24), anna@x.io (31-40):
# 4 + 5 + 4 + 9 = 22 PII characters, so 19 non-PII characters.
SRC = "Anna Rossi lives in Lyon. Mail anna@x.io."
REF = "[GIVENNAME_1] [SURNAME_1] lives in [CITY_1]. Mail [EMAIL_1]."
NON_PII = 19


def run(*predictions: str, **fields) -> dict:
    metrics, _ = score_rows({"source": SRC, "response": REF, "prediction": p, **fields} for p in predictions)
    return metrics


def test_perfect_output():
    m = run(REF)
    assert m["n_samples"] == 1
    assert m["exact_match"] == 1.0
    assert {k: m["entity"][k] for k in ("precision", "recall", "f1", "f2", "macro_f1")} == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "f2": 1.0, "macro_f1": 1.0}
    assert (m["entity"]["tp"], m["entity"]["predicted"], m["entity"]["support"]) == (4, 4, 4)
    assert m["span"]["f1"] == 1.0
    assert (m["leak_rate"], m["samples_with_leak"]) == (0.0, 0.0)
    assert m["text_fidelity"] == 1.0
    assert (m["format_valid_rate"], m["unfinished_rate"], m["exact_alignment_rate"]) == (1.0, 0.0, 1.0)
    assert m["per_label"]["EMAIL"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1, "predicted": 1}
    # a label absent from both sides has no defined scores
    assert m["per_label"]["TAXNUM"] == {"precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0}
    assert m["confusions"] == {}


def test_identity_output_masks_nothing():
    m = run(identity(SRC))
    # no predicted entities: precision is 0.0 by the zero_division=0 convention
    assert (m["entity"]["precision"], m["entity"]["recall"], m["entity"]["f1"]) == (0.0, 0.0, 0.0)
    assert (m["leak_rate"], m["samples_with_leak"], m["leaked_entities"]) == (1.0, 1.0, 4)
    assert m["text_fidelity"] == 1.0  # all non-PII text is there
    assert m["exact_match"] == 0.0
    assert m["format_valid_rate"] == 1.0


def test_every_label_swapped():
    m = run("[SURNAME_1] [GIVENNAME_1] lives in [EMAIL_1]. Mail [CITY_1].")
    assert (m["entity"]["precision"], m["entity"]["recall"], m["entity"]["f1"]) == (0.0, 0.0, 0.0)
    assert (m["span"]["precision"], m["span"]["recall"], m["span"]["f1"]) == (1.0, 1.0, 1.0)
    assert m["confusions"] == {"GIVENNAME->SURNAME": 1, "SURNAME->GIVENNAME": 1,
                               "CITY->EMAIL": 1, "EMAIL->CITY": 1}
    assert m["per_label"]["CITY"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 1}
    assert (m["leak_rate"], m["text_fidelity"]) == (0.0, 1.0)


def test_half_of_the_entities_leaked():
    # Anna and Lyon stay in clear: 2 of 4 entities found, both right
    m = run("Anna [SURNAME_1] lives in Lyon. Mail [EMAIL_1].")
    p, r = 1.0, 0.5
    assert m["entity"]["precision"] == p
    assert m["entity"]["recall"] == r
    assert m["entity"]["f1"] == pytest.approx(2 * p * r / (p + r))  # 2/3
    assert m["entity"]["f2"] == pytest.approx(5 * p * r / (4 * p + r))  # 5/9
    assert (m["leak_rate"], m["samples_with_leak"]) == (0.5, 1.0)
    assert m["per_label"]["GIVENNAME"]["f1"] == 0.0 and m["per_label"]["SURNAME"]["f1"] == 1.0
    assert m["text_fidelity"] == 1.0


def test_leaks_are_micro_averaged_and_per_sample():
    m = run(REF, "Anna [SURNAME_1] lives in Lyon. Mail [EMAIL_1].")
    assert m["leak_rate"] == 2 / 8  # 2 leaked of 8 reference entities
    assert m["samples_with_leak"] == 0.5
    assert m["entity"]["recall"] == 6 / 8


def test_value_also_in_non_pii_text_is_not_a_leak():
    # "Lyon" is both PII and (in "Lyon office") kept text of the reference
    metrics, _ = score_rows([{"source": "Lyon office: Lyon.", "response": "Lyon office: [CITY_1].",
                         "prediction": "Lyon office: [CITY_1]."},
                        {"source": "Lyon office: Lyon.", "response": "Lyon office: [CITY_1].",
                         "prediction": "Lyon office: Lyon."}])
    assert metrics["leaked_entities"] == 1  # only the second sample: 2 occurrences - 1 kept


def test_value_inside_a_longer_number_is_not_a_leak():
    metrics, _ = score_rows([{"source": "Flat 12, tel 1234.", "response": "Flat [BUILDINGNUM_1], tel [TELEPHONENUM_1].",
                         "prediction": "Flat [BUILDINGNUM_1], tel 1234."}])
    assert metrics["leaked_entities"] == 1  # the phone number; "12" only occurs inside "1234"


def test_renumbered_placeholders_are_an_exact_match():
    rows = [
        "[GIVENNAME_4] met [GIVENNAME_9].",   # other numbers, same pattern: match
        "[GIVENNAME_2] met [GIVENNAME_1].",   # canonical numbering by first appearance: match
        " [GIVENNAME_1] met [GIVENNAME_2].\n",  # surrounding whitespace ignored: match
        "[GIVENNAME_1] met [GIVENNAME_1].",   # says both are the same person: no match
    ]
    metrics, _ = score_rows({"source": "Anna met Luca.", "response": "[GIVENNAME_1] met [GIVENNAME_2].",
                        "prediction": p} for p in rows)
    assert metrics["exact_match"] == 3 / 4
    assert metrics["entity"]["f1"] == 1.0  # entities ignore numbering


def test_extra_words_in_non_pii_text():
    m = run("Dear [GIVENNAME_1] [SURNAME_1] lives in [CITY_1] now. Mail [EMAIL_1].")
    assert m["entity"]["f1"] == 1.0  # every entity still found
    assert m["exact_alignment_rate"] == 0.0  # took the robust path
    # all 19 non-PII characters kept, "Dear " (5) and " now" (4) inserted
    assert m["text_fidelity"] == NON_PII / (NON_PII + 9)


def test_over_masked_text():
    # "Mail " (5 non-PII characters) disappears into the e-mail placeholder: a wrong span
    m = run("[GIVENNAME_1] [SURNAME_1] lives in [CITY_1]. [EMAIL_1].")
    assert (m["entity"]["precision"], m["entity"]["recall"]) == (0.75, 0.75)
    assert m["text_fidelity"] == (NON_PII - 5) / NON_PII


def test_truncated_output():
    m = run("[GIVENNAME_1] [SURNAME_1] lives in [CITY_1]. Mail [EMAIL_", finish_reason="length")
    assert (m["entity"]["precision"], m["entity"]["recall"]) == (1.0, 0.75)
    assert m["unfinished_rate"] == 1.0
    assert m["format_valid_rate"] == 0.0  # "[EMAIL_" is a cut-off placeholder
    assert m["leak_rate"] == 0.0
    # kept: " " + " lives in " + ". Mail " = 18 of 19 (the final "." is lost); "[EMAIL_" inserted
    assert m["text_fidelity"] == 18 / (NON_PII + 7)


@pytest.mark.parametrize("prediction, valid", [
    (REF, True),
    ("[GIVENNAME] [SURNAME] lives in [CITY]. Mail [EMAIL].", True),  # unnumbered is well-formed
    ("[GIVENNAME_1] [SURNAME_1] lives in [CITY_1]. Mail [email_1].", False),  # lowercase
    ("[ GIVENNAME ] [SURNAME_1] lives in [CITY_1]. Mail [EMAIL_1].", False),  # spaces inside
    ("[GIVENNAME_1 [SURNAME_1] lives in [CITY_1]. Mail [EMAIL_1].", False),  # no closing ]
    ("[PERSON] lives in [CITY_1]. Mail [EMAIL_1].", False),  # unknown label
    ("", True),
])
def test_format_valid(prediction, valid):
    assert format_valid(SRC, prediction) is valid


def test_bracketed_text_copied_from_the_source_is_valid():
    assert format_valid("[INFO] user Anna [sic]", "[INFO] user [GIVENNAME_1] [sic]")
    assert not format_valid("user Anna", "[INFO] user [GIVENNAME_1]")


def test_malformed_placeholder_rate_and_effect():
    m = run(REF, "[GIVENNAME_1] [SURNAME_1] lives in [CITY_1]. Mail [email_1].")
    assert m["format_valid_rate"] == 0.5
    # "[email_1]" is text, not a placeholder: the e-mail is missed (but not leaked)
    assert (m["entity"]["tp"], m["entity"]["predicted"], m["entity"]["support"]) == (7, 7, 8)
    assert m["leak_rate"] == 0.0
    # sample 2 keeps its 19 non-PII characters and inserts the 9 of "[email_1]"
    assert m["text_fidelity"] == (NON_PII + NON_PII) / (NON_PII + NON_PII + 9)


def test_unknown_label_counts_for_spans_not_entities():
    m = run("[NAME] lives in [CITY_1]. Mail [EMAIL_1].")
    # [NAME] covers "Anna Rossi": neither reference span, so 2 of 3 predictions are right
    assert (m["entity"]["tp"], m["entity"]["predicted"], m["span"]["tp"]) == (2, 3, 2)
    assert m["format_valid_rate"] == 0.0


def test_empty_prediction():
    m = run("")
    assert (m["entity"]["precision"], m["entity"]["recall"], m["entity"]["f1"]) == (0.0, 0.0, 0.0)
    assert m["leak_rate"] == 0.0  # nothing leaked: there is nothing at all
    assert m["text_fidelity"] == 0.0
    assert m["format_valid_rate"] == 1.0


def test_hallucinated_placeholder_is_a_false_positive():
    m = run(SRC + " [USERNAME_1]")
    assert (m["entity"]["tp"], m["entity"]["predicted"]) == (0, 1)
    assert m["text_fidelity"] == NON_PII / (NON_PII + 1)  # the inserted " "


def test_inconsistent_reference_is_aligned_robustly():
    metrics, samples = score_rows([{"source": SRC, "response": "Hi " + REF, "prediction": REF}])
    assert metrics["reference_misaligned"] == 1
    assert metrics["entity"]["f1"] == 1.0
    assert [e.value for e in samples[0].ref_entities] == ["Anna", "Rossi", "Lyon", "anna@x.io"]


def test_regex_baseline():
    source = "Write to anna@x.io or call +39 06 1234 5678; card 4111 1111 1111 1111, again anna@x.io."
    assert regex_redact(source) == (
        "Write to [EMAIL_1] or call [TELEPHONENUM_1]; card [CREDITCARDNUMBER_1], again [EMAIL_1].")
    assert regex_redact("card 4111 1111 1111 1112") == "card 4111 1111 1111 1112"  # fails Luhn


def write_lines(path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_read_predictions_takes_source_or_prompt(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [
        json.dumps({"source": SRC, "response": REF, "prediction": REF}),
        "",
        json.dumps({"prompt": build_prompt(SRC), "response": REF, "prediction": SRC, "finish_reason": "stop"}),
    ])
    records = read_predictions(path)
    assert [r.source for r in records] == [SRC, SRC]
    assert records[1].finish_reason == "stop"


def test_read_predictions_reports_line_numbers(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [
        json.dumps({"source": SRC, "response": REF, "prediction": REF}),
        "{not json",
        json.dumps({"source": SRC, "response": REF}),
    ])
    with pytest.raises(UserError, match=r"p\.jsonl:2:2: invalid JSON: .*\(and 1 more malformed lines\)"):
        read_predictions(path)
    path = write_lines(tmp_path / "q.jsonl", [json.dumps({"prompt": "no marker", "response": REF, "prediction": REF})])
    with pytest.raises(UserError, match=r"q\.jsonl:1: missing or non-string source or prompt"):
        read_predictions(path)
    with pytest.raises(UserError, match="absent.jsonl: no such file"):
        read_predictions(tmp_path / "absent.jsonl")


def test_check_thresholds():
    m = run("Anna [SURNAME_1] lives in Lyon. Mail [EMAIL_1].")  # recall 0.5, leak_rate 0.5
    assert check_thresholds(m, ["entity.precision=1.0", "per_label.EMAIL.f1>=0.9", "leak_rate=0.5"]) == []
    # leak_rate is lower-is-better: `=` gates it from above; `<=` / `>=` are explicit
    assert check_thresholds(m, ["entity.recall=0.9", "leak_rate=0.1", "span.f1<=0.5", "per_label.TAXNUM.f1=0.5"]) == [
        "entity.recall = 0.5000 is below 0.9", "leak_rate = 0.5000 is above 0.1",
        "span.f1 = 0.6667 is above 0.5", "per_label.TAXNUM.f1 is undefined (no reference or predicted entities)"]
    for bad in ["entity.f1", "entity.f1=high", "entity.nope=0.5", "per_label=0.5"]:
        with pytest.raises(UserError):
            check_thresholds(m, [bad])
        with pytest.raises(UserError):
            check_thresholds({}, [bad], validate_only=True)
    assert check_thresholds({}, ["entity.f1=0.9", "per_label.EMAIL.f1=0.8"], validate_only=True) == []


# --- ambiguous layouts: a perfect, a partial and a swapped prediction, scored by hand -------------
# Each layout is two adjacent entities separated by one space, which a redaction alone does not
# split. (source, reference, first entity, second entity).
AMBIGUOUS = {
    "street before number": ("Via Giuseppe Verdi 12", "[STREET_1] [BUILDINGNUM_1]", "Via Giuseppe Verdi", "12"),
    "compound given name": ("María José Pérez", "[GIVENNAME_1] [SURNAME_1]", "María José", "Pérez"),
    "multi-word city, postcode": ("Frankfurt am Main 60311", "[CITY_1] [ZIPCODE_1]", "Frankfurt am Main", "60311"),
    "postcode with letters, city": ("2514 EA Den Haag", "[ZIPCODE_1] [CITY_1]", "2514 EA", "Den Haag"),
}


def _exact(source: str, reference: str, first: str) -> list:
    cut = len(first)
    labels = [m.group(1) for m in PLACEHOLDER_RE.finditer(reference)]
    return [[0, cut, labels[0]], [cut + 1, len(source), labels[1]]]


@pytest.mark.parametrize("exact_spans", [True, False], ids=["exact spans", "spans from the redaction"])
@pytest.mark.parametrize("layout", AMBIGUOUS)
def test_ambiguous_layouts_score_as_a_person_would(layout, exact_spans):
    source, reference, first, second = AMBIGUOUS[layout]
    a, b = (m.group(0) for m in PLACEHOLDER_RE.finditer(reference))
    record = {"source": source, "response": reference}
    if exact_spans:
        record["entities"] = _exact(source, reference, first)
    # (prediction, precision, recall, leaked entities), worked out by hand:
    cases = [
        (reference, 1.0, 1.0, 0),              # both masked where they are
        (f"{a} {second}", 1.0, 0.5, 1),        # the second left in clear: found 1 of 2, it leaks
        (f"{first} {b}", 1.0, 0.5, 1),         # the first left in clear
        (f"{b} {a}", 0.0, 0.0, 0),             # labels swapped: nothing right, nothing leaked
    ]
    for prediction, precision, recall, leaked in cases:
        metrics, _ = score_rows([{**record, "prediction": prediction}])
        got = (metrics["entity"]["precision"], metrics["entity"]["recall"], metrics["leaked_entities"])
        assert got == (precision, recall, leaked), (layout, prediction, got)


def test_ambiguous_reference_entities_are_counted():
    metrics, _ = score_rows([{"source": "María José Pérez", "response": "[GIVENNAME_1] [SURNAME_1]",
                         "prediction": "[GIVENNAME_1] [SURNAME_1]"}])
    assert metrics["reference_ambiguous_entities"] == 2  # either name could be two words
    metrics, _ = score_rows([{"source": "Via Giuseppe Verdi 12", "response": "[STREET_1] [BUILDINGNUM_1]",
                         "prediction": "[STREET_1] [BUILDINGNUM_1]"}])
    assert metrics["reference_ambiguous_entities"] == 0  # a building number starts with a digit


@pytest.mark.parametrize("escaped", ["call\\nAnna Berg", "call\\tAnna Berg", "q=Anna%20Berg", "<b>Anna</b> Berg",
                                     '"name":"Anna","last":"Berg"'])
def test_values_glued_to_escapes_and_markup_are_leaks(escaped):
    source = "Anna Berg called."
    reference = "[GIVENNAME_1] [SURNAME_1] called."
    metrics, _ = score_rows([{"source": source, "response": reference, "prediction": f"[GIVENNAME_1] called. {escaped}"}])
    # the surname is not masked anywhere, and the prediction spells both names out in clear
    assert metrics["leaked_entities"] == 2, escaped


def test_hallucinated_placeholders_are_false_positives_and_steal_nothing():
    for extra in (REF + " [PERSON_1] [EMAIL_9]", "[PERSON_1] " + REF, REF.replace(" lives", " [EMAIL_9] lives")):
        metrics, samples = score_rows([{"source": SRC, "response": REF, "prediction": extra}])
        # the four correct entities keep their spans; the extra placeholders cover nothing
        assert metrics["entity"]["recall"] == 1.0, extra
        assert metrics["entity"]["tp"] == 4 and metrics["entity"]["predicted"] == extra.count("[")
        assert sorted(e.value for e in samples[0].pred_entities if e.value) == ["Anna", "Lyon", "Rossi", "anna@x.io"]
