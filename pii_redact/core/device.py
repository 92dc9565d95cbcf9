"""Whether a CUDA GPU is there: asked of torch once per process (`gpu_available`), and every
CPU-or-GPU choice (the inference device and backend, training's defaults) reads the answer here."""
from __future__ import annotations

import functools


@functools.cache
def gpu_available() -> bool:
    """Whether torch sees a CUDA GPU; the answer cannot change while the process runs, so it is
    cached."""
    import torch

    return torch.cuda.is_available()


def device() -> str:
    """The torch device a model runs on: "cuda" where there is a GPU, else "cpu"."""
    return "cuda" if gpu_available() else "cpu"


def cpu_threads() -> int:
    """The threads a CPU engine computes with (llama.cpp; torch reads the same setting itself):
    OMP_NUM_THREADS where it is a number (a Ray actor's CPUs, a user's cap), else every CPU this
    process may run on (`taskset` respected)."""
    import os

    setting = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
