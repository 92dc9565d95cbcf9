"""`redact.py --ray`: a corpus redacted on a Ray cluster, with the same outputs as redact.py.

The driver decides once what the run is (`redactor.resolve`: the model, backend, mask bias,
context), reads each input with redact.py's own reader (`formats.read_source`), and hands its
texts to Ray Data: a pool of actors (`RedactBatch`), each of which loads the model once (one per
GPU where the cluster has GPUs, else on CPUs with the backend `auto` picks there) and redacts
whole texts, a text never split across actors, through the same `cut` (a text too long for the
model held back alone) and `redact_texts` as redact.py. Each input is written back by the driver
through `formats.render` once all its texts are in, so its bytes are those redact.py writes.

Resumable: each output is staged beside its target and put in place in one step (a partial file
is a hidden `.NAME.*.partial`, never the output's name), and `--output-dir`'s manifest
(`redact-manifest.jsonl`) gets one line per input finished: records in, redacted, held back as
unfinished or unreadable, entities found, seconds, the model and settings, and the checksums of
input and output. A rerun skips what the manifest says is done and still there, redoes the rest,
and refuses an output folder whose manifest names another model or settings.

Personal data stays in the data: actors and tasks are named after the code, a record is named by
file and line or row, a worker's error by its type only.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..config import RedactConfig
from ..core.errors import UserError, describe
from ..core.files import (
    BadRecord,
    check_can_write,
    discard,
    dumps_line,
    iter_records,
    open_private_append,
    publish,
    sha256_file,
    stage_bytes,
)
from .file_texts import (
    cut,
    entities_of,
    held_back,
    redact_texts,
    redacted_file,
    report_bad,
    report_unfinished,
)
from .formats import Source, Text, read_source, where

INSTALL = "--ray needs Ray: pip install -r requirements-ray.txt"
MANIFEST = "redact-manifest.jsonl"
SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")  # what a folder given as input is searched for
WAVE_RECORDS = 50_000  # texts the driver holds at once: inputs are read and written back in waves
CPUS_PER_WORKER = 4    # without GPUs, and without --ray-workers: one model copy per this many CPUs


# --------------------------------------------------------------------------------------------
# inputs

@dataclass(frozen=True)
class Input:
    path: Path
    name: str  # relative name: where its redaction goes under --output-dir


def expand_inputs(patterns: list[str], out: Path) -> list[Input]:
    """The files the inputs name: a file as itself, a folder's files of a known kind (SUFFIXES,
    hidden ones skipped) under their path in it, a glob's matches under their path below the
    glob's first wildcard. Two inputs with one relative name are refused, and so is a file named
    inside --output-dir (found there by a folder or glob, it is passed over: an earlier output)."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        for path, name in _expand(pattern):
            if name in found and not os.path.samefile(found[name], path):
                raise UserError(f"{found[name]} and {path} would both be written to {out / name}")
            if _inside(path, out):  # an output fed back: refused when named, passed over in a folder or glob
                if path == Path(pattern):
                    raise UserError(f"{path} is inside --output-dir {out}: name inputs outside it")
                continue
            found[name] = path
    if not found:
        raise UserError("no input files found (folders are searched for " + ", ".join(SUFFIXES) + ")")
    if MANIFEST in found:
        raise UserError(f"an input is named {MANIFEST}, the name of the run's manifest: rename it")
    return [Input(path, name) for name, path in found.items()]


def _expand(pattern: str) -> list[tuple[Path, str]]:
    path = Path(pattern)
    if glob.has_magic(pattern):
        base = Path(*_until_magic(path.parts))  # (an empty Path is ".")
        matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
        if not matches:
            raise UserError(f"{pattern}: no file matches")
        return [(m, str(m.relative_to(base))) for m in matches]
    if path.is_dir():
        return [(p, str(p.relative_to(path))) for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    if not path.is_file():
        raise UserError(f"{pattern}: no such file")
    return [(path, path.name)]


def _until_magic(parts: tuple[str, ...]) -> Iterable[str]:
    for part in parts:
        if glob.has_magic(part):
            return
        yield part


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


# --------------------------------------------------------------------------------------------
# the manifest

def identity(resolved, config: RedactConfig) -> dict[str, Any]:
    """What makes two runs' outputs the same: the model (its path and the checksums of its
    weights) and every setting that changes a redaction (not the batch size)."""
    weights = sorted(p for p in Path(resolved.model_dir).iterdir() if p.suffix in (".safetensors", ".bin"))
    settings = {**dataclasses.asdict(resolved.settings), "backend": resolved.backend,
                "gguf": str(resolved.gguf) if resolved.gguf else None, "mask_bias": resolved.mask_bias,
                "context": resolved.context, "text_field": config.text_field,
                "allow_unfinished": config.allow_unfinished}
    settings.pop("batch_size")
    return {"model": str(Path(resolved.model_dir).resolve()),
            "weights": {p.name: sha256_file(p) for p in weights} or None, "settings": settings}


class Manifest:
    """`--output-dir`'s record of the inputs finished, one JSON line each, appended as they are."""

    def __init__(self, out: Path, ident: dict[str, Any]):
        self.path, self.identity = out / MANIFEST, ident
        self.entries: dict[str, dict] = {}
        if not self.path.exists():
            return
        for index, entry in iter_records(self.path):
            if isinstance(entry, BadRecord) or not isinstance(entry, dict) or "input" not in entry:
                continue  # a line cut short by a run that was killed while writing it: that input is redone
            if {k: entry.get(k) for k in ident} != ident:
                changed = " and ".join({"model": "another model", "weights": "other weights",
                                        "settings": "other settings"}[k] for k in ident if entry.get(k) != ident[k])
                raise UserError(f"{out} holds redactions made with {changed} ({where(str(self.path), index)}): "
                                "use another --output-dir, so that the two are never mixed")
            self.entries[entry["input"]] = entry

    def done(self, item: Input, target: Path) -> bool:
        """Whether `item` was redacted in full from the same bytes, and its output is still there."""
        entry = self.entries.get(item.name)
        return (entry is not None and entry["held_back_unfinished"] == 0 and entry["output_sha256"] is not None
                and entry["input_sha256"] == sha256_file(item.path) and target.is_file()
                and sha256_file(target) == entry["output_sha256"])

    def held_back(self, item: Input) -> int:
        """Records of `item` that its finished redaction left out as unreadable."""
        return self.entries[item.name]["held_back_unreadable"]

    def made(self, item: Input, target: Path) -> bool:
        """Whether the file at `target` is this run's earlier redaction of `item` (then it may be replaced)."""
        entry = self.entries.get(item.name)
        return entry is not None and target.is_file() and sha256_file(target) == entry["output_sha256"]

    def add(self, entry: dict[str, Any]) -> None:
        with open_private_append(self.path) as f:
            f.write(dumps_line({**entry, **self.identity}))
            f.flush()
            os.fsync(f.fileno())
        self.entries[entry["input"]] = entry


# --------------------------------------------------------------------------------------------
# on the workers

class RedactBatch:
    """A Ray Data actor: one Redactor, its model loaded once, redacting batches of whole texts."""

    def __init__(self, resolved):
        from ..cli import quiet_startup_warnings
        from .redactor import Redactor

        quiet_startup_warnings()
        cpus = _assigned_cpus()
        if cpus and resolved.device == "cpu":
            import torch

            torch.set_num_threads(cpus)  # the CPUs Ray gave this actor, not every core of the node,
            os.environ["OMP_NUM_THREADS"] = str(cpus)  # for llama.cpp too (`device.cpu_threads`)
        self.redactor = Redactor(resolved=resolved)

    def __call__(self, batch: dict) -> dict:
        try:
            return self._redact(batch)
        except Exception as exc:  # noqa: BLE001  a message may quote the text: only its type leaves the worker
            raise RuntimeError(f"redaction failed on a worker ({type(exc).__name__})") from None

    def _redact(self, batch: dict) -> dict:
        start = time.perf_counter()
        texts = [Text("", None, str(text)) for text in batch["text"]]
        problems = [cut(text, self.redactor) for text in texts]  # a text too long is held back alone
        redact_texts([t for t, problem in zip(texts, problems) if not problem], self.redactor)
        seconds = (time.perf_counter() - start) / max(1, len(texts))
        return {"file": batch["file"], "index": batch["index"],
                "output": ["" if p else "".join(t.redacted) for t, p in zip(texts, problems)],
                "unfinished": [0 if p else sum(t.unfinished) for t, p in zip(texts, problems)],  # pieces
                "entities": [0 if p else len(entities_of(t)) for t, p in zip(texts, problems)],
                "problem": problems, "seconds": [seconds] * len(texts)}


def _assigned_cpus() -> int:
    import ray

    return int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0))


# --------------------------------------------------------------------------------------------
# the driver

def connect(address: str):
    """Ray, connected: `auto` joins RAY_ADDRESS or a cluster running here, else starts one on
    this machine's CPUs; `local` always starts one; anything else is the cluster's address. A
    process already connected (a notebook that called ray.init) stays on its cluster."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL) from None
    if ray.is_initialized():
        return ray
    options = dict(runtime_env=runtime_env(), logging_level="WARNING")
    if address == "local":
        return _start_here(ray, options)
    try:
        ray.init(address=(os.environ.get("RAY_ADDRESS") or "auto") if address == "auto" else address, **options)
    except ConnectionError as exc:
        if address == "auto" and not os.environ.get("RAY_ADDRESS"):
            return _start_here(ray, options)  # no cluster running here
        raise UserError(f"--ray {address}: no Ray cluster there ({describe(exc) or type(exc).__name__})") from None
    return ray


def runtime_env() -> dict[str, Any]:
    """What the job brings to the cluster: the suite's code (so the nodes need only its
    requirements, and the model at the same path), and no reaching for a model hub."""
    import pii_redact

    return {"py_modules": [str(Path(pii_redact.__file__).parent)],
            "env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}}


def _start_here(ray, options: dict):
    """A Ray of this process's own, on the CPUs it may run on (`taskset` included)."""
    ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, **options)
    return ray


def for_workers(resolved, gpus: bool):
    """The run as the workers run it: on the cluster's GPUs, or on CPUs with the backend `auto`
    picks there (the driver decided for its own machine, which may have a GPU the workers lack)."""
    settings = resolved.settings
    if gpus:
        backend = resolved.backend if settings.backend != "auto" or settings.gguf else "transformers"
        return dataclasses.replace(resolved, device="cuda", backend=backend,
                                   gguf=resolved.gguf if backend == "llama.cpp" else None,
                                   batch_size=1 if backend == "llama.cpp" else settings.batch_size)
    return dataclasses.replace(resolved, device="cpu")


@dataclass
class Pool:
    workers: int
    cpus: float
    gpus: float


def pool(ray, config: RedactConfig) -> Pool:
    """How many model copies work at once, and what each takes: a GPU each where the cluster has
    GPUs, else an equal share of its CPUs."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    workers = config.ray_workers or (gpus if gpus else max(1, cpus // CPUS_PER_WORKER))
    if workers > (gpus or cpus):  # an autoscaling cluster may grow; a fixed one leaves the rest waiting
        print(f"warning: --ray-workers {workers}: the cluster has {gpus or cpus} {'GPU' if gpus else 'CPU'}(s) now, "
              "so the other workers wait for more", file=sys.stderr)
    if gpus:
        return Pool(workers, 1, 1)
    return Pool(workers, max(1, cpus // workers), 0)


def redact_corpus(config: RedactConfig) -> int:
    from .redactor import Settings, resolve

    out = Path(config.output_dir)
    check_can_write(out, "--output-dir", directory=True)
    items = expand_inputs(config.inputs, out)
    resolved = resolve(Settings.of(config), config.model_dir, config.runs_dir)
    ray = connect(config.ray)
    shape = pool(ray, config)
    resolved = for_workers(resolved, shape.gpus > 0)
    manifest = Manifest(out, identity(resolved, config))
    todo = [item for item in items if not manifest.done(item, out / item.name)]
    for item in todo:  # checked before any work, as redact.py does
        target = out / item.name
        if os.path.lexists(target) and not (config.overwrite or manifest.made(item, target)):
            raise UserError(f"{target} already exists: pass --overwrite to replace it, or another --output-dir")
    for item in todo:
        _sweep_partials(out / item.name)
    print(f"redact.py --ray: {len(items) - len(todo)} of {len(items)} inputs already redacted, {len(todo)} to do, "
          f"{shape.workers} worker(s) ({'a GPU' if shape.gpus else f'{shape.cpus:g} CPU(s)'} each)", file=sys.stderr)
    run = CorpusRun(config, resolved, manifest, out)
    for item in items:
        if item not in todo and manifest.held_back(item):  # still left out: the exit status says so again
            print(f"error: {item.path}: {manifest.held_back(item)} record(s) that could not be read were held back "
                  f"(redacted earlier, see {manifest.path})", file=sys.stderr)
            run.status = 1
    for wave in run.waves(todo):
        if not run.redact_wave(ray, shape, wave):
            break
    return run.status


def _sweep_partials(target: Path) -> None:
    """Remove what a killed run left half-written for `target` (`core.files` stages a file as
    `.NAME.*.partial` beside it): it is redone now, and was never the output."""
    if target.parent.is_dir():
        for partial in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):
            partial.unlink(missing_ok=True)


@dataclass
class _Pending:
    """An input whose texts are out on the workers."""

    item: Input
    source: Source
    left: int  # texts not back yet
    problems: dict[int, BadRecord] = dataclasses.field(default_factory=dict)  # by text: why it was not redacted
    entities: int = 0
    seconds: float = 0.0


class CorpusRun:
    """The driver's side of a run: each input written, and its manifest line added, once all its
    texts are back."""

    def __init__(self, config: RedactConfig, resolved, manifest: Manifest, out: Path):
        self.config, self.resolved, self.manifest, self.out = config, resolved, manifest, out
        self.status = 0

    def waves(self, items: list[Input]) -> Iterable[list[tuple[Input, Source]]]:
        """The inputs read, in groups of about WAVE_RECORDS texts (a bigger file is a group alone).
        A file that cannot be read at all is named and left out (exit 1): the others go on."""
        wave, size = [], 0
        for item in items:
            try:
                source = read_source(str(item.path), item.path.read_bytes(), self.config.text_field)
            except (UserError, OSError) as exc:
                print(f"error: {describe(exc) or exc}; not written", file=sys.stderr)
                self.status = 1
                continue
            wave.append((item, source))
            size += len(source.texts)
            if size >= WAVE_RECORDS:
                yield wave
                wave, size = [], 0
        if wave:
            yield wave

    def redact_wave(self, ray, shape: Pool, wave: list[tuple[Input, Source]]) -> bool:
        """Redact a wave's texts on the pool, each input written once its texts are back; False
        (exit 1) where Ray failed: what was finished is written and recorded, a rerun resumes."""
        pending = {f: _Pending(item, source, len(source.texts)) for f, (item, source) in enumerate(wave)}
        for f in [f for f, p in pending.items() if not p.left]:
            self.finish(pending.pop(f))  # nothing to redact (an empty file)
        rows = [{"file": f, "index": k, "text": text.text}
                for f, p in pending.items() for k, text in enumerate(p.source.texts)]
        if not rows:
            return True
        batch = self.resolved.batch_size
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // batch))).map_batches(
            RedactBatch, fn_constructor_kwargs={"resolved": self.resolved}, batch_size=batch,
            compute=ray.data.ActorPoolStrategy(size=shape.workers), num_cpus=shape.cpus, num_gpus=shape.gpus)
        seen: set[tuple[int, int]] = set()
        try:
            for row in dataset.iter_rows():
                self.collect(pending, row, seen)
        except Exception as exc:  # noqa: BLE001  Ray's errors: named by type, never with a record's text
            print(f"error: the Ray run failed ({type(exc).__name__}); every input finished so far is written and "
                  f"in {self.manifest.path}: run the same command again to resume", file=sys.stderr)
            self.status = 1
            return False
        return True

    def collect(self, pending: dict[int, _Pending], row: dict, seen: set) -> None:
        key = (int(row["file"]), int(row["index"]))
        if key in seen:  # a retried batch never counts twice
            return
        seen.add(key)
        p = pending[key[0]]
        text = p.source.texts[key[1]]
        if row["problem"]:
            p.problems[key[1]] = BadRecord(text.where, str(row["problem"]))
        text.redacted, text.unfinished = [str(row["output"])], [True] * int(row["unfinished"]) or [False]
        p.entities += int(row["entities"])
        p.seconds += float(row["seconds"])
        p.left -= 1
        if not p.left:
            self.finish(pending.pop(key[0]))

    def finish(self, p: _Pending) -> None:
        """Write one input (without what is held back), add its manifest line, and report it."""
        source, config = p.source, self.config
        held = held_back(source.texts, config.allow_unfinished)
        unreadable = {(source.name, source.texts[k].record) for k in p.problems}
        data = redacted_file(source, held | unreadable, config.text_field)
        entry = {"input": p.item.name, "records": source.records,
                 "redacted": 0 if data is None else len(source.texts) - len(held | unreadable),
                 "held_back_unfinished": len(held), "held_back_unreadable": len(source.bad) + len(p.problems),
                 "entities": p.entities, "seconds": round(p.seconds, 3), "input_sha256": sha256_file(p.item.path),
                 "output_sha256": None if data is None else hashlib.sha256(data).hexdigest()}
        if data is None:
            self.manifest.add(entry)
        elif not self.write(p.item, data, entry):
            return
        source.bad += p.problems.values()
        report_bad([source])
        report_unfinished(source.texts, held, self.resolved.settings)
        if held or source.bad:
            self.status = 1

    def write(self, item: Input, data: bytes, entry: dict[str, Any]) -> bool:
        """Stage, record in the manifest, then put in place: a run killed in between finds the
        output missing and redoes it. False (and exit 1) where a file appeared meanwhile."""
        target = self.out / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        replace = self.config.overwrite or self.manifest.made(item, target)
        staged = stage_bytes(target, data)
        try:
            self.manifest.add(entry)
            publish(staged, target, replace=replace)
        except FileExistsError:
            print(f"error: {target} appeared while this run worked (another run writing there?): kept as it is; "
                  "pass --overwrite to replace it", file=sys.stderr)
            self.status = 1
            return False
        finally:
            discard([staged])
        return True
