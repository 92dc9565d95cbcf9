"""The baselines the model is measured against: pattern rules, no model.

`identity` masks nothing; `regex_redact` covers what patterns can find: e-mails, IBANs (as
ACCOUNTNUM), Luhn-valid card numbers, US social security numbers, phone numbers, and dates of
birth or postcodes right after a cue word ("born", "DOB", "zip", "PLZ", ...). Names, streets,
cities and passwords need context it does not have: that gap is what the fine-tuned model is
measured against. (The few rules precise enough to run behind the model are its safety net:
`inference.safety_net`.)
"""
from __future__ import annotations

from ..core.labels import mask, ranked
from ..core.recognizers import find_all

# Each label's `baseline` rule in `labels.REGISTRY`, by rank: an earlier rule wins overlapping
# matches.
RULES = ranked(lambda spec: spec.baseline)


def identity(source: str) -> str:
    return source


def regex_redact(source: str) -> str:
    """`source` with rule matches replaced by `[LABEL_n]`, n counting distinct values per label
    in order of appearance (the data's numbering)."""
    return mask(source, find_all(RULES, source))[0]
