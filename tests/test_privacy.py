"""The privacy dial (a mask bias in faithful decoding) and whole-document consistency (propagation
of what was masked once, one numbering across a document's pieces)."""
from __future__ import annotations

import pytest

from pii_redact.core import chat, constraint
from pii_redact.core.alignment import align
from pii_redact.inference import faithful, generate
from pii_redact.inference.propagate import consistent
from pii_redact.models.loading import load_for_generation

SOURCES = [
    "Call Anna Schmidt on +49 30 1234567 about order 5521.",
    "Dear Luca Bianchi, your new address is Via Roma 12, 10121 Torino.",
    "user jdoe42 logged in from the office; password Xy7pq2 expired",
    "Grüße aus Köln, schreib an jürgen.müller@example.de oder ruf an.",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_for_generation(tiny_model_dir)


def redact(tiny, sources, mask_bias, speculation="off"):
    model, tokenizer = tiny
    out = generate.generate_transformers(model, tokenizer, [chat.build_prompt(s) for s in sources], sources, 4,
                                         decoding="faithful", speculation=speculation, mask_bias=mask_bias)
    return [text for _, text, _ in sorted(out)]


def masked(texts: list[str]) -> int:
    """Characters of the sources that placeholders cover."""
    return sum(e.end - e.start for text, source in zip(texts, SOURCES) for e in align(source, text))


def test_no_bias_is_the_constrained_greedy_choice(tiny):
    """B = 0 is today's decoding: at every step the best-scoring token the constraint allows,
    replayed here with nothing but `Decoder.allowed`, independently of the dial's code."""
    import torch

    model, tokenizer = tiny
    stops = chat.stop_token_ids(tokenizer)
    vocab = constraint.Vocabulary(tokenizer)
    for source in SOURCES:
        decoder = faithful.Decoder(vocab, [source], stops)
        ids = chat.encode_prompt(tokenizer, chat.build_prompt(source))
        generated: list[int] = []
        with torch.inference_mode():
            while not decoder.done[0] and len(generated) < constraint.max_output_tokens(source):
                logits = model(input_ids=torch.tensor([ids + generated])).logits[0, -1]
                allowed = decoder.allowed(0)
                token = allowed[int(logits[allowed].argmax())]
                decoder.consume(0, token)
                generated.append(token)
        expected = decoder.text(0, generated)[0]
        assert redact(tiny, [source], 0.0) == [expected]


def test_the_dial_masks_more_above_zero_and_less_below(tiny):
    outputs = {b: redact(tiny, SOURCES, b) for b in (-100.0, -2.0, 0.0, 2.0, 100.0)}
    assert outputs[-100.0] == SOURCES  # never opens a placeholder where it could copy: the text as it is
    chars = {b: masked(texts) for b, texts in outputs.items()}  # (every output a faithful redaction)
    assert chars[-100.0] <= chars[-2.0] <= chars[0.0] <= chars[2.0] <= chars[100.0]
    assert chars[100.0] > chars[0.0] > chars[-100.0] == 0


@pytest.mark.parametrize("bias", [3.0, -3.0])
def test_speculation_is_exact_under_a_bias(tiny, bias):
    assert redact(tiny, SOURCES[:1], bias, speculation="on") == redact(tiny, SOURCES[:1], bias, speculation="off")


# --- propagation --------------------------------------------------------------------------------

@pytest.mark.parametrize("source, redaction, expected, added", [
    # a full name, then the surname alone (and in capitals in a signature)
    ("Anna Schmidt called. Later Schmidt wrote again.\nSCHMIDT",
     "[GIVENNAME_1] [SURNAME_1] called. Later Schmidt wrote again.\nSCHMIDT",
     "[GIVENNAME_1] [SURNAME_1] called. Later [SURNAME_1] wrote again.\n[SURNAME_1]", 2),
    # a value written twice, the second time left in clear
    ("Call +49 30 1234567 now, or +49 30 1234567 tomorrow.",
     "Call [TELEPHONENUM_1] now, or +49 30 1234567 tomorrow.",
     "Call [TELEPHONENUM_1] now, or [TELEPHONENUM_1] tomorrow.", 1),
    # one given name of a compound one (a value of its own: its own number); not inside a longer word
    ("María José wrote. José agreed, Josefina did not.",
     "[GIVENNAME_1] wrote. José agreed, Josefina did not.",
     "[GIVENNAME_1] wrote. [GIVENNAME_2] agreed, Josefina did not.", 1),
    # overlapping candidates: the longest wins, then what is left
    ("Anna Maria and Maria Rossi. Later: Anna Maria Rossi.",
     "[GIVENNAME_1] and [GIVENNAME_2] [SURNAME_1]. Later: Anna Maria Rossi.",
     "[GIVENNAME_1] and [GIVENNAME_2] [SURNAME_1]. Later: [GIVENNAME_1] [SURNAME_1].", 2),
    # a building number with its street, but not a bare number elsewhere
    ("Hauptstraße 12, Berlin. Deliver to Hauptstraße 12 for 12 EUR.",
     "[STREET_1] [BUILDINGNUM_1], Berlin. Deliver to Hauptstraße 12 for 12 EUR.",
     "[STREET_1] [BUILDINGNUM_1], Berlin. Deliver to [STREET_1] [BUILDINGNUM_1] for 12 EUR.", 2),
    # values too short to tell anyone are not looked for alone
    ("Bo and Li met Bo.", "[GIVENNAME_1] and [GIVENNAME_2] met Bo.", "[GIVENNAME_1] and [GIVENNAME_2] met Bo.", 0),
])
def test_propagation(source, redaction, expected, added):
    [out], n = consistent([(source, redaction)])
    assert (out, n) == (expected, added)
    assert align(source, out) is not None
    [same], n = consistent([(source, redaction)], propagate=False)
    assert n == 0 and align(source, same) is not None


def test_one_numbering_across_a_documents_pieces():
    pieces = [("Anna Schmidt called.", "[GIVENNAME_1] [SURNAME_1] called."),
              ("Then Marco Rossi and Anna.", "Then [GIVENNAME_1] [SURNAME_1] and [GIVENNAME_2]."),
              ("Rossi, Schmidt.", "Rossi, Schmidt.")]
    out, added = consistent(pieces)
    assert out == ["[GIVENNAME_1] [SURNAME_1] called.",
                   "Then [GIVENNAME_2] [SURNAME_2] and [GIVENNAME_1].",
                   "[SURNAME_2], [SURNAME_1]."]
    assert added == 2
    # without propagation the numbering is still one for the whole document
    out, added = consistent(pieces, propagate=False)
    assert out[1] == "Then [GIVENNAME_2] [SURNAME_2] and [GIVENNAME_1]." and out[2] == "Rossi, Schmidt." and added == 0


def test_a_piece_that_is_not_a_faithful_redaction_is_left_alone():
    pieces = [("Anna called.", "[GIVENNAME_1] called."), ("Anna wrote.", "Anna wrote a lot[UNFINISHED]")]
    out, added = consistent(pieces)
    assert out == ["[GIVENNAME_1] called.", "Anna wrote a lot[UNFINISHED]"] and added == 0


# --- calibration ----------------------------------------------------------------------------------

def test_the_choice_rule():
    from pii_redact.evaluation.calibrate import choose

    def row(bias, leak, fidelity):
        return {"mask_bias": bias, "leak_rate": leak, "text_fidelity": fidelity}

    curve = [row(-1.0, 0.10, 0.970), row(0.0, 0.08, 0.965), row(1.0, 0.05, 0.955), row(2.0, 0.03, 0.946),
             row(3.0, 0.03, 0.940)]
    assert choose(curve) == 2.0  # lowest leak within two points of bias 0's fidelity (0.945 is the floor)
    curve[3]["text_fidelity"] = 0.944
    assert choose(curve) == 1.0  # 2.0 now costs too much text
    assert choose([row(0.0, 0.0, 0.9), row(1.0, 0.0, 0.9), row(-1.0, 0.0, 0.9)]) == 0.0  # ties: closest to 0


def test_finetune_calibrates_and_evaluate_uses_the_chosen_bias(tiny_model_dir, tmp_path, capsys):
    """finetune.py --calibrate sweeps the dial on the validation split and records the bias;
    evaluate.py then redacts with it (provenance and metrics say so) unless --mask-bias says
    otherwise."""
    import json

    from pii_redact import cli, train_and_calibrate
    from pii_redact.config import DataConfig
    from pii_redact.data import prepare
    from pii_redact.evaluation import evaluate

    rows = [{"prompt": chat.build_prompt(f"Ticket {k}: call Anna on 555 01{k:02d} today."),
             "response": f"Ticket {k}: call [GIVENNAME_1] on [TELEPHONENUM_1] today."} for k in range(40)]
    (tmp_path / "raw.json").write_text(json.dumps(rows))
    prepare.prepare(DataConfig(input=[str(tmp_path / "raw.json")], output_dir=str(tmp_path / "data"),
                               model=str(tiny_model_dir), val_fraction=0.2, test_fraction=0.2))
    argv = ["--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"),
            "--run-name", "r", "--max-steps", "1", "--batch-size", "4", "--lora-r", "4", "--eval-steps", "0",
            "--calibrate", "--calibration-samples", "3"]
    assert cli.run(train_and_calibrate.main, argv) == 0, capsys.readouterr().err
    run = tmp_path / "out" / "r"
    privacy = json.loads((run / "privacy.json").read_text())
    assert [row["mask_bias"] for row in privacy["curve"]] == sorted(privacy["curve"][i]["mask_bias"] for i in range(9))
    assert privacy["samples"] == 3 and privacy["data"].endswith("val.jsonl") and (run / "privacy.png").stat().st_size
    chosen = json.loads((run / "run.json").read_text())["privacy"]["mask_bias"]
    assert chosen == privacy["mask_bias"]
    base = ["--model-dir", str(run), "--data", str(tmp_path / "data" / "test.jsonl"), "--limit", "2", "--batch-size", "2"]
    assert cli.run(evaluate.main, base + ["--output-dir", str(tmp_path / "e1")]) == 0
    assert json.loads((tmp_path / "e1" / "provenance.json").read_text())["mask_bias"] == chosen
    assert json.loads((tmp_path / "e1" / "metrics.json").read_text())["mask_bias"] == chosen
    assert cli.run(evaluate.main, base + ["--output-dir", str(tmp_path / "e2"), "--mask-bias", "-7"]) == 0
    assert json.loads((tmp_path / "e2" / "metrics.json").read_text())["mask_bias"] == -7.0


# --- the dial reaches every word -------------------------------------------------------------------

def test_the_dial_reaches_the_word_after_a_placeholder(gemma_dir):
    """With a tokenizer of whole words (Gemma's: `▁Schmidt` is one token), the choice after
    `[GIVENNAME_1]` is between copying ` Schmidt` and masking it (` [`, or ` ` then `[`): the
    dial moves it by B like any other, where it once reached no word after a placeholder."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gemma_dir)
    schmidt, space, opening = (tokenizer.convert_tokens_to_ids(t) for t in ("▁Schmidt", "▁", "▁["))
    assert tokenizer.unk_token_id not in (schmidt, space, opening)
    vocab, stops = constraint.Vocabulary(tokenizer), chat.stop_token_ids(tokenizer)
    scores = torch.zeros(len(tokenizer))
    for bias in (0.0, 8.0, -8.0):
        decoder = faithful.Decoder(vocab, ["Anna Schmidt called."], stops, bias)
        for token in tokenizer("[GIVENNAME_1]", add_special_tokens=False)["input_ids"]:
            decoder.consume(0, token)
        out = decoder.restrict(0, scores)
        assert (out[schmidt], out[opening], out[space]) == (-bias / 2, bias / 2, 0.0)
        # after ` `, the choice at `Schmidt` itself: copy it or open a placeholder
        decoder.consume(0, space)
        out = decoder.restrict(0, scores)
        assert (out[tokenizer.convert_tokens_to_ids("Schmidt")], out[tokenizer.convert_tokens_to_ids("[")]) \
            == (-bias / 2, bias / 2)


# --- propagation never amplifies a common word, numbering skips the source's own placeholders --------

@pytest.mark.parametrize("source, redaction, expected", [
    # a "the" wrongly masked stays one mistake, not a document-wide one
    ("The man and the dog saw the cat.", "The man and [GIVENNAME_1] dog saw the cat.",
     "The man and [GIVENNAME_1] dog saw the cat."),
    # a person named May does not mask the month, nor Will the verb
    ("May Jones wrote on 3 May. Will Smith will call. Jones agreed.",
     "[GIVENNAME_1] [SURNAME_1] wrote on 3 May. [GIVENNAME_2] [SURNAME_2] will call. Jones agreed.",
     "[GIVENNAME_1] [SURNAME_1] wrote on 3 May. [GIVENNAME_2] [SURNAME_2] will call. [SURNAME_1] agreed."),
    # ... in the other languages too (Mai, juin), while a real name still propagates
    ("Grüße im Mai an Jansen. Jansen kommt im Mai.", "Grüße im [GIVENNAME_1] an [SURNAME_1]. Jansen kommt im Mai.",
     "Grüße im [GIVENNAME_1] an [SURNAME_1]. [SURNAME_1] kommt im Mai."),
])
def test_propagation_never_looks_for_common_words(source, redaction, expected):
    [out], _ = consistent([(source, redaction)])
    assert out == expected


@pytest.mark.parametrize("source, redaction, expected", [
    ("Write [EMAIL_1] or bob@x.com", "Write [EMAIL_1] or [EMAIL_1]", "Write [EMAIL_1] or [EMAIL_2]"),
    ("Ask [GIVENNAME_2] or [GIVENNAME_1], not Anna or Bo Li.",
     "Ask [GIVENNAME_2] or [GIVENNAME_1], not [GIVENNAME_1] or [GIVENNAME_7] [SURNAME_1].",
     "Ask [GIVENNAME_2] or [GIVENNAME_1], not [GIVENNAME_3] or [GIVENNAME_4] [SURNAME_1]."),
])
def test_numbering_skips_the_numbers_the_source_already_uses(source, redaction, expected):
    for propagate in (True, False):
        [out], _ = consistent([(source, redaction)], propagate=propagate)
        assert out == expected and align(source, out) is not None


def test_numbering_skips_the_sources_placeholders_in_every_piece_and_after_the_model():
    from pii_redact.inference.redactor import Settings, finish

    pieces = [("Mail bob@x.com today.", "Mail [EMAIL_1] today."), ("Not [EMAIL_1], that was old.", "Not [EMAIL_1], that was old.")]
    out, _ = consistent(pieces)
    assert out == ["Mail [EMAIL_2] today.", "Not [EMAIL_1], that was old."]
    # the same after generation, with or without propagation
    for propagate in (True, False):
        done = finish("Write [EMAIL_1] or bob@x.com", "Write [EMAIL_1] or [EMAIL_1]", Settings(propagate=propagate))
        assert done.text == "Write [EMAIL_1] or [EMAIL_2]"


def test_a_document_is_finished_once_so_a_value_keeps_its_number_in_capitals():
    """redact.py's pieces are finished together, once: a surname propagated in capitals keeps the
    surname's number (finishing each piece and then the document again read the capitals back as
    another value, `[SURNAME_2]`)."""
    from pii_redact.inference.redactor import Settings, finish_document

    sources = ["Mrs Bianchi wrote.\nBIANCHI\n", "Bianchi again.\n"]
    done = finish_document(sources, ["Mrs [SURNAME_1] wrote.\nBIANCHI\n", "Bianchi again.\n"], Settings(), [True, True])
    assert done.texts == ["Mrs [SURNAME_1] wrote.\n[SURNAME_1]\n", "[SURNAME_1] again.\n"]
    assert done.propagation_added == 2 and [s is not None for s in done.segments] == [True, True]


# --- an unfinished piece is part of the document ------------------------------------------------

def test_an_unfinished_piece_is_numbered_and_propagated_with_the_others():
    """What faithful decoding completed by masking (a redaction of the text's start, then
    `[UNFINISHED]` for each line of the rest) reads as segments: its placeholders are numbered
    with the document's, what other pieces masked is masked in its head, and its rest stays
    masked."""
    pieces = [("Schmidt wrote from 10115 Berlin.", "[SURNAME_1] wrote from [ZIPCODE_1] [CITY_1]."),
              ("Then Schmidt called from 20095 Hamburg\nand more text\n\nBye.",
               "Then Schmidt called from [ZIPCODE_444] Hamb[UNFINISHED]\n[UNFINISHED]\n\n[UNFINISHED]")]
    out, added = consistent(pieces)
    assert out == ["[SURNAME_1] wrote from [ZIPCODE_1] [CITY_1].",
                   "Then [SURNAME_1] called from [ZIPCODE_2] Hamb[UNFINISHED]\n[UNFINISHED]\n\n[UNFINISHED]"]
    assert added == 1
    # an open placeholder closed at the cut, then the rest masked
    source = "Call Anna Schmidt now\nBye Schmidt"
    [out], _ = consistent([(source, "Call [GIVENNAME_9] [SURNAME_3][UNFINISHED]\n[UNFINISHED]")])
    assert out == "Call [GIVENNAME_1] [SURNAME_1][UNFINISHED]\n[UNFINISHED]"
    # a source that holds the text [UNFINISHED] itself: copied, never taken for the cut
    source = "Log [UNFINISHED] from Anna Schmidt\nmore"
    [out], _ = consistent([(source, "Log [UNFINISHED] from [GIVENNAME_4] Schm[UNFINISHED]\n[UNFINISHED]")])
    assert out == "Log [UNFINISHED] from [GIVENNAME_1] Schm[UNFINISHED]\n[UNFINISHED]"


@pytest.mark.parametrize("source", ["Call Anna Schmidt now  \n \nBye Schmidt\r\nx", "a\n\n", "\n x \r\n\r\n  y", "abc"])
def test_the_cut_of_an_unfinished_redaction_is_every_place_its_masked_rest_fits(source):
    """`_cuts` finds, in one pass per line, exactly the positions p where masking the rest of the
    source from p gives the redaction's tail (checked against trying every p)."""
    from pii_redact.core.labels import mask_rest
    from pii_redact.inference.propagate import _cuts

    for p in range(len(source) + 1):
        tail = mask_rest(source[p:])
        assert _cuts(source, tail) == [q for q in range(len(source) + 1) if mask_rest(source[q:]) == tail]
