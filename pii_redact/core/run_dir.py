"""A finetune.py run directory: the one place its layout is spelled out and its run.json is read.

    OUTPUT_DIR/RUN_NAME/
        run.json          config, data hashes, versions, start time; the summary once finished and
                          the privacy dial's choice once calibrated
        config.yaml       the resolved training config
        train_log.jsonl   one record per logging step; loss.png, its curve
        README.md         the model card
        adapter/          the LoRA adapter, with tokenizer and chat template
        merged/           base + adapter merged in 16 bit: the weights everything else runs
        gguf/             RUN_NAME-<type>.gguf exports of merged/ for llama.cpp
        checkpoints/      checkpoint-<step>/, what --resume continues from
        privacy.json      the calibration's curve; privacy.png, its plot
        eval/             evaluate.py's output unless --output-dir says otherwise

Training writes through `RunDir`; inference, evaluation and the GGUF export read through it. The
decisions made here, once each: which run a model directory belongs to (`RunDir.around`: a run's
merged/ or adapter/ counts as the run), which directory a merged/ folder's exports sit in
(`RunDir.holding`), what an evaluation folder is named after (`RunDir.named_after`), where a run's
weights are (`RunDir.weights`), its last checkpoint (`RunDir.last_checkpoint`), the mask bias it
redacts with (`RunDir.mask_bias`), the settings it trained with (`RunDir.trained_config`) and the
newest run in a folder (`RunDir.newest`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import BEFORE_IT_EXISTED, TrainConfig
from .errors import UserError
from .files import read_json, write_json

RUN_FILE = "run.json"
ADAPTER, MERGED, EVAL = "adapter", "merged", "eval"
# What the trainer names a checkpoint folder (transformers' `checkpoint-<global step>`).
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


@dataclass(frozen=True)
class RunDir:
    """A run directory (or a model directory given where a run may be: its files are then
    missing, and each reader says what that means)."""

    path: Path

    # --- the layout ---------------------------------------------------------------------------

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def train_log(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def model_card(self) -> Path:
        return self.path / "README.md"

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER

    @property
    def merged(self) -> Path:
        return self.path / MERGED

    @property
    def gguf_dir(self) -> Path:
        return self.path / "gguf"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def privacy_file(self) -> Path:
        return self.path / "privacy.json"

    @property
    def privacy_plot(self) -> Path:
        return self.path / "privacy.png"

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL

    def gguf(self, kind: str) -> Path:
        """Where the export of merged/ as `kind` (f16, q8_0) goes."""
        return self.gguf_dir / f"{self.path.name}-{kind}.gguf"

    def ggufs(self, kind: str) -> list[Path]:
        """The exports of type `kind` in gguf/, by name: a run copied under another name keeps its files'."""
        return sorted(self.gguf_dir.glob(f"*-{kind}.gguf"))

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{step}"

    def last_checkpoint(self) -> Path | None:
        """The checkpoint of the highest step in checkpoints/, or None."""
        if not self.checkpoints.is_dir():
            return None
        steps = [int(match[1]) for path in self.checkpoints.iterdir()
                 if (match := CHECKPOINT.match(path.name)) and path.is_dir()]
        return self.checkpoint(max(steps)) if steps else None

    # --- which directory is the run, and where its model is ---------------------------------

    @classmethod
    def around(cls, model_dir: Path) -> RunDir:
        """The run a --model-dir names: a run's own model folders (merged/, adapter/) count as the
        run, so its run.json still decides the mask bias and the sequence length."""
        if model_dir.name in (MERGED, ADAPTER) and (model_dir.parent / RUN_FILE).is_file():
            return cls(model_dir.parent)
        return cls(model_dir)

    @classmethod
    def holding(cls, weights: Path) -> RunDir:
        """The directory whose exports (gguf/) go with the weights in `weights`: the one above a
        merged/ folder, run.json or not (a GGUF is exported from any directory with merged/)."""
        return cls(weights.parent if weights.name == MERGED else weights)

    @staticmethod
    def named_after(folder: Path) -> Path:
        """What the evaluation in `folder` is named after: the run, for a run's eval/; else `folder`."""
        return folder.parent if folder.name == EVAL else folder

    def is_run(self) -> bool:
        return self.run_file.is_file()

    def has_model(self) -> bool:
        return (self.merged / "config.json").is_file()

    @property
    def weights(self) -> Path:
        """The model this directory runs: merged/ where the run saved one, else the directory."""
        return self.merged if self.has_model() else self.path

    @classmethod
    def newest(cls, output_dir: Path, *, with_model: bool = False) -> RunDir | None:
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
            if not with_model or cls(run_file.parent).has_model():
                runs.append((str(started), run_file.parent.name, run_file.parent))
        return cls(max(runs)[2]) if runs else None

    # --- run.json -------------------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        info = read_json(self.run_file, what=RUN_FILE)
        if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
            raise UserError(f"{self.run_file}: not a {RUN_FILE} written by finetune.py")
        return info

    def write(self, info: dict[str, Any]) -> None:
        write_json(self.run_file, info)

    def trained_config(self) -> TrainConfig:
        """The settings the run was trained with, or finetune.py's defaults for a model directory
        that is not a run, or a run.json this version cannot read."""
        try:
            saved = self.read()["config"]
            names = {f.name for f in fields(TrainConfig)}
            return TrainConfig(**{k: v for k, v in {**BEFORE_IT_EXISTED, **saved}.items() if k in names})
        except (UserError, TypeError):
            return TrainConfig()

    def calibrated_mask_bias(self) -> float | None:
        """The mask bias the run's calibration chose (run.json `privacy.mask_bias`), or None."""
        try:
            value = self.read().get("privacy", {}).get("mask_bias")
        except (UserError, AttributeError):
            return None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def mask_bias(self, given: float | None) -> float:
        """--mask-bias as given, else the run's calibrated value, else 0 (today's decoding)."""
        if given is not None:
            return given
        calibrated = self.calibrated_mask_bias()
        return calibrated if calibrated is not None else 0.0
