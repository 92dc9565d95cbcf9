"""`evaluate.py`: generate redactions for held-out text (or take a baseline's, or a predictions file)
and score them: leaks, entity precision/recall/F1 per label, text fidelity. See metrics.py for the
exact definitions and report.py for what is written.

Predictions are appended to `predictions.jsonl` as they are made, so an interrupted evaluation
resumes where it stopped. `provenance.json` beside them records what made them (the model and its
run.json, the data file, the generation settings): a rerun into the same directory with anything
else is refused rather than mixing two models' outputs in one score (`--overwrite` replaces them,
keeping the old ones until the new set is complete).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from .cli import parse_config
from .config import EvalConfig
from .data import Sample, read_samples
from .errors import UserError
from .files import BadRecord, dumps_line, iter_records, read_json, sha256_file, write_json, write_jsonl
from .runs import RUN_FILE, trained_model

PREDICTIONS_FILE = "predictions.jsonl"
PROVENANCE_FILE = "provenance.json"


def model_fingerprint(model_dir: Path, run_dir: Path) -> str:
    """Changes when the model does: the run's run.json (written anew by every run), else the
    model files' names, sizes and modification times."""
    if (run_dir / RUN_FILE).is_file():
        return "run.json:" + sha256_file(run_dir / RUN_FILE)
    stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model_dir.iterdir() if p.is_file())
    return "files:" + hashlib.sha256(repr(stats).encode()).hexdigest()


def _check_provenance(out_dir: Path, provenance: dict[str, Any], overwrite: bool) -> bool:
    """Whether the predictions already in `out_dir` may be kept (made the same way); refuses to
    mix otherwise, unless --overwrite (then they are replaced once the new ones are complete)."""
    path = out_dir / PROVENANCE_FILE
    has_predictions = (out_dir / PREDICTIONS_FILE).exists()
    if not has_predictions:
        return False
    old = read_json(path, what="provenance file") if path.exists() else None
    if old == provenance:
        return True
    if overwrite:
        return False
    if old is None:
        why = f"{out_dir / PREDICTIONS_FILE} was not made by this command (no {PROVENANCE_FILE})"
    else:
        changed = sorted(k for k in provenance if old.get(k) != provenance[k])
        why = f"the predictions in {out_dir} were made with another {', '.join(changed)}"
    raise UserError(f"{why}; pass another --output-dir, or --overwrite to replace them")


def _move_aside(out_dir: Path) -> Path | None:
    """Move old predictions (and their provenance) into a hidden folder, or None if there are none."""
    old = [out_dir / n for n in (PREDICTIONS_FILE, PROVENANCE_FILE) if (out_dir / n).exists()]
    if not old:
        return None
    aside = out_dir / ".replaced"
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for path in old:
        path.rename(aside / path.name)
    return aside


def _done_predictions(path: Path, samples: list[Sample]) -> dict[int, dict[str, Any]]:
    """Predictions already written by an interrupted run, by sample index. Only the last line may
    be cut off (the run was killed while writing it): it is dropped from the file, every other
    row stays, those of samples past --limit included."""
    if not path.exists():
        return {}
    read = list(iter_records(path))
    bad = [i for i, (_, row) in enumerate(read) if isinstance(row, BadRecord)]
    if bad and bad != [len(read) - 1]:
        raise UserError(f"{read[bad[0]][1]}; pass --overwrite to make the predictions again")
    rows = [row for _, row in read if not isinstance(row, BadRecord)]
    if bad:
        write_jsonl(path, rows)
    return {row["index"]: row for row in rows
            if isinstance(row, dict) and isinstance(row.get("index"), int) and 0 <= row["index"] < len(samples)
            and row.get("prompt") == samples[row["index"]].prompt}


def _record(i: int, sample: Sample) -> dict[str, Any]:
    row = {"index": i, "prompt": sample.prompt, "source": sample.source, "response": sample.response}
    if sample.entities is not None:
        row["entities"] = [[e.start, e.end, e.label] for e in sample.entities]
    row.update({k: v for k, v in (("language", sample.language), ("genre", sample.genre),
                                  ("template", sample.template)) if v})
    return row


def predict(config: EvalConfig, samples: list[Sample], model_dir: Path, out_dir: Path,
            keep: bool, timing: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A prediction per sample, appended to predictions.jsonl as each is made; those an
    interrupted run with the same provenance already wrote (`keep`) are not made again. Rows of
    samples past --limit stay in the file. `timing` receives how many predictions this call made
    and the seconds spent loading the model and generating."""
    import time

    from tqdm.auto import tqdm

    from . import generate

    path = out_dir / PREDICTIONS_FILE
    kept = _done_predictions(path, samples) if keep else {}
    todo = [i for i in range(len(samples)) if i not in kept]
    if kept:
        print(f"resuming: {len(kept)} predictions already in {path}, {len(todo)} to go")
    done = dict(kept)
    if not todo:
        return [done[i] for i in range(len(samples))]
    backend = config.backend
    if backend == "auto":  # vLLM cannot constrain decoding the way `faithful` does
        backend = "vllm" if config.decoding == "free" and generate.vllm_usable() else "transformers"

    clock = {"load_s": 0.0, "generate_s": 0.0}

    def engine(name: str, indices: list[int]):
        """(sample index, prediction, finish reason) from `name` for these samples."""
        prompts, sources = [samples[i].prompt for i in indices], [samples[i].source for i in indices]
        start = time.perf_counter()
        if name == "vllm":
            llm, tokenizer = generate.load_vllm(model_dir)
            stream = generate.generate_vllm(llm, tokenizer, prompts, sources, config.max_new_tokens)
        else:
            model, tokenizer = generate.load_for_generation(model_dir)
            stream = generate.generate_transformers(model, tokenizer, prompts, sources, config.batch_size,
                                                    config.max_new_tokens, config.decoding, config.speculation)
        clock["load_s"] += time.perf_counter() - start
        for j, prediction, reason in stream:
            yield indices[j], prediction, reason

    print(f"generating {len(todo)} redactions with {backend} ({config.decoding} decoding) from {model_dir}")
    with open(path, "a", encoding="utf-8") as f, tqdm(total=len(todo), unit="sample") as bar:
        def write(stream) -> None:
            for i, prediction, reason in stream:
                row = {**_record(i, samples[i]), "prediction": prediction, "finish_reason": reason}
                f.write(dumps_line(row))
                f.flush()
                done[i] = row
                bar.update(1)

        start = time.perf_counter()
        try:
            write(engine(backend, todo))
        except Exception as exc:  # vLLM pins its own transformers/torch: a mismatch must not end the run
            if backend != "vllm":
                raise
            if config.backend == "vllm":
                raise UserError(f"--backend vllm: vLLM failed ({type(exc).__name__}: {exc})") from None
            print(f"warning: vLLM failed ({type(exc).__name__}: {exc}); the rest with transformers")
            write(engine("transformers", [i for i in todo if i not in done]))
        finally:
            clock["generate_s"] = time.perf_counter() - start - clock["load_s"]
    if timing is not None:
        timing.update(backend=backend, decoding=config.decoding, batch_size=config.batch_size, samples=len(todo),
                      load_s=round(clock["load_s"], 3), generate_s=round(clock["generate_s"], 3),
                      samples_per_s=round(len(todo) / clock["generate_s"], 3) if clock["generate_s"] > 0 else None)
    return [done[i] for i in range(len(samples))]


def run_baseline(name: str, samples: list[Sample]) -> list[dict[str, Any]]:
    from . import baselines

    redact = {"identity": baselines.identity, "regex": baselines.regex_redact}[name]
    return [{**_record(i, s), "prediction": redact(s.source), "finish_reason": "stop"}
            for i, s in enumerate(samples)]


def apply_safety_net(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Records whose prediction went through `baselines.safety_net` (the model's own output
    stays in `model_prediction`), and how many entities the net added in all."""
    from .baselines import safety_net

    out, total = [], 0
    for record in records:
        prediction, added = safety_net(record["source"], record["prediction"])
        total += added
        out.append({**record, "prediction": prediction, "model_prediction": record["prediction"]} if added else record)
    return out, total


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and os.path.samefile(a, b)


def evaluate(config: EvalConfig) -> tuple[dict[str, Any], Path]:
    from . import metrics, report

    timing: dict[str, Any] = {}  # filled when this call generates predictions
    if not config.predictions and not Path(config.data).is_file():
        raise UserError(f"--data {config.data}: no such file (make the splits with prepare_data.py first)")

    if config.predictions:
        records = metrics.read_predictions(config.predictions)
        if config.limit:
            records = records[: config.limit]
        out_dir = Path(config.output_dir) if config.output_dir else Path(config.predictions).parent
        title = f"predictions {config.predictions}"
    elif config.baseline:
        samples = read_samples(config.data, config.limit)
        records = run_baseline(config.baseline, samples)
        out_dir = Path(config.output_dir or Path(config.runs_dir) / f"baseline-{config.baseline}")
        title = f"{config.baseline} baseline on {config.data}"
    else:
        samples = read_samples(config.data, config.limit)
        model_dir, run_dir = trained_model(config.model_dir, config.runs_dir)
        out_dir = Path(config.output_dir) if config.output_dir else run_dir / "eval"
        provenance = {"model": str(model_dir.resolve()), "model_fingerprint": model_fingerprint(model_dir, run_dir),
                      "data": str(Path(config.data).resolve()), "data_sha256": sha256_file(config.data),
                      "max_new_tokens": config.max_new_tokens, "backend": config.backend,
                      "decoding": config.decoding}
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"--output-dir {out_dir} is a file, not a directory")
        keep = _check_provenance(out_dir, provenance, config.overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
        aside = None if keep else _move_aside(out_dir)
        try:
            write_json(out_dir / PROVENANCE_FILE, provenance)
            records = predict(config, samples, model_dir, out_dir, keep, timing)
        except BaseException:
            if aside is not None:  # --overwrite failed: the old predictions come back
                for name in (PREDICTIONS_FILE, PROVENANCE_FILE):
                    (out_dir / name).unlink(missing_ok=True)
                    if (aside / name).exists():
                        (aside / name).rename(out_dir / name)
                shutil.rmtree(aside)
            raise
        if aside is not None:
            shutil.rmtree(aside)
        title = f"{run_dir.name} on {config.data}"
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--output-dir {out_dir} is a file, not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.baseline or config.predictions:
        target = out_dir / PREDICTIONS_FILE
        if not (config.predictions and _same_file(Path(config.predictions), target)):  # never rewrite an input
            write_jsonl(target, records)
    added = 0
    if config.safety_net and not config.baseline:  # on the model's outputs, not on a baseline's
        records, added = apply_safety_net(records)
    scores, per_sample = metrics.score(records)
    scores["safety_net"] = {"enabled": config.safety_net and not config.baseline, "added_entities": added}
    if timing.get("samples"):  # the speed of this call's generation (a resumed run: of what it added)
        scores["generation"] = timing
    for key in ("language", "genre"):  # where the data says, to see which kinds of text fail
        if any(key in r for r in records):
            scores[f"by_{key}"] = metrics.by_group(per_sample, [r.get(key) or "none" for r in records])
    report.write_report(scores, per_sample, records, out_dir, title=title, worst=config.worst)
    report.print_summary(scores)
    if timing.get("samples"):
        print(f"generated {timing['samples']} redactions in {timing['generate_s']:.1f} s "
              f"({timing['samples_per_s']} samples/s, {timing['backend']}, batch {timing['batch_size']}; "
              f"model loaded in {timing['load_s']:.1f} s)")
    print(f"report: {out_dir / 'report.md'}  metrics: {out_dir / 'metrics.json'}")
    return scores, out_dir


DESCRIPTION = "Generate redactions for held-out text and score them (leaks, entity P/R/F1, fidelity)."
USAGE = "evaluate.py [options]\n       evaluate.py compare METRICS [METRICS ...] [--output FILE]"
EPILOG = """examples:
  python evaluate.py                              # newest run in outputs/, on data/test.jsonl
  python evaluate.py --model-dir outputs/my-run --limit 200
  python evaluate.py --baseline regex             # score the regex baseline on the same data
  python evaluate.py --predictions preds.jsonl    # score an existing file, no model needed
  python evaluate.py --fail-under entity.f1=0.9 --fail-under leak_rate=0.05
  python evaluate.py compare outputs/baseline-regex outputs/my-run/eval

--fail-under takes dotted metric paths from metrics.json; for metrics where lower is better
(leak_rate, samples_with_leak, unfinished_rate) the check is that the metric is at most VALUE.
`compare` puts metrics.json files (or the directories holding them) side by side."""


def compare_main(argv: list[str]) -> int:
    import argparse

    from . import report

    parser = argparse.ArgumentParser(prog="evaluate.py compare",
                                     description="Put two or more metrics.json files side by side.")
    parser.add_argument("metrics", nargs="+", help="metrics.json files (or the directories holding them)")
    parser.add_argument("--output", help="also write the comparison as Markdown to this file")
    args = parser.parse_args(argv)
    paths = [str(Path(p) / "metrics.json") if Path(p).is_dir() else p for p in args.metrics]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"not found: {', '.join(missing)}")
    table = report.compare(paths)
    report.print_compare(paths)
    if args.output:
        if any(_same_file(Path(args.output), Path(p)) for p in paths):
            raise UserError(f"--output {args.output} is one of the inputs")
        from .files import write_text

        write_text(args.output, table + "\n")
        print(f"written to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["compare"]:
        return compare_main(args[1:])
    config, _ = parse_config(EvalConfig, "evaluate", argv, prog="evaluate.py",
                             description=DESCRIPTION, epilog=EPILOG, usage=USAGE)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from . import metrics

    if config.fail_under:
        metrics.check_thresholds({}, config.fail_under, validate_only=True)  # bad specs fail before generating
    scores, _ = evaluate(config)
    failures = metrics.check_thresholds(scores, config.fail_under)
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0
