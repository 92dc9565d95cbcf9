"""Where the loss teaches the decision (--decision-weight).

Nearly every supervised token of a redaction copies its source; the few that decide between
copying a value and opening a placeholder are drowned in the mean. These are found with faithful
decoding's own definition (`constraint.Constraint.decisions`), walked over each token's bytes as
decoding walks them, so training weighs exactly the choices the privacy dial later moves: a token
that opens a placeholder where an entity may begin (+1), or copies the start of such a place in
clear (-1: keeping a word is learnt too, so precision does not pay for recall).

The weights are computed once, at tokenization, as a `weights` column aligned with `labels`;
`DecisionWeights` carries them through the trainer's collator, and `weighted_loss` applies them.
The loss is sum(w * CE) / n, n the supervised tokens the trainer divides by today: weight 1 is
today's loss term for term, gradient accumulation keeps its token count (the Trainer counts
tokens, not weights, across an accumulation group), and every copy token keeps its gradient while
a decision token's grows. Adam's step is nearly blind to the overall scale this adds.
"""
from __future__ import annotations

from ..core.constraint import Constraint, Vocabulary

WEIGHTS = "weights"  # the dataset column, and the batch key


def token_decisions(constraint: Constraint, token_bytes: list, tokens: list[int]) -> tuple[list[int], bool]:
    """(per token: +1 where it opens a placeholder where an entity may begin, even after copying
    one, -1 where it only copies such a place in clear, 0 elsewhere; whether every token stayed
    within the constraint). Walked from `constraint.start()` through each token's bytes, as
    `faithful.Decoder` walks them. A response that leaves the constraint (not a faithful redaction
    of the trimmed source) decides nothing from the token that leaves it on: there is no state to
    read a decision from."""
    states, out = constraint.start(), []
    for token in tokens:
        opens = copies = False
        for b in (token_bytes[token] or b"") if states else b"":
            decided = constraint.decisions(states).get(b, 0)
            opens, copies = opens or decided > 0, copies or decided < 0
            states = constraint.next_bytes(states).get(b, frozenset())
        out.append((1 if opens else -1 if copies else 0) if states else 0)
    return out, bool(states)


def add_decision_weights(tokenizer, samples, dataset, decision_weight: float):
    """`dataset` (from `tokenize_samples`) with a `weights` column: `decision_weight` on the
    supervised positions whose token decides, 1 elsewhere. Prints what share decides."""
    from collections import Counter

    token_bytes = Vocabulary(tokenizer).bytes
    weights, signs_seen, left = [], Counter(), 0
    for sample, labels in zip(samples, dataset["labels"]):
        start = next((k for k, t in enumerate(labels) if t != -100), len(labels))
        # generation redacts the text trimmed, as the chat template showed it to the model
        signs, faithful = token_decisions(Constraint(sample.source.strip()), token_bytes, labels[start:])
        weights.append([1.0] * start + [decision_weight if s else 1.0 for s in signs])
        signs_seen.update(signs)
        left += not faithful
    decisions, supervised = signs_seen[1] + signs_seen[-1], sum(signs_seen.values())
    print(f"--decision-weight {decision_weight:g}: {decisions:,} of {supervised:,} supervised tokens "
          f"({decisions / max(1, supervised):.1%}) decide ({signs_seen[1]:,} mask, {signs_seen[-1]:,} copy)"
          + (f"; {left} responses leave the faithful constraint (weighted up to there)" if left else ""))
    return dataset.add_column(WEIGHTS, weights)


class DecisionWeights:
    """The trainer's collator, carrying the `weights` column through whatever it does to the rows
    (padding, or padding-free flattening into one row): the supervised positions keep their order
    in every layout, so the weights are laid over the batch's supervised labels in that order.
    Rows without weights (validation) pass through as they are. Attribute reads reach the
    collator it wraps, for whoever inspects it (Unsloth reads `padding_free`)."""

    def __init__(self, collator):
        self.collator = collator

    def __getattr__(self, name):
        if name == "collator":  # not set yet (copy, unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.collator, name)

    def __call__(self, examples, *args, **kwargs):
        import torch

        if not examples or WEIGHTS not in examples[0]:
            return self.collator(examples, *args, **kwargs)
        batch = self.collator([{k: v for k, v in ex.items() if k != WEIGHTS} for ex in examples], *args, **kwargs)
        supervised = [w for ex in examples for w, t in zip(ex[WEIGHTS], ex["labels"]) if t != -100]
        mask = batch["labels"] != -100
        if int(mask.sum()) != len(supervised):
            raise RuntimeError(f"the collator supervises {int(mask.sum())} tokens where the rows have "
                               f"{len(supervised)}: the decision weights cannot follow them")
        batch[WEIGHTS] = torch.ones(mask.shape, dtype=torch.float32)
        batch[WEIGHTS][mask] = torch.tensor(supervised, dtype=torch.float32)
        return batch


def weighted_loss(model, inputs: dict, weights, num_items_in_batch=None):
    """sum(w * CE) / n over the supervised tokens (see the module docstring), n as TRL divides:
    the trainer's `num_items_in_batch` where it counts one (gradient accumulation), else this
    batch's supervised tokens.

    Through TRL's fused LM head (`model(..., fused_lm_head=True)`, installed by SFTTrainer), which
    returns per-token log-probabilities over the supervised positions only, in chunks, never the
    batch x length x vocabulary logits: on a CPU Unsloth routes it to its chunked kernel, on a GPU
    to its fused linear kernel. The model's own loss (Unsloth's chunked or fused cross entropy)
    reduces to one number inside the forward and has no place for a weight."""
    import torch

    outputs = model(**inputs, fused_lm_head=True)
    log_probs = getattr(outputs, "log_probs", None)
    if log_probs is None:
        raise RuntimeError("--decision-weight needs TRL's fused LM head (per-token log-probabilities), "
                           "which this model's forward does not provide; train with --decision-weight 1")
    # the head scores position t's prediction of labels[t + 1] (zero where that is -100): shift alike
    per_token = -log_probs * weights[:, 1:].to(log_probs.device, log_probs.dtype)
    n = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
    return per_token.sum() / torch.as_tensor(n, device=per_token.device).clamp(min=1)
