"""What a faithful redaction of a source is, byte by byte: the constraint faithful decoding
generates under (`inference.faithful`) and training reads its decisions from
(`training.decisions`).

A faithful redaction is the source with some spans replaced by `[LABEL_n]` placeholders: nothing
inserted, changed or dropped outside them. At every step a writer may only add bytes that
continue one: copying the next source characters, or writing a well-formed placeholder (one of
the 17 labels, an optional positive number) that stands for one or more source characters, after
which copying resumes later in the source.

What a placeholder may stand for is designed, not left open, because a constraint bolted onto a
model that wants to hallucinate turns hallucinations into placeholders swallowing ordinary words:
  * entity-like spans only: no line break, no sentence end inside, not starting or ending with
    whitespace, at most its label's words (`labels.LabelSpec.max_words`: 3 for a given name, 4
    for a surname...), no digits in a name (`LabelSpec.named`); or, with `bounds`
    (`--placeholder-bounds label`), within its label's bounds (`labels.BOUNDS`, from the training
    set's values: no parenthesis in a surname, a digit in every number...);
  * a placeholder may open only where an entity can begin, and copying may resume only where
    one can end (`labels.can_start`, `labels.can_end`): at whitespace, the ends of the text or a
    separator, never inside a word or a dotted, hyphenated or @-joined string, so a stray "."
    after `[TELEPHONENUM_1]` cannot resume copying inside the number and `Pat[ZIPCODE_1]` cannot
    be written at all;
  * two placeholders need source text between them (no `[A][B]` splitting a word).

So the output is bounded by its source: every placeholder ends at its own place where an entity
can end, every other byte is copied (`max_output_tokens`). A cut-off output is completed by
masking, never by copying (`Constraint.complete`). The constraint works on bytes, so tokens that
are partial UTF-8 (byte fallback, byte-level BPE) are handled (`Vocabulary`: each token's bytes,
sorted for prefix search).
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from functools import lru_cache

from .labels import LABELS, REGISTRY, Bounds, can_end, can_start, mask_rest

MAX_NUMBER_DIGITS = 3
MAX_COVER_BYTES = 120
# A sentence ends at "!" or "?", or at "." after a word of four letters or more: "14. Oktober",
# "C. de Vito Murillo", "Nr. 35" and "г. Лысьва" are values of the training set, not sentence ends.
_SENTENCE_END = re.compile(r"(?:[!?]|(?<=[^\W\d_]{4})\.)\s+\S")
_LABEL_BYTES = tuple(label.encode() for label in LABELS)
# The longest placeholder the constraint lets a model write: `[CREDITCARDNUMBER_999]`.
MAX_PLACEHOLDER_BYTES = max(map(len, _LABEL_BYTES)) + 3 + MAX_NUMBER_DIGITS


def max_output_tokens(source: str) -> int:
    """The most tokens a faithful redaction of `source` can take, its stop token included: each
    placeholder ends at a distinct place where an entity can end, every other byte is copied, and
    every token writes at least one byte. With this budget faithful decoding always finishes."""
    ends = sum(can_end(source, i) for i in range(len(source) + 1))
    return len(source.encode()) + MAX_PLACEHOLDER_BYTES * ends + 1


# --------------------------------------------------------------------------------------------
# the vocabulary as bytes

def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable character table, inverted (the `tokenizers` ByteLevel alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class Vocabulary:
    """Each token's bytes (None for control tokens), sorted for prefix search."""

    def __init__(self, tokenizer):
        special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items() if not t.special}
        byte_level = "ByteLevel" in repr(tokenizer.backend_tokenizer.decoder)
        table = _byte_level_decoder() if byte_level else {}
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.bytes: list[bytes | None] = []
        for i, piece in enumerate(pieces):
            if i in special or piece is None:
                self.bytes.append(None)
            elif i in added:
                self.bytes.append(added[i].encode())
            elif byte_level:
                self.bytes.append(bytes(table[c] for c in piece) if all(c in table for c in piece) else None)
            elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", piece):
                self.bytes.append(bytes([int(piece[3:5], 16)]))
            else:
                self.bytes.append(piece.replace("\u2581", " ").encode())
        entries = sorted((b, i) for i, b in enumerate(self.bytes) if b)
        self.sorted = [b for b, _ in entries]
        self.ids = [i for _, i in entries]
        self._check(tokenizer)

    def _check(self, tokenizer) -> None:
        probe = "Grüße, José! 12,50 €\n\tA  b [EMAIL_1] <end_of_turn> 日本 😀"
        ids = tokenizer(probe, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if b"".join(self.bytes[i] or b"?" for i in ids) != probe.encode():
            raise ValueError(f"faithful decoding cannot read this tokenizer's pieces ({type(tokenizer).__name__})")

    def lookup(self, prefix: bytes) -> tuple[list[int], bool]:
        """(ids of the tokens that are exactly `prefix`, whether any token starts with it)."""
        k = bisect_left(self.sorted, prefix)
        starts = k < len(self.sorted) and self.sorted[k].startswith(prefix)
        exact = []
        while k < len(self.sorted) and self.sorted[k] == prefix:
            exact.append(self.ids[k])
            k += 1
        return exact, starts


# --------------------------------------------------------------------------------------------
# the constraint over one source

# States: ("C", pos) copying, source[:pos] accounted for; ("P", pos, text) writing placeholder
# `text` (b"[EMA"...) that covers from pos; ("A", pos, label) after a placeholder that covers
# from pos to wherever copying resumes.


def _placeholder_next(text: bytes) -> tuple[set[int], str | None]:
    """(bytes that may follow a partial placeholder `text`, its label once complete or None)."""
    body = text[1:]
    name, _, number = body.partition(b"_")
    if b"_" not in body:
        extends = {label[len(name)] for label in _LABEL_BYTES if label.startswith(name) and len(label) > len(name)}
        complete = name in _LABEL_BYTES
        return extends | ({ord("_"), ord("]")} if complete else set()), name.decode() if complete else None
    digits = set(range(ord("1") if not number else ord("0"), ord("9") + 1)) if len(number) < MAX_NUMBER_DIGITS else set()
    return digits | ({ord("]")} if number else set()), name.decode()


class Constraint:
    """Which bytes may come next in a faithful redaction of `source`, and where copying may resume."""

    def __init__(self, source: str, bounds: dict[str, Bounds] | None = None):
        self.text = source
        self.bounds = bounds  # per label what a placeholder may cover; None: the word bounds above
        self.source = source.encode()
        n = len(self.source)
        # byte position -> character position, where a character starts there (never split one)
        self.char_at: list[int | None] = [None] * (n + 1)
        pos = 0
        for i, c in enumerate(source):
            self.char_at[pos] = i
            pos += len(c.encode())
        self.char_at[n] = len(source)
        # where an entity may end, hence copying may resume: byte positions, ascending
        self.end_points = [q for q, c in enumerate(self.char_at) if c is not None and can_end(source, c)]
        self._resume = lru_cache(maxsize=None)(self._resume_points)

    def start(self) -> frozenset:
        return frozenset({("C", 0)})

    def _resume_points(self, pos: int, label: str) -> tuple[int, ...]:
        """Where copying may resume after a placeholder of `label` that covers from `pos`: the
        places an entity may end such that the cover is what the label may stand for (see the
        module docstring). The checks only get stricter as the cover grows, so the scan stops at
        the first one that fails."""
        start = self.char_at[pos]
        if start is None or start >= len(self.text) or self.text[start].isspace() or not can_start(self.text, start):
            return ()
        fits, out = self._cover_rule(label), []
        for q in self.end_points[bisect_right(self.end_points, pos):]:
            covered = self.text[start:self.char_at[q]]
            if "\n" in covered or _SENTENCE_END.search(covered):
                break
            within, whole = fits(covered, q - pos)
            if not within:
                break
            if whole and not covered[-1].isspace():
                out.append(q)
        return tuple(out)

    def _cover_rule(self, label: str):
        """(cover, its length in bytes) -> (within the bounds, a whole value may be this): the
        first only gets stricter as the cover grows (`_resume_points` stops at the first miss)."""
        if self.bounds is not None:
            bounds = self.bounds[label]
            return lambda covered, size: (bounds.allows(covered.rstrip()), bounds.fits(covered.rstrip()))
        max_words, no_digits = REGISTRY[label].max_words, REGISTRY[label].named
        return lambda covered, size: (size <= MAX_COVER_BYTES and len(covered.split()) <= max_words
                                      and not (no_digits and any(c.isdigit() for c in covered)), True)

    def _live(self, pos: int, text: bytes) -> bool:
        """Whether a placeholder that starts `text` at `pos` can be finished and cover something:
        some label it may still become has a place where copying may resume (or the text end)."""
        name = text[1:].partition(b"_")[0]
        return any(self._resume(pos, label.decode()) for label in _LABEL_BYTES if label.startswith(name))

    def next_bytes(self, states: frozenset) -> dict[int, frozenset]:
        """byte -> the states after it, for every byte some state allows."""
        out: dict[int, set] = {}
        for state in states:
            kind, pos = state[0], state[1]
            if kind == "C":
                if pos < len(self.source):
                    out.setdefault(self.source[pos], set()).add(("C", pos + 1))
                    if self._live(pos, b"["):  # some label may cover something from here
                        out.setdefault(ord("["), set()).add(("P", pos, b"["))
            elif kind == "P":
                allowed, label = _placeholder_next(state[2])
                for b in allowed:
                    text = state[2] + bytes([b])
                    if b == ord("]"):
                        out.setdefault(b, set()).add(("A", pos, label))
                    elif self._live(pos, text):  # never write a placeholder that cannot cover anything
                        out.setdefault(b, set()).add(("P", pos, text))
            else:  # "A": copying resumes; another placeholder needs source text in between
                for q in self._resume(pos, state[2]):
                    if q < len(self.source):
                        out.setdefault(self.source[q], set()).add(("C", q + 1))
        return {b: frozenset(s) for b, s in out.items()}

    def decisions(self, states: frozenset) -> dict[int, int]:
        """The bytes that, from `states`, decide between masking and copying where an entity may
        begin: +1 for a `[` that can only open a placeholder there, -1 for a byte that can only
        copy the start of such a place in clear. The privacy dial moves exactly these
        (`Decoder.restrict`). A byte some state writes otherwise (an ordinary copy, a
        placeholder's own bytes, copying resumed after a placeholder, where no second one may
        open yet, a `[` the source itself has there) decides nothing."""
        starts, opens, other = set(), set(), set()
        for state in states:
            kind, pos = state[0], state[1]
            if kind == "C":
                if pos < len(self.source):
                    if self._live(pos, b"["):
                        starts.add(self.source[pos])
                        opens.add(ord("["))
                    else:
                        other.add(self.source[pos])
            elif kind == "P":
                other |= _placeholder_next(state[2])[0]
            else:
                other.update(self.source[q] for q in self._resume(pos, state[2]) if q < len(self.source))
        both = (starts & opens) | other
        return {**{b: -1 for b in starts - both}, **{b: 1 for b in opens - both}}

    def advance(self, states: frozenset, data: bytes) -> frozenset:
        for b in data:
            states = self.next_bytes(states).get(b, frozenset())
            if not states:
                break
        return states

    def may_end(self, states: frozenset) -> bool:
        """Whether the text so far is a complete faithful redaction."""
        n = len(self.source)
        return any(state == ("C", n) or (state[0] == "A" and n in self._resume(state[1], state[2]))
                   for state in states)

    def complete(self, states: frozenset) -> bytes:
        """The bytes that finish a cut-off output, masking rather than copying: an open placeholder
        is closed and covers to the first place copying may resume; the rest of the source
        becomes UNFINISHED, line by line."""
        kind, pos, *rest = max(states, key=lambda state: (state[1], state[0] == "C"))
        if kind == "C":
            return self._masked_from(pos)
        closing, label = b"", rest[0]
        if kind == "P":
            name, sep, number = rest[0][1:].partition(b"_")
            full = name if name in _LABEL_BYTES else next(lab for lab in _LABEL_BYTES if lab.startswith(name))
            closing = full[len(name):] + (b"" if sep else b"_") + (b"" if number else b"1") + b"]"
            label = full.decode()
        points = self._resume(pos, label)
        return closing + self._masked_from(points[0] if points else len(self.source))

    def _masked_from(self, pos: int) -> bytes:
        """source[pos:] masked; a character cut in two by a byte-level token is finished first."""
        end = pos
        while self.char_at[end] is None:
            end += 1
        return self.source[pos:end] + mask_rest(self.source[end:].decode("utf-8")).encode()
