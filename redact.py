"""Redact PII in your own text, JSONL, CSV or Parquet files with a trained model, in one process or on
Ray (`--ray`). `python redact.py --help`."""
from pii_redact.cli import run
from pii_redact.inference.redact_files import main

if __name__ == "__main__":
    raise SystemExit(run(main))
