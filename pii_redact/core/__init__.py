"""What every stage shares: the 17 labels, one registry entry each, and their placeholders
(`labels`), the rules that find PII without a model (`recognizers`), where a redaction's
placeholders lie in its source (`alignment`), what a faithful redaction of a source may be, byte
by byte (`constraint`: what decoding generates under and training weighs), words too common to
mark a person when found alone (`common_words`), the one conversation renderer (`chat`), the one
JSON/JSONL reader and atomic writes (`files`), a run directory's layout and its run.json
(`run_dir`), one-line errors (`errors`), and whether a GPU is there (`device`)."""
