"""Stage 4, redact.py and the generation behind evaluate.py: one `Redactor` (`redactor`) over the
generation engines (`generate`), faithful decoding (`faithful`), copy-aware speculative decoding
(`speculative`) and the safety net (`safety_net`); `redact` cuts users' files into pieces and
joins them back."""
