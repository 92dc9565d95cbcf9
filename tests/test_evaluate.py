"""evaluate.py end to end: a model saved by finetune.py generates, predictions resume, baselines,
--predictions, --fail-under and compare, through the real scripts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pii_redact.config import DataConfig, TrainConfig
from pii_redact.core import chat
from tiny_model import SAMPLES

ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """(workdir, run dir): splits prepared and a tiny model trained by the suite's own code."""
    from pii_redact.data import prepare
    from pii_redact.training.finetune import finetune

    work = tmp_path_factory.mktemp("evaluate")
    raw = [{"prompt": chat.build_prompt(s + f" Ref {k}."), "response": r + f" Ref {k}.",
            "language": "en", "genre": ("chat", "note")[k % 2]} for k in range(6) for s, r in SAMPLES]
    (work / "raw.json").write_text(json.dumps(raw))
    prepare.prepare(DataConfig(input=[str(work / "raw.json")], output_dir=str(work / "data"),
                            model=str(tiny_model_dir), val_fraction=0.2, test_fraction=0.2, seed=2))
    summary = finetune(TrainConfig(model=str(tiny_model_dir), data_dir=str(work / "data"),
                                   output_dir=str(work / "outputs"), run_name="tiny", max_steps=2,
                                   batch_size=4, lora_r=8, lora_alpha=8, eval_steps=0))
    return work, Path(summary["run_dir"])


def evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_with_no_arguments_scores_the_newest_run(trained):
    work, run = trained
    result = evaluate("--batch-size", "4", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "register_constant" not in result.stderr  # torch's start-up deprecation notes are silenced
    out = run / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    test_rows = read_jsonl(work / "data" / "test.jsonl")
    assert metrics["n_samples"] == len(test_rows)
    predictions = read_jsonl(out / "predictions.jsonl")
    assert sorted(p["index"] for p in predictions) == list(range(len(test_rows)))
    # metrics.json is the score of exactly these predictions, after the safety net and propagation
    from pii_redact.evaluation.evaluate import finished
    from pii_redact.evaluation.metrics import read_predictions, score
    from pii_redact.inference.redactor import Settings

    rows = sorted(read_predictions(out / "predictions.jsonl"), key=lambda p: p.index)
    netted, added, propagated = finished(rows, Settings(safety_net=True, propagate=True))
    assert metrics.pop("safety_net") == {"enabled": True, "added_entities": added}
    assert metrics.pop("propagation") == {"enabled": True, "added_entities": propagated}
    assert metrics.pop("mask_bias") == 0.0  # no --mask-bias, and the run was not calibrated
    speed = metrics.pop("generation")  # how fast this call generated them
    assert (speed["samples"], speed["backend"], speed["batch_size"]) == (len(test_rows), "transformers", 4)
    assert speed["samples_per_s"] == pytest.approx(speed["samples"] / speed["generate_s"], rel=0.02, abs=0.01)
    assert f"generated {len(test_rows)} redactions in" in result.stdout
    assert [p["genre"] for p in sorted(predictions, key=lambda p: p["index"])] == [r["genre"] for r in test_rows]
    assert sum(g["n_samples"] for g in metrics.pop("by_genre").values()) == len(test_rows)
    assert metrics.pop("by_language")["en"]["n_samples"] == len(test_rows)
    assert metrics == json.loads(json.dumps(score(netted)[0]))
    assert metrics["unfinished_rate"] == sum(p["finish_reason"] == "length" for p in predictions) / len(predictions)
    assert [p["prompt"] for p in sorted(predictions, key=lambda p: p["index"])] == \
        [r["messages"][0]["content"] for r in test_rows]
    assert (out / "report.md").read_text().startswith("# tiny")
    assert (out / "per_label_f1.png").stat().st_size > 0


def test_interrupted_evaluation_resumes_without_regenerating(trained):
    work, run = trained
    out = work / "resume"
    assert evaluate("--model-dir", str(run), "--output-dir", str(out), "--batch-size", "4", cwd=work).returncode == 0
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) >= 2
    # keep the first rows, mark them, and cut the last one in half: what a killed run leaves
    kept = rows[:-2]
    for row in kept:
        row["prediction"] = "KEPT " + row["prediction"]
    text = "".join(json.dumps(r) + "\n" for r in kept) + json.dumps(rows[-2])[:20]
    (out / "predictions.jsonl").write_text(text)
    result = evaluate("--model-dir", str(run), "--output-dir", str(out), "--batch-size", "4", cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"{len(kept)} predictions already in" in result.stdout
    again = read_jsonl(out / "predictions.jsonl")
    assert sorted(r["index"] for r in again) == sorted(r["index"] for r in rows)
    by_index = {r["index"]: r for r in again}
    assert all(by_index[r["index"]]["prediction"].startswith("KEPT ") for r in kept)
    # the speed recorded is that of the two predictions this call made, not of the kept ones
    assert json.loads((out / "metrics.json").read_text())["generation"]["samples"] == 2


def test_baselines_predictions_file_fail_under_and_compare(trained):
    work, _ = trained
    identity = evaluate("--baseline", "identity", "--output-dir", "identity", cwd=work)
    assert identity.returncode == 0, identity.stderr
    metrics = json.loads((work / "identity" / "metrics.json").read_text())
    assert metrics["entity"]["recall"] == 0.0 and metrics["text_fidelity"] == 1.0
    assert metrics["leak_rate"] > 0.9  # nothing is masked
    assert "generation" not in metrics  # no model generated anything: no speed to report
    assert set(metrics["by_language"]) == {"en"} and set(metrics["by_genre"]) == {"chat", "note"}
    assert sum(g["n_samples"] for g in metrics["by_genre"].values()) == metrics["n_samples"]

    regex = evaluate("--baseline", "regex", "--output-dir", "regex", "--fail-under", "entity.recall=0.01", cwd=work)
    assert regex.returncode == 0, regex.stderr
    regex_metrics = json.loads((work / "regex" / "metrics.json").read_text())
    assert regex_metrics["per_label"]["EMAIL"]["recall"] == 1.0

    # scoring an existing file needs no model; a gate that is not met exits 1
    gated = evaluate("--predictions", "identity/predictions.jsonl", "--output-dir", "rescored", "--no-safety-net",
                     "--fail-under", "entity.f1=0.5", "--fail-under", "leak_rate=0.1", cwd=work)
    assert gated.returncode == 1
    assert "FAIL entity.f1" in gated.stdout and "FAIL leak_rate" in gated.stdout
    assert json.loads((work / "rescored" / "metrics.json").read_text())["entity"] == metrics["entity"]

    compared = evaluate("compare", "identity", "regex/metrics.json", "--output", "compare.md", cwd=work)
    assert compared.returncode == 0, compared.stderr
    table = (work / "compare.md").read_text()
    assert "identity" in table and "regex" in table and "F1 EMAIL" in table


def test_user_errors_are_one_line_without_traceback(trained, tmp_path):
    work, _ = trained
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x\\n\\nText:\\nx", "response": "x", "prediction": "x"}\n{oops\n')
    cases = [
        (["--predictions", str(bad)], "bad.jsonl:2"),
        (["--data", str(tmp_path / "missing.jsonl")], "no such file (make the splits with prepare_data.py"),
        (["--fail-under", "entity.f1"], "METRIC=VALUE"),
        (["--fail-under", "nonsense.metric=1"], "no numeric metric"),
        (["--model-dir", str(tmp_path / "nowhere")], "does not exist"),
        (["--runs-dir", str(tmp_path / "empty")], "run finetune.py first"),
        (["--backend", "vllm", "--decoding", "free", "--limit", "1", "--output-dir", str(tmp_path / "v")],
         "--backend vllm: vLLM"),  # not installed, no GPU, or failed to start: one line
        (["--backend", "vllm", "--limit", "1"], "--backend vllm decodes freely only"),
        (["--backend", "transformers", "--gguf", "model.gguf"], "--backend transformers would ignore it"),
    ]
    for args, message in cases:
        result = evaluate(*args, cwd=work)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)


def test_llama_cpp_backend_refuses_a_bad_gguf_before_making_outputs(trained, tmp_path):
    """Without llama-cpp-python, or with a file that is not a GGUF, --backend llama.cpp stops in
    one line before the output directory exists (not after writing a provenance for nothing)."""
    from pii_redact.inference.llamacpp import available

    work, _ = trained
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"\x00" * 64)
    for gguf, message in ((not_gguf, "is not a GGUF file"), (tmp_path / "missing.gguf", "no such file"),
                          (tmp_path, "is a directory")):
        out = tmp_path / "eval"
        result = evaluate("--backend", "llama.cpp", "--gguf", str(gguf), "--limit", "1", "--output-dir", str(out),
                          cwd=work)
        expected = message if available() else "needs llama-cpp-python"
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not out.exists()
