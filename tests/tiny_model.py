"""Gemma 3 models built from scratch, no downloads: a tiny one for tests and smoke runs, and one
with Gemma 3 270M's exact shape (random weights) for throughput benchmarks before real weights exist.

The tokenizer is a byte-level BPE trained in-process on redaction-like text, with Gemma's special
tokens (`<pad>`=0, `<eos>`=1, `<bos>`=2, `<unk>`=3, `<start_of_turn>`, `<end_of_turn>`) and
Gemma 3's chat template, so chat rendering, masking and stop tokens behave as with the real model.
"""
from __future__ import annotations

from pathlib import Path

from pii_redact.core.chat import GEMMA3_CHAT_TEMPLATE, INSTRUCTION
from pii_redact.core.labels import LABELS

# (source, redaction) pairs the tests and bench/same_outputs.py train and score tiny runs on.
SAMPLES = [
    ("Hi, I am Anna Schmidt, call me on +49 30 1234567.", "Hi, I am [GIVENNAME_1] [SURNAME_1], call me on [TELEPHONENUM_1]."),
    ("Email jdoe@example.com about order 5521.", "Email [EMAIL_1] about order 5521."),
    ("Lives at 12 Rue Lepic, 75018 Paris.", "Lives at [BUILDINGNUM_1] [STREET_1], [ZIPCODE_1] [CITY_1]."),
    ("Nothing personal in this sentence at all.", "Nothing personal in this sentence at all."),
    ("Card 4111 1111 1111 1111 expires soon.", "Card [CREDITCARDNUMBER_1] expires soon."),
    ("Password for user kmuller: Xy7!pq2", "Password for user [USERNAME_1]: [PASSWORD_1]"),
]

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

# Gemma 3 270M's text config (google/gemma-3-270m config.json); the vocabulary is the one thing
# the benchmark shape needs to match for an honest lm_head cost: 262,144 entries.
GEMMA3_270M = dict(
    vocab_size=262_144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
    num_attention_heads=4, num_key_value_heads=1, head_dim=256, max_position_embeddings=32_768,
    sliding_window=512, rope_theta=1_000_000.0, query_pre_attn_scalar=256,
    layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
)
TINY = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, head_dim=32, max_position_embeddings=2048, sliding_window=64,
    query_pre_attn_scalar=32, layer_types=["sliding_attention", "full_attention"],
)


def _corpus() -> list[str]:
    lines = [INSTRUCTION, "Text:", "<p>Contact number: [TELEPHONENUM_1]. Email: [EMAIL_1].</p>"]
    lines += [f"[{label}_1] [{label}_2] {label.lower()}" for label in LABELS]
    lines += ["Dear Anna Müller, your order 4821 ships to Rue de la Paix 12, 75002 Paris on 03/04/2024.",
              "Hallo Jürgen, Ihre Telefonnummer +49 30 1234567 und IBAN DE89 3704 0044 0532 0130 00.",
              "user jdoe42 logged in from 10.0.0.1 with password Xy7!pq; ticket #5521 closed."]
    return lines * 4


def build_tokenizer(vocab_size: int = 512):
    """A Gemma-shaped fast tokenizer (byte-level BPE, so any text encodes without <unk>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    hf.chat_template = GEMMA3_CHAT_TEMPLATE
    hf.padding_side = "left"
    return hf


def build_model(out_dir: str | Path, *, shape: str = "tiny", seed: int = 0, dtype: str = "float32",
                tokenizer_dir: str | Path | None = None) -> Path:
    """Write a randomly initialised Gemma 3 causal LM (+ tokenizer) to `out_dir`; return the path.

    shape="tiny": ~50k parameters, trains in well under a second a step on a CPU.
    shape="gemma-3-270m": the real architecture and 262k vocabulary, random weights.
    `tokenizer_dir`: use the tokenizer saved there (the real Gemma 3 one, say) instead of the
    in-process BPE, so that texts split into as many tokens as with the real model: what a
    throughput benchmark in tokens per second and seconds per epoch needs.
    """
    import torch
    from transformers import (
        AutoTokenizer,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GenerationConfig,
    )

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else build_tokenizer()
    dims = dict(TINY) if shape == "tiny" else dict(GEMMA3_270M)
    dims.setdefault("vocab_size", len(tokenizer))
    config = Gemma3TextConfig(
        **dims, pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
        attn_logit_softcapping=None, final_logit_softcapping=None,
    )
    config.architectures = ["Gemma3ForCausalLM"]
    model = Gemma3ForCausalLM(config).to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(
        bos_token_id=2, pad_token_id=0, eos_token_id=[1, tokenizer.convert_tokens_to_ids("<end_of_turn>")],
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_tiny_run(work: Path, model_dir: Path, pairs, *, repeats: int, seed: int, run_name: str) -> Path:
    """In `work`: raw.json of `pairs` (source, redaction) each repeated with a reference number,
    prepared splits in data/ (a fifth each for validation and test) and a 2-step run of the
    tiny model in outputs/RUN_NAME; returns the run directory."""
    import json

    from pii_redact.config import DataConfig, TrainConfig
    from pii_redact.core import chat
    from pii_redact.data import prepare
    from pii_redact.training.finetune import finetune

    raw = [{"prompt": chat.build_prompt(s + f" Ref {k}."), "response": r + f" Ref {k}."}
           for k in range(repeats) for s, r in pairs]
    (work / "raw.json").write_text(json.dumps(raw))
    prepare.prepare(DataConfig(input=[str(work / "raw.json")], output_dir=str(work / "data"),
                               model=str(model_dir), val_fraction=0.2, test_fraction=0.2, seed=seed))
    summary = finetune(TrainConfig(model=str(model_dir), data_dir=str(work / "data"), output_dir=str(work / "outputs"),
                                   run_name=run_name, max_steps=2, batch_size=4, lora_r=4, lora_alpha=4, eval_steps=0))
    return Path(summary["run_dir"])
