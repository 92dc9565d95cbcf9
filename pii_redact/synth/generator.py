"""Records: drawing one (genre, values, checks), the Generator over a seed, and the command line.

Two versions of the set: 2, the committed `pii_redaction_train.json` (the default), and 3, which
adds running prose about people (`remark`, `story`), values written again in other forms and
numbered as their value, addresses of more countries and lookalikes (tables/v3.yaml).

The command line (`main`) is `config.SynthConfig`'s flags; `chosen_languages` reads --languages
against the tables' languages."""
from __future__ import annotations

import json
import random
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from faker import Faker

from ..cli import parse_config, run
from ..config import SynthConfig
from ..core.alignment import align
from ..core.chat import build_prompt
from ..core.errors import UserError
from ..core.labels import LABELS, PLACEHOLDER_RE, Entity, mask, occurrences
from .draft import Draft, Fragment
from .genres import KINDS_IN_CODE, compose
from .shapes import shares
from .tables import FOREIGN_LOCALES, GENRES, KINDS, LANGUAGES, LOCALES, V3

NO_PII_SHARE = 0.07  # records that are all decoys: the model must learn to change nothing
MAX_ATTEMPTS = 200   # draws per record before giving up (a template that can never pass)
VERSIONS = (2, 3)    # of the generated set; 2 is the committed file


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
        the redaction alone does not pin them down (`alignment.align` would read it otherwise),
        the exact spans: the file stays small, and every record's spans are the inserted ones."""
        record: dict[str, Any] = {"prompt": build_prompt(self.source), "response": self.response,
                                  "template": self.template}
        if align(self.source, self.response) != self.entities:
            record["entities"] = [[e.start, e.end, e.label] for e in self.entities]
        return record


def _redact(fragments: list[Fragment], key: Callable[[str, str], object] | None = None
            ) -> tuple[str, str, list[Entity]]:
    """Source, response and true entities, numbered as `labels.mask` numbers them (by `key`,
    where given: version 3 numbers each form of a value as the value)."""
    source, spans, pos = [], [], 0
    for label, text in fragments:
        source.append(text)
        if label is not None:
            spans.append((pos, pos + len(text), label))
        pos += len(text)
    response, entities = mask("".join(source), spans, key)
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

    def __init__(self, seed: int, languages: tuple[str, ...] = LANGUAGES, version: int = 2) -> None:
        unknown = set(languages) - set(LANGUAGES)
        if unknown or not languages:
            raise ValueError(f"languages must be a non-empty subset of {LANGUAGES}, got {languages}")
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {version}")
        self.languages, self.version = tuple(languages), version
        self.rng = random.Random(seed)
        self.fakers: dict[str, Faker] = {}
        locales = {loc for lang in self.languages for loc in LOCALES[lang]} | set(FOREIGN_LOCALES)
        if version >= 3:
            locales |= {loc for neighbours in V3["neighbours"].values() for loc in neighbours}
        for locale in sorted(locales):
            fake = Faker(locale)
            fake.seed_instance(f"{seed}:{locale}")  # str seeds hash stably (sha512), unlike hash()
            self.fakers[locale] = fake
        self.redraws = 0  # records drawn again because a check failed (reported by the CLI)

    def record(self) -> Generated:
        rng = self.rng
        lang = rng.choice(self.languages)
        locale = rng.choice(LOCALES[lang])
        has_pii = rng.random() >= NO_PII_SHARE
        shares = V3["genres"] if self.version >= 3 else KINDS
        kinds = [k for k in shares if k in KINDS_IN_CODE or k in GENRES[lang]]
        kind = rng.choices(kinds, weights=[shares[k] for k in kinds])[0] if has_pii else "plain"
        for _ in range(MAX_ATTEMPTS):
            draft = Draft(self.fakers, rng, locale, version=self.version)
            fragments, template = compose(draft, kind, has_pii)
            source, response, entities = _redact(fragments, draft.number_key if self.version >= 3 else None)
            if _valid(source, response, entities) and not draft.clash:
                return Generated(source, response, entities, lang, locale, kind, template)
            self.redraws += 1
        raise RuntimeError(f"no valid {locale} {kind} record in {MAX_ATTEMPTS} draws")


def write_json(records: list[dict[str, Any]], path: Path) -> None:
    """A JSON list, one record per line (UTF-8, fixed layout): it regenerates byte-identically
    and diffs line by line."""
    from ..core.files import write_text

    # atomic: a failed or interrupted run never leaves a truncated set where a whole one was
    write_text(path, "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")


def chosen_languages(text: str | None) -> tuple[str, ...]:
    """--languages as languages of the tables, all of them when unset; else a UserError."""
    if text is None:
        return LANGUAGES
    languages = tuple(lang.strip() for lang in text.split(",") if lang.strip())
    if not languages or set(languages) - set(LANGUAGES):
        raise UserError(f"--languages must be a comma-separated subset of {','.join(LANGUAGES)}, got {text!r}")
    return languages


def main(argv: list[str] | None = None) -> int:
    description = textwrap.fill(
        "Generate the Faker-based PII redaction training set: a JSON list of {prompt, response} records "
        f"in {len(LANGUAGES)} languages ({','.join(LANGUAGES)}), where the response replaces every PII value "
        f"with [LABEL_n] for the {len(LABELS)} labels ({', '.join(LABELS)}). The output is deterministic "
        "for a given --seed.", width=78)
    config, _ = parse_config(SynthConfig, None, argv, prog="python -m pii_redact.synth", description=description)
    languages = chosen_languages(config.languages)
    started = time.perf_counter()
    generator = Generator(config.seed, languages, config.version)
    records = [generator.record() for _ in range(config.n)]
    if config.stats:
        print(f"version {config.version}, {len(records)} records, seed {config.seed}: "
              f"{shares((r.source, r.entities, r.kind) for r in records)}")
        return 0
    output = config.output_path()
    write_json([r.to_json() for r in records], output)
    _print_summary(records, output, time.perf_counter() - started, generator.redraws)
    return 0


def _print_summary(records: list[Generated], output: Path, seconds: float, redraws: int) -> None:
    labels = Counter(e.label for r in records for e in r.entities)
    languages_written = Counter(r.language for r in records)
    print(f"wrote {len(records)} records to {output} in {seconds:.1f}s ({redraws} redraws)", file=sys.stderr)
    print("languages: " + ", ".join(f"{k} {v / len(records):.1%}" for k, v in sorted(languages_written.items())),
          file=sys.stderr)
    print("entities:  " + ", ".join(f"{k} {labels[k]}" for k in LABELS), file=sys.stderr)
    print(f"no-PII records: {sum(not r.entities for r in records)}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(run(main))
