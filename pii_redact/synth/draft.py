"""One record being drawn: the people a text mentions, their values and decoys (each drawn once,
so a repeated field repeats its value), and templates rendered into fragments.

`{LABEL}` is a PII field of person 1 (`{LABEL:2}` of person 2...); lowercase names are decoys that
stay in clear text, `{address}`/`{name}` expand to the locale's layout, `{@term}` is a
locale-specific word, `{>pool}` / `{>pool?}` a sentence of the genre's pool (optional), and
`|upper`, `|lower`, `|cap` change a field's case, and (version 3) `|initial` writes a name as its
initials and `|phone` a phone number in another layout: one value in other forms, which keeps its
number (`forms`). `{FLAT}` and `{POBOX}` are building numbers of their own (a flat, a post box).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import timedelta

from faker import Faker

from ..core.labels import LABELS
from .tables import FIELDS, FOREIGN_LOCALES, LANGUAGE_TEXT, LOCALE_TEXT, V3
from .values import CASES, LOG_EPOCH, UNIT_NUMBERS, another_form, draw_decoy, draw_pii

FOREIGN_SHARE = 0.15  # people (and their addresses) from another country than the text's
FIELD_RE = re.compile(r"\{(@?>?[A-Za-z_]+)(\?)?(?::(\d))?(?:\|(upper|lower|cap|initial|phone))?\}")


# A piece of a text being drawn: (label, value) for PII, (None, text) for literal text.
Fragment = tuple[str | None, str]


@dataclass
class Person:
    """Someone a text mentions: where they are from (their names, phone and address follow that
    locale), their gender (names, honorifics and pronouns agree with it) and the values drawn."""

    locale: str
    gender: str  # "female" or "male"
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Draft:
    """Values of one record being drawn: people's PII fields and decoys, each drawn once."""

    fakers: dict[str, Faker]
    rng: random.Random
    locale: str
    people: dict[int, Person] = field(default_factory=dict)
    decoys: dict[tuple[str, int], str] = field(default_factory=dict)
    clock: int | None = None  # current log timestamp, seconds after LOG_EPOCH
    used: set = field(default_factory=set)  # pool sentences already in this text
    version: int = 2  # of the generated set: 3 adds neighbour countries and address layouts
    # (label, a value's written form, casefolded) -> the value, casefolded: what numbers it
    forms: dict[tuple[str, str], str] = field(default_factory=dict)
    clash: bool = False  # one written form stands for two values (two names with one initial)

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
            neighbours = V3["neighbours"].get(self.locale) if self.version >= 3 and not foreign else None
            if neighbours and rng.random() < V3["neighbour_share"]:  # Austrians in a German text
                locale = rng.choice(neighbours)
            self.people[index] = Person(locale, rng.choice(["female", "male"]))
        return self.people[index]

    def pii(self, label: str, person: int) -> str:
        who = self.person(person)
        if label not in who.fields:
            who.fields[label] = draw_pii(self, label, person)
        return who.fields[label]

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
            self.decoys[(name, person)] = draw_decoy(self, name)
        return self.decoys[(name, person)]

    def render(self, template: str, person: int = 1, pools: dict[str, list[str]] | None = None) -> list[Fragment]:
        """Template -> fragments; `{X}` fields refer to `person` unless they name one (`{X:2}`);
        `{>pool}` draws a sentence of `pools` not used yet in this text."""
        fragments: list[Fragment] = []
        last = 0
        for m in FIELD_RE.finditer(template):
            fragments.append((None, template[last:m.start()]))
            name, optional, who, case = m.group(1), m.group(2), int(m.group(3)) if m.group(3) else person, m.group(4)
            last = m.end()
            if name.startswith(">"):
                choices = [t for t in (pools or {})[name[1:]] if (name, t) not in self.used]
                if choices and not (optional and self.rng.random() < 0.5):
                    sentence = self.rng.choice(choices)
                    self.used.add((name, sentence))
                    fragments += self.render(sentence, person, pools)
                elif fragments and fragments[-1][0] is None:  # left out: so is the space before it
                    fragments[-1] = (None, fragments[-1][1].rstrip(" "))
                continue
            if name in LABELS or name in UNIT_NUMBERS:
                part, case = [self._written(name, who, case)], None  # the form includes the case
            elif name == "name":
                layout = FOREIGN_LOCALES.get(self.person(who).locale)
                order = "{SURNAME} {GIVENNAME}" if layout is not None and layout.family_name_first \
                    else "{GIVENNAME} {SURNAME}"
                part = self.render(order, who)
            elif name in ("address", "address_block"):
                part = self.render(self._address_layout(name, who), who)
            elif name.startswith("@"):
                part = self.render(LOCALE_TEXT[self.locale][name], who)
            else:
                part = [(None, self.decoy(name, who))]
            fragments += [(label, _cased(text, case)) for label, text in part] if case else part
        fragments.append((None, template[last:]))
        return fragments

    def _written(self, name: str, who: int, form: str | None) -> Fragment:
        """A PII field as written (`form`), remembered as a form of its value: every form of one
        value is numbered as the value (`forms`)."""
        label, value = UNIT_NUMBERS.get(name, name), self.pii(name, who)
        text = another_form(label, value, form) if form else value
        if self.version >= 3:  # version 2 numbers each written form as a value of its own
            known = self.forms.setdefault((label, text.casefold()), value.casefold())
            self.clash |= known != value.casefold()
        return label, text

    def number_key(self, label: str, text: str) -> str:
        """What numbers a masked span (`labels.mask`'s key): the value it is a form of."""
        return self.forms.get((label, text.casefold()), text.casefold())

    def _address_layout(self, name: str, who: int) -> str:
        """The text locale's address layout for its own people; a foreign person's address is
        written the way their country writes it (number before or after the street, postcode
        before or after the city). Version 3 adds the layouts of `V3["addresses"]`: post boxes,
        flats, neighbour countries, the number or the postcode on the other side."""
        locale = self.person(who).locale
        # a neighbour's layouts are all version 3 has of them; a foreign person's stay their
        # country's (an American's state is not in a British text's Faker)
        own, neighbour = locale == self.locale, locale not in FOREIGN_LOCALES
        layouts = V3["addresses"].get(locale, {}).get(name) if self.version >= 3 and (own or neighbour) else None
        if layouts and (neighbour or self.rng.random() < V3["address_share"]):
            return self.rng.choice(layouts)
        if locale == self.locale:
            layout = LOCALE_TEXT[self.locale][name]  # a layout, or a list of them to pick from
            return layout if isinstance(layout, str) else self.rng.choice(layout)
        number, postcode, _ = FOREIGN_LOCALES[locale]  # a Layout
        street = "{BUILDINGNUM} {STREET}" if number == "first" else "{STREET} {BUILDINGNUM}"
        town = "{ZIPCODE} {CITY}" if postcode == "before" else "{CITY} {ZIPCODE}"
        return f"{street}\n{town}" if name == "address_block" else f"{street}, {town}"

    def field_name(self, key: str) -> str:
        return "".join(text for _, text in self.render(self.rng.choice(FIELDS[self.language][key])))


def _cased(text: str, case: str) -> str:
    return CASES[case](text)  # `|initial` and `|phone` (KeyError here) are forms of one field only
