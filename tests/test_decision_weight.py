"""--decision-weight: which supervised tokens decide between masking and copying, and the weighted
loss, on a tiny Gemma 3 trained through Unsloth's CPU backend + TRL (the real code path)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_finetune import data_dir, make_config, read_log, run_script  # noqa: F401  (data_dir: a fixture)

from pii_redact.config import TrainConfig
from pii_redact.core import chat
from pii_redact.core.errors import UserError


def test_the_tokens_that_open_a_placeholder_or_copy_a_word_start_are_weighted(tiny_tokenizer):
    from pii_redact.data.records import Sample
    from pii_redact.core.constraint import Constraint, Vocabulary
    from pii_redact.training.dataset import tokenize_samples
    from pii_redact.training.decisions import add_decision_weights, drawn_decisions, token_decisions

    source, response = "Call Anna on 555", "Call [GIVENNAME_1] on [TELEPHONENUM_1]"
    # surrounding whitespace, as a prompt may carry it: generation trims it, so must the walk
    sample = Sample(chat.build_prompt(f" {source}\n"), response, f" {source}\n", None)
    dataset = add_decision_weights(tiny_tokenizer, [sample], tokenize_samples(tiny_tokenizer, [sample], 1024, "x"), 5.0)
    row = dataset[0]
    start = next(k for k, t in enumerate(row["labels"]) if t != -100)
    assert set(row["weights"][:start]) == {1.0}  # the prompt is not supervised: nothing to weigh
    tokens = row["labels"][start:]
    signs, faithful = token_decisions(Constraint(source), Vocabulary(tiny_tokenizer).bytes, tokens)
    assert faithful
    # "Call" and "on" are word starts that could have been masked, copied in clear (-1); each " ["
    # opens a placeholder where an entity begins (+1); the space after "]" resumes copying and
    # the placeholder's own bytes decide nothing
    assert [(tiny_tokenizer.decode([t]), s) for t, s in zip(tokens, signs)] == [
        ("C", -1), ("all", 0), (" [", 1), ("GIVENNAME", 0), ("_", 0), ("1", 0), ("]", 0), (" ", 0),
        ("on", -1), (" [", 1), ("TELEPHONENUM", 0), ("_", 0), ("1", 0), ("]", 0), (chat.END_OF_TURN, 0)]
    assert row["weights"][start:] == [5.0 if s else 1.0 for s in signs]
    assert "4 of 15 supervised tokens (26.7%) of the 1 sample drawn decide (2 mask, 2 copy)" in drawn_decisions(dataset).summary()

    # a response that is no faithful redaction of its source decides nothing from where it leaves it
    bad = token_decisions(Constraint("Call Anna"), Vocabulary(tiny_tokenizer).bytes,
                          tiny_tokenizer("Call Bob", add_special_tokens=False)["input_ids"])
    assert bad[1] is False and bad[0][0] == -1 and set(bad[0][1:]) == {0}


def test_only_the_rows_training_draws_are_walked_with_the_weights_of_the_whole_split(tiny_tokenizer):
    """The weights are found as rows are drawn (a run of 400 samples walks 400 of the split), the
    same as walking every row up front would give, and found once per row."""
    from pii_redact.data.records import Sample
    from pii_redact.core.constraint import Constraint, Vocabulary
    from pii_redact.training.dataset import tokenize_samples
    from pii_redact.training.decisions import add_decision_weights, drawn_decisions, token_decisions

    pairs = [("Call Anna on 555", "Call [GIVENNAME_1] on [TELEPHONENUM_1]"), ("Nothing here", "Nothing here"),
             ("Mail jo@x.org now", "Mail [EMAIL_1] now"), ("Anna and Bob", "[GIVENNAME_1] and [GIVENNAME_2]")]
    samples = [Sample(chat.build_prompt(source), response, source, None) for source, response in pairs]
    tokenized = tokenize_samples(tiny_tokenizer, samples, 1024, "x")
    dataset = add_decision_weights(tiny_tokenizer, samples, tokenized, 3.0)
    weigher = drawn_decisions(dataset)

    def up_front(i: int) -> list[float]:  # every row's weights, as they were computed before any was drawn
        labels = tokenized[i]["labels"]
        start = next(k for k, t in enumerate(labels) if t != -100)
        signs, _ = token_decisions(Constraint(pairs[i][0]), Vocabulary(tiny_tokenizer).bytes, labels[start:])
        return [1.0] * start + [3.0 if s else 1.0 for s in signs]

    assert "of the 0 samples drawn" in weigher.summary()  # nothing walked before a row is drawn
    batch = dataset.__getitems__([2, 0])  # as the trainer's data loader draws a batch
    assert [row["weights"] for row in batch] == [up_front(2), up_front(0)] and 3.0 in batch[1]["weights"]
    assert [row["input_ids"] for row in batch] == [tokenized[2]["input_ids"], tokenized[0]["input_ids"]]
    assert set(batch[0]) == {"input_ids", "labels", "weights"}
    assert "of the 2 samples drawn" in weigher.summary()
    assert dataset[0]["weights"] == up_front(0) and "of the 2 samples drawn" in weigher.summary()  # drawn again
    assert [dataset[i]["weights"] for i in range(4)] == [up_front(i) for i in range(4)]
    assert "of the 4 samples drawn" in weigher.summary()


@pytest.fixture(scope="module")
def weighted(tiny_model_dir, data_dir, tmp_path_factory):  # noqa: F811
    """The recipe's trainer with --decision-weight 5, its config, and one training batch from its collator."""
    from pii_redact.training.finetune import setup

    tmp = tmp_path_factory.mktemp("decision-weight")
    config = make_config(tiny_model_dir, data_dir, tmp, decision_weight=5.0, eval_steps=0)
    trainer, model, _, _ = setup(config, data_dir / "train.jsonl", None, tmp / "out")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model.train()
    return trainer, model, batch, config


def test_weight_one_is_exactly_todays_loss(weighted):
    from dataclasses import replace

    import torch

    from pii_redact.training.finetune import read_splits, tokenize

    trainer, model, batch, config = weighted
    # the collator laid each row's weights over its own tokens (TRL pads on the right)
    for i, row in enumerate(trainer.train_dataset.select(range(4))):
        assert batch["weights"][i, :len(row["weights"])].tolist() == row["weights"]
    assert set(batch["weights"][batch["labels"] == -100].tolist()) == {1.0}
    assert (batch["weights"] == 5.0).any()
    plain = {k: v for k, v in batch.items() if k != "weights"}
    ones = {**plain, "weights": torch.ones_like(batch["weights"])}
    today = trainer.compute_loss(model, dict(plain))  # Unsloth's chunked cross entropy in the forward
    assert torch.isfinite(today)
    # the weighted path (TRL's fused head) with every weight 1 is today's mean over supervised tokens
    assert trainer.compute_loss(model, ones).item() == pytest.approx(today.item(), rel=1e-5)
    # and at 1 the recipe builds no weights: the loss is today's, on today's code path
    at_one = replace(config, decision_weight=1.0)
    splits = read_splits(at_one, Path(config.data_dir) / "train.jsonl", None)
    assert "weights" not in tokenize(at_one, trainer.processing_class, splits)[0][0]


def test_weight_five_is_the_weighted_per_token_cross_entropy(weighted):
    import torch
    import torch.nn.functional as F

    trainer, model, batch, _ = weighted
    plain = {k: v for k, v in batch.items() if k != "weights"}
    today = trainer.compute_loss(model, dict(plain)).item()
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()  # differentiable, through the LoRA weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    model.zero_grad()
    with torch.no_grad():  # by hand, from the full logits of a plain forward
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels, weights = batch["labels"][:, 1:], batch["weights"][:, 1:]
        ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none")
        by_hand = (ce * weights).sum() / (labels != -100).sum()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-4)
    assert loss.item() > today * 1.05  # the decisions weigh more, and they are not free


def test_finetune_with_a_decision_weight_runs_and_records_it(tiny_model_dir, data_dir, tmp_path, capsys):  # noqa: F811
    from pii_redact.training.finetune import finetune

    summary = finetune(make_config(tiny_model_dir, data_dir, tmp_path, max_steps=2, eval_steps=2, decision_weight=3.0))
    run = tmp_path / "outputs" / "run"
    out = capsys.readouterr().out
    assert "--decision-weight 3:" in out and "fused LM head" in out
    assert json.loads((run / "run.json").read_text())["config"]["decision_weight"] == 3.0
    assert "decision_weight: 3.0" in (run / "config.yaml").read_text()
    losses = [r["loss"] for r in read_log(run) if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert summary["val_loss"] is not None and math.isfinite(summary["val_loss"])


@pytest.mark.parametrize("value, problem", [(0.0, "must be above 0 and at most 100"), (-2.0, "must be above 0 and at most 100"),
                                            (1e30, "must be above 0 and at most 100"),  # the loss would overflow
                                            (float("nan"), "must be a finite number"),
                                            (float("inf"), "must be a finite number")])
def test_bad_decision_weights_are_refused(value, problem):
    with pytest.raises(UserError, match=f"^--decision-weight {problem}, got "):
        TrainConfig(decision_weight=value)


def test_a_bad_decision_weight_flag_is_a_one_line_error():
    result = run_script("--decision-weight", "nan")
    assert result.returncode == 2 and result.stderr == "error: --decision-weight must be a finite number, got nan\n"


def test_a_run_that_predates_the_setting_resumes_at_weight_one_only(tmp_path):
    """A run started before --decision-weight existed trained with today's loss: weight 1."""
    from pii_redact.cli import config_dict
    from pii_redact.core.run_dir import RunDir
    from pii_redact.training.runs import check_resume

    run = tmp_path / "run"
    (run / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    saved = config_dict(TrainConfig(model="m", run_name="run"))
    del saved["decision_weight"]
    RunDir(run).write({"config": saved, "data_sha256": {"train.jsonl": "x"}, "model_path": "m"})
    resume = dict(model="m", run_name="run", resume=True)
    assert check_resume(run, TrainConfig(**resume, decision_weight=1.0), {"train.jsonl": "x"}, "m", None).endswith("checkpoint-4")
    with pytest.raises(UserError, match=r"config changed \(decision_weight: 1.0 -> 3.0\)"):
        check_resume(run, TrainConfig(**resume), {"train.jsonl": "x"}, "m", None)  # today's default, 3
