"""Where the loss teaches the decision (--decision-weight).

Nearly every supervised token of a redaction copies its source; the few that decide between
copying a value and opening a placeholder are drowned in the mean. These are found with faithful
decoding's own definition (`constraint.Constraint.decisions`), walked over each token's bytes as
decoding walks them, so training weighs exactly the choices the privacy dial later moves: a token
that opens a placeholder where an entity may begin (+1), or copies the start of such a place in
clear (-1: keeping a word is learnt too, so precision does not pay for recall).

The weights of a sample, aligned with its `labels`, are computed when training first draws it
(`DrawnDecisions`, the training set's transform): a run of 400 samples walks 400, not the whole
split. `DecisionWeights` carries them through the trainer's collator, and `weighted_loss` applies them.
The loss is sum(w * CE) / n, n the supervised tokens the trainer divides by today: weight 1 is
today's loss term for term, gradient accumulation keeps its token count (the Trainer counts
tokens, not weights, across an accumulation group), and every copy token keeps its gradient while
a decision token's grows. Adam's step is nearly blind to the overall scale this adds.
"""
from __future__ import annotations

from collections import Counter

from ..core.constraint import Constraint, Vocabulary

WEIGHTS = "weights"  # a drawn row's key, and the batch's
SAMPLE = "sample"    # the column that holds each row's index into its samples, where its source is found


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
    """`dataset` (from `tokenize_samples`) whose rows, as training draws them, carry `weights`:
    `decision_weight` on the supervised positions whose token decides, 1 elsewhere (`DrawnDecisions`)."""
    return dataset.add_column(SAMPLE, list(range(len(dataset)))).with_transform(
        DrawnDecisions(tokenizer, samples, decision_weight))


def drawn_decisions(dataset) -> DrawnDecisions | None:
    """The weights `dataset` adds to the rows drawn from it, or None where it has none."""
    transform = (dataset.format.get("format_kwargs") or {}).get("transform")
    return transform if isinstance(transform, DrawnDecisions) else None


class DrawnDecisions:
    """The training set's transform: each row as drawn, with its `weights`. A row's decisions are
    found the first time it is drawn and kept (only their positions: a few in a hundred tokens), so
    a second epoch does not walk them again; `summary` says what share of the drawn rows' tokens
    decide."""

    def __init__(self, tokenizer, samples, decision_weight: float):
        self.token_bytes = Vocabulary(tokenizer).bytes
        # generation redacts the text trimmed, as the chat template showed it to the model
        self.sources = [sample.source.strip() for sample in samples]
        self.decision_weight = decision_weight
        self.decided: dict[int, list[int]] = {}  # row -> the positions whose token decides
        self.signs_seen: Counter = Counter()
        self.left = 0  # drawn responses that leave the faithful constraint

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = {key: values for key, values in batch.items() if key != SAMPLE}
        rows[WEIGHTS] = [self.weights(index, labels) for index, labels in zip(batch[SAMPLE], batch["labels"])]
        return rows

    def weights(self, index: int, labels: list[int]) -> list[float]:
        if index not in self.decided:
            start = next((k for k, t in enumerate(labels) if t != -100), len(labels))
            signs, faithful = token_decisions(Constraint(self.sources[index]), self.token_bytes, labels[start:])
            self.decided[index] = [start + k for k, sign in enumerate(signs) if sign]
            self.signs_seen.update(signs)
            self.left += not faithful
        weights = [1.0] * len(labels)
        for position in self.decided[index]:
            weights[position] = self.decision_weight
        return weights

    def summary(self) -> str:
        signs, rows = self.signs_seen, len(self.decided)
        decisions, supervised = signs[1] + signs[-1], sum(signs.values())
        return (f"--decision-weight {self.decision_weight:g}: {decisions:,} of {supervised:,} supervised tokens "
                f"({decisions / max(1, supervised):.1%}) of the {rows:,} sample{'s' * (rows != 1)} drawn decide "
                f"({signs[1]:,} mask, {signs[-1]:,} copy)"
                + (f"; {self.left} responses leave the faithful constraint (weighted up to there)" if self.left else ""))


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
