"""What Ray costs on one machine: texts/s of single-process redact.py against redact.py --ray with
1, 2, ... workers, end to end (start-up, model loads and writing included), on the same files.

    python bench/bench_ray.py --model-dir outputs/my-run --data data/test.jsonl --limit 64 --workers 1,2
    python bench/bench_ray.py --model-dir outputs/my-run --ray auto --workers 4,8   # an existing cluster

The samples' sources are written as --files JSONL files; each variant is one `redact.py` process
(a fresh Ray of its own for `--ray local`, so its start-up is counted), timed from start to exit.
Every Ray variant's outputs are compared with single-process redact.py's, file by file: a
difference is reported, never hidden. The manifest's worker seconds say how much of a Ray run was
redacting.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_inputs(folder: Path, sources: list[str], files: int) -> list[Path]:
    """The sources dealt round-robin into `files` JSONL files of {"text": ...} records."""
    paths = [folder / f"part{k:03d}.jsonl" for k in range(min(files, len(sources)))]
    for k, path in enumerate(paths):
        path.write_text("".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in sources[k::len(paths)]),
                        encoding="utf-8")
    return paths


def timed_redact(args: list[str]) -> tuple[float, int, str]:
    """(seconds, exit status, the last lines of stderr) of one redact.py process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "redact.py"), *args], capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - start, done.returncode, "\n".join(done.stderr.splitlines()[-3:])


def variant(name: str, args: list[str], out: Path, texts: int, reference: Path | None) -> dict:
    seconds, code, tail = timed_redact([*args, "--output-dir", str(out)])
    row = {"variant": name, "texts": texts, "seconds": round(seconds, 1), "texts_per_s": round(texts / seconds, 3),
           "exit": code}
    if code not in (0, 1):
        row["error"] = tail
    manifest = out / "redact-manifest.jsonl"
    if manifest.exists():
        row["worker_seconds"] = round(sum(json.loads(line)["seconds"] for line in manifest.read_text().splitlines()), 1)
    if reference is not None:
        files = sorted(p.name for p in reference.iterdir())
        row["identical_files"] = f"{sum((out / f).is_file() and (out / f).read_bytes() == (reference / f).read_bytes() for f in files)}/{len(files)}"
    return row


def main(argv: list[str] | None = None) -> int:
    from pii_redact.cli import positive_int, positive_ints
    from pii_redact.core.files import check_can_write

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a finetune.py run (or merged model) directory")
    parser.add_argument("--data", default="data/test.jsonl", help="samples whose sources are redacted")
    parser.add_argument("--limit", type=positive_int, default=64, help="the first N samples")
    parser.add_argument("--files", type=positive_int, default=8, help="input files the texts are dealt into")
    parser.add_argument("--workers", type=positive_ints, default="1,2", help="--ray-workers of each Ray variant")
    parser.add_argument("--ray", default="local", help="--ray ADDRESS of the Ray variants")
    parser.add_argument("--output", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.output:
        check_can_write(args.output, "--output")

    from pii_redact.data.records import read_samples

    sources = [s.source for s in read_samples(args.data, args.limit)]
    common = ["--model-dir", args.model_dir]
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        inputs = [str(p) for p in write_inputs(work / "in", sources, args.files)]
        rows = [variant("single process", [*common, *inputs], work / "single", len(sources), None)]
        for workers in args.workers:
            rows.append(variant(f"ray, {workers} worker(s)", [*common, *inputs, "--ray", args.ray, "--ray-workers",
                                                              str(workers)], work / f"ray-{workers}", len(sources),
                                work / "single"))
    for row in rows:
        print(f"{row['variant']:<20} {row['texts_per_s']:>8.3f} texts/s  {row['seconds']:>7.1f} s  exit {row['exit']}"
              + (f"  worker {row['worker_seconds']} s" if "worker_seconds" in row else "")
              + (f"  identical {row['identical_files']}" if "identical_files" in row else "")
              + (f"\n  {row['error']}" if "error" in row else ""), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"model": args.model_dir, "data": args.data, "texts": len(sources),
                                                 "files": len(inputs), "rows": rows}, indent=2) + "\n")
    return 0 if all(row["exit"] in (0, 1) for row in rows) else 1


if __name__ == "__main__":
    from pii_redact.cli import run as run_main

    raise SystemExit(run_main(main))
