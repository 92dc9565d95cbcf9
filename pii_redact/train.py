"""LoRA SFT of a Gemma 3 model with Unsloth + TRL: the engine behind `finetune.py`.

What it guards against, because each one has cost someone a run:
  * loss on the prompt instead of the response, or `<end_of_turn>` never trained (the model never
    stops): the labels are built here, from `chat.encode_example`, and checked before training;
  * train/inference template drift and a double `<bos>`: one renderer (`chat.render`), checked;
  * fp16 overflow in Gemma 3: bf16 where supported, else fp32, never fp16;
  * lost runs: no silent overwrite, resume refuses a changed config or data, a non-finite loss stops
    before the optimizer applies it, Ctrl-C saves the adapter.
"""
from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from .cli import UserError, config_dict, parse_config
from .config import DataConfig, TrainConfig
from .data import sha256_file

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Settings that may differ when resuming: they change how long or how loudly a run goes, not what a
# step computes. Anything else (lr, rank, data, model...) would silently make a different run.
RESUMABLE_CHANGES = {"resume", "overwrite", "max_steps", "epochs", "gguf", "logging_steps",
                     "eval_steps", "save_steps", "save_total_limit", "run_name"}
CHECKED_SAMPLES = 8  # training samples whose token layout is verified before the first step


class NonFiniteLoss(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# run directory: where everything goes, and refusing to clobber or to resume into a different run

def _newest_run(output_dir: Path) -> Path | None:
    runs = [p for p in output_dir.glob("*/run.json")] if output_dir.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime).parent if runs else None


def resolve_run_dir(config: TrainConfig) -> Path:
    output_dir = Path(config.output_dir)
    if config.resume and config.run_name is None:
        run = _newest_run(output_dir)
        if run is None:
            raise UserError(f"--resume: no run found in {output_dir}/; pass --run-name")
        return run
    name = config.run_name or f"{Path(config.model.rstrip('/')).name}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = output_dir / name
    if config.resume:
        if not (run_dir / "run.json").exists():
            raise UserError(f"--resume: {run_dir} is not a run directory (no run.json)")
    elif run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise UserError(f"{run_dir} already exists: pass --resume to continue it, "
                            "--overwrite to replace it, or another --run-name")
        import shutil
        shutil.rmtree(run_dir)
    return run_dir


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "unsloth_zoo"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def check_resume(run_dir: Path, config: TrainConfig, data_hashes: dict[str, str]) -> str:
    """The checkpoint to resume from; refuses when the run would not be the same run."""
    from transformers.trainer_utils import get_last_checkpoint

    saved = json.loads((run_dir / "run.json").read_text())
    old, new = saved["config"], config_dict(config)
    changed = sorted(k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k])
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
        raise UserError(f"--resume: the config changed ({diffs}); start a new run instead")
    if saved["data_sha256"] != data_hashes:
        raise UserError(f"--resume: the training data changed since {run_dir.name} started "
                        "(sha256 differs); start a new run instead")
    checkpoints = run_dir / "checkpoints"
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        raise UserError(f"--resume: {run_dir} has no checkpoint yet; start it again with --overwrite")
    return last


# --------------------------------------------------------------------------------------------
# data

def ensure_data(config: TrainConfig) -> tuple[Path, Path]:
    """train/val splits from `data_dir`, prepared from the default raw data if they are missing."""
    data_dir = Path(config.data_dir)
    train, val = data_dir / "train.jsonl", data_dir / "val.jsonl"
    if not (train.exists() and val.exists()):
        from . import data

        print(f"{data_dir}/ has no train/val splits: preparing them first (prepare_data.py)")
        report = data.prepare(DataConfig(output_dir=str(data_dir), model=config.model,
                                         max_seq_length=config.max_seq_length, seed=config.seed))
        data.print_summary(report, str(data_dir))
    return train, val


def tokenize_split(tokenizer, path: Path, max_seq_length: int, limit: int = 0):
    """A split file -> a datasets.Dataset of `input_ids` and `labels` (-100 outside the response)."""
    from datasets import Dataset

    from . import chat, data

    records = list(data.read_jsonl(path))
    if limit:
        records = records[:limit]
    if not records:
        raise UserError(f"{path} has no samples")
    pairs = [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records]
    encoded = chat.encode_examples(tokenizer, pairs)
    input_ids, labels = [], []
    for i, ex in enumerate(encoded):
        n = len(ex["input_ids"])
        if n > max_seq_length:
            # Truncation would cut the response (and its stop token) off: refuse, never truncate.
            raise UserError(f"{path}: sample {i} is {n} tokens, over --max-seq-length {max_seq_length}; "
                            "prepare the data with the same --max-seq-length")
        input_ids.append(ex["input_ids"])
        labels.append([t if m else -100 for t, m in zip(ex["input_ids"], ex["completion_mask"])])
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels}), pairs


def check_token_layout(tokenizer, pairs: list[tuple[str, str]], dataset, vocab_size: int) -> None:
    """Fail loudly, before any compute is spent, if the samples are not what the model must learn."""
    from . import chat

    bos = tokenizer.bos_token_id
    eot = tokenizer.convert_tokens_to_ids(chat.END_OF_TURN)
    for i, (prompt, response) in enumerate(pairs[:CHECKED_SAMPLES]):
        ids, labels = dataset[i]["input_ids"], dataset[i]["labels"]
        problems = []
        if ids.count(bos) != 1 or ids[0] != bos:
            problems.append(f"expected exactly one <bos> at position 0, found {ids.count(bos)}")
        prompt_ids = chat.encode_prompt(tokenizer, prompt)
        if ids[: len(prompt_ids)] != prompt_ids:
            problems.append("the inference prompt is not a prefix of the training sequence")
        supervised = [t for t in labels if t != -100]
        if any(t != -100 for t in labels[: len(prompt_ids)]):
            problems.append("prompt tokens are supervised")
        if not supervised or supervised[-1] != eot:
            problems.append(f"the supervised tokens do not end with {chat.END_OF_TURN}")
        # The template trims message contents, so the target is the trimmed response.
        expected = response.strip() + chat.END_OF_TURN
        if tokenizer.decode(supervised) != expected:
            problems.append(f"supervised text {tokenizer.decode(supervised)[-60:]!r} != response + {chat.END_OF_TURN}")
        if problems:
            raise RuntimeError(f"token layout check failed on training sample {i}: " + "; ".join(problems))
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"the tokenizer grew from {vocab_size} to {len(tokenizer)} tokens: placeholders "
                           "must stay plain text, new tokens would have untrained embeddings")


# --------------------------------------------------------------------------------------------
# model

def load_model(config: TrainConfig):
    """Unsloth FastModel in bf16 (fp32 where bf16 is unsupported: Gemma 3 overflows in fp16)."""
    import torch
    from unsloth import FastModel, is_bfloat16_supported

    if config.load_in_4bit and not torch.cuda.is_available():
        raise UserError("--load-in-4bit needs a GPU (bitsandbytes); drop the flag to train in 16-bit on CPU")
    if config.packing and not torch.cuda.is_available():
        raise UserError("--packing needs a GPU (FlashAttention keeps packed samples apart); drop it on CPU")
    local = Path(config.model).is_dir()
    dtype = torch.bfloat16 if is_bfloat16_supported() else torch.float32
    try:
        model, tokenizer = FastModel.from_pretrained(
            config.model, max_seq_length=config.max_seq_length, dtype=dtype,
            load_in_4bit=config.load_in_4bit, full_finetuning=False,
            use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
            **({"local_files_only": True} if local else {}),
        )
    except OSError as exc:
        if local:
            raise UserError(f"cannot load the model in {config.model}: {exc}") from None
        raise UserError(f"cannot load '{config.model}' (no network, or no such model): pass "
                        "--model <local directory> holding a Hugging Face checkpoint") from None
    return model, tokenizer, dtype


def add_lora(model, config: TrainConfig):
    from unsloth import FastModel

    return FastModel.get_peft_model(
        model, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=ALL_PROJECTIONS, bias="none", random_state=config.seed,
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
    )


# --------------------------------------------------------------------------------------------
# training loop plumbing: a finite-loss guard and one log line per logged step

def make_trainer_class(base):
    """`base` is whatever `trl.SFTTrainer` is after `import unsloth` (Unsloth patches it on GPU)."""

    class RedactionTrainer(base):
        def training_step(self, model, inputs, *args, **kwargs):
            loss = super().training_step(model, inputs, *args, **kwargs)
            # Checked before the optimizer step, so the weights (and the next checkpoint) stay finite.
            # The Trainer already syncs on the loss every step (its nan filter), so this costs nothing new.
            if not math.isfinite(float(loss)):
                raise NonFiniteLoss(f"loss is {float(loss)} at step {self.state.global_step + 1}")
            return loss

    return RedactionTrainer


def make_log_callback(log_path: Path):
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class LogCallback(TrainerCallback):
        """One JSONL record and one console line per logging step: loss, lr, tokens/s, ETA."""

        step_seconds = 0.0  # time inside optimizer steps only: evaluation and saving excluded

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True)
            self.t0 = time.time()
            self.tokens_at_begin = state.num_input_tokens_seen  # > 0 when resuming
            self.last_time, self.last_tokens = self.t0, state.num_input_tokens_seen

        def on_step_begin(self, args, state, control, **kwargs):
            self.step_start = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_seconds += time.time() - self.step_start
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            now, tokens = time.time(), state.num_input_tokens_seen
            record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                      "elapsed_s": round(now - self.t0, 2), **logs}
            if "loss" in logs and tokens > self.last_tokens and now > self.last_time:
                record["tokens_per_s"] = round((tokens - self.last_tokens) / (now - self.last_time), 1)
                self.last_time, self.last_tokens = now, tokens
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            parts = [f"step {state.global_step}/{state.max_steps}"]
            if "loss" in logs:
                parts.append(f"loss {logs['loss']:.4f}")
            if "eval_loss" in logs:
                parts.append(f"val_loss {logs['eval_loss']:.4f}")
            if "learning_rate" in logs:
                parts.append(f"lr {logs['learning_rate']:.2e}")
            if "tokens_per_s" in record:
                parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
                self.bar.set_postfix_str(f"{record['tokens_per_s']:,.0f} tok/s")
            if len(parts) > 1:
                self.bar.write(" | ".join(parts))

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return LogCallback()


# --------------------------------------------------------------------------------------------
# outputs

def write_generation_config(directory: Path, tokenizer) -> None:
    from transformers import GenerationConfig

    from . import chat

    # Greedy, and stop on <end_of_turn> as well as <eos>: a chat turn ends with the former.
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=chat.stop_token_ids(tokenizer), do_sample=False,
    ).save_pretrained(directory)


def plot_losses(log_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    for points, label, style in ((train, "train", "-"), (val, "validation", "o-")):
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (response tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def write_model_card(run_dir: Path, config: TrainConfig, summary: dict[str, Any]) -> None:
    card = f"""# {run_dir.name}

LoRA fine-tune of `{config.model}` that redacts PII: it rewrites a text with each personal value
replaced by `[LABEL_n]` (17 labels: names, addresses, phone numbers, IDs, account numbers...).

| | |
|---|---|
| base model | `{config.model}` |
| LoRA | r={config.lora_r}, alpha={config.lora_alpha}, all 7 projections |
| steps | {summary['steps']} ({summary['epochs']:.2f} epochs, {summary['train_samples']:,} training samples) |
| final train loss | {summary['train_loss']} |
| final validation loss | {summary['val_loss']} |
| training time | {summary['train_seconds']:.0f} s ({summary['step_seconds']:.0f} s in optimizer steps, {summary['tokens_per_s']:,.0f} tokens/s) |

Loss is on the response tokens only (the redacted text and its `<end_of_turn>`).

## Files
- `adapter/`: the LoRA adapter (PEFT format) with tokenizer and chat template
- `merged/`: base + adapter merged in 16 bit, loadable by plain transformers or vLLM
- `config.yaml`: the resolved training config; `run.json`: library versions and data sha256
- `train_log.jsonl`, `loss.png`: the training log and loss curve

## Use
```bash
python evaluate.py --model-dir {run_dir}
```
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from pii_redact.chat import build_prompt, encode_prompt
tok = AutoTokenizer.from_pretrained("{run_dir}/merged")
model = AutoModelForCausalLM.from_pretrained("{run_dir}/merged")
ids = encode_prompt(tok, build_prompt("Call Anna Schmidt on +49 30 1234567."))
```
"""
    (run_dir / "README.md").write_text(card)


def save_outputs(model, tokenizer, run_dir: Path, config: TrainConfig) -> None:
    print(f"saving the adapter to {run_dir / 'adapter'}")
    model.save_pretrained(str(run_dir / "adapter"))
    tokenizer.save_pretrained(str(run_dir / "adapter"))
    write_generation_config(run_dir / "adapter", tokenizer)
    print(f"saving the merged 16-bit model to {run_dir / 'merged'}")
    model.save_pretrained_merged(str(run_dir / "merged"), tokenizer, save_method="merged_16bit")
    write_generation_config(run_dir / "merged", tokenizer)
    if config.gguf:
        print(f"exporting GGUF ({config.gguf}) to {run_dir / 'gguf'}")
        try:
            model.save_pretrained_gguf(str(run_dir / "gguf"), tokenizer, quantization_method=config.gguf)
        except Exception as exc:  # the export builds llama.cpp, which needs a network and a compiler
            print(f"warning: GGUF export failed ({type(exc).__name__}: {exc}); the adapter and "
                  "merged model are saved, convert merged/ with llama.cpp's convert_hf_to_gguf.py")


# --------------------------------------------------------------------------------------------

def build_trainer(config: TrainConfig, train_path: Path, val_path: Path | None, output_dir: Path,
                  callbacks: Iterable = (), supervise_prompt: bool = False):
    """Model + LoRA + tokenized data + SFTTrainer, exactly as `finetune` trains. `supervise_prompt`
    (loss on the whole text) exists only to benchmark the reference setup against ours.
    Returns (trainer, model, tokenizer, dtype)."""
    import unsloth  # noqa: F401  (first: it patches transformers/TRL before they are used)
    import torch
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from . import chat

    model, tokenizer, dtype = load_model(config)
    chat.ensure_chat_template(tokenizer)
    vocab_size = len(tokenizer)
    train_ds, train_pairs = tokenize_split(tokenizer, train_path, config.max_seq_length)
    check_token_layout(tokenizer, train_pairs, train_ds, vocab_size)
    if supervise_prompt:
        train_ds = train_ds.map(lambda row: {"labels": row["input_ids"]})
    val_ds = None
    if val_path is not None and config.eval_steps > 0:
        val_ds, _ = tokenize_split(tokenizer, val_path, config.max_seq_length, limit=config.val_samples)
    model = add_lora(model, config)
    # Every row is already within max_seq_length (tokenize_split refuses longer ones). Unsloth's GPU
    # SFTTrainer turns padding-free batching off for pre-tokenized data unless the dataset attests
    # that cap through this attribute; stock TRL (and the CPU backend) ignore it.
    for dataset in (train_ds, val_ds):
        if dataset is not None:
            dataset._unsloth_truncated_to = config.max_seq_length

    args = SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.lr,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        optim=config.optim,
        bf16=dtype == torch.bfloat16,
        fp16=False,  # Gemma 3 activations overflow fp16
        seed=config.seed,
        data_seed=config.seed,
        # a short run (--max-steps 2) still logs every step
        logging_steps=min(config.logging_steps, config.max_steps) if config.max_steps > 0 else config.logging_steps,
        logging_first_step=True,
        include_num_input_tokens_seen="non_padding",  # real tokens, for tokens/s
        logging_nan_inf_filter=False,  # never average a NaN away
        eval_strategy="steps" if val_ds is not None else "no",
        eval_steps=config.eval_steps or None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to="none",
        disable_tqdm=True,  # our callback draws the bar and the log lines
        # the data is already tokenized with labels (chat.encode_example): TRL must not re-template it
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,  # lengths were checked above; truncation would cut the stop token off
        packing=False,
        padding_free=config.packing,
        remove_unused_columns=False,
        gradient_checkpointing=config.gradient_checkpointing,
    )
    trainer = make_trainer_class(SFTTrainer)(
        model=model, processing_class=tokenizer, args=args,
        train_dataset=train_ds, eval_dataset=val_ds, callbacks=list(callbacks),
    )
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"the tokenizer grew from {vocab_size} to {len(tokenizer)} tokens during setup")
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; LogCallback writes readable lines
    return trainer, model, tokenizer, dtype


def finetune(config: TrainConfig, extra_callbacks: Iterable = ()) -> dict[str, Any]:
    """Train, save and summarise one run; returns the summary (also written to run.json)."""
    run_dir = resolve_run_dir(config)  # cheap checks first: a wrong flag fails before the slow imports
    import unsloth  # noqa: F401  (before transformers/peft/trl, which it patches; prepare_data loads them)

    train_path, val_path = ensure_data(config)
    data_hashes = {p.name: sha256_file(p) for p in (train_path, val_path)}
    resume_from = check_resume(run_dir, config, data_hashes) if config.resume else None

    log_path = run_dir / "train_log.jsonl"
    log_callback = make_log_callback(log_path)
    trainer, model, tokenizer, dtype = build_trainer(
        config, train_path, val_path, run_dir / "checkpoints", callbacks=[log_callback, *extra_callbacks])

    import torch
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)  # only now: a failed setup leaves no empty run behind
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_dict(config), sort_keys=False))
    if not resume_from:
        run_info = {"config": config_dict(config), "data_sha256": data_hashes, "versions": library_versions(),
                    "dtype": str(dtype).replace("torch.", ""),
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                    "started": datetime.now().isoformat(timespec="seconds")}
        (run_dir / "run.json").write_text(json.dumps(run_info, indent=2))

    start = time.time()
    try:
        result = trainer.train(resume_from_checkpoint=resume_from)
    except NonFiniteLoss as exc:
        last = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        where = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written yet"
        raise UserError(f"training stopped: {exc}; {where}. Lower --lr, or check the data "
                        "(the weights were not updated with the bad step)") from None
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {trainer.state.global_step}: saving the adapter "
              f"(resume from the last checkpoint with --resume --run-name {run_dir.name})")
        model.save_pretrained(str(run_dir / "adapter"))
        tokenizer.save_pretrained(str(run_dir / "adapter"))
        raise
    train_seconds = time.time() - start

    val_loss = None
    if config.eval_steps > 0:
        evals = [h for h in trainer.state.log_history if "eval_loss" in h]
        if evals and evals[-1]["step"] == trainer.state.global_step:
            val_loss = evals[-1]["eval_loss"]
        else:  # the last step was not an eval step: measure the final model once
            val_loss = trainer.evaluate()["eval_loss"]
    save_outputs(model, tokenizer, run_dir, config)
    plot_losses(log_path, run_dir / "loss.png")

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = trainer.state.num_input_tokens_seen - log_callback.tokens_at_begin
    summary = {
        "run_dir": str(run_dir), "steps": trainer.state.global_step,
        "epochs": float(trainer.state.epoch or 0.0), "train_samples": len(trainer.train_dataset),
        "train_seconds": round(train_seconds, 1),
        "train_loss": round(losses[-1], 4) if losses else round(result.training_loss, 4),
        "val_loss": round(val_loss, 4) if val_loss is not None else None,
        "step_seconds": round(log_callback.step_seconds, 1),
        # over this session's steps (a resumed run counts only its own)
        "tokens_per_s": round(tokens / log_callback.step_seconds, 1) if log_callback.step_seconds > 0 else 0.0,
    }
    run_info = json.loads((run_dir / "run.json").read_text())
    run_info.update(summary=summary, finished=datetime.now().isoformat(timespec="seconds"))
    (run_dir / "run.json").write_text(json.dumps(run_info, indent=2))
    write_model_card(run_dir, config, summary)
    print(f"done: {summary['steps']} steps in {train_seconds:.0f}s ({summary['step_seconds']:.0f}s in optimizer "
          f"steps, {summary['tokens_per_s']:,.0f} tok/s), "
          f"train loss {summary['train_loss']}, val loss {summary['val_loss']} -> {run_dir}")
    return summary


DESCRIPTION = "LoRA fine-tune Gemma 3 (270M by default) with Unsloth to redact PII."
EPILOG = """examples:
  python finetune.py                                  # prepare data if needed, train, save
  python finetune.py --model /models/gemma-3-270m     # offline: a local model directory
  python finetune.py --max-steps 200 --lr 2e-4 --run-name quick
  python finetune.py --resume --run-name quick --max-steps 400

A run writes outputs/<run-name>/: adapter/, merged/, config.yaml, run.json, train_log.jsonl,
loss.png, README.md (model card) and checkpoints/ for --resume."""


def main(argv: list[str] | None = None) -> int:
    config = parse_config(TrainConfig, "train", argv, prog="finetune.py",
                          description=DESCRIPTION, epilog=EPILOG)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    finetune(config)
    return 0

