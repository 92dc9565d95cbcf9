"""Faithful decoding: generation that can only write a redaction of its source.

At every step the model may only pick a token whose bytes continue a faithful redaction of its
source (`core.constraint`: the source with some spans replaced by well-formed placeholders,
nothing else changed); `<end_of_turn>` is allowed once the whole source is accounted for.
Whatever the weights, the output is a faithful redaction: `alignment.align` succeeds on it and
every placeholder is well-formed.

The budget `constraint.max_output_tokens` always finishes. If a smaller budget
(`--max-new-tokens`) runs out, the text is completed by masking, never by copying: an open
placeholder is closed and covers up to the next place an entity can end, and the rest of the
source becomes `labels.UNFINISHED`, line by line. Such outputs are marked unfinished.

Each step walks only the vocabulary prefixes the constraint allows (a few hundred binary
searches per sample); the privacy dial (`Decoder.restrict`) moves the choices the constraint
marks as decisions between masking and copying.

Since the allowed tokens are known before the model's output layer runs, the transformers
engine computes the logits of those tokens only (`RestrictedHead`): a few dozen rows of the tied
embedding instead of all 262,144, which is most of a step's work for Gemma 3 270M.
"""
from __future__ import annotations

import time
from functools import wraps

from ..core.constraint import Constraint, Vocabulary
from ..core.labels import BOUNDS, Bounds

# --------------------------------------------------------------------------------------------
# a batch of constrained generations

def bounds(placeholder_bounds: str) -> dict[str, Bounds] | None:
    """The cover bounds a `--placeholder-bounds` setting names: None for `words` (the constraint's
    own word bounds), `labels.BOUNDS` for `label`."""
    return BOUNDS if placeholder_bounds == "label" else None


def _timed(method):
    """Adds the method's run time to its Decoder's `seconds` (what the constraint costs)."""
    @wraps(method)
    def timed(self, *args):
        start = time.perf_counter()
        try:
            return method(self, *args)
        finally:
            self.seconds += time.perf_counter() - start

    return timed


class Decoder:
    """The constraint of each row of a batch, kept in step with the tokens generated so far.
    `seconds` is the time spent in it, for the statistics of whoever generates."""

    def __init__(self, vocab: Vocabulary, sources: list[str], stop_ids: list[int], mask_bias: float = 0.0,
                 bounds: dict[str, Bounds] | None = None):
        self.vocab = vocab
        self.mask_bias = mask_bias  # log-odds masking gains over copying where an entity may begin
        self.constraints = [Constraint(s, bounds) for s in sources]
        self.states = [c.start() for c in self.constraints]
        self.stop_ids = stop_ids
        self.done = [False] * len(sources)
        self.seconds = 0.0
        self._next: list[dict] = [{} for _ in sources]  # per row: states -> next_bytes(states)
        self._decided: list[dict] = [{} for _ in sources]  # per row: states -> decisions(states)
        self._last: list[tuple] = [(None, None)] * len(sources)  # per row: (states, _options) of the last walk

    def _next_bytes(self, row: int, states: frozenset) -> dict[int, frozenset]:
        cache = self._next[row]
        if states not in cache:
            cache[states] = self.constraints[row].next_bytes(states)
        return cache[states]

    @_timed
    def allowed(self, row: int) -> list[int]:
        """Token ids that continue row's faithful redaction."""
        return self._options(row)[0]

    def _options(self, row: int) -> tuple[list[int], dict[int, int]]:
        """`_walk` of row's current states, walked once per step (`allowed` and `restrict` both ask)."""
        states, options = self._last[row]
        if states is not self.states[row]:
            options = self._walk(row)
            self._last[row] = self.states[row], options
        return options

    def _walk(self, row: int) -> tuple[list[int], dict[int, int]]:
        """(token ids that continue row's faithful redaction, {token id: places where an entity
        may begin that it masks, less those it copies in clear} for the tokens where that is not
        0): a walk over the vocabulary's prefixes. `[` and ` [` open one such place (+1),
        `Anna` and ` Anna` copy one (-1), ` ` neither; after `[GIVENNAME_1]`, ` Schmidt` copies
        one, so the dial reaches the word after a placeholder however the tokenizer splits it."""
        vocab, constraint, out, decided = self.vocab, self.constraints[row], [], {}
        start = self.states[row]
        if constraint.may_end(start):
            out += self.stop_ids
        stack = [(b"", start, 0)]
        while stack:
            prefix, states, masked = stack.pop()
            decisions = self._decisions(row, states)
            for b, after in self._next_bytes(row, states).items():
                text = prefix + bytes([b])
                exact, more = vocab.lookup(text)
                if more:  # else no token starts like this: nothing below it either
                    n = masked + decisions.get(b, 0)
                    out += exact
                    if n:
                        decided.update((token, n) for token in exact)
                    stack.append((text, after, n))
        return out, decided

    def _decisions(self, row: int, states: frozenset) -> dict[int, int]:
        cache = self._decided[row]
        if states not in cache:
            cache[states] = self.constraints[row].decisions(states)
        return cache[states]

    @_timed
    def restrict(self, row: int, scores, out=None):
        """Row's next-token scores with every token the constraint forbids at -inf and, with a
        mask bias B, B/2 added for each place where an entity may begin that a token masks and
        taken for each one it copies in clear: the privacy dial. Masking rather than copying such
        a place gains B in log-odds, whether the tokenizer writes the choice as one token or
        two (` [` against ` Anna`, or ` ` and then `[` against `Anna`). Written into `out` (a row
        of -inf) when given. A finished row is left as it is (generation pads it whatever it
        scores)."""
        import torch

        if out is None:
            out = torch.full_like(scores, float("-inf"))
        if self.done[row]:
            out.copy_(scores)
            return out
        allowed, decided = self._options(row)
        out[allowed] = scores[allowed]
        if self.mask_bias and decided:
            ids = torch.tensor(list(decided), dtype=torch.long)
            masked = torch.tensor(list(decided.values()), dtype=out.dtype)
            out[ids] += self.mask_bias / 2 * masked
        return out

    def choose(self, row: int, scores) -> int:
        """The greedy token of row under the constraint and the bias (speculative decoding's
        checks use this, so they pick exactly what plain decoding would)."""
        return int(self.restrict(row, scores).argmax())

    @_timed
    def consume(self, row: int, token: int) -> None:
        """Advance row's constraint by one generated token."""
        if self.done[row]:
            return
        if token in self.stop_ids:
            self.done[row] = True
            return
        states = self.states[row]
        for b in self.vocab.bytes[token] or b"":
            states = self._next_bytes(row, states).get(b, frozenset())
        if not states:
            raise RuntimeError(f"token {token} broke the faithful constraint of row {row}")
        self.states[row] = states

    @_timed
    def text(self, row: int, tokens: list[int]) -> tuple[str, bool]:
        """(row's faithful output for these generated tokens, whether it had to be completed
        because they ran out before a stop token)."""
        states, data = self.constraints[row].start(), b""
        for token in tokens:
            if token in self.stop_ids:
                return data.decode("utf-8"), False
            piece = self.vocab.bytes[token] or b""
            for b in piece:
                states = self._next_bytes(row, states)[b]
            data += piece
        if self.constraints[row].may_end(states):  # the budget ran out just before the stop token
            return data.decode("utf-8"), False
        return (data + self.constraints[row].complete(states)).decode("utf-8"), True


class LogitsProcessor:
    """For transformers' `generate`: before each step, feed the rows' last tokens to the decoder,
    then leave only the tokens it allows, biased by its mask bias (`Decoder.restrict`). With a
    `RestrictedHead`, what the model hands over is its last hidden state, and the logits of the
    allowed tokens are computed here."""

    def __init__(self, decoder: Decoder, prompt_width: int, head: RestrictedHead | None = None):
        self.decoder, self.prompt_width, self.head = decoder, prompt_width, head

    def __call__(self, input_ids, scores):
        import torch

        if input_ids.shape[1] > self.prompt_width:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                self.decoder.consume(row, token)
        width = scores.shape[1] if self.head is None else self.head.vocab_size
        out = torch.full((scores.shape[0], width), float("-inf"), dtype=scores.dtype, device=scores.device)
        for row in range(scores.shape[0]):
            logits = scores[row] if self.head is None else self.head.logits(scores[row], self.decoder.allowed(row))
            self.decoder.restrict(row, logits, out[row])
        return out


class RestrictedHead:
    """The output layer computed only for the tokens faithful decoding allows. While active (a
    context manager), the model's `lm_head` hands its input through unchanged, so the model's
    output is its last hidden state; `logits` then takes the rows of the allowed tokens from the
    output layer's weights (the tied embedding) and applies what the model applies after its head
    (Gemma's final logit softcapping, where its config has one). The constrained choice is the full
    head's wherever the float sums agree: a matrix-vector product of a few rows may round the last
    bit otherwise than the full matrix product, which only a near-tie can notice."""

    def __init__(self, model):
        self.model = model
        self.weight = model.get_output_embeddings().weight
        self.vocab_size = self.weight.shape[0]
        self.config = model.config.get_text_config()
        self.softcap = getattr(self.config, "final_logit_softcapping", None)

    def __enter__(self) -> RestrictedHead:
        import torch

        self._head = self.model.get_output_embeddings()
        self.model.set_output_embeddings(torch.nn.Identity())
        self.config.final_logit_softcapping = None  # applied in `logits`, not to the hidden state
        return self

    def __exit__(self, *exc) -> None:
        self.model.set_output_embeddings(self._head)
        self.config.final_logit_softcapping = self.softcap

    def logits(self, hidden, ids: list[int]):
        """A full-width row of logits, right at `ids` (the rest is never read: -inf)."""
        import torch

        with torch.inference_mode():  # the weights would otherwise be tracked for a backward pass
            rows = torch.tensor(ids, dtype=torch.long, device=self.weight.device)
            picked = self.weight[rows] @ hidden.to(self.weight.device, self.weight.dtype)
            if self.softcap is not None:
                picked = torch.tanh(picked / self.softcap) * self.softcap
            out = torch.full((self.vocab_size,), float("-inf"), dtype=torch.float32, device=hidden.device)
            out[rows.to(hidden.device)] = picked.float().to(hidden.device)
        return out
