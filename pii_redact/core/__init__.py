"""What every stage shares: the 17 labels and their placeholders (`labels`), where a redaction's
placeholders lie in its source (`alignment`), what a faithful redaction of a source may be, byte
by byte (`constraint`: what decoding generates under and training weighs), words too common to
mark a person when found alone (`common_words`), the one conversation renderer (`chat`), the one
JSON/JSONL reader and atomic writes (`files`), a run directory's layout and its run.json
(`run_dir`), and one-line errors (`errors`)."""
