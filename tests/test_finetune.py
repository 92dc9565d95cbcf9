"""finetune.py end to end on CPU: a tiny Gemma 3 trained for real through Unsloth's CPU backend + TRL."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pii_redact.config import DataConfig, TrainConfig
from pii_redact.core import chat
from pii_redact.core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent

RECORDS = [
    ("Hi, I am Anna Schmidt, call me on +49 30 1234567.", "Hi, I am [GIVENNAME_1] [SURNAME_1], call me on [TELEPHONENUM_1]."),
    ("Email jdoe@example.com about order 5521.", "Email [EMAIL_1] about order 5521."),
    ("Lives at 12 Rue Lepic, 75018 Paris.", "Lives at [BUILDINGNUM_1] [STREET_1], [ZIPCODE_1] [CITY_1]."),
    ("Password for user kmuller: Xy7!pq2", "Password for user [USERNAME_1]: [PASSWORD_1]"),
    ("Nothing personal in this sentence at all.", "Nothing personal in this sentence at all."),
    ("DOB 04/05/1961, SSN 123-45-6789.", "DOB [DATEOFBIRTH_1], SSN [SOCIALNUM_1]."),
    ("Card 4111 1111 1111 1111 expires soon.", "Card [CREDITCARDNUMBER_1] expires soon."),
    ("Marco Rossi and Marco Bianchi met in Roma.", "[GIVENNAME_1] [SURNAME_1] and [GIVENNAME_1] [SURNAME_2] met in [CITY_1]."),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """train/val/test splits made by prepare_data's own code from a small prompt/response file."""
    from pii_redact.data import prepare

    work = tmp_path_factory.mktemp("finetune-data")
    raw = [{"prompt": chat.build_prompt(s), "response": r} for s, r in RECORDS]
    # Variants with other numbers keep templates distinct, so every split gets samples.
    raw += [{"prompt": chat.build_prompt(s + f" Ref {k}."), "response": r + f" Ref {k}."}
            for k in range(1, 4) for s, r in RECORDS]
    (work / "raw.json").write_text(json.dumps(raw))
    out = work / "data"
    prepare.prepare(DataConfig(input=[str(work / "raw.json")], output_dir=str(out), model=str(tiny_model_dir),
                            val_fraction=0.15, test_fraction=0.15, seed=1))
    return out


def make_config(tiny_model_dir, data_dir, tmp_path, **overrides) -> TrainConfig:
    settings = dict(model=str(tiny_model_dir), data_dir=str(data_dir), output_dir=str(tmp_path / "outputs"),
                    run_name="run", max_steps=8, batch_size=4, lr=5e-3, warmup_steps=0,
                    lr_scheduler="constant", lora_r=8, lora_alpha=16, eval_steps=4, save_steps=4,
                    logging_steps=1, val_samples=8)
    settings.update(overrides)
    return TrainConfig(**settings)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_token_layout_supervises_exactly_the_response_and_end_of_turn(tiny_model_dir, data_dir):
    from transformers import AutoTokenizer

    from pii_redact.data.records import read_samples
    from pii_redact.training.dataset import check_token_layout, tokenize_samples

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    samples = read_samples(data_dir / "train.jsonl", prepared=True)
    dataset = tokenize_samples(tokenizer, samples, 1024, data_dir / "train.jsonl")
    check_token_layout(tokenizer, samples, dataset, len(tokenizer))  # passes on the real layout
    eot = tokenizer.convert_tokens_to_ids(chat.END_OF_TURN)
    for sample, row in zip(samples, dataset):
        prompt, response = sample.prompt, sample.response
        supervised = [t for t in row["labels"] if t != -100]
        assert tokenizer.decode(supervised) == response.strip() + chat.END_OF_TURN
        assert supervised[-1] == eot
        assert row["input_ids"].count(tokenizer.bos_token_id) == 1
        prompt_ids = chat.encode_prompt(tokenizer, prompt)
        assert row["input_ids"][: len(prompt_ids)] == prompt_ids
        assert set(row["labels"][: len(prompt_ids)]) == {-100}

    # each broken layout is caught before training
    bos = tokenizer.bos_token_id
    broken = {
        "prompt supervised": dataset.map(lambda r: {"labels": r["input_ids"]}),
        "double <bos>": dataset.map(lambda r: {"input_ids": [bos] + r["input_ids"], "labels": [-100] + r["labels"]}),
        "no stop token": dataset.map(lambda r: {"labels": r["labels"][:-1] + [-100]}),
    }
    for name, bad in broken.items():
        with pytest.raises(RuntimeError, match="token layout check failed"):
            check_token_layout(tokenizer, samples, bad, len(tokenizer))
    tokenizer.add_tokens(["[EMAIL_1]"])
    with pytest.raises(RuntimeError, match="tokenizer grew"):
        check_token_layout(tokenizer, samples, dataset, len(tokenizer) - 1)


def test_finetune_trains_saves_reloads_and_generates(tiny_model_dir, data_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from pii_redact.inference import generate
    from pii_redact.models.loading import load_for_generation
    from pii_redact.training.finetune import finetune

    config = make_config(tiny_model_dir, data_dir, tmp_path, max_steps=24)
    summary = finetune(config)
    run = Path(summary["run_dir"])

    for rel in ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json",
                "merged/config.json", "merged/model.safetensors", "merged/tokenizer.json",
                "merged/generation_config.json", "merged/chat_template.jinja", "adapter/chat_template.jinja", "config.yaml", "run.json", "train_log.jsonl", "loss.png",
                "README.md"]:
        assert (run / rel).is_file(), rel
    info = json.loads((run / "run.json").read_text())
    assert set(info["data_sha256"]) == {"train.jsonl", "val.jsonl"}
    assert info["versions"]["unsloth"] != "not installed" and info["config"]["lora_r"] == 8
    assert info["summary"]["steps"] == 24

    losses = [r["loss"] for r in read_log(run) if "loss" in r]
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)
    # the same few batches come round again and again: the loss must fall
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - 0.25, (first, last)
    assert any("eval_loss" in r for r in read_log(run))

    # LoRA B matrices start at zero: trained ones are not
    adapter = load_file(run / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)
    assert {k.split(".")[-3] for k in adapter if "lora_A" in k} >= {"q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj"}

    stop_ids = json.loads((run / "merged" / "generation_config.json").read_text())["eos_token_id"]
    assert sorted(stop_ids) == [1, 5]  # <eos> and <end_of_turn> of the tiny tokenizer

    # the merged model reloads in plain transformers and equals base + adapter
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged, tokenizer = load_for_generation(run / "merged")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, run / "adapter").eval()
    ids = torch.tensor([chat.encode_prompt(tokenizer, chat.build_prompt("Call Anna on 555 0100."))])
    with torch.no_grad():
        diff = (merged(ids).logits.float() - with_adapter(ids).logits).abs().max().item()
    assert diff < 0.1  # merged is stored in 16 bit
    # batched, left-padded generation gives what a plain greedy loop gives for each prompt alone
    sources = ["Hi Anna", "Call Anna Schmidt on 555 0100 about order 12."]
    prompts = [chat.build_prompt(s) for s in sources]
    outputs = sorted(generate.generate_transformers(merged, tokenizer, prompts, sources, batch_size=2,
                                                    max_new_tokens=8, decoding="free"))
    stops = set(chat.stop_token_ids(tokenizer))
    for (i, text, reason), prompt in zip(outputs, prompts):
        ids = chat.encode_prompt(tokenizer, prompt)
        new: list[int] = []
        while len(new) < 8 and (not new or new[-1] not in stops):
            with torch.no_grad():
                new.append(int(merged(torch.tensor([ids + new])).logits[0, -1].argmax()))
        finished = new[-1] in stops
        assert reason == ("stop" if finished else "length")
        assert text == tokenizer.decode(new[:-1] if finished else new, skip_special_tokens=True)


def test_resume_continues_from_the_saved_step_and_refuses_changes(tiny_model_dir, data_dir, tmp_path):
    from pii_redact.training.finetune import finetune

    finetune(make_config(tiny_model_dir, data_dir, tmp_path, max_steps=4, save_steps=2, eval_steps=0))
    run = tmp_path / "outputs" / "run"
    assert (run / "checkpoints" / "checkpoint-4").is_dir()

    with pytest.raises(UserError, match="already exists"):
        finetune(make_config(tiny_model_dir, data_dir, tmp_path, max_steps=4, eval_steps=0))
    with pytest.raises(UserError, match=r"config changed \(lr"):
        finetune(make_config(tiny_model_dir, data_dir, tmp_path, max_steps=6, eval_steps=0, lr=1e-3, resume=True))

    summary = finetune(make_config(tiny_model_dir, data_dir, tmp_path, max_steps=6, save_steps=2,
                                   eval_steps=0, resume=True))
    assert summary["steps"] == 6
    steps = [r["step"] for r in read_log(run) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # the resumed run logs only steps 5 and 6

    # --overwrite replaces the run
    summary = finetune(make_config(tiny_model_dir, data_dir, tmp_path, max_steps=2, eval_steps=0, overwrite=True))
    assert summary["steps"] == 2 and [r["step"] for r in read_log(run) if "loss" in r] == [1, 2]


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_model_dir, data_dir, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from pii_redact.training.finetune import finetune

    class PoisonAtStep3(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 2:  # the third step computes a NaN loss
                with torch.no_grad():
                    next(p for n, p in model.named_parameters() if "lora_A" in n).fill_(float("nan"))

    with pytest.raises(UserError, match=r"loss is nan at step 3.*checkpoint-2"):
        finetune(make_config(tiny_model_dir, data_dir, tmp_path, max_steps=6, save_steps=2, eval_steps=0),
                 extra_callbacks=[PoisonAtStep3()])
    checkpoints = sorted(p.name for p in (tmp_path / "outputs" / "run" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2"]
    weights = load_file(tmp_path / "outputs" / "run" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_ctrl_c_saves_a_checkpoint_that_resumes(tiny_model_dir, data_dir, tmp_path, capsys):
    import os
    import signal

    from transformers import TrainerCallback

    from pii_redact.training.finetune import finetune

    class CtrlCAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends

    config = make_config(tiny_model_dir, data_dir, tmp_path, eval_steps=0, save_steps=100)
    # as in a terminal: a shell without job control (`cmd &`) starts its children with SIGINT ignored
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            finetune(config, extra_callbacks=[CtrlCAtStep3()])
        restored = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, outer)
    run = tmp_path / "outputs" / "run"
    # the signal lands after step 3's checks: step 4 finishes, then a full checkpoint is saved
    # although save_steps is 100
    checkpoint = run / "checkpoints" / "checkpoint-4"
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name
    out = capsys.readouterr().out
    assert f"checkpoint saved to {checkpoint}" in out and "--resume --run-name run" in out
    assert restored is signal.default_int_handler  # the handler is restored

    summary = finetune(make_config(tiny_model_dir, data_dir, tmp_path, eval_steps=0, save_steps=100, resume=True))
    assert summary["steps"] == 8
    assert [r["step"] for r in read_log(run) if "loss" in r] == list(range(1, 9))


def run_script(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "finetune.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_errors_are_one_line_without_traceback(tmp_path, tiny_model_dir, data_dir):
    result = run_script("--help")
    assert result.returncode == 0 and "--lora-r" in result.stdout and "--resume" in result.stdout

    result = run_script("--model", str(tmp_path / "no-such-model"), "--data-dir", str(data_dir),
                        "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"error: --model {tmp_path / 'no-such-model'}: no such directory\n"

    result = run_script("--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "nodata"),
                        "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pii_redaction_train.json" in result.stderr

    result = run_script("--model", str(tiny_model_dir), "--data-dir", str(data_dir), "--padding-free",
                        "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "needs a GPU" in result.stderr
    assert "should be imported before" not in result.stderr  # Unsloth came first, so it patched everything

    result = run_script("--model", str(tiny_model_dir), "--data-dir", str(data_dir), "--optim", "sgdx",
                        "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2 and "--optim 'sgdx' is not one of" in result.stderr

    result = run_script("--lora-r", "eight")
    assert result.returncode == 2 and "--lora-r" in result.stderr


def test_auto_prepare_uses_the_data_section_of_the_same_config(tiny_model_dir, data_dir, tmp_path):
    from pii_redact.training.finetune import finetune

    raw = [{"prompt": chat.build_prompt(s + f" Ref {k}."), "response": r + f" Ref {k}."}
           for k in range(4) for s, r in RECORDS]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"data:\n  input: [{tmp_path / 'raw.json'}]\n  val_fraction: 0.3\n"
                           "  test_fraction: 0.2\n  seed: 5\n  max_seq_length: 4096\n")
    fresh = tmp_path / "fresh-data"
    finetune(make_config(tiny_model_dir, fresh, tmp_path, max_steps=1, eval_steps=0), config_path=str(config_file))
    report = json.loads((fresh / "report.json").read_text())
    assert report["config"]["input"] == [str(tmp_path / "raw.json")]
    assert (report["config"]["val_fraction"], report["config"]["test_fraction"], report["config"]["seed"]) == (0.3, 0.2, 5)
    # the tokenizer and length limit are the training run's: data and model must agree
    assert report["config"]["model"] == str(tiny_model_dir) and report["config"]["max_seq_length"] == 1024


def test_an_incomplete_data_directory_is_never_replaced(tiny_model_dir, tmp_path):
    from pii_redact.training.finetune import finetune

    partial = tmp_path / "data"
    partial.mkdir()
    (partial / "train.jsonl").write_text("my own file\n")
    with pytest.raises(UserError, match="incomplete set of prepared data"):
        finetune(make_config(tiny_model_dir, partial, tmp_path))
    assert (partial / "train.jsonl").read_text() == "my own file\n"
    assert sorted(p.name for p in partial.iterdir()) == ["train.jsonl"]


def test_validation_uses_fewer_samples_on_a_cpu_unless_told(tiny_model_dir, tmp_path):
    """An unset --val-samples validates on 64 samples on a CPU (500 there cost ~10 minutes per
    evaluation with the real model); a value given is used as it is, 0 meaning all."""
    from pii_redact.data import prepare
    from pii_redact.training.finetune import read_splits

    raw = [{"prompt": chat.build_prompt(f"Ticket {k}: call Eva Lind on 040 {k:05d}."),
            "response": f"Ticket {k}: call [GIVENNAME_1] [SURNAME_1] on [TELEPHONENUM_1]."} for k in range(100)]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    prepare.prepare(DataConfig(input=[str(tmp_path / "raw.json")], output_dir=str(tmp_path / "data"),
                            model=str(tiny_model_dir), val_fraction=0.05, test_fraction=0.05))
    train = tmp_path / "data" / "train.jsonl"
    n_rows = len(train.read_text().splitlines())
    assert n_rows > 64
    for val_samples, expected in ((None, 64), (10, 10), (0, n_rows)):
        config = TrainConfig(model=str(tiny_model_dir), eval_steps=5, val_samples=val_samples)
        assert len(read_splits(config, train, train).val) == expected  # train rows as val


def test_a_run_is_named_after_the_model_actually_trained(tmp_path):
    """Without --run-name a run is named after the model it trains: the PyPI base (a directory
    named gemma-3-270m) when it stands in for the default -it model, not the -it model's name."""
    from pii_redact.training.runs import plan_run_dir

    config = TrainConfig(model="unsloth/gemma-3-270m-it", output_dir=str(tmp_path))
    assert re.fullmatch(r"gemma-3-270m-\d{8}-\d{6}", plan_run_dir(config, str(tmp_path / "cache" / "gemma-3-270m")).name)
    assert re.fullmatch(r"gemma-3-270m-it-\d{8}-\d{6}", plan_run_dir(config, "unsloth/gemma-3-270m-it").name)
    assert plan_run_dir(TrainConfig(model="m", output_dir=str(tmp_path), run_name="mine"), "x").name == "mine"
