"""Issue 30, points 8 and 15: a command stopped by SIGTERM (what `docker stop`, `timeout` and
systemd send) takes Ctrl-C's path in every script, and an evaluation that fails before its first
prediction leaves its output directory as it was. The SIGTERM tests run the real scripts in a
subprocess on a tiny trained model and stop them mid-work; each asserts the exit status, the
message and the bytes of every file afterwards."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Callable

import pytest

from pii_redact import cli
from tiny_model import make_tiny_run
from pii_redact.core import chat
from pii_redact.evaluation import evaluate
from pii_redact.inference.generate import vllm_missing, vllm_usable

ROOT = Path(__file__).resolve().parent.parent
TERMINATED = "terminated (SIGTERM)"
SAMPLES = [
    ("Hi, I am Anna Schmidt, call me on +49 30 1234567.", "Hi, I am [GIVENNAME_1] [SURNAME_1], call me on [TELEPHONENUM_1]."),
    ("Email jdoe@example.com about order 5521.", "Email [EMAIL_1] about order 5521."),
    ("Lives at 12 Rue Lepic, 75018 Paris.", "Lives at [BUILDINGNUM_1] [STREET_1], [ZIPCODE_1] [CITY_1]."),
    ("Nothing personal in this sentence at all.", "Nothing personal in this sentence at all."),
]
# Enough work that a run cannot finish between its first result and the signal that follows it.
MANY = 400


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root, hidden ones included: what a stopped command must leave."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model_dir) -> Path:
    """Prepared splits, a 2-step run `outputs/tiny` of the tiny model, and MANY samples (`many.jsonl`)
    and texts (`texts.jsonl`) to be stopped in the middle of."""
    work = tmp_path_factory.mktemp("stopped")
    make_tiny_run(work, tiny_model_dir, SAMPLES, repeats=6, seed=2, run_name="tiny")
    rows = [{"prompt": chat.build_prompt(s + f" Ref {k}."), "response": r + f" Ref {k}."}
            for k in range(MANY // len(SAMPLES)) for s, r in SAMPLES]
    (work / "many.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (work / "texts.jsonl").write_text("".join(json.dumps({"text": s + f" Ref {k}."}) + "\n"
                                              for k in range(MANY // len(SAMPLES)) for s, _ in SAMPLES))
    return work


def terminate_when(script: str, args: list[str], cwd: Path, ready: Callable[[str, str], bool]) -> tuple[int, str, str]:
    """Run a script with its standard error on a terminal (so progress bars show, as for a user),
    send it SIGTERM once `ready(stdout, stderr so far)`, and return (exit status, stdout, stderr)."""
    master, terminal = pty.openpty()
    # a terminal 120 columns wide: at pty's default of 0, progress bars print nothing
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    stdout_path = cwd / f".{script}.stdout"
    with open(stdout_path, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=terminal, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(terminal)
    err, sent, deadline = b"", False, time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the script has exited and closed the terminal
                    chunk = b""
                if not chunk:
                    break
                err += chunk
            if not sent and ready(stdout_path.read_text(), err.decode(errors="replace")):
                proc.send_signal(signal.SIGTERM)
                sent = True
    finally:
        os.close(master)
        code = proc.wait(timeout=120) if sent else (proc.kill(), proc.wait())[1]
    out = stdout_path.read_text()
    stdout_path.unlink()
    assert sent, f"finished before it could be stopped: {code}\n{out}\n{err.decode(errors='replace')[-2000:]}"
    return code, out, err.decode(errors="replace").replace("\r\n", "\n")


def done_at_least(n: int, unit: str) -> Callable[[str, str], bool]:
    """Ready once the progress bar counting `unit`s shows `n` or more done (not a bar of loading)."""
    def ready(_stdout: str, stderr: str) -> bool:
        return any(int(done) >= n for done in re.findall(rf"\b(\d+)/\d+ \[[^\]]*{unit}", stderr))
    return ready


def last_line(stderr: str) -> str:
    return stderr.replace("\r", "\n").rstrip("\n").rsplit("\n", 1)[-1]


# --- 8. SIGTERM takes Ctrl-C's path in every script -----------------------------------------------

def test_sigterm_is_handled_as_ctrl_c_and_exits_143(capsys):
    reached_cleanup = []

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here, in the main thread
        finally:
            reached_cleanup.append(True)  # what every Ctrl-C path runs (finally, except BaseException)

    before = signal.getsignal(signal.SIGTERM)
    # SIGINT as in a terminal (a shell without job control starts its children with it ignored)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert cli.run(main, []) == 143
        assert capsys.readouterr().err == TERMINATED + "\n"
        assert reached_cleanup == [True]
        assert signal.getsignal(signal.SIGTERM) is before  # handed back: a library caller keeps its own
        assert cli.run(lambda argv: os.kill(os.getpid(), signal.SIGINT), []) == 130  # Ctrl-C: as before
        assert capsys.readouterr().err == "interrupted\n"
    finally:
        signal.signal(signal.SIGINT, outer)


def test_sigterm_during_evaluate_overwrite_puts_the_old_evaluation_back(work):
    out = work / "eval-overwrite"
    old = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--baseline", "regex", "--data",
                          str(work / "many.jsonl"), "--output-dir", str(out)], cwd=work, capture_output=True)
    assert old.returncode == 0, old.stderr
    before = snapshot(out)
    assert {"predictions.jsonl", "provenance.json", "metrics.json", "report.md"} <= before.keys()

    code, stdout, stderr = terminate_when(
        "evaluate.py", ["--model-dir", str(work / "outputs" / "tiny"), "--data", str(work / "many.jsonl"),
                        "--output-dir", str(out), "--overwrite", "--batch-size", "1"],
        work, done_at_least(1, "sample"))
    assert code == 143, stderr
    assert "generating" in stdout and last_line(stderr) == TERMINATED and "Traceback" not in stderr
    assert snapshot(out) == before  # byte for byte, and nothing else: no new file, no hidden folder
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_sigterm_during_finetune_saves_a_checkpoint_that_resumes(work, tiny_model_dir):
    outputs = work / "outputs-sigterm"
    args = ["--model", str(tiny_model_dir), "--data-dir", str(work / "data"), "--output-dir", str(outputs),
            "--run-name", "run", "--batch-size", "4", "--lora-r", "4", "--eval-steps", "0", "--save-steps", "10000",
            "--logging-steps", "1", "--warmup-steps", "0"]
    data_before = snapshot(work / "data")
    code, stdout, stderr = terminate_when("finetune.py", [*args, "--max-steps", "100000"], work,
                                          done_at_least(2, "step"))
    assert code == 143, stderr
    step = int(re.search(r"interrupted at step (\d+): checkpoint saved to", stdout).group(1))
    checkpoint = outputs / "run" / "checkpoints" / f"checkpoint-{step}"
    assert "SIGTERM: saving a checkpoint after this step" in stdout
    assert f"checkpoint saved to {checkpoint}; continue with: python finetune.py --resume --run-name run" in stdout
    assert last_line(stderr) == TERMINATED and "Traceback" not in stderr
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name
    assert [p.name for p in (outputs / "run" / "checkpoints").glob("checkpoint-*")] == [checkpoint.name]
    assert not (outputs / "run" / "merged").exists()  # stopped: nothing claims to be a finished model
    assert snapshot(work / "data") == data_before

    resumed = subprocess.run([sys.executable, str(ROOT / "finetune.py"), *args, "--resume",
                              "--max-steps", str(step + 1)], cwd=work, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((outputs / "run" / "run.json").read_text())["summary"]["steps"] == step + 1
    steps = [json.loads(line)["step"] for line in (outputs / "run" / "train_log.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == list(range(1, step + 2))  # continued where it stopped, no step twice


def test_sigterm_during_redact_writes_nothing(work):
    out = work / "redacted"
    out.mkdir()
    (out / "texts.jsonl").write_bytes(b'{"text": "an earlier redaction the user keeps"}\n')
    (work / "found.jsonl").write_bytes(b"earlier entities\n")
    before, found_before = snapshot(out), (work / "found.jsonl").read_bytes()
    code, stdout, stderr = terminate_when(
        "redact.py", ["--model-dir", str(work / "outputs" / "tiny"), str(work / "texts.jsonl"), "--output-dir",
                      str(out), "--entities", str(work / "found.jsonl"), "--overwrite", "--batch-size", "1"],
        work, done_at_least(1, "piece"))
    assert code == 143, stderr
    assert stdout == "" and last_line(stderr) == TERMINATED and "Traceback" not in stderr
    assert snapshot(out) == before and (work / "found.jsonl").read_bytes() == found_before
    assert sorted(p.name for p in out.iterdir()) == ["texts.jsonl"]  # no partial or temporary file
    assert not [p for p in work.iterdir() if p.name.startswith(".found.jsonl.")]


def test_an_evaluation_a_killed_overwrite_left_aside_is_named(work, capsys):
    """SIGKILL cannot be caught: the folder --overwrite moved the old evaluation into stays. The
    next run there says where it is, and leaves it alone."""
    out = work / "eval-killed"
    argv = ["--baseline", "regex", "--data", str(work / "data" / "test.jsonl"), "--output-dir", str(out)]
    assert cli.run(evaluate.main, argv) == 0
    left = out / ".replaced-4242-x1y2"  # what a run killed between moving and restoring leaves
    left.mkdir()
    (left / "metrics.json").write_bytes(b'{"the": "old evaluation"}\n')
    (left / "predictions.jsonl").write_bytes(b'{"index": 0}\n')
    capsys.readouterr()
    before = snapshot(out)
    assert cli.run(evaluate.main, argv) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {left} holds an evaluation"), err
    assert f"move its files back into {out}" in err
    assert {k: v for k, v in snapshot(out).items() if k.startswith(".replaced")} == \
        {k: v for k, v in before.items() if k.startswith(".replaced")}


# --- 15. a backend that cannot run, or any failure before the first prediction, writes nothing ---

@pytest.mark.skipif(vllm_usable(), reason="vLLM runs here: there is no missing backend to refuse")
def test_backend_vllm_without_vllm_writes_nothing_and_the_next_evaluation_runs(work, capsys):
    model = ["--model-dir", str(work / "outputs" / "tiny"), "--data", str(work / "data" / "test.jsonl"),
             "--limit", "2", "--decoding", "free"]
    fresh, kept = work / "eval-vllm-fresh", work / "eval-vllm-kept"
    assert cli.run(evaluate.main, ["--baseline", "regex", "--data", str(work / "data" / "test.jsonl"),
                                   "--output-dir", str(kept)]) == 0
    before = snapshot(kept)
    for out, extra in ((fresh, []), (kept, ["--overwrite"])):
        capsys.readouterr()
        code = cli.run(evaluate.main, [*model, "--backend", "vllm", "--output-dir", str(out), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err == f"error: --backend vllm: {vllm_missing()}; or use --backend auto or transformers\n"
    assert not fresh.exists() and snapshot(kept) == before
    assert sorted(p.name for p in kept.iterdir()) == sorted(before)
    # nothing was left to refuse the next evaluation there
    assert cli.run(evaluate.main, [*model, "--backend", "transformers", "--output-dir", str(fresh)]) == 0
    assert len((fresh / "predictions.jsonl").read_text().splitlines()) == 2
    provenance = json.loads((fresh / "provenance.json").read_text())
    assert (provenance["backend"], provenance["decoding"]) == ("transformers", "free")


def test_a_model_that_fails_to_load_leaves_the_output_directory_as_it_was(work, tmp_path, capsys):
    """The model loads after every check, just before the first prediction: a damaged weights file
    fails there. Nothing may be left that refuses (or is resumed by) the next evaluation."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(work / "outputs" / "tiny", damaged)
    weights = damaged / "merged" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut off half way
    data = ["--data", str(work / "data" / "test.jsonl"), "--limit", "2"]
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    assert cli.run(evaluate.main, ["--baseline", "regex", *data, "--output-dir", str(kept)]) == 0
    before = snapshot(kept)
    for out, extra in ((fresh, []), (kept, ["--overwrite"])):
        capsys.readouterr()
        code = cli.run(evaluate.main, ["--model-dir", str(damaged), *data, "--output-dir", str(out), *extra])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        assert last_line(err).startswith(f"error: cannot load the model from {damaged / 'merged'}: "), err
    assert not fresh.exists() and snapshot(kept) == before
    assert sorted(p.name for p in kept.iterdir()) == sorted(before)  # no hidden folder left either
    # the next evaluation there, with a model that loads, is neither refused nor a resumption
    assert cli.run(evaluate.main, ["--model-dir", str(work / "outputs" / "tiny"), *data,
                                   "--output-dir", str(fresh)]) == 0
    assert "resuming" not in capsys.readouterr().out
    assert len((fresh / "predictions.jsonl").read_text().splitlines()) == 2
