"""The llama.cpp engine behind `Redactor` (`--backend llama.cpp`): a run's GGUF on a CPU.

The same decoding as the transformers engine: the prompt ids of `core.chat` (llama.cpp's own
rendering of the GGUF's chat template gives the same ids), greedy choices through the faithful
constraint and its mask bias (`faithful.Decoder`, on llama.cpp's logits) and the same per-text
budget, so everything after generation is the one code path of `Redactor`.

Texts are decoded many at a time (`--batch-size`, longest first): one llama.cpp context keeps a
sequence per text in its KV cache (`Parallel`), and each llama.cpp step feeds every text its
next token, so the weights are streamed once for all of them instead of once per text (which
takes feeding them as one run of consecutive sequences: `_batched`), and the opening all prompts
share is decoded once. Each text has its own constraint and budget; one that finishes frees its
sequence for the next text at once, and none waits for or sees another. With the whole output
layer (`--no-restricted-head`), `--batch-size 1` decodes one text at a time through
llama-cpp-python's high-level `Llama`, as before; so does copy-aware speculation
(`speculative`: the prompt is the draft, verified in one llama.cpp batch, the rejected tail
dropped from its KV cache), there with `--speculation on` but off by default: llama.cpp on a
CPU is compute-bound even for one text, so checking k draft tokens costs about k single steps
and the rejected ones are lost (0.61 samples/s plain against 0.42 speculative with q8_0 on 2
cores: BENCHMARKS.md).

Faithful decoding computes the output layer for the allowed tokens only, as the transformers
engine does (`faithful.RestrictedHead`), where the GGUF's output layer is f32, f16 or q8_0 (the
types a run exports): `Parallel` stops llama.cpp's graph at the last hidden state (an evaluation
callback takes the node llama.cpp names `result_norm` and cancels the rest, which is the output
product alone; `embeddings` on would not, since Gemma 3's graph builds the logits
unconditionally), and `llamacpp_head.OutputRows` multiplies the allowed rows of the GGUF's own
weights the way llama.cpp's CPU backend does. Texts are then decoded through `Parallel` at every
batch size, one as well.

llama-cpp-python is built from source where no wheel exists (`pip install -r
requirements-llama.txt`, 4.5 to 11 minutes on 2 cores).
"""
from __future__ import annotations

import atexit
import ctypes
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from ..core.device import cpu_threads
from ..core.errors import UserError
from ..core.run_dir import RunDir

if TYPE_CHECKING:
    from .llamacpp_head import OutputRows

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
    """A GGUF loaded in llama.cpp, fed tokens and asked for the logits of each one fed: one
    sequence at a time (`feed`), or many through a `Parallel` context over the same weights."""

    def __init__(self, path: Path, n_ctx: int = 4096):
        from llama_cpp import Llama

        _quiet_llama_cpp()
        self.path = path
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=cpu_threads(), verbose=False)
        except ValueError as e:  # llama-cpp-python's one error for a file llama.cpp cannot load
            raise UserError(f"GGUF {path}: llama.cpp cannot load it (a damaged file, or a model this "
                            f"llama.cpp does not know; --backend transformers runs the merged model instead)") from e
        self.n_vocab = self.llm.n_vocab()
        self._parallel: Parallel | None = None
        self._head: OutputRows | None | bool = False  # not looked for yet
        # freed now rather than by Llama.__del__ at interpreter exit, where llama-cpp-python's
        # teardown finds its library already gone and prints an ignored TypeError
        atexit.register(self.close)

    def close(self) -> None:
        if self._parallel is not None:
            self._parallel.close()
            self._parallel = None
        self.llm.close()

    @property
    def head(self) -> OutputRows | None:
        """The GGUF's output layer for chosen rows (`llamacpp_head`), None where its type is
        not one computed there: then llama.cpp computes the whole layer."""
        if self._head is False:
            from .llamacpp_head import OutputRows

            self._head = OutputRows.of(self.path)
        return self._head

    def parallel(self, n_seq: int, hidden: bool = False) -> Parallel:
        """A context for `n_seq` texts at once over the loaded weights, each with the positions
        `feed` has for one (so a text gets the same budget either way), handing back last hidden
        states instead of logits with `hidden`; kept for the next call of the same kind, and only
        one at a time: its KV cache grows with `n_seq`."""
        if self._parallel is None or (self._parallel.n_seq, self._parallel.hidden) != (n_seq, hidden):
            if self._parallel is not None:
                self._parallel.close()
            self._parallel = Parallel(self.llm, n_seq, self.llm.n_ctx(), hidden)
        return self._parallel

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


class Parallel:
    """A llama.cpp context over a loaded model whose KV cache keeps `n_seq` sequences apart (a
    stream each, not one unified buffer: a text attends to its own tokens only, and pays no
    attention over the others' slots), each with `n_ctx_seq` positions. One `decode` call feeds
    tokens of many sequences and streams the weights once for all of them.

    With `hidden`, llama.cpp stops each step at the last hidden state and `decode` hands that
    back (n_embd floats a text, not 262,144 logits): an evaluation callback asks for the node
    llama.cpp names `result_norm`, copies it out and cancels the rest of the graph, which is the
    output layer alone (rows in llama.cpp's order: see `decode`)."""

    # tokens per llama_decode call (longer feeds go in several), which llama.cpp cuts into
    # micro-batches of N_UBATCH: a step's next tokens of up to 255 texts go in one
    N_BATCH, N_UBATCH = 4096, 512

    MAX_SEQ = 256  # llama.h's LLAMA_MAX_SEQ: sequences one context can keep

    def __init__(self, llm, n_seq: int, n_ctx_seq: int, hidden: bool = False):
        import llama_cpp
        from llama_cpp import _internals

        if not 1 <= n_seq < self.MAX_SEQ:
            raise ValueError(f"a llama.cpp context keeps 1 to {self.MAX_SEQ - 1} texts, not {n_seq}")
        # one sequence more than texts: `shared` holds the prompt opening they all have in common
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max = n_ctx_seq * (n_seq + 1), n_seq + 1
        params.n_batch, params.n_ubatch = self.N_BATCH, self.N_UBATCH
        params.n_threads = params.n_threads_batch = llm.n_threads
        params.kv_unified = False
        # as the one-at-a-time `Llama` has it: llama.cpp's automatic choice turns flash attention on
        # on a CPU, whose rounding moved q8_0 logits by up to 2 (outputs differed on 5 of 24 test
        # texts); without it a text's logits are bit for bit those of one at a time
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        # a sliding-window layer keeps its window (plus a step) per text rather than every
        # position: 15 of Gemma 3's 18 layers, so n_seq texts fit in a few hundred MB. Nothing is
        # rolled back here (no speculation), the one thing the full-size cache is for.
        params.swa_full = False
        self.n_seq, self.n_ctx_seq, self.n_vocab, self.hidden = n_seq, n_ctx_seq, llm.n_vocab(), hidden
        self.shared = n_seq
        self._rows: list = []  # hidden states the callback copied out during a call
        if hidden:
            self.n_embd = llama_cpp.llama_model_n_embd(llm._model.model)
            self._callback = llama_cpp.ggml_backend_sched_eval_callback(self._stop_at_hidden)  # kept alive here
            params.cb_eval = self._callback
        self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=self.N_BATCH, embd=0, n_seq_max=1, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        if llama_cpp.llama_n_ctx_seq(self.ctx.ctx) < n_ctx_seq:
            raise RuntimeError(f"llama.cpp gave {llama_cpp.llama_n_ctx_seq(self.ctx.ctx)} positions per "
                               f"sequence, not {n_ctx_seq}")

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()

    def forget(self, seq: int = -1) -> None:
        """Drop sequence `seq` (-1: every one) from the KV cache: its slot starts afresh."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def move(self, source: int, target: int) -> None:
        """Hand the KV cache of sequence `source` to the empty sequence `target`: llama.cpp copies
        the stream, and the logits that follow are bit for bit those `source` would have had."""
        self.copy(source, target)
        self.forget(source)

    def copy(self, source: int, target: int) -> None:
        """Give the empty sequence `target` the KV cache of `source` (llama.cpp copies the stream)."""
        import llama_cpp

        llama_cpp.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def decode(self, feeds: Sequence[tuple[int, int, Sequence[int]]]) -> list:
        """Feed (sequence, position of the first token, tokens) for each of `feeds`; the logits
        (numpy) after the last token of each, in the same order, or with `hidden` the last hidden
        states there.

        The one-token feeds go in one llama_decode call, by ascending sequence, and each longer
        one (a prompt) in a call of its own. llama.cpp cut a mixed call into micro-batches of the
        same kind (one token of every sequence, then the rest of the prompts), so a step costs
        what it did (the first, which starts every text, now reads the weights once a prompt),
        and a micro-batch's rows come in a known order: the hidden states the callback copies out
        go to their own texts, and a text's logits are the same with or without the restricted
        head but for the output layer's rounding."""
        rows: list = [None] * len(feeds)
        steps = sorted((seq, k) for k, (seq, _, tokens) in enumerate(feeds) if len(tokens) == 1)
        calls = [[k for _, k in steps]] + [[k] for k, (_, _, tokens) in enumerate(feeds) if len(tokens) > 1]
        for call in filter(None, calls):
            out = self._call([feeds[k] for k in call])
            if len(out) != len(call):  # fail closed: never a row handed to another text
                raise RuntimeError(f"llama.cpp handed back {len(out)} rows for {len(call)} texts")
            for k, row in zip(call, out):
                rows[k] = row
        return rows

    def _call(self, feeds: Sequence[tuple[int, int, Sequence[int]]]) -> list:
        """One llama_decode call (or several of N_BATCH tokens): the rows after each feed's last token."""
        import numpy as np

        entries = [(token, pos + j, seq, j == len(tokens) - 1)
                   for seq, pos, tokens in feeds for j, token in enumerate(tokens)]
        rows, batch = [], self.batch.batch
        self._rows = []
        for start in range(0, len(entries), self.N_BATCH):
            chunk = entries[start:start + self.N_BATCH]
            batch.n_tokens = len(chunk)
            for i, (token, pos, seq, wanted) in enumerate(chunk):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, wanted
                batch.seq_id[i][0] = seq
            self.ctx.decode(self.batch)
            if not self.hidden:
                rows += [np.ctypeslib.as_array(self.ctx.get_logits_ith(i), shape=(self.n_vocab,)).copy()
                         for i, entry in enumerate(chunk) if entry[3]]
        return [row for block in self._rows for row in block] if self.hidden else rows

    def _stop_at_hidden(self, tensor, ask: bool, _user_data) -> bool:
        """llama.cpp's evaluation callback: asked (`ask`) whether to hand over each node once it
        is computed, wants `result_norm` alone; handed it, copies its rows (one per output of the
        micro-batch; none in a micro-batch of prompt tokens before the last) and answers False,
        which cancels the rest of the micro-batch's graph: the output layer."""
        ggml = _ggml()
        if ask:
            return ggml.ggml_get_name(tensor) == b"result_norm"
        import numpy as np

        size = ggml.ggml_nbytes(tensor)
        rows = np.empty((size // (4 * self.n_embd), self.n_embd), dtype=np.float32)
        if rows.nbytes == size:  # else not n_embd floats a row: no rows, and `decode` fails closed
            ggml.ggml_backend_tensor_get(tensor, rows.ctypes.data, 0, size)
            self._rows.append(rows)
        return False


@lru_cache(maxsize=1)
def _ggml():
    """ggml's library as llama-cpp-python loads it, with the signatures `Parallel` calls."""
    from llama_cpp._ggml import libggml

    libggml.ggml_get_name.argtypes, libggml.ggml_get_name.restype = [ctypes.c_void_p], ctypes.c_char_p
    libggml.ggml_nbytes.argtypes, libggml.ggml_nbytes.restype = [ctypes.c_void_p], ctypes.c_size_t
    libggml.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    libggml.ggml_backend_tensor_get.restype = None
    return libggml


def generate(engine: Engine, tokenizer, prompts: Sequence[str], sources: Sequence[str], max_new_tokens: int = 0,
             decoding: str = "faithful", speculation: str = "auto", stats: dict | None = None,
             mask_bias: float = 0.0, placeholder_bounds: str = "words",
             batch_size: int = 1, restricted_head: bool = True) -> Iterator[tuple[int, str, str]]:
    """Yield (index, prediction, finish_reason) for each prompt, as `generate.generate_transformers`
    does: `batch_size` texts at a time, longest first, each yielded as it finishes. Faithful
    decoding with `restricted_head` computes the output layer for the allowed tokens only, where
    the GGUF's output layer is of a type `llamacpp_head` computes (f32, f16, q8_0). One at a time
    (in the order given, the whole output layer) with speculation "on" ("auto" is off: see the
    module's docstring), or with a batch size of 1 where the restricted head does not apply."""
    texts = _Texts(tokenizer, prompts, sources, decoding, mask_bias, placeholder_bounds)
    return _decode(engine, texts, max_new_tokens, speculation, stats, batch_size, restricted_head)


def _decode(engine: Engine, texts: _Texts, max_new_tokens: int, speculation: str, stats: dict | None,
            batch_size: int, restricted_head: bool = True) -> Iterator[tuple[int, str, str]]:
    """`generate`'s texts one at a time or many per step (`bench/bench_margins.py` passes texts
    that record what each step chose by)."""
    head = engine.head if restricted_head and texts.vocab is not None and speculation != "on" else None
    if speculation == "on" or (head is None and (batch_size == 1 or len(texts.encoded) <= 1)):
        return _one_at_a_time(engine, texts, max_new_tokens, speculation, stats)
    n_seq = min(batch_size, len(texts.encoded), Parallel.MAX_SEQ - 1)
    return _batched(engine.parallel(n_seq, hidden=head is not None), texts, max_new_tokens, stats, head)


class _Texts:
    """What decoding a text takes, the same however texts are batched: its prompt ids, source,
    stop tokens and a fresh faithful constraint of its own (None for free decoding)."""

    def __init__(self, tokenizer, prompts, sources, decoding: str, mask_bias: float, placeholder_bounds: str):
        from ..core import chat
        from ..core.constraint import Vocabulary
        from . import faithful

        self.tokenizer, self.sources = tokenizer, sources
        self.stops = chat.stop_token_ids(tokenizer)
        self.encoded = chat.encode_prompts(tokenizer, prompts)
        self.vocab = Vocabulary(tokenizer) if decoding == "faithful" else None
        self.mask_bias, self.bounds = mask_bias, faithful.bounds(placeholder_bounds)

    def start(self, i: int, n_ctx: int, max_new_tokens: int):
        """(Row, decoder) of text i in a context of n_ctx positions."""
        from .generate import token_budget
        from .speculative import Row

        ids = self.encoded[i]
        return Row(0, ids, token_budget(self.sources[i], max_new_tokens, n_ctx - len(ids) - 1)), self.decoder(i)

    def decoder(self, i: int):
        """A fresh faithful constraint for text i (None for free decoding)."""
        from . import faithful

        if self.vocab is None:
            return None
        return faithful.Decoder(self.vocab, [self.sources[i].strip()], self.stops, self.mask_bias, self.bounds)

    def done(self, i: int, row, decoder, stats: dict | None, passes: int = 0) -> tuple[int, str, str]:
        """(i, prediction, finish reason) of a finished row, its counts added to `stats`."""
        from .generate import decoded

        if stats is not None:
            stats["forward_passes"] = stats.get("forward_passes", 0) + passes
            stats["tokens"] = stats.get("tokens", 0) + len(row.tokens)
            if decoder is not None:
                stats["constraint_s"] = stats.get("constraint_s", 0.0) + decoder.seconds
        return (i, *decoded(self.tokenizer, decoder, 0, row.tokens, self.sources[i], self.stops, row.budget))


def _one_at_a_time(engine: Engine, texts: _Texts, max_new_tokens: int, speculation: str,
                   stats: dict | None) -> Iterator[tuple[int, str, str]]:
    from .speculative import accept, greedy, propose, verify

    stops = set(texts.stops)
    for i in range(len(texts.encoded)):
        row, decoder = texts.start(i, engine.llm.n_ctx(), max_new_tokens)
        engine.reset()
        accept(row, [greedy(engine.feed(row.prompt, every=False)[-1], row, decoder)], stops, decoder)
        passes = 1
        while not row.done:
            draft = propose(row) if speculation == "on" else []
            start = engine.position
            taken = verify(row, draft, engine.feed([row.tokens[-1], *draft]), decoder, stops)
            engine.rewind(start + taken)  # the draft tokens after the first rejected one never happened
            passes += 1
        yield texts.done(i, row, decoder, stats, passes)


def _batched(parallel: Parallel, texts: _Texts, max_new_tokens: int, stats: dict | None,
             head: OutputRows | None = None) -> Iterator[tuple[int, str, str]]:
    """Continuous batching: every llama.cpp step feeds each active text its last chosen token
    (and a newly started text its whole prompt); a finished text is yielded and its sequence
    handed to the next waiting one before the next step.

    The active texts always hold sequences 0..k-1 and are fed in that order. llama.cpp cuts a
    step into one micro-batch per run of consecutive sequence ids (each sequence's stream is a
    slice of one KV tensor), and every micro-batch streams the weights again: fed out of order,
    or with the sequence of a finished text left empty among them, the hand-written texts' steps
    of 32 took twice as long. So a text that finishes while none waits hands its sequence to the
    text in the highest one (`Parallel.move`: its KV cache copied, bit for bit). llama.cpp's q8_0
    products round differently with a micro-batch's shape, so cutting the steps this way changed
    2 of 96 hand-written outputs against the earlier order (a label, a date masked or not).

    The opening every prompt shares (the chat template's and the instruction's tokens, 80 of the
    hand-written texts' 160 on average) is fed once, into `Parallel.shared`, and copied into each
    text's sequence as it starts, which then gets only the rest of its prompt.

    With a `head` (the parallel context then hands back hidden states), each text's logits are
    computed for the tokens its constraint allows only."""
    from collections import deque

    import torch

    from .speculative import accept, greedy

    stops = set(texts.stops)
    waiting = deque(sorted(range(len(texts.encoded)), key=lambda i: -len(texts.encoded[i])))
    slots: list = []  # slots[seq]: (text, row, decoder) in sequence seq; None once it finished
    parallel.forget()  # whatever an abandoned earlier call left
    shared = _shared_opening(texts.encoded)
    if shared:
        parallel.decode([(parallel.shared, 0, texts.encoded[0][:shared])])

    def start(seq: int) -> tuple:
        i = waiting.popleft()
        if shared:
            parallel.copy(parallel.shared, seq)
        return (i, *texts.start(i, parallel.n_ctx_seq, max_new_tokens))

    while True:
        for seq, slot in enumerate(slots):
            if slot is None and waiting:
                slots[seq] = start(seq)
        while waiting and len(slots) < parallel.n_seq:
            slots.append(start(len(slots)))
        _close_gaps(parallel, slots, stats)
        if not slots:
            return
        feeds = [_next_feed(seq, row, shared) for seq, (_, row, _) in enumerate(slots)]
        rows = parallel.decode(feeds)
        if stats is not None:
            stats["forward_passes"] = stats.get("forward_passes", 0) + 1
        for seq, out in enumerate(rows):
            i, row, decoder = slots[seq]
            accept(row, [greedy(torch.from_numpy(out), row, decoder, head)], stops, decoder)
            if row.done:
                slots[seq] = None
                parallel.forget(seq)
                yield texts.done(i, row, decoder, stats)


def _shared_opening(encoded: Sequence[Sequence[int]], at_least: int = 8) -> int:
    """How many leading prompt tokens every prompt has in common, short of each one's last (whose
    logits start its redaction); 0 for one prompt, or where fewer than `at_least` would be shared."""
    if len(encoded) < 2:
        return 0
    first, n = encoded[0], min(len(ids) for ids in encoded) - 1
    for ids in encoded[1:]:
        n = next((k for k in range(n) if ids[k] != first[k]), n)
    return n if n >= at_least else 0


def _close_gaps(parallel: Parallel, slots: list, stats: dict | None) -> None:
    """Move the texts of the highest sequences into the empty lower ones, until the texts hold
    sequences 0..k-1 (`slots` shrinks to k)."""
    seq = 0
    while seq < len(slots):
        while slots and slots[-1] is None:
            slots.pop()
        if seq < len(slots) and slots[seq] is None:
            parallel.move(len(slots) - 1, seq)
            slots[seq] = slots.pop()
            if stats is not None:
                stats["moves"] = stats.get("moves", 0) + 1
        seq += 1


def _next_feed(seq: int, row, shared: int = 0) -> tuple[int, int, list[int]]:
    """What a text's sequence is fed next: its prompt after the `shared` opening already copied
    in at first, then its last chosen token (at the position after everything fed before it)."""
    if not row.tokens:
        return seq, shared, row.prompt[shared:]
    return seq, len(row.prompt) + len(row.tokens) - 1, row.tokens[-1:]
