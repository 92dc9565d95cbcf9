"""The values a text holds: PII in the formats of each locale (where Faker has no provider, or a
wrong one for the locale), names as each locale writes them, and the decoys that stay in clear
(order numbers, prices, times, non-birth dates...). Each function draws with the draft's seeded
Faker and random.Random, so the data set regenerates byte-identically."""
from __future__ import annotations

import random
import re
import string
import unicodedata
from datetime import date, datetime
from typing import TYPE_CHECKING, Callable

from faker import Faker
from faker.providers.address.it_IT import Provider as ItalianAddresses

from .tables import LOCALE_TEXT, MONTHS, V3

if TYPE_CHECKING:
    from .draft import Draft, Person

LOG_EPOCH = datetime(2023, 1, 1)  # log timestamps fall in 2023-2026
PERSONAL_FIELDS = frozenset({"GIVENNAME", "SURNAME", "TELEPHONENUM", "STREET", "BUILDINGNUM", "CITY", "ZIPCODE"})
UPPER, DIGITS = string.ascii_uppercase, string.digits
# Building numbers of their own beside the house number: a flat or door, a post box (version 3).
UNIT_NUMBERS = {"FLAT": "BUILDINGNUM", "POBOX": "BUILDINGNUM"}
CASES: dict[str, Callable[[str], str]] = {"upper": str.upper, "lower": str.lower,
                                          "cap": lambda text: text[:1].upper() + text[1:]}


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


def initials(name: str) -> str:
    """A name as its initials, joined as written: "Anna" -> "A.", "Jean-Pierre" -> "J.-P.",
    "María José" -> "M. J."."""
    return re.sub(r"(\w)\w*", r"\1.", name)


def regrouped_phone(number: str) -> str:
    """The same phone number laid out another way: a grouped number run together (an extension
    dropped), a run-together one grouped in threes from the end."""
    main = re.split(r"x|ext", number)[0].strip()
    digits = re.sub(r"[^\d+]", "", main)
    if digits != main:
        return digits
    head = len(digits) % 3 or 3
    return " ".join([digits[:head]] + [digits[i:i + 3] for i in range(head, len(digits), 3)])


def another_form(label: str, value: str, form: str) -> str:
    """`value` written in `form`: a case (`CASES`), its `initial`s, or a regrouped `phone`."""
    if form in CASES:
        return CASES[form](value)
    if form == "initial":
        return initials(value)
    if form == "phone" and label == "TELEPHONENUM":
        return regrouped_phone(value)
    raise ValueError(f"no form {form!r} of {label}")


def draw_pii(draft: Draft, label: str, person: int) -> str:
    """A fresh value of `label` for `person` of the draft."""
    # Documents, accounts and cards follow the text's country; names, phones and addresses
    # follow the person's.
    rng, who = draft.rng, draft.people[person]
    if label == "FLAT":
        return str(rng.randint(1, 48)) + (rng.choice("ABCD") if rng.random() < 0.2 else "")
    if label == "POBOX":
        return str(rng.randint(10, 99_999))
    locale = who.locale if label in PERSONAL_FIELDS else draft.locale
    fake = draft.fakers[locale]
    if label in LOCALE_VALUES.get(locale, {}):
        return LOCALE_VALUES[locale][label](fake, rng)
    if label == "EMAIL":
        given, surname = _handle(draft.pii("GIVENNAME", person), draft.pii("SURNAME", person))
        if rng.random() < 0.6 and given and surname:  # most personal addresses are made from the name
            local = rng.choice([f"{given}.{surname}", f"{given[:1]}{surname}", f"{given}{rng.randint(1, 99)}",
                                f"{surname}.{given}"])
            return f"{local}@{draft.fake.free_email_domain()}"
        return f"{draft.fake.user_name()}@{draft.fake.free_email_domain()}"
    if label == "USERNAME":
        roll = rng.random()
        given, surname = _handle(draft.fake.first_name(), draft.fake.last_name())
        if roll < 0.5:
            return draft.fake.user_name()
        if roll < 0.8:
            return f"{given}{rng.choice(['', '.', '_'])}{surname[:rng.randint(1, 6)]}{rng.randint(1, 999)}"
        # random handles like the seed's "faozzsd379223"
        return _chars(rng, string.ascii_lowercase, rng.randint(5, 8)) + _chars(rng, DIGITS, rng.randint(2, 6))
    if label == "PASSWORD":
        if rng.random() < 0.6:
            return draft.fake.password(length=rng.randint(8, 16))
        return f"{_ascii(draft.fake.first_name()).capitalize()}{rng.randint(1950, 2024)}{rng.choice('!?#$%*')}"
    if label == "DATEOFBIRTH":
        return _format_date(_random_date(rng, date(1940, 1, 1), date(2006, 12, 31)), draft.locale, rng)
    if label == "CREDITCARDNUMBER":
        return _credit_card(draft.fake, rng)
    if label in ("GIVENNAME", "SURNAME", "STREET"):
        return draw_name(draft, label, who)
    return {
        "TELEPHONENUM": fake.phone_number, "BUILDINGNUM": fake.building_number, "CITY": fake.city,
        "ZIPCODE": fake.postcode,
    }[label]()


def draw_name(draft: Draft, label: str, who: Person) -> str:
    """Given names, surnames and streets as the person's locale writes them: compound given
    names ("Jean-Pierre", "María José"), double surnames ("García López"), multi-word streets
    ("Am Markt", "Lange Gerritsingel"), at the shares the locale's `names` entry gives."""
    fake, rng = draft.fakers[who.locale], draft.rng
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


def draw_decoy(draft: Draft, name: str) -> str:
    """A fresh decoy `name` (a lowercase template field) in the draft's locale."""
    fake, rng = draft.fake, draft.rng
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
        if draft.locale == "en_US":
            return f"${amount:,.2f}"
        if draft.locale == "en_GB":
            return f"£{amount:,.2f}"
        euro = f"{amount:,.2f}".replace(",", " ").replace(".", ",")
        return rng.choice([f"{euro} €", f"€ {euro}", f"EUR {euro}", f"{euro}€"])
    if name == "time":
        return f"{rng.randint(7, 19):02d}:{rng.choice(['00', '15', '30', '45'])}"
    if name == "date":  # appointments and due dates: never a birth date
        return _format_date(_random_date(rng, date(2023, 1, 1), date(2026, 12, 31)), draft.locale, rng)
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
    if name in ("firm", "brand"):
        return _lookalike(draft, name)
    if name == "flight":
        return f"{rng.choice(['LH', 'KL', 'AF', 'AZ', 'IB', 'BA', 'U2', 'FR', 'LX', 'OS'])} {rng.randint(100, 9999)}"
    if name == "room":
        return str(rng.randint(100, 699))
    return {"company": fake.company, "org": fake.company, "country": fake.country, "url": fake.url,
            "job": fake.job}[name]()


def _lookalike(draft: Draft, name: str) -> str:
    """A hard negative of version 3: a firm or product named after a family, a first name or a
    town ("Jansen & Zonen", "Hotel Mailand", "the Clara desk lamp"), written the way the text's
    language names them, that stays in clear."""
    fake, rng = draft.fake, draft.rng
    city = LOCALE_VALUES.get(draft.locale, {}).get("CITY", lambda f, r: f.city())
    base = {"firm": lambda: rng.choice([fake.last_name, lambda: city(fake, rng)])(),
            "brand": lambda: rng.choice([fake.first_name, lambda: city(fake, rng)])()}[name]()
    return rng.choice(V3["languages"][draft.language][f"{name}s"]).replace("*", base)
