"""The generation engines behind `Redactor`: batched greedy decoding with transformers everywhere
(faithful or free, with or without speculation), and vLLM (free decoding) where it can run.

Prompts go through `chat.encode_prompt`, the same renderer training used. Generation is greedy, stops
on `<eos>` or `<end_of_turn>`, and each sample gets a token budget from its own source: the most a
faithful redaction of it can take. Faithful decoding always finishes within it; a free-decoding
model that never stops is caught there (`finish_reason == "length"`) instead of running to a
global cap. Every engine (these two and llama.cpp's) takes a text's budget from `token_budget`,
and redact.py cuts long texts by the room `context_needed` estimates.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

# A redaction is about as long as its source; placeholders can be longer than the values they
# replace ("[DATEOFBIRTH_1]" vs "5/8/61"), hence the margin. An estimate, not a bound: a text
# dense with short values ("Anna, Bo, Li, ...") takes more.
ESTIMATE_FACTOR, ESTIMATE_MARGIN = 1.5, 32
PROMPT_OVERHEAD = 48  # tokens of the chat template and instruction beyond the text (Gemma's: 43)


def text_tokens(tokenizer, text: str) -> int:
    """How many tokens `text` is on its own, as the prompt holds it."""
    return len(tokenizer(text, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"])


def estimated_output_tokens(tokenizer, source: str) -> int:
    """About how many tokens a redaction of `source` takes."""
    return _estimated(text_tokens(tokenizer, source))


def _estimated(source_tokens: int) -> int:
    return math.ceil(source_tokens * ESTIMATE_FACTOR) + ESTIMATE_MARGIN


def context_needed(tokenizer, text: str) -> int:
    """The room a text takes in the model's context: its prompt and, estimated, its redaction
    (redact.py cuts long texts into pieces that fit)."""
    n = text_tokens(tokenizer, text)
    return n + PROMPT_OVERHEAD + _estimated(n)


def token_budget(source: str, max_new_tokens: int = 0, room: int | None = None) -> int:
    """The generation budget of one text: --max-new-tokens where given, else the most tokens any
    faithful redaction of it can take (`constraint.max_output_tokens`), never past `room` (the
    positions the engine has left after the prompt) nor under 1. Faithful decoding always
    finishes within the default; free decoding, which has no bound of its own, gets the same
    room, so a correct redaction always fits and only an output that rambles past every faithful
    one is cut off."""
    from ..core.constraint import max_output_tokens

    budget = max_new_tokens or max_output_tokens(source.strip())
    return budget if room is None else max(1, min(budget, room))


def vllm_missing() -> str | None:
    """What keeps vLLM from running here (it needs the package and a CUDA GPU), or None."""
    import importlib.util

    from ..core.device import gpu_available

    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm, on a machine with a CUDA GPU)"
    if not gpu_available():
        return "vLLM needs a CUDA GPU and none is visible"
    return None


def vllm_usable() -> bool:
    return vllm_missing() is None


def _cut(ids: list[int], stops: set[int], budget: int) -> tuple[list[int], str]:
    for i, t in enumerate(ids[:budget]):
        if t in stops:
            return ids[:i], "stop"
    return ids[:budget], "length"


def _left_padded(tokenizer, rows: list[list[int]]):
    import torch

    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
    return input_ids, attention, width


def generate_transformers(model, tokenizer, prompts: Sequence[str], sources: Sequence[str], batch_size: int,
                          max_new_tokens: int = 0, decoding: str = "faithful", speculation: str = "auto",
                          stats: dict | None = None, mask_bias: float = 0.0,
                          placeholder_bounds: str = "words",
                          restricted_head: bool = True) -> Iterator[tuple[int, str, str]]:
    """Yield (index, prediction, finish_reason) for each prompt, batch by batch (longest first).

    decoding="faithful" constrains every output to a redaction of its source (`faithful`), with
    `mask_bias` the log-odds masking gains over copying (the privacy dial), `placeholder_bounds` what
    one placeholder may cover (`faithful.bounds`); an output that runs out of
    tokens is completed by masking and reported as "length".
    speculation="on" drafts from the source (`speculative`): the same tokens in fewer forward
    passes; "off" runs transformers' own `generate`; "auto" speculates for a batch of one only.
    restricted_head: faithful decoding computes the output layer for the allowed tokens only
    (`faithful.RestrictedHead`), speculating or not; False computes all of it.
    `stats` receives forward passes, tokens and the seconds spent in the faithful constraint."""
    from ..core import chat
    from ..core.constraint import Vocabulary
    from . import faithful

    stops = chat.stop_token_ids(tokenizer)
    encoded = chat.encode_prompts(tokenizer, prompts)
    # never past the model's positions (a bound for a long faithful text can be tens of thousands)
    positions = getattr(model.config.get_text_config(), "max_position_embeddings", None) or 10**9
    budgets = [token_budget(s, max_new_tokens, positions - len(ids)) for s, ids in zip(sources, encoded)]
    vocab = Vocabulary(tokenizer) if decoding == "faithful" else None
    # Similar lengths together: less left padding, and the slowest batches come first (honest ETA).
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        # the model saw each text trimmed (the chat template trims contents): it redacts that
        decoder = faithful.Decoder(vocab, [sources[i].strip() for i in batch], stops, mask_bias,
                                   faithful.bounds(placeholder_bounds)) if vocab else None
        prompt_ids, batch_budgets = [encoded[i] for i in batch], [budgets[i] for i in batch]
        # Verifying a draft costs a forward pass over all its tokens. With one sample that pass is
        # overhead-bound and speculation wins (1.2x on a 2-core CPU); with 16 it is compute-bound
        # and drafts that fail cost more than the passes they save (1.7x slower): BENCHMARKS.md.
        if speculation == "on" or (speculation == "auto" and len(batch) == 1):
            from .speculative import decode

            generated = decode(model, prompt_ids, batch_budgets, stops, tokenizer.pad_token_id, decoder, stats,
                               restricted_head)
        else:
            generated = _generate(model, tokenizer, prompt_ids, batch_budgets, stops, decoder, stats, restricted_head)
        results = [decoded(tokenizer, decoder, row, generated[row][:budgets[i]], sources[i], stops, budgets[i])
                   for row, i in enumerate(batch)]
        if stats is not None and decoder is not None:
            stats["constraint_s"] = stats.get("constraint_s", 0.0) + decoder.seconds
        for i, (text, reason) in zip(batch, results):
            yield i, text, reason


def decoded(tokenizer, decoder, row: int, tokens: list[int], source: str, stops: list[int],
             budget: int) -> tuple[str, str]:
    """(prediction, finish reason) of one row's generated tokens."""
    if decoder is None:
        new_ids, reason = _cut(tokens, set(stops), budget)
        return tokenizer.decode(new_ids, skip_special_tokens=True), reason
    text, unfinished = decoder.text(row, tokens)
    reason = "length" if unfinished else "stop"
    if not source.strip():
        return source, reason
    # the constraint worked on the trimmed text: the whitespace around it is the source's own
    lead, trail = source[:len(source) - len(source.lstrip())], source[len(source.rstrip()):]
    return lead + text + trail, reason


def _generate(model, tokenizer, prompts: list[list[int]], budgets: list[int], stops: list[int], decoder,
              stats: dict | None, restricted_head: bool = True) -> list[list[int]]:
    """Plain greedy decoding of one left-padded batch with transformers' `generate`; with a
    faithful decoder, the output layer computed for the allowed tokens only unless
    `restricted_head` is False (`faithful.RestrictedHead`)."""
    import contextlib

    import torch
    from transformers import LogitsProcessorList

    from . import faithful

    input_ids, attention, width = _left_padded(tokenizer, prompts)
    head = faithful.RestrictedHead(model) if decoder is not None and restricted_head else None
    processors = LogitsProcessorList([faithful.LogitsProcessor(decoder, width, head)] if decoder else [])
    with torch.inference_mode(), head or contextlib.nullcontext():
        out = model.generate(
            input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device),
            max_new_tokens=max(budgets), do_sample=False, eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id, logits_processor=processors,
            # set explicitly so a model's own generation_config cannot turn sampling back on
            temperature=None, top_p=None, top_k=None,
        )
    generated = out[:, width:].tolist()
    if stats is not None:  # one forward pass per generated position; tokens up to each row's stop
        stats["forward_passes"] = stats.get("forward_passes", 0) + out.shape[1] - width
        for tokens, budget in zip(generated, budgets):
            kept, reason = _cut(tokens, set(stops), budget)
            stats["tokens"] = stats.get("tokens", 0) + len(kept) + (reason == "stop")
    return generated


def generate_vllm(llm, tokenizer, prompts: Sequence[str], sources: Sequence[str], max_new_tokens: int = 0,
                  chunk: int = 512) -> Iterator[tuple[int, str, str]]:
    """The same greedy decoding through vLLM: same prompt ids, same stop tokens, same budgets.
    Requests go in chunks so results can be written (and resumed) as they come."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from ..core import chat

    stops = chat.stop_token_ids(tokenizer)
    for start in range(0, len(prompts), chunk):
        indices = range(start, min(start + chunk, len(prompts)))
        params = [SamplingParams(temperature=0.0, max_tokens=token_budget(sources[i], max_new_tokens),
                                 stop_token_ids=stops, skip_special_tokens=True) for i in indices]
        requests = [TokensPrompt(prompt_token_ids=ids)
                    for ids in chat.encode_prompts(tokenizer, [prompts[i] for i in indices])]
        for i, result in zip(indices, llm.generate(requests, params, use_tqdm=False)):
            completion = result.outputs[0]
            yield i, completion.text, "length" if completion.finish_reason == "length" else "stop"
