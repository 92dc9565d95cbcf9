"""How fast is scoring? `python bench/bench_metrics.py [--n 10000] [--data FILE]`: samples/s.

Records: a source and its reference redaction, synthetic (300-800 characters with PII values)
or the first N prompt/response pairs of a JSON/JSONL file (`--data pii_redaction_train.json`),
and a prediction made by perturbing the reference the way a model errs. Half the predictions stay
faithful (exact, a dropped placeholder = leak, a swapped label: `labels.align`'s fast path);
the other half edit the non-PII text (inserted words, truncation, a malformed placeholder) and
take the robust SequenceMatcher path, which is what dominates the time.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pii_redact.core.alignment import align  # noqa: E402
from pii_redact.core.labels import LABELS
from pii_redact.evaluation.metrics import score  # noqa: E402
from pii_redact.inference.prediction import Prediction  # noqa: E402

WORDS = ("the meeting is confirmed for our client please send documents to before "
         "invoice account details were updated by team regarding your request on "
         "thanks and regards contact support office next week").split()
VALUES = {
    "GIVENNAME": ["Anna", "Luca", "Marie"], "SURNAME": ["Rossi", "Dupont", "Schmidt"],
    "EMAIL": ["anna.rossi@example.com", "m.dupont@mail.fr"], "TELEPHONENUM": ["+39 06 1234 5678"],
    "CITY": ["Torino", "Lyon"], "STREET": ["Via Roma", "Rue de Lille"], "BUILDINGNUM": ["12", "7b"],
    "ZIPCODE": ["10121", "69001"], "DATEOFBIRTH": ["12/03/1985"], "USERNAME": ["arossi85"],
    "PASSWORD": ["h7#Kq!2z"], "ACCOUNTNUM": ["IT60X0542811101000000123456"],
}


def make_record(rng: random.Random) -> dict[str, str]:
    source, reference = [], []
    target = rng.randint(300, 800)
    counts: dict[str, int] = {}
    while sum(map(len, source)) < target:
        if rng.random() < 0.2:
            label = rng.choice(list(VALUES))
            counts[label] = counts.get(label, 0) + 1
            source.append(rng.choice(VALUES[label]))
            reference.append(f"[{label}_{counts[label]}]")
        else:
            word = rng.choice(WORDS)
            source.append(word)
            reference.append(word)
    return {"source": " ".join(source) + ".", "response": " ".join(reference) + "."}


def load(path: str, n: int) -> list[dict[str, str]]:
    """The first `n` faithful prompt/response pairs of a data file (any shape prepare_data.py reads)."""
    from pii_redact.data.records import read_samples

    records = [{"source": s.source, "response": s.response} for s in read_samples(path, n)]
    return [r for r in records if align(r["source"], r["response"]) is not None]


def perturb(record: dict[str, str], rng: random.Random) -> str:
    reference = record["response"]
    entities = align(record["source"], reference)
    kind = rng.choice(["exact", "leak", "swap", "insert", "truncate", "malformed"])
    if kind == "leak" and entities:  # un-mask about half of the entities
        out, pos = [], 0
        for e in entities:
            kept = rng.random() < 0.5
            out += [record["source"][pos:e.start], f"[{e.label}_{e.index}]" if kept else e.value]
            pos = e.end
        out.append(record["source"][pos:])
        return "".join(out)
    if kind == "swap" and entities:
        return reference.replace(f"[{entities[0].label}_", f"[{rng.choice(LABELS)}_", 1)
    if kind == "insert":
        words = reference.split(" ")
        for _ in range(3):
            words.insert(rng.randrange(len(words)), rng.choice(["really", "kindly", "also"]))
        return " ".join(words)
    if kind == "truncate":
        return reference[: rng.randint(len(reference) // 2, len(reference))]
    if kind == "malformed" and entities:  # one placeholder in lowercase
        tag = f"[{entities[0].label}_{entities[0].index}]"
        return reference.replace(tag, tag.lower(), 1)
    return reference


def main(argv: list[str] | None = None) -> int:
    from pii_redact.cli import positive_int
    from pii_redact.core.errors import UserError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="prompt/response JSON or JSONL file (default: synthetic)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    records = load(args.data, args.n) if args.data else [make_record(rng) for _ in range(args.n)]
    if not records:
        raise UserError(f"--data {args.data}: none of its first {args.n} records is a faithful redaction to score")
    for record in records:
        record["prediction"] = perturb(record, rng)
    predictions = [Prediction(r["source"], r["response"], r["prediction"]) for r in records]
    start = time.perf_counter()
    metrics, _ = score(predictions)
    seconds = time.perf_counter() - start
    chars = sum(len(r["source"]) for r in records) / len(records)
    print(f"scored {len(records)} samples (mean {chars:.0f} source chars) in {seconds:.2f} s: "
          f"{len(records) / seconds:,.0f} samples/s")
    print(f"entity.f1={metrics['entity']['f1']:.3f} leak_rate={metrics['leak_rate']:.3f} "
          f"text_fidelity={metrics['text_fidelity']:.3f} "
          f"exact_alignment_rate={metrics['exact_alignment_rate']:.3f}")
    return 0


if __name__ == "__main__":
    from pii_redact.cli import run

    raise SystemExit(run(main))
