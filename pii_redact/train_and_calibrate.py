"""`finetune.py`: train a run (`training.finetune`), then, where --calibrate says so, choose its
privacy dial (`evaluation.calibrate`). The command spans two stages, so it sits on top with
config.py and cli.py: a stage imports only the stages before it, and training comes before
evaluation."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .cli import parse_config, run_in_fresh_interpreter
from .config import CalibrateConfig, TrainConfig
from .data.prepare import calibration_split
from .evaluation import calibrate
from .training.device import calibrates
from .training.finetune import finetune

DESCRIPTION = "LoRA fine-tune Gemma 3 (270M by default) with Unsloth to redact PII."
EPILOG = """examples:
  python finetune.py                                  # prepare data if needed, train, save
  python finetune.py --model /models/gemma-3-270m     # offline: a local model directory
  python finetune.py --max-steps 200 --lr 2e-4 --run-name quick
  python finetune.py --resume --run-name quick --max-steps 400
  python finetune.py --config configs/cpu-smoke.yaml  # settings from a YAML file (flags still win)

A run writes outputs/<run-name>/: adapter/, merged/, config.yaml, run.json, train_log.jsonl,
loss.png, README.md (model card), checkpoints/ for --resume and, where it calibrates the privacy
dial (--calibrate), privacy.json and privacy.png."""


def calibrate_run(run_dir: Path, config: TrainConfig) -> int:
    """The privacy dial's calibration on the calibration split (`evaluate.py calibrate`), in a
    fresh interpreter: this one imported Unsloth, which patches transformers, and evaluate.py and
    redact.py redact without it. Its exit status."""
    data = calibration_split(config.data_dir)
    settings = CalibrateConfig(model_dir=str(run_dir.resolve()), data=str(data.resolve()),
                               limit=config.calibration_samples, batch_size=config.batch_size)
    print(f"calibrating the privacy dial on up to {config.calibration_samples} samples of {data.name} "
          "(--no-calibrate skips it; `python evaluate.py calibrate` runs it later)", flush=True)
    return run_in_fresh_interpreter(calibrate.calibrate_command, settings)


def main(argv: list[str] | None = None) -> int:
    config, config_path = parse_config(TrainConfig, "train", argv, prog="finetune.py",
                                       description=DESCRIPTION, epilog=EPILOG)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    summary = finetune(config, config_path=config_path)
    if calibrates(config):
        run_dir = Path(summary["run_dir"])
        if calibrate_run(run_dir, config) != 0:
            print(f"error: the calibration failed; the run is saved in {run_dir}: retry with "
                  f"python evaluate.py calibrate --model-dir {run_dir}", file=sys.stderr)
            return 1
    return 0
