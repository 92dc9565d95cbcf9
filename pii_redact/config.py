"""Settings of the scripts and commands: one typed dataclass each, the only place a default is written.

Each field carries its help text and, where a value can be wrong, a check; a config is checked
when it is made (`__post_init__`), so a bad flag, YAML value or programmatic value fails before any
directory is created or any model is loaded. `cli.parse_config` turns these into flags, with a
YAML file's section (`--config FILE`) as the defaults that flags override; `cli.parse_command`
does the same for the subcommands of `evaluate.py` (`compare`, `calibrate`) and `python -m
pii_redact.models` (no YAML section there, nor for `python -m pii_redact.synth`).
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from .core.errors import UserError

DEFAULT_MODEL = "unsloth/gemma-3-270m-it"
TRAINING_SET = "pii_redaction_train.json"  # the committed set: what the generator writes, prepare_data.py reads
GgufType = Literal["f16", "q8_0"]  # the tensor types a GGUF export writes (`models.gguf.TYPES`)
# Texts generated together, by redact.py, evaluate.py, calibration and a Redactor unless told: on
# a 2-core CPU, llama.cpp redacts the longest test texts 1.3x as fast at 32 as at 16 (3x today's
# transformers path) in 2.7 GiB; transformers is about as fast at 16 (BENCHMARKS.md, "Redaction speed").
GENERATION_BATCH_SIZE = 32
# The privacy dial's calibration (`evaluate.py calibrate`, and finetune.py --calibrate): the biases
# it tries (0 is always added) and the samples it redacts per bias.
CALIBRATION_BIASES = (-2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
CALIBRATION_SAMPLES = 256

Check = Callable[[Any], Optional[str]]  # value -> what is wrong with it, or None


REQUIRED: Any = dataclasses.MISSING  # the default of a value the command line must give


def option(default: Any, help: str, *, check: Check | None = None, positional: bool = False,
           short: str | None = None, bare: Any = None, metavar: str | None = None) -> Any:
    """A dataclass field with its help text, an optional check of its value, whether it is given
    as positional arguments (a list field takes any number) rather than a flag, the flag's short
    form (`-o`), if any, the value of the flag given without one (`--ray` alone), if it may be,
    and the name --help gives its value (by default N, X or the field's last word)."""
    metadata = {"help": help, "check": check, "positional": positional, "short": short, "bare": bare,
                "metavar": metavar}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be positive"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def fraction(value: float) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


@dataclass(frozen=True)
class Between:
    """A check: a finite number from `low` to `high`. Its message is also the one for inf and NaN,
    so a refused value always learns the range it must be in."""

    low: float
    high: float

    def __call__(self, value: float) -> str | None:
        return None if self.low <= value <= self.high else f"must be a finite number from {self.low:g} to {self.high:g}"


@dataclass(frozen=True)
class Each:
    """A check of every number of a list field (`--biases -1,0,1`): the first number that fails is
    the one its message names."""

    check: Check
    what: str  # one value, as the message calls it: "bias"

    def failing(self, values: Any) -> tuple[Any, str] | None:
        """(the first value that fails, what is wrong with it), or None."""
        return next(((value, problem) for value in values if (problem := self.check(value))), None)


# The privacy dial, in log-odds: the calibration sweeps -2 to 4, so +-100 leaves room for any
# meaningful setting, while an infinite or huge bias (1e39 is inf in float32) would turn scores
# into ties of +-inf where the model no longer chooses at all.
MASK_BIAS_RANGE = Between(-100.0, 100.0)


def loss_weight(value: float) -> str | None:
    """A weight the loss can take: a huge one makes the loss overflow to inf, and training stop."""
    return None if 0 < value <= 100 else "must be above 0 and at most 100"


def plain_name(value: str) -> str | None:
    """A run name is one directory name: never a path that could point outside the output directory."""
    if not value or value in (".", "..") or re.search(r"[/\\\x00]", value) or value != value.strip():
        return "must be a plain directory name (no '/', not '.' or '..', no surrounding spaces)"
    return None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_values(cls: type, values: dict[str, Any]) -> None:
    """Check the given field values of a config dataclass; the first problem is a UserError naming
    the flag."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in values.items():
        if value is None:
            continue
        base, _ = unwrap_optional(hints[name])
        check = fields[name].metadata.get("check")
        problem = None
        if isinstance(check, Each):
            if failing := check.failing(value):
                raise UserError(f"{flag(name)}: every {check.what} {failing[1]}, got {failing[0]:g}")
        elif typing.get_origin(base) is Literal and value not in typing.get_args(base):
            problem = f"must be one of {', '.join(map(str, typing.get_args(base)))}"
        elif isinstance(value, float) and not math.isfinite(value):
            problem = check(value) if isinstance(check, Between) else "must be a finite number"
        elif check:
            problem = check(value)
        if problem:
            raise UserError(f"{flag(name)} {problem}, got {value!r}")


def validate(config: Any) -> None:
    check_values(type(config), dataclasses.asdict(config))


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """`Optional[X]` -> (X, True); anything else -> (it, False)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


@dataclass
class DataConfig:
    input: list[str] = option([TRAINING_SET], "prompt/response JSON or JSONL file(s), or raw ai4privacy rows")
    output_dir: str = option("data", "where train/val/test .jsonl and report.json are written")
    model: str = option(DEFAULT_MODEL, "model id or local directory whose tokenizer and chat template measure lengths")
    max_seq_length: int = option(1024, "samples longer than this many tokens (prompt + response) are dropped, never truncated",
                                 check=positive)
    val_fraction: float = option(0.05, "fraction of templates (masked texts) held out for validation", check=fraction)
    test_fraction: float = option(0.05, "fraction of templates (masked texts) held out for testing", check=fraction)
    seed: int = option(3407, "seed of the split assignment")
    holdout_genres: list[str] = option([], "genres (a record's `genre`) kept out of train/val/test and written to "
                                           "unseen.jsonl, to measure text the model never saw")
    holdout_templates: float = option(0.0, "fraction of template families (a record's `template`) held out the same way",
                                      check=fraction)
    calibration_templates: float = option(
        0.02, "fraction of template families kept out of every other split and written to calibration.jsonl: "
              "text the model never trained on, where `evaluate.py calibrate` chooses the privacy dial", check=fraction)
    on_error: Literal["fail", "drop"] = option("fail", "invalid records: stop with an error, or drop and count them in report.json")

    def __post_init__(self) -> None:
        validate(self)
        if not self.input:
            raise UserError("--input: give at least one file")
        if self.val_fraction + self.test_fraction >= 1:
            raise UserError("--val-fraction + --test-fraction must leave something to train on (< 1)")


# What a run that predates a training setting did, for settings whose default changed after they
# came: such a run is read (resumed, described) with this value, not today's default.
BEFORE_IT_EXISTED: dict[str, Any] = {"decision_weight": 1.0}


@dataclass
class TrainConfig:
    model: str = option(DEFAULT_MODEL, "base model id or local directory (offline: a local directory)")
    data_dir: str = option("data", "directory with train.jsonl / val.jsonl (prepared first if missing)")
    output_dir: str = option("outputs", "runs are written to OUTPUT_DIR/RUN_NAME")
    run_name: Optional[str] = option(None, "run directory name (default: <model trained>-<timestamp>)", check=plain_name)
    max_seq_length: int = option(1024, "longest sample in tokens; matches prepare_data's limit", check=positive)
    load_in_4bit: bool = option(False, "QLoRA: 4-bit base weights (GPU only; pointless for a 270M model)")
    lora_r: int = option(128, "LoRA rank (Unsloth's Gemma 3 270M notebook uses 128: the model is tiny)", check=positive)
    lora_alpha: int = option(128, "LoRA alpha; alpha == r keeps the update scale at 1", check=positive)
    lora_dropout: float = option(0.0, "LoRA dropout; 0 lets Unsloth use its fast path", check=fraction)
    epochs: float = option(1.0, "passes over the training split (ignored when --max-steps is given)", check=positive)
    max_steps: Optional[int] = option(None, "stop after this many optimizer steps (default: run --epochs)", check=positive)
    batch_size: int = option(16, "samples per device batch", check=positive)
    grad_accum: int = option(1, "gradient accumulation steps", check=positive)
    lr: float = option(1e-4, "peak learning rate", check=positive)
    lr_scheduler: str = option("cosine", "learning-rate schedule (any transformers scheduler name)")
    warmup_steps: float = option(0.03, "linear learning-rate warmup: a fraction of all steps if < 1, else a number of steps",
                                 check=non_negative)
    weight_decay: float = option(0.01, "AdamW weight decay", check=non_negative)
    optim: str = option("adamw_torch", "optimizer (adamw_8bit needs bitsandbytes and a GPU)")
    padding_free: Optional[bool] = option(
        None, "batches without padding: true/false, or unset to let Unsloth decide (it turns them on "
              "where its GPU kernels support them; stock TRL and CPUs pad)")
    gradient_checkpointing: Optional[bool] = option(
        None, "recompute activations in the backward pass instead of keeping them: true/false, or unset for "
              "on when training on a CPU (batch 16 keeps 10+ GB of them there) and off on a GPU (a 270M model fits)")
    decision_weight: float = option(
        3.0, "loss weight of the response tokens that decide between masking and copying where an entity may "
             "begin (those that open a placeholder there, and those that copy such a word in clear), as faithful "
             "decoding defines them; every other supervised token weighs 1, so 1 is the plain mean loss (3 leaked no "
             "more and masked fewer ordinary words on unseen text: BENCHMARKS.md)",
        check=loss_weight)
    eval_steps: int = option(200, "evaluate validation loss every N steps (0: never)", check=non_negative)
    val_samples: Optional[int] = option(
        None, "cap on validation samples used for the loss (0: all), or unset for 500 on a GPU and 64 on a CPU "
              "(where 500 take ~10 minutes per evaluation)", check=non_negative)
    save_steps: int = option(200, "checkpoint every N steps (what --resume continues from)", check=positive)
    save_total_limit: int = option(2, "checkpoints kept on disk", check=positive)
    logging_steps: int = option(10, "log a line every N steps", check=positive)
    seed: int = option(3407, "seed for LoRA init and data order")
    gguf: Optional[GgufType] = option(None, "also export a GGUF for llama.cpp / Docker Model Runner")
    calibrate: Optional[bool] = option(
        None, "after training, sweep the privacy dial (--mask-bias) on the calibration split and record the chosen "
              "bias in the run (evaluate.py calibrate): true/false, or unset for on where a GPU trained (a minute "
              "there) and off on a CPU (where 9 biases x 32 samples take ~8 minutes)")
    calibration_samples: int = option(CALIBRATION_SAMPLES, "samples of the calibration split the calibration redacts per bias", check=positive)
    resume: bool = option(False, "continue the run in OUTPUT_DIR/RUN_NAME from its last checkpoint")
    overwrite: bool = option(False, "replace an existing run directory (the old one is kept aside until the new run has saved)")

    def __post_init__(self) -> None:
        validate(self)
        if self.resume and self.overwrite:
            raise UserError("--resume and --overwrite contradict each other: pick one")


# The generation settings evaluate.py and redact.py share (`inference.redactor.Settings`), worded
# for what each script redacts: a "source" (evaluate.py), a "text" cut into pieces (redact.py).

def _decoding(what: str) -> Any:
    return option("faithful", f"faithful: the output can only be the {what} with spans replaced by placeholders, "
                              "nothing else changed; free: unconstrained")


def _safety_net() -> Any:
    return option(True, "mask e-mails, IBANs, card and +phone numbers the model left in clear (high-precision rules)")


def _speculation(what: str, unit: str) -> Any:
    return option("auto", f"on: draft from the {what} and verify drafts in one pass (the same output, fewer passes); "
                          f"off: plain greedy decoding; auto: on for a batch of one {unit} with transformers only (where it "
                          f"measured faster), off with llama.cpp")


def _model_dir() -> Any:
    return option(None, "trained model (a finetune.py run directory, its merged/ or adapter/ folder, or a model "
                        "directory); default: newest run in outputs/")


def _mask_bias() -> Any:
    return option(None, "the privacy dial of faithful decoding: log-odds added to masking over copying in clear "
                        "wherever an entity may begin; higher masks more (fewer leaks), lower masks less (more readable); "
                        "unset: the value the run calibrated (run.json), else 0", check=MASK_BIAS_RANGE)


def _placeholder_bounds() -> Any:
    return option("words", "what faithful decoding lets one placeholder cover: words (a few words, no digits in a "
                           "name) or label (each label's bounds from the training set: words, characters, "
                           "punctuation, a digit in every number; BENCHMARKS.md: fewer ordinary words masked, a "
                           "few more leaks)")


def _propagate() -> Any:
    return option(True, "mask every other occurrence of a value the model masked (a surname alone, a number "
                        "written twice), with one numbering per text")


def _restricted_head() -> Any:
    return option(True, "faithful decoding: compute the output layer only for the tokens the constraint allows "
                        "(the same choices for a fraction of the work; llama.cpp: with an f16 or q8_0 GGUF); "
                        "--no-restricted-head computes the whole 262,144-wide layer, for comparison")


def _batch_size(default: int) -> Any:
    return option(default, "texts decoded together, with transformers and llama.cpp alike (1: one at a time, "
                           "for comparison)", check=positive)


def _gguf() -> Any:
    return option(None, "the GGUF file llama.cpp runs (default: the run's gguf/*-q8_0.gguf, else *-f16.gguf)")


def _max_new_tokens(unit: str) -> Any:
    return option(0, f"generation budget per {unit} (0: the most a faithful redaction of it can take)",
                  check=non_negative)


@dataclass
class EvalConfig:
    model_dir: Optional[str] = _model_dir()
    runs_dir: str = option("outputs", "where to look for the newest run")
    data: str = option("data/test.jsonl", "held-out samples (prepare_data.py output, or prompt/response JSON/JSONL)")
    limit: int = option(0, "evaluate only the first N samples (0: all)", check=non_negative)
    batch_size: int = _batch_size(GENERATION_BATCH_SIZE)
    max_new_tokens: int = _max_new_tokens("sample")
    output_dir: Optional[str] = option(None, "where predictions and the report go (default: <model-dir>/eval)")
    predictions: Optional[str] = option(None, "score an existing predictions JSONL; no model is loaded")
    baseline: Optional[Literal["identity", "regex"]] = option(None, "score a baseline instead of a model")
    backend: Literal["auto", "transformers", "vllm", "llama.cpp"] = option(
        "auto", "generation engine (auto: llama.cpp with --gguf; vLLM where it runs and decoding is free; "
                "without a GPU, llama.cpp where llama-cpp-python is installed and the run has a GGUF; else "
                "transformers)")
    gguf: Optional[str] = _gguf()
    decoding: Literal["faithful", "free"] = _decoding("source")
    mask_bias: Optional[float] = _mask_bias()
    placeholder_bounds: Literal["words", "label"] = _placeholder_bounds()
    safety_net: bool = _safety_net()
    propagate: bool = _propagate()
    restricted_head: bool = _restricted_head()
    speculation: Literal["auto", "on", "off"] = _speculation("source", "sample")
    fail_under: list[str] = option([], "METRIC=VALUE: exit non-zero if the metric is below VALUE (e.g. entity.f1=0.9)")
    worst: int = option(10, "worst examples shown in report.md", check=non_negative)
    overwrite: bool = option(False, "replace predictions in OUTPUT_DIR made by another model, data or setting")

    def __post_init__(self) -> None:
        validate(self)
        if self.baseline and self.predictions:
            raise UserError("--baseline and --predictions contradict each other: a baseline makes its own "
                            "predictions; pick one")
        if (self.model_dir or self.mask_bias is not None) and (self.baseline or self.predictions):
            flag = "--model-dir" if self.model_dir else "--mask-bias"
            other = "--baseline" if self.baseline else "--predictions"
            raise UserError(f"{flag} and {other} contradict each other: {other} generates nothing; pick one")
        if self.backend == "vllm" and self.decoding == "faithful" and not (self.baseline or self.predictions):
            raise UserError("--backend vllm decodes freely only: pass --decoding free, or --backend "
                            "transformers for faithful decoding")
        check_mask_bias(self)
        check_gguf(self)


# evaluate.py's subcommands: `compare`, and `calibrate` (the privacy dial, `evaluation.calibrate`).

@dataclass
class CompareConfig:
    metrics: list[str] = option(REQUIRED, "metrics.json files (or the directories holding them)", positional=True)
    output: Optional[str] = option(None, "also write the comparison as Markdown to this file")

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class CalibrateConfig:
    model_dir: Optional[str] = option(None, "a finetune.py run directory (default: the newest run in --runs-dir)")
    runs_dir: str = option("outputs", "where to look for the newest run")
    data: Optional[str] = option(None, "samples to calibrate on, never the test split (default: "
                                       "data/calibration.jsonl, else data/val.jsonl)")
    limit: int = option(CALIBRATION_SAMPLES, "samples redacted per bias", check=positive)
    biases: tuple[float, ...] = option(CALIBRATION_BIASES, "comma-separated mask biases to try; 0 is always added",
                                       check=Each(MASK_BIAS_RANGE, "bias"))
    batch_size: int = option(GENERATION_BATCH_SIZE, "generation batch size", check=positive)

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class RedactConfig:
    inputs: list[str] = option(["-"], "text files, JSONL files (one object per line), CSV or Parquet files (see "
                                      "--text-field), or - for standard input; with --ray also folders and globs",
                               positional=True)
    model_dir: Optional[str] = _model_dir()
    runs_dir: str = option("outputs", "where to look for the newest run")
    output_dir: Optional[str] = option(None, "write each input's redaction there under the same name (default: standard output)")
    entities: Optional[str] = option(None, "also write the entities found, as JSONL (input, record, start, end, label, number, text)")
    text_field: str = option("text", "the field of a JSONL input's objects, or the column of a CSV or Parquet "
                                     "input, that holds the text")
    batch_size: int = _batch_size(GENERATION_BATCH_SIZE)
    backend: Literal["auto", "transformers", "llama.cpp"] = option(
        "auto", "generation engine (auto: llama.cpp with --gguf, or without a GPU where llama-cpp-python is "
                "installed and the run has a GGUF, see python -m pii_redact.models gguf; else transformers)")
    gguf: Optional[str] = _gguf()
    max_new_tokens: int = _max_new_tokens("piece")
    decoding: Literal["faithful", "free"] = _decoding("text")
    mask_bias: Optional[float] = _mask_bias()
    placeholder_bounds: Literal["words", "label"] = _placeholder_bounds()
    safety_net: bool = _safety_net()
    propagate: bool = _propagate()
    restricted_head: bool = _restricted_head()
    speculation: Literal["auto", "on", "off"] = _speculation("text", "piece")
    allow_unfinished: bool = option(
        False, "write a redaction that ran out of its token budget, its rest masked as [UNFINISHED] "
               "(without this flag it is not written and the exit status is 1)")
    overwrite: bool = option(False, "replace files that already exist (in --output-dir, or --entities)")
    ray: Optional[str] = option(
        None, "redact the inputs (files, folders, globs) into --output-dir on the Ray cluster at this address, "
              "resumable (alone or auto: RAY_ADDRESS or a cluster running here, else a new one on this machine; "
              "local: a new one); see README", bare="auto", metavar="ADDRESS")
    ray_workers: int = option(0, "with --ray: model copies working at once (0: one per GPU of the cluster, "
                                 "without GPUs one per 4 CPUs)", check=non_negative)

    def __post_init__(self) -> None:
        validate(self)
        check_mask_bias(self)
        check_gguf(self)
        if not self.inputs:
            self.inputs = ["-"]
        if self.ray is not None:
            check_ray(self)


def check_ray(config: RedactConfig) -> None:
    """What --ray needs: files to read on the cluster and a folder to write each one's redaction in."""
    if config.output_dir is None:
        raise UserError("--ray writes each input's redaction under --output-dir: pass --output-dir")
    if "-" in config.inputs:
        raise UserError("--ray reads files, folders or globs, not standard input: name the inputs")
    if config.entities:
        raise UserError("--entities is not written with --ray: drop it, or run without --ray")
    address = config.ray
    if address not in ("auto", "local") and ":" not in address:  # `--ray corpus/`: the folder taken as the address
        raise UserError(f"--ray {address}: not a Ray address (auto, local, HOST:PORT or ray://HOST:PORT); "
                        "write --ray auto before the inputs, or --ray after them")


def check_mask_bias(config: Any) -> None:
    """The dial turns faithful decoding's choice between copying and masking, and the bounds limit its
    placeholders: free decoding has neither."""
    if config.mask_bias and config.decoding == "free":
        raise UserError("--mask-bias needs faithful decoding (free decoding has no place where it chooses "
                        "between copying and masking); drop one of --mask-bias and --decoding free")
    if config.placeholder_bounds != "words" and config.decoding == "free":
        raise UserError("--placeholder-bounds bounds what faithful decoding lets a placeholder cover: free "
                        "decoding has no such bound; drop one of --placeholder-bounds and --decoding free")


def check_gguf(config: Any) -> None:
    """--gguf names what llama.cpp runs: with another backend it would be silently ignored."""
    if config.gguf and config.backend not in ("auto", "llama.cpp"):
        raise UserError(f"--gguf runs in llama.cpp, --backend {config.backend} would ignore it; drop one of them")


# The commands beside the four scripts: `python -m pii_redact.synth` and `python -m pii_redact.models`.

@dataclass
class SynthConfig:
    output: Optional[str] = option(None, f"JSON file to write (default: {TRAINING_SET} for version 2, "
                                         f"{Path(TRAINING_SET).stem}_v3.json for version 3)", short="-o")
    n: int = option(35_000, "number of records", check=positive)
    seed: int = option(0, "random seed (same seed, same file)")
    languages: Optional[str] = option(None, "comma-separated subset of the languages above (default: all of them)")
    version: Literal[2, 3] = option(2, "version of the set: 2 is the committed file, 3 adds running prose about "
                                       "people, values repeated in other forms, more address layouts, lookalikes")
    stats: bool = option(False, "print the shares of free prose, single sentences and names in prose "
                                "(pii_redact/synth/shapes.py) instead of writing a file")

    def __post_init__(self) -> None:
        validate(self)

    def output_path(self) -> Path:
        """Where the set is written: --output, else the committed file's name (with `_v3` for version 3)."""
        if self.output:
            return Path(self.output)
        return Path(TRAINING_SET if self.version == 2 else f"{Path(TRAINING_SET).stem}_v{self.version}.json")


@dataclass
class FetchConfig:
    dir: Optional[str] = option(None, "where to build it (default: gemma-3-270m in the cache, see above)",
                                positional=True)
    force: bool = option(False, "rebuild even if DIR already holds the model")

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class GgufConfig:
    run: str = option(REQUIRED, "a finetune.py run directory", positional=True)
    type: GgufType = option("f16", "tensor type (default: f16)")

    def __post_init__(self) -> None:
        validate(self)
