"""Redact PII in your own text or JSONL files with a trained model. `python redact.py --help`."""
from pii_redact.cli import run
from pii_redact.inference.redact_files import main

if __name__ == "__main__":
    raise SystemExit(run(main))
