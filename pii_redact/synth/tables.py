"""The generator's tables, read from the YAML files in tables/ (data, not code).

<lang>.yaml: `months`; `locales` (per locale: `@term` words and the `address` / `address_block`
layouts); `fields` (label or decoy -> field names for forms, CSV headers and HTML lists); `texts`,
the sentence pools: "body" (PII sentences), "decoy" (no PII, decoys only), "medical"/"bank"/"hr"
(topic notes), "greeting"/"closing" (with names), "hello"/"bye" (without), "ticket" (subject
lines), "notes" (note headings by topic); `genres` written as text (frames, pools, style).
common.yaml: the languages and their locales, the foreign locales and how they write names and
addresses, text kinds and their shares, the field order of structured texts, decoy fields, JSON
keys and log lines (software writes English). An address layout may be a list of alternatives;
`names` (per locale) gives the shares of compound and hyphenated given names, double surnames and
multi-word street names.
v3.yaml: what version 3 of the set adds (its genre shares, neighbour countries, address layouts,
lookalike firms and brands, and the sentence pools of its `remark` and `story` genres).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

TABLES = Path(__file__).resolve().parent / "tables"


def _load(name: str) -> dict:
    import yaml

    with open(TABLES / f"{name}.yaml", encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class Layout(NamedTuple):
    """How a foreign locale writes a person: building number before or after the street
    ("first"/"last"), postcode "before" or "after" the city, family name first or not."""

    number: str
    postcode: str
    family_name_first: bool


_COMMON = _load("common")
LOCALES: dict[str, tuple[str, ...]] = {lang: tuple(locales) for lang, locales in _COMMON["locales"].items()}
LANGUAGES: tuple[str, ...] = tuple(LOCALES)
FOREIGN_LOCALES: dict[str, Layout] = {loc: Layout(**d) for loc, d in _COMMON["foreign_locales"].items()}
LANGUAGE_TEXT = {lang: _load(lang) for lang in LANGUAGES}
MONTHS: dict[str, list[str]] = {lang: d["months"] for lang, d in LANGUAGE_TEXT.items()}
TEXTS: dict[str, dict[str, list[str]]] = {lang: d["texts"] for lang, d in LANGUAGE_TEXT.items()}
FIELDS: dict[str, dict[str, list[str]]] = {lang: d["fields"] for lang, d in LANGUAGE_TEXT.items()}
LOCALE_TEXT: dict[str, dict[str, str]] = {loc: words for d in LANGUAGE_TEXT.values() for loc, words in d["locales"].items()}
# genre -> {"frames": [...], "pools": {...}, "style": ...} per language (genres written as text)
GENRES: dict[str, dict[str, dict]] = {lang: d.get("genres", {}) for lang, d in LANGUAGE_TEXT.items()}
KINDS: dict[str, float] = _COMMON["genres"]  # genre -> share of PII records
LABELS_IN_FORM_ORDER: list[str] = _COMMON["labels_in_form_order"]
DECOY_FIELDS: list[str] = _COMMON["decoy_fields"]
JSON_KEYS: dict[str, str] = _COMMON["json_keys"]
LOG_LINES: list[str] = _COMMON["log_lines"]
V3: dict = _load("v3")
