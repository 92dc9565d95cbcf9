"""Validate prompt/response JSON and write chat-formatted train/val/test splits plus data/report.json.

`python prepare_data.py --help` for options; with none it reads pii_redaction_train.json.
"""
from pii_redact.cli import run
from pii_redact.data.prepare import main

if __name__ == "__main__":
    raise SystemExit(run(main))
