"""One `Redactor` for every caller: evaluate.py, redact.py and the benchmarks.

A Redactor holds a trained model, loaded once, and turns texts into finished redactions: greedy
decoding through the same chat rendering as training (`core.chat`), with the decoding (faithful
or free), speculation, backend and token budget its `Settings` name, then what comes after
generation (`finish`: the safety net, propagation and one numbering), once per text, or once per
document for a text cut into pieces (`redact_documents`). It yields each result as it is made
(longest texts first, so a progress bar's ETA is honest) and keeps its own statistics, so callers
and benchmarks time it from outside without patching it.

    redactor = Redactor("outputs/my-run", Settings(batch_size=16))
    for r in redactor.redact(["Call Anna on +49 30 1234567."]):
        print(r.text, r.finished)
    print(redactor.stats.samples_per_s)

What the settings leave open is decided once, when the Redactor is built, by `resolve`: the
trained model and its run (`models.loading.trained_model`), the device (`core.device`), the backend
(`choose_backend`), the GGUF llama.cpp runs, the batch size, the mask bias (the run's calibrated
one unless given) and the context the model was trained with; the result, a frozen `Resolved`,
is what callers record as provenance. Each text's token budget comes from
`generate.token_budget`.

The tokenizer loads at once, the model on first use: a caller can check and cut its input with
`redactor.fits` before paying for the model.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence, TypeVar

from ..config import GENERATION_BATCH_SIZE
from ..core import chat
from ..core.errors import UserError
from ..core.run_dir import RunDir

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """How a Redactor decodes; the fields of the same names in EvalConfig and RedactConfig."""

    decoding: Literal["faithful", "free"] = "faithful"
    speculation: Literal["auto", "on", "off"] = "auto"
    backend: Literal["auto", "transformers", "vllm", "llama.cpp"] = "auto"
    gguf: str | None = None  # llama.cpp: the GGUF file (default: the run's, `llamacpp.find_gguf`)
    batch_size: int = GENERATION_BATCH_SIZE
    max_new_tokens: int = 0  # 0: each text's own bound (`generate.token_budget`)
    mask_bias: float | None = 0.0  # the privacy dial (faithful decoding); None: the run's calibrated one
    placeholder_bounds: Literal["words", "label"] = "words"  # what one placeholder may cover (`core.constraint`)
    safety_net: bool = True
    propagate: bool = True   # mask every other occurrence of what was masked (`propagate`)
    restricted_head: bool = True  # faithful: the allowed tokens' logits only (`faithful.RestrictedHead`, `llamacpp_head`)

    @classmethod
    def of(cls, config: Any) -> Settings:
        """The settings a script's config names (fields it lacks keep their defaults)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)})


@dataclass(frozen=True)
class Resolved:
    """Everything a Redactor's settings leave open, decided once (`resolve`)."""

    settings: Settings  # as given
    model_dir: Path     # the model weights
    run: RunDir         # the run they belong to (the model directory itself for a bare model)
    device: str         # "cuda" or "cpu": where transformers runs the model
    backend: str        # "transformers", "vllm" or "llama.cpp"
    gguf: Path | None   # the GGUF llama.cpp runs (None on another backend)
    batch_size: int     # texts generated together (1: one at a time)
    mask_bias: float    # --mask-bias, else the run's calibrated value, else 0
    context: int        # tokens the model was trained with: the most a prompt and its redaction may take


def resolve(settings: Settings, model_dir: str | Path | None, runs_dir: str | Path = "outputs") -> Resolved:
    """Decide, before any model loads, what `settings` leave open for the model `model_dir`
    names (a run, its merged/ or adapter/ folder, a model directory; None: the newest run in
    `runs_dir`). A backend that cannot run, or a missing or broken GGUF, is a UserError here,
    before any input is read or any output made."""
    from ..models.loading import trained_model

    weights, run = trained_model(None if model_dir is None else str(model_dir), str(runs_dir))
    return _decided(settings, weights, run)


# The settings the engine is chosen from (`choose_backend`, the GGUF, the batch size). Settings that
# differ from decided ones in none of these keep that decision's device, engine, batch and context.
ENGINE_SETTINGS = ("backend", "decoding", "gguf", "batch_size")


def _decided(settings: Settings, model_dir: Path, run: RunDir, before: Resolved | None = None) -> Resolved:
    """What `settings` leave open for `model_dir` of `run`. `before`: a decision for settings of
    the same engine (`ENGINE_SETTINGS`), whose engine is kept rather than chosen, checked and read
    from the run again; only the mask bias follows the new settings (a calibration's sweep)."""
    from ..core import device
    from .llamacpp import gguf_for

    mask_bias = run.mask_bias(settings.mask_bias)
    if before is not None and all(getattr(settings, name) == getattr(before.settings, name) for name in ENGINE_SETTINGS):
        return replace(before, settings=settings, mask_bias=mask_bias)
    backend = choose_backend(settings.backend, settings.decoding, model_dir, settings.gguf)
    return Resolved(settings, model_dir, run, device.device(), backend,
                    gguf_for(settings.gguf, model_dir) if backend == "llama.cpp" else None,
                    settings.batch_size,
                    mask_bias, run.trained_config().max_seq_length)


def choose_backend(backend: str, decoding: str, model_dir: Path, gguf: str | None = None) -> str:
    """The engine `backend` names; "auto", by what BENCHMARKS.md measured: llama.cpp where `--gguf`
    names a file; vLLM where it runs and decoding is free (it cannot apply the faithful
    constraint); llama.cpp on a machine without a GPU where llama-cpp-python is installed and the
    run has a GGUF (q8_0 at 32 texts per step with the restricted head: 5.3x the samples/s of
    transformers at batch 16 with its whole output layer on the longest test texts, 4.3x on the
    hand-written ones, where the restricted head makes transformers 1.9x and 1.6x with identical
    outputs; q8_0's differ on 18 of the 32 and 38 of the 300, both ways); else transformers. `--backend vllm`
    where vLLM cannot run is a UserError here, before any output exists."""
    from ..core.device import gpu_available
    from . import generate, llamacpp

    if backend == "vllm" and (missing := generate.vllm_missing()):
        raise UserError(f"--backend vllm: {missing}; or use --backend auto or transformers")
    if backend != "auto":
        return backend
    if gguf:  # a GGUF named with --gguf is run wherever it is asked for
        return "llama.cpp"
    if decoding == "free" and generate.vllm_usable():
        return "vllm"
    if not gpu_available() and llamacpp.available() and llamacpp.has_gguf(model_dir):
        return "llama.cpp"
    return "transformers"


@dataclass
class Redaction:
    index: int        # position in the texts given to `redact`
    text: str         # the redaction: the model's, after `finish`
    model_text: str   # what the model wrote
    finished: bool    # False: the token budget ran out (the rest is masked: see `faithful`)
    net_added: int = 0          # entities the safety net added
    propagation_added: int = 0  # entities propagation added

    @property
    def finish_reason(self) -> str:
        return "stop" if self.finished else "length"


@dataclass
class Document:
    """A text redacted in pieces (`redact_documents`), finished as one."""

    index: int              # position in the documents given to `redact_documents`
    texts: list[str]        # each piece's redaction
    segments: list          # each piece's `propagate.Segment`s (what each placeholder covers), or None
    finished: list[bool]    # per piece, as `Redaction.finished`


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
    texts: list[str]            # each piece's redaction
    segments: list              # each piece's segments (`propagate.consistent_segments`), or None
    net_added: int = 0          # entities the safety net added
    propagation_added: int = 0  # entities propagation added

    @property
    def text(self) -> str:
        return "".join(self.texts)


def finish(source: str, model_text: str, settings: Settings, finished: bool = True) -> Finished:
    """`finish_document` of a text in one piece."""
    return finish_document([source], [model_text], settings, [finished])


def finish_document(pieces: Sequence[str], model_texts: Sequence[str], settings: Settings,
                    finished: Sequence[bool]) -> Finished:
    """Everything that happens to a model's output after generation, the same for a fresh
    redaction and a rescored file: the safety net on each piece, then propagation and one
    numbering through all the pieces of the document. A free-decoding output cut off by its
    budget ends with UNFINISHED (the rest of its text is not there); a faithful one already masks
    its rest that way."""
    from ..core.labels import UNFINISHED
    from .propagate import consistent_segments, render
    from .safety_net import safety_net

    texts, net = [], 0
    for source, text, complete in zip(pieces, model_texts, finished):
        if not complete and UNFINISHED not in text:
            text += UNFINISHED
        if settings.safety_net:
            text, added = safety_net(source, text)
            net += added
        texts.append(text)
    # one numbering even without propagation: the model's own numbers may reuse one that a
    # placeholder written in the source already has, or name two values alike
    segments, propagated = consistent_segments(list(zip(pieces, texts)), propagate=settings.propagate)
    texts = [text if segs is None else render(segs) for text, segs in zip(texts, segments)]
    return Finished(texts, segments, net, propagated)


class Redactor:
    def __init__(self, model_dir: str | Path | None = None, settings: Settings = Settings(), *,
                 runs_dir: str | Path = "outputs", resolved: Resolved | None = None):
        """The Redactor of the model `model_dir` names (see `resolve`), or of what a caller
        already `resolve`d."""
        from ..models.loading import load_tokenizer

        self.resolved = resolved or resolve(settings, model_dir, runs_dir)
        self.tokenizer = load_tokenizer(self.resolved.model_dir)
        self.stats = Stats()
        self._engines: dict[tuple, Any] = {}  # backend (and GGUF) -> its loaded engine, shared by `configured` copies

    @property
    def settings(self) -> Settings:
        return self.resolved.settings

    @property
    def model_dir(self) -> Path:
        return self.resolved.model_dir

    @property
    def backend(self) -> str:
        return self.resolved.backend

    def configured(self, **changes: Any) -> Redactor:
        """A Redactor with other settings over the same loaded model (and fresh statistics). What
        they leave open is decided again only where they name another engine (`_decided`)."""
        other = object.__new__(Redactor)
        other.tokenizer, other._engines, other.stats = self.tokenizer, self._engines, Stats()
        other.resolved = _decided(replace(self.settings, **changes), self.model_dir, self.resolved.run, self.resolved)
        return other

    def fits(self, text: str) -> bool:
        """Whether `text`'s prompt and redaction fit in the context the model was trained with."""
        from .generate import context_needed

        return context_needed(self.tokenizer, text) <= self.resolved.context

    def redact(self, sources: Sequence[str], prompts: Sequence[str] | None = None) -> Iterator[Redaction]:
        """A finished Redaction per text, in the order they are made. `prompts`: the whole user
        turn of each (a data set's own instruction), else `chat.build_prompt(source)`."""
        def finished(index: int, model_text: str, complete: bool) -> Redaction:
            final = finish(sources[index], model_text, self.settings, complete)
            return Redaction(index, final.text, model_text, complete, final.net_added, final.propagation_added)

        for _, redaction in self._generate(sources, prompts, finished):
            yield redaction

    def redact_documents(self, documents: Sequence[Sequence[str]],
                         on_piece: Callable[[], None] | None = None) -> Iterator[Document]:
        """A Document per document (a text cut into pieces that each fit the model), yielded
        once its last piece is made and finished with its other pieces (`finish_document`). The
        pieces of all documents are generated together; `on_piece` is called after each. A piece
        of nothing but whitespace has nothing to mask: it is not generated."""
        outputs = [[(piece, True) if not piece.strip() else None for piece in pieces] for pieces in documents]
        jobs = [(d, k) for d, pieces in enumerate(outputs) for k, output in enumerate(pieces) if output is None]
        left = [sum(output is None for output in pieces) for pieces in outputs]

        def document(d: int) -> Document:
            complete = [done for _, done in outputs[d]]
            final = finish_document(documents[d], [text for text, _ in outputs[d]], self.settings, complete)
            return Document(d, final.texts, final.segments, complete)

        def collected(index: int, model_text: str, complete: bool) -> Document | None:
            d, k = jobs[index]
            outputs[d][k], left[d] = (model_text, complete), left[d] - 1
            if on_piece is not None:
                on_piece()
            return document(d) if not left[d] else None

        yield from (document(d) for d in range(len(documents)) if not left[d])
        for _, done in self._generate([documents[d][k] for d, k in jobs], None, collected):
            if done is not None:
                yield done

    def _generate(self, sources: Sequence[str], prompts: Sequence[str] | None,
                  then: Callable[[int, str, bool], T]) -> Iterator[tuple[int, T]]:
        """(index, `then(index, model text, finished)`) per text, in the order they are made. A
        vLLM failure, at start or mid-way, hands the texts not done yet to transformers (unless
        --backend vllm)."""
        prompts = list(prompts) if prompts is not None else [chat.build_prompt(s) for s in sources]
        done: set[int] = set()
        try:
            for index, result in self._generate_with(self.backend, sources, prompts, range(len(sources)), then):
                done.add(index)
                yield index, result
        except Exception as exc:  # vLLM pins its own transformers/torch: a mismatch must not end the run
            if self.backend != "vllm":
                raise
            if self.settings.backend == "vllm":
                raise UserError(f"--backend vllm: vLLM failed ({type(exc).__name__}: {exc})") from None
            print(f"warning: vLLM failed ({type(exc).__name__}: {exc}); the rest with transformers", file=sys.stderr)
            rest = [i for i in range(len(sources)) if i not in done]
            yield from self._generate_with("transformers", sources, prompts, rest, then)

    def _engine(self, backend: str):
        """The backend's loaded engine and tokenizer, loaded once (per GGUF for llama.cpp)."""
        from ..models import loading
        from . import llamacpp

        gguf = self.resolved.gguf if backend == "llama.cpp" else None
        key = (backend, gguf)
        if key not in self._engines:
            start = time.perf_counter()
            if backend == "llama.cpp":
                self._engines[key] = llamacpp.Engine(gguf), self.tokenizer
            elif backend == "vllm":
                self._engines[key] = loading.load_vllm(self.model_dir)
            else:
                self._engines[key] = loading.load_for_generation(self.model_dir, self.resolved.device)
            self.stats.load_s += time.perf_counter() - start
        return self._engines[key]

    def _generate_with(self, backend: str, sources: Sequence[str], prompts: Sequence[str],
                       indices: Sequence[int], then: Callable[[int, str, bool], T]) -> Iterator[tuple[int, T]]:
        if not indices:
            return
        self.stats.backend = backend
        counters: dict = {}
        stream = self._stream(backend, [sources[i] for i in indices], [prompts[i] for i in indices], counters)
        clock = time.perf_counter()
        for j, model_text, reason in stream:
            result = then(indices[j], model_text, reason != "length")
            self._count(counters, time.perf_counter() - clock)
            yield indices[j], result
            clock = time.perf_counter()  # the caller's time with the result is not generation time

    def _stream(self, backend: str, texts: list[str], prompts: list[str],
                counters: dict) -> Iterator[tuple[int, str, str]]:
        """The backend's (index, model text, finish reason) per text."""
        from . import generate, llamacpp

        engine, tokenizer = self._engine(backend)
        s, r = self.settings, self.resolved
        if backend == "vllm":
            return generate.generate_vllm(engine, tokenizer, prompts, texts, s.max_new_tokens)
        if backend == "llama.cpp":
            return llamacpp.generate(engine, tokenizer, prompts, texts, s.max_new_tokens, s.decoding, s.speculation,
                                     counters, r.mask_bias, s.placeholder_bounds, r.batch_size, s.restricted_head)
        return generate.generate_transformers(engine, tokenizer, prompts, texts, r.batch_size, s.max_new_tokens,
                                              s.decoding, s.speculation, counters, r.mask_bias, s.placeholder_bounds,
                                              s.restricted_head)

    def _count(self, counters: dict, seconds: float) -> None:
        stats = self.stats
        stats.samples += 1
        stats.generate_s += seconds
        for key in ("forward_passes", "tokens", "constraint_s"):
            setattr(stats, key, counters.pop(key, 0) + getattr(stats, key))
