"""Faithful decoding: whatever the weights, every output is a redaction of its source."""
from __future__ import annotations

import pytest

from pii_redact import chat, faithful, generate
from pii_redact.labels import align
from pii_redact.metrics import format_valid

SOURCES = [
    "Call Anna Schmidt on +49 30 1234567.",
    "Grüße aus Köln, schreib an jürgen.müller@example.de! 日本語 😀",   # multi-byte, byte fallback
    "Name: Jean-Pierre Martin\nStreet: 12 rue Lepic\n\n  Zip:\t75018  ",   # lines, tabs, runs of spaces
    "No personal data here at all.",
    "x",
    "[INFO] user jdoe42 logged in; see [EMAIL_1] in the template",         # placeholder-like text
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return generate.load_for_generation(tiny_model_dir)


def test_vocabulary_bytes_spell_every_text(tiny):
    _, tokenizer = tiny
    vocab = faithful.Vocabulary(tokenizer)
    for text in SOURCES:
        ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert b"".join(vocab.bytes[i] for i in ids) == text.encode()
    assert all(vocab.bytes[i] is None for i in tokenizer.all_special_ids)


def test_copying_resumes_only_where_an_entity_can_end():
    c = faithful.Constraint("Call 0070.606.322.6244. Now")
    start = c.start()
    after = c.advance(start, b"Call [TELEPHONENUM_1].")
    assert after == frozenset({("C", 23)})  # the "." after the number, not the ones inside it
    assert not c.advance(start, b"Call [TELEPHONENUM_1].322")
    assert not c.advance(start, b"Call [TELEPHONE_1]")        # not a label
    assert not c.advance(start, b"Call [TELEPHONENUM_01]")    # no leading zero
    assert not c.advance(start, b"Call [TELEPHONENUM_1][EMAIL_1]")  # adjacent placeholders
    assert not c.advance(start, b"Call  0070")                # nothing inserted
    assert not c.may_end(c.advance(start, b"Call 0070"))      # not done: the source goes on
    assert c.may_end(c.advance(start, b"Call [TELEPHONENUM_1]. [GIVENNAME]"))


def test_what_a_placeholder_may_cover():
    c = faithful.Constraint("Mr. X is a 27 year old man. Y lives in Lyon.\nNext")
    # a name covers no digits, no sentence end, no more than a few words, no line break
    assert not c.advance(c.start(), b"Mr. [GIVENNAME_1] year")
    assert not c.advance(c.start(), b"Mr. [SURNAME_1] Y lives")
    assert c.advance(c.start(), b"Mr. [GIVENNAME_1] is a 27")
    assert not c.advance(c.start(), b"Mr. X is a 27 year old man. Y lives in [CITY_1]Next")


def test_a_cut_off_output_is_completed_by_masking():
    c = faithful.Constraint("Call 0070.606.322.6244. Now")
    assert c.complete(c.advance(c.start(), b"Call [TELEPH")) == b"ONENUM_1]. Now"
    assert c.complete(c.advance(c.start(), b"Call [TELEPHONENUM_")) == b"1]. Now"
    assert c.complete(c.advance(c.start(), b"Call [TELEPHONENUM_1]")) == b". Now"
    assert c.complete(c.advance(c.start(), b"Call 00")) == b"70.606.322.6244. Now"


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("max_new_tokens", [3, 64])
def test_random_weights_still_write_faithful_redactions(tiny, batch_size, max_new_tokens):
    model, tokenizer = tiny
    prompts = [chat.build_prompt(s) for s in SOURCES]
    outputs = sorted(generate.generate_transformers(model, tokenizer, prompts, SOURCES, batch_size,
                                                    max_new_tokens=max_new_tokens, decoding="faithful"))
    assert [i for i, _, _ in outputs] == list(range(len(SOURCES)))
    for (i, text, reason), source in zip(outputs, SOURCES):
        assert align(source, text) is not None, (source, text)
        assert format_valid(source, text)
        assert reason in ("stop", "length")
        if max_new_tokens == 3 and len(source.strip()) > 12:
            assert reason == "length"  # three tokens cannot be the whole text: completed, and said so
