"""A second command never misreads what the first one made: a run's merged/ or adapter/ folder is
the run (its privacy dial, its context), a GGUF of another vocabulary is refused, and calibration
refuses held-out or training text under any name, a run it could not write, a split with nothing
to calibrate on and a base model, each before any work. (The GGUF exported before a --resume:
test_gguf.py, which has a run the converter can export.)"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from test_hostile_input import RECORDS, one_line_error, snapshot, work  # noqa: F401  (work: the tiny run)
from test_hostile_input import run as run_main

from pii_redact.config import DataConfig
from pii_redact.core import chat
from pii_redact.data import prepare
from pii_redact.evaluation import evaluate
from pii_redact.inference import redact_files
from pii_redact.train_and_calibrate import main as finetune_main

TEXT = "Hi, I am Anna Schmidt, call me on +49 30 1234567 or write to jdoe@example.com.\n"


@pytest.fixture
def run_copy(work, tmp_path) -> Path:  # noqa: F811
    """A copy of the tiny run `outputs/old`, to change."""
    run = tmp_path / "run"
    shutil.copytree(work / "outputs" / "old", run)
    return run


def edit_run(run: Path, **changes) -> None:
    """Change run.json's top-level entries, or its config's (`config={...}`)."""
    info = json.loads((run / "run.json").read_text())
    info["config"].update(changes.pop("config", {}))
    info.update(changes)
    (run / "run.json").write_text(json.dumps(info))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- --model-dir RUN/merged (or RUN/adapter) is the run ----------------------------------------

def test_redact_with_a_runs_model_folder_uses_the_runs_calibrated_bias(run_copy, tmp_path, capsys):
    edit_run(run_copy, privacy={"mask_bias": -100.0})
    text = tmp_path / "in.txt"
    text.write_text(TEXT)
    outputs = {}
    for name, model_dir, extra in (("run", run_copy, []), ("merged", run_copy / "merged", []),
                                   ("adapter", run_copy / "adapter", []),
                                   ("unbiased", run_copy / "merged", ["--mask-bias", "0"])):
        code, err = run_main(redact_files.main, ["--model-dir", str(model_dir), "--backend", "transformers",
                                           "--output-dir", str(tmp_path / name), *extra, str(text)], capsys)
        assert code == 0, err
        outputs[name] = (tmp_path / name / "in.txt").read_text()
    assert outputs["merged"] == outputs["adapter"] == outputs["run"]
    assert outputs["merged"] != outputs["unbiased"]  # bias -100 copies what bias 0 masked


def test_a_redactor_dialled_to_another_bias_keeps_its_engine_and_reads_the_runs_bias(run_copy, monkeypatch):
    """`Redactor.configured` (a calibration's sweep) decides nothing again that the new settings
    cannot change: the engine stays as resolved, only the settings and the mask bias follow; a
    setting that chooses the engine is decided again."""
    from dataclasses import replace

    from pii_redact.inference import redactor as inference

    edit_run(run_copy, privacy={"mask_bias": 1.5})
    redactor = inference.Redactor(run_copy, inference.Settings(backend="transformers", batch_size=3, mask_bias=None))
    assert redactor.resolved.mask_bias == 1.5  # the run's calibrated bias

    def choose_again(*args):
        raise AssertionError("the engine was chosen again")

    monkeypatch.setattr(inference, "choose_backend", choose_again)
    dialled = redactor.configured(mask_bias=-2.0, propagate=False)
    settings = replace(redactor.settings, mask_bias=-2.0, propagate=False)
    assert dialled.resolved == replace(redactor.resolved, settings=settings, mask_bias=-2.0)
    assert dialled.configured(mask_bias=None).resolved.mask_bias == 1.5  # unset again: the run's, again
    monkeypatch.undo()
    rebatched = redactor.configured(batch_size=5)
    assert (rebatched.resolved.batch_size, rebatched.resolved.mask_bias) == (5, 1.5)


def test_redact_with_a_runs_merged_folder_cuts_texts_to_the_runs_context(run_copy, tmp_path, capsys):
    edit_run(run_copy, config={"max_seq_length": 64})
    text = tmp_path / "in.txt"
    text.write_text(TEXT.strip() * 4 + "\n")
    for model_dir in (run_copy / "merged", run_copy):
        code, err = run_main(redact_files.main, ["--model-dir", str(model_dir), "--output-dir", str(tmp_path / "out"),
                                           str(text)], capsys)
        # a line too long for the run's context holds its text back (exit 1), named in one line
        assert code == 1 and err.startswith(f"error: {text}: line 1 is") and err.count("\n") == 1, err
        assert "the model's context of 64 tokens" in err and err.rstrip().endswith("; not written"), err
        assert not (tmp_path / "out").exists()


def test_evaluate_of_a_runs_merged_folder_uses_the_runs_calibrated_bias(work, run_copy, tmp_path, capsys):  # noqa: F811
    edit_run(run_copy, privacy={"mask_bias": 2.5})
    out = tmp_path / "eval"
    code, err = run_main(evaluate.main, ["--model-dir", str(run_copy / "merged"), "--data", str(work / "data" / "test.jsonl"),
                                         "--limit", "1", "--batch-size", "1", "--backend", "transformers",
                                         "--output-dir", str(out)], capsys)
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["mask_bias"] == 2.5
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["mask_bias"] == 2.5 and provenance["model"] == str((run_copy / "merged").resolve())


# --- a GGUF of another vocabulary is refused ----------------------------------------------------

def write_gguf(path: Path, tokens: list[str]) -> Path:
    """A GGUF holding a vocabulary and nothing else (what the check reads)."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "gemma3")
    writer.add_token_list(tokens)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_of_another_vocabulary_is_refused_naming_the_file(tiny_model_dir, tiny_tokenizer, tmp_path):
    from pii_redact.core.errors import UserError
    from pii_redact.models.gguf import check_vocabulary

    tokens = tiny_tokenizer.convert_ids_to_tokens(list(range(len(tiny_tokenizer))))
    check_vocabulary(write_gguf(tmp_path / "same.gguf", tokens + ["<pad1>", "<pad2>"]), tiny_tokenizer, "--gguf same")
    swapped = tokens[:40] + [tokens[41], tokens[40]] + tokens[42:]
    for name, vocabulary, message in (("swapped", swapped, f"{len(tokens)} tokens against {len(tokens)}, the first "
                                       "difference at id 40"),
                                      ("short", tokens[:-1], f"{len(tokens) - 1} tokens against {len(tokens)}"),
                                      ("none", [], "no vocabulary in the GGUF")):
        path = write_gguf(tmp_path / f"{name}.gguf", vocabulary) if vocabulary else tmp_path / "none.gguf"
        if not vocabulary:
            path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))  # a header with no fields
        with pytest.raises(UserError, match="^--gguf x[ :]") as caught:
            check_vocabulary(path, tiny_tokenizer, "--gguf x")
        assert message in str(caught.value)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes((tmp_path / "same.gguf").read_bytes()[:100])
    with pytest.raises(UserError, match="not a GGUF file whose header can be read"):
        check_vocabulary(cut, tiny_tokenizer, "--gguf cut")


needs_llama_cpp = pytest.mark.skipif(not __import__("pii_redact.inference.llamacpp", fromlist=["x"]).available(),
                                     reason="needs llama-cpp-python: pip install -r requirements-llama.txt")


@needs_llama_cpp
def test_evaluate_and_redact_refuse_a_gguf_of_another_vocabulary_before_any_output(work, run_copy, tiny_tokenizer,  # noqa: F811
                                                                                   tmp_path, capsys):
    tokens = tiny_tokenizer.convert_ids_to_tokens(list(range(len(tiny_tokenizer))))
    other = write_gguf(tmp_path / "other.gguf", tokens[1:] + tokens[:1])
    text = tmp_path / "in.txt"
    text.write_text(TEXT)
    before = snapshot(tmp_path)
    for main, argv in ((evaluate.main, ["--data", str(work / "data" / "test.jsonl"), "--output-dir", str(tmp_path / "eval")]),
                       (redact_files.main, ["--output-dir", str(tmp_path / "out"), str(text)])):
        code, err = run_main(main, ["--model-dir", str(run_copy), "--gguf", str(other), *argv], capsys)
        one_line_error(code, err, f"--gguf {other} has another vocabulary than the model's tokenizer",
                       "the first difference at id 0")
        assert snapshot(tmp_path) == before


# --- calibration never chooses on held-out or training text, and records what it chose on --------

def calibrate_args(run: Path, data: Path, *extra: str) -> list[str]:
    return ["calibrate", "--model-dir", str(run), "--data", str(data), "--limit", "1", "--batch-size", "1", *extra]


def test_calibrate_refuses_the_test_split_or_training_split_under_any_name(work, run_copy, tmp_path, capsys):  # noqa: F811
    copy = tmp_path / "val-copy.jsonl"
    shutil.copy(work / "data" / "test.jsonl", copy)
    link = tmp_path / "links" / "val.jsonl"
    link.parent.mkdir()
    link.symlink_to(work / "data" / "test.jsonl")
    train = tmp_path / "mine.jsonl"
    shutil.copy(work / "data" / "train.jsonl", train)
    before = snapshot(tmp_path)
    for data, message in ((copy, "is the held-out split"), (link, "is the held-out split"),
                          (train, "is the run's training split (train.jsonl)")):
        code, err = run_main(evaluate.main, calibrate_args(run_copy, data), capsys)
        one_line_error(code, err, f"--data {data} {message}", "calibrate on the calibration split")
        assert snapshot(tmp_path) == before
    # run.json recorded the held-out splits when it trained: refused even once the data moved away
    edit_run(run_copy, config={"data_dir": str(tmp_path / "moved")})
    before = snapshot(tmp_path)
    code, err = run_main(evaluate.main, calibrate_args(run_copy, copy), capsys)
    one_line_error(code, err, f"--data {copy} is the run's held-out split (test.jsonl)")
    assert snapshot(tmp_path) == before


def test_calibrate_records_its_data_by_resolved_path_and_sha256(work, run_copy, tmp_path, capsys):  # noqa: F811
    val = work / "data" / "val.jsonl"
    link = tmp_path / "v.jsonl"
    link.symlink_to(val)
    code, err = run_main(evaluate.main, calibrate_args(run_copy, link, "--biases", "0"), capsys)
    assert code == 0, err
    privacy = json.loads((run_copy / "privacy.json").read_text())
    recorded = json.loads((run_copy / "run.json").read_text())["privacy"]
    for record in (privacy, recorded):
        assert record["data"] == str(val.resolve()) and record["data_sha256"] == sha256(val)
    assert (run_copy / "privacy.png").read_bytes().startswith(b"\x89PNG")


# --- what calibration writes is checked before the sweep ------------------------------------------

def test_calibrate_refuses_a_run_it_could_not_write_before_the_sweep(work, run_copy, capsys):  # noqa: F811
    (run_copy / "privacy.png").mkdir()
    before = snapshot(run_copy)
    code, err = run_main(evaluate.main, calibrate_args(run_copy, work / "data" / "val.jsonl"), capsys)
    one_line_error(code, err, f"{run_copy / 'privacy.png'} is a directory, not a file")
    assert snapshot(run_copy) == before and not (run_copy / "privacy.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_calibrate_refuses_a_read_only_run_before_the_sweep(work, run_copy, capsys):  # noqa: F811
    before = snapshot(run_copy)
    run_copy.chmod(0o555)
    try:
        code, err = run_main(evaluate.main, calibrate_args(run_copy, work / "data" / "val.jsonl"), capsys)
    finally:
        run_copy.chmod(0o755)
    one_line_error(code, err, f"{run_copy} is not writable")
    assert snapshot(run_copy) == before


# --- finetune.py --calibrate with nothing to calibrate on fails before training -------------------

def test_finetune_calibrate_without_validation_samples_fails_before_training(tiny_model_dir, tmp_path, capsys):
    raw = [{"prompt": chat.build_prompt(s + f" Ref {k}."), "response": r + f" Ref {k}."}
           for k in range(8) for s, r in RECORDS]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    prepare.prepare(DataConfig(input=[str(tmp_path / "raw.json")], output_dir=str(tmp_path / "data"),
                               model=str(tiny_model_dir), val_fraction=0.0, test_fraction=0.2, seed=3))
    assert (tmp_path / "data" / "val.jsonl").read_text() == ""
    before = snapshot(tmp_path)
    code, err = run_main(finetune_main, ["--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "data"),
                                         "--output-dir", str(tmp_path / "outputs"), "--run-name", "r", "--max-steps", "1",
                                         "--batch-size", "4", "--lora-r", "4", "--eval-steps", "0", "--calibrate"], capsys)
    one_line_error(code, err, "--calibrate needs calibration or validation samples", f"{tmp_path / 'data' / 'val.jsonl'}: no samples")
    assert snapshot(tmp_path) == before and not (tmp_path / "outputs" / "r").exists()


# --- calibrate refuses what is not a run before building or loading anything ---------------------

def test_calibrate_refuses_a_base_model_before_building_it(work, tiny_model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PII_REDACT_CACHE", str(tmp_path / "cache"))
    val = work / "data" / "val.jsonl"
    code, err = run_main(evaluate.main, calibrate_args("pypi:gemma-3-270m", val), capsys)
    one_line_error(code, err, "--model-dir pypi:gemma-3-270m is a base model, not a finetune.py run")
    assert not (tmp_path / "cache").exists()  # nothing was built
    code, err = run_main(evaluate.main, calibrate_args(tiny_model_dir, val), capsys)
    one_line_error(code, err, f"--model-dir {tiny_model_dir} is not a finetune.py run (no run.json)")
