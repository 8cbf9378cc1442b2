"""Precedence, in one place: a flag wins over the environment, the environment over the config
file, the file over the option's default.

`reconciler.cli.main` calls `parse_args`. The file (`--config`, else `$HOTSWAP_CONFIG`, else
`/etc/hotswap/config.yaml`; a missing default file is no config, a missing named one an error)
and the `HOTSWAP_<KEY>` variables are read first and become the defaults of the options their
keys name; argparse then lets a flag override them as it overrides any default. A value from
the file or the environment goes through the option's own `type` (`parse_size`, `parse_listen`,
`Path`), so it means exactly what the flag would. Relative paths in the file are relative to
the file's directory (a unit's working directory is not where its config lives).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.cli.config.file import ConfigError, FileValue, read_config_file, where_in_file
from reconciler.cli.config.keys import Key, config_keys, is_switch, options_by_dest, parsers
from reconciler.source.schema import value_errors

DEFAULT_PATH = Path("/etc/hotswap/config.yaml")
CONFIG_ENV = "HOTSWAP_CONFIG"  # empty: read no config file
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Setting:
    key: Key
    value: Any  # as the command uses it (through the option's type)
    source: str  # "flag" | "env" | "file" | "default"
    where: str = ""  # "--state-dir", "HOTSWAP_STATE_DIR", "config.yaml:3 state_dir"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key.shown, "value": plain(self.value), "source": self.source,
                "where": self.where}  # fmt: skip


@dataclass(frozen=True)
class Resolved:
    """What `parse_args` found, kept on the parsed args for `hotswap config show`."""

    path: Path | None  # the config file that was read; None when there is none
    layered: dict[str, Setting]  # from the environment or the file, by flat key name
    given: frozenset[str] = frozenset()  # dests set by a flag on this command line
    defaults: dict[str, Any] = field(default_factory=dict)  # the options' own defaults


def plain(value: Any) -> Any:
    """A value as JSON and `config show` print it (a listen address as HOST:PORT)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return ":".join(str(v) for v in value)
    if isinstance(value, list):  # repeated KEY=VALUE options (device labels)
        return [f"{v[0]}={v[1]}" if isinstance(v, tuple) else plain(v) for v in value]
    return value


def config_path(argv: list[str], environ: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The config file to read and whether it was named (then it must exist)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", dest="config_file")
    named = pre.parse_known_args(argv)[0].config_file
    if named:
        return Path(named), True
    if CONFIG_ENV in environ:
        return (Path(environ[CONFIG_ENV]), True) if environ[CONFIG_ENV] else (None, False)
    return DEFAULT_PATH, False


def _convert(
    key: Key, raw: Any, actions: list[argparse.Action], where: str, base: Path | None
) -> Any:
    """`raw` (from the file or the environment) as the option of `key` would parse it."""
    if not actions:  # a key no option of this release sets (the fleet sections)
        return raw
    action = actions[0]
    if isinstance(action, argparse._AppendAction):  # device.labels: a mapping, or k=v,k=v
        if isinstance(raw, dict):
            texts = [f"{k}={_scalar(v)}" for k, v in raw.items()]
        else:
            texts = [p.strip() for p in str(raw).split(",") if p.strip()]
        one = argparse.Action([], action.dest, type=action.type if callable(action.type) else None)
        return [_convert(key, text, [one], where, base) for text in texts]
    if is_switch(action):
        text = str(raw).strip().lower()
        if isinstance(raw, bool) or text in TRUE | FALSE:
            return raw if isinstance(raw, bool) else text in TRUE
        raise ConfigError([f"{where}: want true or false, not {raw!r}"])
    value = raw
    if callable(action.type):
        try:
            value = action.type(str(raw))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
            raise ConfigError([f"{where}: {e}"]) from e
    if isinstance(value, Path) and base is not None and not value.is_absolute():
        value = base / value
    if action.choices is not None and value not in action.choices:
        raise ConfigError([f"{where}: {raw!r} is not one of {sorted(action.choices)}"])
    return value


def _scalar(value: Any) -> str:
    """A label's YAML value as its text (`true` as true, 3 as 3)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _from_env(key: Key, text: str, actions: list[argparse.Action]) -> Setting:
    raw: Any = text
    if not actions and key.schema.get("type") != "string":  # typed like YAML: 1883, true
        raw = yaml.safe_load(text)
        problems = value_errors(raw, key.schema)
        if problems:
            raise ConfigError([f"{key.env}: {p}" for p in problems])
    return Setting(key, _convert(key, raw, actions, key.env, None), "env", key.env)


def _from_file(key: Key, found: FileValue, path: Path, actions: list[argparse.Action]) -> Setting:
    where = where_in_file(path, found.line, key.path)
    value = _convert(key, found.value, actions, where, path.parent)
    return Setting(key, value, "file", where)


def read_layers(
    parser: argparse.ArgumentParser, argv: list[str], environ: Mapping[str, str]
) -> Resolved:
    """The settings the environment and the config file make; ConfigError lists every problem."""
    path, named = config_path(argv, environ)
    in_file: dict[str, FileValue] = {}
    if path is not None and (named or path.exists()):
        in_file = read_config_file(path)
    else:
        path = None
    options = options_by_dest(parser)
    layered: dict[str, Setting] = {}
    problems: list[str] = []
    for key in config_keys():
        actions = options.get(key.dest, [])
        try:
            if environ.get(key.env):  # empty is unset, as shells often leave it
                layered[key.name] = _from_env(key, environ[key.env], actions)
            elif key.name in in_file and path is not None:
                layered[key.name] = _from_file(key, in_file[key.name], path, actions)
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    return Resolved(path, layered)


def _apply(parser: argparse.ArgumentParser, resolved: Resolved) -> dict[str, Any]:
    """Make the layered values the options' defaults; returns the defaults they replace."""
    options = options_by_dest(parser)
    defaults = {dest: actions[0].default for dest, actions in options.items()}
    for setting in resolved.layered.values():
        for action in options.get(setting.key.dest, []):
            action.default = setting.value
    return defaults


def given_dests(build: Callable[[], argparse.ArgumentParser], argv: list[str]) -> frozenset[str]:
    """The dests a flag sets on this command line: parsed again with no defaults at all."""
    parser = build()
    for p in parsers(parser):
        for action in p._actions:
            if action.option_strings and action.dest not in ("help", "version"):
                action.default = argparse.SUPPRESS
    return frozenset(vars(parser.parse_args(argv)))


def parse_args(
    build: Callable[[], argparse.ArgumentParser],
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """The command line parsed over the config file and the environment (`args.resolved` says
    where each value came from). `--help` works even when the config is broken; otherwise a
    broken config raises ConfigError once the command line itself has parsed."""
    argv = list(argv if argv is not None else [])
    environ = os.environ if environ is None else environ
    parser = build()
    problem: ConfigError | None = None
    try:
        resolved = read_layers(parser, argv, environ)
    except ConfigError as e:
        resolved, problem = Resolved(None, {}), e
    defaults = _apply(parser, resolved)
    args = parser.parse_args(argv)
    if problem is not None:
        raise problem
    given = given_dests(build, argv)
    args.resolved = Resolved(resolved.path, resolved.layered, given, defaults)
    return args
