"""The one place a redaction conversation becomes model text and token ids.

Training (`encode_example`) and inference (`encode_prompt`) both go through `render`, so the
chat template, the single `<bos>` and the `<end_of_turn>` stop token cannot drift apart.
"""
from __future__ import annotations

from typing import Sequence

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


def build_prompt(source: str) -> str:
    return f"{INSTRUCTION}{TEXT_MARKER}{source}"


def source_from_prompt(prompt: str) -> str | None:
    """The text to redact inside a prompt (after the first `\\n\\nText:\\n`), or None."""
    _, marker, source = prompt.partition(TEXT_MARKER)
    return source if marker else None


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
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _encode(tokenizer, text: str) -> list[int]:
    # The template already wrote <bos>: letting the tokenizer add another is the double-<bos> bug.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids the model sees at inference: the user turn plus `<start_of_turn>model\\n`."""
    return _encode(tokenizer, render(tokenizer, to_messages(prompt), add_generation_prompt=True))


def encode_example(tokenizer, prompt: str, response: str) -> dict[str, list[int]]:
    """Training ids = inference prompt ids + response ids + `<end_of_turn>`.

    `completion_mask` is 1 exactly on the response and its `<end_of_turn>`: the loss is on what
    the model must write, and it learns to stop. The newline the template puts after
    `<end_of_turn>` is left out: generation stops before it, so training on it teaches nothing.
    """
    return encode_examples(tokenizer, [(prompt, response)])[0]


def encode_examples(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[dict[str, list[int]]]:
    """`encode_example` for many (prompt, response) pairs. Rendering is cheap; tokenizing is not,
    so all texts go to the tokenizer in two batched calls (a fast tokenizer encodes a batch in
    parallel in Rust), giving ids identical to encoding each text alone."""
    if not pairs:
        return []
    prompt_texts: list[str] = []
    completions: list[str] = []
    for prompt, response in pairs:
        prompt_text = render(tokenizer, to_messages(prompt), add_generation_prompt=True)
        full_text = render(tokenizer, to_messages(prompt, response), add_generation_prompt=False)
        if not full_text.startswith(prompt_text):
            raise ValueError("chat template: the inference prompt is not a prefix of the training text")
        completion = full_text[len(prompt_text):]
        cut = completion.rfind(END_OF_TURN)
        if cut < 0:
            raise ValueError(f"chat template: the assistant turn does not end with {END_OF_TURN}")
        prompt_texts.append(prompt_text)
        completions.append(completion[: cut + len(END_OF_TURN)])
    # The template already wrote <bos>: letting the tokenizer add another is the double-<bos> bug.
    prompt_ids = tokenizer(prompt_texts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    return [
        {"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)}
        for p, c in zip(prompt_ids, completion_ids)
    ]


def stop_token_ids(tokenizer) -> list[int]:
    """`<eos>` and `<end_of_turn>`: a Gemma chat model ends its turn with the latter."""
    ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    return sorted({i for i in ids if i is not None and i != tokenizer.unk_token_id})
