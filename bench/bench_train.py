"""Training and generation throughput of the suite vs the reference ("labspace") setup, one GPU.

    python bench/bench_train.py --model /models/gemma-3-270m            # real weights, data/ splits
    python bench/bench_train.py --random-270m --steps 40                 # Gemma 3 270M shape, random weights
    python bench/bench_train.py --model DIR --variants suite,labspace,suite-padded --output bench/results/h100.json

Each variant builds its trainer with the recipe's own steps (`pii_redact.training.finetune`), the code path finetune.py runs,
times `--steps` optimizer steps after `--warmup` untimed ones, and reports training tokens/s (real,
non-pad tokens), model FLOP utilisation against a matmul ceiling measured on the same device, peak GPU
memory and the implied time per epoch of the train split. Then it times greedy generation (samples/s)
with transformers and, when installed with a GPU, vLLM, in a fresh process that does not import
Unsloth (as evaluate.py runs it). Ratios to the reference are printed side by side.

With --random-270m the texts are still tokenized as the real model would if --tokenizer names the
real Gemma 3 tokenizer; without it the test tokenizer's pieces make sequences several times longer.
Random weights also never stop early, so their generation row is the worst case: every sample runs
its whole token budget.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package, and tests/tiny_model.py for random weights

# name -> (TrainConfig overrides, loss on the whole text?)
VARIANTS = {
    # exactly finetune.py's defaults (padding-free left to Unsloth: on where its GPU kernels allow)
    "suite": ({}, False),
    "suite-padded": ({"padding_free": False}, False),
    # the reference notebook/script: batch 8, r=128, loss on prompt + response (the plain mean: no
    # decision weights, whose positions the whole-text labels would move), padded batches
    "labspace": ({"batch_size": 8, "lora_r": 128, "lora_alpha": 128, "padding_free": False, "decision_weight": 1.0}, True),
    # larger batches: a 270M model leaves a big GPU mostly idle at 16 (throughput only; the lr
    # would need retuning before such a run is a recipe)
    "suite-b64": ({"batch_size": 64}, False),
    "suite-padded-b64": ({"batch_size": 64, "padding_free": False}, False),
}


def matmul_tflops(device: str) -> float:
    """The device's achievable dense matmul rate (bf16 on GPU, fp32 on CPU), measured, in TFLOP/s."""
    import torch

    n, dtype, reps = (8192, torch.bfloat16, 50) if device == "cuda" else (1024, torch.float32, 5)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def flops_per_token(model) -> float:
    """LoRA training FLOPs per token: forward (2N) + backward through activations (2N) over every
    matmul weight, lm_head included; frozen weights need no weight gradients, and the LoRA and
    attention-score terms are small at these lengths (left out, so MFU is slightly understated)."""
    import torch

    matmul_params = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lora_" not in name:
            matmul_params += module.weight.numel()
    return 4.0 * matmul_params


def train_variant(name: str, args, base_config, data_dir: Path, peak_tflops: float) -> dict:
    import torch
    from transformers import TrainerCallback

    from pii_redact.training import finetune

    overrides, supervise_prompt = VARIANTS[name]
    config = base_config.__class__(**{**vars(base_config), **overrides, "max_steps": args.warmup + args.steps,
                                      "eval_steps": 0, "save_steps": 10**9, "warmup_steps": 0})

    class Timer(TrainerCallback):
        """(step, time, non-pad tokens so far) after each step: the counter finetune.py reports."""

        def __init__(self):
            self.marks: list[tuple[int, float, int]] = []

        def on_step_end(self, targs, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append((state.global_step, time.perf_counter(), state.num_input_tokens_seen))

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        splits = finetune.read_splits(config, data_dir / "train.jsonl", None)
        model, tokenizer, dtype = finetune.load_model(config)
        train_ds, _ = finetune.tokenize(config, tokenizer, splits)
        if supervise_prompt:  # the reference's loss on the whole text, not only the response
            train_ds = train_ds.map(lambda row: {"labels": row["input_ids"]})
            train_ds._unsloth_truncated_to = config.max_seq_length
        trainer = finetune.build_trainer(config, model, tokenizer, dtype, train_ds, None, Path(tmp), [timer])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        # the rows as stored: through the weighted set's transform each would be walked for its decisions
        epoch_tokens = sum(len(ids) for ids in trainer.train_dataset.with_format(None)["input_ids"])
        fpt = flops_per_token(model)
    (s0, t0, n0), (s1, t1, n1) = timer.marks[args.warmup - 1], timer.marks[-1]
    tokens_per_s = (n1 - n0) / (t1 - t0)
    row = {
        "variant": name, "batch_size": config.batch_size, "lora_r": config.lora_r,
        # what the trainer used, after Unsloth's choice
        "padding_free": bool(getattr(trainer.args, "padding_free", False)), "loss_on": "whole text" if supervise_prompt else "response",
        "steps_timed": s1 - s0, "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(tokens_per_s * fpt / (peak_tflops * 1e12), 4),
        "epoch_tokens": epoch_tokens, "epoch_s": round(epoch_tokens / tokens_per_s, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
    }
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def generation_rows_in_subprocess(args, model_dir: Path, data_dir: Path) -> list[dict]:
    """generation_rows() in a fresh interpreter: this process imported Unsloth, which patches
    transformers; evaluate.py generates without it, and that is what the row must time."""
    import subprocess

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, "--generation-only", str(model_dir), "--data-dir", str(data_dir),
               "--eval-samples", str(args.eval_samples), "--eval-batch-size", str(args.eval_batch_size),
               "--max-new-tokens", str(args.max_new_tokens), "--output", out.name]
        done = subprocess.run(cmd)
        if done.returncode != 0:
            return [{"engine": "transformers", "error": f"generation subprocess exited {done.returncode}"}]
        return json.loads(Path(out.name).read_text())


def generation_rows(args, model_dir: Path, data_dir: Path) -> list[dict]:
    """Samples/s of the Redactor (evaluate.py's defaults otherwise) with transformers and, where it
    runs, vLLM with free decoding, after an untimed warm-up of two samples."""
    from pii_redact.data.records import read_samples
    from pii_redact.inference import generate
    from pii_redact.inference.redactor import Redactor, Settings

    samples = read_samples(data_dir / "test.jsonl", args.eval_samples)
    sources, prompts = [s.source for s in samples], [s.prompt for s in samples]
    settings = Settings(backend="transformers", batch_size=args.eval_batch_size, max_new_tokens=args.max_new_tokens)
    engines = [("transformers", settings)]
    if generate.vllm_usable():
        engines.append(("vllm", Settings(backend="vllm", decoding="free", max_new_tokens=args.max_new_tokens)))
    rows, redactor = [], None
    for engine, engine_settings in engines:
        try:
            redactor = Redactor(model_dir, engine_settings) if redactor is None else redactor.configured(
                **vars(engine_settings))
            list(redactor.redact(sources[:2], prompts[:2]))  # load and warm up: not timed
            timed = redactor.configured()
            list(timed.redact(sources, prompts))
            rows.append({"engine": engine, "samples": timed.stats.samples, "samples_per_s": timed.stats.samples_per_s})
        except Exception as exc:  # vLLM pins its own stack; its failure must not cost the other rows
            if engine != "vllm":
                raise
            rows.append({"engine": "vllm", "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="local Hugging Face model directory")
    source.add_argument("--random-270m", action="store_true", help="Gemma 3 270M shape with random weights")
    source.add_argument("--tiny", action="store_true", help="a tiny random model (smoke test of this script)")
    source.add_argument("--generation-only", metavar="MODEL_DIR", help=argparse.SUPPRESS)  # see generation_rows_in_subprocess
    parser.add_argument("--tokenizer", help="with --random-270m/--tiny: the tokenizer directory to use "
                        "(the real Gemma 3 one gives real sequence lengths)")
    parser.add_argument("--data-dir", default="data", help="prepare_data.py output (train/test .jsonl)")
    parser.add_argument("--variants", default="suite,labspace", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, autotuning)")
    parser.add_argument("--eval-samples", type=int, default=256, help="test samples for generation speed (0: skip)")
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=0, help="0: the per-sample budget evaluate.py uses")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:  # tokens/s is measured from the end of the last warm-up step
        parser.error("--steps and --warmup must be at least 1")
    if args.eval_samples < 0 or args.eval_batch_size < 1 or args.max_new_tokens < 0:
        parser.error("--eval-samples and --max-new-tokens must be 0 or more, --eval-batch-size at least 1")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    if args.generation_only:  # the child of generation_rows_in_subprocess: no Unsloth here
        from pii_redact.cli import quiet_startup_warnings

        quiet_startup_warnings()
        rows = generation_rows(args, Path(args.generation_only), Path(args.data_dir))
        Path(args.output).write_text(json.dumps(rows))
        return 0

    from pii_redact.training.device import import_unsloth
    from pii_redact.training.finetune import library_versions

    import_unsloth()  # before transformers and TRL, as finetune.py does
    import torch

    from pii_redact.config import TrainConfig
    from pii_redact.core.errors import UserError

    device = "cuda" if torch.cuda.is_available() else "cpu"
    data_dir = Path(args.data_dir)
    train_rows: list[dict] = []
    gen_rows: list[dict] = []
    peak = 0.0

    def save() -> None:
        """Rows are written as they come: a later failure (vLLM, say) loses none."""
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(json.dumps({
                "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                "matmul_tflops": round(peak, 3), "versions": library_versions(), "args": vars(args),
                "train": train_rows, "generation": gen_rows}, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_dir = Path(args.model)
        else:
            from tiny_model import build_model

            model_dir = build_model(Path(tmp) / "model", shape="tiny" if args.tiny else "gemma-3-270m",
                                    dtype="bfloat16" if device == "cuda" else "float32", tokenizer_dir=args.tokenizer)
        if not (data_dir / "train.jsonl").exists():
            raise SystemExit(f"error: {data_dir}/train.jsonl not found: run prepare_data.py --model {model_dir}")
        base = TrainConfig(model=str(model_dir))  # finetune.py's defaults
        peak = matmul_tflops(device)
        print(f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}, "
              f"measured matmul ceiling {peak:.3g} TFLOP/s")
        try:
            for name in args.variants.split(","):
                try:
                    train_rows.append(train_variant(name, args, base, data_dir, peak))
                except UserError:
                    raise
                except Exception as exc:  # one variant failing (out of memory, say) must not cost the others
                    import traceback

                    traceback.print_exc()
                    train_rows.append({"variant": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                    if device == "cuda":
                        torch.cuda.empty_cache()
                save()
            if args.eval_samples:
                gen_rows.extend(generation_rows_in_subprocess(args, model_dir, data_dir))
                save()
        except UserError as exc:
            raise SystemExit(f"error: {exc}") from None

    failed = [r for r in train_rows if "error" in r]
    train_rows = [r for r in train_rows if "error" not in r]
    for r in failed:
        print(f"variant {r['variant']} failed: {r['error']}")
    if not train_rows:
        return 1
    reference = next((r for r in train_rows if r["variant"] == "labspace"), train_rows[0])
    print(f"\n{'variant':<14}{'batch':>6}{'r':>5}{'loss on':>12}{'pad-free':>9}{'tok/s':>12}{'vs ref':>8}"
          f"{'MFU':>7}{'epoch s':>9}{'peak GiB':>9}")
    for r in train_rows:
        print(f"{r['variant']:<14}{r['batch_size']:>6}{r['lora_r']:>5}{r['loss_on']:>12}{str(r['padding_free']):>9}"
              f"{r['tokens_per_s']:>12,.0f}{r['tokens_per_s'] / reference['tokens_per_s']:>7.2f}x"
              f"{r['mfu']:>7.1%}{r['epoch_s']:>9,.0f}{r['peak_mem_gib'] if r['peak_mem_gib'] is not None else '-':>9}")
    for r in gen_rows:
        if "error" in r:
            print(f"generation {r['engine']:<13} failed: {r['error']}")
        else:
            print(f"generation {r['engine']:<13} {r['samples_per_s']:>8.2f} samples/s over {r['samples']} samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
