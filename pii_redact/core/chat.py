"""The one place a redaction conversation becomes model text and token ids.

Training (`encode_examples`) and inference (`encode_prompt`) both go through `_segments`, so the
chat template, the single `<bos>` and the `<end_of_turn>` stop token cannot drift apart.

Message contents are encoded as plain text: a text that happens to contain `<end_of_turn>` or
`<bos>` (a chat log, a prompt-injection attempt) gets the ids of those characters, never the
control tokens, which only the template itself writes. The template's own text and the contents
are tokenized separately, which on Gemma's tokenizer gives the same ids as encoding the whole
text at once (newlines are tokens of their own, so no merge crosses a boundary; a test checks it).

Which text a record redacts, its own `source` or the one inside its prompt, is `source_of`.
"""
from __future__ import annotations

from typing import Any, Sequence

# The instruction of the seed data set, verbatim: a model trained on it is prompted the same way.
INSTRUCTION = (
    "Mask all PII in the following text. Replace each entity with the exact UPPERCASE label in "
    "square brackets (e.g., [PERSON], [EMAIL], [PHONE], [USERNAME], [ADDRESS], [CREDIT_CARD], "
    "[TIME], etc.). Preserve all non-PII text, whitespace, and punctuation exactly. "
    "Return ONLY the redacted text."
)
TEXT_MARKER = "\n\nText:\n"

# Google's Gemma 3 chat template (also Unsloth's "gemma3"), used when a tokenizer has none,
# as base checkpoints often do. Note `| trim`: message contents lose surrounding whitespace.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
END_OF_TURN = "<end_of_turn>"
# Gemma's chat control tokens. The renderer never lets a text produce them, but a training record
# that holds one as text teaches the model to write it: prepare_data.py refuses such records.
CONTROL_TOKENS = ("<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<start_of_turn>", END_OF_TURN)
# Stand-ins for the message contents while the template renders (private-use characters no text
# of ours contains, and no whitespace, which the template would trim).
_SLOTS = ("\ue010", "\ue011")


def build_prompt(source: str) -> str:
    return f"{INSTRUCTION}{TEXT_MARKER}{source}"


def source_from_prompt(prompt: str) -> str | None:
    """The text to redact inside a prompt (after the first `TEXT_MARKER`), or None."""
    _, marker, source = prompt.partition(TEXT_MARKER)
    return source if marker else None


def source_of(source: Any, prompt: Any) -> str | None:
    """The text a record redacts: its own `source` where it has one, else the text inside its
    prompt (None: neither)."""
    if isinstance(source, str):
        return source
    return source_from_prompt(prompt) if isinstance(prompt, str) else None


def to_messages(prompt: str, response: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": prompt}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


def ensure_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE


def render(tokenizer, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    """Conversation -> model text through the tokenizer's chat template (which writes `<bos>`)."""
    return "".join(text for text, _ in _segments(tokenizer, messages, add_generation_prompt))


def _segments(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is_content) pieces: the template's own text, in which
    special tokens are control tokens, and the message contents, which are plain text."""
    slotted = [{**m, "content": f" {slot} "} for m, slot in zip(messages, _SLOTS)]
    text = tokenizer.apply_chat_template(slotted, tokenize=False, add_generation_prompt=add_generation_prompt)
    pieces: list[tuple[str, bool]] = []
    for message, slot in zip(messages, _SLOTS):
        before, found, text = text.partition(slot)
        if not found:
            raise ValueError("chat template: a message content does not appear in the rendered text")
        # A template that trims contents (Gemma's `| trim`) also ate the spaces around the slot.
        trims = not before.endswith(" ")
        before, text = (before, text) if trims else (before[:-1], text[1:])
        pieces += [(before, False), (message["content"].strip() if trims else message["content"], True)]
    pieces.append((text, False))
    return [(t, is_content) for t, is_content in pieces if t]


def _encode_segments(tokenizer, conversations: list[list[tuple[str, bool]]]) -> list[list[int]]:
    """Token ids of many segmented conversations, in two batched tokenizer calls (a fast tokenizer
    encodes a batch in parallel in Rust)."""
    template = [t for c in conversations for t, is_content in c if not is_content]
    contents = [t for c in conversations for t, is_content in c if is_content]
    # The template already wrote <bos>: letting the tokenizer add another is the double-<bos> bug.
    template_ids = iter(tokenizer(template, add_special_tokens=False)["input_ids"] if template else [])
    content_ids = iter(tokenizer(contents, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                       if contents else [])
    return [[i for _, is_content in c for i in next(content_ids if is_content else template_ids)]
            for c in conversations]


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids the model sees at inference: the user turn plus `<start_of_turn>model\\n`."""
    return encode_prompts(tokenizer, [prompt])[0]


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    return _encode_segments(tokenizer, [_segments(tokenizer, to_messages(p), True) for p in prompts])


def encode_examples(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[dict[str, list[int]]]:
    """Training ids = inference prompt ids + response ids + `<end_of_turn>`, for many
    (prompt, response) pairs.

    `completion_mask` is 1 exactly on the response and its `<end_of_turn>`: the loss is on what
    the model must write, and it learns to stop. The newline the template puts after
    `<end_of_turn>` is left out: generation stops before it, so training on it teaches nothing.
    """
    if not pairs:
        return []
    prompts: list[list[tuple[str, bool]]] = []
    completions: list[list[tuple[str, bool]]] = []
    for prompt, response in pairs:
        prompt_part = _segments(tokenizer, to_messages(prompt), True)
        full = _segments(tokenizer, to_messages(prompt, response), False)
        # The training text must be: the inference prompt, the response, then <end_of_turn>.
        n = len(prompt_part)
        if full[:n] != prompt_part or len(full) <= n + 1 or not full[n][1]:
            raise ValueError("chat template: the inference prompt is not a prefix of the training text")
        if not full[n + 1][0].startswith(END_OF_TURN):
            raise ValueError(f"chat template: the assistant turn does not end with {END_OF_TURN}")
        prompts.append(prompt_part)
        completions.append([full[n], (END_OF_TURN, False)])
    prompt_ids = _encode_segments(tokenizer, prompts)
    completion_ids = _encode_segments(tokenizer, completions)
    return [{"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)}
            for p, c in zip(prompt_ids, completion_ids)]


def stop_token_ids(tokenizer) -> list[int]:
    """`<eos>` and `<end_of_turn>`: a Gemma chat model ends its turn with the latter."""
    ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    return sorted({i for i in ids if i is not None and i != tokenizer.unk_token_id})
