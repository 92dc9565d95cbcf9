"""Reading and writing the suite's JSON and JSONL files: the one reader, and atomic writes.

Every input file goes through `iter_records`, so every command names a bad record the same way
(`file:line:column: what is wrong`) and no malformed input ends in a traceback: invalid JSON,
bytes that are not UTF-8, nesting too deep for the parser, integers too long to convert, and lone
UTF-16 surrogate escapes (`"\\ud800"`, valid JSON but not text that can be written back out).

Outputs are written to a temporary file beside the target and renamed over it, so a run that
fails halfway never leaves a truncated file where a complete one was. A command that writes
several files can stage them all first (`stage_bytes`) and put them in place only once every
write has succeeded (`publish`), without replacing a file another run made meanwhile.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import UserError

_BOM_AND_SPACE = b"\xef\xbb\xbf \t\r\n"
# A \uD800-\uDFFF escape: only then can a parsed string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


@dataclass
class BadRecord:
    """A record that could not be read: where (`file:line[:col]`) and why."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def _lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def _parse(raw: bytes, path: Path, line: int | None = None, *, whole: bool = True) -> Any:
    """One JSON document (a whole file, or line `line` of one), or a BadRecord saying why not.
    `whole=False` leaves the surrogate check to the caller (a list checks record by record)."""
    where = f"{path}:{line}" if line else str(path)
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return BadRecord(where, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except json.JSONDecodeError as exc:
        return BadRecord(f"{path}:{line or exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}")
    except RecursionError:
        return BadRecord(where, "JSON nested too deeply to read")
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return BadRecord(where, f"invalid JSON: {str(exc).splitlines()[0]}")
    if whole and _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(value):
        return BadRecord(where, "contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text")
    return value


def is_json_list(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip(_BOM_AND_SPACE).startswith(b"[")


def iter_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(0-based index, parsed value or BadRecord) for each record of a JSON list or a JSONL file.

    A JSON list is one document, so a syntax error anywhere makes the whole file unreadable: a
    UserError. A JSONL line stands alone, so a bad one is a BadRecord and the rest still reads.
    Blank lines are skipped (their index is still counted: index = line number - 1)."""
    path = Path(path)
    try:
        if is_json_list(path):
            raw = path.read_bytes()
            records = _parse(raw, path, whole=False)
            if isinstance(records, BadRecord):
                raise UserError(f"{records} (the file is one JSON list, so nothing in it can be read "
                                "until this is fixed)")
            surrogates = bool(_SURROGATE_ESCAPE.search(raw))
            for index, record in enumerate(records):
                if surrogates and _lone_surrogate(record):
                    yield index, BadRecord(f"{path} record {index}", "contains a lone UTF-16 surrogate escape")
                else:
                    yield index, record
            return
        with open(path, "rb") as f:
            for index, line in enumerate(f):
                if line.strip():
                    record = _parse(line, path, index + 1)
                    if isinstance(record, BadRecord) and index == 0 and _one_object(path):
                        raise UserError(f"{path}: one JSON object, not records (a JSON list, or JSONL: one object per line)")
                    yield index, record
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UserError(f"{path}: no such file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None


def _one_object(path: Path) -> bool:
    """Whether the file is one pretty-printed JSON object (a run.json, a metrics.json): small
    files only, so a big JSONL with a bad first line is not parsed whole."""
    if path.stat().st_size > 1 << 20:
        return False
    return isinstance(_parse(path.read_bytes(), path), dict)


def read_records(path: str | Path, *, what: str = "records") -> list[Any]:
    """All records of a JSON list or JSONL file; a UserError naming the first bad one (and how
    many others there are) if any cannot be read, or if there are none."""
    records, bad = [], []
    for _, record in iter_records(path):
        (bad if isinstance(record, BadRecord) else records).append(record)
    if bad:
        more = f" (and {len(bad) - 1} more bad lines)" if len(bad) > 1 else ""
        raise UserError(f"{bad[0]}{more}")
    if not records:
        raise UserError(f"{path}: no {what} in it")
    return records


def read_json(path: str | Path, *, what: str) -> Any:
    """One JSON document (a metrics file, a run.json), or a UserError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UserError(f"{path}: no such file") from None
    value = _parse(raw, path)
    if isinstance(value, BadRecord):
        raise UserError(f"{path}: not a {what} ({value.problem})")
    return value


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dumps_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _naming(exc: OSError, path: Path) -> OSError:
    """`exc` as the same error about `path` (the user's file, never a temporary one)."""
    return OSError(exc.errno, exc.strerror, str(path))


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file, readable by its owner only, in `path`'s folder: a rename from there
    onto `path` is one atomic step."""
    try:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside `path`; rename it over `path` only if the block succeeds.
    The file is readable by its owner only (outputs hold personal data); errors name `path`,
    never the temporary file."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
            yield f
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _naming(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stage_bytes(path: str | Path, content: bytes) -> Path:
    """`content` written in full to a temporary file beside `path`, owner-only, for `publish` to
    put in place; returns the temporary file. A failed write (a full disk) leaves nothing behind
    and names `path`."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    data = memoryview(content)
    try:
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise
    return Path(tmp)


def publish(staged: Path, path: str | Path, *, replace: bool) -> None:
    """Put a staged file at `path` in one step. Without `replace`, a file at `path`, even one made
    after every check (by another run), is never touched: FileExistsError naming `path`, and the
    staged file stays for the caller to `discard`."""
    path = Path(path)
    try:
        if replace:
            os.replace(staged, path)
            return
        try:
            os.link(staged, path)  # made only where nothing is, checked and done in one step
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            _claim_and_replace(staged, path)
            return
    except OSError as exc:
        raise _naming(exc, path) from None
    os.unlink(staged)


def _claim_and_replace(staged: Path, path: Path) -> None:
    """`publish` where the filesystem has no hard links (FAT, some shares): claim the name with an
    empty file only if none is there, then rename the staged file over that claim."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        os.replace(staged, path)
    except BaseException:
        path.unlink(missing_ok=True)  # our own empty claim, never a finished file
        raise


def discard(staged: Iterable[Path]) -> None:
    """Remove staged files that were not published (those that were are gone already)."""
    for tmp in staged:
        Path(tmp).unlink(missing_ok=True)


def open_private_append(path: str | Path):
    """`path` opened for appending text, created (or kept) readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", newline="\n")


def input_file(path: str | Path, flag: str, hint: str = "") -> Path:
    """`path`, given with `flag`, checked to be a regular file to read (`hint` ends the message of
    a missing one)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {p} is a directory, not a file")
    if p.exists() and not p.is_file():
        raise UserError(f"{flag} {p} is not a regular file")
    if not p.is_file():
        raise UserError(f"{flag} {p}: no such file{hint}")
    return p


def check_can_write(path: str | Path, flag: str, *, directory: bool = False) -> None:
    """Before any work: a UserError naming `flag` if `path` could not be written at the end (its
    folder is missing or read-only, or it is a folder where a file goes, or the reverse).
    A directory that does not exist yet is fine where its nearest existing parent is writable."""
    path = Path(path)
    if path.is_symlink() and not path.exists():  # else found only when the write fails, at the end
        raise UserError(f"{flag} {path} is a symbolic link to nothing (or to itself)")
    if path.exists():
        if directory and not path.is_dir():
            raise UserError(f"{flag} {path} is a file, not a directory")
        if not directory and path.is_dir():
            raise UserError(f"{flag} {path} is a directory, not a file")
        where = path if directory else path.parent
    else:
        where = path.parent
        if not directory and not where.is_dir():
            raise UserError(f"{flag} {path}: the folder {where} does not exist")
        while not where.exists():
            where = where.parent
        if not where.is_dir():
            raise UserError(f"{flag} {path}: {where} is a file, not a directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {where} is not writable")


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str | Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    with atomic_write(path) as f:
        for record in records:
            f.write(dumps_line(record))
