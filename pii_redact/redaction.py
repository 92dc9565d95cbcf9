"""`redact.py`: a trained model applied to a user's own files.

Inputs are plain text files (one text each), JSONL files (one object per line; its --text-field
is redacted, the other fields are kept) or standard input. Every text is cut at paragraph, then
line boundaries into pieces that fit the model's context with room for the answer, redacted in
batches (faithful decoding and the safety net by default, as evaluate.py), and joined back with
the separators it had: with faithful decoding, every character outside a placeholder is the
input's, byte for byte, line endings included.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cli import parse_config
from .config import RedactConfig
from .errors import UserError
from .files import BadRecord, dumps_line, iter_records, write_text
from .runs import trained_model

PROMPT_OVERHEAD = 48  # tokens of the chat template and instruction beyond the text (Gemma's: 43)


@dataclass
class Text:
    """One text to redact: where it came from, and its pieces (filled in as they are redacted)."""

    input: str
    record: int | None  # line index in a JSONL input, None for a plain text
    text: str
    pieces: list[tuple[int, str]] = field(default_factory=list)  # (offset in text, piece)
    redacted: list[str] = field(default_factory=list)


def split(text: str, fits) -> list[tuple[int, str]]:
    """(offset, piece) for consecutive pieces of `text` that each `fits`: as many whole lines as
    fit, cut after the last blank line among them (a paragraph break) where there is one. Joined,
    the pieces are `text` again. UserError if a single line does not fit."""
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
            start = lines[i][1].strip()[:60]
            raise UserError(f"a line is too long for the model's context even on its own (it starts "
                            f"{start!r}); break it into shorter lines")
        blank = [k for k in range(i + 1, j) if not lines[k][1].strip()]
        if j < len(lines) and blank:
            j = blank[-1] + 1
        pieces.append((lines[i][0], "".join(line for _, line in lines[i:j])))
        i = j
    return pieces


def read_texts(config: RedactConfig) -> list[Text]:
    """Every text of every input, checked: readable UTF-8, not empty."""
    texts: list[Text] = []
    for name in config.inputs:
        if name == "-":
            data = sys.stdin.buffer.read()
            path = "<stdin>"
        else:
            path = name
            try:
                data = Path(name).read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise UserError(f"{name}: no such file") from None
            if name.endswith(".jsonl"):
                texts += _jsonl_texts(Path(name), config.text_field)
                continue
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not text.strip():
            raise UserError(f"{path}: empty input, nothing to redact")
        texts.append(Text(path, None, text))
    return texts


def _jsonl_texts(path: Path, text_field: str) -> list[Text]:
    texts = []
    for index, obj in iter_records(path):
        if isinstance(obj, BadRecord):
            raise UserError(str(obj))
        if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
            raise UserError(f"{path}:{index + 1}: expected an object with a string '{text_field}' field "
                            "(choose the field with --text-field)")
        texts.append(Text(str(path), index, obj[text_field]))
    if not texts:
        raise UserError(f"{path}: empty input, nothing to redact")
    return texts


def cut_into_pieces(texts: list[Text], tokenizer, config: RedactConfig, max_seq_length: int) -> None:
    """Split every text into pieces whose prompt and answer fit in `max_seq_length` tokens."""
    from .generate import token_budget

    def fits(piece: str) -> bool:
        n = len(tokenizer(piece, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"])
        return n + PROMPT_OVERHEAD + (config.max_new_tokens or token_budget(tokenizer, piece)) <= max_seq_length

    for text in texts:
        text.pieces = split(text.text, fits)
        text.redacted = [piece if not piece.strip() else "" for _, piece in text.pieces]


def redact_texts(texts: list[Text], config: RedactConfig, model, tokenizer) -> None:
    """Fill in each text's redacted pieces, all texts' pieces batched together."""
    from tqdm.auto import tqdm

    from . import chat, generate
    from .baselines import safety_net

    jobs = [(text, k) for text in texts for k, (_, piece) in enumerate(text.pieces) if piece.strip()]
    sources = [text.pieces[k][1] for text, k in jobs]
    stream = generate.generate_transformers(model, tokenizer, [chat.build_prompt(s) for s in sources], sources,
                                            config.batch_size, config.max_new_tokens, config.decoding,
                                            config.speculation)
    with tqdm(total=len(jobs), unit="piece", desc="redacting", disable=None) as bar:
        for j, prediction, _ in stream:
            text, k = jobs[j]
            text.redacted[k] = safety_net(sources[j], prediction)[0] if config.safety_net else prediction
            bar.update(1)


def entities_of(text: Text) -> list[dict[str, Any]]:
    """The entities of a redacted text, as character offsets into the original."""
    from .labels import align
    from .metrics import align_robust

    out = []
    for (offset, piece), redacted in zip(text.pieces, text.redacted):
        found = align(piece, redacted)
        for e in found if found is not None else align_robust(piece, redacted)[0]:
            if e.value:
                out.append({"input": text.input, "record": text.record, "start": offset + e.start,
                            "end": offset + e.end, "label": e.label, "text": e.value})
    return out


def write_outputs(texts: list[Text], config: RedactConfig) -> None:
    by_input: dict[str, list[Text]] = {}
    for text in texts:
        by_input.setdefault(text.input, []).append(text)
    for name, group in by_input.items():
        if group[0].record is None:
            output = "".join(group[0].redacted)
        else:
            objects = [obj for _, obj in iter_records(name)]
            output = "".join(dumps_line({**objects[t.record], config.text_field: "".join(t.redacted)}) for t in group)
        if config.output_dir is None:
            sys.stdout.write(output)
        else:
            write_text(Path(config.output_dir) / Path(name).name, output)
    if config.entities:
        write_text(config.entities, "".join(dumps_line(e) for text in texts for e in entities_of(text)))


def _check_outputs(config: RedactConfig) -> None:
    """Refuse, before any work, to write over an input or an existing file."""
    if config.output_dir is None:
        if len(config.inputs) > 1:
            raise UserError("several inputs: pass --output-dir to write each one's redaction there")
        return
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output-dir {out} is a file, not a directory")
    names = [Path(i).name for i in config.inputs if i != "-"]
    if "-" in config.inputs:
        raise UserError("standard input has no name to write under --output-dir: omit --output-dir")
    if len(set(names)) != len(names):
        raise UserError("two inputs have the same file name: they would be written to one file in --output-dir")
    for name in config.inputs:
        target = out / Path(name).name
        if target.exists() and Path(name).exists() and target.resolve() == Path(name).resolve():
            raise UserError(f"--output-dir {out}: writing there would overwrite the input {name}")
        if target.exists() and not config.overwrite:
            raise UserError(f"{target} already exists: pass --overwrite to replace it, or another --output-dir")
    if config.entities and any(Path(config.entities).resolve() == Path(i).resolve() for i in config.inputs if i != "-"):
        raise UserError(f"--entities {config.entities} is one of the inputs")


DESCRIPTION = "Redact PII in your own texts with a model trained by finetune.py."
USAGE = "redact.py [options] [INPUT ...]"
EPILOG = """examples:
  python redact.py notes.txt                               # newest run in outputs/, to standard output
  cat mail.txt | python redact.py --model-dir outputs/my-run
  python redact.py --output-dir redacted/ a.txt b.txt      # redacted/a.txt, redacted/b.txt
  python redact.py tickets.jsonl --text-field body --entities found.jsonl

Long texts are cut at paragraph and line breaks into pieces that fit the model and joined back
unchanged. With the default faithful decoding, only placeholders differ from the input."""


def main(argv: list[str] | None = None) -> int:
    import os

    config, _ = parse_config(RedactConfig, "redact", argv, prog="redact.py", description=DESCRIPTION,
                             epilog=EPILOG, usage=USAGE)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _check_outputs(config)
    model_dir, run_dir = trained_model(config.model_dir, config.runs_dir)
    texts = read_texts(config)
    from transformers import AutoTokenizer

    from . import generate

    # every input is read and cut before the model loads: bad input fails in a second
    cut_into_pieces(texts, AutoTokenizer.from_pretrained(model_dir), config, _max_seq_length(run_dir))
    model, tokenizer = generate.load_for_generation(model_dir)
    redact_texts(texts, config, model, tokenizer)
    if config.output_dir:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    write_outputs(texts, config)
    return 0


def _max_seq_length(run_dir: Path) -> int:
    """The context the model was trained with (its run's config), else finetune.py's default."""
    from .config import TrainConfig

    try:
        return int(json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["config"]["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return TrainConfig().max_seq_length
