"""Generation speed: plain greedy vs copy-aware speculative decoding, free vs faithful decoding.

    python bench/bench_generate.py --model-dir outputs/cpu-100 --data data/test.jsonl --limit 48
    python bench/bench_generate.py --model-dir outputs/cpu-100 --batch-sizes 1,16 --modes free-plain,free-speculative

For each mode and batch size it redacts the same samples (longest first, as evaluate.py does)
and reports samples/s, forward passes per output token and, for faithful decoding, the share of
the time spent in the constraint. Speculative rows are checked to give exactly the outputs of
the plain rows with the same decoding; a mismatch is reported, never hidden.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = {  # name -> (decoding, speculation)
    "free-plain": ("free", "off"), "free-speculative": ("free", "on"),
    "faithful-plain": ("faithful", "off"), "faithful-speculative": ("faithful", "on"),
}


def run(model, tokenizer, samples, mode: str, batch_size: int) -> dict:
    from pii_redact import faithful, generate

    decoding, speculation = MODES[mode]
    spent = {"constraint_s": 0.0}
    originals = {name: getattr(faithful.Decoder, name) for name in ("allowed", "consume", "text")}

    def timed(name):
        def wrapper(self, *args):
            start = time.perf_counter()
            try:
                return originals[name](self, *args)
            finally:
                spent["constraint_s"] += time.perf_counter() - start
        return wrapper

    for name in originals:
        setattr(faithful.Decoder, name, timed(name))
    stats: dict = {}
    try:
        start = time.perf_counter()
        out = dict((i, text) for i, text, _ in generate.generate_transformers(
            model, tokenizer, [s.prompt for s in samples], [s.source for s in samples], batch_size,
            decoding=decoding, speculation=speculation, stats=stats))
        elapsed = time.perf_counter() - start
    finally:
        for name, original in originals.items():
            setattr(faithful.Decoder, name, original)
    return {"mode": mode, "batch_size": batch_size, "samples": len(samples), "seconds": round(elapsed, 1),
            "samples_per_s": round(len(samples) / elapsed, 3), "tokens": stats.get("tokens", 0),
            "forward_passes": stats.get("forward_passes", 0),
            "passes_per_token": round(stats.get("forward_passes", 0) / max(1, stats.get("tokens", 1)), 3),
            "constraint_share": round(spent["constraint_s"] / elapsed, 3) if decoding == "faithful" else None,
            "outputs": [out[i] for i in range(len(samples))]}


def main(argv: list[str] | None = None) -> int:
    from pii_redact.cli import positive_int, positive_ints
    from pii_redact.errors import UserError
    from pii_redact.files import check_can_write

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a finetune.py run (or merged model) directory")
    parser.add_argument("--data", default="data/test.jsonl", help="samples to redact")
    parser.add_argument("--limit", type=positive_int, default=48, help="the first N samples")
    parser.add_argument("--batch-sizes", type=positive_ints, default="1,16")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--output", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modes.split(",") if m not in MODES]
    if unknown:
        raise UserError(f"--modes: unknown mode {unknown[0]!r} (known: {', '.join(MODES)})")
    if args.output:
        check_can_write(args.output, "--output")

    import torch

    from pii_redact.data import read_samples
    from pii_redact.generate import load_for_generation
    from pii_redact.runs import trained_model

    model_dir, _ = trained_model(args.model_dir, "outputs")
    model, tokenizer = load_for_generation(model_dir)
    samples = read_samples(args.data, args.limit)
    rows = []
    for batch_size in args.batch_sizes:
        for mode in args.modes.split(","):
            row = run(model, tokenizer, samples, mode, batch_size)
            plain = next((r for r in rows if r["batch_size"] == batch_size
                          and r["mode"] == mode.replace("speculative", "plain") != mode), None)
            if plain is not None:
                row["identical_to_plain"] = sum(a == b for a, b in zip(row["outputs"], plain["outputs"]))
            rows.append(row)
            print(f"batch {batch_size:>3} {mode:<21} {row['samples_per_s']:>7.3f} samples/s  "
                  f"{row['passes_per_token']:.3f} passes/token"
                  + (f"  constraint {row['constraint_share']:.1%}" if row["constraint_share"] is not None else "")
                  + (f"  identical {row['identical_to_plain']}/{len(samples)}" if "identical_to_plain" in row else ""),
                  flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({
            "model": str(model_dir), "data": args.data, "samples": len(samples),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "rows": [{k: v for k, v in r.items() if k != "outputs"} for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    from pii_redact.cli import run as run_main

    raise SystemExit(run_main(main))
