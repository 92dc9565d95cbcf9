"""The llama.cpp engine behind `Redactor` (`--backend llama.cpp`): a run's GGUF on a CPU.

The same decoding as the transformers engine: the prompt ids of `core.chat` (llama.cpp's own
rendering of the GGUF's chat template gives the same ids), greedy choices through the faithful
constraint and its mask bias (`faithful.Decoder`, on llama.cpp's logits) and the same per-text
budget, so everything after generation is the one code path of `Redactor`. Texts are redacted one
at a time: llama-cpp-python's high-level API runs one sequence. Copy-aware speculation
(`speculative`: the prompt is the draft, verified in one llama.cpp batch, the rejected tail
dropped from its KV cache) is there with `--speculation on`, but off by default: llama.cpp on a
CPU is compute-bound even for one text, so checking k draft tokens costs about k single steps
and the rejected ones are lost (0.61 samples/s plain against 0.42 speculative with q8_0 on 2
cores: BENCHMARKS.md).

llama-cpp-python is built from source where no wheel exists (`pip install -r
requirements-llama.txt`, 4.5 to 11 minutes on 2 cores).
"""
from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

from ..core.errors import UserError
from ..core.run_dir import RunDir

INSTALL = "pip install -r requirements-llama.txt"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


class StaleGGUF(UserError):
    """The run's GGUF was exported from other weights than its merged model holds now."""


def find_gguf(model_dir: Path) -> Path:
    """The GGUF of a run or model directory: gguf/*-q8_0.gguf, else gguf/*-f16.gguf, else a
    .gguf file given directly; only one exported from the merged weights as they are now
    (`finetune.py --resume` rewrites them): if every one is older, a StaleGGUF."""
    from ..models import gguf as export

    if model_dir.suffix == ".gguf" and model_dir.is_file():
        return model_dir
    run = RunDir.holding(model_dir)
    found = [path for kind in ("q8_0", "f16") for path in run.ggufs(kind)]
    if not found:
        raise UserError(f"--backend llama.cpp: no GGUF in {run.gguf_dir}; export one with "
                        f"python -m pii_redact.models gguf {run.path} --type q8_0")
    fresh = next((path for path in found if export.stale_reason(path, run.weights) is None), None)
    if fresh is None:
        raise StaleGGUF(f"the run's GGUF {found[0]} {export.stale_reason(found[0], run.weights)}; export it again: "
                        f"{export.export_command(found[0], run.path)}")
    return fresh


_WARNED: set[str] = set()  # stale GGUFs already warned about in this process


def has_gguf(model_dir: Path) -> bool:
    """Whether the run has a GGUF `find_gguf` runs. Where it has only stale ones, `--backend
    auto` runs transformers instead, saying so once (never a GGUF of other weights)."""
    try:
        find_gguf(model_dir)
    except StaleGGUF as exc:
        if str(exc) not in _WARNED:
            print(f"warning: {exc}; meanwhile the merged model runs on transformers", file=sys.stderr)
            _WARNED.add(str(exc))
        return False
    except UserError:
        return False
    return True


def gguf_for(gguf: str | None, model_dir: Path) -> Path:
    """The GGUF `--backend llama.cpp` runs (`--gguf`, else the run's own), checked before any
    output is made: llama-cpp-python installed, the file there and a GGUF, and a named one of
    the model's vocabulary (and, if it is one of the run's own, exported from its weights as they are now)."""
    if not available():
        raise UserError(f"--backend llama.cpp needs llama-cpp-python: {INSTALL}")
    path = Path(gguf) if gguf else find_gguf(model_dir)
    name = f"--gguf {path}" if gguf else f"the run's GGUF {path}"
    if path.is_dir():
        raise UserError(f"{name} is a directory, not a file")
    if not path.is_file():
        raise UserError(f"{name}: no such file")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{name} is not a GGUF file (--backend transformers runs the merged model instead)")
    if gguf:
        _check_named(path, model_dir, name)
    return path


_CHECKED: set[tuple] = set()  # (GGUF, its size and time, model) whose vocabulary was checked in this process


def _check_named(path: Path, model_dir: Path, name: str) -> None:
    """A GGUF named with --gguf: the model's vocabulary, and one in the run's own gguf/ folder
    exported from its merged weights as they are now."""
    from ..models import gguf as export
    from ..models.loading import load_tokenizer

    run = RunDir.holding(model_dir)
    if run.gguf_dir.is_dir() and path.resolve().parent == run.gguf_dir.resolve():
        reason = export.stale_reason(path, run.weights)
        if reason is not None:
            raise StaleGGUF(f"{name} {reason}; export it again: {export.export_command(path, run.path)}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(model_dir.resolve()))
    if key not in _CHECKED:
        export.check_vocabulary(path, load_tokenizer(model_dir), name)
        _CHECKED.add(key)


_log_callback = None  # kept referenced: llama.cpp calls it for as long as the library is loaded


def _quiet_llama_cpp() -> None:
    """Pass on llama.cpp's errors only. Its warnings (the KV cache layout it chose...) are not for
    a user of redact.py, and llama-cpp-python 0.3.36 prints them even with verbose=False: its
    level table predates ggml's (NONE, DEBUG, INFO, WARN, ERROR, CONT), so it takes WARN for ERROR."""
    global _log_callback
    if _log_callback is not None:
        return
    import ctypes

    import llama_cpp

    error, cont = 4, 5
    last = [0]

    @llama_cpp.llama_log_callback
    def errors_only(level: int, text: bytes, user_data) -> None:
        if level == error or (level == cont and last[0] == error):
            sys.stderr.write(text.decode("utf-8", "replace"))
        if level != cont:
            last[0] = level

    _log_callback = errors_only
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


class Engine:
    """A GGUF loaded in llama.cpp, fed tokens and asked for the logits of each one fed."""

    def __init__(self, path: Path, n_ctx: int = 4096):
        from llama_cpp import Llama

        _quiet_llama_cpp()
        self.path = path
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=threads, verbose=False)
        except ValueError as e:  # llama-cpp-python's one error for a file llama.cpp cannot load
            raise UserError(f"GGUF {path}: llama.cpp cannot load it (a damaged file, or a model this "
                            f"llama.cpp does not know; --backend transformers runs the merged model instead)") from e
        self.n_vocab = self.llm.n_vocab()
        # freed now rather than by Llama.__del__ at interpreter exit, where llama-cpp-python's
        # teardown finds its library already gone and prints an ignored TypeError
        atexit.register(self.llm.close)

    def reset(self) -> None:
        self.llm.reset()

    @property
    def position(self) -> int:
        return self.llm.n_tokens

    def rewind(self, position: int) -> None:
        """Forget what was fed after `position` (the next feed drops it from the KV cache)."""
        self.llm.n_tokens = position

    def feed(self, tokens: Sequence[int], every: bool = True):
        """Logits (torch) after each of `tokens`, or with every=False after the last one only: a
        prompt's other rows would be 262,144 wide and unused, and the output layer computing them
        costs more than the rest of the model."""
        import numpy as np
        import torch

        llm, rows = self.llm, []
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        for start in range(0, len(tokens), llm.n_batch):
            batch = list(tokens[start:start + llm.n_batch])
            llm._batch.set_batch(batch=batch, n_past=llm.n_tokens, logits_all=every)
            llm._ctx.decode(llm._batch)
            if every or start + len(batch) == len(tokens):
                n = len(batch) if every else 1
                rows.append(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n, self.n_vocab)).copy())
            llm.n_tokens += len(batch)
        return torch.from_numpy(np.concatenate(rows))


def generate(engine: Engine, tokenizer, prompts: Sequence[str], sources: Sequence[str], max_new_tokens: int = 0,
             decoding: str = "faithful", speculation: str = "auto", stats: dict | None = None,
             mask_bias: float = 0.0, placeholder_bounds: str = "words") -> Iterator[tuple[int, str, str]]:
    """Yield (index, prediction, finish_reason) for each prompt, as `generate.generate_transformers`
    does; speculation "auto" is off (see the module's docstring)."""
    from ..core import chat
    from ..core.constraint import Vocabulary
    from . import faithful
    from .generate import decoded, token_budget
    from .speculative import Row, accept, greedy, propose, verify

    stops = chat.stop_token_ids(tokenizer)
    vocab = Vocabulary(tokenizer) if decoding == "faithful" else None
    encoded = chat.encode_prompts(tokenizer, prompts)
    for i, (ids, source) in enumerate(zip(encoded, sources)):
        budget = token_budget(source, max_new_tokens, engine.llm.n_ctx() - len(ids) - 1)
        decoder = faithful.Decoder(vocab, [source.strip()], stops, mask_bias,
                                   faithful.bounds(placeholder_bounds)) if vocab else None
        row = Row(0, ids, budget)
        engine.reset()
        accept(row, [greedy(engine.feed(ids, every=False)[-1], row, decoder)], set(stops), decoder)
        passes = 1
        while not row.done:
            draft = propose(row) if speculation == "on" else []
            start = engine.position
            taken = verify(row, draft, engine.feed([row.tokens[-1], *draft]), decoder, set(stops))
            engine.rewind(start + taken)  # the draft tokens after the first rejected one never happened
            passes += 1
        if stats is not None:
            stats["forward_passes"] = stats.get("forward_passes", 0) + passes
            stats["tokens"] = stats.get("tokens", 0) + len(row.tokens)
            if decoder is not None:
                stats["constraint_s"] = stats.get("constraint_s", 0.0) + decoder.seconds
        text, reason = decoded(tokenizer, decoder, 0, row.tokens, source, stops, budget)
        yield i, text, reason
