"""LoRA SFT of a Gemma 3 model with Unsloth + TRL: the recipe behind `finetune.py`.

What it guards against, because each one has cost someone a run:
  * loss on the prompt instead of the response, or `<end_of_turn>` never trained (the model never
    stops): labels are built from `chat.encode_examples` and every sample's layout is checked;
  * train/inference template drift, a double `<bos>`, control tokens smuggled in by the text: one
    renderer (`chat`), checked on token ids before any compute is spent;
  * fp16 overflow in Gemma 3: bf16 where supported, else fp32, never fp16;
  * lost runs: see `runs`; a non-finite loss stops before the optimizer applies it; Ctrl-C saves
    a checkpoint `--resume` continues from.
Saving what a run leaves behind is `artifacts`' job.
"""
from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from .cli import config_dict, load_config, parse_config
from .config import DataConfig, TrainConfig
from .errors import UserError
from .files import sha256_file, write_text
from .runs import Replacement, check_resume, model_fingerprint, plan_run_dir, read_run, write_run

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DECODED_SAMPLES = 8  # samples whose supervised tokens are also decoded and compared as text


class NonFiniteLoss(RuntimeError):
    pass


def import_unsloth() -> None:
    """Unsloth patches transformers, TRL and PEFT when it is imported, so it must come first:
    the one place that rule lives (finetune, the benchmark and the tests all call this)."""
    from .cli import quiet_startup_warnings

    quiet_startup_warnings()  # the scripts do it too; the benchmarks and tests come through here
    import unsloth  # noqa: F401


# --------------------------------------------------------------------------------------------
# data

def ensure_data(config: TrainConfig, config_path: str | None, model_path: str) -> tuple[Path, Path]:
    """train/val splits from `data_dir`, prepared first (with the `data:` settings of the same
    --config file, and the model's tokenizer) when the directory holds none of prepare_data.py's
    files."""
    from . import prepare

    data_dir = Path(config.data_dir)
    files = [data_dir / f"{s}.jsonl" for s in ("train", "val")]
    made = [data_dir / name for name in ("train.jsonl", "val.jsonl", "test.jsonl", "report.json")]
    if all(f.is_file() for f in files) and (data_dir / "report.json").is_file():
        return files[0], files[1]
    if any(f.exists() for f in made):
        present = ", ".join(f.name for f in made if f.exists())
        raise UserError(f"{data_dir}/ holds an incomplete set of prepared data ({present}); run "
                        f"prepare_data.py --output-dir {data_dir} to (re)make it, or pass another --data-dir")
    settings = load_config(DataConfig, "data", config_path, output_dir=str(data_dir), model=model_path,
                           max_seq_length=config.max_seq_length)
    print(f"{data_dir}/ has no prepared splits: preparing them first (prepare_data.py"
          f"{' with the data: settings of ' + config_path if config_path else ''})")
    prepare.print_summary(prepare.prepare(settings), str(data_dir))
    return files[0], files[1]


def tokenize_samples(tokenizer, samples, max_seq_length: int, path: Path):
    """Samples of a split file -> a datasets.Dataset of `input_ids` and `labels` (-100 outside
    the response)."""
    from datasets import Dataset

    from . import chat

    encoded = chat.encode_examples(tokenizer, [(s.prompt, s.response) for s in samples])
    input_ids, labels = [], []
    for i, ex in enumerate(encoded):
        n = len(ex["input_ids"])
        if n > max_seq_length:
            # Truncation would cut the response (and its stop token) off: refuse, never truncate.
            raise UserError(f"{path}: sample {i} is {n} tokens, over --max-seq-length {max_seq_length}; "
                            "prepare the data with the same --max-seq-length")
        input_ids.append(ex["input_ids"])
        labels.append([t if m else -100 for t, m in zip(ex["input_ids"], ex["completion_mask"])])
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels})


def check_token_layout(tokenizer, samples, dataset, vocab_size: int) -> None:
    """Fail loudly, before any compute is spent, if a sample is not what the model must learn.

    On every sample, on token ids: one `<bos>`, at position 0; the prompt holds exactly the
    control tokens the template writes (text never adds any); the supervised tokens are one
    contiguous tail equal to the input there, ending with `<end_of_turn>`, its only control
    token. On the first few, also as text: the supervised tokens decode to the response."""
    from . import chat

    bos, eot = tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(chat.END_OF_TURN)
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    template = Counter(t for t in chat.encode_prompt(tokenizer, "x") if t in special)
    for i, row in enumerate(dataset):
        ids, labels = row["input_ids"], row["labels"]
        start = next((k for k, t in enumerate(labels) if t != -100), len(labels))
        problems = []
        if ids[0] != bos or ids.count(bos) != 1:
            problems.append(f"expected exactly one <bos> at position 0, found {ids.count(bos)}")
        if Counter(t for t in ids[:start] if t in special) != template:
            problems.append("the prompt's control tokens differ from the chat template's")
        if labels[start:] != ids[start:] or not labels[start:] or labels[-1] != eot:
            problems.append(f"the supervised tokens are not one tail ending with {chat.END_OF_TURN}")
        elif any(t in special for t in ids[start:-1]):
            problems.append("the response contains control tokens")
        if i < DECODED_SAMPLES and not problems:
            decoded = tokenizer.decode(ids[start:])
            if decoded != samples[i].response.strip() + chat.END_OF_TURN:  # the template trims contents
                problems.append(f"the supervised tokens do not decode to the response + {chat.END_OF_TURN}")
        if problems:
            raise RuntimeError(f"token layout check failed on training sample {i}: " + "; ".join(problems))
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"the tokenizer grew from {vocab_size} to {len(tokenizer)} tokens: placeholders "
                           "must stay plain text, new tokens would have untrained embeddings")


# --------------------------------------------------------------------------------------------
# model

def check_names(config: TrainConfig) -> None:
    """Scheduler and optimizer names, checked before anything slow happens."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    for value, enum, name in ((config.lr_scheduler, SchedulerType, "--lr-scheduler"), (config.optim, OptimizerNames, "--optim")):
        if value not in {e.value for e in enum}:
            raise UserError(f"{name} {value!r} is not one of: {', '.join(e.value for e in enum)}")


def chunked_loss_on_cpu() -> None:
    """Let Unsloth's CPU backend compute Gemma 3's loss in chunks, over the supervised positions only.

    It does so for architectures whose logits are plain lm_head(hidden) (no soft-capping, scale or
    bias: it checks that again per model), but its list of them lacks Gemma 3's text model, which
    qualifies. Without it every step materialises batch x length x 262,144 logits and their
    gradient: gigabytes that grow with the longest batch seen (bench/bench_memory.py measures it).
    `UNSLOTH_CPU_CHUNKED_CE=0` still turns the chunked loss off."""
    try:
        from unsloth_zoo.cpu import ops
    except ImportError:  # another unsloth_zoo layout: full logits, as before
        return
    if "gemma3_text" not in getattr(ops, "_CHUNKED_CE_MODEL_TYPES", {"gemma3_text"}):
        ops._CHUNKED_CE_MODEL_TYPES = ops._CHUNKED_CE_MODEL_TYPES | {"gemma3_text"}


def checkpointing(config: TrainConfig) -> bool:
    """--gradient-checkpointing, resolved: unset means on a CPU only (see TrainConfig)."""
    import torch

    return config.gradient_checkpointing if config.gradient_checkpointing is not None else not torch.cuda.is_available()


def validation_samples(config: TrainConfig) -> int:
    """--val-samples, resolved: unset means 500 on a GPU, 64 on a CPU (see TrainConfig)."""
    import torch

    if config.val_samples is not None:
        return config.val_samples
    return 500 if torch.cuda.is_available() else 64


def load_base_model(config: TrainConfig):
    """Unsloth FastModel in bf16 (fp32 where bf16 is unsupported: Gemma 3 overflows in fp16)."""
    import torch
    from unsloth import FastModel, is_bfloat16_supported

    if not torch.cuda.is_available():
        chunked_loss_on_cpu()

    if config.load_in_4bit and not torch.cuda.is_available():
        raise UserError("--load-in-4bit needs a GPU (bitsandbytes); drop the flag to train in 16-bit on CPU")
    if config.padding_free and not torch.cuda.is_available():
        raise UserError("--padding-free needs a GPU (its attention kernels keep the samples of a row apart); "
                        "leave it unset on CPU")
    local = Path(config.model).is_dir()
    dtype = torch.bfloat16 if is_bfloat16_supported() else torch.float32
    try:
        model, tokenizer = FastModel.from_pretrained(
            config.model, max_seq_length=config.max_seq_length, dtype=dtype,
            load_in_4bit=config.load_in_4bit, full_finetuning=False,
            use_gradient_checkpointing="unsloth" if checkpointing(config) else False,
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
        use_gradient_checkpointing="unsloth" if checkpointing(config) else False,
    )


# --------------------------------------------------------------------------------------------
# training loop plumbing: a finite-loss guard, Ctrl-C, one log line per logged step

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


def ctrl_c_callback(on_save):
    from transformers import TrainerCallback

    class StopOnCtrlC(TrainerCallback):
        """The first Ctrl-C finishes the current step, saves a full checkpoint (weights, optimizer,
        scheduler, RNG and trainer state: what --resume needs) and stops; a second stops at once."""

        interrupted_at: int | None = None

        @contextmanager
        def installed(self):
            """Ctrl-C handled this way inside the block; the previous handler restored after it."""
            self.previous = signal.signal(signal.SIGINT, self._request)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, self.previous)

        def _request(self, signum, frame):
            signal.signal(signal.SIGINT, self.previous)  # a second Ctrl-C interrupts at once
            self.interrupted_at = -1
            print("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to stop at once)", flush=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.interrupted_at is not None:
                self.interrupted_at = state.global_step
                control.should_save = control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            on_save()

    return StopOnCtrlC()


def release_memory_callback():
    """On Linux, hand the memory a step freed back to the system after every step. glibc keeps
    freed heap for reuse, so without this the resident size of a CPU run is the high-water mark of
    the longest batch so far (activations scale with the batch's padded length) and only grows.
    None where there is no glibc."""
    import ctypes
    import ctypes.util
    import sys

    from transformers import TrainerCallback

    path = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    libc = ctypes.CDLL(path) if path else None
    if libc is None or not hasattr(libc, "malloc_trim"):
        return None

    class ReleaseMemory(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            libc.malloc_trim(0)

    return ReleaseMemory()


def rss_gib() -> float | None:
    """The process's resident set size in GiB (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError):
        return None


def _memory_gib() -> float | None:
    """Peak GPU memory allocated, or on a CPU the process's resident size, in GiB."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    rss = rss_gib()
    return round(rss, 2) if rss is not None else None


def log_callback(log_path: Path):
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
            from .files import dumps_line

            logs = dict(logs or {})
            now, tokens = time.time(), state.num_input_tokens_seen
            record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                      "elapsed_s": round(now - self.t0, 2), **logs}
            if "loss" in logs and tokens > self.last_tokens and now > self.last_time:
                record["tokens_per_s"] = round((tokens - self.last_tokens) / (now - self.last_time), 1)
                self.last_time, self.last_tokens = now, tokens
            memory = _memory_gib()
            if memory is not None:
                record["memory_gib"] = memory
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(dumps_line(record))
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
            if "memory_gib" in record:
                parts.append(f"{record['memory_gib']:.1f} GiB")
            if len(parts) > 1:
                self.bar.write(" | ".join(parts))

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return LogCallback()


# --------------------------------------------------------------------------------------------

def training_args(config: TrainConfig, output_dir: Path, *, bf16: bool, evaluate: bool):
    """TRL's SFTConfig for this recipe."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.lr,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        optim=config.optim,
        bf16=bf16,
        fp16=False,  # Gemma 3 activations overflow fp16
        seed=config.seed,
        data_seed=config.seed,
        # a short run (--max-steps 2) still logs every step
        logging_steps=min(config.logging_steps, config.max_steps or config.logging_steps),
        logging_first_step=True,
        include_num_input_tokens_seen="non_padding",  # real tokens, for tokens/s
        logging_nan_inf_filter=False,  # never average a NaN away
        eval_strategy="steps" if evaluate else "no",
        eval_steps=config.eval_steps or None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to="none",
        disable_tqdm=True,  # our callback draws the bar and the log lines
        # the data is already tokenized with labels (chat.encode_examples): TRL must not re-template it
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,  # lengths were checked above; truncation would cut the stop token off
        packing=False,
        padding_free=config.padding_free,  # None: Unsloth decides (see TrainConfig)
        remove_unused_columns=False,
        gradient_checkpointing=checkpointing(config),
    )


def build_trainer(config: TrainConfig, train_path: Path, val_path: Path | None, output_dir: Path,
                  callbacks: Iterable = (), supervise_prompt: bool = False, release_memory: bool = True):
    """Model + LoRA + tokenized data + SFTTrainer, exactly as `finetune` trains. `supervise_prompt`
    (loss on the whole text) and `release_memory=False` exist only to benchmark other setups.
    Returns (trainer, model, tokenizer, dtype)."""
    import_unsloth()
    import torch
    from transformers import PrinterCallback
    from trl import SFTTrainer

    from . import chat, data

    # the splits are read (and checked) first: a bad file fails before the model loads
    train_samples = data.read_samples(train_path, prepared=True)
    evaluate = val_path is not None and config.eval_steps > 0
    val_samples = data.read_samples(val_path, validation_samples(config), prepared=True) if evaluate else None
    model, tokenizer, dtype = load_base_model(config)
    chat.ensure_chat_template(tokenizer)
    vocab_size = len(tokenizer)
    train_ds = tokenize_samples(tokenizer, train_samples, config.max_seq_length, train_path)
    check_token_layout(tokenizer, train_samples, train_ds, vocab_size)
    if supervise_prompt:
        train_ds = train_ds.map(lambda row: {"labels": row["input_ids"]})
    val_ds = tokenize_samples(tokenizer, val_samples, config.max_seq_length, val_path) if evaluate else None
    model = add_lora(model, config)
    # Every row is already within max_seq_length (tokenize_samples refuses longer ones). Unsloth's GPU
    # SFTTrainer turns padding-free batching off for pre-tokenized data unless the dataset attests
    # that cap through this attribute; stock TRL (and the CPU backend) ignore it.
    for dataset in (train_ds, val_ds):
        if dataset is not None:
            dataset._unsloth_truncated_to = config.max_seq_length

    args = training_args(config, output_dir, bf16=dtype == torch.bfloat16, evaluate=val_ds is not None)
    callbacks = list(callbacks)
    if release_memory and not torch.cuda.is_available():
        callbacks += [c for c in [release_memory_callback()] if c is not None]
    trainer = make_trainer_class(SFTTrainer)(
        model=model, processing_class=tokenizer, args=args,
        train_dataset=train_ds, eval_dataset=val_ds, callbacks=callbacks,
    )
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"the tokenizer grew from {vocab_size} to {len(tokenizer)} tokens during setup")
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; LogCallback writes readable lines
    return trainer, model, tokenizer, dtype


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "unsloth_zoo"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def new_run_info(config: TrainConfig, data_hashes: dict[str, str], dtype) -> dict[str, Any]:
    import torch

    return {"config": config_dict(config), "data_sha256": data_hashes, "versions": library_versions(),
            "dtype": str(dtype).replace("torch.", ""),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "started": datetime.now().isoformat(timespec="seconds")}


def final_val_loss(trainer, config: TrainConfig) -> float | None:
    if config.eval_steps == 0:
        return None
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if evals and evals[-1]["step"] == trainer.state.global_step:
        return evals[-1]["eval_loss"]
    return trainer.evaluate()["eval_loss"]  # the last step was not an eval step: measure once


def summarize(trainer, logger, run_dir: Path, train_seconds: float, val_loss: float | None) -> dict[str, Any]:
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = trainer.state.num_input_tokens_seen - logger.tokens_at_begin
    return {
        "run_dir": str(run_dir), "steps": trainer.state.global_step,
        "epochs": float(trainer.state.epoch or 0.0), "train_samples": len(trainer.train_dataset),
        "train_seconds": round(train_seconds, 1),
        "train_loss": round(losses[-1], 4) if losses else None,
        "val_loss": round(val_loss, 4) if val_loss is not None else None,
        "step_seconds": round(logger.step_seconds, 1),
        # over this session's steps (a resumed run counts only its own)
        "tokens_per_s": round(tokens / logger.step_seconds, 1) if logger.step_seconds > 0 else 0.0,
    }


def finetune(config: TrainConfig, extra_callbacks: Iterable = (), config_path: str | None = None) -> dict[str, Any]:
    """Train, save and summarise one run; returns the summary (also written to run.json)."""
    from .models import locate

    # Cheap checks first, so a wrong flag fails before the slow imports. The model is located
    # before the run directory is planned, which is named after it: seconds without a hub, except
    # a first use of the PyPI model, which builds it (needed for the run anyway).
    model_path = locate(config.model)
    run_dir = plan_run_dir(config, model_path)
    import_unsloth()  # before anything imports transformers (check_names does), or Unsloth cannot patch it
    check_names(config)
    train_path, val_path = ensure_data(config, config_path, model_path)
    data_hashes = {p.name: sha256_file(p) for p in (train_path, val_path)}
    fingerprint = model_fingerprint(model_path)
    resume_from = check_resume(run_dir, config, data_hashes, model_path, fingerprint) if config.resume else None

    # Everything is checked; from here on a failure puts things back as they were (see runs).
    replacement = Replacement(run_dir)
    if not resume_from:
        replacement.start()
    logger, stopper = log_callback(run_dir / "train_log.jsonl"), ctrl_c_callback(on_save=replacement.keep)
    try:
        trainer, model, tokenizer, dtype = build_trainer(
            replace(config, model=model_path), train_path, val_path, run_dir / "checkpoints",
            callbacks=[logger, stopper, *extra_callbacks])
        if not resume_from:
            write_run(run_dir, {**new_run_info(config, data_hashes, dtype), "model_path": model_path,
                                "model_fingerprint": fingerprint})
        write_text(run_dir / "config.yaml", yaml_dump(config_dict(config)))
        start = time.time()
        with stopper.installed():
            trainer.train(resume_from_checkpoint=resume_from)
    except NonFiniteLoss as exc:
        last = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        replacement.undo()
        where = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written yet"
        raise UserError(f"training stopped: {exc}; {where}. Lower --lr, or check the data "
                        "(the weights were not updated with the bad step)") from None
    except BaseException:
        replacement.undo()  # only if nothing was saved yet (else `keep` already dropped the old run)
        raise
    if stopper.interrupted_at is not None:
        checkpoint = run_dir / "checkpoints" / f"checkpoint-{trainer.state.global_step}"
        print(f"interrupted at step {trainer.state.global_step}: checkpoint saved to {checkpoint}; continue "
              f"with: python finetune.py --resume --run-name {run_dir.name} --output-dir {config.output_dir}")
        raise KeyboardInterrupt
    train_seconds = time.time() - start

    from . import artifacts

    val_loss = final_val_loss(trainer, config)
    artifacts.save_outputs(model, tokenizer, run_dir, config)
    replacement.keep()
    artifacts.plot_losses(run_dir / "train_log.jsonl", run_dir / "loss.png")
    summary = summarize(trainer, logger, run_dir, train_seconds, val_loss)
    write_run(run_dir, {**read_run(run_dir), "summary": summary,
                        "finished": datetime.now().isoformat(timespec="seconds")})
    artifacts.write_model_card(run_dir, replace(config, model=model_path), summary)
    print(f"done: {summary['steps']} steps in {train_seconds:.0f}s ({summary['step_seconds']:.0f}s in optimizer "
          f"steps, {summary['tokens_per_s']:,.0f} tok/s), "
          f"train loss {summary['train_loss']}, "
          + (f"val loss {summary['val_loss']}" if summary["val_loss"] is not None else "no val loss")
          + f" -> {run_dir}")
    return summary


def yaml_dump(values: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)


DESCRIPTION = "LoRA fine-tune Gemma 3 (270M by default) with Unsloth to redact PII."
EPILOG = """examples:
  python finetune.py                                  # prepare data if needed, train, save
  python finetune.py --model /models/gemma-3-270m     # offline: a local model directory
  python finetune.py --max-steps 200 --lr 2e-4 --run-name quick
  python finetune.py --resume --run-name quick --max-steps 400
  python finetune.py --config configs/cpu-smoke.yaml  # settings from a YAML file (flags still win)

A run writes outputs/<run-name>/: adapter/, merged/, config.yaml, run.json, train_log.jsonl,
loss.png, README.md (model card) and checkpoints/ for --resume."""


def main(argv: list[str] | None = None) -> int:
    config, config_path = parse_config(TrainConfig, "train", argv, prog="finetune.py",
                                       description=DESCRIPTION, epilog=EPILOG)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    finetune(config, config_path=config_path)
    return 0
