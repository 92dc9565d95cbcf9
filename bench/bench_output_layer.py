"""The output layer's share of a decoding step: one greedy step of a batch with a KV cache, with
the model's 262,144-wide output layer (what every engine computes) and without it (the model's
body only: what a head restricted to the few tokens faithful decoding allows would cost, plus a
negligible few dozen rows).

    python bench/bench_output_layer.py --model-dir outputs/my-run --batch-sizes 16,1

Random token ids stand in for a prompt of --context tokens: the cost of a step does not depend
on which tokens they are. Each timing is the mean of --repeats steps, each on a fresh copy of
the same cache (the copy's own time is measured and taken off).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def step_seconds(fn, cache, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn(copy.deepcopy(cache))
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    from pii_redact.cli import positive_int, positive_ints

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a finetune.py run (or merged model) directory")
    parser.add_argument("--batch-sizes", type=positive_ints, default="16,1")
    parser.add_argument("--context", type=positive_int, default=300, help="tokens already in the KV cache")
    parser.add_argument("--repeats", type=positive_int, default=8, help="steps timed per measurement")
    args = parser.parse_args(argv)

    import torch

    from pii_redact.models.loading import load_for_generation, trained_model

    model_dir, _ = trained_model(args.model_dir, "outputs")
    model, _ = load_for_generation(model_dir)
    vocab = model.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(0)
    for batch in args.batch_sizes:
        ids = torch.randint(0, vocab, (batch, args.context), generator=generator)
        step = torch.randint(0, vocab, (batch, 1), generator=generator)
        with torch.inference_mode():
            cache = model(input_ids=ids.to(model.device), use_cache=True, logits_to_keep=1).past_key_values
            step = step.to(model.device)
            copying = step_seconds(lambda c: None, cache, args.repeats)
            full = step_seconds(lambda c: model(input_ids=step, past_key_values=c, use_cache=True, logits_to_keep=1),
                                cache, args.repeats) - copying
            body = step_seconds(lambda c: model.model(input_ids=step, past_key_values=c, use_cache=True),
                                cache, args.repeats) - copying
        print(f"batch {batch:>3}: a step {1000 * full:.1f} ms, without the output layer {1000 * body:.1f} ms: "
              f"the output layer is {max(0.0, (full - body) / full):.0%} of it", flush=True)
    return 0


if __name__ == "__main__":
    from pii_redact.cli import run as run_main

    raise SystemExit(run_main(main))
