"""Command lines: a config dataclass -> flags, with a YAML file's section as their defaults.

    dataclass defaults  <  the section of `--config FILE` (e.g. `train:`)  <  flags

`--config` is read before the parser is built, so `--help --config my.yaml` shows my.yaml's values
as the defaults, as TRL's and torchtune's scripts do. Every command line becomes settings here:
a script's flags through `parse_config`, a script of subcommands (`evaluate.py compare`, `python
-m pii_redact.models fetch`) through its table of `Command`s and `parse_command`, each field one
argument (`add_fields`). Only the standard library and PyYAML are imported here, so `--help` is
instant; `run` gives every script the same exit codes, and `run_in_fresh_interpreter` gives them
to one that runs in a process of its own.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import signal
import sys
import threading
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, TypeVar

from .config import check_values, flag, unwrap_optional
from .core.errors import UserError, describe

T = TypeVar("T")


# The sections of a --config file: one per script (finetune.py also reads `data:` when it
# prepares the data itself).
SECTIONS = ("data", "train", "evaluate", "redact")
MAX_CONFIG_BYTES = 1 << 20  # a settings file is a few lines; anything near this is not one


def _yaml_loader():
    """PyYAML's safe loader without aliases: a settings file needs none, and an alias bomb
    (`a: &a [*b, *b, ...]`) would otherwise expand into gigabytes."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not supported", event.start_mark)
            return super().compose_node(parent, index)

    return NoAliases


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping of sections; any problem is a UserError naming the file."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise UserError(f"--config {path} is a directory, not a file")
    try:
        # read, not stat: a device (/dev/zero) or a pipe has no size to check, and never ends
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise UserError(f"--config {path}: more than {MAX_CONFIG_BYTES:,} bytes, too large for a settings file")
        doc = yaml.load(raw.decode("utf-8"), Loader=_yaml_loader())  # noqa: S506 (a safe loader)
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"--config {path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"--config {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"--config {path}{at}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(v, dict) or v is None for v in doc.values()):
        raise UserError(f"--config {path}: expected sections (data:, train:, evaluate:, ...) of key: value pairs")
    unknown = [str(k) for k in doc if k not in SECTIONS]
    if unknown:  # a typo (`trian:`) would otherwise be ignored and another run start
        raise UserError(f"--config {path}: unknown section '{unknown[0]}:' (known: {', '.join(SECTIONS)})")
    return doc


def _coerce(name: str, value: Any, tp: Any, where: str) -> Any:
    """A YAML value checked against the field's type (ints are fine for floats); else a UserError."""
    base, optional = unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: '{name}' must not be empty")
    if typing.get_origin(base) is Literal:
        return value  # the config's own check names the choices
    if typing.get_origin(base) is list:
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
            raise UserError(f"{where}: '{name}' must be a list of strings, got {value!r}")
        return [str(v) for v in values]
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, base) or (isinstance(value, bool) and base is not bool):
        raise UserError(f"{where}: '{name}' must be {'true or false' if base is bool else base.__name__}, got {value!r}")
    return value


def yaml_defaults(cls: type, section: str, config_path: str | Path | None) -> dict[str, Any]:
    """The values that the `section` of the YAML file sets for the fields of `cls`."""
    if config_path is None:
        return {}
    values = load_yaml(config_path).get(section) or {}
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise UserError(f"--config {config_path}: unknown key '{key}' in section '{section}:' "
                            f"(known: {', '.join(known)})")
        out[name] = _coerce(name, value, hints[name], f"--config {config_path} [{section}]")
    try:
        check_values(cls, out)
    except UserError as exc:  # name the file: the user never typed this flag
        raise UserError(f"--config {config_path} [{section}]: {exc}") from None
    return out


def load_config(cls: type[T], section: str, config_path: str | Path | None = None, **overrides: Any) -> T:
    """dataclass defaults < YAML section < `overrides`: the config a script would resolve."""
    return cls(**{**yaml_defaults(cls, section, config_path), **overrides})


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, taking every negative number as a value: `--mask-bias -1e3`, `-inf`,
    `--biases -2,-1,0`. argparse's own pattern knows only `-1` and `-1.5` and reads anything else
    that starts with `-` as an unknown flag ("expected one argument"). No flag of the suite starts
    with a digit or is named like a number, so nothing is lost."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\.?\d|(inf|infinity|nan)$)", re.IGNORECASE)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each flag's default shown once (none for unset values); the epilog's examples keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "default:" in help_text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return help_text
        default = action.default
        if isinstance(default, list):
            default = " ".join(map(str, default)) or "none"
        elif isinstance(default, tuple):  # given comma-separated (`_comma_separated`), shown alike
            default = ",".join(map(str, default))
        return f"{help_text} (default: {default})".replace("%", "%%")


class _Repeatable(argparse.Action):
    """`--input a --input b` -> [a, b]: the first use replaces the default list, later ones append."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest)
        setattr(namespace, self.dest, ([] if current is self.default else current) + [values])


def _converter(tp: Any) -> Callable[[str], Any]:
    base, optional = unwrap_optional(tp)
    # a Literal's choices are compared as what they are: `--version 3` is the int 3
    parse = type(typing.get_args(base)[0]) if typing.get_origin(base) is Literal else base

    def convert(text: str) -> Any:
        return None if optional and text.lower() in ("none", "null") else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")  # argparse names it in errors
    return convert


def _comma_separated(tp: Any) -> Callable[[str], tuple]:
    """The argparse type of a `tuple[float, ...]` field: `-2,-1e1,0` -> (-2.0, -10.0, 0.0)."""
    element = typing.get_args(tp)[0]

    def convert(text: str) -> tuple:
        try:
            return tuple(element(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None

    return convert


def _add_positional(parser: argparse.ArgumentParser, f: dataclasses.Field, base: Any, default: Any) -> None:
    """A positional field: a list takes any number of values (at least one where the field has
    no default), a single value one (optional where the field has a default)."""
    help_text = f.metadata.get("help", "")
    if typing.get_origin(base) is list and default is dataclasses.MISSING:
        parser.add_argument(f.name, nargs="+", metavar=f.name.upper().rstrip("S"), help=help_text)
    elif typing.get_origin(base) is list:
        parser.add_argument(f.name, nargs="*", metavar=f.name.upper().rstrip("S"), default=default,
                            help=f"{help_text} (default: {' '.join(map(str, default)) or 'none'})")
    elif default is dataclasses.MISSING:
        parser.add_argument(f.name, metavar=f.name.upper(), type=base, help=help_text)
    else:  # taken as written: a directory may be called "none"
        parser.add_argument(f.name, nargs="?", metavar=f.name.upper(), type=base, default=default, help=help_text)


def add_fields(parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any] | None = None) -> None:
    """One argument per field of the settings dataclass `cls`, with its help text and default
    (`defaults` overrides the dataclass's own)."""
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        base, optional = unwrap_optional(tp)
        default = defaults.get(f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        if f.metadata.get("positional"):
            _add_positional(parser, f, base, default)
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", ""), "default": default}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            kwargs.update(action=_Repeatable, metavar=f.name.upper().split("_")[-1])
            kwargs["help"] += " (repeatable)"
        elif typing.get_origin(base) is tuple:
            kwargs.update(type=_comma_separated(base), metavar=f.name.upper())
        else:
            kwargs["type"] = _converter(tp)
            if f.metadata.get("bare") is not None:  # `--ray` alone, or `--ray ADDRESS`
                kwargs.update(nargs="?", const=f.metadata["bare"])
            if typing.get_origin(base) is Literal:
                kwargs["choices"] = list(typing.get_args(base)) + ([None] if optional else [])
            else:
                kwargs["metavar"] = f.metadata.get("metavar") or {int: "N", float: "X"}.get(
                    base, f.name.split("_")[-1].upper())
        short = f.metadata.get("short")
        parser.add_argument(flag(f.name), *([short] if short else []), **kwargs)


def settings(cls: type[T], args: argparse.Namespace) -> T:
    """The settings dataclass `cls` from parsed arguments: made, hence checked, here."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def build_parser(cls: type, prog: str, description: str, epilog: str | None = None,
                 defaults: dict[str, Any] | None = None, usage: str | None = None,
                 config_file: bool = True) -> argparse.ArgumentParser:
    """The parser of a script whose settings are `cls`; with `config_file`, a `--config FILE`
    flag whose section sets the defaults (read before, see `parse_config`)."""
    parser = ArgumentParser(prog=prog, description=description, epilog=epilog, usage=usage,
                            formatter_class=_HelpFormatter)
    if config_file:
        parser.add_argument("--config", metavar="FILE",
                            help="YAML file whose section for this script sets the defaults below "
                                 "(see configs/); flags override it")
    add_fields(parser, cls, defaults)
    return parser


def parse_config(cls: type[T], section: str | None, argv: list[str] | None, prog: str, description: str,
                 epilog: str | None = None, usage: str | None = None) -> tuple[T, str | None]:
    """(config, the --config path or None) from the command line; see the module docstring. A
    command without a `section` has no --config flag: only its flags set what they name."""
    argv = sys.argv[1:] if argv is None else argv
    if section is None:
        parser = build_parser(cls, prog, description, epilog, usage=usage, config_file=False)
        return settings(cls, parser.parse_args(argv)), None
    pre = ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config_path = pre.parse_known_args(argv)[0].config
    parser = build_parser(cls, prog, description, epilog, yaml_defaults(cls, section, config_path), usage)
    return settings(cls, parser.parse_args(argv)), config_path


@dataclasses.dataclass(frozen=True)
class Command:
    """A command of a script (`evaluate.py compare`, `python -m pii_redact.models fetch`): its
    settings dataclass, the function that runs them (its exit status), its line in the script's
    list of commands, its own --help text and, for a command whose settings a --config file may
    set, that file's section."""

    settings: type
    run: Callable[[Any], int | None]
    help: str = ""
    description: str = ""
    epilog: str | None = None
    section: str | None = None


def parse_command(commands: dict[str, Command], argv: list[str] | None, prog: str, description: str,
                  default: str | None = None, usage: str | None = None) -> tuple[str, Any]:
    """(the command named first on the command line, its settings from the rest). A script with
    a `default` command runs it when the command line names no other (`evaluate.py --limit 5`),
    with that command's description and epilog, the script's `usage`, and --config where the
    command has a section."""
    argv = sys.argv[1:] if argv is None else argv
    named = {name: command for name, command in commands.items() if name != default}
    if default is not None and not (argv and argv[0] in named):
        command = commands[default]
        config, _ = parse_config(command.settings, command.section, argv, prog, command.description or description,
                                 command.epilog, usage)
        return default, config
    parser = ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in named.items():
        add_fields(subparsers.add_parser(name, help=command.help, description=command.description,
                                         epilog=command.epilog, formatter_class=_HelpFormatter), command.settings)
    if argv and argv[0] in named:  # by the command's own parser: its errors show its usage, not the script's
        name, args = argv[0], subparsers.choices[argv[0]].parse_args(argv[1:])
    else:  # --help, or no command or an unknown one: the script's parser lists them
        args = parser.parse_args(argv)
        name = args.command
    return name, settings(commands[name].settings, args)


def positive_int(text: str) -> int:
    """An argparse type for the benchmark scripts' counts: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_ints(text: str) -> list[int]:
    """`1,16,32` -> [1, 16, 32], each at least 1."""
    try:
        return [positive_int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of whole numbers, got {text!r}") from None


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def quiet_startup_warnings() -> None:
    """Silence start-up warnings nobody can act on: torch's deprecation notes about enums that
    Unsloth and torchao register, and bitsandbytes asking for an optional kernels package (not
    used: no 4-bit on CPU). Loggers only, so real warnings from our own code still show."""
    import logging

    for name in ("torch.utils._pytree", "bitsandbytes.backends.cpu.ops"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[list[int]]:
    """Inside the block SIGTERM (what `docker stop`, `timeout` and systemd send) takes Ctrl-C's
    path: it goes to whatever handles SIGINT at that moment (finetune's finish-the-step-and-save,
    else KeyboardInterrupt), so every cleanup written for Ctrl-C also runs on SIGTERM. Yields the
    list the SIGTERMs received are appended to; the previous handler is restored after the block."""
    received: list[int] = []

    def take_ctrl_c_path(signum, frame):
        received.append(signum)
        on_ctrl_c = signal.getsignal(signal.SIGINT)
        if not callable(on_ctrl_c):  # SIGINT ignored (a background job) or default: stop all the same
            on_ctrl_c = signal.default_int_handler
        on_ctrl_c(signum, frame)

    if threading.current_thread() is not threading.main_thread():  # only the main thread has handlers
        yield received
        return
    previous = signal.signal(signal.SIGTERM, take_ctrl_c_path)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(main: Callable[[T], int | None], argv: T | None = None) -> int:
    """Run a script's main (or a command's function, `argv` its settings): user errors become one
    line on stderr and exit 2; Ctrl-C exits 130, SIGTERM (handled as Ctrl-C) 143, the statuses a
    shell reports for a job those signals end."""
    quiet_startup_warnings()
    with sigterm_as_ctrl_c() as terminated:
        try:
            return int(main(argv) or 0)
        except KeyboardInterrupt:
            print("terminated (SIGTERM)" if terminated else "interrupted", file=sys.stderr)
            return 128 + signal.SIGTERM if terminated else 130
        except Exception as exc:  # noqa: BLE001  (only what `describe` recognises is swallowed)
            message = describe(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            return 2


def run_in_fresh_interpreter(main: Callable[[T], int | None], argv: T) -> int:
    """`run(main, argv)` in a new Python process, started from scratch (multiprocessing's spawn:
    nothing this one imported or patched is there); its exit status. Should this one be stopped
    meanwhile, the other is stopped too."""
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=_exit_with_run, args=(main, argv))
    process.start()
    try:
        process.join()
    except BaseException:
        process.kill()
        process.join()
        raise
    return process.exitcode


def _exit_with_run(main: Callable[[T], int | None], argv: T) -> None:
    raise SystemExit(run(main, argv))
