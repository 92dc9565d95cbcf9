"""The training-set generator: labels, languages, numbering, decoys, exact spans, determinism."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pii_redact.core.alignment import align
from pii_redact.core.chat import build_prompt, source_from_prompt
from pii_redact.core.files import sha256_file
from pii_redact.core.labels import LABELS, PLACEHOLDER_RE, mask, occurrences
from pii_redact.synth.generator import LANGUAGES, Generator, main

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "pii_redaction_train.json"


def generate_records(n: int, seed: int, languages=LANGUAGES):
    generator = Generator(seed, languages)
    return [generator.record() for _ in range(n)]


@pytest.fixture(scope="module")
def records():
    return generate_records(4000, seed=0)


WRITTEN_GENRES = ("news", "biography", "review", "social", "assistant", "bank_question", "cv", "minutes",
                  "sms_chat", "transcript", "legal_letter", "medical", "one_liner")


def test_every_label_and_language_is_covered(records):
    labels = Counter(e.label for r in records for e in r.entities)
    assert set(labels) == set(LABELS)
    assert min(labels.values()) >= 50, labels
    languages = Counter(r.language for r in records)
    assert set(languages) == set(LANGUAGES)
    assert min(languages.values()) >= 0.10 * len(records), languages
    assert {r.locale for r in records if r.language == "en"} == {"en_US", "en_GB"}


def test_prompt_is_the_seed_instruction_plus_source(records):
    for r in records[:200]:
        assert r.to_json()["prompt"] == build_prompt(r.source)
        assert source_from_prompt(r.to_json()["prompt"]) == r.source


def test_records_carry_the_exact_spans_they_mask(records):
    written = 0
    for r in records:
        assert mask(r.source, [(e.start, e.end, e.label) for e in r.entities]) == (r.response, r.entities)
        # the spans a record's JSON gives (or, where it gives none, the ones its redaction reads
        # as) are exactly the inserted ones
        record = r.to_json()
        if "entities" in record:
            written += 1
            assert record["entities"] == [[e.start, e.end, e.label] for e in r.entities]
        else:
            assert align(r.source, r.response) == r.entities
    assert 0 < written < 0.2 * len(records)  # only the ambiguous layouts need them


# (locale, what a natural layout looks like in the source, its labels in order)
NATURAL_LAYOUTS = [
    ("it_IT", r"^\S+( \S+)+ \d+\w*$", ["STREET", "BUILDINGNUM"]),   # Via Giuseppe Verdi 12
    ("es_ES", r"^\S+( \S+)+ \d+\w*$", ["STREET", "BUILDINGNUM"]),   # Calle de Alcalá 45
    ("de_DE", r"^\S+( \S+)+ \d+\w*$", ["STREET", "BUILDINGNUM"]),   # Am Markt 5
    ("nl_NL", r"^\S+( \S+)+ \d+\w*$", ["STREET", "BUILDINGNUM"]),   # Lange Voorhout 12
    ("fr_FR", r"^[^\W\d]+[ -][^\W\d]+ \S+$", ["GIVENNAME", "SURNAME"]),  # Jean Pierre Martin / Jean-Pierre Martin
    ("es_ES", r"^[^\W\d]+ [^\W\d]+ \S+", ["GIVENNAME", "SURNAME"]),     # María José Pérez
    ("es_ES", r"^\S+ [^\W\d]+ [^\W\d]+$", ["GIVENNAME", "SURNAME"]),    # Ana Pérez García
    ("de_DE", r"^[^\W\d]+-[^\W\d]+ \S+$", ["GIVENNAME", "SURNAME"]),    # Hans-Peter Müller
]


@pytest.mark.parametrize("locale, shape, layout", NATURAL_LAYOUTS)
def test_natural_layouts_are_generated_with_exact_spans(records, locale, shape, layout):
    """Two entities separated by one space, in a shape whose split no redaction shows."""
    found = 0
    for r in records:
        if r.locale != locale:
            continue
        for first, second in zip(r.entities, r.entities[1:]):
            if [first.label, second.label] == layout and r.source[first.end:second.start] == " " \
                    and re.search(shape, r.source[first.start:second.end]):
                found += 1
                assert r.source[first.start:first.end] == first.value
    assert found >= 5, (locale, layout)


def test_numbering_is_per_label_in_order_of_first_appearance(records):
    repeats = 0
    for r in records:
        tags: dict[tuple[str, str], int] = {}
        seen: Counter[str] = Counter()
        for e in r.entities:
            if (e.label, e.value) in tags:
                repeats += 1
                assert e.index == tags[(e.label, e.value)]
            else:
                seen[e.label] += 1
                assert e.index == seen[e.label], (r.response, e)
                tags[(e.label, e.value)] = e.index
    assert repeats > 0.05 * len(records)  # values that repeat in a record are common


def test_no_pii_value_is_left_in_clear_text(records):
    for r in records:
        clear = PLACEHOLDER_RE.sub("\0", r.response).casefold()
        for e in r.entities:
            if len(e.value) >= 3:
                assert occurrences(clear, e.value.casefold()) == 0, (e, r.response)


def test_share_of_records_without_pii(records):
    empty = [r for r in records if not r.entities]
    assert 0.05 * len(records) <= len(empty) <= 0.10 * len(records)
    assert all(r.response == r.source for r in empty)


def test_decoys_stay_in_clear_text(records):
    responses = "\n".join(r.response for r in records)
    assert re.search(r"ORD-\d{4}-\d{6}", responses)                  # order numbers
    assert re.search(r"INV-\d{4}-\d{5}", responses)                  # invoice numbers
    assert re.search(r"\d+,\d\d €|\$[\d,]+\.\d\d|£[\d,]+\.\d\d", responses)  # prices
    assert re.search(r"https?://\S+", responses)                     # URLs
    assert re.search(r"\b\d{2}:\d{2}\b", responses)                  # times
    assert re.search(r"[A-Z]\.[A-Z]{2}\.\d{6}", responses)           # policy numbers


def test_every_genre_in_every_language_with_template_ids(records):
    from pii_redact.synth.generator import GENRES

    for language in LANGUAGES:
        assert set(GENRES[language]) == set(WRITTEN_GENRES), language
        genres = Counter(r.kind for r in records if r.language == language)
        assert set(WRITTEN_GENRES) <= set(genres), (language, set(WRITTEN_GENRES) - set(genres))
    for r in records:
        parts = r.template.split("/")
        assert parts[0] == r.language and parts[1] == r.kind
        assert len(parts) == (3 if r.kind in WRITTEN_GENRES else 2)
    # many template families per language: what prepare_data.py --holdout-templates draws from
    assert min(len({r.template for r in records if r.language == lang}) for lang in LANGUAGES) >= 30


def test_people_and_addresses_from_other_countries(records):
    foreign_script = re.compile(r"[\u0370-\u03ff\u0400-\u04ff\u0600-\u06ff\u0900-\u097f\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")
    for language in LANGUAGES:
        texts = [r for r in records if r.language == language]
        names = [e.value for r in texts for e in r.entities if e.label in ("GIVENNAME", "SURNAME", "CITY", "STREET")]
        assert sum(bool(foreign_script.search(v)) for v in names) >= 3, language  # Greek, Cyrillic, CJK, Arabic...
    hyphenated = [e.value for r in records for e in r.entities if e.label == "GIVENNAME" and "-" in e.value]
    assert len(hyphenated) >= 20


def test_decoys_of_the_written_genres_stay_in_clear(records):
    written = [r for r in records if r.kind in WRITTEN_GENRES]
    responses = "\n".join(r.response for r in written)
    assert re.search(r"\b\d{2}\b", responses)                              # ages, counts
    assert re.search(r"\b(19[89]\d|20[0-2]\d)\b", responses)               # years
    assert re.search(r"\d+%", responses)                                    # percentages
    # a decoy is never inside an entity: ages and years stay numbers in clear, never placeholders
    for r in written[:500]:
        for e in r.entities:
            assert not re.fullmatch(r"\d{1,2}", e.value) or e.label in ("BUILDINGNUM",), (e, r.source)


def test_sms_style_is_typed_in_a_hurry(records):
    sms = [r for r in records if r.kind in ("sms_chat", "social")]
    assert sum(r.source == r.source.lower() for r in sms) > 0.3 * len(sms)


def test_many_kinds_of_text(records):
    kinds = Counter(r.kind for r in records)
    assert {"email", "chat", "ticket", "form", "letter", "note", "log", "html", "json", "csv"} <= set(kinds)
    assert any(r.source.startswith("<") for r in records)
    assert sum("\n" in r.source for r in records) > 0.3 * len(records)
    entity_counts = Counter(min(len(r.entities), 6) for r in records)
    assert entity_counts[1] and entity_counts[6]


def test_deterministic_for_a_seed():
    def texts(seed):
        return [(r.source, r.response) for r in generate_records(300, seed=seed)]

    assert texts(7) == texts(7)
    assert texts(7) != texts(8)


def test_independent_of_python_hash_seed(tmp_path):
    """Faker data held in sets must not leak set ordering into the output."""
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"h{hash_seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-m", "pii_redact.synth", "--n", "500", "-o", str(out)],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_languages_option(tmp_path):
    out = tmp_path / "nl.json"
    assert main(["--n", "50", "--seed", "3", "--languages", "nl", "--output", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data) == 50 and {"prompt", "response", "template"} <= set(data[0]) <= {"prompt", "response", "template", "entities"}
    assert {r["template"].split("/")[0] for r in data} == {"nl"}
    with pytest.raises(SystemExit):
        main(["--languages", "xx", "--output", str(out)])


def test_committed_file_counts():
    data = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert len(data) >= 30_000
    labels = Counter(m.group(1) for r in data for m in PLACEHOLDER_RE.finditer(r["response"]))
    assert set(labels) == set(LABELS)
    assert min(labels.values()) >= 300, labels
    for r in data[:2000]:
        source = source_from_prompt(r["prompt"])
        spans = [tuple(e) for e in r["entities"]] if "entities" in r else \
            [(e.start, e.end, e.label) for e in align(source, r["response"])]
        assert source is not None and mask(source, spans)[0] == r["response"]
    assert len(data) < 40_000 and COMMITTED.stat().st_size < 30 * 2**20  # travels with every checkout


def test_committed_file_regenerates_byte_identically(tmp_path):
    out = tmp_path / "train.json"
    assert main(["--output", str(out)]) == 0
    assert sha256_file(out) == sha256_file(COMMITTED)
