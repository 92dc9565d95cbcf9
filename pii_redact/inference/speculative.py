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


def greedy(logits, row: Row, decoder, head=None) -> int:
    """Greedy choice at one position: the argmax, or the best token the constraint allows (with
    its mask bias). With a `faithful.RestrictedHead`, `logits` is the position's hidden state and
    only the allowed tokens' logits are computed, here, once the row has taken the tokens before."""
    if decoder is None:
        return int(logits.argmax())
    if head is not None:
        logits = head.logits(logits, decoder.allowed(row.index))
    return decoder.choose(row.index, logits)


class _Slots:
    """A batch's KV cache and, per row and cache slot, whether the slot holds a kept token
    (`real`): rejected draft tokens leave holes the attention mask hides."""

    def __init__(self, model, n_rows: int):
        import torch
        from transformers import DynamicCache

        self.model = model
        # no config: every layer keeps all its slots (a sliding-window layer would drop the ones a
        # rejected draft needs back); the sliding window itself is the attention mask's business
        self.cache = DynamicCache()
        self.real = torch.zeros((n_rows, 0), dtype=torch.bool)
        self.window = getattr(model.config.get_text_config(), "sliding_window", None) or 10**9
        self.passes = 0

    def forward(self, input_ids, new_real, keep: int):
        """Logits of the last `keep` positions of `input_ids`, fed after what the cache holds (their
        hidden states while a `RestrictedHead` is on)."""
        import torch

        mask = torch.cat([self.real, new_real], dim=1)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
        slots = torch.arange(self.real.shape[1], mask.shape[1])
        device = self.model.device
        with torch.inference_mode():
            out = self.model(input_ids=input_ids.to(device), attention_mask=mask.long().to(device),
                             position_ids=positions.to(device), cache_position=slots.to(device),
                             past_key_values=self.cache, use_cache=True, logits_to_keep=keep)
        self.real = mask
        self.passes += 1
        return out.logits.float().cpu()

    def keep_rows(self, index) -> None:
        """Finished rows leave the batch."""
        self.cache.batch_select_indices(index)
        self.real = self.real[index]

    def make_room(self, m: int) -> None:
        """Compact before a step of `m` tokens if holes could push a token out of a window."""
        if _holes_could_matter(self.real, m, self.window):
            self.real = _compact(self.cache, self.real)

    def reject(self, row: int, m: int, kept: int) -> None:
        """The slots of a step's draft tokens that were not kept are holes from now on."""
        self.real[row, self.real.shape[1] - m + kept:] = False


def _padded(rows: list[list[int]], pad_id: int, width: int | None = None):
    """(ids, real): `rows` left-padded to `width` (prompts), or without a width right-padded to
    the longest (a step's tokens: each row's last token and its draft), and where real tokens are."""
    import torch

    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), width or longest), pad_id, dtype=torch.long)
    real = torch.zeros(ids.shape, dtype=torch.bool)
    for k, tokens in enumerate(rows):
        where = slice(ids.shape[1] - len(tokens), None) if width else slice(0, len(tokens))
        ids[k, where] = torch.tensor(tokens)
        real[k, where] = True
    return ids, real


def verify(row: Row, draft: list[int], logits, decoder, stops: set[int], head=None) -> int:
    """Accept the longest draft prefix greedy decoding would have chosen, plus the model's own
    next token; how many tokens were taken."""
    for j in range(len(draft) + 1):
        choice = greedy(logits[j], row, decoder, head)
        accept(row, [choice], stops, decoder)
        if row.done or j == len(draft) or choice != draft[j]:
            return j + 1
    return len(draft) + 1


def decode(model, prompts: list[list[int]], budgets: list[int], stops: list[int], pad_id: int,
           decoder=None, stats: dict | None = None, restricted_head: bool = False) -> list[list[int]]:
    """Greedy continuations of `prompts` (generated ids, ending with the stop token where one
    was chosen). `decoder`: a faithful.Decoder over the same rows, or None. `stats`, if given,
    receives the number of forward passes and of generated tokens. `restricted_head` (with a
    decoder): the output layer for the allowed tokens only (`faithful.RestrictedHead`), each
    position's computed once the row has taken the tokens before it."""
    import contextlib

    from .faithful import RestrictedHead

    head = RestrictedHead(model) if decoder is not None and restricted_head else None
    with head or contextlib.nullcontext():
        return _decode(model, prompts, budgets, stops, pad_id, decoder, stats, head)


def _decode(model, prompts, budgets, stops, pad_id, decoder, stats, head) -> list[list[int]]:
    """`decode` with its head settled (a `RestrictedHead` on, or None)."""
    import torch

    rows = [Row(i, p, b) for i, (p, b) in enumerate(zip(prompts, budgets))]
    stop_set = set(stops)
    slots = _Slots(model, len(rows))
    # prefill: a prompt's logits but the last are 262k wide and unused
    logits = slots.forward(*_padded(prompts, pad_id, width=max(map(len, prompts))), keep=1)[:, -1]
    active = list(range(len(rows)))
    for r in active:  # the first token; from here on a row's last token is the one not yet fed
        accept(rows[r], [greedy(logits[r], rows[r], decoder, head)], stop_set, decoder)
    while True:
        keep = [k for k, r in enumerate(active) if not rows[r].done]
        if not keep:
            break
        if len(keep) < len(active):
            slots.keep_rows(torch.tensor(keep))
            active = [active[k] for k in keep]
        drafts = [propose(rows[r]) for r in active]
        step, new_real = _padded([[rows[r].tokens[-1], *d] for r, d in zip(active, drafts)], pad_id)
        m = step.shape[1]
        slots.make_room(m)
        logits = slots.forward(step, new_real, keep=m)
        for k, (r, draft) in enumerate(zip(active, drafts)):
            taken = verify(rows[r], draft, logits[k], decoder, stop_set, head)
            slots.reject(k, m, taken)
            rows[r].draft_size = min(MAX_DRAFT, 2 * rows[r].draft_size) if taken == len(draft) + 1 \
                else max(MIN_DRAFT, taken)
    if stats is not None:
        stats["forward_passes"] = stats.get("forward_passes", 0) + slots.passes
        stats["tokens"] = stats.get("tokens", 0) + sum(len(row.tokens) for row in rows)
    return [row.tokens for row in rows]


def accept(row: Row, tokens: list[int], stops: set[int], decoder) -> None:
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
