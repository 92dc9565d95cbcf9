"""Copy-aware speculative greedy decoding: the source is the draft.

A redaction is mostly a copy of its source, yet plain greedy decoding pays one sequential forward
pass per output token. Here each step feeds, per row, the last chosen token plus a draft: the
prompt tokens that followed the last place where the output's final tokens occur in the prompt
("prompt lookup"). One forward pass with the KV cache scores them all; the row keeps the longest
draft prefix that greedy decoding would have chosen anyway, plus the model's own next token. So
the output is token for token what plain greedy decoding gives (the test compares them), in far
fewer passes where the model copies, and single steps around placeholders, where drafts fail.

Rows of a batch accept different numbers of tokens. Rejected draft tokens stay in the cache as
holes that the attention mask hides, so no row waits for another; positions count real tokens
only. Because sliding-window layers measure their window in cache slots, the cache is compacted
(holes removed, rows right-aligned) before any row's holes could push a real token out of a
window that plain decoding would still see. Finished rows leave the batch.

With a faithful `Decoder`, every check uses the constrained argmax (the best token the constraint
allows), so speculation composes with faithful decoding.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FIRST_DRAFT, MIN_DRAFT, MAX_DRAFT = 8, 4, 64
NGRAM = 3  # tokens of the output's tail looked up in the prompt (then 2, then 1)


@dataclass
class Row:
    index: int                 # position in the caller's batch (and in the faithful decoder)
    prompt: list[int]
    budget: int
    tokens: list[int] = field(default_factory=list)  # generated so far, all accepted
    draft_size: int = FIRST_DRAFT
    cursor: int = 0            # where in the prompt the last draft came from
    done: bool = False


def propose(row: Row) -> list[int]:
    """The prompt tokens that followed the latest occurrence of the output's last NGRAM (or fewer)
    tokens, preferring occurrences at or after the last draft's place."""
    room = min(row.draft_size, row.budget - len(row.tokens) - 1)
    if room <= 0 or not row.tokens:
        return []
    prompt = row.prompt
    for n in range(min(NGRAM, len(row.tokens)), 0, -1):
        tail = row.tokens[-n:]
        for start in (row.cursor, 0):
            for j in range(max(0, start - n), len(prompt) - n):
                if prompt[j:j + n] == tail:
                    row.cursor = j + n
                    return prompt[j + n:j + n + room]
    return []


def _greedy(logits, row: Row, decoder) -> int:
    """Greedy choice at one position: the argmax, or the best token the constraint allows."""
    if decoder is None:
        return int(logits.argmax())
    allowed = decoder.allowed(row.index)
    return allowed[int(logits[allowed].argmax())]


def decode(model, prompts: list[list[int]], budgets: list[int], stops: list[int], pad_id: int,
           decoder=None, stats: dict | None = None) -> list[list[int]]:
    """Greedy continuations of `prompts` (generated ids, ending with the stop token where one
    was chosen). `decoder`: a faithful.Decoder over the same rows, or None. `stats`, if given,
    receives the number of forward passes and of generated tokens."""
    import torch
    from transformers import DynamicCache

    device = model.device
    rows = [Row(i, p, b) for i, (p, b) in enumerate(zip(prompts, budgets))]
    window = getattr(model.config.get_text_config(), "sliding_window", None) or 10**9
    stop_set = set(stops)

    # prefill: left-padded prompts; the cache has one slot per position, `real` marks the used ones
    width = max(len(p) for p in prompts)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    prompt_real = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p)
        prompt_real[r, width - len(p):] = True
    # no config: every layer keeps all its slots (a sliding-window layer would drop the ones a
    # rejected draft needs back); the sliding window itself is the attention mask's business
    cache = DynamicCache()
    real = torch.zeros((len(rows), 0), dtype=torch.bool)  # per cache slot: holds a kept token
    passes = 0

    def forward(input_ids, new_real, keep: int):
        """Logits of the last `keep` positions of `input_ids`, fed after what the cache holds."""
        nonlocal real, passes
        mask = torch.cat([real, new_real], dim=1)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
        slots = torch.arange(real.shape[1], mask.shape[1])
        with torch.inference_mode():
            out = model(input_ids=input_ids.to(device), attention_mask=mask.long().to(device),
                        position_ids=positions.to(device), cache_position=slots.to(device),
                        past_key_values=cache, use_cache=True, logits_to_keep=keep)
        real = mask
        passes += 1
        return out.logits.float().cpu()

    logits = forward(ids, prompt_real, keep=1)[:, -1]  # a prompt's logits but the last: 262k wide, unused
    active = list(range(len(rows)))
    for r in active:  # the first token; from here on a row's last token is the one not yet fed
        _accept(rows[r], [_greedy(logits[r], rows[r], decoder)], stop_set, decoder)
    while True:
        keep = [k for k, r in enumerate(active) if not rows[r].done]
        if not keep:
            break
        if len(keep) < len(active):  # finished rows leave the batch
            index = torch.tensor(keep)
            cache.batch_select_indices(index)
            real = real[index]
            active = [active[k] for k in keep]
        drafts = [propose(rows[r]) for r in active]
        m = 1 + max(len(d) for d in drafts)
        if _holes_could_matter(real, m, window):
            real = _compact(cache, real)
        step = torch.full((len(active), m), pad_id, dtype=torch.long)
        new_real = torch.zeros((len(active), m), dtype=torch.bool)
        for k, (r, draft) in enumerate(zip(active, drafts)):
            fed = [rows[r].tokens[-1], *draft]
            step[k, :len(fed)] = torch.tensor(fed)
            new_real[k, :len(fed)] = True
        logits = forward(step, new_real, keep=m)
        for k, (r, draft) in enumerate(zip(active, drafts)):
            row, taken = rows[r], []
            for j in range(len(draft) + 1):
                choice = _greedy(logits[k, j], row, decoder)
                taken.append(choice)
                _accept(row, [choice], stop_set, decoder)
                if row.done or j == len(draft) or choice != draft[j]:
                    break
            # slots of draft tokens that were not kept are holes from now on
            real[k, real.shape[1] - m + len(taken):] = False
            row.draft_size = min(MAX_DRAFT, 2 * row.draft_size) if len(taken) == len(draft) + 1 \
                else max(MIN_DRAFT, len(taken))
    if stats is not None:
        stats["forward_passes"] = stats.get("forward_passes", 0) + passes
        stats["tokens"] = stats.get("tokens", 0) + sum(len(row.tokens) for row in rows)
    return [row.tokens for row in rows]


def _accept(row: Row, tokens: list[int], stops: set[int], decoder) -> None:
    for token in tokens:
        row.tokens.append(token)
        if decoder is not None:
            decoder.consume(row.index, token)
        if token in stops or len(row.tokens) >= row.budget:
            row.done = True
            return


def _holes_could_matter(real, m: int, window: int) -> bool:
    """Whether some row has holes between its first kept slot and the end while it spans more
    slots than a sliding window (minus this step's `m`): then the window, counted in slots, would
    hold fewer real tokens than plain decoding sees."""
    import torch

    first = real.long().argmax(1)  # left padding ends here
    inside = torch.arange(real.shape[1])[None, :] >= first[:, None]
    span = real.shape[1] - first
    return bool(((inside & ~real).any(1) & (span + m > window - 1)).any())


def _compact(cache, real):
    """Drop the holes: each row's real slots, right-aligned, left-padded. Returns the new mask."""
    import torch

    counts = real.sum(1)
    width = int(counts.max())
    order = torch.zeros((real.shape[0], width), dtype=torch.long)
    new_real = torch.zeros((real.shape[0], width), dtype=torch.bool)
    for r in range(real.shape[0]):
        slots = real[r].nonzero().squeeze(1)
        order[r, width - len(slots):] = slots
        new_real[r, width - len(slots):] = True
    for layer in cache.layers:
        index = order.to(layer.keys.device)[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
        layer.keys = layer.keys.gather(2, index)
        layer.values = layer.values.gather(2, index)
    return new_real
