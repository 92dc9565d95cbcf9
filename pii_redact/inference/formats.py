"""The files redact.py reads and writes back: plain text, JSONL, CSV and Parquet.

`read_source` turns an input into a `Source`: its texts to redact (`Text`), the records that could
not be read (each named by file and line or row, never by its content), and what writing the file
back needs. `render` writes it back, byte for byte the same for the same redactions, whichever
process redacted them: single-process redact.py and `redact.py --ray` share it, so their outputs
are identical.

- text: the whole file is one text; a leading byte-order mark is kept aside and written back.
- JSONL: each object's --text-field is the text, its other fields are kept.
- CSV (comma-separated, a header row): the --text-field column is the text, the other cells are
  written back as they were read (as text: CSV has no other type); a byte-order mark and the
  file's line ending (CRLF or LF) are kept, an empty row stays an empty row.
- Parquet: the --text-field column (a string column) is the text; the other columns, the schema
  and its metadata are kept, types unchanged; a null stays null.

A record that cannot be read (a CSV row with more or fewer cells than the header, a JSONL line
that is not an object with a string --text-field) is held back: the file is written without it.
A file none of whose records can be read is bad input (a UserError): a wrong --text-field, most
likely, and nothing is worth redacting.
"""
from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..core.errors import UserError
from ..core.files import BadRecord, dumps_line, iter_records

BOM = "\ufeff"
Kind = Literal["text", "jsonl", "csv", "parquet"]
MAX_CELL = 1 << 30  # characters in one CSV cell (the csv module's own limit, 128 KiB, is a long e-mail thread)
# Where a record is, by the kind of file: a line (the first line of a CSV row) or a Parquet row.
_SUFFIXES: dict[str, Kind] = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def kind_of(name: str) -> Kind:
    """The format of an input, by its suffix (any case); anything else is plain text."""
    return _SUFFIXES.get(Path(name).suffix.lower(), "text")


@dataclass
class Text:
    """One text to redact: where it came from, and its pieces (filled in as they are redacted)."""

    input: str
    record: int | None  # line index (JSONL, CSV) or row index (Parquet); None for a plain text
    text: str           # without a leading byte-order mark, which `bom` remembers
    obj: Any = None     # the record the text came from: a JSONL object, a CSV row's cells
    bom: bool = False
    pieces: list[tuple[int, str]] = field(default_factory=list)  # (offset in text, piece)
    redacted: list[str] = field(default_factory=list)
    unfinished: list[bool] = field(default_factory=list)
    segments: list | None = None  # per piece, what each placeholder covers (propagate.Segment), once redacted

    @property
    def where(self) -> str:
        return where(self.input, self.record)

    def output(self) -> str:
        return (BOM if self.bom else "") + "".join(self.redacted)


def where(name: str, record: int | None) -> str:
    """How messages name a record: `file:line` (JSONL, CSV), `file row N` (Parquet), or the file."""
    if record is None:
        return name
    return f"{name} row {record + 1}" if kind_of(name) == "parquet" else f"{name}:{record + 1}"


@dataclass
class Source:
    """An input as read: its texts, the records held back as unreadable, and what `render` needs."""

    name: str
    kind: Kind
    texts: list[Text]
    bad: list[BadRecord] = field(default_factory=list)
    layout: Any = None  # CSV: a `_Csv`; Parquet: the table

    @property
    def records(self) -> int:
        """Records in the file: texts, unreadable ones, and Parquet's nulls (empty CSV rows are none)."""
        return self.layout.num_rows if self.kind == "parquet" else len(self.texts) + len(self.bad)


def read_source(name: str, data: bytes, text_field: str) -> Source:
    """The input `name` whose bytes are `data` (`<stdin>` for standard input: plain text). A text
    file with no text (empty, or only whitespace) has nothing to mask: it is written unchanged,
    with a warning; so is a JSONL or CSV file of nothing but blank lines."""
    kind = "text" if name == "<stdin>" else kind_of(name)
    if kind == "parquet":
        return _parquet(name, data, text_field)
    if kind != "text" and data.lstrip(BOM.encode()).strip():
        return _records(name, data, text_field, kind)
    text = _decode(name, data)
    bom = text.startswith(BOM)
    text = text[len(BOM):] if bom else text
    if not text.strip():
        print(f"warning: {name}: no text (empty or only whitespace), nothing to redact: written unchanged",
              file=sys.stderr)
    return Source(name, "text", [Text(name, None, text, bom=bom)])


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _records(name: str, data: bytes, text_field: str, kind: Kind) -> Source:
    source = _jsonl(name, text_field) if kind == "jsonl" else _csv(name, _decode(name, data), text_field)
    if source.bad and not source.texts:
        more = f" (and {len(source.bad) - 1} more)" if len(source.bad) > 1 else ""
        raise UserError(f"{source.bad[0]}{more}")
    return source


def _jsonl(name: str, text_field: str) -> Source:
    source = Source(name, "jsonl", [])
    for index, obj in iter_records(Path(name)):
        if isinstance(obj, BadRecord):
            source.bad.append(obj)
        elif not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
            source.bad.append(BadRecord(where(name, index), f"expected an object with a string '{text_field}' "
                                                           "field (choose the field with --text-field)"))
        else:
            source.texts.append(Text(name, index, obj[text_field], obj=obj))
    return source


@dataclass
class _Csv:
    """What writing a CSV file back needs besides its texts."""

    bom: bool
    line_end: str
    header: list[str]
    column: int             # the text's column
    rows: list[Text | None]  # in file order; None: an empty row, written back empty


def _csv(name: str, content: str, text_field: str) -> Source:
    bom = content.startswith(BOM)
    content = content[len(BOM):] if bom else content
    # the file's own line ending: the first one decides (a CSV file has one)
    first = content.find("\n")
    line_end = "\r\n" if first > 0 and content[first - 1] == "\r" else "\n"
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CELL))
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    header = next(reader, None)
    if not header or text_field not in header:
        raise UserError(f"{name}: no column '{text_field}' in its header row (choose the column with --text-field)")
    layout = _Csv(bom, line_end, header, header.index(text_field), [])
    source = Source(name, "csv", [], layout=layout)
    while True:
        line = reader.line_num  # the row starts on the line after the last one read
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            source.bad.append(BadRecord(where(name, line), f"not a CSV row ({exc})"))  # (csv never quotes the row)
            continue
        if not cells:
            layout.rows.append(None)
        elif len(cells) != len(header):
            source.bad.append(BadRecord(where(name, line), f"{len(cells)} cells, the header has {len(header)}"))
        else:
            text = Text(name, line, cells[layout.column], obj=cells)
            source.texts.append(text)
            layout.rows.append(text)
    return source


def _parquet(name: str, data: bytes, text_field: str) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UserError(f"{name}: not a Parquet file ({type(exc).__name__})") from None
    if text_field not in table.column_names:
        raise UserError(f"{name}: no column '{text_field}' (choose the column with --text-field)")
    column = table.column(text_field)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise UserError(f"{name}: the column '{text_field}' holds {column.type}, not text")
    texts = [Text(name, row, value) for row, value in enumerate(column.to_pylist()) if value is not None]
    return Source(name, "parquet", texts, layout=table)


def render(source: Source, held: set[int], text_field: str) -> bytes:
    """The file `source` redacted (every text's `redacted` filled in), without the records whose
    index is in `held`; the same bytes for the same redactions."""
    if source.kind == "text":
        return source.texts[0].output().encode("utf-8")
    if source.kind == "jsonl":
        return "".join(dumps_line({**t.obj, text_field: t.output()})
                       for t in source.texts if t.record not in held).encode("utf-8")
    if source.kind == "csv":
        return _render_csv(source.layout, held).encode("utf-8")
    return _render_parquet(source, held, text_field)


def _render_csv(layout: _Csv, held: set[int]) -> str:
    out = io.StringIO(newline="")
    out.write(BOM if layout.bom else "")
    writer = csv.writer(out, lineterminator=layout.line_end)
    writer.writerow(layout.header)
    for text in layout.rows:
        if text is None:
            writer.writerow([])
        elif text.record not in held:
            writer.writerow([text.output() if k == layout.column else cell for k, cell in enumerate(text.obj)])
    return out.getvalue()


def _render_parquet(source: Source, held: set[int], text_field: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = source.layout
    values = table.column(text_field).to_pylist()
    for text in source.texts:
        values[text.record] = text.output()
    index = table.column_names.index(text_field)
    table = table.set_column(index, table.schema.field(index), pa.array(values, type=table.schema.field(index).type))
    if held:
        table = table.take([row for row in range(table.num_rows) if row not in held])
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()
