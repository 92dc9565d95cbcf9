"""Do two checkouts make the same outputs? A before/after check for refactors that must change nothing
a user sees.

    python bench/same_outputs.py --output after.json                  # this checkout
    python bench/same_outputs.py --repo ../before --output before.json
    cmp before.json after.json

In a temporary folder of a fixed name (a report's title, drawn into its plot, quotes the paths
it was given) it builds the tests' tiny Gemma 3 model and tokenizer (tests/tiny_model.py,
seed 0) and a small prompt/response file, then runs the four scripts of --repo on them as the user
would (each a fresh interpreter of this Python, in --repo): prepare_data.py, finetune.py (a few
steps, with --calibrate), finetune.py --resume, evaluate.py on the test split (a run, its merged/
folder, a baseline), `evaluate.py compare`, `evaluate.py calibrate` on a short bias list, redact.py
on a text file and a JSONL file (a run, its adapter/ folder, standard input), and a few refusals;
with --gguf-tokenizer also a run exported to GGUF and redacting through llama.cpp.
Seeds are fixed and each command runs on one CPU core, so two runs of one checkout give one
manifest.

The manifest (JSON): each command's arguments, exit status, stdout and stderr, and every file the
commands wrote (relative path -> sha256), all normalised so that only what a change could cause
differs:
  * paths: the temporary folder becomes <WORK> and --repo <REPO>, in every text and file;
  * JSON and JSONL files: the values (not the keys) of times, durations, speeds, memory and
    library versions are blanked: keys started, finished, time, seconds, versions, and any ending
    in _s, _seconds, _runtime, _per_second or _gib; a run.json's digest quoted in another file
    (`run.json:<sha256>`, which changes with its start time) becomes `run.json:<sha256>`;
  * text (stdout, stderr, Markdown, YAML): durations (`12 s`, `3.4s`), rates (`tok/s`, `samples/s`,
    `it/s`), sizes in GiB, memory addresses; progress bars are dropped (they redraw as often as time
    allows) and of a line rewritten with carriage returns only the last version stays; the model card's training times are durations;
  * zip archives (torch's .pt, .pth and training_args.bin): the normalised content of each member,
    since a path inside would change the archive's checksums;
  * everything else (weights, PNG plots): the bytes as they are.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(HERE), str(HERE / "tests")]

VOLATILE_KEYS = {"started", "finished", "time", "seconds", "versions"}
VOLATILE_SUFFIXES = ("_s", "_seconds", "_runtime", "_per_second", "_gib")
BLANK = "<volatile>"
PROGRESS_BAR = re.compile(r"^[^|\n]*\d+%\|")
TEXT_RULES = [  # (pattern, replacement), applied in order to every text after the paths
    (re.compile(r"run\.json:[0-9a-f]{64}"), "run.json:<sha256>"),
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "0x<address>"),
    (re.compile(r"[\d.,]+\s?(?:tok/s|tokens/s|samples/s|it/s|s/it)"), "<rate>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|min)\b"), "<duration>"),
    (re.compile(r"[\d.]+\s?GiB"), "<memory> GiB"),
]
TEXT = "Dear Anna Schmidt,\n\nplease call me on +49 30 1234567 or write to anna@example.com.\n\nBest, Jürgen\n"


def write_inputs(work: Path, gguf_tokenizer: Path | None) -> None:
    """The tiny model (and one with the GGUF converter's tokenizer), the prompt/response file
    prepare_data.py reads and the files redact.py reads."""
    from tiny_model import SAMPLES, build_model

    from pii_redact.core import chat

    build_model(work / "tiny", seed=0)
    if gguf_tokenizer is not None:
        build_model(work / "gguf-tiny", seed=0, tokenizer_dir=gguf_tokenizer)
    raw = [{"prompt": chat.build_prompt(s + f" Ref {k}."), "response": r + f" Ref {k}.", "language": "en",
            "genre": ("chat", "note")[k % 2], "template": f"en/{('chat', 'note')[k % 2]}/{i}"}
           for k in range(6) for i, (s, r) in enumerate(SAMPLES)]
    (work / "raw.json").write_text(json.dumps(raw), encoding="utf-8")
    (work / "in").mkdir()
    (work / "in" / "mail.txt").write_text(TEXT, encoding="utf-8")
    rows = [{"id": k, "text": s, "keep": [k]} for k, (s, _) in enumerate(SAMPLES[:3])]
    (work / "in" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def commands(work: str, gguf: bool) -> list[tuple[list[str], str | None]]:
    """(script and arguments, standard input) of each command, in order; `gguf`: and those of a
    run exported for llama.cpp."""
    run, data = f"{work}/outputs/run", f"{work}/data"
    train = ["finetune.py", "--model", f"{work}/tiny", "--data-dir", data, "--output-dir", f"{work}/outputs",
             "--run-name", "run", "--batch-size", "4", "--lora-r", "4", "--lora-alpha", "8", "--lr", "5e-3",
             "--eval-steps", "2", "--save-steps", "2", "--logging-steps", "1", "--val-samples", "4"]
    evaluate = ["evaluate.py", "--data", f"{data}/test.jsonl", "--batch-size", "4"]
    redact = ["redact.py", "--batch-size", "4"]
    return [
        (["prepare_data.py", "--input", f"{work}/raw.json", "--output-dir", data, "--model", f"{work}/tiny",
          "--val-fraction", "0.2", "--test-fraction", "0.2", "--calibration-templates", "0.2", "--seed", "1"], None),
        (train + ["--max-steps", "3", "--calibrate", "--calibration-samples", "3"], None),
        (train + ["--max-steps", "3"], None),  # refused: the run exists
        (train + ["--max-steps", "5", "--resume", "--no-calibrate"], None),
        (evaluate + ["--model-dir", run], None),
        (evaluate + ["--model-dir", f"{run}/merged", "--output-dir", f"{work}/eval-merged", "--mask-bias", "0.5"], None),
        (evaluate + ["--baseline", "regex", "--output-dir", f"{work}/regex"], None),
        (["evaluate.py", "compare", f"{run}/eval", f"{work}/regex/metrics.json", "--output", f"{work}/compare.md"], None),
        (["evaluate.py", "calibrate", "--model-dir", run, "--data", f"{data}/val.jsonl", "--limit", "3",
          "--biases", "-1,0,1", "--batch-size", "4"], None),
        (["evaluate.py", "calibrate", "--model-dir", run, "--data", f"{data}/test.jsonl"], None),  # refused
        (redact + ["--model-dir", run, f"{work}/in/mail.txt", f"{work}/in/rows.jsonl", "--output-dir",
                   f"{work}/redacted", "--entities", f"{work}/redacted-entities.jsonl"], None),
        (redact + ["--model-dir", f"{run}/adapter"], TEXT),
        (redact + ["--model-dir", f"{work}/nowhere", f"{work}/in/mail.txt"], None),  # refused
        (evaluate + ["--runs-dir", f"{work}/no-runs"], None),  # refused
    ] + (gguf_commands(work) if gguf else [])


def gguf_commands(work: str) -> list[tuple[list[str], str | None]]:
    """A run of the model with Gemma's tokenizer, exported to GGUF by finetune.py and by
    `python -m pii_redact.models gguf`, then run by llama.cpp (found, named, and chosen by auto)."""
    run, data = f"{work}/gguf-outputs/run", f"{work}/gguf-data"
    return [
        (["prepare_data.py", "--input", f"{work}/raw.json", "--output-dir", data, "--model", f"{work}/gguf-tiny",
          "--val-fraction", "0.2", "--test-fraction", "0.2", "--seed", "1"], None),
        (["finetune.py", "--model", f"{work}/gguf-tiny", "--data-dir", data, "--output-dir", f"{work}/gguf-outputs",
          "--run-name", "run", "--batch-size", "4", "--lora-r", "4", "--max-steps", "2", "--eval-steps", "0",
          "--gguf", "f16", "--no-calibrate"], None),
        (["-m", "pii_redact.models", "gguf", run, "--type", "q8_0"], None),
        (["evaluate.py", "--model-dir", run, "--data", f"{data}/test.jsonl", "--limit", "2", "--backend", "llama.cpp",
          "--output-dir", f"{work}/gguf-eval"], None),
        (["evaluate.py", "--model-dir", f"{run}/merged", "--data", f"{data}/test.jsonl", "--limit", "2",
          "--gguf", f"{run}/gguf/run-f16.gguf", "--output-dir", f"{work}/gguf-eval-f16"], None),
        (["redact.py", "--model-dir", f"{run}/merged", f"{work}/in/mail.txt"], None),
    ]


def normalise_text(text: str, paths: dict[str, str]) -> str:
    for path, name in paths.items():
        text = text.replace(path, name)
    lines = (line.rsplit("\r", 1)[-1] for line in text.split("\n"))  # what a terminal would keep
    # progress bars redraw as often as time allows, and clear themselves with a line of spaces
    text = "\n".join(line for line in lines if not (PROGRESS_BAR.match(line) or line.isspace()))
    for pattern, replacement in TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def normalise_json(value: Any, paths: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: BLANK if k in VOLATILE_KEYS or k.endswith(VOLATILE_SUFFIXES) else normalise_json(v, paths)
                for k, v in value.items()}
    if isinstance(value, list):
        return [normalise_json(v, paths) for v in value]
    return normalise_text(value, paths) if isinstance(value, str) else value


def normalise_file(path: Path, paths: dict[str, str]) -> bytes:
    """The content of `path` as the manifest hashes it (see the module docstring)."""
    raw = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [(info.filename, normalise_bytes(archive.read(info), paths)) for info in archive.infolist()]
        return b"".join(normalise_bytes(name.encode(), paths) + b"\0" + hashlib.sha256(data).digest()
                        for name, data in members)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    if path.suffix == ".json":
        return json.dumps(normalise_json(json.loads(text), paths), ensure_ascii=False).encode()
    if path.suffix == ".jsonl":
        return "\n".join(json.dumps(normalise_json(json.loads(line), paths), ensure_ascii=False)
                         for line in text.splitlines() if line.strip()).encode()
    return normalise_text(text, paths).encode()


def normalise_bytes(data: bytes, paths: dict[str, str]) -> bytes:
    for path, name in paths.items():
        data = data.replace(path.encode(), name.encode())
    return data


def one_core() -> None:
    """Keep a command to one CPU core: llama.cpp then runs one thread, as torch does (one thread
    each: the same arithmetic wherever this runs), and threads that spin while waiting for each
    other never crawl on a machine that is busy with something else."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def run_commands(repo: Path, work: Path, paths: dict[str, str], gguf: bool) -> list[dict[str, Any]]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "COLUMNS": "100"}
    results = []
    for args, stdin in commands(str(work), gguf):
        print("running", " ".join(args[:2]), file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, *args], cwd=repo, env=env, input=stdin, capture_output=True,
                              text=True, encoding="utf-8", timeout=3600, preexec_fn=one_core)
        results.append({"command": normalise_text(" ".join(args), paths), "exit_status": done.returncode,
                        "stdout": normalise_text(done.stdout, paths), "stderr": normalise_text(done.stderr, paths)})
    return results


def manifest(repo: Path, gguf_tokenizer: Path | None = None, dump: Path | None = None) -> dict[str, Any]:
    """Run the commands of `repo`; `dump`: also write each file there as it was hashed."""
    work = (Path(tempfile.gettempdir()) / "same-outputs-work").resolve()
    with open(work.with_name("same-outputs.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time: they share the folder
        wait_until_gone(work)
        work.mkdir()
        try:
            return run_in(work, repo, gguf_tokenizer, dump)
        finally:
            shutil.rmtree(work)


def wait_until_gone(work: Path) -> None:
    """The folder is left by a run that was killed, or one of an older copy of this script that
    takes no lock: wait for it to go rather than delete what may be in use."""
    if work.exists():
        print(f"waiting for {work} to go (another run uses it; remove it if none does)", file=sys.stderr, flush=True)
    while work.exists():
        time.sleep(5)


def run_in(work: Path, repo: Path, gguf_tokenizer: Path | None, dump: Path | None) -> dict[str, Any]:
    """The commands run in `work`, and every file there, hashed."""
    paths = {str(work): "<WORK>", str(repo): "<REPO>"}
    write_inputs(work, gguf_tokenizer)
    results = run_commands(repo, work, paths, gguf_tokenizer is not None)
    files = {}
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        name, content = str(path.relative_to(work)), normalise_file(path, paths)
        files[name] = hashlib.sha256(content).hexdigest()
        if dump is not None:
            (dump / name).parent.mkdir(parents=True, exist_ok=True)
            (dump / name).write_bytes(content)
    return {"commands": results, "files": files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(HERE), help="the checkout whose scripts run (default: this one)")
    parser.add_argument("--output", required=True, help="where the manifest (JSON) is written")
    parser.add_argument("--gguf-tokenizer", help="a model directory with Gemma 3's tokenizer (what `python -m "
                        "pii_redact.models fetch` prints): also export a run to GGUF and run it with llama.cpp "
                        "(needs requirements-llama.txt)")
    parser.add_argument("--dump", help="also write every file, normalised as it was hashed, into this folder "
                                       "(to see what differs between two manifests)")
    args = parser.parse_args(argv)
    result = manifest(Path(args.repo).resolve(), args.gguf_tokenizer and Path(args.gguf_tokenizer),
                      args.dump and Path(args.dump))
    Path(args.output).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    failed = [r["command"] for r in result["commands"] if r["exit_status"] not in (0, 1, 2)]
    print(f"{len(result['commands'])} commands, {len(result['files'])} files -> {args.output}"
          + (f"; crashed: {failed}" if failed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
