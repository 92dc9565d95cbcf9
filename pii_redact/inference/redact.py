"""`redact.py`: a trained model applied to a user's own files.

Inputs are plain text files (one text each), JSONL files (one object per line; its --text-field
is redacted, the other fields are kept) or standard input. Every text is cut at paragraph, then
line boundaries into pieces that fit the model's context with room for the answer, redacted in
batches (faithful decoding, the safety net and propagation by default, as evaluate.py), and
joined back with the separators it had as one document: one numbering through all its pieces, and
what one piece masked masked in all. With faithful decoding, every character outside a
placeholder is the input's, byte for byte, line endings and a leading byte-order mark included.

It fails closed. Every output path is checked before the model loads; a redaction that did not
finish within its token budget has its rest masked as `[UNFINISHED]`, never copied, and is not
written at all unless `--allow-unfinished` (exit 1 otherwise); nothing of the input's text is
ever printed in a message, only file, record, line and length.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..cli import parse_config
from ..config import RedactConfig
from ..core.errors import UserError, describe
from ..core.files import (
    BadRecord,
    check_can_write,
    discard,
    dumps_line,
    iter_records,
    publish,
    stage_text,
)
from ..core.labels import UNFINISHED
from ..models.loading import trained_model

PROMPT_OVERHEAD = 48  # tokens of the chat template and instruction beyond the text (Gemma's: 43)
BOM = "\ufeff"


@dataclass
class Text:
    """One text to redact: where it came from, and its pieces (filled in as they are redacted)."""

    input: str
    record: int | None  # line index in a JSONL input, None for a plain text
    text: str           # without a leading byte-order mark, which `bom` remembers
    obj: dict | None = None  # the JSONL object the text came from
    bom: bool = False
    pieces: list[tuple[int, str]] = field(default_factory=list)  # (offset in text, piece)
    redacted: list[str] = field(default_factory=list)
    unfinished: list[bool] = field(default_factory=list)
    segments: list | None = None  # per piece, what each placeholder covers (propagate.Segment), once consistent

    @property
    def where(self) -> str:
        return self.input if self.record is None else f"{self.input}:{self.record + 1}"

    def output(self) -> str:
        return (BOM if self.bom else "") + "".join(self.redacted)


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


# --------------------------------------------------------------------------------------------
# reading

def read_texts(config: RedactConfig) -> list[Text]:
    """Every text of every input, checked: an existing file, readable UTF-8. An input with no text
    (empty, or only whitespace) has nothing to mask: it is written unchanged, with a warning."""
    texts: list[Text] = []
    for name in config.inputs:
        path = "<stdin>" if name == "-" else name
        data = _read_input(name)
        if name != "-" and is_jsonl(name) and data.lstrip(BOM.encode()).strip():
            texts += _jsonl_texts(Path(name), config.text_field)
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        bom = text.startswith(BOM)
        text = text[len(BOM):] if bom else text
        if not text.strip():
            print(f"warning: {path}: no text (empty or only whitespace), nothing to redact: written unchanged",
                  file=sys.stderr)
        texts.append(Text(path, None, text, bom=bom))
    return texts


def _read_input(name: str) -> bytes:
    """The bytes of an input: a file, or standard input for `-`."""
    if name == "-":
        return sys.stdin.buffer.read()
    if Path(name).is_dir():
        raise UserError(f"{name}: is a directory, not a file")
    try:
        return Path(name).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{name}: no such file") from None


def is_jsonl(name: str) -> bool:
    return name.lower().endswith(".jsonl")


def _jsonl_texts(path: Path, text_field: str) -> list[Text]:
    texts = []
    for index, obj in iter_records(path):
        if isinstance(obj, BadRecord):
            raise UserError(str(obj))
        if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
            raise UserError(f"{path}:{index + 1}: expected an object with a string '{text_field}' field "
                            "(choose the field with --text-field)")
        texts.append(Text(str(path), index, obj[text_field], obj=obj))
    return texts  # never empty: read_texts passes only a file with something besides blank lines


def cut_into_pieces(texts: list[Text], tokenizer, max_seq_length: int) -> None:
    """Split every text into pieces whose prompt and expected answer fit in `max_seq_length`
    tokens (the context the model was trained with)."""
    from .generate import estimated_output_tokens

    def n_tokens(piece: str) -> int:
        return len(tokenizer(piece, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"])

    def fits(piece: str) -> bool:
        return n_tokens(piece) + PROMPT_OVERHEAD + estimated_output_tokens(tokenizer, piece) <= max_seq_length

    for text in texts:
        try:
            text.pieces = split(text.text, fits)
        except LineTooLong as exc:
            raise UserError(f"{text.where}: line {exc.line + 1} is {n_tokens(exc.text)} tokens, too long for the "
                            f"model's context of {max_seq_length} tokens even on its own (with room for its "
                            "redaction); break it into shorter lines") from None
        text.redacted = [piece if not piece.strip() else "" for _, piece in text.pieces]
        text.unfinished = [False] * len(text.pieces)


# --------------------------------------------------------------------------------------------
# redacting

def redact_texts(texts: list[Text], redactor) -> None:
    """Fill in each text's redacted pieces, all texts' pieces batched together."""
    from tqdm.auto import tqdm

    jobs = [(text, k) for text in texts for k, (_, piece) in enumerate(text.pieces) if piece.strip()]
    with tqdm(total=len(jobs), unit="piece", desc="redacting", disable=None) as bar:
        for result in redactor.redact([text.pieces[k][1] for text, k in jobs]):
            text, k = jobs[result.index]
            text.redacted[k] = result.text
            text.unfinished[k] = not result.finished
            bar.update(1)


def make_consistent(texts: list[Text], propagate: bool) -> None:
    """Each text as one document: what one piece masked is masked in every piece (with
    `propagate`), and one numbering runs through all of them (`propagate.consistent_segments`).
    The segments are kept: they say which text each placeholder covers."""
    from .propagate import consistent_segments, render

    for text in texts:
        pairs = [(piece, redacted) for (_, piece), redacted in zip(text.pieces, text.redacted)]
        text.segments, _ = consistent_segments(pairs, propagate=propagate)
        text.redacted = [redacted if segs is None else render(segs) for (_, redacted), segs in zip(pairs, text.segments)]


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


# --------------------------------------------------------------------------------------------
# writing

def check_outputs(config: RedactConfig) -> None:
    """Refuse, before any work, what could not be written at the end, or would write over an
    input, another output or (without --overwrite) an existing file."""
    inputs = [Path(i) for i in config.inputs if i != "-"]
    targets: list[Path] = []
    if config.output_dir is None:
        if len(config.inputs) > 1:
            raise UserError("several inputs: pass --output-dir to write each one's redaction there")
    else:
        if "-" in config.inputs:
            raise UserError("standard input has no name to write under --output-dir: omit --output-dir")
        out = Path(config.output_dir)
        check_can_write(out, "--output-dir", directory=True)
        names = [p.name for p in inputs]
        if len(set(names)) != len(names):
            raise UserError("two inputs have the same file name: they would be written to one file in --output-dir")
        for path in inputs:
            target = out / path.name
            if _same(target, path):
                raise UserError(f"--output-dir {out}: writing there would overwrite the input {path}")
            if os.path.lexists(target) and not config.overwrite:  # a link to nothing too: it is not replaced
                raise UserError(f"{target} already exists: pass --overwrite to replace it, or another --output-dir")
            targets.append(target)
    if config.entities:
        entities = Path(config.entities)
        if any(_same(entities, p) for p in inputs):
            raise UserError(f"--entities {entities} is one of the inputs")
        if any(_same(entities, t) for t in targets):
            raise UserError(f"--entities {entities} is where a redacted input is written")
        if config.output_dir and _same(entities, Path(config.output_dir)):
            raise UserError(f"--entities {entities} is the --output-dir: name a file")
        if not (config.output_dir and _same(entities.parent, Path(config.output_dir))):
            check_can_write(entities, "--entities")  # (--output-dir, checked above, is made at the end)
        elif entities.is_dir():
            raise UserError(f"--entities {entities} is a directory, not a file")
        if os.path.lexists(entities) and not config.overwrite:
            raise UserError(f"--entities {entities} already exists: pass --overwrite to replace it, or another file")


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file, also one not made yet: compared resolved (`out/../out/x`,
    a symlinked folder), and by identity where both exist (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):  # (Path.resolve raises on a symlink loop)
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def write_outputs(texts: list[Text], config: RedactConfig) -> tuple[list[str], list[str]]:
    """Write the redaction of every input whose texts all finished (all of them with
    --allow-unfinished), and the entities of what was written. All or nothing on failure: every
    file is first written in full beside its target, and put in place only once all were, so a
    failed write (a full disk) leaves none (exit 2). Returns the inputs held back as unfinished,
    and the files not put in place (`_publish_all`)."""
    by_input: dict[str, list[Text]] = {}
    for text in texts:
        by_input.setdefault(text.input, []).append(text)
    held_back = [name for name, group in by_input.items()
                 if not config.allow_unfinished and any(any(t.unfinished) for t in group)]
    outputs = {name: _output(group, config) for name, group in by_input.items() if name not in held_back}
    files = {} if config.output_dir is None else {
        Path(config.output_dir) / Path(name).name: output for name, output in outputs.items()}
    written = [t for t in texts if t.input in outputs]
    if config.entities and written:  # last, so it is put in place after what it lists
        files[Path(config.entities)] = "".join(dumps_line(e) for text in written for e in entities_of(text))
    made_dir = config.output_dir is not None and bool(outputs) and not Path(config.output_dir).exists()
    if made_dir:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    staged: dict[Path, Path] = {}
    try:
        for target, content in files.items():
            staged[target] = stage_text(target, content)
        if config.output_dir is None and outputs:
            _write_stdout("".join(outputs.values()))
    except BaseException:
        discard(staged.values())
        if made_dir:
            with contextlib.suppress(OSError):  # only if still empty: another run may write there too
                Path(config.output_dir).rmdir()
        raise
    try:
        return held_back, _publish_all(staged, config)
    finally:
        discard(staged.values())  # those not put in place (a file made meanwhile, a failure)


def _output(group: list[Text], config: RedactConfig) -> str:
    """One input's redaction: its text, or its JSONL records with the text field redacted."""
    if group[0].record is None:
        return group[0].output()
    return "".join(dumps_line({**t.obj, config.text_field: t.output()}) for t in group)


def _write_stdout(text: str) -> None:
    """The redaction on standard output as UTF-8, whatever the locale or PYTHONIOENCODING says:
    it is the input's own text, which an ASCII stream could not hold."""
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def _publish_all(staged: dict[Path, Path], config: RedactConfig) -> list[str]:
    """Put every staged file in place; returns those that were not, each named on stderr: without
    --overwrite, a file that appeared since the checks (another run writing there) is kept as it
    is; and the entities file only lists redactions that were all put in place."""
    refused: list[str] = []
    for target, tmp in staged.items():
        if refused and config.entities and target == Path(config.entities):
            print(f"error: --entities {target}: not written, as it would list redactions that were not",
                  file=sys.stderr)
            refused.append(str(target))
            continue
        try:
            publish(tmp, target, replace=config.overwrite)
        except FileExistsError:
            print(f"error: {target} appeared while this run worked (another run writing there?): kept as it "
                  "is, and nothing written there; pass --overwrite to replace it", file=sys.stderr)
            refused.append(str(target))
        except OSError as exc:  # e.g. a folder made there meanwhile: the others are still put in place
            print(f"error: {describe(exc)}; not written", file=sys.stderr)
            refused.append(str(target))
    return refused


def report_unfinished(texts: list[Text], held_back: list[str], config: RedactConfig) -> None:
    """One stderr line per input with unfinished pieces: where, how many, and what was done."""
    for name in dict.fromkeys(t.input for t in texts if any(t.unfinished)):
        group = [t for t in texts if t.input == name and any(t.unfinished)]
        pieces = sum(sum(t.unfinished) for t in group)
        records = f" (records on lines {', '.join(str(t.record + 1) for t in group)})" if group[0].record is not None else ""
        done = "not written" if name in held_back else f"written with the rest masked as {UNFINISHED}"
        print(f"{'error' if name in held_back else 'warning'}: {name}: {pieces} piece(s){records} did not finish "
              f"within the token budget (--max-new-tokens {config.max_new_tokens or 'derived'}, "
              f"--decoding {config.decoding}); {done}", file=sys.stderr)
    if held_back:
        fix = ("leave --max-new-tokens at 0 (a budget faithful decoding always finishes within)"
               if config.decoding == "faithful" and config.max_new_tokens else
               "use the default --decoding faithful, which always finishes" if config.decoding == "free" else
               "raise --max-new-tokens")
        print(f"  {fix}, or pass --allow-unfinished to write them masked", file=sys.stderr)


DESCRIPTION = "Redact PII in your own texts with a model trained by finetune.py."
USAGE = "redact.py [options] [INPUT ...]"
EPILOG = """examples:
  python redact.py notes.txt                               # newest run in outputs/, to standard output
  cat mail.txt | python redact.py --model-dir outputs/my-run
  python redact.py --output-dir redacted/ a.txt b.txt      # redacted/a.txt, redacted/b.txt
  python redact.py tickets.jsonl --text-field body --entities found.jsonl

Long texts are cut at paragraph and line breaks into pieces that fit the model and joined back
unchanged. With the default faithful decoding, only placeholders differ from the input, and the
default token budget always suffices. A redaction that runs out of budget anyway (a small
--max-new-tokens, or --decoding free) is not written unless --allow-unfinished, and then its rest
is masked as [UNFINISHED], never copied. Exit status: 0 done, 1 something was not written
(unfinished, or a file another run made meanwhile), 2 bad input or flags (nothing written)."""


def main(argv: list[str] | None = None) -> int:
    config, _ = parse_config(RedactConfig, "redact", argv, prog="redact.py", description=DESCRIPTION,
                             epilog=EPILOG, usage=USAGE)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    check_outputs(config)
    model_dir, run = trained_model(config.model_dir, config.runs_dir)
    from .redactor import Redactor, Settings, choose_backend

    if choose_backend(config.backend, config.decoding, model_dir, config.gguf) == "llama.cpp":
        from .llamacpp import gguf_for

        gguf_for(config.gguf, model_dir)  # a missing or broken GGUF fails before any input is read
    texts = read_texts(config)

    settings = replace(Settings.of(config), mask_bias=run.mask_bias(config.mask_bias))
    redactor = Redactor(model_dir, settings)
    # every input is read and cut before the model loads: bad input fails in a second
    cut_into_pieces(texts, redactor.tokenizer, run.trained_config().max_seq_length)
    redact_texts(texts, redactor)
    make_consistent(texts, config.propagate)
    held_back, refused = write_outputs(texts, config)
    report_unfinished(texts, held_back, config)
    return 1 if held_back or refused else 0
