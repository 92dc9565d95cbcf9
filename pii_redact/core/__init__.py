"""What every stage shares: the 17 labels and their placeholders (`labels`), where a redaction's
placeholders lie in its source (`alignment`), the one conversation renderer (`chat`), the one
JSON/JSONL reader and atomic writes (`files`), and one-line errors (`errors`)."""
