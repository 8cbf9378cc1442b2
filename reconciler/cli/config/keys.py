"""The config keys, read from `schemas/config.v1.json`, and the command-line options they set.

A key is a top-level property of the schema (`state_dir`) or a property of a section
(`mqtt.broker`, flattened to `mqtt_broker`). Its environment variable is `HOTSWAP_` and the flat
name in capitals; the option it sets is the one whose argparse dest is the flat name (the one
exception, `desired_dir` for `--desired`, keeps the flag people know). Everything here is
derived from the schema and the parser, so a new option needs only its schema property.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.source.schema import schema_document

SCHEMA = "config.v1.json"
SCHEMA_ID = "https://hotswap.dev/schemas/config.v1.json"
NOT_KEYS = frozenset({"apiVersion", "kind"})  # describe the file itself
DEST_OF_KEY = {"desired_dir": "desired"}  # the flag is --desired; the key says what it names


@dataclass(frozen=True)
class Key:
    path: tuple[str, ...]  # where it is in the file: ("state_dir",) or ("mqtt", "broker")
    schema: dict[str, Any]  # its part of the schema (env values are checked against it)

    @property
    def name(self) -> str:
        return "_".join(self.path)

    @property
    def shown(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return "HOTSWAP_" + self.name.upper()

    @property
    def dest(self) -> str:
        return DEST_OF_KEY.get(self.name, self.name)


@functools.lru_cache(maxsize=1)
def config_keys() -> tuple[Key, ...]:
    """Every key of the schema, in its order."""
    found: list[Key] = []
    for name, prop in schema_document(SCHEMA)["properties"].items():
        if name in NOT_KEYS:
            continue
        if prop.get("type") == "object" and "properties" in prop:  # a section
            found.extend(Key((name, sub), schema) for sub, schema in prop["properties"].items())
        else:
            found.append(Key((name,), prop))
    return tuple(found)


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """`parser` and every subcommand's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from parsers(sub)


def options_by_dest(parser: argparse.ArgumentParser) -> dict[str, list[argparse.Action]]:
    """Every option of every command, by dest (a shared option appears once per command)."""
    found: dict[str, list[argparse.Action]] = {}
    for p in parsers(parser):
        for action in p._actions:
            if action.option_strings and action.dest not in ("help", "version"):
                found.setdefault(action.dest, []).append(action)
    return found


def is_switch(action: argparse.Action) -> bool:
    """An option that takes no value (`--access-log`): its key is a boolean."""
    return action.nargs == 0
