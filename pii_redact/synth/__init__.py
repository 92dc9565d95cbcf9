"""Stage 1: the Faker-based training set (`pii_redaction_train.json`). `python -m pii_redact.synth`.

Each record is a short text in one of six languages (emails, chats, tickets, forms, letters,
medical/bank/HR notes, log lines, HTML, JSON and CSV snippets) holding zero or more PII values
of the 17 labels in `core.labels.LABELS`. The response is the text with every value
replaced by `[LABEL_n]`, numbered per label by first appearance; one (label, value) pair keeps
its number wherever it repeats.

Texts are composed from per-language sentence templates, so variety is combinatorial:

    "Hi {GIVENNAME}, call {GIVENNAME:2} on {TELEPHONENUM:2} before {time}."

`{LABEL}` is a PII field of person 1 (`{LABEL:2}` of person 2...), drawn lazily from the
record's Faker locale and cached, so a repeated field repeats its value. Lowercase names are
decoys that stay in clear text (order numbers, prices, times, non-birth dates, companies,
URLs...), `{address}`/`{name}` expand to the locale's layout, and `{@term}` is a locale-specific
word (e.g. "Social Security number" in en_US, "National Insurance number" in en_GB).

Each record carries the exact spans the generator inserted (`entities`), so natural layouts
that a redaction alone leaves ambiguous (`Via Roma 12` as `[STREET_1] [BUILDINGNUM_1]`,
`María José Pérez` as `[GIVENNAME_1] [SURNAME_1]`) are kept, and prepare_data.py and the
metrics use those spans. A record where a PII value also stands in the response's clear text is
drawn again. Generation is deterministic for a seed: one
seeded Faker per locale and one `random.Random`, no global random state, no clock.

`--version 3` (not the default) draws a mix shaped like the model's leaks: more running prose
about people (`shapes` defines and measures it), values written again in other forms and numbered
as their value, more address layouts and lookalikes that stay in clear (tables/v3.yaml).
"""
from .generator import Generated, Generator

__all__ = ["Generated", "Generator"]
