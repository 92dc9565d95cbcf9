"""Settings of the three scripts, one typed dataclass each. Defaults live here; `configs/default.yaml`
overrides them per section (`data:`, `train:`, `evaluate:`) and flags override both."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .cli import option

DEFAULT_MODEL = "unsloth/gemma-3-270m-it"


@dataclass
class DataConfig:
    input: list[str] = option(["pii_redaction_train.json"], "prompt/response JSON or JSONL file(s), or raw ai4privacy rows")
    output_dir: str = option("data", "where train/val/test .jsonl and report.json are written")
    model: str = option(DEFAULT_MODEL, "model id or local directory whose tokenizer and chat template measure lengths")
    max_seq_length: int = option(1024, "samples longer than this many tokens (prompt + response) are dropped, never truncated")
    val_fraction: float = option(0.05, "fraction of templates (masked texts) held out for validation")
    test_fraction: float = option(0.05, "fraction of templates (masked texts) held out for testing")
    seed: int = option(3407, "seed of the split assignment")
    on_error: Literal["fail", "drop"] = option("fail", "invalid records: stop with an error, or drop and count them in report.json")


@dataclass
class TrainConfig:
    model: str = option(DEFAULT_MODEL, "base model id or local directory (offline: a local directory)")
    data_dir: str = option("data", "directory with train.jsonl / val.jsonl (prepared first if missing)")
    output_dir: str = option("outputs", "runs are written to OUTPUT_DIR/RUN_NAME")
    run_name: Optional[str] = option(None, "run directory name (default: <model>-<timestamp>)")
    max_seq_length: int = option(1024, "longest sample in tokens; matches prepare_data's limit")
    load_in_4bit: bool = option(False, "QLoRA: 4-bit base weights (GPU only; pointless for a 270M model)")
    lora_r: int = option(128, "LoRA rank (Unsloth's Gemma 3 270M notebook uses 128: the model is tiny)")
    lora_alpha: int = option(128, "LoRA alpha; alpha == r keeps the update scale at 1")
    lora_dropout: float = option(0.0, "LoRA dropout; 0 lets Unsloth use its fast path")
    epochs: float = option(1.0, "passes over the training split (ignored when --max-steps > 0)")
    max_steps: int = option(-1, "stop after this many optimizer steps (-1: run --epochs)")
    batch_size: int = option(16, "samples per device batch")
    grad_accum: int = option(1, "gradient accumulation steps")
    lr: float = option(1e-4, "peak learning rate")
    lr_scheduler: str = option("cosine", "learning-rate schedule (any transformers scheduler name)")
    warmup_steps: float = option(0.03, "linear learning-rate warmup: a fraction of all steps if < 1, else a number of steps")
    weight_decay: float = option(0.01, "AdamW weight decay")
    optim: str = option("adamw_torch", "optimizer (adamw_8bit needs bitsandbytes and a GPU)")
    packing: bool = option(False, "padding-free packing of several samples per row (GPU; faster, same loss)")
    gradient_checkpointing: bool = option(False, "trade compute for memory; a 270M model rarely needs it")
    eval_steps: int = option(200, "evaluate validation loss every N steps (0: only at the end)")
    val_samples: int = option(500, "cap on validation samples used for the loss (0: all)")
    save_steps: int = option(200, "checkpoint every N steps (what --resume continues from)")
    save_total_limit: int = option(2, "checkpoints kept on disk")
    logging_steps: int = option(10, "log a line every N steps")
    seed: int = option(3407, "seed for LoRA init and data order")
    gguf: Optional[Literal["f16", "q8_0"]] = option(None, "also export a GGUF for llama.cpp / Docker Model Runner")
    resume: bool = option(False, "continue the run in OUTPUT_DIR/RUN_NAME from its last checkpoint")
    overwrite: bool = option(False, "replace an existing run directory")


@dataclass
class EvalConfig:
    model_dir: Optional[str] = option(None, "trained model (a finetune.py run directory or merged model); default: newest run in outputs/")
    runs_dir: str = option("outputs", "where to look for the newest run")
    data: str = option("data/test.jsonl", "held-out samples (prepare_data.py output, or prompt/response JSON/JSONL)")
    limit: int = option(0, "evaluate only the first N samples (0: all)")
    batch_size: int = option(32, "generation batch size")
    max_new_tokens: int = option(0, "generation budget per sample (0: derived from the input length)")
    output_dir: Optional[str] = option(None, "where predictions and the report go (default: <model-dir>/eval)")
    predictions: Optional[str] = option(None, "score an existing predictions JSONL; no model is loaded")
    baseline: Optional[Literal["identity", "regex"]] = option(None, "score a baseline instead of a model")
    backend: Literal["auto", "transformers", "vllm"] = option("auto", "generation engine (auto: vLLM if installed and a GPU is present)")
    fail_under: list[str] = option([], "METRIC=VALUE: exit non-zero if the metric is below VALUE (e.g. entity.f1=0.9)")
    worst: int = option(10, "worst examples shown in report.md")
