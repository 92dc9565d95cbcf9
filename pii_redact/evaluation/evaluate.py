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
before the first prediction, so an evaluation that fails before it leaves the directory as it was.

evaluate.py's commands (`COMMANDS`): an evaluation unless the command line names another,
`compare` (metrics.json files side by side) or `calibrate` (the privacy dial, `calibrate`).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cli import Command, parse_command
from ..config import CalibrateConfig, CompareConfig, EvalConfig
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
from ..inference.prediction import Prediction
from ..inference.redactor import Resolved, Settings, resolve
from ..models.loading import model_fingerprint
from . import calibrate

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
class Outputs:
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


def plan_outputs(config: EvalConfig, out_dir: Path, provenance: dict[str, Any], inputs: dict[str, Path]) -> Outputs:
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
        return Outputs(out_dir, provenance, keep=bool(present) and not in_place, replace=False, in_place=in_place)
    if config.overwrite:
        return Outputs(out_dir, provenance, keep=False, replace=True)
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
    """An evaluation killed outright (SIGKILL, a power cut: no handler runs) while --overwrite had
    the old one moved aside leaves it in a hidden folder; every later evaluation there says where
    it is."""
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


def _done_predictions(path: Path, samples: list[Sample]) -> dict[int, Prediction]:
    """Predictions already written by an interrupted evaluation, by sample index. Only the last
    line may be cut off (it was killed while writing it): it is dropped from the file, every other
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
    rows = [row for row in rows if isinstance(row, dict) and isinstance(row.get("index"), int)
            and 0 <= row["index"] < len(samples) and row.get("prompt") == samples[row["index"]].prompt]
    # the same provenance, so the same data: each row is its sample's, with what was generated for it
    return {row["index"]: Prediction.of(row["index"], samples[row["index"]], row["prediction"], row.get("finish_reason"))
            for row in rows}


class PredictionsFile:
    """predictions.jsonl, with provenance.json beside it, made when the first prediction is: an
    evaluation that fails before one (a backend that cannot start, a model that does not load,
    Ctrl-C or SIGTERM while it loads) leaves no files behind to refuse or misresume the next one."""

    def __init__(self, out_dir: Path, provenance: dict[str, Any]):
        self.out_dir, self.provenance = out_dir, provenance
        self.file = None

    def append(self, prediction: Prediction) -> None:
        if self.file is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / PROVENANCE_FILE, self.provenance)
            self.file = open_private_append(self.out_dir / PREDICTIONS_FILE)
        self.file.write(dumps_line(prediction.to_row()))
        self.file.flush()  # a killed evaluation resumes from every row it wrote

    def __enter__(self) -> PredictionsFile:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.file is not None:
            self.file.close()


def predict(samples: list[Sample], evaluation: Evaluation, timing: dict[str, Any] | None = None) -> list[Prediction]:
    """A prediction per sample, appended to predictions.jsonl as each is made (`PredictionsFile`);
    those an interrupted evaluation with the same provenance already wrote (`Outputs.keep`) are not made
    again. Rows of samples past --limit stay in the file. `timing` receives how many predictions
    this call made and the seconds spent loading the model and generating. The file holds what
    the model wrote; the predictions returned are finished too (`Prediction.final`)."""
    from tqdm.auto import tqdm

    from ..inference.redactor import Redactor

    outputs, resolved = evaluation.outputs, evaluation.resolved
    path = outputs.out_dir / PREDICTIONS_FILE
    kept = _done_predictions(path, samples) if outputs.keep else {}
    todo = [i for i in range(len(samples)) if i not in kept]
    if kept:
        print(f"resuming: {len(kept)} predictions already in {path}, {len(todo)} to go")
    done = dict(kept)
    if not todo:
        return [done[i] for i in range(len(samples))]
    redactor = Redactor(resolved=resolved)
    print(f"generating {len(todo)} redactions with {resolved.backend} ({resolved.settings.decoding} decoding) "
          f"from {resolved.gguf or resolved.model_dir}")  # what actually runs
    with PredictionsFile(outputs.out_dir, outputs.provenance) as out, tqdm(total=len(todo), unit="sample") as bar:
        for result in redactor.redact([samples[i].source for i in todo], [samples[i].prompt for i in todo]):
            i = todo[result.index]
            done[i] = Prediction.redacted(i, samples[i], result)
            out.append(done[i])
            bar.update(1)
    stats = redactor.stats
    if timing is not None:
        timing.update(backend=stats.backend, decoding=resolved.settings.decoding, batch_size=resolved.batch_size,
                      samples=stats.samples, load_s=round(stats.load_s, 3), generate_s=round(stats.generate_s, 3),
                      samples_per_s=stats.samples_per_s)
    return [done[i] for i in range(len(samples))]


def baseline_predictions(name: str, samples: list[Sample]) -> list[Prediction]:
    from . import baselines

    redact = {"identity": baselines.identity, "regex": baselines.regex_redact}[name]
    return [Prediction.of(i, s, redact(s.source)) for i, s in enumerate(samples)]


def finished(predictions: list[Prediction], settings: Settings) -> tuple[list[Prediction], int, int]:
    """The predictions after what follows generation (`Prediction.finished`: the safety net,
    propagation, one numbering, once), and how many entities the net and propagation added."""
    predictions = [p.finished(settings) for p in predictions]
    return predictions, sum(p.net_added for p in predictions), sum(p.propagation_added for p in predictions)


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and os.path.samefile(a, b)


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation settles before any work (`plan_evaluation`)."""

    outputs: Outputs
    title: str                         # the report's
    resolved: Resolved | None = None   # a model's: what its Redactor runs (the provenance records it)


def plan_evaluation(config: EvalConfig) -> Evaluation:
    """Where and from what this evaluation writes, checked before any work: the inputs exist,
    the backend can run, the output directory takes this evaluation."""
    if config.predictions:
        source = input_file(config.predictions, "--predictions")
        out_dir = Path(config.output_dir) if config.output_dir else source.parent
        provenance = {"kind": "predictions", "predictions": str(source.resolve()),
                      "predictions_sha256": sha256_file(source)}
        return Evaluation(plan_outputs(config, out_dir, provenance, {"--predictions": source}),
                          f"predictions {config.predictions}")
    data = input_file(config.data, "--data", " (make the splits with prepare_data.py first)")
    data_id = {"data": str(data.resolve()), "data_sha256": sha256_file(data)}
    if config.baseline:
        out_dir = Path(config.output_dir or Path(config.runs_dir) / f"baseline-{config.baseline}")
        provenance = {"kind": "baseline", "baseline": config.baseline, **data_id}
        return Evaluation(plan_outputs(config, out_dir, provenance, {"--data": data}),
                          f"{config.baseline} baseline on {config.data}")
    resolved = resolve(Settings.of(config), config.model_dir, config.runs_dir)
    out_dir = Path(config.output_dir) if config.output_dir else resolved.run.eval_dir
    outputs = plan_outputs(config, out_dir, model_provenance(resolved, data_id), {"--data": data})
    return Evaluation(outputs, f"{resolved.run.path.name} on {config.data}", resolved)


def model_provenance(resolved: Resolved, data_id: dict[str, str]) -> dict[str, Any]:
    """What makes a model's predictions: the model, the data and how the Redactor runs it."""
    settings = resolved.settings
    return {"model": str(resolved.model_dir.resolve()),
            "model_fingerprint": run_fingerprint(resolved.model_dir, resolved.run),
            **data_id, "max_new_tokens": settings.max_new_tokens, "backend": resolved.backend,
            "decoding": settings.decoding, "mask_bias": resolved.mask_bias,
            # only where it is not the default: earlier evaluations' provenance still matches
            **({"placeholder_bounds": settings.placeholder_bounds} if settings.placeholder_bounds != "words" else {}),
            **({"gguf": str(resolved.gguf.resolve())} if resolved.gguf is not None else {})}


def evaluate(config: EvalConfig) -> tuple[dict[str, Any], Path]:
    """Predictions (a model's, a baseline's or a file's), their scores and report; see the module
    docstring. Every output path is settled before anything is generated."""
    from . import metrics, report

    timing: dict[str, Any] = {}  # filled when this call generates predictions
    evaluation = plan_evaluation(config)
    out_dir = evaluation.outputs.out_dir
    aside = Aside(out_dir) if evaluation.outputs.replace else None
    try:
        if aside is not None:
            aside.move()
        # on the model's outputs (or a predictions file), not on a baseline's
        net, propagate = config.safety_net and not config.baseline, config.propagate and not config.baseline
        predictions, net_added, propagated = finished(_predictions(config, evaluation, timing),
                                                      Settings(safety_net=net, propagate=propagate))
        scores, per_sample = metrics.score(predictions)
        scores["safety_net"] = {"enabled": net, "added_entities": net_added}
        scores["propagation"] = {"enabled": propagate, "added_entities": propagated}
        if evaluation.resolved is not None:
            scores["mask_bias"] = evaluation.resolved.mask_bias
        if timing.get("samples"):  # the speed of this call's generation (a resumed evaluation: of what it added)
            scores["generation"] = timing
        for key in ("language", "genre"):  # where the data says, to see which kinds of text fail
            if any(key in p.to_row() for p in predictions):
                scores[f"by_{key}"] = metrics.by_group(per_sample, [getattr(p, key) or "none" for p in predictions])
        report.write_report(scores, per_sample, predictions, out_dir, title=evaluation.title, worst=config.worst)
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


def _predictions(config: EvalConfig, evaluation: Evaluation, timing: dict[str, Any]) -> list[Prediction]:
    """The predictions to score, written to predictions.jsonl with their provenance (except when
    a predictions file is rescored where it is); nothing is written before they exist."""
    from . import metrics

    outputs = evaluation.outputs
    if config.predictions:
        predictions = metrics.read_predictions(config.predictions)[: config.limit or None]
    else:
        samples = read_samples(config.data, config.limit)
        if not config.baseline:
            return predict(samples, evaluation, timing)
        predictions = baseline_predictions(config.baseline, samples)
    if not outputs.in_place:
        outputs.out_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(outputs.out_dir / PREDICTIONS_FILE, [p.to_row() for p in predictions])
        write_json(outputs.out_dir / PROVENANCE_FILE, outputs.provenance)
    return predictions


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
sweeps the privacy dial (--mask-bias) on the calibration split and records the chosen bias in the
run (`evaluate.py calibrate --help`)."""


def compare_command(config: CompareConfig) -> int:
    """`evaluate.py compare`: metrics.json files (or the directories holding them) side by side,
    and with --output also as Markdown in that file (checked before anything is read)."""
    from ..core.files import write_text
    from . import report

    paths = [str(Path(p) / "metrics.json") if Path(p).is_dir() else p for p in config.metrics]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"not found: {', '.join(missing)}")
    if config.output:
        if any(_same_file(Path(config.output), Path(p)) for p in paths):
            raise UserError(f"--output {config.output} is one of the inputs")
        check_can_write(config.output, "--output")
    table = report.compare(paths)
    report.print_compare(paths)
    if config.output:
        write_text(config.output, table + "\n")
        print(f"written to {config.output}")
    return 0


def evaluate_command(config: EvalConfig) -> int:
    """`evaluate.py [options]`: an evaluation, then its --fail-under checks (exit 1 where one fails)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from . import metrics

    if config.fail_under:
        metrics.check_thresholds({}, config.fail_under, validate_only=True)  # bad specs fail before generating
    scores, _ = evaluate(config)
    failures = metrics.check_thresholds(scores, config.fail_under)
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


COMMANDS = {
    "evaluate": Command(EvalConfig, evaluate_command, description=DESCRIPTION, epilog=EPILOG, section="evaluate"),
    "compare": Command(CompareConfig, compare_command, help="put metrics.json files side by side",
                       description="Put two or more metrics.json files side by side."),
    "calibrate": Command(CalibrateConfig, calibrate.calibrate_command, help="choose a run's privacy dial (--mask-bias)",
                         description=calibrate.__doc__.split("\n\n")[0], epilog=calibrate.__doc__.split("\n\n", 2)[2]),
}


def main(argv: list[str] | None = None) -> int:
    """evaluate.py's command line: an evaluation unless it names another command (`COMMANDS`)."""
    command, config = parse_command(COMMANDS, argv, prog="evaluate.py", description=DESCRIPTION,
                                    default="evaluate", usage=USAGE)
    return COMMANDS[command].run(config)
