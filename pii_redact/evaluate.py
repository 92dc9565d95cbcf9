"""`evaluate.py`: generate redactions for held-out text (or take a baseline's, or a predictions file)
and score them: leaks, entity precision/recall/F1 per label, text fidelity. See metrics.py for the
exact definitions and report.py for what is written."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .cli import UserError, parse_config
from .config import EvalConfig

PREDICTIONS_FILE = "predictions.jsonl"


def load_samples(path: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """Held-out samples as {"prompt", "source", "response"}: prepare_data.py's JSONL (with
    "messages"), or prompt/response records as a JSON list or JSONL."""
    from . import chat, data

    path = Path(path)
    if not path.exists():
        hint = " (run prepare_data.py first)" if path.name.endswith(".jsonl") else ""
        raise UserError(f"evaluation data not found: {path}{hint}")
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of prompt/response records")
        numbered = enumerate(rows, 1)
    else:
        numbered = enumerate(data.read_jsonl(path), 1)
    samples = []
    for n, row in numbered:
        if isinstance(row, dict) and "messages" in row:
            prompt, response = row["messages"][0]["content"], row["messages"][1]["content"]
        elif isinstance(row, dict) and isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str):
            prompt, response = row["prompt"], row["response"]
        else:
            raise UserError(f"{path}: record {n} has neither 'messages' nor string 'prompt'/'response'")
        source = row.get("source") if isinstance(row.get("source"), str) else chat.source_from_prompt(prompt)
        if source is None:
            raise UserError(f"{path}: record {n}: the prompt has no '\\n\\nText:\\n' before the text to redact")
        samples.append({"prompt": prompt, "source": source, "response": response})
        if limit and len(samples) >= limit:
            break
    if not samples:
        raise UserError(f"{path} has no samples")
    return samples


def resolve_model_dir(config: EvalConfig) -> tuple[Path, Path]:
    """(directory with the model weights, run directory the report goes under)."""
    if config.model_dir:
        run = Path(config.model_dir)
        if not run.is_dir():
            raise UserError(f"--model-dir {run} does not exist")
    else:
        runs_dir = Path(config.runs_dir)
        # newest by when the merged model was written (a run dir's own mtime moves when eval/ is added)
        saved = sorted(runs_dir.glob("*/merged/config.json"), key=lambda p: p.stat().st_mtime)
        if not saved:
            raise UserError(f"no trained model in {runs_dir}/: run finetune.py first, or pass --model-dir")
        run = saved[-1].parent.parent
    model_dir = run / "merged" if (run / "merged" / "config.json").exists() else run
    if not (model_dir / "config.json").exists():
        raise UserError(f"{run} holds no model (no config.json in it or in merged/)")
    return model_dir, run


def _done_predictions(path: Path, samples: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Predictions already written by an interrupted run, if they belong to these samples."""
    done: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written when the run was killed
        i = row.get("index")
        if isinstance(i, int) and i < len(samples) and row.get("prompt") == samples[i]["prompt"]:
            done[i] = row
    return done


def predict(config: EvalConfig, samples: list[dict[str, Any]], model_dir: Path, out_dir: Path) -> list[dict[str, Any]]:
    """Generate a prediction per sample, appending each to predictions.jsonl as it is made, and
    skipping those a previous (interrupted) run already wrote."""
    from tqdm.auto import tqdm

    from . import generate

    path = out_dir / PREDICTIONS_FILE
    done = _done_predictions(path, samples)
    todo = [i for i in range(len(samples)) if i not in done]
    if done:
        print(f"resuming: {len(done)} predictions already in {path}, {len(todo)} to go")
    # Rewrite what is kept, so a half-written last line or stale rows from other data disappear.
    with open(path, "w", encoding="utf-8") as f:
        for i in sorted(done):
            f.write(json.dumps(done[i], ensure_ascii=False) + "\n")
    if todo:
        prompts = [samples[i]["prompt"] for i in todo]
        sources = [samples[i]["source"] for i in todo]
        backend = config.backend
        if backend == "auto":
            backend = "vllm" if generate.vllm_usable() else "transformers"
        stream = None
        if backend == "vllm":
            try:
                llm, tokenizer = generate.load_vllm(model_dir)
                stream = generate.generate_vllm(llm, tokenizer, prompts, sources, config.max_new_tokens)
            except Exception as exc:  # vLLM pins its own transformers/torch; a mismatch must not end the run
                if config.backend == "vllm":
                    raise UserError(f"--backend vllm: cannot start vLLM ({type(exc).__name__}: {exc})") from None
                print(f"warning: vLLM failed to start ({type(exc).__name__}: {exc}); using transformers")
                backend = "transformers"
        if stream is None:
            model, tokenizer = generate.load_model(model_dir)
            stream = generate.generate_transformers(model, tokenizer, prompts, sources,
                                                    config.batch_size, config.max_new_tokens)
        print(f"generating {len(todo)} redactions with {backend} from {model_dir}")
        with open(path, "a", encoding="utf-8") as f, tqdm(total=len(todo), unit="sample") as bar:
            for j, prediction, reason in stream:
                i = todo[j]
                row = {"index": i, **samples[i], "prediction": prediction, "finish_reason": reason}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                done[i] = row
                bar.update(1)
    return [done[i] for i in range(len(samples))]


def run_baseline(name: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from . import baselines

    redact = {"identity": baselines.identity, "regex": baselines.regex_redact}[name]
    return [{"index": i, **s, "prediction": redact(s["source"]), "finish_reason": "stop"}
            for i, s in enumerate(samples)]


def evaluate(config: EvalConfig) -> tuple[dict[str, Any], Path]:
    from . import metrics, report

    if config.predictions:
        records = metrics.read_predictions(config.predictions)
        if config.limit:
            records = records[: config.limit]
        out_dir = Path(config.output_dir) if config.output_dir else Path(config.predictions).parent
        title = f"predictions {config.predictions}"
    elif config.baseline:
        samples = load_samples(config.data, config.limit)
        records = run_baseline(config.baseline, samples)
        out_dir = Path(config.output_dir or Path(config.runs_dir) / f"baseline-{config.baseline}")
        title = f"{config.baseline} baseline on {config.data}"
    else:
        samples = load_samples(config.data, config.limit)
        model_dir, run_dir = resolve_model_dir(config)
        out_dir = Path(config.output_dir) if config.output_dir else run_dir / "eval"
        out_dir.mkdir(parents=True, exist_ok=True)
        records = predict(config, samples, model_dir, out_dir)
        title = f"{run_dir.name} on {config.data}"
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.baseline or config.predictions:
        with open(out_dir / PREDICTIONS_FILE, "w", encoding="utf-8") as f:
            for row in records:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    scores, per_sample = metrics.score(records)
    report.write_report(scores, per_sample, records, out_dir, title=title, worst=config.worst)
    report.print_summary(scores)
    print(f"report: {out_dir / 'report.md'}  metrics: {out_dir / 'metrics.json'}")
    return scores, out_dir


DESCRIPTION = "Generate redactions for held-out text and score them (leaks, entity P/R/F1, fidelity)."
EPILOG = """examples:
  python evaluate.py                              # newest run in outputs/, on data/test.jsonl
  python evaluate.py --model-dir outputs/my-run --limit 200
  python evaluate.py --baseline regex             # score the regex baseline on the same data
  python evaluate.py --predictions preds.jsonl    # score an existing file, no model needed
  python evaluate.py --fail-under entity.f1=0.9 --fail-under leak_rate=0.05
  python evaluate.py compare outputs/baseline-regex/metrics.json outputs/my-run/eval/metrics.json

--fail-under takes dotted metric paths from metrics.json; for metrics where lower is better
(leak_rate, samples_with_leak, unfinished_rate) the check is that the metric is at most VALUE."""


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
        Path(args.output).write_text(table + "\n")
        print(f"written to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["compare"]:
        return compare_main(args[1:])
    config = parse_config(EvalConfig, "evaluate", argv, prog="evaluate.py",
                          description=DESCRIPTION, epilog=EPILOG)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from . import metrics

    if config.fail_under:
        metrics.check_thresholds({}, config.fail_under, validate_only=True)  # bad specs fail before generating
    scores, _ = evaluate(config)
    failures = metrics.check_thresholds(scores, config.fail_under)
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0
