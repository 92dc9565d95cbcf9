"""The model to fine-tune: Gemma 3 through Unsloth's FastModel, in bf16 where the hardware has it
(fp32 elsewhere: Gemma 3 overflows fp16), with LoRA on all seven projections."""
from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..core.errors import UserError
from ..models.loading import load_error
from .device import checkpointing, chunked_loss_on_cpu

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def check_names(config: TrainConfig) -> None:
    """Scheduler and optimizer names, checked before anything slow happens."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    for value, enum, name in ((config.lr_scheduler, SchedulerType, "--lr-scheduler"), (config.optim, OptimizerNames, "--optim")):
        if value not in {e.value for e in enum}:
            raise UserError(f"{name} {value!r} is not one of: {', '.join(e.value for e in enum)}")


def load_base_model(config: TrainConfig):
    """Unsloth FastModel in bf16 (fp32 where bf16 is unsupported: Gemma 3 overflows in fp16)."""
    import torch
    from unsloth import FastModel, is_bfloat16_supported

    from ..core.device import gpu_available

    if not gpu_available():
        chunked_loss_on_cpu()

    if config.load_in_4bit and not gpu_available():
        raise UserError("--load-in-4bit needs a GPU (bitsandbytes); drop the flag to train in 16-bit on CPU")
    if config.padding_free and not gpu_available():
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
        raise load_error("the model", config.model, exc) from None
    return model, tokenizer, dtype


def add_lora(model, config: TrainConfig):
    from unsloth import FastModel

    return FastModel.get_peft_model(
        model, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=ALL_PROJECTIONS, bias="none", random_state=config.seed,
        use_gradient_checkpointing="unsloth" if checkpointing(config) else False,
    )
