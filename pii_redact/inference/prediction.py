"""One prediction (`Prediction`): a reference sample and what redacted it, the row of evaluate.py's
predictions.jsonl and what scoring (`evaluation.metrics`) and calibration read.

It is built in one place per origin: `Prediction.of` for a sample redacted here (by a model,
`redacted`, or a baseline), `Prediction.from_row` for a predictions file's row, checked. On disk
(`to_row`) it is the JSON object evaluate.py has always written; a file's row is written back as
it was read, its source filled in. What the model wrote stays as written; what follows generation
(`redactor.finish`: the safety net, propagation, one numbering) is applied once (`finished`) and
kept beside it (`final`), which is what is scored.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..core import chat
from ..core.errors import UserError
from ..core.labels import Entity
from ..data.records import Sample, check_spans

if TYPE_CHECKING:
    from .redactor import Redaction, Settings

TAGS = ("language", "genre", "template")  # what a sample may say about itself, in the rows' order


@dataclass(frozen=True)
class Prediction:
    source: str
    response: str                     # the reference redaction
    prediction: str                   # what the model (or a baseline) wrote, as predictions.jsonl holds it
    finish_reason: str | None = "stop"  # "length": the token budget ran out; None: a file's row says nothing
    entities: list[Entity] | None = None  # the reference's exact spans, where the data carries them
    index: int | None = None          # the sample's position in its data
    prompt: str | None = None
    language: str | None = None
    genre: str | None = None
    template: str | None = None
    final: str | None = None          # `prediction` after `redactor.finish`; None: not finished
    net_added: int = 0                # entities the safety net added in `final`
    propagation_added: int = 0        # entities propagation added in `final`
    row: dict[str, Any] | None = None  # a predictions file's row as read (with its source): written back as it was

    @property
    def redaction(self) -> str:
        """What is scored: the finished prediction, else the prediction as written."""
        return self.prediction if self.final is None else self.final

    @property
    def unfinished(self) -> bool:
        return self.finish_reason == "length"

    @classmethod
    def of(cls, index: int, sample: Sample, prediction: str, finish_reason: str | None = "stop") -> Prediction:
        """The prediction `prediction` of the `index`th sample of a data set."""
        return cls(sample.source, sample.response, prediction, finish_reason, sample.entities, index, sample.prompt,
                   sample.language, sample.genre, sample.template)

    @classmethod
    def redacted(cls, index: int, sample: Sample, redaction: Redaction) -> Prediction:
        """A Redactor's redaction of the `index`th sample: already finished."""
        return replace(cls.of(index, sample, redaction.model_text, redaction.finish_reason), final=redaction.text,
                       net_added=redaction.net_added, propagation_added=redaction.propagation_added)

    @classmethod
    def from_row(cls, row: Any, where: str) -> Prediction:
        """A predictions file's row, checked: a source (or a prompt holding one), a response and a
        prediction as strings, tags as strings, exact spans that fit (UserError naming `where`)."""
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object")
        missing = [k for k in ("response", "prediction") if not isinstance(row.get(k), str)]
        source = chat.source_of(row.get("source"), row.get("prompt"))
        if source is None:
            missing.insert(0, f"source or prompt (with a {chat.TEXT_MARKER!r} marker)")
        if missing:
            raise UserError(f"{where}: missing or non-string {', '.join(missing)}")
        wrong = [k for k in TAGS if row.get(k) is not None and not isinstance(row[k], str)]
        if wrong:
            raise UserError(f"{where}: '{wrong[0]}' must be a string, not {type(row[wrong[0]]).__name__}")
        entities = None
        if row.get("entities") is not None:
            entities = check_spans(source, row["response"], row["entities"])
            if isinstance(entities, str):
                raise UserError(f"{where}: {entities}")
        index = row.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        prompt = row.get("prompt") if isinstance(row.get("prompt"), str) else None
        return cls(source, row["response"], row["prediction"], row.get("finish_reason"), entities, index, prompt,
                   *(row.get(k) for k in TAGS), row={**row, "source": source})

    def to_row(self) -> dict[str, Any]:
        """The predictions.jsonl object: a file's row as it was read, else index, prompt, source,
        response, exact spans and tags where there are any, prediction and finish reason."""
        if self.row is not None:
            return self.row
        row = {"index": self.index, "prompt": self.prompt, "source": self.source, "response": self.response}
        if self.entities is not None:
            row["entities"] = [[e.start, e.end, e.label] for e in self.entities]
        row.update({k: getattr(self, k) for k in TAGS if getattr(self, k)})
        return {**row, "prediction": self.prediction, "finish_reason": self.finish_reason}

    def finished(self, settings: Settings) -> Prediction:
        """This prediction after what follows generation (`redactor.finish`), done once: one the
        Redactor finished is returned as it is."""
        if self.final is not None:
            return self
        from .redactor import finish

        final = finish(self.source, self.prediction, settings, not self.unfinished)
        return replace(self, final=final.text, net_added=final.net_added, propagation_added=final.propagation_added)
