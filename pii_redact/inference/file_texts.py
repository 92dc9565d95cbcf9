"""The texts of a user's files on their way through a Redactor, the same for single-process
redact.py (`redact_files`) and its Ray path (`corpus`): each text cut into pieces that fit the
model (`split`, `cut`; one that cannot be is held back alone), its pieces redacted as one document
(`redact_texts`), what did not finish held back (`held_back`, `redacted_file`), what was found
listed (`entities_of`), and what went wrong reported by file and record (`report_bad`,
`report_unfinished`), never by content.
"""
from __future__ import annotations

import sys
from typing import Any

from ..core.files import BadRecord
from ..core.labels import UNFINISHED
from .formats import BOM, Source, Text, kind_of, render


class LineTooLong(Exception):
    def __init__(self, line: int, text: str):
        super().__init__(line)
        self.line, self.text = line, text  # 0-based line index, and the line (never printed)


def split(text: str, fits) -> list[tuple[int, str]]:
    """(offset, piece) for consecutive pieces of `text` that each `fits`: as many whole lines as
    fit, cut after the last blank line among them (a paragraph break) where there is one. Joined,
    the pieces are `text` again. LineTooLong if a single line does not fit."""
    lines, offset = [], 0
    for line in text.splitlines(keepends=True) or [text]:
        lines.append((offset, line))
        offset += len(line)
    pieces, i = [], 0
    while i < len(lines):
        j, chunk = i, ""
        while j < len(lines) and fits(chunk + lines[j][1]):
            chunk += lines[j][1]
            j += 1
        if j == i:
            raise LineTooLong(i, lines[i][1])
        blank = [k for k in range(i + 1, j) if not lines[k][1].strip()]
        if j < len(lines) and blank:
            j = blank[-1] + 1
        pieces.append((lines[i][0], "".join(line for _, line in lines[i:j])))
        i = j
    return pieces


def cut_into_pieces(sources: list[Source], redactor) -> Held:
    """Split every text into pieces whose prompt and expected answer fit in the context the
    model was trained with (`Redactor.fits`). A text that cannot be (a line too long for the model
    even on its own) is held back by itself, as an unreadable record is: named in its source's
    `bad`, and returned as (input, record) with the others."""
    uncut: Held = set()
    for source in sources:
        for text in source.texts:
            if problem := cut(text, redactor):
                source.bad.append(BadRecord(text.where, problem))
                uncut.add((text.input, text.record))
    return uncut


def cut(text: Text, redactor) -> str:
    """Fill in `text.pieces`; what makes that impossible (a line too long for the model), or ''."""
    from .generate import text_tokens

    try:
        text.pieces = split(text.text, redactor.fits)
    except LineTooLong as exc:
        return (f"line {exc.line + 1} is {text_tokens(redactor.tokenizer, exc.text)} tokens, too long for the "
                f"model's context of {redactor.resolved.context} tokens even on its own (with room for its "
                "redaction); break it into shorter lines")
    return ""


def redact_texts(texts: list[Text], redactor) -> None:
    """Fill in each text's redacted pieces, each text one document, all texts' pieces batched
    together. The segments are kept: they say which text each placeholder covers."""
    from tqdm.auto import tqdm

    total = sum(1 for text in texts for _, piece in text.pieces if piece.strip())
    with tqdm(total=total, unit="piece", desc="redacting", disable=None) as bar:
        documents = [[piece for _, piece in text.pieces] for text in texts]
        for document in redactor.redact_documents(documents, on_piece=lambda: bar.update(1)):
            text = texts[document.index]
            text.redacted, text.segments = document.texts, document.segments
            text.unfinished = [not finished for finished in document.finished]


def entities_of(text: Text) -> list[dict[str, Any]]:
    """The entities of a redacted text, as character offsets into the input (a byte-order mark
    counts as its first character). What an unfinished redaction masked is a row labelled
    UNFINISHED."""
    from ..core.alignment import align, align_robust

    out = []
    shift = len(BOM) if text.bom else 0
    for k, ((offset, piece), redacted) in enumerate(zip(text.pieces, text.redacted)):
        found = _entities(text.segments[k]) if text.segments and text.segments[k] is not None else align(piece, redacted)
        for e in found if found is not None else align_robust(piece, redacted)[0]:
            if e.value:
                out.append({"input": text.input, "record": text.record, "start": shift + offset + e.start,
                            "end": shift + offset + e.end, "label": e.label, "number": e.index, "text": e.value})
    return out


def _entities(segments) -> list:
    """The masked segments of a piece as entities (offsets in the piece)."""
    from ..core.labels import Entity

    out, pos = [], 0
    for segment in segments:
        if segment.label is not None:
            out.append(Entity(pos, pos + len(segment.text), segment.label, segment.text, segment.number))
        pos += len(segment.text)
    return out


Held = set[tuple[str, "int | None"]]  # (input, record) of the texts held back; record None: a whole text file


def held_back(texts: list[Text], allow_unfinished: bool) -> Held:
    """The texts not written because their redaction did not finish (none with --allow-unfinished)."""
    return set() if allow_unfinished else {(t.input, t.record) for t in texts if any(t.unfinished)}


def redacted_file(source: Source, held: Held, text_field: str) -> bytes | None:
    """The bytes written for `source`, without its held-back records; None for a text file held back."""
    if (source.name, None) in held:
        return None
    return render(source, {record for name, record in held if name == source.name}, text_field)


SHOWN = 10  # records named one by one per file; more are counted


def report_bad(sources: list[Source]) -> None:
    """One stderr line per record that could not be read or cut (at most SHOWN per file): where,
    why and what was done."""
    for source in sources:
        for bad in source.bad[:SHOWN]:
            done = "not written" if bad.where == source.name else "held back, the rest of the file is written"
            print(f"error: {bad}; {done}", file=sys.stderr)
        if len(source.bad) > SHOWN:
            print(f"error: {source.name}: {len(source.bad) - SHOWN} more records that could not be read or "
                  "cut, held back", file=sys.stderr)


def _records_named(group: list[Text]) -> str:
    """`records on lines 3, 7` (JSONL, CSV) or `rows 3, 7` (Parquet), the first SHOWN of them."""
    unit = "rows" if kind_of(group[0].input) == "parquet" else "records on lines"
    more = ", ..." if len(group) > SHOWN else ""
    return f"{unit} {', '.join(str(t.record + 1) for t in group[:SHOWN])}{more}"


def report_unfinished(texts: list[Text], held: Held, settings) -> None:
    """One stderr line per input with unfinished pieces: where, how many, and what was done, with
    the settings the Redactor ran with."""
    for name in dict.fromkeys(t.input for t in texts if any(t.unfinished)):
        group = [t for t in texts if t.input == name and any(t.unfinished)]
        pieces = sum(sum(t.unfinished) for t in group)
        records = f" ({_records_named(group)})" if group[0].record is not None else ""
        is_held = (name, group[0].record) in held
        if not is_held:
            done = f"written with the rest masked as {UNFINISHED}"
        else:
            done = "not written" if group[0].record is None else "not written, the rest of the file is"
        print(f"{'error' if is_held else 'warning'}: {name}: {pieces} piece(s){records} did not finish "
              f"within the token budget (--max-new-tokens {settings.max_new_tokens or 'derived'}, "
              f"--decoding {settings.decoding}); {done}", file=sys.stderr)
    if held:
        fix = ("leave --max-new-tokens at 0 (a budget faithful decoding always finishes within)"
               if settings.decoding == "faithful" and settings.max_new_tokens else
               "use the default --decoding faithful, which always finishes" if settings.decoding == "free" else
               "raise --max-new-tokens")
        print(f"  {fix}, or pass --allow-unfinished to write them masked", file=sys.stderr)
