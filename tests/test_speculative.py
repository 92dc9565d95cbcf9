"""Speculative decoding gives token for token what plain greedy decoding (`model.generate`) gives."""
from __future__ import annotations

import pytest

from pii_redact.core import chat, constraint
from pii_redact.inference import faithful, generate, speculative
from pii_redact.models.loading import load_for_generation

SOURCES = [
    "Call Anna Schmidt on +49 30 1234567.",
    "Grüße aus Köln, schreib an jürgen.müller@example.de! 日本語 😀",
    "Name: Jean-Pierre Martin\nStreet: 12 rue Lepic\n\n  Zip:\t75018",
    "x",
    # longer than the tiny model's 64-token sliding window: the cache is compacted on the way
    " ".join(f"Line {k}: order {1000 + k} for Anna at anna{k}@example.com." for k in range(12)),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_for_generation(tiny_model_dir)


def plain(model, tokenizer, prompts, budgets, stops, decoder=None):
    """Reference: transformers' own greedy generate, one row at a time (no padding)."""
    import torch
    from transformers import LogitsProcessorList

    out = []
    for row, (ids, budget) in enumerate(zip(prompts, budgets)):
        processors = LogitsProcessorList()
        if decoder is not None:
            single = faithful.Decoder(decoder.vocab, [decoder.constraints[row].text], stops, decoder.mask_bias)
            processors.append(faithful.LogitsProcessor(single, len(ids)))
        with torch.inference_mode():
            generated = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                       max_new_tokens=budget, do_sample=False, eos_token_id=stops,
                                       pad_token_id=tokenizer.pad_token_id, logits_processor=processors,
                                       temperature=None, top_p=None, top_k=None)[0, len(ids):].tolist()
        cut = next((k + 1 for k, t in enumerate(generated) if t in stops), len(generated))
        out.append(generated[:cut])
    return out


@pytest.mark.parametrize("faithful_decoding, mask_bias", [(False, 0.0), (True, 0.0), (True, 3.0), (True, -3.0)],
                         ids=["free", "faithful", "faithful-bias+3", "faithful-bias-3"])
@pytest.mark.parametrize("rows", [[0], [0, 1, 2, 3, 4], [4, 3]])
def test_speculative_equals_plain_greedy(tiny, faithful_decoding, mask_bias, rows):
    """Speculation is exact: the same tokens as plain greedy decoding, under any mask bias too."""
    model, tokenizer = tiny
    sources = [SOURCES[r] for r in rows]
    prompts = chat.encode_prompts(tokenizer, [chat.build_prompt(s) for s in sources])
    budgets = [generate.estimated_output_tokens(tokenizer, s) for s in sources]
    stops = chat.stop_token_ids(tokenizer)
    vocab = constraint.Vocabulary(tokenizer) if faithful_decoding else None

    def decoder():
        return faithful.Decoder(vocab, [s.strip() for s in sources], stops, mask_bias) if vocab else None

    stats: dict = {}
    fast = speculative.decode(model, prompts, budgets, stops, tokenizer.pad_token_id, decoder(), stats)
    assert fast == plain(model, tokenizer, prompts, budgets, stops, decoder())
    assert stats["tokens"] == sum(map(len, fast)) and stats["forward_passes"] >= 1


@pytest.mark.parametrize("mask_bias", [0.0, 3.0])
def test_the_restricted_head_changes_no_token(tiny, mask_bias):
    """With the output layer computed for the allowed tokens only, each drafted position's once
    the row has taken the tokens before it, the tokens are plain greedy decoding's with the whole
    layer."""
    import torch

    model, tokenizer = tiny
    prompts = chat.encode_prompts(tokenizer, [chat.build_prompt(s) for s in SOURCES])
    budgets = [generate.estimated_output_tokens(tokenizer, s) for s in SOURCES]
    stops = chat.stop_token_ids(tokenizer)
    vocab = constraint.Vocabulary(tokenizer)

    def decoder():
        return faithful.Decoder(vocab, [s.strip() for s in SOURCES], stops, mask_bias)

    fast = speculative.decode(model, prompts, budgets, stops, tokenizer.pad_token_id, decoder(), restricted_head=True)
    assert fast == plain(model, tokenizer, prompts, budgets, stops, decoder())
    assert not isinstance(model.get_output_embeddings(), torch.nn.Identity)  # the head is given back


def test_drafts_come_from_the_prompt_after_the_outputs_last_tokens():
    row = speculative.Row(0, prompt=[9, 1, 2, 3, 4, 5, 6, 1, 2, 7, 8], budget=100, tokens=[4, 1, 2], draft_size=3)
    assert speculative.propose(row) == [3, 4, 5]      # "4 1 2" is not in the prompt; "1 2" is, first at 1
    row.tokens += [3, 4, 5]
    assert speculative.propose(row) == [6, 1, 2]      # "3 4 5" continues at its place
    row.tokens = [8, 8, 0]
    assert speculative.propose(row) == []             # nothing like it in the prompt: a plain step
    row.tokens, row.budget = [5, 6], 4
    assert speculative.propose(row) == [1]            # never past the token budget


def test_auto_speculates_for_a_batch_of_one_only(tiny):
    """--speculation auto: speculative for single-sample batches, plain greedy for larger ones
    (BENCHMARKS.md: on a CPU it wins at batch 1 and loses at batch 16). Same outputs either way."""
    model, tokenizer = tiny
    sources = [SOURCES[4], SOURCES[0]]
    prompts = [chat.build_prompt(s) for s in sources]

    def run(batch_size, speculation):
        stats: dict = {}
        out = list(generate.generate_transformers(model, tokenizer, prompts, sources, batch_size,
                                                  decoding="faithful", speculation=speculation, stats=stats))
        return sorted(out), stats["forward_passes"]

    on, off = run(1, "on"), run(1, "off")
    assert on[0] == off[0] and on[1] < off[1]  # the same redactions in fewer passes: the modes differ
    assert run(1, "auto") == on
    assert run(2, "auto") == run(2, "off")
