"""Score PII redactions: a trained model, a baseline or a predictions file. `python evaluate.py --help`."""
from pii_redact.cli import run
from pii_redact.evaluation.evaluate import main

if __name__ == "__main__":
    raise SystemExit(run(main))
