"""Redaction speed on a CPU per engine, output layer and batch size: samples/s with the spread of
repeated runs, peak resident memory, and how many outputs match the first configuration's.

    python bench/bench_speed.py --model-dir outputs/my-run --output bench/results/cpu-speed.json
    python bench/bench_speed.py --model-dir outputs/my-run --sets test32 --configs transformers/16/full,llama.cpp/16

A configuration is ENGINE/BATCH[/full]:
  transformers/16/full   transformers, faithful decoding, batch 16, the whole output layer: the
                         default before texts were batched in llama.cpp and the head restricted
  transformers/N         the output layer for the tokens faithful decoding allows only
                         (`faithful.RestrictedHead`), N texts at a time
  llama.cpp/1            the run's GGUF, one text at a time (llama-cpp-python's high-level API)
  llama.cpp/N            N texts per llama.cpp step (`llamacpp.Parallel`); llama.cpp always
                         computes its whole output layer
So the levers alone and together: transformers/16/full against transformers/16 (the head),
llama.cpp/1 against llama.cpp/16 (batching), transformers/16/full against llama.cpp/16 (both
changes of the default on a CPU).

Sets (--sets; test32 and unseen by default): test32, the 32 longest texts of --test (the
slowest, as evaluate.py meets them first); first32, its first 32 (what `bench_generate.py
--limit 32` measured); unseen, the hand-written texts of bench/unseen/unseen.jsonl. Each (set,
configuration, repeat) runs in a fresh interpreter with this one's CPU affinity, so its peak
resident memory is its own (the model, its KV caches, the constraint); a warm-up on two texts is
not timed, nor is loading. Outputs are the model's own (before the safety net), compared with the
first configuration's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_CONFIGS = ("transformers/16/full,transformers/1,transformers/8,transformers/16,transformers/32,"
                   "llama.cpp/1,llama.cpp/8,llama.cpp/16,llama.cpp/32")
SETS = ("test32", "first32", "unseen")


def parse_config(text: str) -> dict:
    """ENGINE/BATCH[/full] -> the Redactor settings it names."""
    from pii_redact.core.errors import UserError

    engine, _, rest = text.partition("/")
    batch, _, head = rest.partition("/")
    if engine not in ("transformers", "llama.cpp") or not batch.isdigit() or int(batch) < 1 or head not in ("", "full"):
        raise UserError(f"--configs: {text!r} is not ENGINE/BATCH[/full] (transformers/16/full, llama.cpp/8...)")
    return {"backend": engine, "batch_size": int(batch), "restricted_head": head != "full"}


def load_set(name: str, test: str, unseen: str, limit: int):
    """The samples of a set, longest first for test32."""
    from pii_redact.data.records import read_samples

    if name == "test32":
        samples = sorted(read_samples(test), key=lambda s: -len(s.source))[:32]
    elif name == "first32":
        samples = read_samples(test, 32)
    else:
        samples = read_samples(unseen)
    return samples[:limit] if limit else samples


def child(args) -> int:
    """One timed run: print its samples/s, peak memory and outputs as one JSON line."""
    from pii_redact.inference.redactor import Redactor, Settings

    samples = load_set(args.set, args.test, args.unseen, args.limit)
    redactor = Redactor(args.model_dir, Settings(**parse_config(args.child), gguf=args.gguf))
    list(redactor.redact([s.source for s in samples[:2]], [s.prompt for s in samples[:2]]))  # warm-up
    timed = redactor.configured()
    outputs = {r.index: r.model_text for r in timed.redact([s.source for s in samples], [s.prompt for s in samples])}
    print(json.dumps({"samples_per_s": timed.stats.samples_per_s, "seconds": round(timed.stats.generate_s, 2),
                      "tokens": timed.stats.tokens, "forward_passes": timed.stats.forward_passes,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "backend": timed.stats.backend, "outputs": [outputs[i] for i in range(len(samples))]}))
    return 0


def measure(args, set_name: str, config: str) -> list[dict]:
    """`args.repeats` runs of one configuration on one set, each in its own interpreter."""
    from pii_redact.core.errors import UserError

    command = [sys.executable, __file__, "--child", config, "--set", set_name, "--model-dir", args.model_dir,
               "--test", args.test, "--unseen", args.unseen, "--limit", str(args.limit)]
    command += ["--gguf", args.gguf] if args.gguf else []
    runs = []
    for _ in range(args.repeats):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"{config} on {set_name} failed: {done.stderr.strip().splitlines()[-1:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


def summary(set_name: str, config: str, runs: list[dict], reference: list[str] | None) -> dict:
    speeds = [r["samples_per_s"] for r in runs]
    outputs = runs[0]["outputs"]
    row = {"set": set_name, "config": config, **parse_config(config), "backend_ran": runs[0]["backend"],
           "samples": len(outputs), "samples_per_s": speeds, "median": statistics.median(speeds),
           "min": min(speeds), "max": max(speeds), "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
           "tokens": runs[0]["tokens"], "forward_passes": runs[0]["forward_passes"],
           "repeats_identical": all(r["outputs"] == outputs for r in runs)}
    if reference is not None:
        row["identical_to_first"] = sum(a == b for a, b in zip(outputs, reference))
    return row


def main(argv: list[str] | None = None) -> int:
    from pii_redact.cli import non_negative_int, positive_int
    from pii_redact.core.errors import UserError
    from pii_redact.core.files import check_can_write
    from pii_redact.models.loading import trained_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a finetune.py run (with a GGUF for llama.cpp)")
    parser.add_argument("--gguf", help="the GGUF llama.cpp runs (default: the run's own)")
    parser.add_argument("--test", default="data/test.jsonl", help="test32's source")
    parser.add_argument("--unseen", default=str(ROOT / "bench" / "unseen" / "unseen.jsonl"), help="unseen's source")
    parser.add_argument("--sets", default="test32,unseen", help=f"comma list of {', '.join(SETS)}")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma list of ENGINE/BATCH[/full]")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--limit", type=non_negative_int, default=0, help="the first N texts of each set (0: all)")
    parser.add_argument("--output", help="write the rows as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--set", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    configs, sets = args.configs.split(","), args.sets.split(",")
    for config in configs:
        parse_config(config)
    if unknown := [name for name in sets if name not in SETS]:
        raise UserError(f"--sets: unknown set {unknown[0]!r} (known: {', '.join(SETS)})")
    trained_model(args.model_dir, "outputs")  # a --model-dir that names nothing is refused here, not per run
    if args.output:
        check_can_write(args.output, "--output")
    rows = []
    for set_name in sets:
        reference = None
        for config in configs:
            runs = measure(args, set_name, config)
            rows.append(summary(set_name, config, runs, reference))
            reference = reference or runs[0]["outputs"]
            row = rows[-1]
            print(f"{set_name:<7} {config:<21} {row['median']:>7.3f} samples/s (min {row['min']:.3f}, max "
                  f"{row['max']:.3f})  peak {row['peak_rss_mib']:>5} MiB"
                  + (f"  identical {row['identical_to_first']}/{row['samples']}" if "identical_to_first" in row else ""),
                  flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({
            "model": args.model_dir, "gguf": args.gguf, "machine": platform.processor() or platform.machine(),
            "cpus": len(os.sched_getaffinity(0)), "repeats": args.repeats, "limit": args.limit,
            "command": " ".join(["python", "bench/bench_speed.py", *(argv if argv is not None else sys.argv[1:])]),
            "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from pii_redact.cli import run as run_main

    raise SystemExit(run_main(main))
