"""One `Redactor` for every caller: evaluate.py, redact.py and the benchmarks.

A Redactor holds a trained model, loaded once, and turns texts into redactions: greedy decoding
through the same chat rendering as training (`core.chat`), with the decoding (faithful or free),
speculation, backend and token budget its `Settings` name, then what comes after generation
(`finish`: the safety net and propagation), one code path for a fresh redaction and for a
rescored file. It yields
each result as it is made (longest texts first, so a progress bar's ETA is honest) and keeps its
own statistics, so callers and benchmarks time it from outside without patching it.

    redactor = Redactor(model_dir, Settings(batch_size=16))
    for r in redactor.redact(["Call Anna on +49 30 1234567."]):
        print(r.text, r.finished)
    print(redactor.stats.samples_per_s)

The tokenizer loads at once, the model on first use: a caller can check and cut its input with
`redactor.tokenizer` before paying for the model.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

from ..core import chat
from ..core.errors import UserError


@dataclass(frozen=True)
class Settings:
    """How a Redactor decodes; the fields of the same names in EvalConfig and RedactConfig."""

    decoding: Literal["faithful", "free"] = "faithful"
    speculation: Literal["auto", "on", "off"] = "auto"
    backend: Literal["auto", "transformers", "vllm", "llama.cpp"] = "auto"
    gguf: str | None = None  # llama.cpp: the GGUF file (default: the run's, `llamacpp.find_gguf`)
    batch_size: int = 16
    max_new_tokens: int = 0  # 0: each text's own bound (`generate.token_budget`)
    mask_bias: float = 0.0   # the privacy dial: log-odds masking gains over copying (faithful decoding)
    placeholder_bounds: Literal["words", "label"] = "words"  # what one placeholder may cover (`core.constraint`)
    safety_net: bool = True
    propagate: bool = True   # mask every other occurrence of what was masked (`propagate`)

    @classmethod
    def of(cls, config: Any) -> Settings:
        """The settings a script's config names (fields it lacks keep their defaults)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)})


@dataclass
class Redaction:
    index: int        # position in the texts given to `redact`
    text: str         # the redaction: the model's, after `finish`
    model_text: str   # what the model wrote
    finished: bool    # False: the token budget ran out (the rest is masked: see `faithful`)


@dataclass
class Stats:
    """What this Redactor has done: the backend it used, how many texts, how long loading and
    generating took (the caller's time between results excluded), forward passes, tokens, and
    the time spent in the faithful constraint."""

    backend: str | None = None
    samples: int = 0
    load_s: float = 0.0
    generate_s: float = 0.0
    forward_passes: int = 0
    tokens: int = 0
    constraint_s: float = 0.0

    @property
    def samples_per_s(self) -> float | None:
        return round(self.samples / self.generate_s, 3) if self.generate_s > 0 else None


@dataclass
class Finished:
    text: str
    net_added: int = 0          # entities the safety net added
    propagation_added: int = 0  # entities propagation added


def finish(source: str, model_text: str, settings: Settings, finished: bool = True) -> Finished:
    """Everything that happens to a model's output after generation, the same for a fresh
    redaction and a rescored file: the safety net, then propagation and one numbering. A
    free-decoding output cut off by its budget ends with UNFINISHED (the rest of its text is not
    there); a faithful one already masks its rest that way."""
    from ..core.labels import UNFINISHED

    text, net, propagated = model_text, 0, 0
    if not finished and UNFINISHED not in text:
        text += UNFINISHED
    if settings.safety_net:
        from .safety_net import safety_net

        text, net = safety_net(source, text)
    from .propagate import consistent

    # one numbering per text even without propagation: the model's own numbers may reuse one
    # that a placeholder written in the source already has, or name two values alike
    [text], propagated = consistent([(source, text)], propagate=settings.propagate)
    return Finished(text, net, propagated)


def choose_backend(backend: str, decoding: str, model_dir: Path, gguf: str | None = None) -> str:
    """The engine `backend` names; "auto", by what BENCHMARKS.md measured: llama.cpp where `--gguf`
    names a file; vLLM where it runs and decoding is free (it cannot apply the faithful
    constraint); llama.cpp on a machine without a GPU where llama-cpp-python is installed and the
    run has a GGUF (with q8_0, 1.7x the samples/s of transformers at batch 16 and 4.7x a single
    text's, the same scores on the hand-written texts); else transformers. `--backend vllm`
    where vLLM cannot run is a UserError here, before any output exists."""
    from . import generate

    if backend == "vllm" and (missing := generate.vllm_missing()):
        raise UserError(f"--backend vllm: {missing}; or use --backend auto or transformers")
    if backend != "auto":
        return backend
    import torch

    from . import llamacpp

    if gguf:  # a GGUF named with --gguf is run wherever it is asked for
        return "llama.cpp"
    if decoding == "free" and generate.vllm_usable():
        return "vllm"
    if not torch.cuda.is_available() and llamacpp.available() and llamacpp.has_gguf(model_dir):
        return "llama.cpp"
    return "transformers"


class Redactor:
    def __init__(self, model_dir: str | Path, settings: Settings = Settings()):
        from ..models.loading import load_tokenizer

        self.model_dir = Path(model_dir)
        self.settings = settings
        self.tokenizer = load_tokenizer(self.model_dir)
        self.stats = Stats()
        self._engines: dict[str, Any] = {}  # backend (and GGUF) -> its loaded engine, shared by `configured` copies

    def configured(self, **changes: Any) -> Redactor:
        """A Redactor with other settings over the same loaded model (and fresh statistics)."""
        other = object.__new__(Redactor)
        other.model_dir, other.tokenizer, other._engines = self.model_dir, self.tokenizer, self._engines
        other.settings, other.stats = replace(self.settings, **changes), Stats()
        return other

    @property
    def backend(self) -> str:
        """The engine `redact` uses (`choose_backend`)."""
        s = self.settings
        return choose_backend(s.backend, s.decoding, self.model_dir, s.gguf)

    def redact(self, sources: Sequence[str], prompts: Sequence[str] | None = None) -> Iterator[Redaction]:
        """A Redaction per text, in the order they are made. `prompts`: the whole user turn of
        each (a data set's own instruction), else `chat.build_prompt(source)`. A vLLM failure, at
        start or mid-way, hands the texts not done yet to transformers (unless --backend vllm)."""
        prompts = list(prompts) if prompts is not None else [chat.build_prompt(s) for s in sources]
        done: set[int] = set()
        backend = self.backend
        try:
            for result in self._redact_with(backend, sources, prompts, range(len(sources))):
                done.add(result.index)
                yield result
        except Exception as exc:  # vLLM pins its own transformers/torch: a mismatch must not end the run
            if backend != "vllm":
                raise
            if self.settings.backend == "vllm":
                raise UserError(f"--backend vllm: vLLM failed ({type(exc).__name__}: {exc})") from None
            print(f"warning: vLLM failed ({type(exc).__name__}: {exc}); the rest with transformers", file=sys.stderr)
            rest = [i for i in range(len(sources)) if i not in done]
            yield from self._redact_with("transformers", sources, prompts, rest)

    def _engine(self, backend: str):
        """The backend's loaded engine and tokenizer, loaded once (per GGUF for llama.cpp)."""
        from ..models import loading
        from . import llamacpp

        gguf = None
        if backend == "llama.cpp":
            gguf = llamacpp.gguf_for(self.settings.gguf, self.model_dir)
        key = (backend, gguf)
        if key not in self._engines:
            start = time.perf_counter()
            if backend == "llama.cpp":
                self._engines[key] = llamacpp.Engine(gguf), self.tokenizer
            else:
                load = loading.load_vllm if backend == "vllm" else loading.load_for_generation
                self._engines[key] = load(self.model_dir)
            self.stats.load_s += time.perf_counter() - start
        return self._engines[key]

    def _redact_with(self, backend: str, sources: Sequence[str], prompts: Sequence[str],
                     indices: Sequence[int]) -> Iterator[Redaction]:
        from . import generate

        if not indices:
            return
        self.stats.backend = backend
        engine, tokenizer = self._engine(backend)
        texts, their_prompts = [sources[i] for i in indices], [prompts[i] for i in indices]
        settings, counters = self.settings, {}
        if backend == "vllm":
            stream = generate.generate_vllm(engine, tokenizer, their_prompts, texts, settings.max_new_tokens)
        elif backend == "llama.cpp":
            from . import llamacpp

            stream = llamacpp.generate(engine, tokenizer, their_prompts, texts, settings.max_new_tokens,
                                       settings.decoding, settings.speculation, counters, settings.mask_bias,
                                       settings.placeholder_bounds)
        else:
            stream = generate.generate_transformers(engine, tokenizer, their_prompts, texts, settings.batch_size,
                                                    settings.max_new_tokens, settings.decoding,
                                                    settings.speculation, counters, settings.mask_bias,
                                                    settings.placeholder_bounds)
        clock = time.perf_counter()
        for j, model_text, reason in stream:
            final = finish(texts[j], model_text, settings, reason != "length")
            self._count(counters, time.perf_counter() - clock)
            yield Redaction(indices[j], final.text, model_text, reason != "length")
            clock = time.perf_counter()  # the caller's time with the result is not generation time

    def _count(self, counters: dict, seconds: float) -> None:
        stats = self.stats
        stats.samples += 1
        stats.generate_s += seconds
        for key in ("forward_passes", "tokens", "constraint_s"):
            setattr(stats, key, counters.pop(key, 0) + getattr(stats, key))
