"""`evaluate.py`: generate redactions for held-out text (or take a baseline's, or a predictions file)
and score them: leaks, entity precision/recall/F1 per label, text fidelity. See metrics.py for the
exact definitions and report.py for what is written.

Predictions are appended to `predictions.jsonl` as they are made, so an interrupted evaluation
resumes where it stopped. `provenance.json` beside them records what made them (the model and its
run.json, the data file, the generation settings; a baseline and its data; a predictions file).
Before any work, an evaluation checks what it is about to write: it never writes over one of its
inputs, and a directory holding another evaluation (other model, data, setting, a baseline, a
rescored file, or files this command did not make) is refused rather than mixed or overwritten;
`--overwrite` replaces it, keeping the old files until the new ones are written. Nothing is written
before the first prediction, so a run that fails before it leaves the directory as it was.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..cli import parse_config
from ..config import EvalConfig
from ..core.errors import UserError
from ..core.files import (
    BadRecord,
    check_can_write,
    dumps_line,
    input_file,
    iter_records,
    open_private_append,
    read_json,
    sha256_file,
    write_json,
    write_jsonl,
)
from ..core.run_dir import RunDir
from ..data.records import Sample, read_samples
from ..inference.llamacpp import gguf_for
from ..inference.redactor import choose_backend
from ..models.loading import model_fingerprint, trained_model

PREDICTIONS_FILE = "predictions.jsonl"
PROVENANCE_FILE = "provenance.json"


def run_fingerprint(model_dir: Path, run: RunDir) -> str:
    """Changes when the model does: the run's run.json (written anew by every run), else the
    model files' contents."""
    if run.is_run():
        return f"{run.run_file.name}:" + sha256_file(run.run_file)
    return "files:" + str(model_fingerprint(model_dir))


# Everything an evaluation writes into its output directory.
OUTPUT_FILES = (PREDICTIONS_FILE, PROVENANCE_FILE, "metrics.json", "report.md", "per_label_f1.png")


@dataclass
class Plan:
    """Where an evaluation writes and what made its predictions, settled before any work."""

    out_dir: Path
    provenance: dict[str, Any]  # what makes the predictions: model + data + settings, baseline + data, or a file
    keep: bool                  # the predictions in out_dir were made the same way: resume or rescore them
    replace: bool               # --overwrite: what out_dir holds is moved aside, deleted once this one is written
    in_place: bool = False      # --predictions OUT_DIR/predictions.jsonl: rescored where it is, never rewritten


def _describe(provenance: dict[str, Any]) -> str:
    kind = provenance.get("kind", "model")
    if kind == "baseline":
        return f"the {provenance.get('baseline')} baseline on {provenance.get('data')}"
    if kind == "predictions":
        return f"a scoring of {provenance.get('predictions')}"
    return f"the model {provenance.get('model')} on {provenance.get('data')}"


def plan_outputs(config: EvalConfig, out_dir: Path, provenance: dict[str, Any], inputs: dict[str, Path]) -> Plan:
    """Check, before any work, that this evaluation can write `out_dir` without destroying or
    mixing anything: never over one of its inputs (`inputs`: flag -> file), and never over
    another evaluation's files unless --overwrite (which keeps them until the new ones are
    written). The same predictions are kept: an interrupted model evaluation resumes, a rescoring
    rewrites only the scores."""
    check_can_write(out_dir, "--output-dir", directory=True)
    name_leftovers(out_dir)
    writes = {(out_dir / name).absolute() for name in OUTPUT_FILES}
    in_place = provenance.get("kind") == "predictions" and _same_file(inputs["--predictions"], out_dir / PREDICTIONS_FILE)
    for flag, path in inputs.items():
        if path.absolute() in writes or any(_same_file(path, w) for w in writes):
            if not (in_place and flag == "--predictions"):
                raise UserError(f"{flag} {path} is one of the files this evaluation writes into {out_dir}; "
                                "pass another --output-dir (or copy the input elsewhere)")
    present = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    path = out_dir / PROVENANCE_FILE
    old = read_json(path, what="provenance file") if path.exists() else None
    if in_place or not present or old == provenance:
        return Plan(out_dir, provenance, keep=bool(present) and not in_place, replace=False, in_place=in_place)
    if config.overwrite:
        return Plan(out_dir, provenance, keep=False, replace=True)
    if not isinstance(old, dict):
        why = f"{out_dir / present[0]} was not made by this command (no {PROVENANCE_FILE} beside it)"
    elif old.get("kind", "model") == provenance.get("kind", "model") == "model":
        changed = sorted(k for k in provenance if old.get(k) != provenance[k])
        why = f"the predictions in {out_dir} were made with another {', '.join(changed)}"
    else:
        why = f"{out_dir} holds {_describe(old)}, not {_describe(provenance)}"
    raise UserError(f"{why}; pass another --output-dir, or --overwrite to replace them")


REPLACED_PREFIX = ".replaced-"  # the hidden folder `Aside` keeps a replaced evaluation in


def name_leftovers(out_dir: Path) -> None:
    """A run killed outright (SIGKILL, a power cut: no handler runs) while --overwrite had the old
    evaluation moved aside leaves it in a hidden folder; every later run there says where it is."""
    if not out_dir.is_dir():
        return
    for folder in sorted(out_dir.glob(REPLACED_PREFIX + "*")):
        print(f"warning: {folder} holds an evaluation that an --overwrite run moved aside and was killed "
              f"before putting back; move its files back into {out_dir} to keep it, or delete the folder",
              file=sys.stderr)


class Aside:
    """--overwrite: an output directory's evaluation files moved into a hidden folder (`move`),
    deleted once the new evaluation is written (`drop`), or put back if it fails (`restore`, on
    Ctrl-C and SIGTERM too, even one that lands while the files are being moved)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.folder: Path | None = None
        self.all_moved = False  # until then, an evaluation file still in out_dir is an old one

    def move(self) -> None:
        # a new name each time: a folder a killed run left behind is never reused or mixed into
        self.folder = Path(tempfile.mkdtemp(prefix=f"{REPLACED_PREFIX}{os.getpid()}-", dir=self.out_dir))
        for name in OUTPUT_FILES:
            if (self.out_dir / name).exists():
                (self.out_dir / name).rename(self.folder / name)
        self.all_moved = True

    def restore(self) -> None:
        """Every file in the folder back in place, and the new evaluation's others removed."""
        if self.folder is None:
            return
        for name in OUTPUT_FILES:
            if (self.folder / name).exists():
                os.replace(self.folder / name, self.out_dir / name)
            elif self.all_moved:  # the old evaluation had no such file: the new one wrote it
                (self.out_dir / name).unlink(missing_ok=True)
        self.folder.rmdir()  # empty now; never a recursive delete of what may be the user's only copy

    def drop(self) -> None:
        shutil.rmtree(self.folder)


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


class PredictionsFile:
    """predictions.jsonl, with provenance.json beside it, made when the first prediction is: a
    run that fails before one (a backend that cannot start, a model that does not load, Ctrl-C
    or SIGTERM while it loads) leaves no files behind to refuse or misresume the next one."""

    def __init__(self, out_dir: Path, provenance: dict[str, Any]):
        self.out_dir, self.provenance = out_dir, provenance
        self.file = None

    def append(self, row: dict[str, Any]) -> None:
        if self.file is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / PROVENANCE_FILE, self.provenance)
            self.file = open_private_append(self.out_dir / PREDICTIONS_FILE)
        self.file.write(dumps_line(row))
        self.file.flush()  # a killed run resumes from every row it wrote

    def __enter__(self) -> PredictionsFile:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.file is not None:
            self.file.close()


def predict(config: EvalConfig, samples: list[Sample], model_dir: Path, plan: Plan,
            timing: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A prediction per sample, appended to predictions.jsonl as each is made (`PredictionsFile`);
    those an interrupted run with the same provenance already wrote (`plan.keep`) are not made
    again. Rows of samples past --limit stay in the file. `timing` receives how many predictions
    this call made and the seconds spent loading the model and generating. The rows hold what the
    model wrote: the safety net is applied when they are scored, so a rescoring can leave it out."""
    from tqdm.auto import tqdm

    from ..inference.redactor import Redactor, Settings

    path = plan.out_dir / PREDICTIONS_FILE
    kept = _done_predictions(path, samples) if plan.keep else {}
    todo = [i for i in range(len(samples)) if i not in kept]
    if kept:
        print(f"resuming: {len(kept)} predictions already in {path}, {len(todo)} to go")
    done = dict(kept)
    if not todo:
        return [done[i] for i in range(len(samples))]
    redactor = Redactor(model_dir, replace(Settings.of(config), mask_bias=plan.provenance["mask_bias"]))
    backend = redactor.backend
    source = gguf_for(config.gguf, model_dir) if backend == "llama.cpp" else model_dir  # what actually runs
    print(f"generating {len(todo)} redactions with {backend} ({config.decoding} decoding) from {source}")
    with PredictionsFile(plan.out_dir, plan.provenance) as out, tqdm(total=len(todo), unit="sample") as bar:
        for result in redactor.redact([samples[i].source for i in todo], [samples[i].prompt for i in todo]):
            i = todo[result.index]
            row = {**_record(i, samples[i]), "prediction": result.model_text,
                   "finish_reason": "stop" if result.finished else "length"}
            out.append(row)
            done[i] = row
            bar.update(1)
    stats = redactor.stats
    if timing is not None:
        # llama.cpp redacts one text at a time whatever --batch-size says
        timing.update(backend=stats.backend, decoding=config.decoding,
                      batch_size=1 if stats.backend == "llama.cpp" else config.batch_size,
                      samples=stats.samples, load_s=round(stats.load_s, 3), generate_s=round(stats.generate_s, 3),
                      samples_per_s=stats.samples_per_s)
    return [done[i] for i in range(len(samples))]


def run_baseline(name: str, samples: list[Sample]) -> list[dict[str, Any]]:
    from . import baselines

    redact = {"identity": baselines.identity, "regex": baselines.regex_redact}[name]
    return [{**_record(i, s), "prediction": redact(s.source), "finish_reason": "stop"}
            for i, s in enumerate(samples)]


def apply_finish(records: list[dict[str, Any]], safety_net: bool, propagate: bool) -> tuple[list[dict[str, Any]], int, int]:
    """Records whose prediction went through what follows generation (`redactor.finish`: the
    safety net, propagation; the model's own output stays in `model_prediction`), and how many
    entities the net and propagation added in all."""
    from ..inference.redactor import Settings, finish

    settings = Settings(safety_net=safety_net, propagate=propagate)
    out, net, propagated = [], 0, 0
    for record in records:
        final = finish(record["source"], record["prediction"], settings, record.get("finish_reason") != "length")
        net, propagated = net + final.net_added, propagated + final.propagation_added
        changed = final.text != record["prediction"]
        out.append({**record, "prediction": final.text, "model_prediction": record["prediction"]} if changed else record)
    return out, net, propagated


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and os.path.samefile(a, b)


def plan_evaluation(config: EvalConfig) -> tuple[Plan, str]:
    """(where and from what this evaluation writes, the report's title), checked before any work:
    the inputs exist, the backend can run, the output directory takes this evaluation."""
    if config.predictions:
        source = input_file(config.predictions, "--predictions")
        out_dir = Path(config.output_dir) if config.output_dir else source.parent
        provenance = {"kind": "predictions", "predictions": str(source.resolve()),
                      "predictions_sha256": sha256_file(source)}
        plan = plan_outputs(config, out_dir, provenance, {"--predictions": source})
        title = f"predictions {config.predictions}"
    else:
        data = input_file(config.data, "--data", " (make the splits with prepare_data.py first)")
        data_id = {"data": str(data.resolve()), "data_sha256": sha256_file(data)}
        if config.baseline:
            out_dir = Path(config.output_dir or Path(config.runs_dir) / f"baseline-{config.baseline}")
            provenance = {"kind": "baseline", "baseline": config.baseline, **data_id}
            title = f"{config.baseline} baseline on {config.data}"
        else:
            model_dir, run = trained_model(config.model_dir, config.runs_dir)
            backend = choose_backend(config.backend, config.decoding, model_dir, config.gguf)
            out_dir = Path(config.output_dir) if config.output_dir else run.eval_dir
            provenance = {"model": str(model_dir.resolve()), "model_fingerprint": run_fingerprint(model_dir, run),
                          **data_id, "max_new_tokens": config.max_new_tokens, "backend": backend,
                          "decoding": config.decoding, "mask_bias": run.mask_bias(config.mask_bias),
                          # only where it is not the default: earlier evaluations' provenance still matches
                          **({"placeholder_bounds": config.placeholder_bounds}
                             if config.placeholder_bounds != "words" else {}),
                          **({"gguf": str(gguf_for(config.gguf, model_dir).resolve())}
                             if backend == "llama.cpp" else {})}
            title = f"{run.path.name} on {config.data}"
        plan = plan_outputs(config, out_dir, provenance, {"--data": data})
    return plan, title


def evaluate(config: EvalConfig) -> tuple[dict[str, Any], Path]:
    """Predictions (a model's, a baseline's or a file's), their scores and report; see the module
    docstring. Every output path is settled before anything is generated."""
    from . import metrics, report

    timing: dict[str, Any] = {}  # filled when this call generates predictions
    plan, title = plan_evaluation(config)
    out_dir = plan.out_dir
    aside = Aside(out_dir) if plan.replace else None
    try:
        if aside is not None:
            aside.move()
        records = _predictions(config, plan, timing)
        # on the model's outputs (or a predictions file), not on a baseline's
        net, propagate = config.safety_net and not config.baseline, config.propagate and not config.baseline
        records, net_added, propagated = apply_finish(records, net, propagate)
        scores, per_sample = metrics.score(records)
        scores["safety_net"] = {"enabled": net, "added_entities": net_added}
        scores["propagation"] = {"enabled": propagate, "added_entities": propagated}
        if "mask_bias" in plan.provenance:
            scores["mask_bias"] = plan.provenance["mask_bias"]
        if timing.get("samples"):  # the speed of this call's generation (a resumed run: of what it added)
            scores["generation"] = timing
        for key in ("language", "genre"):  # where the data says, to see which kinds of text fail
            if any(key in r for r in records):
                scores[f"by_{key}"] = metrics.by_group(per_sample, [r.get(key) or "none" for r in records])
        report.write_report(scores, per_sample, records, out_dir, title=title, worst=config.worst)
    except BaseException:
        if aside is not None:  # --overwrite failed: the old evaluation comes back
            aside.restore()
        raise
    if aside is not None:
        aside.drop()
    report.print_summary(scores)
    if timing.get("samples"):
        print(f"generated {timing['samples']} redactions in {timing['generate_s']:.1f} s "
              f"({timing['samples_per_s']} samples/s, {timing['backend']}, batch {timing['batch_size']}; "
              f"model loaded in {timing['load_s']:.1f} s)")
    print(f"report: {out_dir / 'report.md'}  metrics: {out_dir / 'metrics.json'}")
    return scores, out_dir


def _predictions(config: EvalConfig, plan: Plan, timing: dict[str, Any]) -> list[dict[str, Any]]:
    """The records to score, written to predictions.jsonl with their provenance (except when a
    predictions file is rescored where it is); nothing is written before they exist."""
    from . import metrics

    out_dir = plan.out_dir
    if config.predictions:
        records = metrics.read_predictions(config.predictions)[: config.limit or None]
    else:
        samples = read_samples(config.data, config.limit)
        if config.baseline:
            records = run_baseline(config.baseline, samples)
        else:
            model_dir, _ = trained_model(config.model_dir, config.runs_dir)
            return predict(config, samples, model_dir, plan, timing)
    if not plan.in_place:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(out_dir / PREDICTIONS_FILE, records)
        write_json(out_dir / PROVENANCE_FILE, plan.provenance)
    return records


DESCRIPTION = "Generate redactions for held-out text and score them (leaks, entity P/R/F1, fidelity)."
USAGE = ("evaluate.py [options]\n       evaluate.py compare METRICS [METRICS ...] [--output FILE]\n"
         "       evaluate.py calibrate [--model-dir RUN] [--data data/calibration.jsonl] [--limit N]")
EPILOG = """examples:
  python evaluate.py                              # newest run in outputs/, on data/test.jsonl
  python evaluate.py --model-dir outputs/my-run --limit 200
  python evaluate.py --baseline regex             # score the regex baseline on the same data
  python evaluate.py --predictions preds.jsonl    # score an existing file, no model needed
  python evaluate.py --fail-under entity.f1=0.9 --fail-under leak_rate=0.05
  python evaluate.py compare outputs/baseline-regex outputs/my-run/eval

--fail-under takes dotted metric paths from metrics.json; for metrics where lower is better
(leak_rate, samples_with_leak, unfinished_rate) the check is that the metric is at most VALUE.
`compare` puts metrics.json files (or the directories holding them) side by side. `calibrate`
sweeps the privacy dial (--mask-bias) on the validation split and records the chosen bias in the
run (`evaluate.py calibrate --help`)."""


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
    if args.output:  # checked before anything is read
        if any(_same_file(Path(args.output), Path(p)) for p in paths):
            raise UserError(f"--output {args.output} is one of the inputs")
        check_can_write(args.output, "--output")
    table = report.compare(paths)
    report.print_compare(paths)
    if args.output:
        from ..core.files import write_text

        write_text(args.output, table + "\n")
        print(f"written to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["compare"]:
        return compare_main(args[1:])
    if args[:1] == ["calibrate"]:
        from .calibrate import main as calibrate_main

        return calibrate_main(args[1:])
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
