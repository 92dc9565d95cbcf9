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

from pii_redact.chat import build_prompt, source_from_prompt
from pii_redact.files import sha256_file
from pii_redact.labels import LABELS, PLACEHOLDER_RE, align, mask
from pii_redact.synth import LANGUAGES, Generator, main

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "pii_redaction_train.json"


def generate_records(n: int, seed: int, languages=LANGUAGES):
    generator = Generator(seed, languages)
    return [generator.record() for _ in range(n)]


@pytest.fixture(scope="module")
def records():
    return generate_records(2000, seed=0)


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


def test_align_recovers_exactly_the_generated_spans(records):
    for r in records:
        found = align(r.source, r.response)
        assert found is not None, r.response
        assert [(e.start, e.end, e.label, e.index) for e in found] == \
            [(e.start, e.end, e.label, e.index) for e in r.entities]
        assert mask(r.source, [(e.start, e.end, e.label) for e in found])[0] == r.response
        assert all(r.source[e.start:e.end] == e.value for e in r.entities)


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
            if len(e.value) >= 5:
                assert e.value.casefold() not in clear, (e, r.response)


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
    assert len(data) == 50 and set(data[0]) == {"prompt", "response"}
    assert {r.language for r in generate_records(50, seed=3, languages=("nl",))} == {"nl"}
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
        assert source is not None and align(source, r["response"]) is not None


def test_committed_file_regenerates_byte_identically(tmp_path):
    out = tmp_path / "train.json"
    assert main(["--output", str(out)]) == 0
    assert sha256_file(out) == sha256_file(COMMITTED)
