"""Does padding-free training compute the same loss as padded training? A GPU check.

    python bench/check_padding_free.py --model DIR --data-dir data

Builds the trainer exactly as finetune.py does (padding-free left to Unsloth), reports whether
Unsloth turned padding-free batching on, then computes the loss of the same samples twice through
the trainer's own loss: once as the trainer collates them (one packed row when padding-free is on)
and once padded. Packed samples must not attend to each other, so the two losses agree up to bf16
noise (relative difference well under 1e-2) or the packing is wrong. With --decision-weight the
loss is the weighted one (`training.decisions`), so the weights must follow the tokens into the
packed row too. Exits 1 when they disagree,
2 when padding-free is off on a GPU. On a CPU padding-free is never on and the check only runs
through the code.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def loss_per_collation(trainer, model, rows, collators: dict) -> dict[str, tuple[float, tuple]]:
    """name -> (the trainer's loss of `rows` collated by that collator, the batch's shape)."""
    import torch

    model.eval()
    out = {}
    with torch.no_grad():
        for name, collate in collators.items():
            batch = trainer._prepare_inputs(collate(rows))
            out[name] = float(trainer.compute_loss(model, batch)), tuple(batch["input_ids"].shape)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="local Hugging Face model directory")
    parser.add_argument("--data-dir", default="data", help="prepare_data.py output (train.jsonl)")
    parser.add_argument("--samples", type=int, default=8, help="samples in the batch compared")
    parser.add_argument("--tolerance", type=float, default=1e-2, help="largest relative loss difference accepted")
    parser.add_argument("--packed", action="store_true",
                        help="compare one padding-free (packed) row whatever the trainer chose (on a CPU too, "
                             "where transformers reads the packing from the position ids)")
    parser.add_argument("--decision-weight", type=float, default=None,
                        help="compare the loss weighted as finetune.py --decision-weight weighs it (default: the recipe's)")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    if not (math.isfinite(args.tolerance) and args.tolerance > 0):  # nan would pass every comparison
        parser.error("--tolerance must be a positive number")

    from pii_redact.training.device import import_unsloth
    from pii_redact.training.finetune import setup

    import_unsloth()
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from pii_redact.config import TrainConfig
    from pii_redact.core.errors import UserError
    from pii_redact.training.decisions import DecisionWeights, drawn_decisions

    weight = {} if args.decision_weight is None else {"decision_weight": args.decision_weight}
    try:
        config = TrainConfig(model=args.model, eval_steps=0, max_steps=1, **weight)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            trainer, model, tokenizer, _ = setup(config, Path(args.data_dir) / "train.jsonl", None, Path(tmp))
        except UserError as exc:
            raise SystemExit(f"error: {exc}") from None
        padding_free = bool(getattr(trainer.args, "padding_free", False))
        print(f"padding-free batching: {'on' if padding_free else 'off'} "
              f"(device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'})")
        rows = [trainer.train_dataset[i] for i in range(min(args.samples, len(trainer.train_dataset)))]
        if (weighted := drawn_decisions(trainer.train_dataset)) is not None:
            print(weighted.summary())  # of the rows compared: what share of their tokens weighs more
        # both carry the weights where the rows have them (--decision-weight), else pass rows through
        packed = DecisionWeights(DataCollatorForLanguageModeling(
            pad_token_id=tokenizer.pad_token_id, padding_free=True, return_position_ids=True))
        padded = DecisionWeights(DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=False))
        collators = {"as trained": packed if args.packed else trainer.data_collator, "padded": padded}
        losses = {}
        for name, (loss, shape) in loss_per_collation(trainer, model, rows, collators).items():
            losses[name] = loss
            print(f"loss {name:<11} {loss:.6f}  input_ids {shape}")
    relative = abs(losses["as trained"] - losses["padded"]) / abs(losses["padded"])
    print(f"relative difference {relative:.2e} (tolerance {args.tolerance:g})")
    if torch.cuda.is_available() and not (padding_free or args.packed):
        print("FAIL: padding-free batching is off on a GPU")
        return 2
    if relative > args.tolerance:
        print("FAIL: the losses disagree: packed samples see each other, or labels shifted across samples")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
