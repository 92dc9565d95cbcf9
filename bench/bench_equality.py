"""Does today's default redact as the default before it did? evaluate.py run twice on the same
texts, the outputs and scores compared.

    python bench/bench_equality.py --model-dir outputs/my-run --data data/test.jsonl --limit 100 \\
        --output bench/results/cpu-equality-test.json
    python bench/bench_equality.py --model-dir outputs/my-run --data bench/unseen/unseen.jsonl \\
        --output bench/results/cpu-equality-unseen.json -- --mask-bias 0

before: evaluate.py --backend transformers --batch-size 16 --no-restricted-head (faithful decoding,
        all of the output layer, 16 texts at a time)
now:    evaluate.py with its defaults (on a CPU where the run has a GGUF, llama.cpp with many texts
        per step; elsewhere transformers with the output layer restricted to the allowed tokens)
Flags after `--` go to both (the same --mask-bias, say). --before and --now replace either side's
flags, written with an = (`--now="--backend transformers"` checks the restricted head alone);
--now may be given more than once, each compared with the one `before` run:

    python bench/bench_equality.py --model-dir outputs/my-run --data bench/unseen/unseen.jsonl \\
        --now= --now="--backend transformers" --output bench/results/cpu-equality-unseen.json

Reported per `now`: how many model outputs (predictions.jsonl's `prediction`) are identical, each
difference (the text's index, where the two outputs part and 40 characters of each from
there), every score of metrics.json that differs at the third decimal, and each side's
generation samples/s (evaluate.py's own timing: one run each, so a rough speed only).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BEFORE = "--backend transformers --batch-size 16 --no-restricted-head"


def evaluate(model_dir: str, data: str, limit: int, flags: list[str], out_dir: Path) -> tuple[dict, dict]:
    """({index: model output}, metrics) of one evaluate.py run."""
    from pii_redact.core.errors import UserError

    command = [sys.executable, str(ROOT / "evaluate.py"), "--model-dir", model_dir, "--data", data,
               "--limit", str(limit), "--output-dir", str(out_dir), *flags]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"evaluate.py {' '.join(flags)} failed: {done.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    return {row["index"]: row["prediction"] for row in rows}, json.loads((out_dir / "metrics.json").read_text())


def difference(index: int, before: str, now: str) -> dict:
    """Where two outputs part, and 40 characters of each from a little before there."""
    at = next((k for k, (a, b) in enumerate(zip(before, now)) if a != b), min(len(before), len(now)))
    start = max(0, at - 10)
    return {"index": index, "at": at, "before": before[start:at + 30], "now": now[start:at + 30]}


def flat(metrics: dict, prefix: str = "") -> dict[str, float]:
    """metrics.json's scores by dotted path (not its `generation` section: how, and how fast)."""
    out = {}
    for key, value in metrics.items():
        if not prefix and key == "generation":
            continue
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + key] = value
    return out


def compare(before: tuple[dict, dict], now: tuple[dict, dict]) -> dict:
    outputs_before, metrics_before = before
    outputs_now, metrics_now = now
    differences = [difference(i, outputs_before[i], outputs_now[i]) for i in sorted(outputs_before)
                   if outputs_before[i] != outputs_now.get(i)]
    a, b = flat(metrics_before), flat(metrics_now)
    metrics = {k: [a[k], b[k]] for k in sorted(a.keys() & b.keys()) if round(a[k], 3) != round(b[k], 3)}
    return {"texts": len(outputs_before), "identical": len(outputs_before) - len(differences),
            "differences": differences, "metrics_that_differ": metrics,
            "samples_per_s": [m.get("generation", {}).get("samples_per_s") for m in (metrics_before, metrics_now)]}


def main(argv: list[str] | None = None) -> int:
    from pii_redact.cli import non_negative_int
    from pii_redact.core.files import check_can_write
    from pii_redact.models.loading import trained_model

    argv = sys.argv[1:] if argv is None else argv
    both = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model-dir", required=True, help="a finetune.py run")
    parser.add_argument("--data", default="data/test.jsonl")
    parser.add_argument("--limit", type=non_negative_int, default=0, help="the first N texts (0: all)")
    parser.add_argument("--before", default=BEFORE, help="evaluate.py flags of the default before")
    parser.add_argument("--now", action="append", help="evaluate.py flags of today's default (none: its defaults); "
                        "repeatable, each compared with the one `before` run")
    parser.add_argument("--output", help="write the comparison as JSON here")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.output:
        check_can_write(args.output, "--output")
    trained_model(args.model_dir, "outputs")  # a --model-dir that names nothing is refused before either run
    nows = args.now or [""]
    with tempfile.TemporaryDirectory() as work:
        before = evaluate(args.model_dir, args.data, args.limit, [*shlex.split(args.before), *both], Path(work) / "b")
        sides = [{"now": flags, **compare(before, evaluate(args.model_dir, args.data, args.limit,
                                                           [*shlex.split(flags), *both], Path(work) / f"n{k}"))}
                 for k, flags in enumerate(nows)]
    for side in sides:
        overall = {k: [round(v, 4) for v in pair] for k, pair in side["metrics_that_differ"].items()
                   if not k.startswith(("by_", "per_label."))}
        print(f"now {side['now'] or '(defaults)'}: {side['identical']}/{side['texts']} identical; samples/s before, "
              f"now {side['samples_per_s']}; overall scores that differ at the third decimal (all in --output): "
              f"{overall or 'none'}")
        for d in side["differences"]:
            print(f"  text {d['index']} at {d['at']}: {d['before']!r} / {d['now']!r}")
    if args.output:
        result = {"model": args.model_dir, "data": args.data, "limit": args.limit, "before": args.before,
                  "both": both, "sides": sides}
        Path(args.output).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    from pii_redact.cli import run as run_main

    raise SystemExit(run_main(main))
