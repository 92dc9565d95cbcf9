"""Generation speed per engine: transformers vs llama.cpp (a run's GGUFs), plain greedy vs copy-aware
speculative decoding, free vs faithful decoding.

    python bench/bench_generate.py --model-dir outputs/cpu-100 --data data/test.jsonl --limit 48
    python bench/bench_generate.py --model-dir outputs/cpu-100 --batch-sizes 1,16 --modes free-plain,free-speculative
    python bench/bench_generate.py --model-dir outputs/cpu-100 --engines transformers,llama.cpp:f16,llama.cpp:q8_0

For each engine, mode and batch size it redacts the same samples (longest first, as evaluate.py
does) and reports samples/s, forward passes per output token and, for faithful decoding, the
share of the time spent in the constraint. Speculative rows are checked to give exactly the
outputs of the plain rows with the same engine and decoding, and every engine's rows against the
first engine's (the same mode, its first batch size); a mismatch is reported, never hidden.
llama.cpp runs one text at a time: its rows have batch size 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = {  # name -> (decoding, speculation)
    "free-plain": ("free", "off"), "free-speculative": ("free", "on"),
    "faithful-plain": ("faithful", "off"), "faithful-speculative": ("faithful", "on"),
}


def run(redactor, samples, mode: str, batch_size: int, engine: str = "transformers") -> dict:
    """Redact `samples` with one engine, mode and batch size; the Redactor's own statistics say
    how fast, how many forward passes per token and how much of the time the faithful constraint
    took. The model's raw outputs (before the safety net) are kept to compare."""
    decoding, speculation = MODES[mode]
    backend, _, kind = engine.partition(":")
    gguf = None
    if backend == "llama.cpp":
        from pii_redact.core.run_dir import RunDir

        gguf = str(RunDir.holding(redactor.model_dir).gguf(kind or "q8_0"))
    timed = redactor.configured(decoding=decoding, speculation=speculation, batch_size=batch_size,
                                backend=backend, gguf=gguf)
    out = {r.index: r.model_text for r in timed.redact([s.source for s in samples], [s.prompt for s in samples])}
    stats = timed.stats
    return {"engine": engine, "mode": mode, "batch_size": batch_size, "samples": len(samples),
            "seconds": round(stats.generate_s, 1),
            "samples_per_s": stats.samples_per_s, "tokens": stats.tokens, "forward_passes": stats.forward_passes,
            "passes_per_token": round(stats.forward_passes / max(1, stats.tokens), 3),
            "constraint_share": round(stats.constraint_s / stats.generate_s, 3) if decoding == "faithful" else None,
            "outputs": [out[i] for i in range(len(samples))]}


def _compare(row: dict, rows: list[dict], reference: str, reference_batch: int) -> None:
    """Count the row's outputs identical to its plain twin (same engine, decoding, batch) and to
    the reference engine's row of the same mode."""
    plain = next((r for r in rows if (r["engine"], r["batch_size"]) == (row["engine"], row["batch_size"])
                  and r["mode"] == row["mode"].replace("speculative", "plain") != row["mode"]), None)
    if plain is not None:
        row["identical_to_plain"] = sum(a == b for a, b in zip(row["outputs"], plain["outputs"]))
    ref = next((r for r in rows if (r["engine"], r["batch_size"], r["mode"]) == (reference, reference_batch, row["mode"])), None)
    if ref is not None and row["engine"] != reference:
        row[f"identical_to_{reference}"] = sum(a == b for a, b in zip(row["outputs"], ref["outputs"]))


def main(argv: list[str] | None = None) -> int:
    from pii_redact.cli import positive_int, positive_ints
    from pii_redact.core.errors import UserError
    from pii_redact.core.files import check_can_write

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a finetune.py run (or merged model) directory")
    parser.add_argument("--data", default="data/test.jsonl", help="samples to redact")
    parser.add_argument("--limit", type=positive_int, default=48, help="the first N samples")
    parser.add_argument("--batch-sizes", type=positive_ints, default="1,16")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--engines", default="transformers",
                        help="comma list of transformers, llama.cpp:f16, llama.cpp:q8_0 (a run's exported GGUFs)")
    parser.add_argument("--output", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    engines = args.engines.split(",")
    bad = [e for e in engines if e not in ("transformers", "llama.cpp", "llama.cpp:f16", "llama.cpp:q8_0")]
    if bad:
        raise UserError(f"--engines: unknown engine {bad[0]!r} (transformers, llama.cpp:f16, llama.cpp:q8_0)")
    unknown = [m for m in args.modes.split(",") if m not in MODES]
    if unknown:
        raise UserError(f"--modes: unknown mode {unknown[0]!r} (known: {', '.join(MODES)})")
    if args.output:
        check_can_write(args.output, "--output")

    import torch

    from pii_redact.data.records import read_samples
    from pii_redact.inference.redactor import Redactor
    from pii_redact.models.loading import trained_model

    model_dir, _ = trained_model(args.model_dir, "outputs")
    samples = read_samples(args.data, args.limit)
    redactor = Redactor(model_dir)
    list(redactor.redact([samples[0].source], [samples[0].prompt]))  # load and warm up: not timed
    rows: list[dict] = []
    for engine in engines:
        for batch_size in args.batch_sizes if engine == "transformers" else [1]:
            for mode in args.modes.split(","):
                row = run(redactor, samples, mode, batch_size, engine)
                _compare(row, rows, engines[0], args.batch_sizes[0])
                rows.append(row)
                print(f"{engine:<15} batch {batch_size:>3} {mode:<21} {row['samples_per_s']:>7.3f} samples/s  "
                      f"{row['passes_per_token']:.3f} passes/token"
                      + (f"  constraint {row['constraint_share']:.1%}" if row["constraint_share"] is not None else "")
                      + "".join(f"  {k.replace('_', ' ')} {v}/{len(samples)}" for k, v in row.items()
                                if k.startswith("identical")), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({
            "model": str(model_dir), "data": args.data, "samples": len(samples),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "rows": [{k: v for k, v in r.items() if k != "outputs"} for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    from pii_redact.cli import run as run_main

    raise SystemExit(run_main(main))
