"""Resident memory of CPU fine-tuning, step by step: does it stay flat after warm-up?

    python bench/bench_memory.py --model <gemma-3-270m dir> --steps 14       # finetune.py's defaults
    UNSLOTH_CPU_CHUNKED_CE=0 python bench/bench_memory.py --model <dir> --steps 14 \
        --gradient-checkpointing off --keep-freed-memory                      # as before the fix

Trains exactly as finetune.py does (`training.finetune.setup`, batch 16 unless --batch-size), and
after every optimizer step records the process's resident set size (RSS) and the step's time. Writes the rows as JSON with --output. Linux only (reads /proc/self/statm).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from pii_redact.cli import non_negative_int, positive_int
    from pii_redact.core.errors import UserError
    from pii_redact.core.files import check_can_write

    parser.add_argument("--model", required=True, help="local Hugging Face model directory")
    parser.add_argument("--data-dir", default="data", help="prepare_data.py output (train.jsonl)")
    parser.add_argument("--steps", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"], default="auto",
                        help="auto: finetune.py's default (on on a CPU)")
    parser.add_argument("--pad-to-multiple-of", type=non_negative_int, default=0,
                        help="pad every batch to a multiple of N tokens (fewer distinct shapes; 0: as finetune.py)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="skip finetune.py's end-of-step malloc_trim (to measure what it saves)")
    parser.add_argument("--output", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    # everything that can be wrong is found before the 10+ s of loading
    if not Path(args.model).is_dir():
        raise UserError(f"--model {args.model}: no such model directory")
    if not (Path(args.data_dir) / "train.jsonl").is_file():
        raise UserError(f"--data-dir {args.data_dir}: no train.jsonl in it (run prepare_data.py)")
    if args.output:
        check_can_write(args.output, "--output")

    from pii_redact.training.device import import_unsloth, rss_gib

    import_unsloth()
    from transformers import TrainerCallback

    from pii_redact.config import TrainConfig
    from pii_redact.training.callbacks import ReleaseMemory
    from pii_redact.training.finetune import setup

    rows: list[dict] = []

    class Recorder(TrainerCallback):
        """RSS as each step begins: what the previous steps left resident (after finetune.py's
        own end-of-step callbacks, which run after this one's on_step_end)."""

        def on_step_begin(self, targs, state, control, **kwargs):
            if rows:
                rows[-1]["rss_gib"] = round(rss_gib(), 2)
                print(f"after step {rows[-1]['step']}: RSS {rows[-1]['rss_gib']:.2f} GiB, {rows[-1]['seconds']} s", flush=True)
            self.start = time.perf_counter()

        def on_step_end(self, targs, state, control, **kwargs):
            rows.append({"step": state.global_step, "seconds": round(time.perf_counter() - self.start, 1)})

        def on_train_end(self, targs, state, control, **kwargs):
            self.on_step_begin(targs, state, control)

    config = TrainConfig(model=args.model, data_dir=args.data_dir, max_steps=args.steps, batch_size=args.batch_size,
                         eval_steps=0, save_steps=10**9, logging_steps=args.steps,
                         gradient_checkpointing={"auto": None, "on": True, "off": False}[args.gradient_checkpointing])
    with tempfile.TemporaryDirectory() as tmp:
        trainer, model, _, _ = setup(config, Path(args.data_dir) / "train.jsonl", None, Path(tmp), [Recorder()])
        if args.keep_freed_memory:
            trainer.remove_callback(ReleaseMemory)
        if args.pad_to_multiple_of:
            trainer.data_collator.pad_to_multiple_of = args.pad_to_multiple_of
        loaded = rss_gib()
        trainer.train()
    chunked = bool(getattr(model.get_base_model(), "_unsloth_cpu_chunked_ce", False))
    after_warmup = [r["rss_gib"] for r in rows[2:]] or [r["rss_gib"] for r in rows]  # from step 3 on
    summary = {"chunked_loss": chunked, "gradient_checkpointing": args.gradient_checkpointing,
               "pad_to_multiple_of": args.pad_to_multiple_of,
               "release_memory": not args.keep_freed_memory, "batch_size": args.batch_size, "rss_after_load_gib": round(loaded, 2),
               "rss_peak_gib": max(r["rss_gib"] for r in rows),
               "rss_growth_after_step_3_gib": round(after_warmup[-1] - after_warmup[0], 2),
               "mean_step_s": round(sum(r["seconds"] for r in rows[1:]) / max(1, len(rows) - 1), 1),
               "steps": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "steps"}))
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    from pii_redact.cli import run

    raise SystemExit(run(main))
