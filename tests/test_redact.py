"""redact.py on a user's own files: text, JSONL and stdin, long texts cut and joined back
unchanged, and one-line errors for bad input. The model is a tiny one trained for two steps, so
what it masks is arbitrary; what is checked is that nothing but placeholders ever differs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pii_redact import chat, cli, redaction
from pii_redact.config import DataConfig, TrainConfig
from pii_redact.labels import align

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("Dear Anna Schmidt,\r\n\r\nplease call me on +49 30 1234567 or write to anna@example.com.\r\n"
        "My IBAN is DE89 3704 0044 0532 0130 00.\r\n\r\n  Best,\tJürgen  \r\n")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    from pii_redact import prepare
    from pii_redact.train import finetune

    work = tmp_path_factory.mktemp("redact")
    raw = [{"prompt": chat.build_prompt(f"Call Anna on 555 01{k:02d}."), "response": "Call [GIVENNAME_1] on [TELEPHONENUM_1]."}
           for k in range(20)]
    (work / "raw.json").write_text(json.dumps(raw))
    prepare.prepare(DataConfig(input=[str(work / "raw.json")], output_dir=str(work / "data"), model=str(tiny_model_dir)))
    summary = finetune(TrainConfig(model=str(tiny_model_dir), data_dir=str(work / "data"), output_dir=str(work / "outputs"),
                                   run_name="tiny", max_steps=2, batch_size=4, lora_r=4, lora_alpha=4, eval_steps=0))
    return Path(summary["run_dir"])


def redact(run_dir: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = cli.run(redaction.main, ["--model-dir", str(run_dir), "--max-new-tokens", "24", *args])
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
    pieces = redaction.split(text, lambda piece: len(piece) < 900)
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
    result = subprocess.run([sys.executable, str(ROOT / "redact.py"), "--model-dir", str(run_dir), "--max-new-tokens", "16"],
                            input="Mail anna@example.com now.\n", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert align("Mail anna@example.com now.\n", result.stdout) is not None and "anna@example.com" not in result.stdout


@pytest.mark.parametrize("case, message", [
    ("missing", "missing.txt: no such file"),
    ("latin-1", "not UTF-8 text"),
    ("empty", "empty input, nothing to redact"),
    ("long line", "too long for the model's context even on its own"),
    ("bad jsonl", "expected an object with a string 'text' field"),
    ("two to stdout", "several inputs: pass --output-dir"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, case, message):
    files = {"latin-1": "Grüße".encode("latin-1"), "empty": b"  \n", "long line": b"word " * 3000,
             "bad jsonl": b'{"body": "x"}\n', "two to stdout": b"a"}
    name = tmp_path / ("in.jsonl" if case == "bad jsonl" else "in.txt")
    if case in files:
        name.write_bytes(files[case])
    args = [str(tmp_path / "missing.txt")] if case == "missing" else [str(name)]
    if case == "two to stdout":
        args.append(str(name))
    code, _, err = redact(run_dir, *args, capsys=capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_never_writes_over_an_input_or_an_existing_file(run_dir, tmp_path, capsys):
    path = tmp_path / "a.txt"
    path.write_text("Call Anna.")
    code, _, err = redact(run_dir, str(path), "--output-dir", str(tmp_path), capsys=capsys)
    assert code == 2 and "would overwrite the input" in err and path.read_text() == "Call Anna."
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("mine")
    code, _, err = redact(run_dir, str(path), "--output-dir", str(tmp_path / "out"), capsys=capsys)
    assert code == 2 and "already exists" in err and (tmp_path / "out" / "a.txt").read_text() == "mine"
