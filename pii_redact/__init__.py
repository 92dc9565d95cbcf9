"""Fine-tune small language models to redact personal data (PII) from text.

The pipeline, one module per stage:
    synth     -> generate the Faker-based training set (pii_redaction_train.json)
    data      -> validate prompt/response records, split them, write chat-formatted JSONL
    chat      -> the one place a conversation becomes model text and token ids
    train     -> Unsloth LoRA SFT (finetune.py)
    generate  -> batched greedy redaction with a trained model
    metrics   -> leak / entity / fidelity scoring of redactions
    report    -> metrics.json, report.md, plots and the compare view (evaluate.py)

Heavy libraries (torch, transformers, unsloth) are imported inside functions so that
`--help` and the pure-Python parts stay instant.
"""

__version__ = "0.1.0"
