"""What the recipe needs to know about the machine it runs on: Unsloth first, CPU or GPU
defaults, and how much memory the process holds."""
from __future__ import annotations

import os

from ..config import TrainConfig
from ..core.device import gpu_available


def import_unsloth() -> None:
    """Unsloth patches transformers, TRL and PEFT when it is imported, so it must come first:
    the one place that rule lives (finetune, the benchmark and the tests all call this)."""
    from ..cli import quiet_startup_warnings

    quiet_startup_warnings()  # the scripts do it too; the benchmarks and tests come through here
    import unsloth  # noqa: F401


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
    return config.gradient_checkpointing if config.gradient_checkpointing is not None else not gpu_available()


def validation_samples(config: TrainConfig) -> int:
    """--val-samples, resolved: unset means 500 on a GPU, 64 on a CPU (see TrainConfig)."""
    if config.val_samples is not None:
        return config.val_samples
    return 500 if gpu_available() else 64


def rss_gib() -> float | None:
    """The process's resident set size in GiB (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError):
        return None


def memory_gib() -> float | None:
    """Peak GPU memory allocated, or on a CPU the process's resident size, in GiB."""
    if gpu_available():
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    rss = rss_gib()
    return round(rss, 2) if rss is not None else None


def calibrates(config: TrainConfig) -> bool:
    """--calibrate, resolved: unset means where a GPU trains (see TrainConfig)."""
    return config.calibrate if config.calibrate is not None else gpu_available()
