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
