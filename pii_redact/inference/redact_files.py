"""`redact.py`: a trained model applied to a user's own files (reading and writing them; each
text's way through the Redactor is `file_texts`', the redaction itself the `Redactor`'s).

Inputs are plain text files (one text each), JSONL, CSV or Parquet files (one text per record, in
its --text-field; the other fields are kept, see `formats`) or standard input. Every text is cut
at paragraph, then line boundaries into pieces that fit the model's context with room for the
answer, redacted in batches (faithful decoding, the safety net and propagation by default, as
evaluate.py), and joined back with the separators it had as one document
(`Redactor.redact_documents`): one numbering through all its pieces, and what one piece masked
masked in all. With faithful decoding, every character outside a placeholder is the input's, byte
for byte, line endings and a leading byte-order mark included. `--ray` hands a corpus to a Ray
cluster instead (`corpus`), with the same outputs.

It fails closed. Every output path is checked before the model loads; a redaction that did not
finish within its token budget has its rest masked as `[UNFINISHED]`, never copied, and is not
written at all unless `--allow-unfinished` (exit 1 otherwise): a text file is not written, a
record is left out of its file; so is a record that cannot be read, or that has a line too long
for the model even on its own (a text file so is not written). Nothing of the input's text is
ever printed in a message, only file, record, line and length.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from ..cli import parse_config
from ..config import RedactConfig
from ..core.errors import UserError, describe
from ..core.files import check_can_write, discard, dumps_line, publish, stage_bytes
from .file_texts import (
    Held,
    cut_into_pieces,
    entities_of,
    held_back,
    redact_texts,
    redacted_file,
    report_bad,
    report_unfinished,
)
from .formats import Source, read_source


# --------------------------------------------------------------------------------------------
# reading

def read_sources(config: RedactConfig) -> list[Source]:
    """Every input, read and checked (`formats.read_source`): an existing file, readable UTF-8
    (Parquet: a readable table), the records of a JSONL, CSV or Parquet file with their text."""
    return [read_source("<stdin>" if name == "-" else name, _read_input(name), config.text_field)
            for name in config.inputs]


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


def write_outputs(sources: list[Source], config: RedactConfig, uncut: Held) -> tuple[Held, list[str]]:
    """Write the redaction of every input, without the texts whose redaction did not finish (all
    of them with --allow-unfinished) and those too long to redact (`uncut`), and the entities of
    what was written. All or nothing on failure: every file is first written in full beside its
    target, and put in place only once all were, so a failed write (a full disk) leaves none
    (exit 2). Returns the texts held back as unfinished, and the files not put in place
    (`_publish_all`)."""
    texts = [t for source in sources for t in source.texts]
    held = held_back(texts, config.allow_unfinished)
    left_out = held | uncut
    outputs = {s.name: data for s in sources if (data := redacted_file(s, left_out, config.text_field)) is not None}
    files = {} if config.output_dir is None else {
        Path(config.output_dir) / Path(name).name: output for name, output in outputs.items()}
    written = [t for t in texts if t.input in outputs and (t.input, t.record) not in left_out]
    if config.entities and written:  # last, so it is put in place after what it lists
        files[Path(config.entities)] = "".join(dumps_line(e) for text in written for e in entities_of(text)).encode()
    made_dir = config.output_dir is not None and bool(outputs) and not Path(config.output_dir).exists()
    if made_dir:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    staged: dict[Path, Path] = {}
    try:
        for target, content in files.items():
            staged[target] = stage_bytes(target, content)
        if config.output_dir is None and outputs:
            _write_stdout(b"".join(outputs.values()))
    except BaseException:
        discard(staged.values())
        if made_dir:
            with contextlib.suppress(OSError):  # only if still empty: another redact.py may write there too
                Path(config.output_dir).rmdir()
        raise
    try:
        return held, _publish_all(staged, config)
    finally:
        discard(staged.values())  # those not put in place (a file made meanwhile, a failure)


def _write_stdout(data: bytes) -> None:
    """The redaction on standard output as UTF-8, whatever the locale or PYTHONIOENCODING says:
    it is the input's own text, which an ASCII stream could not hold."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _publish_all(staged: dict[Path, Path], config: RedactConfig) -> list[str]:
    """Put every staged file in place; returns those that were not, each named on stderr: without
    --overwrite, a file that appeared since the checks (another redact.py writing there) is kept
    as it is; and the entities file only lists redactions that were all put in place."""
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


DESCRIPTION = "Redact PII in your own texts with a model trained by finetune.py."
USAGE = "redact.py [options] [INPUT ...]"
EPILOG = """examples:
  python redact.py notes.txt                               # newest run in outputs/, to standard output
  cat mail.txt | python redact.py --model-dir outputs/my-run
  python redact.py --output-dir redacted/ a.txt b.txt      # redacted/a.txt, redacted/b.txt
  python redact.py tickets.jsonl --text-field body --entities found.jsonl
  python redact.py --output-dir redacted/ tickets.csv rows.parquet --text-field body
  python redact.py --output-dir redacted/ corpus/ 'exports/*.parquet' --ray   # on Ray (see README)

Long texts are cut at paragraph and line breaks into pieces that fit the model and joined back
unchanged. With the default faithful decoding, only placeholders differ from the input, and the
default token budget always suffices. A redaction that runs out of budget anyway (a small
--max-new-tokens, or --decoding free) is not written unless --allow-unfinished, and then its rest
is masked as [UNFINISHED], never copied; a record of a JSONL, CSV or Parquet file that did not
finish, cannot be read, or has a line too long for the model is left out of it and named (a text
file so, not written). Exit status: 0 done, 1 something was not written (unfinished, unreadable or
too long, or a file another run made meanwhile), 2 bad input or flags (nothing written)."""


def main(argv: list[str] | None = None) -> int:
    config, _ = parse_config(RedactConfig, "redact", argv, prog="redact.py", description=DESCRIPTION,
                             epilog=EPILOG, usage=USAGE)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if config.ray is not None:
        from .corpus import redact_corpus

        return redact_corpus(config)
    check_outputs(config)
    from .redactor import Redactor, Settings, resolve

    # the model, backend and GGUF are settled (a missing or broken GGUF fails) before any input is read
    resolved = resolve(Settings.of(config), config.model_dir, config.runs_dir)
    sources = read_sources(config)
    texts = [t for source in sources for t in source.texts]
    redactor = Redactor(resolved=resolved)
    # every input is read and cut before the model loads: bad input is found in a second; a
    # text too long for the model is held back alone, as on Ray (`corpus`)
    uncut = cut_into_pieces(sources, redactor)
    texts = [t for t in texts if (t.input, t.record) not in uncut]
    if texts:
        redact_texts(texts, redactor)
    held, refused = write_outputs(sources, config, uncut)
    report_bad(sources)
    report_unfinished(texts, held, resolved.settings)
    return 1 if held or refused or any(source.bad for source in sources) else 0
