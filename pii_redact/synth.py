"""Generate the Faker-based PII redaction training set (`pii_redaction_train.json`).

Each record is a short text in one of six languages (emails, chats, tickets, forms, letters,
medical/bank/HR notes, log lines, HTML, JSON and CSV snippets) holding zero or more PII values
of the 17 labels in `pii_redact.labels.LABELS`. The response is the text with every value
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
"""
from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from faker import Faker
from faker.providers.address.it_IT import Provider as ItalianAddresses

from pii_redact.chat import build_prompt
from pii_redact.labels import LABELS, PLACEHOLDER_RE, Entity, align, mask, occurrences

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "it", "es", "nl")
LOCALES: dict[str, tuple[str, ...]] = {
    "en": ("en_US", "en_GB"), "de": ("de_DE",), "fr": ("fr_FR",), "it": ("it_IT",),
    "es": ("es_ES",), "nl": ("nl_NL",),
}
NO_PII_SHARE = 0.07  # records that are all decoys: the model must learn to change nothing
LOG_EPOCH = datetime(2023, 1, 1)  # log timestamps fall in 2023-2026
MAX_ATTEMPTS = 200   # draws per record before giving up (a template that can never pass)
FOREIGN_SHARE = 0.15  # people (and their addresses) from another country than the text's

# `{NAME}`, `{NAME:2}` (person 2), `{NAME|upper}` (or |lower, |cap: first letter up): a PII field
# (uppercase), decoy or macro (lowercase), `@term`; `{>pool}` / `{>pool?}`: a sentence of the
# genre's pool (optional).
FIELD_RE = re.compile(r"\{(@?>?[A-Za-z_]+)(\?)?(?::(\d))?(?:\|(upper|lower|cap))?\}")

# Locales whose people and addresses appear in the texts of other languages: (street number
# before or after the street, postcode before or after the city, family name first).
FOREIGN_LOCALES: dict[str, tuple[str, str, bool]] = {
    "en_US": ("first", "after", False), "en_GB": ("first", "after", False), "de_DE": ("last", "before", False),
    "fr_FR": ("first", "before", False), "it_IT": ("last", "before", False), "es_ES": ("last", "before", False),
    "nl_NL": ("last", "before", False), "pl_PL": ("last", "before", False), "tr_TR": ("last", "before", False),
    "pt_BR": ("last", "after", False), "pt_PT": ("last", "before", False), "sv_SE": ("last", "before", False),
    "cs_CZ": ("last", "before", False), "da_DK": ("last", "before", False), "ro_RO": ("last", "before", False),
    "hu_HU": ("last", "before", True), "ru_RU": ("last", "before", False), "uk_UA": ("last", "before", False),
    "el_GR": ("last", "before", False), "zh_CN": ("last", "before", True), "ja_JP": ("last", "before", True),
    "ko_KR": ("last", "before", True), "vi_VN": ("last", "after", True), "fa_IR": ("last", "after", False),
    "hi_IN": ("last", "after", False),
}

# ---------------------------------------------------------------------------------------------
# Locale-specific value formats (only where Faker has no provider, or a wrong one for the locale)
# ---------------------------------------------------------------------------------------------

UPPER, DIGITS = string.ascii_uppercase, string.digits


def _chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _grouped(text: str, size: int, sep: str = " ") -> str:
    return sep.join(text[i:i + size] for i in range(0, len(text), size))


def _uk_nino(fake: Faker, rng: random.Random) -> str:
    # Faker's en_GB ssn always uses the reserved "ZZ" prefix; real NINOs never start with D, F,
    # I, Q, U, V and the second letter is never O.
    first, second = rng.choice("ABCEGHJKLMNPRSTWXYZ"), rng.choice("ABCEGHJKLMNPRSTWXYZ")
    body, suffix = _chars(rng, DIGITS, 6), rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{first}{second} {body[:2]} {body[2:4]} {body[4:]} {suffix}"
    return f"{first}{second}{body}{suffix}"


def _uk_driving_licence(fake: Faker, rng: random.Random) -> str:
    surname = re.sub(r"[^A-Z]", "", _ascii(fake.last_name()).upper())[:5].ljust(5, "9")
    return (f"{surname}{rng.randint(5, 9)}{rng.choice(['0', '1', '5', '6'])}{rng.randint(1, 9)}"
            f"{rng.randint(10, 28)}{rng.randint(0, 9)}{_chars(rng, UPPER, 2)}9{_chars(rng, UPPER, 2)}")


def _us_driver_license(fake: Faker, rng: random.Random) -> str:
    return rng.choice([
        lambda: rng.choice(UPPER) + _chars(rng, DIGITS, 7),                     # California
        lambda: _grouped(_chars(rng, DIGITS, 9), 3),                            # New York
        lambda: f"{rng.choice(UPPER)}{_chars(rng, DIGITS, 3)}-{_chars(rng, DIGITS, 3)}-"
                f"{_chars(rng, DIGITS, 2)}-{_chars(rng, DIGITS, 3)}-{rng.randint(0, 9)}",  # Florida
        lambda: _chars(rng, DIGITS, 8),                                         # Texas
    ])()


def _de_rvnr(fake: Faker, rng: random.Random) -> str:
    # Rentenversicherungsnummer: area, birth date ddmmyy, surname initial, serial + check digit.
    area, birth = _chars(rng, DIGITS, 2), f"{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}{rng.randint(0, 99):02d}"
    letter, serial = rng.choice(UPPER), _chars(rng, DIGITS, 3)
    return f"{area} {birth} {letter} {serial}" if rng.random() < 0.5 else f"{area}{birth}{letter}{serial}"


def _de_steuer_id(fake: Faker, rng: random.Random) -> str:
    digits = str(rng.randint(1, 9)) + _chars(rng, DIGITS, 10)
    return f"{digits[:2]} {digits[2:5]} {digits[5:8]} {digits[8:]}" if rng.random() < 0.5 else digits


_DE_DOC = "CFGHJKLMNPRTVWXYZ0123456789"  # alphabet of German ID document numbers


def _de_ausweis(fake: Faker, rng: random.Random) -> str:
    return rng.choice("CFGHJKLMNPRTVWXYZ") + _chars(rng, _DE_DOC, 8)


def _de_fuehrerschein(fake: Faker, rng: random.Random) -> str:
    return (rng.choice(UPPER) + _chars(rng, DIGITS, 3) + _chars(rng, UPPER + DIGITS, 5)
            + rng.choice(DIGITS) + rng.choice(UPPER + DIGITS))


def _fr_nir(fake: Faker, rng: random.Random) -> str:
    nir = fake.ssn()  # 15 digits with a valid key
    if rng.random() < 0.4:
        return f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
    return nir


def _fr_numero_fiscal(fake: Faker, rng: random.Random) -> str:
    digits = str(rng.randint(0, 3)) + _chars(rng, DIGITS, 12)
    return f"{digits[:2]} {digits[2:4]} {digits[4:7]} {digits[7:10]} {digits[10:]}" if rng.random() < 0.5 else digits


def _fr_cni(fake: Faker, rng: random.Random) -> str:
    # Old cards: 12 digits; cards since 2021: 9 letters/digits.
    return _chars(rng, DIGITS, 12) if rng.random() < 0.5 else _chars(rng, UPPER + DIGITS, 9)


def _fr_permis(fake: Faker, rng: random.Random) -> str:
    if rng.random() < 0.5:  # format since 2013
        return _chars(rng, DIGITS, 2) + _chars(rng, UPPER, 2) + _chars(rng, DIGITS, 5)
    return _chars(rng, DIGITS, 12)


def _it_tessera_sanitaria(fake: Faker, rng: random.Random) -> str:
    return "80380" + _chars(rng, DIGITS, 15)


def _it_cie(fake: Faker, rng: random.Random) -> str:
    return _chars(rng, UPPER, 2) + _chars(rng, DIGITS, 5) + _chars(rng, UPPER, 2)


def _it_patente(fake: Faker, rng: random.Random) -> str:
    return _chars(rng, UPPER, 2) + _chars(rng, DIGITS, 7) + rng.choice(UPPER)


def _es_nss(fake: Faker, rng: random.Random) -> str:
    province, number, check = f"{rng.randint(1, 52):02d}", _chars(rng, DIGITS, 8), _chars(rng, DIGITS, 2)
    return f"{province}/{number}/{check}" if rng.random() < 0.5 else province + number + check


def _es_id(fake: Faker, rng: random.Random) -> str:
    return fake.nif() if rng.random() < 0.7 else fake.nie()


def _nl_document(fake: Faker, rng: random.Random) -> str:
    letters = UPPER.replace("O", "")
    return _chars(rng, letters, 2) + _chars(rng, letters + DIGITS, 6) + rng.choice(DIGITS)


def _nl_rijbewijs(fake: Faker, rng: random.Random) -> str:
    return _chars(rng, DIGITS, 10)


def _us_account(fake: Faker, rng: random.Random) -> str:
    return _chars(rng, DIGITS, rng.randint(8, 12))


def _iban(fake: Faker, rng: random.Random) -> str:
    iban = fake.iban()
    return _grouped(iban, 4) if rng.random() < 0.4 else iban


def _credit_card(fake: Faker, rng: random.Random) -> str:
    number = fake.credit_card_number()
    if len(number) == 16 and rng.random() < 0.5:
        return _grouped(number, 4, rng.choice([" ", "-"]))
    return number


# Faker builds its it_IT city list from a set, so the list order, and with it a seeded draw,
# changes with PYTHONHASHSEED: draw from a sorted copy to keep the output reproducible.
IT_CITIES: tuple[str, ...] = tuple(sorted(ItalianAddresses.cities))

ValueFn = Callable[[Faker, random.Random], str]
# Values whose format depends on the locale (the rest come straight from Faker: _Draft._draw_pii).
LOCALE_VALUES: dict[str, dict[str, ValueFn]] = {
    "en_US": {"SOCIALNUM": lambda f, r: f.ssn(), "TAXNUM": lambda f, r: f.itin() if r.random() < 0.5 else f.ein(),
              "IDCARDNUM": lambda f, r: r.choice(UPPER) + _chars(r, DIGITS, 8),
              "DRIVERLICENSENUM": _us_driver_license, "ACCOUNTNUM": _us_account},
    "en_GB": {"SOCIALNUM": _uk_nino, "TAXNUM": lambda f, r: _chars(r, DIGITS, 10),
              "IDCARDNUM": lambda f, r: _chars(r, DIGITS, 9),
              "DRIVERLICENSENUM": _uk_driving_licence, "ACCOUNTNUM": _iban},
    "de_DE": {"SOCIALNUM": _de_rvnr, "TAXNUM": _de_steuer_id, "IDCARDNUM": _de_ausweis,
              "DRIVERLICENSENUM": _de_fuehrerschein, "ACCOUNTNUM": _iban},
    "fr_FR": {"SOCIALNUM": _fr_nir, "TAXNUM": _fr_numero_fiscal, "IDCARDNUM": _fr_cni,
              "DRIVERLICENSENUM": _fr_permis, "ACCOUNTNUM": _iban},
    # In Italy the codice fiscale is the personal tax number; the health card number is social.
    "it_IT": {"SOCIALNUM": _it_tessera_sanitaria, "TAXNUM": lambda f, r: f.ssn(), "IDCARDNUM": _it_cie,
              "DRIVERLICENSENUM": _it_patente, "ACCOUNTNUM": _iban, "CITY": lambda f, r: r.choice(IT_CITIES)},
    "es_ES": {"SOCIALNUM": _es_nss, "TAXNUM": lambda f, r: f.nif(), "IDCARDNUM": _es_id,
              "DRIVERLICENSENUM": lambda f, r: f.nif(), "ACCOUNTNUM": _iban},
    # The BSN is social and fiscal number at once; self-employed people also have a btw-id.
    "nl_NL": {"SOCIALNUM": lambda f, r: f.ssn(), "TAXNUM": lambda f, r: f.vat_id(), "IDCARDNUM": _nl_document,
              "DRIVERLICENSENUM": _nl_rijbewijs, "ACCOUNTNUM": _iban},
}

def _format_date(d: date, locale: str, rng: random.Random) -> str:
    """A date the way people of `locale` write it (several styles each, ISO everywhere)."""
    lang = locale[:2]
    month = MONTHS[lang][d.month - 1]
    dd, mm, yyyy = f"{d.day:02d}", f"{d.month:02d}", str(d.year)
    styles = {
        "en_US": [f"{mm}/{dd}/{yyyy}", f"{month} {d.day}, {yyyy}", f"{d.month}/{d.day}/{d.year % 100:02d}",
                  f"{month[:3]}/{yyyy[2:]}"],
        "en_GB": [f"{dd}/{mm}/{yyyy}", f"{d.day} {month} {yyyy}", f"{d.day} {month[:3]} {yyyy}"],
        "de_DE": [f"{dd}.{mm}.{yyyy}", f"{d.day}. {month} {yyyy}", f"{d.day}.{d.month}.{yyyy}"],
        "fr_FR": [f"{dd}/{mm}/{yyyy}", f"{d.day} {month} {yyyy}"],
        "it_IT": [f"{dd}/{mm}/{yyyy}", f"{d.day} {month} {yyyy}", f"{dd}-{mm}-{yyyy}"],
        "es_ES": [f"{dd}/{mm}/{yyyy}", f"{d.day} de {month} de {yyyy}", f"{dd}-{mm}-{yyyy}"],
        "nl_NL": [f"{dd}-{mm}-{yyyy}", f"{d.day} {month} {yyyy}", f"{dd}.{mm}.{yyyy}"],
    }[locale]
    return rng.choice(styles + [d.isoformat()])


def _random_date(rng: random.Random, first: date, last: date) -> date:
    return date.fromordinal(rng.randint(first.toordinal(), last.toordinal()))


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _handle(given: str, surname: str) -> tuple[str, str]:
    """Lowercase ASCII login parts of a name ("Jörg", "van Dijk" -> "jorg", "vandijk")."""
    return re.sub(r"[^a-z]", "", _ascii(given).lower()), re.sub(r"[^a-z]", "", _ascii(surname).lower())


# ---------------------------------------------------------------------------------------------
# Per-language text, from the YAML files in synth_data/ (data, not code)
# ---------------------------------------------------------------------------------------------
# <lang>.yaml: `months`; `locales` (per locale: `@term` words and the `address` / `address_block`
# layouts); `fields` (label or decoy -> field names for forms, CSV headers and HTML lists); `texts`,
# the sentence pools: "body" (PII sentences), "decoy" (no PII, decoys only), "medical"/"bank"/"hr"
# (topic notes), "greeting"/"closing" (with names), "hello"/"bye" (without), "ticket" (subject
# lines), "notes" (note headings by topic). common.yaml: text kinds and their shares, the field
# order of structured texts, decoy fields, JSON keys and log lines (software writes English).
# An address layout may be a list of alternatives; `names` (per locale) gives the shares of
# compound and hyphenated given names, double surnames and multi-word street names.

DATA_DIR = Path(__file__).resolve().parent / "synth_data"


def _load(name: str) -> dict:
    import yaml

    with open(DATA_DIR / f"{name}.yaml", encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


_COMMON = _load("common")
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


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------

@dataclass
class Generated:
    """One generated text with what the generator knows about it."""

    source: str
    response: str
    entities: list[Entity]  # true spans of `source`, in order, numbered like the response
    language: str
    locale: str
    kind: str      # the genre
    template: str  # the template family: "lang/genre" or "lang/genre/frame"

    def to_json(self) -> dict[str, Any]:
        """The seed's prompt/response record, plus its template family ("lang/genre/frame": what
        prepare_data.py can hold out as unseen; language and genre are read from it) and, where
        the redaction alone does not pin them down (`labels.align` would read it otherwise),
        the exact spans: the file stays small, and every record's spans are the inserted ones."""
        record: dict[str, Any] = {"prompt": build_prompt(self.source), "response": self.response,
                                  "template": self.template}
        if align(self.source, self.response) != self.entities:
            record["entities"] = [[e.start, e.end, e.label] for e in self.entities]
        return record


Segment = tuple[str | None, str]  # (label, value) for PII, (None, text) for literal text


@dataclass
class Person:
    """Someone a text mentions: where they are from (their names, phone and address follow that
    locale), their gender (names, honorifics and pronouns agree with it) and the values drawn."""

    locale: str
    gender: str  # "female" or "male"
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _Draft:
    """Values of one record being drawn: people's PII fields and decoys, each drawn once."""

    fakers: dict[str, Faker]
    rng: random.Random
    locale: str
    people: dict[int, Person] = field(default_factory=dict)
    decoys: dict[tuple[str, int], str] = field(default_factory=dict)
    clock: int | None = None  # current log timestamp, seconds after LOG_EPOCH
    used: set = field(default_factory=set)  # pool sentences already in this text

    @property
    def language(self) -> str:
        return self.locale[:2]

    @property
    def fake(self) -> Faker:
        return self.fakers[self.locale]

    def person(self, index: int) -> Person:
        if index not in self.people:
            rng = self.rng
            foreign = rng.random() < FOREIGN_SHARE
            locale = rng.choice([loc for loc in FOREIGN_LOCALES if loc[:2] != self.language]) if foreign else self.locale
            self.people[index] = Person(locale, rng.choice(["female", "male"]))
        return self.people[index]

    def pii(self, label: str, person: int) -> str:
        who = self.person(person)
        if label not in who.fields:
            who.fields[label] = self._draw_pii(label, person)
        return who.fields[label]

    def _draw_pii(self, label: str, person: int) -> str:
        # Documents, accounts and cards follow the text's country; names, phones and addresses
        # follow the person's.
        rng, who = self.rng, self.people[person]
        locale = who.locale if label in PERSONAL_FIELDS else self.locale
        fake = self.fakers[locale]
        if label in LOCALE_VALUES.get(locale, {}):
            return LOCALE_VALUES[locale][label](fake, rng)
        if label == "EMAIL":
            given, surname = _handle(self.pii("GIVENNAME", person), self.pii("SURNAME", person))
            if rng.random() < 0.6 and given and surname:  # most personal addresses are made from the name
                local = rng.choice([f"{given}.{surname}", f"{given[:1]}{surname}", f"{given}{rng.randint(1, 99)}",
                                    f"{surname}.{given}"])
                return f"{local}@{self.fake.free_email_domain()}"
            return f"{self.fake.user_name()}@{self.fake.free_email_domain()}"
        if label == "USERNAME":
            roll = rng.random()
            given, surname = _handle(self.fake.first_name(), self.fake.last_name())
            if roll < 0.5:
                return self.fake.user_name()
            if roll < 0.8:
                return f"{given}{rng.choice(['', '.', '_'])}{surname[:rng.randint(1, 6)]}{rng.randint(1, 999)}"
            # random handles like the seed's "faozzsd379223"
            return _chars(rng, string.ascii_lowercase, rng.randint(5, 8)) + _chars(rng, DIGITS, rng.randint(2, 6))
        if label == "PASSWORD":
            if rng.random() < 0.6:
                return self.fake.password(length=rng.randint(8, 16))
            return f"{_ascii(self.fake.first_name()).capitalize()}{rng.randint(1950, 2024)}{rng.choice('!?#$%*')}"
        if label == "DATEOFBIRTH":
            return _format_date(_random_date(rng, date(1940, 1, 1), date(2006, 12, 31)), self.locale, rng)
        if label == "CREDITCARDNUMBER":
            return _credit_card(self.fake, rng)
        if label in ("GIVENNAME", "SURNAME", "STREET"):
            return self._name(label, who)
        return {
            "TELEPHONENUM": fake.phone_number, "BUILDINGNUM": fake.building_number, "CITY": fake.city,
            "ZIPCODE": fake.postcode,
        }[label]()

    def _name(self, label: str, who: Person) -> str:
        """Given names, surnames and streets as the person's locale writes them: compound given
        names ("Jean-Pierre", "María José"), double surnames ("García López"), multi-word streets
        ("Am Markt", "Lange Gerritsingel"), at the shares the locale's `names` entry gives."""
        fake, rng = self.fakers[who.locale], self.rng
        shares = LOCALE_TEXT.get(who.locale, {}).get("names", {})
        if label == "GIVENNAME":
            first = fake.first_name_female if who.gender == "female" else fake.first_name_male
            roll = rng.random()
            if roll < shares.get("compound_given", 0):
                return f"{first()} {first()}"
            if roll < shares.get("compound_given", 0) + shares.get("hyphenated_given", 0):
                return f"{first()}-{first()}"
            return first()
        if label == "SURNAME":
            return f"{fake.last_name()} {fake.last_name()}" if rng.random() < shares.get("double_surname", 0) \
                else fake.last_name()
        if rng.random() < shares.get("multiword_street", 0):
            if "streets" in shares:
                return rng.choice(shares["streets"])
            return f"{rng.choice(shares['street_prefixes'])} {fake.street_name()}"
        return fake.street_name()

    def decoy(self, name: str, person: int) -> str:
        if name == "ts":  # each log line a little later than the one before
            step = self.rng.randrange(4 * 365 * 86400) if self.clock is None else self.rng.randint(0, 90)
            self.clock = (self.clock or 0) + step
            return (LOG_EPOCH + timedelta(seconds=self.clock)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if name in ("title", "pronoun"):  # agree with the person's gender
            words = LANGUAGE_TEXT[self.language][f"{name}s"][self.person(person).gender]
            key = (name, person)
            if key not in self.decoys:
                self.decoys[key] = self.rng.choice(words)
            return self.decoys[key]
        if (name, person) not in self.decoys:
            self.decoys[(name, person)] = self._draw_decoy(name)
        return self.decoys[(name, person)]

    def _draw_decoy(self, name: str) -> str:
        fake, rng = self.fake, self.rng
        year = rng.randint(2023, 2026)  # of order and invoice numbers
        if name == "order":
            return rng.choice([f"ORD-{year}-{_chars(rng, DIGITS, 6)}", f"#{_chars(rng, DIGITS, 7)}",
                               f"{_chars(rng, UPPER, 2)}{_chars(rng, DIGITS, 8)}"])
        if name == "invoice":
            return rng.choice([f"INV-{year}-{_chars(rng, DIGITS, 5)}", f"RE{year}{_chars(rng, DIGITS, 4)}",
                               f"F-{_chars(rng, DIGITS, 6)}"])
        if name == "ticket":
            return rng.choice([f"#{_chars(rng, DIGITS, 5)}", f"TCK-{_chars(rng, DIGITS, 6)}", f"SR{_chars(rng, DIGITS, 7)}"])
        if name == "policy":  # like the seed's "M.UE.227995"
            return f"{rng.choice(UPPER)}.{_chars(rng, UPPER, 2)}.{_chars(rng, DIGITS, 6)}"
        if name == "product":
            return rng.choice([f"SKU-{_chars(rng, UPPER, 2)}{_chars(rng, DIGITS, 4)}",
                               f"{_chars(rng, UPPER, 3)}-{rng.randint(100, 9999)}", f"{rng.choice(UPPER)}{rng.randint(10, 990)}"])
        if name == "price":
            amount = rng.randint(1, 250_000) / 100
            if self.locale == "en_US":
                return f"${amount:,.2f}"
            if self.locale == "en_GB":
                return f"£{amount:,.2f}"
            euro = f"{amount:,.2f}".replace(",", " ").replace(".", ",")
            return rng.choice([f"{euro} €", f"€ {euro}", f"EUR {euro}", f"{euro}€"])
        if name == "time":
            return f"{rng.randint(7, 19):02d}:{rng.choice(['00', '15', '30', '45'])}"
        if name == "date":  # appointments and due dates: never a birth date
            return _format_date(_random_date(rng, date(2023, 1, 1), date(2026, 12, 31)), self.locale, rng)
        if name == "age":
            return str(rng.randint(18, 94))
        if name == "year":
            return str(rng.randint(1985, 2026))
        if name == "count":
            return str(rng.randint(2, 48))
        if name == "percent":
            return f"{rng.randint(1, 99)}%"
        if name == "ms":
            return str(rng.randint(3, 900))
        if name == "ip":
            return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if name == "state":
            return fake.state_abbr()
        return {"company": fake.company, "org": fake.company, "country": fake.country, "url": fake.url,
                "job": fake.job}[name]()

    def render(self, template: str, person: int = 1, pools: dict[str, list[str]] | None = None) -> list[Segment]:
        """Template -> segments; `{X}` fields refer to `person` unless they name one (`{X:2}`);
        `{>pool}` draws a sentence of `pools` not used yet in this text."""
        segments: list[Segment] = []
        last = 0
        for m in FIELD_RE.finditer(template):
            segments.append((None, template[last:m.start()]))
            name, optional, who, case = m.group(1), m.group(2), int(m.group(3)) if m.group(3) else person, m.group(4)
            last = m.end()
            if name.startswith(">"):
                choices = [t for t in (pools or {})[name[1:]] if (name, t) not in self.used]
                if choices and not (optional and self.rng.random() < 0.5):
                    sentence = self.rng.choice(choices)
                    self.used.add((name, sentence))
                    segments += self.render(sentence, person, pools)
                elif segments and segments[-1][0] is None:  # left out: so is the space before it
                    segments[-1] = (None, segments[-1][1].rstrip(" "))
                continue
            if name in LABELS:
                part = [(name, self.pii(name, who))]
            elif name == "name":
                order = "{SURNAME} {GIVENNAME}" if FOREIGN_LOCALES.get(self.person(who).locale, ("", "", False))[2] \
                    else "{GIVENNAME} {SURNAME}"
                part = self.render(order, who)
            elif name in ("address", "address_block"):
                part = self.render(self._address_layout(name, who), who)
            elif name.startswith("@"):
                part = self.render(LOCALE_TEXT[self.locale][name], who)
            else:
                part = [(None, self.decoy(name, who))]
            segments += [(label, _cased(text, case)) for label, text in part] if case else part
        segments.append((None, template[last:]))
        return segments

    def _address_layout(self, name: str, who: int) -> str:
        """The text locale's address layout for its own people; a foreign person's address is
        written the way their country writes it (number before or after the street, postcode
        before or after the city)."""
        locale = self.person(who).locale
        if locale == self.locale:
            layout = LOCALE_TEXT[self.locale][name]  # a layout, or a list of them to pick from
            return layout if isinstance(layout, str) else self.rng.choice(layout)
        number, postcode, _ = FOREIGN_LOCALES[locale]
        street = "{BUILDINGNUM} {STREET}" if number == "first" else "{STREET} {BUILDINGNUM}"
        town = "{ZIPCODE} {CITY}" if postcode == "before" else "{CITY} {ZIPCODE}"
        return f"{street}\n{town}" if name == "address_block" else f"{street}, {town}"

    def field_name(self, key: str) -> str:
        return "".join(text for _, text in self.render(self.rng.choice(FIELDS[self.language][key])))


def _cased(text: str, case: str) -> str:
    return text.upper() if case == "upper" else text.lower() if case == "lower" else text[:1].upper() + text[1:]


PERSONAL_FIELDS = frozenset({"GIVENNAME", "SURNAME", "TELEPHONENUM", "STREET", "BUILDINGNUM", "CITY", "ZIPCODE"})


def _joined(parts: list[list[Segment]], sep: str) -> list[Segment]:
    out: list[Segment] = []
    for i, part in enumerate(parts):
        out += ([(None, sep)] if i else []) + part
    return out


def _sentences(draft: _Draft, pools: tuple[str, ...], lo: int, hi: int) -> list[list[Segment]]:
    """Between lo and hi distinct sentences drawn from the record language's `pools`."""
    rng, texts = draft.rng, TEXTS[draft.language]
    pool = [t for p in pools for t in texts[p]]
    return [draft.render(t) for t in rng.sample(pool, min(len(pool), rng.randint(lo, hi)))]


def _pick(draft: _Draft, pool: str, person: int = 1) -> list[Segment]:
    return draft.render(draft.rng.choice(TEXTS[draft.language][pool]), person)


# Prose kinds: (draft, the pools body sentences come from) -> segments.

def _email(draft: _Draft, pools: tuple[str, ...]) -> list[Segment]:
    greeting = _pick(draft, "greeting")
    body = _joined(_sentences(draft, pools, 1, 4), draft.rng.choice([" ", "\n"]))
    return _joined([greeting, body, _pick(draft, "closing", person=2)], "\n\n")


def _chat(draft: _Draft, pools: tuple[str, ...]) -> list[Segment]:
    rng = draft.rng
    if rng.random() < 0.5:
        return _joined(_sentences(draft, pools, 1, 3), " ")
    lines = []
    for i, sentence in enumerate(_sentences(draft, pools, 2, 4)):
        speaker = 2 if i % 2 else 3  # speakers are people of their own, not the ones talked about
        lines.append([(None, f"{rng.randint(7, 22):02d}:{rng.randint(0, 59):02d} ")]
                     + draft.render("{USERNAME}: ", speaker) + sentence)
    return _joined(lines, "\n")


def _ticket(draft: _Draft, pools: tuple[str, ...]) -> list[Segment]:
    return _joined([_pick(draft, "ticket"), _joined(_sentences(draft, pools, 1, 4), " ")], "\n")


def _letter(draft: _Draft, pools: tuple[str, ...]) -> list[Segment]:
    return _joined([draft.render("{name}\n{address_block}"), draft.render("{CITY:2}, {date}"),
                    _pick(draft, "greeting"), _joined(_sentences(draft, pools, 1, 3), " "),
                    _pick(draft, "closing", person=2)], "\n\n")


def _note(draft: _Draft, pools: tuple[str, ...]) -> list[Segment]:
    rng = draft.rng
    topic = rng.randrange(3)
    heading = TEXTS[draft.language]["notes"][topic] + rng.choice([":", " -", ""])
    sentences = _sentences(draft, (("medical", "bank", "hr")[topic],), 1, 3) + _sentences(draft, ("body",), 0, 1)
    return _joined([[(None, heading)], _joined(sentences, rng.choice([" ", "\n"]))], "\n")


def _log(draft: _Draft, pools: tuple[str, ...]) -> list[Segment]:
    return _joined([draft.render(t) for t in draft.rng.sample(LOG_LINES, draft.rng.randint(1, 4))], "\n")


# Structured kinds: (draft, the fields listed, the pools prose comes from) -> segments.

def _value(draft: _Draft, key: str, person: int = 1) -> list[Segment]:
    return draft.render("{" + key + "}", person)


def _form(draft: _Draft, keys: list[str], pools: tuple[str, ...]) -> list[Segment]:
    sep = draft.rng.choice([": ", ":\t", " = "])
    return _joined([[(None, draft.field_name(k) + sep)] + _value(draft, k) for k in keys], "\n")


def _html(draft: _Draft, keys: list[str], pools: tuple[str, ...]) -> list[Segment]:
    style = draft.rng.random()
    if style < 0.5:  # a paragraph of prose rather than the fields
        return [(None, "<p>")] + _joined(_sentences(draft, pools, 1, 4), " ") + [(None, "</p>")]
    if style < 0.8:
        items = [[(None, f"  <li><b>{draft.field_name(k)}:</b> ")] + _value(draft, k) + [(None, "</li>")] for k in keys]
        return _joined([[(None, "<ul>")], *items, [(None, "</ul>")]], "\n")
    cells = _joined([[(None, "<td>")] + _value(draft, k) + [(None, "</td>")] for k in keys], "")
    return [(None, "<tr>")] + cells + [(None, "</tr>")]


def _json(draft: _Draft, keys: list[str], pools: tuple[str, ...]) -> list[Segment]:
    pretty = draft.rng.random() < 0.5  # pretty-printed or one line
    sep, pad = (",\n", "  ") if pretty else (", ", "")
    items = [[(None, f'{pad}"{JSON_KEYS[k]}": "')] + _value(draft, k) + [(None, '"')] for k in keys]
    return [(None, "{\n" if pretty else "{")] + _joined(items, sep) + [(None, "\n}" if pretty else "}")]


def _csv(draft: _Draft, keys: list[str], pools: tuple[str, ...]) -> list[Segment]:
    sep = "," if draft.language == "en" else draft.rng.choice([";", ","])
    header = [(None, sep.join(draft.field_name(k) for k in keys))]
    rows = [_joined([_value(draft, k, person) for k in keys], sep) for person in range(1, draft.rng.randint(2, 4))]
    return _joined([header, *rows], "\n")


PROSE = {"email": _email, "chat": _chat, "ticket": _ticket, "letter": _letter, "note": _note, "log": _log}
STRUCTURED = {"form": _form, "html": _html, "json": _json, "csv": _csv}


def _compose(draft: _Draft, kind: str, has_pii: bool) -> tuple[list[Segment], str]:
    """The segments of one text of genre `kind`, and the template it came from ("lang/genre" for
    the genres composed in code, "lang/genre/frame" for the ones written in synth_data/); with
    `has_pii=False`, decoy sentences only."""
    rng = draft.rng
    if not has_pii:
        body = _joined(_sentences(draft, ("decoy",), 1, 4), rng.choice([" ", "\n"]))
        frame = rng.random()
        if frame < 0.4:
            return _joined([_pick(draft, "hello"), body, _pick(draft, "bye")], "\n\n"), f"{draft.language}/plain"
        if frame < 0.6:
            return [(None, "<p>")] + body + [(None, "</p>")], f"{draft.language}/plain"
        return body, f"{draft.language}/plain"
    template = f"{draft.language}/{kind}"
    if kind not in PROSE and kind not in STRUCTURED:
        genre = GENRES[draft.language][kind]
        index = rng.randrange(len(genre["frames"]))
        segments = draft.render(genre["frames"][index], pools=genre.get("pools", {}))
        return _styled(segments, genre.get("style"), rng), f"{template}/{index}"
    body_pools = ("body",) if rng.random() < 0.7 else ("body", "decoy")
    if kind in PROSE:
        return PROSE[kind](draft, body_pools), template
    # a few PII fields in the usual order, maybe a decoy field or two
    keys = sorted(rng.sample(LABELS_IN_FORM_ORDER, rng.randint(2, 7)), key=LABELS_IN_FORM_ORDER.index)
    keys += rng.sample(DECOY_FIELDS, rng.randint(0, 2))
    return STRUCTURED[kind](draft, keys, body_pools), template


_WORD = re.compile(r"[^\W\d_]{4,}")


def _styled(segments: list[Segment], style: str | None, rng: random.Random) -> list[Segment]:
    """`style: sms`: typed in a hurry: often all lowercase (values too, as people type them),
    now and then two letters swapped in a word that is not PII, no final full stop."""
    if style != "sms":
        return segments
    lower = rng.random() < 0.6

    def typo(match: re.Match) -> str:
        word = match.group(0)
        if rng.random() >= 0.06:
            return word
        k = rng.randrange(len(word) - 1)
        return word[:k] + word[k + 1] + word[k] + word[k + 2:]

    out = [(label, text.lower() if lower else text) if label else
           (None, _WORD.sub(typo, text.lower() if lower else text)) for label, text in segments]
    while out and out[-1][0] is None and out[-1][1].endswith("."):
        out[-1] = (None, out[-1][1][:-1])
    return out


def _redact(segments: list[Segment]) -> tuple[str, str, list[Entity]]:
    """Source, response and true entities, numbered as `labels.mask` numbers them."""
    source, spans, pos = [], [], 0
    for label, text in segments:
        source.append(text)
        if label is not None:
            spans.append((pos, pos + len(text), label))
        pos += len(text)
    response, entities = mask("".join(source), spans)
    return "".join(source), response, entities


def _leaks(response: str, values: set[str]) -> bool:
    """Whether a PII value also stands in the response's clear text, as `labels.occurrences`
    finds words (the metrics' rule), case-insensitively. A record where a value is masked in one
    place and in clear in another teaches inconsistent masking. Values of one or two characters
    (building numbers) are exempt: "5" is in every price."""
    clear = PLACEHOLDER_RE.sub("\0", response).casefold()
    return any(len(v) >= 3 and occurrences(clear, v.casefold()) for v in values)


def _valid(source: str, response: str, entities: list[Entity]) -> bool:
    """Whether a drawn record is kept: the chat template would not trim it, and no value leaks
    in clear text. Its spans are exact by construction (`_redact` masks what it inserted)."""
    if source != source.strip() or "\r" in source:  # chat templates trim message contents
        return False
    return not _leaks(response, {e.value for e in entities})


class Generator:
    """Draws records from one seed: one seeded Faker per locale, one random.Random for choices."""

    def __init__(self, seed: int, languages: tuple[str, ...] = LANGUAGES) -> None:
        unknown = set(languages) - set(LANGUAGES)
        if unknown or not languages:
            raise ValueError(f"languages must be a non-empty subset of {LANGUAGES}, got {languages}")
        self.languages = tuple(languages)
        self.rng = random.Random(seed)
        self.fakers: dict[str, Faker] = {}
        for locale in sorted({loc for lang in self.languages for loc in LOCALES[lang]} | set(FOREIGN_LOCALES)):
            fake = Faker(locale)
            fake.seed_instance(f"{seed}:{locale}")  # str seeds hash stably (sha512), unlike hash()
            self.fakers[locale] = fake
        self.redraws = 0  # records drawn again because a check failed (reported by the CLI)

    def record(self) -> Generated:
        rng = self.rng
        lang = rng.choice(self.languages)
        locale = rng.choice(LOCALES[lang])
        has_pii = rng.random() >= NO_PII_SHARE
        kinds = [k for k in KINDS if k in PROSE or k in STRUCTURED or k in GENRES[lang]]
        kind = rng.choices(kinds, weights=[KINDS[k] for k in kinds])[0] if has_pii else "plain"
        for _ in range(MAX_ATTEMPTS):
            draft = _Draft(self.fakers, rng, locale)
            segments, template = _compose(draft, kind, has_pii)
            source, response, entities = _redact(segments)
            if _valid(source, response, entities):
                return Generated(source, response, entities, lang, locale, kind, template)
            self.redraws += 1
        raise RuntimeError(f"no valid {locale} {kind} record in {MAX_ATTEMPTS} draws")


def write_json(records: list[dict[str, Any]], path: Path) -> None:
    """A JSON list, one record per line (UTF-8, fixed layout): it regenerates byte-identically
    and diffs line by line."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pii_redact.synth",
        description="Generate the Faker-based PII redaction training set: a JSON list of "
                    "{prompt, response} records in six languages, where the response replaces every "
                    f"PII value with [LABEL_n] for the {len(LABELS)} labels ({', '.join(LABELS)}). "
                    "The output is deterministic for a given --seed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output", "-o", type=Path, default=Path("pii_redaction_train.json"), help="JSON file to write")
    parser.add_argument("--n", type=int, default=35_000, help="number of records")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")
    parser.add_argument("--languages", default=",".join(LANGUAGES),
                        help=f"comma-separated subset of {','.join(LANGUAGES)}")
    args = parser.parse_args(argv)
    languages = tuple(lang.strip() for lang in args.languages.split(",") if lang.strip())
    if args.n < 1:
        parser.error("--n must be at least 1")
    if not languages or set(languages) - set(LANGUAGES):
        parser.error(f"--languages must be a comma-separated subset of {','.join(LANGUAGES)}")

    started = time.perf_counter()
    generator = Generator(args.seed, languages)
    records = [generator.record() for _ in range(args.n)]
    write_json([r.to_json() for r in records], args.output)

    labels = Counter(e.label for r in records for e in r.entities)
    shares = Counter(r.language for r in records)
    print(f"wrote {len(records)} records to {args.output} in {time.perf_counter() - started:.1f}s "
          f"({generator.redraws} redraws)", file=sys.stderr)
    print("languages: " + ", ".join(f"{k} {v / len(records):.1%}" for k, v in sorted(shares.items())), file=sys.stderr)
    print("entities:  " + ", ".join(f"{k} {labels[k]}" for k in LABELS), file=sys.stderr)
    print(f"no-PII records: {sum(not r.entities for r in records)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
