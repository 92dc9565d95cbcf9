"""The GPU benchmark script runs end to end on CPU with a tiny model (its numbers mean nothing here)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from pii_redact.config import DataConfig
from pii_redact.core import chat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def test_bench_train_measures_every_variant(tiny_model_dir, tmp_path):
    import bench_train

    from pii_redact.data import prepare

    raw = [{"prompt": chat.build_prompt(f"Ticket {k}: call Anna Weber on 030 {k:04d}."),
            "response": f"Ticket {k}: call [GIVENNAME_1] [SURNAME_1] on [TELEPHONENUM_1]."} for k in range(40)]
    raw += [{"prompt": chat.build_prompt(f"Note {k}: write to kim{k}@example.org"),
             "response": f"Note {k}: write to [EMAIL_1]"} for k in range(40)]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    prepare.prepare(DataConfig(input=[str(tmp_path / "raw.json")], output_dir=str(tmp_path / "data"),
                            model=str(tiny_model_dir), val_fraction=0.1, test_fraction=0.2))
    out = tmp_path / "bench.json"
    assert bench_train.main(["--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "data"),
                             "--variants", "suite,labspace", "--steps", "3", "--warmup", "1",
                             "--eval-samples", "4", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["train"]] == ["suite", "labspace"]

    # LoRA training FLOPs per token, by hand from the tiny shape (tiny_model.TINY): 4 x the weights
    # of every matmul. Per layer q 64x64, k 64x32, v 64x32, o 64x64, gate/up/down 64x128 each;
    # 2 layers; plus the (tied) lm_head, vocabulary x 64.
    vocab = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    flops_per_token = 4 * (2 * (4096 + 2048 + 2048 + 4096 + 3 * 8192) + vocab * 64)
    train_lines = (tmp_path / "data" / "train.jsonl").read_text().splitlines()
    epoch_tokens = sum(json.loads(line)["num_tokens"] for line in train_lines)
    for row in result["train"]:
        assert row["steps_timed"] == 3
        assert row["padding_free"] is False  # stock TRL on a CPU pads
        assert row["epoch_tokens"] == epoch_tokens
        assert row["epoch_s"] == pytest.approx(epoch_tokens / row["tokens_per_s"], rel=0.01, abs=0.05)
        expected_mfu = row["tokens_per_s"] * flops_per_token / (result["matmul_tflops"] * 1e12)
        assert row["mfu"] == pytest.approx(expected_mfu, rel=0.01, abs=5e-5)
    assert (result["train"][0]["batch_size"], result["train"][0]["loss_on"]) == (16, "response")
    assert (result["train"][1]["batch_size"], result["train"][1]["loss_on"]) == (8, "whole text")
    assert result["generation"][0]["engine"] == "transformers" and result["generation"][0]["samples"] == 4


def test_random_model_can_take_another_tokenizer(tmp_path):
    """The throughput model splits text exactly as the tokenizer it is given (the real one on a
    GPU run), not as the built-in test tokenizer, and its vocabulary is sized to match."""
    from tiny_model import build_model, build_tokenizer
    from transformers import AutoTokenizer

    small = build_tokenizer(vocab_size=300)
    small.save_pretrained(tmp_path / "tok")
    model_dir = build_model(tmp_path / "model", tokenizer_dir=tmp_path / "tok")
    built = AutoTokenizer.from_pretrained(model_dir)
    text = "Dear Anna Müller, call +49 30 1234567."
    assert built(text).input_ids == small(text).input_ids
    assert built(text).input_ids != build_tokenizer()(text).input_ids  # the default would differ
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == len(small)


def test_padding_free_check_compares_a_packed_row_and_can_fail(tiny_model_dir, tmp_path, capsys):
    """With --packed the check compares one packed row (position ids restarting per sample) with
    the same samples padded: transformers keeps packed samples apart on a CPU too, so the losses
    agree to fp32 noise. The comparison can fail: packed with positions running on across samples,
    they see each other, and the loss moves past the tolerance that fits a fp32 CPU (1e-4; the
    default 1e-2 is for bf16 on a GPU, where the random tiny model's small shift would hide)."""
    import check_padding_free
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from pii_redact.config import TrainConfig
    from pii_redact.data import prepare
    from pii_redact.training.finetune import setup

    raw = [{"prompt": chat.build_prompt(f"Row {k}: Jan Kowalski, jan{k}@example.org"),
            "response": f"Row {k}: [GIVENNAME_1] [SURNAME_1], [EMAIL_1]"} for k in range(30)]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    prepare.prepare(DataConfig(input=[str(tmp_path / "raw.json")], output_dir=str(tmp_path / "data"),
                            model=str(tiny_model_dir), val_fraction=0.1, test_fraction=0.1))
    args = ["--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "data"), "--samples", "4"]
    assert check_padding_free.main(args + ["--packed", "--tolerance", "1e-4"]) == 0
    out = capsys.readouterr().out
    shapes = re.findall(r"input_ids \((\d+), (\d+)\)", out)
    assert [rows for rows, _ in shapes] == ["1", "4"] and "OK" in out  # one packed row against four padded ones
    # weighted (--decision-weight): the weights follow their tokens into the packed row
    assert check_padding_free.main(args + ["--packed", "--tolerance", "1e-4", "--decision-weight", "4"]) == 0
    weighted = capsys.readouterr().out
    assert "OK" in weighted and "decide" in weighted
    plain_loss, weighted_loss = (float(re.search(r"loss as trained\s+(\S+)", o).group(1)) for o in (out, weighted))
    assert weighted_loss > plain_loss * 1.05

    trainer, model, tokenizer, _ = setup(TrainConfig(model=str(tiny_model_dir), eval_steps=0, max_steps=1),
                                         tmp_path / "data" / "train.jsonl", None, tmp_path / "out")
    rows = [trainer.train_dataset[i] for i in range(4)]
    pad = tokenizer.pad_token_id
    packed = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)

    def one_sequence(rows):  # packed, but positions run on across samples: packing gone wrong
        batch = packed(rows)
        batch["position_ids"] = torch.arange(batch["input_ids"].shape[1])[None]
        return batch

    losses = check_padding_free.loss_per_collation(trainer, model, rows, {
        "one sequence": one_sequence, "padded": DataCollatorForLanguageModeling(pad_token_id=pad)})
    (leaky, _), (padded, _) = losses["one sequence"], losses["padded"]
    assert abs(leaky - padded) / padded > 1e-4  # above the tolerance that just passed: the check would FAIL


def test_gpu_run_script_refuses_unknown_stages_and_runs_detached(tmp_path):
    """bench/gpu_run.sh: an unknown stage is refused by name; a stage started with --background
    outlives its command, and `wait` collects its log and results into $OUT."""
    import os
    import subprocess

    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "SITE": str(tmp_path / "site"),
           "STAGE_DIR": str(tmp_path / "no-stage"), "PYTHON": sys.executable}
    script = str(ROOT / "bench" / "gpu_run.sh")
    bad = subprocess.run(["bash", script, "bogus"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown stage 'bogus'" in bad.stderr and not (tmp_path / "site").exists()
    helped = subprocess.run(["bash", script, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("The suite on one GPU")

    started = subprocess.run(["bash", script, "--background", "env"], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0 and "running in the background" in started.stdout
    waited = subprocess.run(["bash", script, "wait"], env={**env, "WAIT_SECONDS": "120"}, capture_output=True,
                            text=True, timeout=180)
    assert waited.returncode == 0 and "background run finished" in waited.stdout
    assert "unsloth" in (tmp_path / "work" / "logs" / "env.log").read_text()  # the library versions
    assert (tmp_path / "out" / "results.tar.gz").is_file()


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--warmup", "0"], ["--eval-samples", "-1"]])
def test_bench_train_refuses_flags_it_cannot_measure_with(argv, capsys):
    import bench_train

    with pytest.raises(SystemExit) as refused:
        bench_train.main(["--tiny", *argv])
    assert refused.value.code == 2 and "must be" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--samples", "0"], ["--tolerance", "nan"], ["--tolerance", "0"]])
def test_padding_free_check_refuses_a_tolerance_or_batch_that_would_pass_anything(argv, capsys):
    import check_padding_free

    with pytest.raises(SystemExit) as refused:
        check_padding_free.main(["--model", "unused", *argv])
    assert refused.value.code == 2 and "must be" in capsys.readouterr().err


@pytest.mark.parametrize("script, argv, message", [
    ("bench_generate.py", ["--model-dir", "nowhere"], "--model-dir nowhere does not exist"),
    ("bench_generate.py", ["--model-dir", "x", "--limit", "0"], "--limit: must be at least 1"),
    ("bench_generate.py", ["--model-dir", "x", "--batch-sizes", "1,a"], "--batch-sizes: expected a comma-separated"),
    ("bench_generate.py", ["--model-dir", "x", "--batch-sizes", "0"], "--batch-sizes: must be at least 1"),
    ("bench_generate.py", ["--model-dir", "x", "--modes", "fast"], "--modes: unknown mode 'fast'"),
    ("bench_generate.py", ["--model-dir", "x", "--engines", "onnx"], "--engines: unknown engine 'onnx'"),
    ("bench_output_layer.py", ["--model-dir", "x", "--context", "0"], "--context: must be at least 1"),
    ("bench_output_layer.py", ["--model-dir", "x", "--batch-sizes", "-1"], "--batch-sizes"),
    ("bench_output_layer.py", ["--model-dir", "nowhere"], "--model-dir nowhere does not exist"),
    ("bench_metrics.py", ["--n", "0"], "--n: must be at least 1"),
    ("bench_metrics.py", ["--data", "missing.jsonl"], "missing.jsonl: no such file"),
    ("bench_metrics.py", ["--data", "README.md"], "README.md:1"),
    ("bench_memory.py", ["--model", "x", "--steps", "0"], "--steps: must be at least 1"),
    ("bench_memory.py", ["--model", "nowhere"], "--model nowhere: no such model directory"),
    ("bench_memory.py", ["--model", ".", "--data-dir", "nowhere"], "--data-dir nowhere: no train.jsonl"),
    ("bench_memory.py", ["--model", "x", "--pad-to-multiple-of", "-1"], "must be 0 or more"),
    ("bench_speed.py", ["--model-dir", "x", "--configs", "onnx/16"], "--configs: 'onnx/16' is not ENGINE/BATCH"),
    ("bench_speed.py", ["--model-dir", "x", "--configs", "llama.cpp/0"], "--configs: 'llama.cpp/0' is not"),
    ("bench_speed.py", ["--model-dir", "x", "--sets", "all"], "--sets: unknown set 'all'"),
    ("bench_speed.py", ["--model-dir", "x", "--repeats", "0"], "--repeats: must be at least 1"),
    ("bench_speed.py", ["--model-dir", "nowhere"], "--model-dir nowhere does not exist"),
    ("bench_equality.py", ["--model-dir", "nowhere"], "--model-dir nowhere does not exist"),
    ("bench_equality.py", ["--model-dir", "x", "--limit", "-1"], "--limit: must be 0 or more"),
])
def test_bench_scripts_refuse_bad_flags_in_one_line(script, argv, message):
    """No traceback, and refused before anything slow is loaded."""
    import subprocess

    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *argv], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(("error:", f"{script}: error:")), result.stderr


def test_stage_script_help_stages_nothing():
    import subprocess

    script = str(ROOT / "bench" / "stage_gpu.sh")
    helped = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and helped.stdout.startswith("Build .stage/") and not helped.stderr
    bad = subprocess.run(["bash", script, "now"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "takes no arguments" in bad.stderr


def test_output_layer_bench_times_a_step_with_and_without_the_output_layer(tiny_model_dir, capsys):
    import bench_output_layer

    assert bench_output_layer.main(["--model-dir", str(tiny_model_dir), "--batch-sizes", "2,1", "--context", "8",
                                    "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["batch   2", "batch   1"]
    assert all("the output layer is" in line for line in lines)


def test_the_hand_written_set_rebuilds_byte_identically(tmp_path, monkeypatch, capsys):
    """bench/unseen/unseen.jsonl is what make_unseen.py builds from unseen.yaml with today's
    prompt and masking code: a change to either shows up here, not as a silent score shift."""
    sys.path.insert(0, str(ROOT / "bench" / "unseen"))
    import make_unseen

    monkeypatch.setattr(make_unseen, "TARGET", tmp_path / "unseen.jsonl")
    monkeypatch.setattr(make_unseen, "ROOT", tmp_path)
    make_unseen.main()
    assert "wrote 300 records" in capsys.readouterr().out
    assert (tmp_path / "unseen.jsonl").read_bytes() == (ROOT / "bench" / "unseen" / "unseen.jsonl").read_bytes()


def test_speed_and_equality_benches_compare_the_head_on_a_tiny_model(tiny_model_dir, tmp_path):
    """bench_speed.py times each configuration in its own interpreter and counts the outputs the
    first one's; bench_equality.py runs evaluate.py before and now. On the tiny model the
    restricted head gives the whole layer's outputs, so both find every text identical."""
    import json
    import subprocess

    from tiny_model import SAMPLES

    from pii_redact.core import chat

    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"prompt": chat.build_prompt(s), "response": r}) + "\n" for s, r in SAMPLES))
    speed = tmp_path / "speed.json"
    common = ["--model-dir", str(tiny_model_dir)]
    subprocess.run([sys.executable, str(ROOT / "bench" / "bench_speed.py"), *common, "--test", str(data),
                    "--unseen", str(data), "--configs", "transformers/2/full,transformers/4", "--repeats", "2",
                    "--limit", "4", "--output", str(speed)], cwd=ROOT, check=True, capture_output=True, timeout=600)
    rows = json.loads(speed.read_text())["rows"]
    assert [(r["set"], r["config"]) for r in rows] == [(s, c) for s in ("test32", "unseen")
                                                       for c in ("transformers/2/full", "transformers/4")]
    assert all(r["samples"] == 4 and len(r["samples_per_s"]) == 2 and r["min"] <= r["median"] <= r["max"]
               and r["peak_rss_mib"] > 0 and r["repeats_identical"] for r in rows)
    assert [r.get("identical_to_first") for r in rows] == [None, 4, None, 4]
    equality = tmp_path / "equality.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "bench_equality.py"), *common, "--data", str(data),
                    "--now=--backend transformers", "--output", str(equality)], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    [side] = json.loads(equality.read_text())["sides"]
    assert (side["now"], side["texts"], side["identical"], side["differences"], side["metrics_that_differ"]) == \
        ("--backend transformers", len(SAMPLES), len(SAMPLES), [], {})
    assert all(speed > 0 for speed in side["samples_per_s"])  # before and now, from evaluate.py's own timing
