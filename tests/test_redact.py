"""redact.py on a user's own files: text, JSONL and stdin, long texts cut and joined back
unchanged, and one-line errors for bad input. The model is a tiny one trained for two steps, so
what it masks is arbitrary; what is checked is that nothing but placeholders ever differs."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pii_redact import cli
from pii_redact.config import DataConfig, TrainConfig
from pii_redact.core import chat
from pii_redact.core.alignment import align
from pii_redact.inference import file_texts, redact_files

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("Dear Anna Schmidt,\r\n\r\nplease call me on +49 30 1234567 or write to anna@example.com.\r\n"
        "My IBAN is DE89 3704 0044 0532 0130 00.\r\n\r\n  Best,\tJürgen  \r\n")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    from pii_redact.data import prepare
    from pii_redact.training.finetune import finetune

    work = tmp_path_factory.mktemp("redact")
    raw = [{"prompt": chat.build_prompt(f"Call Anna on 555 01{k:02d}."), "response": "Call [GIVENNAME_1] on [TELEPHONENUM_1]."}
           for k in range(20)]
    (work / "raw.json").write_text(json.dumps(raw))
    prepare.prepare(DataConfig(input=[str(work / "raw.json")], output_dir=str(work / "data"), model=str(tiny_model_dir)))
    summary = finetune(TrainConfig(model=str(tiny_model_dir), data_dir=str(work / "data"), output_dir=str(work / "outputs"),
                                   run_name="tiny", max_steps=2, batch_size=4, lora_r=4, lora_alpha=4, eval_steps=0))
    return Path(summary["run_dir"])


def redact(run_dir: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = cli.run(redact_files.main, ["--model-dir", str(run_dir), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_text_file_keeps_everything_but_placeholders(run_dir, tmp_path, capsys):
    path = tmp_path / "mail.txt"
    path.write_bytes(TEXT.encode())
    code, out, err = redact(run_dir, str(path), "--entities", str(tmp_path / "found.jsonl"), capsys=capsys)
    assert code == 0, err
    entities = align(TEXT, out)
    assert entities is not None, out  # the input with spans replaced, CRLFs and spaces included
    assert out.count("\r\n") == TEXT.count("\r\n") and out.endswith("  \r\n")
    found = [json.loads(line) for line in (tmp_path / "found.jsonl").read_text().splitlines()]
    assert [(f["start"], f["end"], f["label"]) for f in found] == [(e.start, e.end, e.label) for e in entities]
    assert all(TEXT[f["start"]:f["end"]] == f["text"] for f in found)
    # the safety net masked what its rules are sure of, whatever the tiny model did
    assert "anna@example.com" not in out and "DE89 3704" not in out and "+49 30 1234567" not in out


def test_a_long_text_is_cut_at_line_breaks_and_joined_back(run_dir, tmp_path, capsys):
    paragraph = "Line {k}: nothing to see, move along please.\n"
    text = "".join(paragraph.format(k=k) + ("\n" if k % 5 == 4 else "") for k in range(120))
    path = tmp_path / "long.txt"
    path.write_text(text)
    code, out, err = redact(run_dir, str(path), capsys=capsys)
    assert code == 0, err
    assert align(text, out) is not None
    pieces = file_texts.split(text, lambda piece: len(piece) < 900)
    assert len(pieces) > 1 and "".join(p for _, p in pieces) == text
    assert all(p.endswith("\n\n") for _, p in pieces[:-1])  # cut after paragraph breaks


def test_jsonl_records_keep_their_other_fields(run_dir, tmp_path, capsys):
    rows = [{"id": 1, "body": "Write to anna@example.com today."}, {"id": 2, "body": "Nothing here."}]
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = redact(run_dir, str(path), "--text-field", "body", "--output-dir", str(tmp_path / "out"), capsys=capsys)
    assert code == 0, err
    written = [json.loads(line) for line in (tmp_path / "out" / "tickets.jsonl").read_text().splitlines()]
    assert [r["id"] for r in written] == [1, 2]
    for before, after in zip(rows, written):
        assert align(before["body"], after["body"]) is not None
    assert "anna@example.com" not in written[0]["body"]  # masked by the model, or else by the net


def test_standard_input(run_dir):
    result = subprocess.run([sys.executable, str(ROOT / "redact.py"), "--model-dir", str(run_dir)],
                            input="Mail anna@example.com now.\n", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert align("Mail anna@example.com now.\n", result.stdout) is not None and "anna@example.com" not in result.stdout


@pytest.mark.parametrize("case, message", [
    ("missing", "missing.txt: no such file"),
    ("a folder", "in.txt: is a directory, not a file"),
    ("latin-1", "not UTF-8 text"),
    ("bad jsonl", "expected an object with a string 'text' field"),
    ("csv without the column", "in.csv: no column 'text' in its header row (choose the column with --text-field)"),
    ("not parquet", "in.parquet: not a Parquet file"),
    ("two to stdout", "several inputs: pass --output-dir"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, case, message):
    files = {"latin-1": "Grüße".encode("latin-1"),
             "bad jsonl": b'{"body": "x"}\n', "two to stdout": b"a", "csv without the column": b"id,body\n1,Anna\n",
             "not parquet": b"Anna Schmidt, Rossi"}
    suffix = {"bad jsonl": ".jsonl", "csv without the column": ".csv", "not parquet": ".parquet"}.get(case, ".txt")
    name = tmp_path / f"in{suffix}"
    if case in files:
        name.write_bytes(files[case])
    if case == "a folder":
        name.mkdir()
    args = [str(tmp_path / "missing.txt")] if case == "missing" else [str(name)]
    if case == "two to stdout":
        args.append(str(name))
    code, _, err = redact(run_dir, *args, capsys=capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert "Rossi" not in err and "Anna" not in err  # no input text in a message


def test_a_text_too_long_for_the_model_is_held_back_alone(run_dir, tmp_path, capsys):
    """A line that cannot fit the model's context even alone holds back its text only: a record is
    left out of its file, a text file is not written (exit 1), as on Ray."""
    long_line = "Rossi " * 3000
    (tmp_path / "in.txt").write_text("Anna Schmidt\n" + long_line)
    rows = [{"id": 1, "text": "Mail anna@example.com now."}, {"id": 2, "text": long_line}, {"id": 3, "text": "Hi."}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    code, _, err = redact(run_dir, str(tmp_path / "in.txt"), str(tmp_path / "t.jsonl"), "--output-dir", str(out),
                          capsys=capsys)
    assert code == 1, err
    assert not (out / "in.txt").exists()
    assert [json.loads(line)["id"] for line in (out / "t.jsonl").read_text().splitlines()] == [1, 3]
    assert (f"error: {tmp_path / 'in.txt'}: line 2 is 15001 tokens, too long for the model's context of 1024 "
            "tokens") in err and "; not written" in err, err
    assert f"error: {tmp_path / 't.jsonl'}:2: line 1 is 15001 tokens" in err, err
    assert "held back, the rest of the file is written" in err
    assert "Rossi" not in err and "Anna" not in err  # no input text in a message


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_never_writes_over_an_input_or_an_existing_file(run_dir, tmp_path, capsys):
    path = tmp_path / "a.txt"
    path.write_text("Call Anna.")
    code, _, err = redact(run_dir, str(path), "--output-dir", str(tmp_path), capsys=capsys)
    assert code == 2 and "would overwrite the input" in err and path.read_text() == "Call Anna."
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("mine")
    (tmp_path / "found.jsonl").write_text("my entities")
    before = snapshot(tmp_path)
    for args, message in (
            (["--output-dir", str(tmp_path / "out")], "already exists"),
            # --entities is an output like the others: never replaced without --overwrite ...
            (["--entities", str(tmp_path / "found.jsonl")], "found.jsonl already exists: pass --overwrite"),
            # ... and never the redacted text itself, which it would leave with the raw values
            (["--output-dir", str(tmp_path / "new"), "--entities", str(tmp_path / "new" / "a.txt"), "--overwrite"],
             "is where a redacted input is written"),
            (["--entities", str(path), "--overwrite"], "is one of the inputs"),
            # checked before any work, not after it
            (["--entities", str(tmp_path / "missing" / "x.jsonl")], "the folder"),
            (["--entities", str(tmp_path / "out")], "is a directory, not a file"),
            (["--output-dir", str(path)], "is a file, not a directory")):
        code, _, err = redact(run_dir, str(path), *args, capsys=capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
        assert snapshot(tmp_path) == before, args


def test_an_unfinished_redaction_is_never_written_as_complete(run_dir, tmp_path, capsys):
    text = "Anna Schmidt wrote to Bo Rossi.\nCall +49 30 1234567 or Li Wu at home.\n"
    (tmp_path / "a.txt").write_text(text)
    (tmp_path / "b.txt").write_text("Hi.\n")
    out = tmp_path / "out"
    code, stdout, err = redact(run_dir, str(tmp_path / "a.txt"), "--max-new-tokens", "3", capsys=capsys)
    assert code == 1 and stdout == "", stdout  # nothing on standard output ...
    assert "a.txt: 1 piece(s) did not finish" in err and "not written" in err and "Anna" not in err, err
    # ... nor in a folder, while the other input, which finished, is written
    code, _, err = redact(run_dir, str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--max-new-tokens", "3",
                          "--output-dir", str(out), "--entities", str(tmp_path / "e.jsonl"), capsys=capsys)
    assert code == 1 and not (out / "a.txt").exists()
    assert (out / "b.txt").exists() or "b.txt" in err  # three tokens may or may not finish "Hi."
    # opted in: written, the rest masked, never copied, and the entities mark it
    code, stdout, err = redact(run_dir, str(tmp_path / "a.txt"), "--max-new-tokens", "3", "--allow-unfinished",
                               "--entities", str(tmp_path / "e2.jsonl"), capsys=capsys)
    assert code == 0 and "warning: " in err and "written with the rest masked as [UNFINISHED]" in err
    assert stdout.count("[UNFINISHED]") == 2 and stdout.endswith("[UNFINISHED]\n"), stdout
    assert "1234567" not in stdout and "Li Wu" not in stdout
    rows = [json.loads(line) for line in (tmp_path / "e2.jsonl").read_text().splitlines()]
    assert rows[-1]["label"] == "UNFINISHED" and rows[-1]["end"] == len(text) - 1


CSV = ("\ufeffid,text,score\r\n1,\"Dear Anna Schmidt,\r\ncall +49 30 1234567.\",0.5\r\n\r\n"
       "2,too,many,cells\r\n3,,1\r\n4,Write to anna@example.com,2\r\n")


def test_csv_and_parquet_keep_their_other_columns(run_dir, tmp_path, capsys):
    """The text column redacted, the rest as it was: a CSV's BOM, CRLFs, empty row and cells; Parquet's
    schema, types, nulls and metadata. A row that cannot be read is named and left out, the rest written."""
    import csv
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "t.csv").write_bytes(CSV.encode())
    table = pa.table({"n": pa.array([1, 2, 3], pa.int16()), "text": ["Anna Schmidt wrote", None, ""]},
                     metadata={b"origin": b"test"})
    pq.write_table(table, tmp_path / "t.parquet")
    code, _, err = redact(run_dir, str(tmp_path / "t.csv"), str(tmp_path / "t.parquet"), "--output-dir",
                          str(tmp_path / "out"), capsys=capsys)
    assert code == 1 and err.count("error: ") == 1 and err.endswith(
        f"error: {tmp_path / 't.csv'}:5: 4 cells, the header has 3; held back, the rest of the file is written\n"), err
    written = (tmp_path / "out" / "t.csv").read_bytes().decode()
    assert written.startswith("\ufeffid,text,score\r\n1,\"") and "\r\n\r\n3,,1\r\n4," in written
    rows = list(csv.reader(io.StringIO(written[1:], newline="")))
    assert [[r[0], r[2]] for r in rows if r] == [["id", "score"], ["1", "0.5"], ["3", "1"], ["4", "2"]]
    assert align("Dear Anna Schmidt,\r\ncall +49 30 1234567.", rows[1][1]) is not None and "1234567" not in rows[1][1]
    out = pq.read_table(tmp_path / "out" / "t.parquet")
    assert out.schema == table.schema and out.schema.metadata[b"origin"] == b"test"
    assert out.column("n").to_pylist() == [1, 2, 3] and out.column("text").to_pylist()[1:] == [None, ""]
    assert align("Anna Schmidt wrote", out.column("text")[0].as_py()) is not None


def test_an_unfinished_record_is_left_out_and_the_rest_written(run_dir, tmp_path, capsys):
    text = "Anna Schmidt wrote to Bo Rossi.\nCall +49 30 1234567 or Li Wu at home.\n"
    records = [{"id": 1, "text": text}, {"id": 2, "text": ""}]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = redact(run_dir, str(tmp_path / "r.jsonl"), "--max-new-tokens", "3", "--output-dir",
                          str(tmp_path / "out"), capsys=capsys)
    assert code == 1 and "r.jsonl: 1 piece(s) (records on lines 1) did not finish" in err, err
    assert "not written, the rest of the file is" in err and "Anna" not in err
    assert [json.loads(line) for line in (tmp_path / "out" / "r.jsonl").read_text().splitlines()] == records[1:]


NAMES = ", ".join(["Anna", "Bo", "Li", "Jo", "Al", "Ed", "Mia", "Ben", "Eva", "Tom",
                   "Ida", "Max", "Uwe", "Kai", "Ola", "Ane", "Pia", "Leo", "Noa", "Ivo"]) + ".\n"


def test_a_text_dense_with_short_values_finishes_with_the_default_budget(run_dir, tmp_path, capsys):
    (tmp_path / "names.txt").write_text(NAMES)
    code, out, err = redact(run_dir, str(tmp_path / "names.txt"), capsys=capsys)
    assert code == 0 and "did not finish" not in err, err
    assert align(NAMES, out) is not None and "[UNFINISHED]" not in out


def test_byte_order_mark_case_blank_lines_and_literal_placeholders(run_dir, tmp_path, capsys):
    # a BOM stays, and offsets count it as the file's first character
    text = "\ufeffMail anna@example.com or see [EMAIL_1] in the form.\n"
    (tmp_path / "bom.txt").write_bytes(text.encode("utf-8"))
    code, out, err = redact(run_dir, str(tmp_path / "bom.txt"), "--entities", str(tmp_path / "e.jsonl"), capsys=capsys)
    assert code == 0, err
    assert out.startswith("\ufeff") and align(text[1:], out[1:]) is not None, out
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert rows and all(text[r["start"]:r["end"]] == r["text"] for r in rows)
    assert "[EMAIL_1]" not in [r["text"] for r in rows]  # the input's own placeholder is text, not an EMAIL
    assert align("see [EMAIL_1] or anna@x.io", "see [EMAIL_1] or [EMAIL_2]")[0].value == "anna@x.io"
    assert align("see [EMAIL_1] now", "see [EMAIL_1] now") == []
    # an upper-case .JSONL is JSONL; a blank line between records loses nothing
    rows = [{"id": 1, "text": "Write to anna@example.com."}, {"id": 2, "text": "Nothing."}]
    (tmp_path / "t.JSONL").write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    code, out, err = redact(run_dir, str(tmp_path / "t.JSONL"), capsys=capsys)
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [1, 2]


def test_outputs_are_readable_by_their_owner_only(run_dir, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("Call Anna on +49 30 1234567.\n")
    code, _, err = redact(run_dir, str(tmp_path / "a.txt"), "--output-dir", str(tmp_path / "out"),
                          "--entities", str(tmp_path / "e.jsonl"), capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "a.txt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "e.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_large_budget_is_a_cap_not_a_length(run_dir, tmp_path, capsys):
    """--max-new-tokens bounds generation; it does not make a short line 'too long'."""
    (tmp_path / "a.txt").write_text("Call Anna Schmidt on +49 30 1234567 about the order from last week, ok?\n")
    code, out, err = redact(run_dir, str(tmp_path / "a.txt"), "--max-new-tokens", "2000", capsys=capsys)
    assert code == 0, err


def assert_one_number_per_value(rows: list[dict]) -> None:
    """--entities rows of one document: the same value keeps its number everywhere, and different
    values never share one."""
    numbers: dict[tuple[str, int], set[str]] = {}
    values: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        numbers.setdefault((r["label"], r["number"]), set()).add(r["text"])
        values.setdefault((r["label"], r["text"]), set()).add(r["number"])
    assert all(len(n) == 1 for n in values.values()) and all(len(v) == 1 for v in numbers.values())


def test_a_long_document_reads_as_one_redaction(run_dir, tmp_path, capsys):
    """Cut into pieces, a document still gets one numbering: the same value keeps its number in
    every piece, different values never share one; --entities agrees with the joined text."""
    paragraph = "Note {k}: Anna Schmidt and Marco Rossi met at Hauptstraße 12 about ticket {k}.\n\n"
    text = "".join(paragraph.format(k=k) for k in range(60))
    (tmp_path / "doc.txt").write_text(text)
    # a large mask bias makes even the tiny model mask at every chance it has: many values to number
    code, out, err = redact(run_dir, str(tmp_path / "doc.txt"), "--mask-bias", "50", "--entities",
                            str(tmp_path / "e.jsonl"), capsys=capsys)
    assert code == 0, err
    assert len(file_texts.split(text, lambda piece: len(piece) < 1500)) > 1
    assert align(text, out) is not None  # only placeholders differ from the input
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert len(rows) > 60 and all(text[r["start"]:r["end"]] == r["text"] for r in rows)
    assert_one_number_per_value(rows)
    placeholders = [f"[{r['label']}_{r['number']}]" for r in rows]
    assert placeholders == re.findall(r"\[[A-Z]+_\d+\]", out)  # the rows are the joined text's placeholders


def test_the_dial_needs_faithful_decoding(run_dir, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("Call Anna.\n")
    code, _, err = redact(run_dir, str(tmp_path / "a.txt"), "--mask-bias", "2", "--decoding", "free", capsys=capsys)
    assert code == 2 and "--mask-bias needs faithful decoding" in err
    code, _, err = redact(run_dir, str(tmp_path / "a.txt"), "--mask-bias", "nan", capsys=capsys)
    assert code == 2 and "--mask-bias must be a finite number" in err


def test_unfinished_pieces_keep_the_documents_numbering_and_propagation(run_dir, tmp_path, capsys):
    """--allow-unfinished writes pieces that ran out of budget: the redaction of their start is
    numbered with the rest of the document (never the model's raw numbers, never one number for
    two values) and gets what other pieces masked; their rest stays [UNFINISHED]."""
    from pii_redact.core.common_words import is_common_word
    from pii_redact.core.labels import word_starts

    paragraph = "Note {k}: Anna Schmidt and Marco Rossi met at Hauptstraße 12 about ticket {k}.\n\n"
    text = "".join(paragraph.format(k=k) for k in range(60))
    (tmp_path / "doc.txt").write_text(text)
    code, out, err = redact(run_dir, str(tmp_path / "doc.txt"), "--mask-bias", "50", "--max-new-tokens", "60",
                            "--allow-unfinished", "--entities", str(tmp_path / "e.jsonl"), capsys=capsys)
    assert code == 0 and "did not finish" in err, err
    assert out.count("[UNFINISHED]") > 1
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    masked = [r for r in rows if r["label"] != "UNFINISHED"]
    assert len(masked) > 10 and all(text[r["start"]:r["end"]] == r["text"] for r in rows)
    assert_one_number_per_value(masked)
    # numbered 1, 2, ... per label: no raw model number survives
    for label in {r["label"] for r in masked}:
        assert sorted({r["number"] for r in masked if r["label"] == label}) == \
            list(range(1, 1 + len({r["text"] for r in masked if r["label"] == label})))
    assert [f"[{r['label']}_{r['number']}]" for r in masked] == re.findall(r"\[[A-Z]+_\d+\]", out)
    # what was masked anywhere is in clear nowhere (words that tell a person, as propagation looks for)
    clear = re.sub(r"\[[A-Z]+(?:_\d+)?\]", "\x00", out)
    telling = {r["text"] for r in masked if len(r["text"]) >= 3 and r["text"].isalpha()
               and not is_common_word(r["text"]) and r["label"] != "BUILDINGNUM"}  # a number only beside its street
    assert telling and not [v for v in telling if word_starts(clear, v)]


# --- a second name for an output, a second run, a full disk, an ASCII terminal, blank inputs

TEXTS = {"a.txt": "Call Anna Schmidt on +49 30 1234567.\n", "b.txt": "Write to bo@example.com, Jürgen.\n"}


def write_inputs(folder: Path) -> list[str]:
    folder.mkdir(exist_ok=True)
    for name, text in TEXTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [str(folder / name) for name in TEXTS]


def assert_redactions(out: Path, names=tuple(TEXTS)) -> None:
    """Each file in `out` is its input with spans replaced, readable by its owner only."""
    for name in names:
        assert align(TEXTS[name], (out / name).read_text(encoding="utf-8")) is not None, name
        assert (out / name).stat().st_mode & 0o777 == 0o600


def test_entities_under_another_name_for_a_redacted_output_are_refused(run_dir, tmp_path, capsys):
    """`out/../out/a.txt` or a symlinked folder is still out/a.txt, whether or not it exists yet:
    the raw values must never land where the redaction goes."""
    inputs = write_inputs(tmp_path / "in")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    before = snapshot(tmp_path)
    for args in ([str(tmp_path / "out"), str(tmp_path / "out" / ".." / "out" / "a.txt")],
                 [str(tmp_path / "real"), str(tmp_path / "link" / "b.txt")],
                 [str(tmp_path / "link"), str(tmp_path / "real" / "a.txt")]):
        for extra in ([], ["--overwrite"]):
            code, out, err = redact(run_dir, "--output-dir", args[0], "--entities", args[1], *inputs, *extra,
                                    capsys=capsys)
            assert code == 2 and err.count("\n") == 1 and "is where a redacted input is written" in err, (args, err)
            assert snapshot(tmp_path) == before and not (tmp_path / "out").exists() and out == ""
    # the folder itself, or a link to nothing where a file or folder goes: refused before any work
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    before = snapshot(tmp_path)
    for args, message in ((["--output-dir", str(tmp_path / "out"), "--entities", str(tmp_path / "out")],
                           "is the --output-dir: name a file"),
                          (["--output-dir", str(tmp_path / "loop")], "is a symbolic link to nothing (or to itself)"),
                          (["--entities", str(tmp_path / "loop")], "is a symbolic link to nothing (or to itself)")):
        code, _, err = redact(run_dir, *args, *inputs[:1], capsys=capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (args, err)
        assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()
    # a symlinked --output-dir that is the inputs' own folder would overwrite them
    (tmp_path / "inputs-again").symlink_to(tmp_path / "in", target_is_directory=True)
    code, _, err = redact(run_dir, "--output-dir", str(tmp_path / "inputs-again"), *inputs, "--overwrite", capsys=capsys)
    assert code == 2 and "writing there would overwrite the input" in err and snapshot(tmp_path) == before
    # the entities beside the redactions, named through `..` before the folder exists: fine
    code, _, err = redact(run_dir, "--output-dir", str(tmp_path / "out"), "--entities",
                          str(tmp_path / "out" / ".." / "out" / "e.jsonl"), *inputs, capsys=capsys)
    assert code == 0, err
    assert_redactions(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt", "b.txt", "e.jsonl"]


def test_a_file_another_run_made_meanwhile_is_kept(run_dir, tmp_path, capsys, monkeypatch):
    """Two runs into one --output-dir: the existence check passed minutes before the write, so the
    write itself refuses a file that appeared since; the rest is written, the entities are not
    (they would list a redaction that is not), and the exit status is 1."""
    inputs = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    theirs = b"the other run's redaction of b\n"
    redact_texts = file_texts.redact_texts

    def while_another_run_writes(texts, redactor):
        redact_texts(texts, redactor)
        out.mkdir()
        (out / "b.txt").write_bytes(theirs)

    monkeypatch.setattr(redact_files, "redact_texts", while_another_run_writes)
    code, _, err = redact(run_dir, "--output-dir", str(out), "--entities", str(tmp_path / "e.jsonl"), *inputs,
                          capsys=capsys)
    assert code == 1, err
    assert f"error: {out / 'b.txt'} appeared while this run worked" in err and "pass --overwrite" in err
    assert f"error: --entities {tmp_path / 'e.jsonl'}: not written" in err
    assert "Jürgen" not in err and "Anna" not in err
    assert (out / "b.txt").read_bytes() == theirs  # the first run's bytes, intact
    assert_redactions(out, ["a.txt"])
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]  # no temporary file left
    assert not (tmp_path / "e.jsonl").exists()
    assert {name: (tmp_path / "in" / name).read_text(encoding="utf-8") for name in TEXTS} == TEXTS
    # with --overwrite, replacing is what was asked for
    monkeypatch.setattr(redact_files, "redact_texts", redact_texts)
    code, _, err = redact(run_dir, "--output-dir", str(out), "--entities", str(tmp_path / "e.jsonl"), *inputs,
                          "--overwrite", capsys=capsys)
    assert code == 0, err
    assert_redactions(out)
    assert (tmp_path / "e.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_full_disk_while_writing_the_entities_leaves_nothing_written(run_dir, tmp_path, capsys, monkeypatch):
    """Exit 2 means nothing written: every file is written beside its target first, and put in
    place only once all of them were."""
    import errno
    import os

    inputs = write_inputs(tmp_path / "in")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_bytes(b"a file the user had")
    write = os.write

    def full_for_the_entities(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / "out" / ".e.jsonl.")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(fd, data)

    monkeypatch.setattr(os, "write", full_for_the_entities)
    before = snapshot(tmp_path)
    for output in (["--output-dir", str(tmp_path / "out")], ["--output-dir", str(tmp_path / "new")], []):
        entities = str(tmp_path / "out" / "e.jsonl")
        code, stdout, err = redact(run_dir, *output, "--entities", entities, *(inputs if output else inputs[:1]),
                                   capsys=capsys)
        assert code == 2 and err.endswith(f"\nerror: {entities}: no space left on the device\n"), (output, err)
        assert err.count("error") == 1 and "Traceback" not in err
        assert snapshot(tmp_path) == before and stdout == "", output  # no redaction, no temporary file
        assert not (tmp_path / "new").exists()


def test_standard_output_is_utf8_whatever_the_terminal_encoding(run_dir, tmp_path):
    import os

    text = "Grüße an Jürgen Weiß, anna@example.com.\n"
    command = [sys.executable, str(ROOT / "redact.py"), "--model-dir", str(run_dir)]
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    (tmp_path / "brief.txt").write_text(text, encoding="utf-8")
    for args, stdin in (([], text.encode()), ([str(tmp_path / "brief.txt")], b"")):
        result = subprocess.run(command + args, input=stdin, capture_output=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        assert align(text, result.stdout.decode("utf-8")) is not None
    # messages on an ASCII stderr: still one line, the file named, never a traceback
    result = subprocess.run(command + [str(tmp_path / "Grüße.txt")], capture_output=True, env=env, timeout=300)
    assert result.returncode == 2 and result.stderr.count(b"\n") == 1, result.stderr
    assert result.stderr.startswith(b"error: ") and b"no such file" in result.stderr


def test_a_blank_input_is_written_unchanged_and_the_others_redacted(run_dir, tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in")
    blanks = {"blank.txt": b"  \n\t\r\n", "empty.txt": b"", "bom.txt": b"\xef\xbb\xbf\n", "blank.jsonl": b"\n \n"}
    for name, data in blanks.items():
        (tmp_path / "in" / name).write_bytes(data)
    records = [{"id": 1, "text": ""}, {"id": 2, "text": " \n"}, {"id": 3, "text": "Call Anna."}]
    (tmp_path / "in" / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    names = [inputs[0], *(str(tmp_path / "in" / n) for n in blanks), str(tmp_path / "in" / "r.jsonl"), inputs[1]]
    out = tmp_path / "out"
    code, _, err = redact(run_dir, "--output-dir", str(out), "--entities", str(tmp_path / "e.jsonl"), *names,
                          capsys=capsys)
    assert code == 0, err
    for name, data in blanks.items():
        assert (out / name).read_bytes() == data, name
        assert f"warning: {tmp_path / 'in' / name}: no text (empty or only whitespace), nothing to redact: " \
               "written unchanged" in err
    assert err.count("warning: ") == len(blanks)
    assert_redactions(out)
    written = [json.loads(line) for line in (out / "r.jsonl").read_text().splitlines()]
    assert written[:2] == records[:2] and align("Call Anna.", written[2]["text"]) is not None
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert not any(Path(r["input"]).name in blanks for r in rows)
