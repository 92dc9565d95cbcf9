"""Stage 4, redact.py and the generation behind evaluate.py: one `Redactor` (`redactor`) over the
generation engines (`generate`), faithful decoding (`faithful`), copy-aware speculative decoding
(`speculative`), the safety net (`safety_net`) and propagation (`propagate`); `redact_files` reads
users' files, cuts them into pieces and writes them back; `prediction` is one evaluation row."""
