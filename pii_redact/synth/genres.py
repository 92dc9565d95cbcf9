"""Genres: how a text of each kind is composed from sentences and fields (emails, chats, tickets,
letters, notes, logs; forms, HTML, JSON, CSV; version 3's remarks and stories; and the genres
written as frames in tables/)."""
from __future__ import annotations

import random
import re

from ..core.labels import LABELS
from .draft import FIELD_RE, Draft, Fragment
from .tables import (
    DECOY_FIELDS,
    GENRES,
    JSON_KEYS,
    LABELS_IN_FORM_ORDER,
    LOG_LINES,
    TEXTS,
    V3,
)

NEGATIVE_SHARE = 0.3  # version 3's remarks and stories with a sentence of lookalikes
MESSAGE_SHARE = 0.4   # version 3's stories sent as a message: a greeting and a signature


def _joined(parts: list[list[Fragment]], sep: str) -> list[Fragment]:
    out: list[Fragment] = []
    for i, part in enumerate(parts):
        out += ([(None, sep)] if i else []) + part
    return out


def _sentences(draft: Draft, pools: tuple[str, ...], lo: int, hi: int) -> list[list[Fragment]]:
    """Between lo and hi distinct sentences drawn from the record language's `pools`."""
    rng, texts = draft.rng, TEXTS[draft.language]
    pool = [t for p in pools for t in texts[p]]
    return [draft.render(t) for t in rng.sample(pool, min(len(pool), rng.randint(lo, hi)))]


def _pick(draft: Draft, pool: str, person: int = 1) -> list[Fragment]:
    return draft.render(draft.rng.choice(TEXTS[draft.language][pool]), person)


# Prose kinds: (draft, the pools body sentences come from) -> fragments.

def _email(draft: Draft, pools: tuple[str, ...]) -> list[Fragment]:
    greeting = _pick(draft, "greeting")
    body = _joined(_sentences(draft, pools, 1, 4), draft.rng.choice([" ", "\n"]))
    return _joined([greeting, body, _pick(draft, "closing", person=2)], "\n\n")


def _chat(draft: Draft, pools: tuple[str, ...]) -> list[Fragment]:
    rng = draft.rng
    if rng.random() < 0.5:
        return _joined(_sentences(draft, pools, 1, 3), " ")
    lines = []
    for i, sentence in enumerate(_sentences(draft, pools, 2, 4)):
        speaker = 2 if i % 2 else 3  # speakers are people of their own, not the ones talked about
        lines.append([(None, f"{rng.randint(7, 22):02d}:{rng.randint(0, 59):02d} ")]
                     + draft.render("{USERNAME}: ", speaker) + sentence)
    return _joined(lines, "\n")


def _ticket(draft: Draft, pools: tuple[str, ...]) -> list[Fragment]:
    return _joined([_pick(draft, "ticket"), _joined(_sentences(draft, pools, 1, 4), " ")], "\n")


def _letter(draft: Draft, pools: tuple[str, ...]) -> list[Fragment]:
    return _joined([draft.render("{name}\n{address_block}"), draft.render("{CITY:2}, {date}"),
                    _pick(draft, "greeting"), _joined(_sentences(draft, pools, 1, 3), " "),
                    _pick(draft, "closing", person=2)], "\n\n")


def _note(draft: Draft, pools: tuple[str, ...]) -> list[Fragment]:
    rng = draft.rng
    topic = rng.randrange(3)
    heading = TEXTS[draft.language]["notes"][topic] + rng.choice([":", " -", ""])
    sentences = _sentences(draft, (("medical", "bank", "hr")[topic],), 1, 3) + _sentences(draft, ("body",), 0, 1)
    return _joined([[(None, heading)], _joined(sentences, rng.choice([" ", "\n"]))], "\n")


def _log(draft: Draft, pools: tuple[str, ...]) -> list[Fragment]:
    return _joined([draft.render(t) for t in draft.rng.sample(LOG_LINES, draft.rng.randint(1, 4))], "\n")


def _remark(draft: Draft, pools: tuple[str, ...]) -> list[Fragment]:
    """Version 3: one sentence naming people and towns in running prose, or lookalikes."""
    texts = V3["languages"][draft.language]
    return draft.render(draft.rng.choice(texts["negative" if draft.rng.random() < NEGATIVE_SHARE else "remark"]))


def _fields_of(template: str, person: int) -> set[str]:
    """The PII labels of `person` a template writes directly (`{SURNAME}`, `{CITY|lower}`)."""
    return {m.group(1) for m in FIELD_RE.finditer(template)
            if m.group(1) in LABELS and int(m.group(3) or 1) == person}


def _story(draft: Draft, pools: tuple[str, ...]) -> list[Fragment]:
    """Version 3: a paragraph that introduces someone (person 1) and then refers back to what
    it said, often in another form (the surname alone, initials, the town in lower case, the
    phone number laid out otherwise); maybe with lookalikes, maybe sent as a message to someone
    else (person 3) and signed by a third (person 2)."""
    rng, texts = draft.rng, V3["languages"][draft.language]
    sentences = [draft.render(rng.choice(texts["intro"]))]
    drawn = set(draft.person(1).fields)
    follow = [t for t in texts["follow"] if _fields_of(t, 1) <= drawn]
    sentences += [draft.render(t) for t in rng.sample(follow, min(len(follow), rng.randint(1, 3)))]
    if rng.random() < NEGATIVE_SHARE:
        sentences.insert(rng.randint(1, len(sentences)), draft.render(rng.choice(texts["negative"])))
    body = _joined(sentences, " ")
    if rng.random() < MESSAGE_SHARE:
        return _joined([_pick(draft, "greeting", person=3), body, _pick(draft, "closing", person=2)], "\n\n")
    return body


# Structured kinds: (draft, the fields listed, the pools prose comes from) -> fragments.

def _value(draft: Draft, key: str, person: int = 1) -> list[Fragment]:
    return draft.render("{" + key + "}", person)


def _form(draft: Draft, keys: list[str], pools: tuple[str, ...]) -> list[Fragment]:
    sep = draft.rng.choice([": ", ":\t", " = "])
    return _joined([[(None, draft.field_name(k) + sep)] + _value(draft, k) for k in keys], "\n")


def _html(draft: Draft, keys: list[str], pools: tuple[str, ...]) -> list[Fragment]:
    style = draft.rng.random()
    if style < 0.5:  # a paragraph of prose rather than the fields
        return [(None, "<p>")] + _joined(_sentences(draft, pools, 1, 4), " ") + [(None, "</p>")]
    if style < 0.8:
        items = [[(None, f"  <li><b>{draft.field_name(k)}:</b> ")] + _value(draft, k) + [(None, "</li>")] for k in keys]
        return _joined([[(None, "<ul>")], *items, [(None, "</ul>")]], "\n")
    cells = _joined([[(None, "<td>")] + _value(draft, k) + [(None, "</td>")] for k in keys], "")
    return [(None, "<tr>")] + cells + [(None, "</tr>")]


def _json(draft: Draft, keys: list[str], pools: tuple[str, ...]) -> list[Fragment]:
    pretty = draft.rng.random() < 0.5  # pretty-printed or one line
    sep, pad = (",\n", "  ") if pretty else (", ", "")
    items = [[(None, f'{pad}"{JSON_KEYS[k]}": "')] + _value(draft, k) + [(None, '"')] for k in keys]
    return [(None, "{\n" if pretty else "{")] + _joined(items, sep) + [(None, "\n}" if pretty else "}")]


def _csv(draft: Draft, keys: list[str], pools: tuple[str, ...]) -> list[Fragment]:
    sep = "," if draft.language == "en" else draft.rng.choice([";", ","])
    header = [(None, sep.join(draft.field_name(k) for k in keys))]
    rows = [_joined([_value(draft, k, person) for k in keys], sep) for person in range(1, draft.rng.randint(2, 4))]
    return _joined([header, *rows], "\n")


PROSE = {"email": _email, "chat": _chat, "ticket": _ticket, "letter": _letter, "note": _note, "log": _log,
         "remark": _remark, "story": _story}  # the last two only in version 3's genre shares
STRUCTURED = {"form": _form, "html": _html, "json": _json, "csv": _csv}
KINDS_IN_CODE = frozenset(PROSE) | frozenset(STRUCTURED)  # the other genres are frames in tables/


def compose(draft: Draft, kind: str, has_pii: bool) -> tuple[list[Fragment], str]:
    """The fragments of one text of genre `kind`, and the template it came from ("lang/genre" for
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
        fragments = draft.render(genre["frames"][index], pools=genre.get("pools", {}))
        return _styled(fragments, genre.get("style"), rng), f"{template}/{index}"
    body_pools = ("body",) if rng.random() < 0.7 else ("body", "decoy")
    if kind in PROSE:
        return PROSE[kind](draft, body_pools), template
    # a few PII fields in the usual order, maybe a decoy field or two
    keys = sorted(rng.sample(LABELS_IN_FORM_ORDER, rng.randint(2, 7)), key=LABELS_IN_FORM_ORDER.index)
    keys += rng.sample(DECOY_FIELDS, rng.randint(0, 2))
    return STRUCTURED[kind](draft, keys, body_pools), template


_WORD = re.compile(r"[^\W\d_]{4,}")


def _styled(fragments: list[Fragment], style: str | None, rng: random.Random) -> list[Fragment]:
    """`style: sms`: typed in a hurry: often all lowercase (values too, as people type them),
    now and then two letters swapped in a word that is not PII, no final full stop."""
    if style != "sms":
        return fragments
    lower = rng.random() < 0.6

    def typo(match: re.Match) -> str:
        word = match.group(0)
        if rng.random() >= 0.06:
            return word
        k = rng.randrange(len(word) - 1)
        return word[:k] + word[k + 1] + word[k] + word[k + 2:]

    out = [(label, text.lower() if lower else text) if label else
           (None, _WORD.sub(typo, text.lower() if lower else text)) for label, text in fragments]
    while out and out[-1][0] is None and out[-1][1].endswith("."):
        out[-1] = (None, out[-1][1][:-1])
    return out
