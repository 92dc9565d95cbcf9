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

Every record is checked before it is kept: `labels.align` must recover exactly the spans the
generator inserted (it places literals at their earliest position, so e.g. a multi-word street
before " " + building number would be mis-split), and no PII value may also appear in the clear
text of the response. A record failing either check is drawn again, so the training data and
downstream entity metrics rest on exact spans. Generation is deterministic for a seed: one
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
from typing import Callable

from faker import Faker
from faker.providers.address.it_IT import Provider as ItalianAddresses

from pii_redact.chat import build_prompt
from pii_redact.labels import LABELS, PLACEHOLDER_RE, Entity, align

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "it", "es", "nl")
LOCALES: dict[str, tuple[str, ...]] = {
    "en": ("en_US", "en_GB"), "de": ("de_DE",), "fr": ("fr_FR",), "it": ("it_IT",),
    "es": ("es_ES",), "nl": ("nl_NL",),
}
NO_PII_SHARE = 0.07  # records that are all decoys: the model must learn to change nothing
LOG_EPOCH = datetime(2023, 1, 1)  # log timestamps fall in 2023-2026
MAX_ATTEMPTS = 200   # draws per record before giving up (a template that can never pass)

# `{NAME}` or `{NAME:2}`: a PII field (uppercase), decoy or macro (lowercase), `@term`.
FIELD_RE = re.compile(r"\{(@?[A-Za-z_]+)(?::(\d))?\}")

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

MONTHS: dict[str, tuple[str, ...]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
           "Oktober", "November", "Dezember"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre"),
    "it": ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
           "settembre", "ottobre", "novembre", "dicembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
           "octubre", "noviembre", "diciembre"),
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september",
           "oktober", "november", "december"),
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
# Per-language text: sentence pools, frames, field names
# ---------------------------------------------------------------------------------------------
# Pools: "body" (PII sentences), "decoy" (no PII, decoys only), "medical"/"bank"/"hr" (topic
# notes), "greeting"/"closing" (with names), "hello"/"bye" (without), "ticket" (subject lines),
# "notes" (note headings by topic). Field names (forms, CSV headers, HTML lists) are in FIELDS.

TEXTS: dict[str, dict[str, list[str]]] = {
    "en": {
        "body": [
            "You can reach me at {TELEPHONENUM} or {EMAIL}.",
            "My username is {USERNAME} and the temporary password is {PASSWORD}.",
            "Please update my address to {address}.",
            "{GIVENNAME} {SURNAME} was born on {DATEOFBIRTH}.",
            "The refund of {price} will go to account {ACCOUNTNUM}.",
            "Card on file: {CREDITCARDNUMBER}, used for order {order}.",
            "My {@social} is {SOCIALNUM}.",
            "{@licence}: {DRIVERLICENSENUM}.",
            "{@idcard} {IDCARDNUM} was verified by {company}.",
            "For the tax form, my {@tax} is {TAXNUM}.",
            "Ship it to {name}, {address}.",
            "{GIVENNAME} lives in {CITY}, {@zip} {ZIPCODE}.",
            "Please call {GIVENNAME:2} on {TELEPHONENUM:2} before {time}.",
            "I forgot the password for {USERNAME}; the last one I remember is {PASSWORD}.",
            "Log in as {USERNAME} (yes, {USERNAME} in lowercase) and change the password.",
            "Send the signed form to {EMAIL} by {date}.",
            "Date of birth: {DATEOFBIRTH}, born in {CITY}.",
            "The transfer from {ACCOUNTNUM} to {ACCOUNTNUM:2} went through, reference {invoice}.",
            "{GIVENNAME} asked me to forward this to {EMAIL:2}.",
            "Use {url} to reset the password for {EMAIL}.",
            "My child {GIVENNAME} {SURNAME} (DOB: {DATEOFBIRTH}) starts at the new school on {date}.",
            "The parcel was left with {GIVENNAME:2} {SURNAME:2} at number {BUILDINGNUM}.",
            "We moved to {STREET} last month, the {@zip} is {ZIPCODE}.",
            "Charge the {price} to card {CREDITCARDNUMBER} and email the receipt to {EMAIL}.",
        ],
        "decoy": [
            "Your order {order} of {price} has shipped.",
            "The appointment is on {date} at {time}.",
            "Invoice {invoice} is due on {date}.",
            "Please quote ticket {ticket} in any reply.",
            "Policy {policy} covers shipments to {country}.",
            "See {url} for the terms and conditions.",
            "Product {product} is back in stock for {price}.",
            "Our team at {company} will get back to you within two business days.",
            "The server at {ip} was restarted at {time}.",
        ],
        "medical": [
            "Patient {name} (DOB {DATEOFBIRTH}) was seen on {date} for a follow-up.",
            "Insurance: {@social} {SOCIALNUM}; next visit {date} at {time}.",
            "Emergency contact: {GIVENNAME:2} {SURNAME:2}, {TELEPHONENUM:2}.",
            "Prescription sent to the pharmacy in {CITY}.",
        ],
        "bank": [
            "Customer {name} disputes a charge of {price} on card {CREDITCARDNUMBER}.",
            "Standing order of {price} from {ACCOUNTNUM} starts on {date}.",
            "Identity checked against {@idcard} {IDCARDNUM}.",
            "{@tax} {TAXNUM} recorded for interest reporting.",
        ],
        "hr": [
            "New hire: {name}, start date {date}, salary {price}.",
            "Salary account: {ACCOUNTNUM}.",
            "{@tax}: {TAXNUM}; {@social}: {SOCIALNUM}.",
            "Company car issued after checking {@licence} {DRIVERLICENSENUM}.",
            "Home address: {address}.",
        ],
        "greeting": ["Hi {GIVENNAME},", "Dear {GIVENNAME} {SURNAME},", "Hello {GIVENNAME},", "Good morning {GIVENNAME},"],
        "closing": ["Best regards,\n{GIVENNAME:2} {SURNAME:2}", "Thanks,\n{GIVENNAME:2}",
                    "Kind regards,\n{GIVENNAME:2} {SURNAME:2}\n{TELEPHONENUM:2}", "Cheers,\n{GIVENNAME:2}"],
        "hello": ["Hello,", "Hi team,", "Dear customer,"],
        "bye": ["Thanks!", "Best regards,\n{company}", "Kind regards,\nCustomer Service"],
        "ticket": ["Ticket {ticket}: cannot log in", "Ticket {ticket} - wrong billing address",
                   "Support request {ticket}: refund"],
        "notes": ["Medical note", "Bank memo", "HR record"],
    },
    "de": {
        "body": [
            "Sie erreichen mich unter {TELEPHONENUM} oder per Mail an {EMAIL}.",
            "Mein Benutzername ist {USERNAME}, das vorläufige Passwort lautet {PASSWORD}.",
            "Bitte ändern Sie meine Adresse auf {address}.",
            "{GIVENNAME} {SURNAME} ist am {DATEOFBIRTH} geboren.",
            "Die Erstattung von {price} geht auf das Konto {ACCOUNTNUM}.",
            "Hinterlegte Kreditkarte: {CREDITCARDNUMBER}, Bestellung {order}.",
            "Meine Sozialversicherungsnummer ist {SOCIALNUM}.",
            "Führerscheinnummer: {DRIVERLICENSENUM}.",
            "Der Personalausweis {IDCARDNUM} wurde von {company} geprüft.",
            "Meine Steuer-ID lautet {TAXNUM}.",
            "Bitte liefern an {name}, {address}.",
            "{GIVENNAME} wohnt in {ZIPCODE} {CITY}.",
            "Rufen Sie bitte {GIVENNAME:2} unter {TELEPHONENUM:2} vor {time} Uhr an.",
            "Ich habe das Passwort für {USERNAME} vergessen, das letzte war {PASSWORD}.",
            "Melden Sie sich als {USERNAME} an (ja, {USERNAME} kleingeschrieben).",
            "Schicken Sie das unterschriebene Formular bis {date} an {EMAIL}.",
            "Geburtsdatum: {DATEOFBIRTH}, Geburtsort: {CITY}.",
            "Die Überweisung von {ACCOUNTNUM} auf {ACCOUNTNUM:2} ist erfolgt, Verwendungszweck {invoice}.",
            "{GIVENNAME} bat mich, das an {EMAIL:2} weiterzuleiten.",
            "Das Paket wurde bei {GIVENNAME:2} {SURNAME:2} in Hausnummer {BUILDINGNUM} abgegeben.",
            "Wir sind in die {STREET} gezogen, die Postleitzahl ist {ZIPCODE}.",
        ],
        "decoy": [
            "Ihre Bestellung {order} über {price} wurde versandt.",
            "Der Termin ist am {date} um {time} Uhr.",
            "Die Rechnung {invoice} ist am {date} fällig.",
            "Bitte geben Sie bei Rückfragen das Ticket {ticket} an.",
            "Die Police {policy} gilt auch für Sendungen nach {country}.",
            "Die AGB finden Sie unter {url}.",
            "Artikel {product} ist wieder lieferbar, Preis {price}.",
            "Das Team von {company} meldet sich innerhalb von zwei Werktagen.",
        ],
        "medical": [
            "Patient {name} (geb. {DATEOFBIRTH}) war am {date} zur Nachkontrolle da.",
            "Versicherungsnummer {SOCIALNUM}; nächster Termin am {date} um {time} Uhr.",
            "Notfallkontakt: {GIVENNAME:2} {SURNAME:2}, Tel. {TELEPHONENUM:2}.",
        ],
        "bank": [
            "Kunde {name} widerspricht einer Belastung von {price} auf Karte {CREDITCARDNUMBER}.",
            "Dauerauftrag über {price} von {ACCOUNTNUM} ab {date}.",
            "Identität anhand Ausweis {IDCARDNUM} geprüft.",
        ],
        "hr": [
            "Neueinstellung: {name}, Eintritt am {date}, Gehalt {price}.",
            "Gehaltskonto: {ACCOUNTNUM}.",
            "Steuer-ID: {TAXNUM}; SV-Nummer: {SOCIALNUM}.",
            "Dienstwagen nach Prüfung des Führerscheins {DRIVERLICENSENUM} übergeben.",
            "Wohnanschrift: {address}.",
        ],
        "greeting": ["Hallo {GIVENNAME},", "Liebe/r {GIVENNAME} {SURNAME},", "Guten Tag {GIVENNAME} {SURNAME},"],
        "closing": ["Viele Grüße\n{GIVENNAME:2} {SURNAME:2}", "Danke und Gruß\n{GIVENNAME:2}",
                    "Mit freundlichen Grüßen\n{GIVENNAME:2} {SURNAME:2}\nTel. {TELEPHONENUM:2}"],
        "hello": ["Hallo,", "Sehr geehrte Damen und Herren,", "Hallo zusammen,"],
        "bye": ["Danke!", "Mit freundlichen Grüßen\n{company}", "Viele Grüße\nIhr Kundenservice"],
        "ticket": ["Ticket {ticket}: Anmeldung nicht möglich", "Ticket {ticket} - falsche Rechnungsadresse",
                   "Supportanfrage {ticket}: Erstattung"],
        "notes": ["Ärztliche Notiz", "Bankvermerk", "Personalakte"],
    },
    "fr": {
        "body": [
            "Vous pouvez me joindre au {TELEPHONENUM} ou à {EMAIL}.",
            "Mon identifiant est {USERNAME} et le mot de passe provisoire est {PASSWORD}.",
            "Merci de mettre à jour mon adresse : {address}.",
            "{GIVENNAME} {SURNAME} est né(e) le {DATEOFBIRTH}.",
            "Le remboursement de {price} sera versé sur le compte {ACCOUNTNUM}.",
            "Carte enregistrée : {CREDITCARDNUMBER}, commande {order}.",
            "Mon numéro de sécurité sociale est le {SOCIALNUM}.",
            "Numéro de permis de conduire : {DRIVERLICENSENUM}.",
            "La carte d'identité {IDCARDNUM} a été vérifiée par {company}.",
            "Mon numéro fiscal est le {TAXNUM}.",
            "Livraison à {name}, {address}.",
            "{GIVENNAME} habite à {CITY} ({ZIPCODE}).",
            "Merci d'appeler {GIVENNAME:2} au {TELEPHONENUM:2} avant {time}.",
            "J'ai oublié le mot de passe de {USERNAME} ; le dernier était {PASSWORD}.",
            "Connectez-vous avec {USERNAME} (oui, {USERNAME} en minuscules).",
            "Envoyez le formulaire signé à {EMAIL} avant le {date}.",
            "Date de naissance : {DATEOFBIRTH}, à {CITY}.",
            "Le virement de {ACCOUNTNUM} vers {ACCOUNTNUM:2} est effectué, référence {invoice}.",
            "{GIVENNAME} m'a demandé de transférer ceci à {EMAIL:2}.",
            "Nous habitons au {BUILDINGNUM} {STREET} depuis {date}.",
        ],
        "decoy": [
            "Votre commande {order} d'un montant de {price} a été expédiée.",
            "Le rendez-vous est fixé au {date} à {time}.",
            "La facture {invoice} est à régler avant le {date}.",
            "Merci de rappeler le ticket {ticket} dans votre réponse.",
            "Le contrat {policy} couvre les envois vers {country}.",
            "Les conditions générales sont sur {url}.",
            "L'article {product} est de nouveau disponible à {price}.",
        ],
        "medical": [
            "Patient(e) {name} (né(e) le {DATEOFBIRTH}) vu(e) le {date} pour un contrôle.",
            "N° de sécurité sociale {SOCIALNUM} ; prochain rendez-vous le {date} à {time}.",
            "Personne à prévenir : {GIVENNAME:2} {SURNAME:2}, {TELEPHONENUM:2}.",
        ],
        "bank": [
            "Le client {name} conteste un débit de {price} sur la carte {CREDITCARDNUMBER}.",
            "Virement permanent de {price} depuis {ACCOUNTNUM} à partir du {date}.",
            "Identité vérifiée avec la carte d'identité {IDCARDNUM}.",
        ],
        "hr": [
            "Nouvelle embauche : {name}, arrivée le {date}, salaire {price}.",
            "Compte de paie : {ACCOUNTNUM}.",
            "Numéro fiscal : {TAXNUM} ; sécurité sociale : {SOCIALNUM}.",
            "Adresse personnelle : {address}.",
        ],
        "greeting": ["Bonjour {GIVENNAME},", "Cher/Chère {GIVENNAME} {SURNAME},", "Salut {GIVENNAME},"],
        "closing": ["Cordialement,\n{GIVENNAME:2} {SURNAME:2}", "Merci,\n{GIVENNAME:2}",
                    "Bien à vous,\n{GIVENNAME:2} {SURNAME:2}\n{TELEPHONENUM:2}"],
        "hello": ["Bonjour,", "Madame, Monsieur,", "Bonjour à tous,"],
        "bye": ["Merci !", "Cordialement,\n{company}", "Le service client"],
        "ticket": ["Ticket {ticket} : connexion impossible", "Ticket {ticket} - adresse de facturation erronée",
                   "Demande {ticket} : remboursement"],
        "notes": ["Note médicale", "Note bancaire", "Dossier RH"],
    },
    "it": {
        "body": [
            "Potete contattarmi al {TELEPHONENUM} o scrivere a {EMAIL}.",
            "Il mio nome utente è {USERNAME} e la password provvisoria è {PASSWORD}.",
            "Vi prego di aggiornare il mio indirizzo: {address}.",
            "{GIVENNAME} {SURNAME} è nato/a il {DATEOFBIRTH}.",
            "Il rimborso di {price} sarà accreditato sul conto {ACCOUNTNUM}.",
            "Carta registrata: {CREDITCARDNUMBER}, ordine {order}.",
            "Il numero della tessera sanitaria è {SOCIALNUM}.",
            "Numero patente: {DRIVERLICENSENUM}.",
            "La carta d'identità {IDCARDNUM} è stata verificata da {company}.",
            "Il mio codice fiscale è {TAXNUM}.",
            "Spedire a {name}, {address}.",
            "{GIVENNAME} abita a {CITY}, CAP {ZIPCODE}.",
            "Chiamate {GIVENNAME:2} al {TELEPHONENUM:2} entro le {time}.",
            "Ho dimenticato la password di {USERNAME}; l'ultima era {PASSWORD}.",
            "Accedi come {USERNAME} (sì, {USERNAME} tutto minuscolo).",
            "Inviate il modulo firmato a {EMAIL} entro il {date}.",
            "Data di nascita: {DATEOFBIRTH}, luogo di nascita: {CITY}.",
            "Il bonifico da {ACCOUNTNUM} a {ACCOUNTNUM:2} è stato eseguito, causale {invoice}.",
        ],
        "decoy": [
            "Il suo ordine {order} di {price} è stato spedito.",
            "L'appuntamento è il {date} alle {time}.",
            "La fattura {invoice} scade il {date}.",
            "Indichi il ticket {ticket} in ogni risposta.",
            "La polizza {policy} copre le spedizioni verso {country}.",
            "Le condizioni sono su {url}.",
        ],
        "medical": [
            "Paziente {name} (nato/a il {DATEOFBIRTH}) visitato/a il {date} per controllo.",
            "Tessera sanitaria {SOCIALNUM}; prossima visita il {date} alle {time}.",
            "Contatto di emergenza: {GIVENNAME:2} {SURNAME:2}, {TELEPHONENUM:2}.",
        ],
        "bank": [
            "Il cliente {name} contesta un addebito di {price} sulla carta {CREDITCARDNUMBER}.",
            "Bonifico periodico di {price} da {ACCOUNTNUM} dal {date}.",
        ],
        "hr": [
            "Nuova assunzione: {name}, inizio il {date}, stipendio {price}.",
            "Codice fiscale: {TAXNUM}; IBAN per lo stipendio: {ACCOUNTNUM}.",
            "Indirizzo di residenza: {address}.",
        ],
        "greeting": ["Ciao {GIVENNAME},", "Gentile {GIVENNAME} {SURNAME},", "Buongiorno {GIVENNAME},"],
        "closing": ["Cordiali saluti,\n{GIVENNAME:2} {SURNAME:2}", "Grazie,\n{GIVENNAME:2}",
                    "Distinti saluti,\n{GIVENNAME:2} {SURNAME:2}\n{TELEPHONENUM:2}"],
        "hello": ["Buongiorno,", "Gentile cliente,", "Ciao a tutti,"],
        "bye": ["Grazie!", "Cordiali saluti,\n{company}", "Il servizio clienti"],
        "ticket": ["Ticket {ticket}: accesso non riuscito", "Richiesta {ticket} - rimborso"],
        "notes": ["Nota medica", "Nota bancaria", "Scheda personale"],
    },
    "es": {
        "body": [
            "Puede contactarme en el {TELEPHONENUM} o en {EMAIL}.",
            "Mi usuario es {USERNAME} y la contraseña temporal es {PASSWORD}.",
            "Por favor, actualicen mi dirección a {address}.",
            "{GIVENNAME} {SURNAME} nació el {DATEOFBIRTH}.",
            "El reembolso de {price} se abonará en la cuenta {ACCOUNTNUM}.",
            "Tarjeta registrada: {CREDITCARDNUMBER}, pedido {order}.",
            "Mi número de la Seguridad Social es {SOCIALNUM}.",
            "Permiso de conducir: {DRIVERLICENSENUM}.",
            "El DNI {IDCARDNUM} fue verificado por {company}.",
            "Mi NIF es {TAXNUM}.",
            "Enviar a {name}, {address}.",
            "{GIVENNAME} vive en {CITY}, código postal {ZIPCODE}.",
            "Llame a {GIVENNAME:2} al {TELEPHONENUM:2} antes de las {time}.",
            "Olvidé la contraseña de {USERNAME}; la última era {PASSWORD}.",
            "Entra como {USERNAME} (sí, {USERNAME} en minúsculas).",
            "Envíe el formulario firmado a {EMAIL} antes del {date}.",
            "Fecha de nacimiento: {DATEOFBIRTH}, en {CITY}.",
            "La transferencia de {ACCOUNTNUM} a {ACCOUNTNUM:2} se ha realizado, concepto {invoice}.",
        ],
        "decoy": [
            "Su pedido {order} por {price} ha sido enviado.",
            "La cita es el {date} a las {time}.",
            "La factura {invoice} vence el {date}.",
            "Indique la incidencia {ticket} en su respuesta.",
            "La póliza {policy} cubre envíos a {country}.",
            "Consulte las condiciones en {url}.",
        ],
        "medical": [
            "Paciente {name} (fecha de nacimiento {DATEOFBIRTH}) atendido/a el {date}.",
            "N.º de la Seguridad Social {SOCIALNUM}; próxima cita el {date} a las {time}.",
            "Contacto de emergencia: {GIVENNAME:2} {SURNAME:2}, {TELEPHONENUM:2}.",
        ],
        "bank": [
            "El cliente {name} reclama un cargo de {price} en la tarjeta {CREDITCARDNUMBER}.",
            "Orden permanente de {price} desde {ACCOUNTNUM} a partir del {date}.",
        ],
        "hr": [
            "Nueva incorporación: {name}, inicio el {date}, salario {price}.",
            "NIF: {TAXNUM}; cuenta de nómina: {ACCOUNTNUM}.",
            "Domicilio: {address}.",
        ],
        "greeting": ["Hola {GIVENNAME}:", "Estimado/a {GIVENNAME} {SURNAME}:", "Buenos días, {GIVENNAME}:"],
        "closing": ["Saludos cordiales,\n{GIVENNAME:2} {SURNAME:2}", "Gracias,\n{GIVENNAME:2}",
                    "Atentamente,\n{GIVENNAME:2} {SURNAME:2}\n{TELEPHONENUM:2}"],
        "hello": ["Hola:", "Estimado cliente:", "Buenos días:"],
        "bye": ["¡Gracias!", "Atentamente,\n{company}", "Atención al cliente"],
        "ticket": ["Incidencia {ticket}: no puedo iniciar sesión", "Solicitud {ticket} - reembolso"],
        "notes": ["Nota médica", "Nota bancaria", "Ficha de personal"],
    },
    "nl": {
        "body": [
            "U kunt mij bereiken op {TELEPHONENUM} of via {EMAIL}.",
            "Mijn gebruikersnaam is {USERNAME} en het tijdelijke wachtwoord is {PASSWORD}.",
            "Wilt u mijn adres wijzigen in {address}?",
            "{GIVENNAME} {SURNAME} is geboren op {DATEOFBIRTH}.",
            "De terugbetaling van {price} wordt overgemaakt naar {ACCOUNTNUM}.",
            "Opgeslagen creditcard: {CREDITCARDNUMBER}, bestelling {order}.",
            "Mijn BSN is {SOCIALNUM}.",
            "Rijbewijsnummer: {DRIVERLICENSENUM}.",
            "Identiteitskaart {IDCARDNUM} is gecontroleerd door {company}.",
            "Mijn btw-id is {TAXNUM}.",
            "Verzenden naar {name}, {address}.",
            "{GIVENNAME} woont in {CITY}, postcode {ZIPCODE}.",
            "Bel {GIVENNAME:2} op {TELEPHONENUM:2} voor {time}.",
            "Ik ben het wachtwoord van {USERNAME} vergeten; het laatste was {PASSWORD}.",
            "Log in als {USERNAME} (ja, {USERNAME} in kleine letters).",
            "Stuur het ondertekende formulier voor {date} naar {EMAIL}.",
            "Geboortedatum: {DATEOFBIRTH}, geboren in {CITY}.",
        ],
        "decoy": [
            "Uw bestelling {order} van {price} is verzonden.",
            "De afspraak is op {date} om {time}.",
            "Factuur {invoice} moet uiterlijk {date} betaald zijn.",
            "Vermeld ticket {ticket} in uw antwoord.",
            "Polis {policy} dekt zendingen naar {country}.",
            "De voorwaarden staan op {url}.",
        ],
        "medical": [
            "Patiënt {name} (geb. {DATEOFBIRTH}) gezien op {date} voor controle.",
            "BSN {SOCIALNUM}; volgende afspraak op {date} om {time}.",
            "Contactpersoon: {GIVENNAME:2} {SURNAME:2}, {TELEPHONENUM:2}.",
        ],
        "bank": [
            "Klant {name} betwist een afschrijving van {price} op kaart {CREDITCARDNUMBER}.",
            "Periodieke overboeking van {price} vanaf {ACCOUNTNUM} per {date}.",
        ],
        "hr": [
            "Nieuwe medewerker: {name}, start op {date}, salaris {price}.",
            "BSN: {SOCIALNUM}; salarisrekening: {ACCOUNTNUM}.",
            "Woonadres: {address}.",
        ],
        "greeting": ["Hoi {GIVENNAME},", "Beste {GIVENNAME} {SURNAME},", "Goedemorgen {GIVENNAME},"],
        "closing": ["Met vriendelijke groet,\n{GIVENNAME:2} {SURNAME:2}", "Bedankt,\n{GIVENNAME:2}",
                    "Groeten,\n{GIVENNAME:2} {SURNAME:2}\n{TELEPHONENUM:2}"],
        "hello": ["Hallo,", "Geachte heer/mevrouw,", "Beste klant,"],
        "bye": ["Bedankt!", "Met vriendelijke groet,\n{company}", "Klantenservice"],
        "ticket": ["Ticket {ticket}: kan niet inloggen", "Verzoek {ticket} - terugbetaling"],
        "notes": ["Medische notitie", "Bankmemo", "Personeelsdossier"],
    },
}

# Locale-specific words and address layouts. `address` must separate a (possibly multi-word)
# street from the building number by something a street never contains, or align mis-splits.
LOCALE_TEXT: dict[str, dict[str, str]] = {
    "en_US": {"@social": "Social Security number", "@tax": "taxpayer ID", "@idcard": "state ID",
              "@licence": "Driver's license number", "@zip": "ZIP code",
              "address": "{BUILDINGNUM} {STREET}, {CITY}, {state} {ZIPCODE}",
              "address_block": "{BUILDINGNUM} {STREET}\n{CITY}, {state} {ZIPCODE}"},
    "en_GB": {"@social": "National Insurance number", "@tax": "UTR", "@idcard": "passport number",
              "@licence": "Driving licence number", "@zip": "postcode",
              "address": "{BUILDINGNUM} {STREET}, {CITY}, {ZIPCODE}",
              "address_block": "{BUILDINGNUM} {STREET}\n{CITY}\n{ZIPCODE}"},
    "de_DE": {"address": "{STREET} {BUILDINGNUM}, {ZIPCODE} {CITY}",
              "address_block": "{STREET} {BUILDINGNUM}\n{ZIPCODE} {CITY}"},
    "fr_FR": {"address": "{BUILDINGNUM} {STREET}, {ZIPCODE} {CITY}",
              "address_block": "{BUILDINGNUM} {STREET}\n{ZIPCODE} {CITY}"},
    "it_IT": {"address": "{STREET}, {BUILDINGNUM} - {ZIPCODE} {CITY}",
              "address_block": "{STREET}, {BUILDINGNUM}\n{ZIPCODE} {CITY}"},
    "es_ES": {"address": "{STREET}, {BUILDINGNUM}, {ZIPCODE} {CITY}",
              "address_block": "{STREET}, {BUILDINGNUM}\n{ZIPCODE} {CITY}"},
    # Two spaces after a Dutch postcode, as PostNL asks: "1234 AB  Amsterdam".
    "nl_NL": {"address": "{STREET} {BUILDINGNUM}, {ZIPCODE}  {CITY}",
              "address_block": "{STREET} {BUILDINGNUM}\n{ZIPCODE}  {CITY}"},
}

# Field names for forms, CSV headers and HTML lists: label (or decoy) -> names per language.
FIELDS: dict[str, dict[str, list[str]]] = {
    "en": {"GIVENNAME": ["First name", "Given name"], "SURNAME": ["Last name", "Surname"],
           "EMAIL": ["Email", "E-mail address"], "USERNAME": ["Username", "Login"], "PASSWORD": ["Password"],
           "TELEPHONENUM": ["Phone", "Mobile", "Tel."], "DATEOFBIRTH": ["Date of birth", "DOB"],
           "SOCIALNUM": ["{@social}"], "TAXNUM": ["{@tax}", "Tax ID"], "IDCARDNUM": ["{@idcard}", "ID number"],
           "DRIVERLICENSENUM": ["{@licence}"], "ACCOUNTNUM": ["Account number", "Bank account"],
           "CREDITCARDNUMBER": ["Card number", "Credit card"], "STREET": ["Street"],
           "BUILDINGNUM": ["House number", "No."], "CITY": ["City", "Town"], "ZIPCODE": ["{@zip}"],
           "order": ["Order number"], "date": ["Appointment", "Due date"], "price": ["Amount"],
           "company": ["Company"], "country": ["Country"], "ticket": ["Reference"]},
    "de": {"GIVENNAME": ["Vorname"], "SURNAME": ["Nachname", "Name"], "EMAIL": ["E-Mail"],
           "USERNAME": ["Benutzername", "Login"], "PASSWORD": ["Passwort", "Kennwort"],
           "TELEPHONENUM": ["Telefon", "Mobil", "Tel."], "DATEOFBIRTH": ["Geburtsdatum", "geb."],
           "SOCIALNUM": ["Sozialversicherungsnummer", "SV-Nr."], "TAXNUM": ["Steuer-ID", "Steuerliche IdNr."],
           "IDCARDNUM": ["Ausweisnummer"], "DRIVERLICENSENUM": ["Führerscheinnummer"], "ACCOUNTNUM": ["IBAN", "Kontonummer"],
           "CREDITCARDNUMBER": ["Kartennummer", "Kreditkarte"], "STREET": ["Straße"], "BUILDINGNUM": ["Hausnummer", "Nr."],
           "CITY": ["Ort", "Stadt"], "ZIPCODE": ["PLZ", "Postleitzahl"], "order": ["Bestellnummer"],
           "date": ["Termin", "Fällig am"], "price": ["Betrag"], "company": ["Firma"], "country": ["Land"],
           "ticket": ["Vorgangsnummer"]},
    "fr": {"GIVENNAME": ["Prénom"], "SURNAME": ["Nom"], "EMAIL": ["E-mail", "Courriel"],
           "USERNAME": ["Identifiant"], "PASSWORD": ["Mot de passe"], "TELEPHONENUM": ["Téléphone", "Tél."],
           "DATEOFBIRTH": ["Date de naissance"], "SOCIALNUM": ["N° de sécurité sociale"], "TAXNUM": ["Numéro fiscal"],
           "IDCARDNUM": ["N° de carte d'identité"], "DRIVERLICENSENUM": ["N° de permis"], "ACCOUNTNUM": ["IBAN"],
           "CREDITCARDNUMBER": ["N° de carte"], "STREET": ["Voie", "Rue"], "BUILDINGNUM": ["Numéro", "N°"],
           "CITY": ["Ville", "Commune"], "ZIPCODE": ["Code postal", "CP"], "order": ["N° de commande"],
           "date": ["Rendez-vous", "Échéance"], "price": ["Montant"], "company": ["Société"], "country": ["Pays"],
           "ticket": ["Référence"]},
    "it": {"GIVENNAME": ["Nome"], "SURNAME": ["Cognome"], "EMAIL": ["E-mail", "Email"], "USERNAME": ["Nome utente"],
           "PASSWORD": ["Password"], "TELEPHONENUM": ["Telefono", "Cellulare"], "DATEOFBIRTH": ["Data di nascita"],
           "SOCIALNUM": ["Tessera sanitaria"], "TAXNUM": ["Codice fiscale"], "IDCARDNUM": ["Carta d'identità"],
           "DRIVERLICENSENUM": ["Patente"], "ACCOUNTNUM": ["IBAN"], "CREDITCARDNUMBER": ["Numero carta"],
           "STREET": ["Via", "Indirizzo"], "BUILDINGNUM": ["Civico", "N."], "CITY": ["Città", "Comune"],
           "ZIPCODE": ["CAP"], "order": ["Numero ordine"], "date": ["Appuntamento", "Scadenza"], "price": ["Importo"],
           "company": ["Azienda"], "country": ["Paese"], "ticket": ["Riferimento"]},
    "es": {"GIVENNAME": ["Nombre"], "SURNAME": ["Apellido", "Apellidos"], "EMAIL": ["Correo electrónico", "Email"],
           "USERNAME": ["Usuario"], "PASSWORD": ["Contraseña"], "TELEPHONENUM": ["Teléfono", "Móvil"],
           "DATEOFBIRTH": ["Fecha de nacimiento"], "SOCIALNUM": ["N.º Seguridad Social", "NSS"], "TAXNUM": ["NIF"],
           "IDCARDNUM": ["DNI/NIE"], "DRIVERLICENSENUM": ["Permiso de conducir"], "ACCOUNTNUM": ["IBAN", "Cuenta"],
           "CREDITCARDNUMBER": ["Número de tarjeta"], "STREET": ["Calle", "Vía"], "BUILDINGNUM": ["Número", "N.º"],
           "CITY": ["Ciudad", "Localidad"], "ZIPCODE": ["Código postal", "CP"], "order": ["N.º de pedido"],
           "date": ["Cita", "Vencimiento"], "price": ["Importe"], "company": ["Empresa"], "country": ["País"],
           "ticket": ["Referencia"]},
    "nl": {"GIVENNAME": ["Voornaam"], "SURNAME": ["Achternaam"], "EMAIL": ["E-mail", "E-mailadres"],
           "USERNAME": ["Gebruikersnaam"], "PASSWORD": ["Wachtwoord"], "TELEPHONENUM": ["Telefoon", "Mobiel"],
           "DATEOFBIRTH": ["Geboortedatum"], "SOCIALNUM": ["BSN", "Burgerservicenummer"], "TAXNUM": ["Btw-id"],
           "IDCARDNUM": ["Documentnummer ID-kaart"], "DRIVERLICENSENUM": ["Rijbewijsnummer"],
           "ACCOUNTNUM": ["IBAN", "Rekeningnummer"],
           "CREDITCARDNUMBER": ["Kaartnummer"], "STREET": ["Straat"], "BUILDINGNUM": ["Huisnummer", "Nr."],
           "CITY": ["Plaats", "Woonplaats"], "ZIPCODE": ["Postcode"], "order": ["Bestelnummer"],
           "date": ["Afspraak", "Vervaldatum"], "price": ["Bedrag"], "company": ["Bedrijf"], "country": ["Land"],
           "ticket": ["Referentie"]},
}
# Structured texts list fields in the usual order: names first, address parts together.
LABELS_IN_FORM_ORDER: list[str] = [
    "GIVENNAME", "SURNAME", "DATEOFBIRTH", "EMAIL", "TELEPHONENUM", "USERNAME", "PASSWORD", "STREET",
    "BUILDINGNUM", "ZIPCODE", "CITY", "SOCIALNUM", "TAXNUM", "IDCARDNUM", "DRIVERLICENSENUM", "ACCOUNTNUM",
    "CREDITCARDNUMBER",
]
DECOY_FIELDS = ("order", "date", "price", "company", "country", "ticket")
# JSON keys stay English in every language, as they do in real APIs.
JSON_KEYS: dict[str, str] = {
    "GIVENNAME": "first_name", "SURNAME": "last_name", "EMAIL": "email", "USERNAME": "username",
    "PASSWORD": "password", "TELEPHONENUM": "phone", "DATEOFBIRTH": "date_of_birth",
    "SOCIALNUM": "social_number", "TAXNUM": "tax_id", "IDCARDNUM": "id_card", "DRIVERLICENSENUM": "driver_license",
    "ACCOUNTNUM": "iban", "CREDITCARDNUMBER": "card_number", "STREET": "street", "BUILDINGNUM": "house_number",
    "CITY": "city", "ZIPCODE": "zip", "order": "order_id", "price": "amount", "date": "created_at",
    "company": "company", "country": "country", "ticket": "ticket",
}
# Log lines are written by software, so they are English in every language; values are local.
LOG_LINES: list[str] = [
    "{ts} INFO auth: login succeeded user={USERNAME} ip={ip}",
    "{ts} WARN auth: failed password attempt for {EMAIL} from {ip}",
    "{ts} ERROR billing: card {CREDITCARDNUMBER} declined for order {order}",
    "{ts} INFO crm: contact updated name=\"{GIVENNAME} {SURNAME}\" phone={TELEPHONENUM}",
    "{ts} DEBUG signup: payload={\"user\": \"{USERNAME}\", \"password\": \"{PASSWORD}\"}",
    "{ts} INFO kyc: document verified id={IDCARDNUM} dob={DATEOFBIRTH}",
    "{ts} INFO payout: iban={ACCOUNTNUM} amount={price}",
    "{ts} INFO shipping: label printed zip={ZIPCODE} city=\"{CITY}\" order={order}",
    "{ts} INFO http: GET {url} 200 ({ms} ms)",
    "{ts} WARN queue: job {ticket} retried",
]
KINDS: dict[str, float] = {  # text kind -> share of PII records
    "email": 0.15, "chat": 0.12, "ticket": 0.10, "form": 0.15, "letter": 0.08, "note": 0.12,
    "log": 0.07, "html": 0.08, "json": 0.07, "csv": 0.06,
}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------

@dataclass
class Record:
    """One training example with what the generator knows about it."""

    source: str
    response: str
    entities: list[Entity]  # true spans of `source`, in order, numbered like the response
    language: str
    locale: str
    kind: str

    def to_json(self) -> dict[str, str]:
        return {"prompt": build_prompt(self.source), "response": self.response}


Segment = tuple[str | None, str]  # (label, value) for PII, (None, text) for literal text


@dataclass
class _Draft:
    """Values of one record being drawn: people's PII fields and decoys, each drawn once."""

    fake: Faker
    rng: random.Random
    locale: str
    people: dict[int, dict[str, str]] = field(default_factory=dict)
    decoys: dict[tuple[str, int], str] = field(default_factory=dict)
    clock: int | None = None  # current log timestamp, seconds after LOG_EPOCH

    @property
    def language(self) -> str:
        return self.locale[:2]

    def pii(self, label: str, person: int) -> str:
        fields = self.people.setdefault(person, {})
        if label not in fields:
            fields[label] = self._draw_pii(label, fields)
        return fields[label]

    def _draw_pii(self, label: str, fields: dict[str, str]) -> str:
        fake, rng = self.fake, self.rng
        if label in LOCALE_VALUES[self.locale]:
            return LOCALE_VALUES[self.locale][label](fake, rng)
        if label == "EMAIL":
            if rng.random() < 0.6:  # most personal addresses are made from the name
                given, surname = _handle(fields.get("GIVENNAME") or fake.first_name(),
                                         fields.get("SURNAME") or fake.last_name())
                local = rng.choice([f"{given}.{surname}", f"{given[:1]}{surname}", f"{given}{rng.randint(1, 99)}",
                                    f"{surname}.{given}"])
                return f"{local}@{fake.free_email_domain()}"
            return f"{fake.user_name()}@{fake.free_email_domain()}"
        if label == "USERNAME":
            roll = rng.random()
            if roll < 0.5:
                return fake.user_name()
            if roll < 0.8:
                given, surname = _handle(fake.first_name(), fake.last_name())
                return f"{given}{rng.choice(['', '.', '_'])}{surname[:rng.randint(1, 6)]}{rng.randint(1, 999)}"
            # random handles like the seed's "faozzsd379223"
            return _chars(rng, string.ascii_lowercase, rng.randint(5, 8)) + _chars(rng, DIGITS, rng.randint(2, 6))
        if label == "PASSWORD":
            if rng.random() < 0.6:
                return fake.password(length=rng.randint(8, 16))
            return f"{_ascii(fake.first_name()).capitalize()}{rng.randint(1950, 2024)}{rng.choice('!?#$%*')}"
        if label == "DATEOFBIRTH":
            return _format_date(_random_date(rng, date(1940, 1, 1), date(2006, 12, 31)), self.locale, rng)
        if label == "CREDITCARDNUMBER":
            return _credit_card(fake, rng)
        return {
            "GIVENNAME": fake.first_name, "SURNAME": fake.last_name, "TELEPHONENUM": fake.phone_number,
            "STREET": fake.street_name, "BUILDINGNUM": fake.building_number, "CITY": fake.city,
            "ZIPCODE": fake.postcode,
        }[label]()

    def decoy(self, name: str, person: int) -> str:
        if name == "ts":  # each log line a little later than the one before
            step = self.rng.randrange(4 * 365 * 86400) if self.clock is None else self.rng.randint(0, 90)
            self.clock = (self.clock or 0) + step
            return (LOG_EPOCH + timedelta(seconds=self.clock)).strftime("%Y-%m-%dT%H:%M:%SZ")
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
            return f"SKU-{_chars(rng, UPPER, 2)}{_chars(rng, DIGITS, 4)}"
        if name == "price":
            amount = rng.randint(1, 250_000) / 100
            if self.locale == "en_US":
                return f"${amount:,.2f}"
            if self.locale == "en_GB":
                return f"£{amount:,.2f}"
            euro = f"{amount:,.2f}".replace(",", " ").replace(".", ",")
            return rng.choice([f"{euro} €", f"€ {euro}", f"EUR {euro}"])
        if name == "time":
            return f"{rng.randint(7, 19):02d}:{rng.choice(['00', '15', '30', '45'])}"
        if name == "date":  # appointments and due dates: never a birth date
            return _format_date(_random_date(rng, date(2023, 1, 1), date(2026, 12, 31)), self.locale, rng)
        if name == "ms":
            return str(rng.randint(3, 900))
        if name == "ip":
            return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if name == "state":
            return fake.state_abbr()
        return {"company": fake.company, "country": fake.country, "url": fake.url}[name]()

    def render(self, template: str, person: int = 1) -> list[Segment]:
        """Template -> segments; `{X}` fields refer to `person` unless they name one (`{X:2}`)."""
        segments: list[Segment] = []
        last = 0
        for m in FIELD_RE.finditer(template):
            segments.append((None, template[last:m.start()]))
            name, who = m.group(1), int(m.group(2)) if m.group(2) else person
            if name in LABELS:
                segments.append((name, self.pii(name, who)))
            elif name == "name":
                segments += self.render("{GIVENNAME} {SURNAME}", who)
            elif name.startswith("@") or name in ("address", "address_block"):
                segments += self.render(LOCALE_TEXT[self.locale][name], who)
            else:
                segments.append((None, self.decoy(name, who)))
            last = m.end()
        segments.append((None, template[last:]))
        return segments

    def field_name(self, key: str) -> str:
        return "".join(text for _, text in self.render(self.rng.choice(FIELDS[self.language][key])))


def _compose(draft: _Draft, kind: str, has_pii: bool) -> list[Segment]:
    """The segments of one text of `kind`; with `has_pii=False`, decoy sentences only."""
    rng, texts = draft.rng, TEXTS[draft.language]

    def sentences(pools: tuple[str, ...], lo: int, hi: int) -> list[list[Segment]]:
        pool = [t for p in pools for t in texts[p]]
        return [draft.render(t) for t in rng.sample(pool, min(len(pool), rng.randint(lo, hi)))]

    def joined(parts: list[list[Segment]], sep: str) -> list[Segment]:
        out: list[Segment] = []
        for i, part in enumerate(parts):
            out += ([(None, sep)] if i else []) + part
        return out

    if not has_pii:
        body = joined(sentences(("decoy",), 1, 4), rng.choice([" ", "\n"]))
        frame = rng.random()
        if frame < 0.4:
            return joined([draft.render(rng.choice(texts["hello"])), body, draft.render(rng.choice(texts["bye"]))], "\n\n")
        if frame < 0.6:
            return [(None, "<p>")] + body + [(None, "</p>")]
        return body

    body_pools = ("body",) if rng.random() < 0.7 else ("body", "decoy")
    if kind == "email":
        return joined([draft.render(rng.choice(texts["greeting"])),
                       joined(sentences(body_pools, 1, 4), rng.choice([" ", "\n"])),
                       draft.render(rng.choice(texts["closing"]), person=2)], "\n\n")
    if kind == "chat":
        if rng.random() < 0.5:
            return joined(sentences(body_pools, 1, 3), " ")
        lines = []
        for i, sentence in enumerate(sentences(body_pools, 2, 4)):
            speaker = 2 if i % 2 else 3  # speakers are people of their own, not the ones talked about
            lines.append([(None, f"{rng.randint(7, 22):02d}:{rng.randint(0, 59):02d} ")]
                         + draft.render("{USERNAME}: ", speaker) + sentence)
        return joined(lines, "\n")
    if kind == "ticket":
        return joined([draft.render(rng.choice(texts["ticket"])), joined(sentences(body_pools, 1, 4), " ")], "\n")
    if kind == "letter":
        return joined([draft.render("{name}\n{address_block}"), draft.render("{CITY:2}, {date}"),
                       draft.render(rng.choice(texts["greeting"])), joined(sentences(body_pools, 1, 3), " "),
                       draft.render(rng.choice(texts["closing"]), person=2)], "\n\n")
    if kind == "note":
        topic = rng.randrange(3)
        pool = ("medical", "bank", "hr")[topic]
        return joined([[(None, texts["notes"][topic] + rng.choice([":", " -", ""]))],
                       joined(sentences((pool,), 1, 3) + sentences(("body",), 0, 1), rng.choice([" ", "\n"]))], "\n")
    if kind == "log":
        return joined([draft.render(t) for t in rng.sample(LOG_LINES, rng.randint(1, 4))], "\n")

    # Structured kinds: a few PII fields in the usual order, maybe a decoy field or two.
    keys = sorted(rng.sample(LABELS_IN_FORM_ORDER, rng.randint(2, 7)), key=LABELS_IN_FORM_ORDER.index)
    keys += rng.sample(DECOY_FIELDS, rng.randint(0, 2))

    def value(key: str, person: int = 1) -> list[Segment]:
        return draft.render("{" + key + "}", person)

    if kind == "form":
        sep = rng.choice([": ", ":\t", " = "])
        return joined([[(None, draft.field_name(k) + sep)] + value(k) for k in keys], "\n")
    if kind == "html":
        style = rng.random()
        if style < 0.5:
            return [(None, "<p>")] + joined(sentences(body_pools, 1, 4), " ") + [(None, "</p>")]
        if style < 0.8:
            items = [[(None, f"  <li><b>{draft.field_name(k)}:</b> ")] + value(k) + [(None, "</li>")] for k in keys]
            return joined([[(None, "<ul>")], *items, [(None, "</ul>")]], "\n")
        cells = joined([[(None, "<td>")] + value(k) + [(None, "</td>")] for k in keys], "")
        return [(None, "<tr>")] + cells + [(None, "</tr>")]
    if kind == "json":
        pretty = rng.random() < 0.5  # pretty-printed or one line
        sep, pad = (",\n", "  ") if pretty else (", ", "")
        items = [[(None, f'{pad}"{JSON_KEYS[k]}": "')] + value(k) + [(None, '"')] for k in keys]
        return [(None, "{\n" if pretty else "{")] + joined(items, sep) + [(None, "\n}" if pretty else "}")]
    if kind == "csv":
        sep = "," if draft.language == "en" else rng.choice([";", ","])
        header = [(None, sep.join(draft.field_name(k) for k in keys))]
        rows = [joined([value(k, person) for k in keys], sep) for person in range(1, rng.randint(2, 4))]
        return joined([header, *rows], "\n")
    raise ValueError(f"unknown kind {kind!r}")


def _redact(segments: list[Segment]) -> tuple[str, str, list[Entity]]:
    """Source, response and true entities; `_n` per label in order of first appearance."""
    source: list[str] = []
    response: list[str] = []
    entities: list[Entity] = []
    numbers: dict[tuple[str, str], int] = {}
    per_label: Counter[str] = Counter()
    pos = 0
    for label, text in segments:
        source.append(text)
        if label is None:
            response.append(text)
        else:
            if (label, text) not in numbers:
                per_label[label] += 1
                numbers[(label, text)] = per_label[label]
            index = numbers[(label, text)]
            response.append(f"[{label}_{index}]")
            entities.append(Entity(pos, pos + len(text), label, text, index))
        pos += len(text)
    return "".join(source), "".join(response), entities


def _leaks(response: str, values: set[str]) -> bool:
    """Whether a PII value is also visible in the response's clear text (case-insensitively).

    Values of one or two characters (building numbers) are skipped: "5" is in every price.
    Values with a digit must not be a substring anywhere (a ZIP inside an order number); others
    must not appear as a whole word (a given name "Will" vs the word "will")."""
    clear = PLACEHOLDER_RE.sub("\0", response).casefold()
    for value in values:
        v = value.casefold()
        if len(v) < 3:
            continue
        if any(c.isdigit() for c in v):
            if v in clear:
                return True
            continue
        start = clear.find(v)
        while start >= 0:
            end = start + len(v)
            if not (start and clear[start - 1].isalnum()) and not (end < len(clear) and clear[end].isalnum()):
                return True
            start = clear.find(v, start + 1)
    return False


def _valid(source: str, response: str, entities: list[Entity]) -> bool:
    """The record's spans are exactly what `align` recovers, and no value leaks in clear text."""
    if source != source.strip() or "\r" in source:  # chat templates trim message contents
        return False
    found = align(source, response)
    if found is None or [(e.start, e.end, e.label, e.index) for e in found] != \
            [(e.start, e.end, e.label, e.index) for e in entities]:
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
        for lang in self.languages:
            for locale in LOCALES[lang]:
                fake = Faker(locale)
                fake.seed_instance(f"{seed}:{locale}")  # str seeds hash stably (sha512), unlike hash()
                self.fakers[locale] = fake
        self.redraws = 0  # records drawn again because a check failed (reported by the CLI)

    def record(self) -> Record:
        rng = self.rng
        lang = rng.choice(self.languages)
        locale = rng.choice(LOCALES[lang])
        has_pii = rng.random() >= NO_PII_SHARE
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0] if has_pii else "plain"
        for _ in range(MAX_ATTEMPTS):
            draft = _Draft(self.fakers[locale], rng, locale)
            source, response, entities = _redact(_compose(draft, kind, has_pii))
            if _valid(source, response, entities):
                return Record(source, response, entities, lang, locale, kind)
            self.redraws += 1
        raise RuntimeError(f"no valid {locale} {kind} record in {MAX_ATTEMPTS} draws")


def generate_records(n: int, seed: int = 0, languages: tuple[str, ...] = LANGUAGES) -> list[Record]:
    """`n` records with their true entities, language, locale and kind (deterministic in `seed`)."""
    generator = Generator(seed, languages)
    return [generator.record() for _ in range(n)]


def generate(n: int, seed: int = 0, languages: tuple[str, ...] = LANGUAGES) -> list[dict[str, str]]:
    """`n` training records, `{"prompt", "response"}` each, as written to the JSON file."""
    return [r.to_json() for r in generate_records(n, seed, languages)]


def write_json(records: list[dict[str, str]], path: Path) -> None:
    """One fixed layout (2-space indent, UTF-8, trailing newline) so the file regenerates byte-identically."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(records, f, ensure_ascii=False, indent=2)
        f.write("\n")


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
