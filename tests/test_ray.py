"""redact.py --ray on a local Ray of 2 CPUs: the same bytes as single-process redact.py on text,
JSONL, CSV and Parquet inputs; a run killed mid-way, or a worker killed mid-way, finishes with the
same bytes and no record lost or written twice; unreadable rows held back and named; no input
text in Ray's logs. One Ray for the module, and one single-process reference for every test."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pii_redact import cli
from pii_redact.inference import file_texts, redact_files

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
MARKER = "Zebedee Quillfeather"  # a name to look for where no input text may be
LONG = "".join(f"Line {k}: {MARKER} called about ticket {k}, nothing else to see here.\n"
               + ("\n" if k % 5 == 4 else "") for k in range(80))
CSV = (f"\ufeffid,text,score\r\n1,\"Dear {MARKER},\r\ncall +49 30 1234567.\",0.5\r\n\r\n"
       "2,too,many,cells\r\n3,,1\r\n4,Write to anna@example.com,2\r\n")
JSONL = (json.dumps({"id": 1, "text": f"Mail {MARKER} at zq@example.com", "tags": ["a"]}) + "\n\n"
         + json.dumps({"id": 2}) + "\n" + json.dumps({"id": 3, "text": "Nothing here."}) + "\n"
         + json.dumps({"id": 4, "text": f"{MARKER} " * 1000}) + "\n")  # one line too long for the model
MANY = {f"many/note{k}.txt": f"Note {k}: {MARKER} called from +49 30 12345{k:02d}.\n" for k in range(8)}


def write_corpus(folder: Path) -> dict[str, Path]:
    """The inputs, by the name each is written under in --output-dir."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {"mail.txt": f"\ufeffDear {MARKER},\r\n\r\ncall me on +49 30 1234567.\r\n".encode(),
             "long.txt": LONG.encode(), "empty.txt": b"", "tickets.csv": CSV.encode(),
             "sub/tickets.jsonl": JSONL.encode(), **{name: text.encode() for name, text in MANY.items()}}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    table = pa.table({"n": pa.array([1, 2, 3, 4], pa.int16()), "text": [f"{MARKER} wrote", None, "", "Hi Bo."]},
                     metadata={b"origin": b"test"})
    pq.write_table(table, folder / "rows.parquet")
    return {name: folder / name for name in [*files, "rows.parquet"]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    from tiny_model import SAMPLES, make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("ray-run"), tiny_model_dir, SAMPLES, repeats=4, seed=0,
                         run_name="tiny")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def reference(run_dir, corpus, tmp_path_factory) -> dict[str, bytes]:
    """What single-process redact.py writes for each input (one call per folder: names are unique there)."""
    out = tmp_path_factory.mktemp("reference")
    for folder in {str(Path(name).parent) for name in corpus}:
        names = [name for name in corpus if str(Path(name).parent) == folder]
        code = cli.run(redact_files.main, ["--model-dir", str(run_dir), "--output-dir", str(out / folder),
                                           *(str(corpus[name]) for name in names)])
        assert code in (0, 1)
    return {name: (out / name).read_bytes() for name in corpus}


@pytest.fixture(scope="module")
def cluster():
    """A Ray of 2 CPUs for the module (on the CPUs this process may use), and its address."""
    from pii_redact.inference.corpus import runtime_env

    ray.init(num_cpus=2, include_dashboard=False, runtime_env=runtime_env(), logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def ray_redact(run_dir: Path, cluster: str, out: Path, inputs, *args: str, capsys) -> tuple[int, str]:
    code = cli.run(redact_files.main, ["--model-dir", str(run_dir), "--output-dir", str(out), "--ray", cluster,
                                       *map(str, inputs), *args])
    return code, capsys.readouterr().err


def outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "redact-manifest.jsonl"}


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "redact-manifest.jsonl").read_text().splitlines()]


def session_logs() -> str:
    from ray._private.worker import _global_node

    logs = Path(_global_node.get_session_dir_path()) / "logs"
    return "".join(p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())


def test_the_same_bytes_as_redact_py_and_a_rerun_skips_what_is_done(run_dir, corpus, reference, cluster, tmp_path,
                                                                    capsys):
    from pii_redact.inference.redactor import Redactor

    assert len(file_texts.split(LONG, Redactor(run_dir).fits)) > 1  # a text of several pieces, on one worker
    out = tmp_path / "out"
    code, err = ray_redact(run_dir, cluster, out, [corpus["mail.txt"].parent], "--ray-workers", "2", capsys=capsys)
    assert code == 1, err  # the unreadable rows, held back as redact.py holds them back
    assert outputs(out) == reference
    assert all((out / name).stat().st_mode & 0o777 == 0o600 for name in reference)
    assert f"{corpus['tickets.csv']}:5: 4 cells, the header has 3; held back" in err
    assert f"{corpus['sub/tickets.jsonl']}:3: expected an object with a string 'text' field" in err
    assert f"{corpus['sub/tickets.jsonl']}:5: line 1 is" in err and "too long for the model's context" in err
    rows = {entry["input"]: entry for entry in manifest(out)}
    assert sorted(rows) == sorted(reference)
    assert {k: rows["tickets.csv"][k] for k in ("records", "redacted", "held_back_unreadable")} == \
        {"records": 4, "redacted": 3, "held_back_unreadable": 1}
    assert rows["rows.parquet"]["records"] == 4 and rows["mail.txt"]["entities"] > 0
    assert rows["mail.txt"]["settings"]["decoding"] == "faithful" and rows["mail.txt"]["weights"]
    assert MARKER not in err and MARKER not in session_logs()  # nothing of the text in a message or a log
    # a rerun finds everything done: nothing redone, the held-back rows named again
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, err = ray_redact(run_dir, cluster, out, [corpus["mail.txt"].parent], capsys=capsys)
    assert code == 1 and f"{len(reference)} of {len(reference)} inputs already redacted" in err, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # another setting never writes beside these
    code, err = ray_redact(run_dir, cluster, out, [corpus["mail.txt"].parent], "--mask-bias", "3", capsys=capsys)
    assert code == 2 and "made with other settings" in err and err.count("\n") == 1, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def driver(run_dir: Path, cluster: str, out: Path, inputs, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "redact.py"), "--model-dir", str(run_dir), "--output-dir",
                             str(out), "--ray", cluster, *map(str, inputs), "--batch-size", "1", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def finished(out: Path) -> int:
    path = out / "redact-manifest.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_killed_run_resumes_with_the_same_bytes(run_dir, corpus, reference, cluster, tmp_path, capsys):
    out = tmp_path / "out"
    many = {name: path for name, path in corpus.items() if name.startswith("many/")}
    process = driver(run_dir, cluster, out, [corpus["mail.txt"].parent / "many"], "--ray-workers", "1")
    wait_for(lambda: finished(out) >= 1, process)
    process.kill()
    process.wait()
    assert 1 <= finished(out) < len(many)  # killed mid-way
    for name, data in outputs(out).items():  # what looks like an output is a whole one
        assert name.startswith(".") or "/." in name or data == reference[f"many/{name}"], name
    code, err = ray_redact(run_dir, cluster, out, [corpus["mail.txt"].parent / "many"], capsys=capsys)
    assert code == 0, err
    assert outputs(out) == {name.removeprefix("many/"): reference[name] for name in many}  # no partial file left
    assert sorted(entry["input"] for entry in manifest(out)) == sorted(n.removeprefix("many/") for n in many)


def map_workers() -> list:
    """This cluster's redacting actors (its workers are this process's descendants)."""
    import psutil

    return [p for p in psutil.Process().children(recursive=True)
            if "MapBatches(RedactBatch)" in " ".join(p.cmdline())]


def test_a_killed_worker_loses_and_repeats_no_record(run_dir, corpus, reference, cluster, tmp_path):
    out = tmp_path / "out"
    many = {name: path for name, path in corpus.items() if name.startswith("many/")}
    process = driver(run_dir, cluster, out, [corpus["mail.txt"].parent / "many" / "*.txt"], "--ray-workers", "2")
    wait_for(lambda: finished(out) >= 1 and map_workers(), process)
    map_workers()[0].send_signal(signal.SIGKILL)
    assert finished(out) < len(many)  # killed mid-way
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()
    assert outputs(out) == {name.removeprefix("many/"): reference[name] for name in many}
    assert sorted(entry["input"] for entry in manifest(out)) == sorted(n.removeprefix("many/") for n in many)


@pytest.mark.parametrize("args, message", [
    (["--ray", "auto", "a.txt"], "--ray writes each input's redaction under --output-dir"),
    (["--output-dir", "out", "--ray", "corpus/", "a.txt"], "--ray corpus/: not a Ray address"),
    (["--output-dir", "out", "--entities", "e.jsonl", "a.txt", "--ray"], "--entities is not written with --ray"),
    (["--output-dir", "out", "-", "--ray"], "not standard input"),
])
def test_ray_flags_that_cannot_work_are_one_line(args, message, capsys):
    assert cli.run(redact_files.main, args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_without_ray_it_says_how_to_install_it(run_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "a.txt").write_text("Hi.\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    code = cli.run(redact_files.main, ["--model-dir", str(run_dir), "--output-dir", str(tmp_path / "out"),
                                       str(tmp_path / "a.txt"), "--ray"])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: --ray needs Ray: pip install -r requirements-ray.txt\n"
    assert not (tmp_path / "out").exists()


def test_folders_and_globs_name_each_output_by_its_path_below_them(tmp_path):
    from pii_redact.core.errors import UserError
    from pii_redact.inference.corpus import expand_inputs

    for name in ("in/a.txt", "in/sub/b.csv", "in/.hidden.txt", "in/notes.md", "in/out/a.txt", "other/a.txt",
                 "m/redact-manifest.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    out = tmp_path / "in" / "out"  # an earlier run's outputs inside the folder are passed over
    assert {i.name: i.path for i in expand_inputs([str(tmp_path / "in")], out)} == \
        {"a.txt": tmp_path / "in" / "a.txt", "sub/b.csv": tmp_path / "in" / "sub" / "b.csv"}
    assert [i.name for i in expand_inputs([str(tmp_path / "in" / "**" / "*.csv")], out)] == ["sub/b.csv"]
    for inputs, message in (([str(out / "a.txt")], "is inside --output-dir"),
                            ([str(tmp_path / "in"), str(tmp_path / "other")], "would both be written to"),
                            ([str(tmp_path / "m")], "the name of the run's manifest"),
                            ([str(tmp_path / "in" / "*.parquet")], "no file matches")):
        with pytest.raises(UserError, match=message):
            expand_inputs(inputs, out)
