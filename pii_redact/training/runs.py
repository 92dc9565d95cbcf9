"""Run directories as training makes them: where a fine-tune writes, resuming only the same run,
and never losing one (the layout and run.json are `core.run_dir`'s).

A run is `OUTPUT_DIR/RUN_NAME/` with a `run.json` (config, data hashes, versions, start time and,
once finished, the summary). The rules that keep runs safe:
  * an existing run is never replaced without `--overwrite`, and never resumed with other settings;
  * with `--overwrite`, nothing is touched until every check has passed and the new run is about
    to train; the old run is then moved aside, and deleted only once the new one has saved a
    checkpoint or its model. A replacement that fails before that puts the old run back.
"""
from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from ..config import BEFORE_IT_EXISTED, TrainConfig
from ..core.errors import UserError
from ..core.files import check_can_write
from ..core.run_dir import RUN_FILE, RunDir

# Settings that may differ when resuming: they change how long or how loudly a run goes, not what a
# step computes. Anything else (lr, rank, data, model...) would silently make a different run.
RESUMABLE_CHANGES = {"resume", "overwrite", "max_steps", "epochs", "gguf", "logging_steps",
                     "eval_steps", "val_samples", "save_steps", "save_total_limit", "run_name",
                     "calibrate", "calibration_samples"}


def plan_run_dir(config: TrainConfig, model_path: str | None = None) -> Path:
    """Where this run goes; refuses (before anything is loaded or written) when that would
    clobber a run without --overwrite, or resume something that is not a run. A run without
    --run-name is named after `model_path`, the model actually trained (the PyPI base where it
    stands in for the default), else after --model."""
    output_dir = Path(config.output_dir)
    check_can_write(output_dir, "--output-dir", directory=True)
    if config.resume and config.run_name is None:
        run = RunDir.newest(output_dir)
        if run is None:
            raise UserError(f"--resume: no run found in {output_dir}/; pass --run-name")
        return run.path
    name = config.run_name or f"{Path((model_path or config.model).rstrip('/')).name}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = output_dir / name
    if config.resume:
        if not RunDir(run_dir).is_run():
            raise UserError(f"--resume: {run_dir} is not a run directory (no {RUN_FILE})")
    elif run_dir.exists():
        if not run_dir.is_dir():
            raise UserError(f"{run_dir} exists and is not a directory; pick another --run-name")
        if any(run_dir.iterdir()) and not config.overwrite:
            raise UserError(f"{run_dir} already exists: pass --resume to continue it, "
                            "--overwrite to replace it, or another --run-name")
    return run_dir


def check_resume(run_dir: Path, config: TrainConfig, data_hashes: dict[str, str], model_path: str,
                 fingerprint: str | None) -> str:
    """The checkpoint to resume from; refuses when the run would not be the same run."""
    run = RunDir(run_dir)
    saved = run.read()
    # A setting the run predates has what the run did then: its default, or BEFORE_IT_EXISTED's value.
    old, new = {**vars(TrainConfig()), **BEFORE_IT_EXISTED, **saved["config"]}, dict(vars(config))
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
    last = run.last_checkpoint()
    if last is None:
        raise UserError(f"--resume: {run_dir} has no checkpoint yet; start it again with --overwrite")
    return str(last)


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
