"""Batched greedy redaction with a trained model: transformers everywhere, vLLM where it can run.

Prompts go through `chat.encode_prompt`, the same renderer training used. Generation is greedy, stops
on `<eos>` or `<end_of_turn>`, and each sample gets a token budget from its own source: the most a
faithful redaction of it can take. Faithful decoding always finishes within it; a free-decoding
model that never stops is caught there (`finish_reason == "length"`) instead of running to a
global cap.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Sequence

from .errors import UserError

# A redaction is about as long as its source; placeholders can be longer than the values they
# replace ("[DATEOFBIRTH_1]" vs "5/8/61"), hence the margin. An estimate, not a bound: a text
# dense with short values ("Anna, Bo, Li, ...") takes more.
ESTIMATE_FACTOR, ESTIMATE_MARGIN = 1.5, 32


def estimated_output_tokens(tokenizer, source: str) -> int:
    """About how many tokens a redaction of `source` takes: what a text must leave room for in
    the model's context (`redact.py` cuts long texts by it)."""
    ids = tokenizer(source, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]
    return math.ceil(len(ids) * ESTIMATE_FACTOR) + ESTIMATE_MARGIN


def token_budget(source: str) -> int:
    """The generation budget of one sample: the most tokens any faithful redaction of it can take
    (`faithful.max_output_tokens`). Faithful decoding always finishes within it; free decoding,
    which has no bound of its own, gets the same room, so a correct redaction always fits and
    only an output that rambles past every faithful one is cut off."""
    from . import faithful

    return faithful.max_output_tokens(source.strip())


def vllm_usable() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def load_for_generation(model_dir: str | Path):
    """A merged model directory -> (model, tokenizer) ready for batched generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import chat

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a model from {model_dir}: {exc}") from None
    chat.ensure_chat_template(tokenizer)
    tokenizer.padding_side = "left"  # decoder-only batches are padded on the left for generation
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tokenizer


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
                          stats: dict | None = None) -> Iterator[tuple[int, str, str]]:
    """Yield (index, prediction, finish_reason) for each prompt, batch by batch (longest first).

    decoding="faithful" constrains every output to a redaction of its source (`faithful`); an
    output that runs out of tokens is completed faithfully and reported as "length".
    speculation="on" drafts from the source (`speculative`): the same tokens in fewer forward
    passes; "off" runs transformers' own `generate`; "auto" speculates for a batch of one only.
    `stats` receives forward passes and tokens."""
    from . import chat, faithful

    stops = chat.stop_token_ids(tokenizer)
    encoded = chat.encode_prompts(tokenizer, prompts)
    # never past the model's positions (a bound for a long faithful text can be tens of thousands)
    positions = getattr(model.config.get_text_config(), "max_position_embeddings", None) or 10**9
    budgets = [max(1, min(max_new_tokens or token_budget(s), positions - len(ids)))
               for s, ids in zip(sources, encoded)]
    vocab = faithful.Vocabulary(tokenizer) if decoding == "faithful" else None
    # Similar lengths together: less left padding, and the slowest batches come first (honest ETA).
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        # the model saw each text trimmed (the chat template trims contents): it redacts that
        decoder = faithful.Decoder(vocab, [sources[i].strip() for i in batch], stops) if vocab else None
        prompt_ids, batch_budgets = [encoded[i] for i in batch], [budgets[i] for i in batch]
        # Verifying a draft costs a forward pass over all its tokens. With one sample that pass is
        # overhead-bound and speculation wins (1.2x on a 2-core CPU); with 16 it is compute-bound
        # and drafts that fail cost more than the passes they save (1.7x slower): BENCHMARKS.md.
        if speculation == "on" or (speculation == "auto" and len(batch) == 1):
            from .speculative import decode

            generated = decode(model, prompt_ids, batch_budgets, stops, tokenizer.pad_token_id, decoder, stats)
        else:
            generated = _generate(model, tokenizer, prompt_ids, batch_budgets, stops, decoder, stats)
        for row, i in enumerate(batch):
            tokens = generated[row][:budgets[i]]
            if decoder is None:
                new_ids, reason = _cut(tokens, set(stops), budgets[i])
                yield i, tokenizer.decode(new_ids, skip_special_tokens=True), reason
                continue
            text, unfinished = decoder.text(row, tokens)
            lead = sources[i][:len(sources[i]) - len(sources[i].lstrip())]
            trail = sources[i][len(sources[i].rstrip()):]
            yield i, (lead + text + trail) if sources[i].strip() else sources[i], "length" if unfinished else "stop"


def _generate(model, tokenizer, prompts: list[list[int]], budgets: list[int], stops: list[int], decoder,
              stats: dict | None) -> list[list[int]]:
    """Plain greedy decoding of one left-padded batch with transformers' `generate`."""
    import torch
    from transformers import LogitsProcessorList

    from . import faithful

    input_ids, attention, width = _left_padded(tokenizer, prompts)
    processors = LogitsProcessorList([faithful.logits_processor(decoder, width)] if decoder else [])
    with torch.inference_mode():
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


def load_vllm(model_dir: str | Path):
    """A vLLM engine and the model's tokenizer (GPU only); raises whatever vLLM raises."""
    from transformers import AutoTokenizer
    from vllm import LLM

    from . import chat

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chat.ensure_chat_template(tokenizer)
    return LLM(model=str(model_dir), dtype="bfloat16", seed=0), tokenizer


def generate_vllm(llm, tokenizer, prompts: Sequence[str], sources: Sequence[str], max_new_tokens: int = 0,
                  chunk: int = 512) -> Iterator[tuple[int, str, str]]:
    """The same greedy decoding through vLLM: same prompt ids, same stop tokens, same budgets.
    Requests go in chunks so results can be written (and resumed) as they come."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from . import chat

    stops = chat.stop_token_ids(tokenizer)
    for start in range(0, len(prompts), chunk):
        indices = range(start, min(start + chunk, len(prompts)))
        params = [SamplingParams(temperature=0.0, max_tokens=max_new_tokens or token_budget(sources[i]),
                                 stop_token_ids=stops, skip_special_tokens=True) for i in indices]
        requests = [TokensPrompt(prompt_token_ids=ids)
                    for ids in chat.encode_prompts(tokenizer, [prompts[i] for i in indices])]
        for i, result in zip(indices, llm.generate(requests, params, use_tqdm=False)):
            completion = result.outputs[0]
            yield i, completion.text, "length" if completion.finish_reason == "length" else "stop"
