"""Typed dataclass configs <- YAML defaults <- command-line flags, and clean exits.

Each script's settings are one dataclass whose fields carry their help text. `parse_config`
builds an argparse parser from the fields, fills defaults from a section of the YAML config
(`configs/default.yaml`, or `--config FILE`), then applies flags: dataclass < YAML < flags.
Only the standard library and PyYAML are imported here, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"
T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix (bad input, bad flag, missing file): printed as one line, no traceback."""


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text (`short` adds a one-letter flag)."""
    metadata = {"help": help, **({"short": kwargs.pop("short")} if "short" in kwargs else {})}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _converter(tp: Any) -> Callable[[str], Any]:
    base, optional = _unwrap_optional(tp)
    parse = str if typing.get_origin(base) is Literal else base

    def convert(text: str) -> Any:
        return None if optional and text.lower() in ("none", "null") else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")  # argparse names it in errors
    return convert


def _check_type(name: str, value: Any, tp: Any, where: str) -> Any:
    """Validate a YAML value against the field type, with a one-line error naming the key."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: '{name}' must not be empty")
    origin = typing.get_origin(base)
    if origin is Literal:
        if value not in typing.get_args(base):
            raise UserError(f"{where}: '{name}' must be one of {', '.join(map(str, typing.get_args(base)))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            value = [value]
        return [str(v) for v in value]
    if base is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: '{name}' must be true or false, got {value!r}")
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, base) or isinstance(value, bool) and base is not bool:
        raise UserError(f"{where}: '{name}' must be {base.__name__}, got {value!r}")
    return value


def load_yaml_section(path: Path, section: str) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"{path}{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get(section, {}), dict):
        raise UserError(f"{path}: expected a mapping with a '{section}:' section")
    return doc.get(section) or {}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each flag; the description and the epilog's examples keep their lines."""


def build_parser(cls: type, prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML file whose section for this script overrides the defaults below "
                             "(default: the project's configs/default.yaml)")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        base, optional = _unwrap_optional(tp)
        flags = [f"--{f.name.replace('_', '-')}"] + ([f"-{f.metadata['short']}"] if "short" in f.metadata else [])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", ""), "default": default}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            # SUPPRESS, not None: the help already names the real default, and "(default: None)" would contradict it
            kwargs.update(action="append", metavar=f.name.upper().split("_")[-1], default=argparse.SUPPRESS)
            kwargs["help"] += f" (repeatable; default: {' '.join(map(str, default)) or 'none'})"
        else:
            kwargs["type"] = _converter(tp)
            if typing.get_origin(base) is Literal:
                # the converter turns "none" into None before argparse checks the choices
                kwargs["choices"] = list(typing.get_args(base)) + ([None] if optional else [])
            else:
                kwargs["metavar"] = {int: "N", float: "X"}.get(base, f.name.split("_")[-1].upper())
        parser.add_argument(*flags, **kwargs)
    return parser


def parse_config(cls: type[T], section: str, argv: list[str] | None, prog: str, description: str,
                 epilog: str | None = None) -> T:
    """dataclass defaults < YAML section < flags given on the command line."""
    parser = build_parser(cls, prog, description, epilog)
    args = parser.parse_args(argv)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    config_path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if config_path is not None:
        for key, value in load_yaml_section(config_path, section).items():
            name = str(key).replace("-", "_")
            if name not in fields:
                raise UserError(f"{config_path}: unknown key '{key}' in section '{section}' "
                                f"(known: {', '.join(fields)})")
            values[name] = _check_type(name, value, hints[name], f"{config_path} [{section}]")
    explicit = _explicit_dests(parser, argv)
    for name in fields:
        if name in explicit:
            values[name] = getattr(args, name)
    return cls(**values)


def _explicit_dests(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """Which fields were given on the command line (so YAML values are not clobbered by defaults)."""
    sentinel = object()
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "config"):
            kwargs = {"dest": action.dest, "default": sentinel}
            if isinstance(action, argparse.BooleanOptionalAction):
                kwargs["action"] = argparse.BooleanOptionalAction
            else:  # a plain store, also for append actions: appending to the sentinel would crash
                kwargs["nargs"] = action.nargs
            probe.add_argument(*action.option_strings, **kwargs)
    known, _ = probe.parse_known_args(sys.argv[1:] if argv is None else argv)
    return {k for k, v in vars(known).items() if v is not sentinel}


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a script's main: user errors and Ctrl-C become one line on stderr and an exit code."""
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
