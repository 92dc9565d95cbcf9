"""Fine-tune small language models to redact personal data (PII) from text.

The pipeline, one module per stage:
    synth      -> generate the Faker-based training set (pii_redaction_train.json; texts in synth_data/)
    data       -> what a valid record is; reading records and samples from any accepted shape
    prepare    -> prepare_data.py: validate, deduplicate, measure and split into chat-formatted JSONL
    chat       -> the one place a conversation becomes model text and token ids
    train      -> finetune.py: the Unsloth LoRA SFT recipe
    runs       -> run directories: never clobbered, resumed only as the same run
    artifacts  -> what a run leaves behind: adapter, merged model, GGUF, loss plot, model card
    generate   -> batched greedy redaction with a trained model
    metrics    -> leak / entity / fidelity scoring of redactions
    report     -> metrics.json, report.md, plots and the compare view
    evaluation -> evaluate.py: predictions (resumable, with their provenance), baselines, scores
    models     -> Gemma 3 270M built from PyPI packages, for machines with no model hub

Shared by all: labels (the 17 labels, placeholders, alignment), config (the settings dataclasses),
cli (flags and YAML), errors (one-line errors), files (the one JSON reader, atomic writes).
Heavy libraries (torch, transformers, unsloth) are imported inside functions so that
`--help` and the pure-Python parts stay instant.
"""

__version__ = "0.2.0"
