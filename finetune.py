"""Fine-tune Gemma 3 270M with Unsloth LoRA to redact PII. `python finetune.py --help` for options."""
from pii_redact.cli import run
from pii_redact.train_and_calibrate import main

if __name__ == "__main__":
    raise SystemExit(run(main))
