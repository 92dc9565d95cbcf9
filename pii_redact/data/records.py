"""Records of redaction data: what a valid one is, and reading them from any of the accepted shapes.

Input records (`prepare_data.py --input`), one of:
  * the seed's `{"prompt", "response"}`, the text to redact after `chat.TEXT_MARKER` in the prompt;
  * raw ai4privacy rows `{"source_text", "masked_text", "language"?, "privacy_mask"?}`;
  either with optional exact spans (`"entities": [[start, end, LABEL], ...]` of the source, as the
  generator writes them, or ai4privacy's `privacy_mask` offsets), which are kept instead of being
  re-derived by `alignment.align`.

Samples (`read_samples`): prepared split lines (`{"messages": [user, assistant], "source", ...}`,
read by role) or the input shapes above; what training and evaluation consume.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core import alignment, chat, labels
from ..core.errors import UserError
from ..core.files import BadRecord, is_json_list, iter_records
from ..core.labels import Entity

# Reasons a record is invalid: these obey --on-error (fail or drop).
INVALID = ("invalid_json", "wrong_type", "missing_field", "empty_field", "no_text_marker",
           "control_token", "unknown_label", "inconsistent_response", "bad_entities")


@dataclass
class Record:
    """A validated input record."""

    prompt: str
    response: str
    source: str
    entities: list[Entity]  # exact spans of `source`, in order
    exact_spans: bool       # the spans came with the record (not re-derived by `alignment.align`)
    file: str
    index: int              # 0-based position in its file (JSONL: line number - 1)
    language: str | None    # as the record states it, if it does
    template: str | None    # the generator's template family, if any
    genre: str | None       # the generator's genre, if any


@dataclass
class Invalid:
    reason: str  # one of INVALID
    detail: str
    where: str   # "file:line:col" or "file record N": what a person opens to fix it
    index: int | None = None  # 0-based position in its file


def _strings(obj: dict, names: tuple[str, ...], where: str) -> tuple[str, ...] | Invalid:
    for name in names:
        if name not in obj:
            return Invalid("missing_field", f"no '{name}' field", where)
        if not isinstance(obj[name], str):
            return Invalid("wrong_type", f"'{name}' is {type(obj[name]).__name__}, not a string", where)
        if not obj[name].strip():
            return Invalid("empty_field", f"'{name}' is empty", where)
    return tuple(obj[n] for n in names)


def _given_spans(obj: dict) -> tuple[str, list | str] | None:
    """(field, the record's exact spans as [start, end, LABEL] lists) where it gives them, or None."""
    if "entities" in obj:
        return "entities", obj["entities"]
    mask = obj.get("privacy_mask")
    if mask is None or mask == []:  # absent or empty: the spans are found by aligning the texts
        return None
    if not isinstance(mask, list) or not all(isinstance(m, dict) and {"start", "end", "label"} <= m.keys() for m in mask):
        return "privacy_mask", "'privacy_mask' must be a list of {start, end, label} objects"
    return "privacy_mask", [[m["start"], m["end"], m["label"]] for m in mask]


def check_spans(source: str, response: str, spans: Any, name: str = "entities") -> list[Entity] | str:
    """The given spans (the record's field `name`) as entities, or what is wrong with them: each
    [start, end, LABEL] inside the source, in order, not overlapping, and the response is the
    source with exactly these spans replaced by placeholders of these labels."""
    if isinstance(spans, str):  # already found wrong by the reader of the field
        return spans
    if not isinstance(spans, list) or not all(
            isinstance(s, list) and len(s) == 3 and all(isinstance(x, int) and not isinstance(x, bool) for x in s[:2])
            and isinstance(s[2], str) for s in spans):
        return f"'{name}' must be a list of [start, end, LABEL]"
    if any(s[2] not in labels.LABELS for s in spans):
        return f"unknown label in '{name}': {next(s[2] for s in spans if s[2] not in labels.LABELS)}"
    pos = 0
    for start, end, _ in spans:
        if not pos <= start < end <= len(source):
            return f"span [{start}, {end}] is out of order, empty, overlapping or outside the text"
        pos = end
    redacted, entities = labels.mask(source, [tuple(s) for s in spans])
    if labels.unnumbered(redacted) != labels.unnumbered(response):
        return "the response is not the source with exactly these spans replaced"
    return entities


def to_record(obj: Any, file: str, index: int, where: str | None = None) -> Record | Invalid:
    """A parsed object -> a validated Record, or why it is invalid."""
    result = _validated(obj, file, index, where or f"{file} record {index}")
    if isinstance(result, Invalid):
        result.index = index
    return result


def _tags(obj: dict, *keys: str) -> list[str | None]:
    """A record's optional descriptive fields (language, template, genre): non-empty strings or None."""
    return [obj[k] if isinstance(obj.get(k), str) and obj[k] else None for k in keys]


def _validated(obj: Any, file: str, index: int, where: str) -> Record | Invalid:
    if not isinstance(obj, dict):
        return Invalid("wrong_type", f"a record must be a JSON object, got {type(obj).__name__}", where)
    if "source_text" in obj and "prompt" not in obj:
        fields = _strings(obj, ("source_text", "masked_text"), where)
        if isinstance(fields, Invalid):
            return fields
        source, response = fields
        prompt = chat.build_prompt(source)
    else:
        fields = _strings(obj, ("prompt", "response"), where)
        if isinstance(fields, Invalid):
            return fields
        prompt, response = fields
        source = chat.source_from_prompt(prompt)
        if source is None:
            return Invalid("no_text_marker", f"the prompt has no {chat.TEXT_MARKER!r} before the text to redact", where)
        if not source.strip():
            return Invalid("empty_field", f"the prompt has no text after {chat.TEXT_MARKER!r}", where)
    control = next((t for t in chat.CONTROL_TOKENS if t in source or t in response), None)
    if control is not None:
        return Invalid("control_token", f"the text holds the chat control token {control}", where)
    unknown = labels.unknown_placeholders(source, response)
    if unknown:
        return Invalid("unknown_label", f"placeholder {unknown[0]} is not one of the {len(labels.LABELS)} labels", where)
    given = _given_spans(obj)
    if given is not None:
        entities = check_spans(source, response, given[1], given[0])
        if isinstance(entities, str):
            return Invalid("bad_entities", entities, where)
    else:
        entities = alignment.align(source, response)
        if entities is None:
            return Invalid("inconsistent_response", "the response is not the source text with PII replaced "
                           "(non-PII text differs)", where)
    language, template, genre = _tags(obj, "language", "template", "genre")
    if template and template.count("/") >= 1:  # the generator's "lang/genre[/frame]"
        language, genre = language or template.split("/")[0], genre or template.split("/")[1]
    return Record(prompt, response, source, entities, given is not None, file, index, language, template, genre)


def read_input(path: Path) -> Iterator[Record | Invalid]:
    """The records of one input file, each validated (or the reason it is invalid) and named the
    way a person finds it: `file:line` in JSONL, `file record N` in a JSON list."""
    jsonl = not is_json_list(path) if path.is_file() else True
    for index, obj in iter_records(path):
        if isinstance(obj, BadRecord):
            yield Invalid("invalid_json", obj.problem, obj.where, index)
        else:
            yield to_record(obj, str(path), index, f"{path}:{index + 1}" if jsonl else None)


# --------------------------------------------------------------------------------------------
# samples: what training and evaluation read

@dataclass
class Sample:
    prompt: str
    response: str
    source: str
    entities: list[Entity] | None  # exact reference spans, where the data carries them
    template: str | None = None
    genre: str | None = None
    language: str | None = None


def _by_role(messages: Any, where: str) -> tuple[str, str]:
    """(user content, assistant content) of a two-message conversation, read by role."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise UserError(f"{where}: 'messages' must be a list of {{role, content}} objects")
    roles = Counter(m.get("role") for m in messages)
    if len(messages) != 2 or roles != Counter({"user": 1, "assistant": 1}):
        found = ", ".join(str(m.get("role")) for m in messages) or "none"
        raise UserError(f"{where}: expected one user and one assistant message, found: {found}")
    content = {m["role"]: m.get("content") for m in messages}
    if not all(isinstance(content[r], str) for r in ("user", "assistant")):
        raise UserError(f"{where}: message contents must be strings")
    return content["user"], content["assistant"]


def _sample(obj: Any, where: str) -> Sample:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object")
    if "messages" in obj:
        prompt, response = _by_role(obj["messages"], where)
        source = chat.source_of(obj.get("source"), prompt)
        if source is None:
            raise UserError(f"{where}: the user message has no {chat.TEXT_MARKER!r} before the text to redact")
        entities = None
        if isinstance(obj.get("entities"), list):
            checked = check_spans(source, response, obj["entities"])
            if isinstance(checked, str):
                raise UserError(f"{where}: {checked}")
            entities = checked
        return Sample(prompt, response, source, entities, *_tags(obj, "template", "genre", "language"))
    record = to_record(obj, "", 0, where)
    if isinstance(record, Invalid):
        if record.reason in ("inconsistent_response", "unknown_label"):
            # a held-out reference that is not a faithful redaction can still be scored (robustly)
            prompt, response = obj.get("prompt"), obj.get("response")
            source = chat.source_from_prompt(prompt) if isinstance(prompt, str) else None
            if source is not None and isinstance(response, str):
                return Sample(prompt, response, source, None)
        raise UserError(f"{where}: {record.detail}")
    return Sample(record.prompt, record.response, record.source,
                  record.entities if record.exact_spans else None, record.template, record.genre, record.language)


def read_samples(path: str | Path, limit: int = 0, *, prepared: bool = False) -> list[Sample]:
    """The samples of a prepared split (`prepared=True`: only that shape) or of any accepted
    input file; every problem is a UserError naming the file and line (or record)."""
    path = Path(path)
    samples: list[Sample] = []
    for index, obj in iter_records(path):
        where = f"{path}:{index + 1}" if not str(path).endswith(".json") else f"{path} record {index}"
        if isinstance(obj, BadRecord):
            raise UserError(str(obj))
        if prepared and not (isinstance(obj, dict) and "messages" in obj):
            raise UserError(f"{where}: not a prepared sample (no 'messages'); run prepare_data.py")
        samples.append(_sample(obj, where))
        if limit and len(samples) >= limit:
            break
    if not samples:
        raise UserError(f"{path}: no samples in it")
    return samples


def split_line(record: Record, num_tokens: int, language: str) -> dict[str, Any]:
    """A prepared split's line for a record (read back by `read_samples`)."""
    return {
        "messages": chat.to_messages(record.prompt, record.response),
        "source": record.source,
        # exact spans only: spans `alignment.align` re-derived are re-derived again when scored
        **({"entities": [[e.start, e.end, e.label] for e in record.entities]} if record.exact_spans else {}),
        "origin": {"file": record.file, "index": record.index},
        "language": language,
        **({"template": record.template} if record.template else {}),
        **({"genre": record.genre} if record.genre else {}),
        "labels": dict(sorted(Counter(e.label for e in record.entities).items())),
        "num_tokens": num_tokens,
    }
