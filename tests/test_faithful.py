"""Faithful decoding: whatever the weights, every output is a redaction of its source."""
from __future__ import annotations

import pytest

from pii_redact.core import chat, constraint
from pii_redact.core.alignment import align
from pii_redact.evaluation.metrics import format_valid
from pii_redact.inference import generate
from pii_redact.models.loading import load_for_generation

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
    return load_for_generation(tiny_model_dir)


def test_vocabulary_bytes_spell_every_text(tiny):
    _, tokenizer = tiny
    vocab = constraint.Vocabulary(tokenizer)
    for text in SOURCES:
        ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert b"".join(vocab.bytes[i] for i in ids) == text.encode()
    assert all(vocab.bytes[i] is None for i in tokenizer.all_special_ids)


def test_copying_resumes_only_where_an_entity_can_end():
    c = constraint.Constraint("Call 0070.606.322.6244. Now")
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
    c = constraint.Constraint("Mr. X is a 27 year old man. Y lives in Lyon.\nNext")
    # a name covers no digits, no sentence end, no more than a few words, no line break
    assert not c.advance(c.start(), b"Mr. [GIVENNAME_1] year")
    assert not c.advance(c.start(), b"Mr. [SURNAME_1] Y lives")
    assert c.advance(c.start(), b"Mr. [GIVENNAME_1] is a 27")
    assert not c.advance(c.start(), b"Mr. X is a 27 year old man. Y lives in [CITY_1]Next")


def test_a_placeholder_opens_only_where_an_entity_can_begin():
    c = constraint.Constraint("Pat Rossi, Maria Rosa and anna@x.io at linkedin.com/in/jdoe.")
    assert c.advance(c.start(), b"Pat [SURNAME_1], [GIVENNAME_1] Rosa")
    assert not c.advance(c.start(), b"Pa[")                     # inside a word
    assert not c.advance(c.start(), b"Pat Rossi, Maria Ros[")
    assert not c.advance(c.start(), b"Pat Rossi, Maria Rosa and anna@[")   # inside an e-mail address
    assert c.advance(c.start(), b"Pat Rossi, Maria Rosa and anna@x.io at linkedin.com/in/[USERNAME_1].")


def test_a_cut_off_output_is_completed_by_masking_never_by_copying():
    c = constraint.Constraint("Call 0070.606.322.6244. Now\nAnna\r\n\nBye")
    rest = b"[UNFINISHED]\n[UNFINISHED]\r\n\n[UNFINISHED]"
    assert c.complete(c.advance(c.start(), b"Call [TELEPH")) == b"ONENUM_1]" + rest
    assert c.complete(c.advance(c.start(), b"Call [TELEPHONENUM_")) == b"1]" + rest
    assert c.complete(c.advance(c.start(), b"Call [TELEPHONENUM_1]")) == rest
    assert c.complete(c.advance(c.start(), b"Call 00")) == rest
    # a character cut in two by a byte-level token is finished before the mask
    k = constraint.Constraint("Köln 50667")
    assert k.complete(k.advance(k.start(), "Kö".encode()[:2])) == "ö".encode()[1:] + b"[UNFINISHED]"


def test_the_output_bound_covers_the_longest_faithful_redaction():
    source = "Anna, Bo, Li, Jo, Al, Ed"
    every_word = "[GIVENNAME_999], [GIVENNAME_999], [GIVENNAME_999], [GIVENNAME_999], [GIVENNAME_999], [GIVENNAME_999]"
    c = constraint.Constraint(source)
    assert c.may_end(c.advance(c.start(), every_word.encode()))
    assert constraint.max_output_tokens(source) > len(every_word.encode())


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("max_new_tokens", [3, 64])
def test_random_weights_still_write_faithful_redactions(tiny, batch_size, max_new_tokens):
    model, tokenizer = tiny
    prompts = [chat.build_prompt(s) for s in SOURCES]
    outputs = sorted(generate.generate_transformers(model, tokenizer, prompts, SOURCES, batch_size,
                                                    max_new_tokens=max_new_tokens, decoding="faithful"))
    assert [i for i, _, _ in outputs] == list(range(len(SOURCES)))
    for (i, text, reason), source in zip(outputs, SOURCES):
        assert format_valid(source, text)
        assert reason in ("stop", "length")
        if reason == "stop":
            assert align(source, text) is not None, (source, text)
        else:  # cut off: the rest is masked, never copied in clear
            assert text.rstrip().endswith("[UNFINISHED]"), text
            assert align(source, text) is None
    if max_new_tokens == 3:  # three tokens cannot be every whole text: some were completed, and said so
        assert any(reason == "length" for _, _, reason in outputs)


NAMES = ", ".join(["Anna", "Bo", "Li", "Jo", "Al", "Ed", "Mia", "Ben", "Eva", "Tom",
                   "Ida", "Max", "Uwe", "Kai", "Ola", "Ane", "Pia", "Leo", "Noa", "Ivo"]) + "."


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_budget_always_finishes_a_faithful_redaction(tmp_path, seed):
    """Whatever the weights (three random tiny models), a list of 20 short names, whose redaction
    takes several times the tokens of the text, ends by itself within the default budget."""
    from tiny_model import build_model

    model, tokenizer = load_for_generation(build_model(tmp_path / "m", seed=seed))
    outputs = list(generate.generate_transformers(model, tokenizer, [chat.build_prompt(NAMES)], [NAMES], 1,
                                                  decoding="faithful", speculation="off"))
    [(_, text, reason)] = outputs
    assert reason == "stop" and align(NAMES, text) is not None, text


@pytest.mark.parametrize("label, value, coverable", [
    # values of the training set with a "." that is not a sentence end: once unreachable, so a
    # German date of birth could never be masked whole by faithful decoding
    ("DATEOFBIRTH", "14. Oktober 1961", True), ("STREET", "C. de Vito Murillo", True),
    ("BUILDINGNUM", "Nr. 35", True), ("CITY", "г. Лысьва", True),
    # a sentence end still stops a placeholder
    ("SURNAME", "Schmidt. Then", False), ("GIVENNAME", "Anna! Bob", False),
])
def test_a_placeholder_covers_abbreviations_and_ordinals_but_not_a_sentence_end(label, value, coverable):
    c = constraint.Constraint(value)
    assert (len(value.encode()) in c._resume(0, label)) is coverable


def test_label_bounds_keep_a_placeholder_to_what_its_label_may_be(tiny):
    """`--placeholder-bounds label`: a number's placeholder never covers a word without a digit and a
    surname's never a parenthesis, whatever the model wants, even with the dial at its top; the
    default word bounds allow both."""
    from pii_redact.core.labels import BOUNDS

    for value, label in (("Senior", "SOCIALNUM"), ("Rossi (x)", "SURNAME")):
        assert len(value.encode()) in constraint.Constraint(value)._resume(0, label)
        assert len(value.encode()) not in constraint.Constraint(value, BOUNDS)._resume(0, label)
    model, tokenizer = tiny
    source = "Senior Manager (Sales) at Acme"
    [(_, text, _)] = generate.generate_transformers(model, tokenizer, [chat.build_prompt(source)], [source], 1,
                                                    mask_bias=100.0, placeholder_bounds="label")
    entities = align(source, text)
    assert entities and all(BOUNDS[e.label].fits(e.value) for e in entities), text


@pytest.mark.parametrize("seed, softcap", [(0, None), (1, None), (2, 2.0)])
def test_the_restricted_head_makes_the_full_heads_choices(tmp_path, seed, softcap):
    """The output layer computed for the allowed tokens only picks, at every step of every row,
    the token the vocabulary-wide layer picks: random tiny models, a batch of texts of all kinds,
    the privacy dial off and on, and Gemma's final logit softcapping (applied to the picked rows,
    not to the hidden state the model hands over). The model has its own head back afterwards."""
    import torch
    from tiny_model import build_model

    model, tokenizer = load_for_generation(build_model(tmp_path / "m", seed=seed))
    model.config.final_logit_softcapping = softcap
    sources = [*SOURCES, NAMES]
    prompts = [chat.build_prompt(s) for s in sources]
    steps = 0
    for bias in (0.0, 3.0):
        outputs = {}
        for restricted in (True, False):
            stats: dict = {}
            outputs[restricted] = sorted(generate.generate_transformers(
                model, tokenizer, prompts, sources, 4, decoding="faithful", speculation="off", stats=stats,
                mask_bias=bias, restricted_head=restricted))
            steps += stats["tokens"]
        assert outputs[True] == outputs[False]
    assert steps > 400  # many choices compared, not a handful
    assert isinstance(model.get_output_embeddings(), torch.nn.Linear)
    assert model.config.final_logit_softcapping == softcap
