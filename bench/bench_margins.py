"""Where llama.cpp's redactions part from transformers', how close was the choice?

    python bench/bench_margins.py --model-dir outputs/my-run --data bench/unseen/unseen.jsonl \\
        --output bench/results/margins-unseen.json

llama.cpp redacts the texts as evaluate.py's default does on a CPU (the run's GGUF, faithful
decoding, many texts per step), and every step keeps the scores it chose by: the logits of the
tokens the constraint allows, with the mask bias. Transformers (the weights the GGUF was made from,
fp32 on the CPU) then reads each prompt with llama.cpp's tokens after it, in one pass, and takes
at every step the token it would have chosen under the same constraint. Where the two first
choose differently, each engine's margin is how much it preferred its own token over the other's;
their sum, the *shift*, is how far the two engines' logit gaps between those two tokens lie apart.

A difference is a near-tie when that shift is no larger than the shifts at the steps where the
engines agree (for llama.cpp's two best tokens there): the rounding of 8-bit weights and
activations, nothing the model decided. A shift far past them would be a real disagreement.

Transformers reads each text alone and in one pass, where evaluate.py's transformers runs 16
left-padded texts a token at a time: both are exact to within float rounding, which is far below
the shifts measured here, but a tie at that level could still go either way.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOISE_QUANTILES = (0.5, 0.9, 0.99, 0.999)


def recording_texts(tokenizer, prompts, sources, mask_bias: float, placeholder_bounds: str):
    """llama.cpp's texts (`llamacpp._Texts`) whose constraints keep, per step, the scores of the
    tokens they allow ({token: score}), and whose finished texts keep their tokens."""
    from pii_redact.inference import faithful, llamacpp

    class Scored(faithful.Decoder):
        def __init__(self, *args):
            super().__init__(*args)
            self.steps: list[dict[int, float]] = []

        def restrict(self, row, scores, out=None):
            out = super().restrict(row, scores, out)
            allowed = self.allowed(row)
            self.steps.append(dict(zip(allowed, out[allowed].tolist())))
            return out

    class Recording(llamacpp._Texts):
        def __init__(self, *args):
            super().__init__(*args)
            self.steps: dict[int, list[dict[int, float]]] = {}
            self.tokens: dict[int, list[int]] = {}
            self.outputs: dict[int, str] = {}

        def decoder(self, i: int):
            decoder = Scored(self.vocab, [self.sources[i].strip()], self.stops, self.mask_bias, self.bounds)
            self.steps[i] = decoder.steps
            return decoder

        def done(self, i, row, decoder, stats, passes=0):
            self.tokens[i] = list(row.tokens)
            result = super().done(i, row, decoder, stats, passes)
            self.outputs[i] = result[1]
            return result

    return Recording(tokenizer, prompts, sources, "faithful", mask_bias, placeholder_bounds)


def run_llama_cpp(engine, texts, batch_size: int) -> None:
    """Redact every text as `llamacpp.generate` does (each text's own token budget)."""
    from tqdm import tqdm

    from pii_redact.inference import llamacpp

    for _ in tqdm(llamacpp._decode(engine, texts, 0, "auto", None, batch_size), total=len(texts.sources),
                  desc="llama.cpp", unit="text"):
        pass


def transformers_logits(model, prompt: list[int], tokens: list[int]):
    """Transformers' logits for each of `tokens`, with the prompt and the tokens before it read."""
    import torch

    ids = torch.tensor([prompt + tokens[:-1]])
    with torch.inference_mode():
        return model(ids, logits_to_keep=len(tokens)).logits[0].float()


def compare_text(i: int, texts, logits, tokenizer) -> tuple[dict, list[float]]:
    """(text i's row, the shifts at the steps where the engines agree): replay its constraint
    along llama.cpp's tokens, with transformers' choice at each step, up to where they part."""
    from pii_redact.inference import llamacpp

    tokens, steps = texts.tokens[i], texts.steps[i]
    decoder = llamacpp._Texts.decoder(texts, i)  # the same constraint, recording nothing
    shifts, row = [], {"index": i, "tokens": len(tokens), "parted_at": None}
    for k, token in enumerate(tokens):
        ours = steps[k]
        scores = decoder.restrict(0, logits[k])
        theirs = {t: float(scores[t]) for t in ours}
        if set(decoder.allowed(0)) != set(ours):
            raise RuntimeError(f"text {i}, step {k}: the two replays of the constraint allow different tokens")
        choice = int(scores.argmax())  # transformers' greedy choice: the lowest id among equal scores
        if choice != token:
            llama_margin, transformers_margin = ours[token] - ours[choice], theirs[choice] - theirs[token]
            row.update(parted_at=k, llama_cpp_token=tokenizer.decode([token]), llama_cpp_token_id=token,
                       transformers_token=tokenizer.decode([choice]), transformers_token_id=choice,
                       llama_cpp_margin=round(llama_margin, 4), transformers_margin=round(transformers_margin, 4),
                       shift=round(llama_margin + transformers_margin, 4))
            return row, shifts
        if len(ours) > 1:  # the agreeing step's gap to llama.cpp's second choice, in both engines
            second = max((t for t in ours if t != token), key=ours.get)
            shifts.append(abs((ours[token] - ours[second]) - (theirs[token] - theirs[second])))
        decoder.consume(0, token)
    return row, shifts



def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(rows: list[dict], shifts: list[float]) -> dict:
    """The counts, the agreeing steps' shifts, and where each parting's shift lies among them."""
    parted = [row for row in rows if row["parted_at"] is not None]
    noise = {f"p{100 * q:g}": round(quantile(shifts, q), 4) for q in NOISE_QUANTILES} if shifts else {}
    if shifts:
        noise["max"] = round(max(shifts), 4)
        for row in parted:
            row["agreeing_steps_shifted_as_far"] = round(sum(s >= row["shift"] for s in shifts) / len(shifts), 4)
    margins = [row["transformers_margin"] for row in parted]
    return {"texts": len(rows), "same_tokens": len(rows) - len(parted), "parted": len(parted),
            "agreeing_steps": len(shifts), "agreeing_shift": noise,
            "parted_within_agreeing_p99": sum(row["shift"] <= noise.get("p99", -1) for row in parted),
            "parted_within_agreeing_max": sum(row["shift"] <= noise.get("max", -1) for row in parted),
            "transformers_margin_median": round(statistics.median(margins), 4) if margins else None,
            "transformers_margin_max": max(margins, default=None), "rows": rows}


def mask_bias(text: str) -> float:
    from pii_redact.config import MASK_BIAS_RANGE

    value = float(text)
    if problem := MASK_BIAS_RANGE(value):
        raise argparse.ArgumentTypeError(f"{problem}, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from pii_redact.cli import non_negative_int, positive_int
    from pii_redact.core.errors import UserError
    from pii_redact.core.files import check_can_write
    from pii_redact.data.records import read_samples
    from pii_redact.inference import llamacpp
    from pii_redact.inference.redactor import Settings, resolve
    from pii_redact.models.loading import load_for_generation, load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model-dir", required=True, help="a finetune.py run with a GGUF")
    parser.add_argument("--data", default=str(ROOT / "bench" / "unseen" / "unseen.jsonl"),
                        help="the texts (default: the hand-written set)")
    parser.add_argument("--limit", type=non_negative_int, default=0, help="the first N texts (0: all)")
    parser.add_argument("--gguf", help="the GGUF llama.cpp runs (default: the run's own, q8_0 first)")
    parser.add_argument("--batch-size", type=positive_int, default=Settings.batch_size,
                        help="texts per llama.cpp step (default: evaluate.py's)")
    parser.add_argument("--mask-bias", type=mask_bias, help="the privacy dial (default: the run's calibrated one)")
    parser.add_argument("--output", help="write the summary and every text's row as JSON here")
    args = parser.parse_args(argv)
    if args.output:
        check_can_write(args.output, "--output")
    resolved = resolve(Settings(backend="llama.cpp", gguf=args.gguf, batch_size=args.batch_size,
                                mask_bias=args.mask_bias), args.model_dir)
    samples = read_samples(args.data, args.limit)
    if not samples:
        raise UserError(f"{args.data}: no texts to redact")
    tokenizer = load_tokenizer(resolved.model_dir)
    texts = recording_texts(tokenizer, [s.prompt for s in samples], [s.source for s in samples],
                            resolved.mask_bias, Settings.placeholder_bounds)
    engine = llamacpp.Engine(resolved.gguf)
    run_llama_cpp(engine, texts, resolved.batch_size)
    engine.close()

    model, _ = load_for_generation(resolved.model_dir, "cpu")
    rows, shifts = [], []
    for i in tqdm(range(len(samples)), desc="transformers", unit="text"):
        if not texts.tokens[i]:
            rows.append({"index": i, "tokens": 0, "parted_at": None})
            continue
        row, agreeing = compare_text(i, texts, transformers_logits(model, texts.encoded[i], texts.tokens[i]),
                                     tokenizer)
        rows.append(row)
        shifts += agreeing
    result = summarize(rows, shifts)

    noise = result["agreeing_shift"]
    print(f"{result['same_tokens']}/{result['texts']} texts: llama.cpp's tokens are transformers' choices "
          f"throughout; {result['parted']} part. Shift at the {result['agreeing_steps']} agreeing steps: "
          + ", ".join(f"{k} {v}" for k, v in noise.items()))
    print(f"partings within the agreeing steps' p99: {result['parted_within_agreeing_p99']}/{result['parted']}, "
          f"within their max: {result['parted_within_agreeing_max']}/{result['parted']}")
    for row in result["rows"]:
        if row["parted_at"] is not None:
            print(f"  text {row['index']} at token {row['parted_at']}: llama.cpp {row['llama_cpp_token']!r} by "
                  f"{row['llama_cpp_margin']:.3f}, transformers {row['transformers_token']!r} by "
                  f"{row['transformers_margin']:.3f}; shift {row['shift']:.3f}, as far or farther at "
                  f"{100 * row.get('agreeing_steps_shifted_as_far', 0):.1f}% of the agreeing steps")
    if args.output:
        Path(args.output).write_text(json.dumps({
            "model": args.model_dir, "gguf": resolved.gguf.name, "data": args.data, "limit": args.limit, "batch_size": resolved.batch_size,
            "mask_bias": resolved.mask_bias,
            "command": " ".join(["python", "bench/bench_margins.py", *(argv if argv is not None else sys.argv[1:])]),
            **result}, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    from pii_redact.cli import run as run_main

    raise SystemExit(run_main(main))
