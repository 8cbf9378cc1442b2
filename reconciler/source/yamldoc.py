"""One desired file's bytes as a YAML document whose nodes still know their lines.

`load` calls `read_document` for each file, then `locate` to turn a field path (from the schema
validator or the spec builder) back into a line number. Parsing is `yaml.SafeLoader`: compose
first, so every value keeps its node and mark, then construct from the same nodes. The limits
(file size, node count after alias expansion, 64-bit integers, nesting depth) keep a hostile or
broken file from costing the daemon more than a bounded read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.core.desired import LoadError
from reconciler.source.messages import FieldPath, load_error

MAX_BYTES = 1 << 20  # a desired file is a few hundred bytes; refuse to parse megabytes
MAX_NODES = 50_000  # after alias expansion: stops "billion laughs" documents


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that turns bad scalars (2024-13-45, `!!int ""`, huge ints) into marked errors."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as e:
            # PyYAML's scalar constructors fail this way on values their tag does not fit
            text = f" {node.value[:40]!r}" if isinstance(node, ScalarNode) else ""
            msg = f"invalid {node.tag.rsplit(':', 1)[-1]} value{text}"
            raise ConstructorError(None, None, msg, node.start_mark) from e

    def construct_yaml_int(self, node: ScalarNode) -> int:
        value = 0 if len(node.value) > 80 else super().construct_yaml_int(node)
        if len(node.value) > 80 or not -(2**63) <= value < 2**63:
            raise ConstructorError(None, None, "integer out of 64-bit range", node.start_mark)
        return value


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


@dataclass(frozen=True)
class Document:
    """A parsed file: the constructed `data`, and the `root` node it was built from."""

    loader: BoundedLoader
    root: Node
    data: Any

    def line_of(self, path: FieldPath) -> int:
        """The line of the deepest node on `path` that exists (1-based)."""
        return locate(self.loader, self.root, path)[1].start_mark.line + 1


def _node_count(node: Node, memo: dict[int, int], active: set[int]) -> int:
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, ScalarNode):
        return 1
    if id(node) in active:
        raise ConstructorError(None, None, "recursive alias", node.start_mark)
    active.add(id(node))
    pairs = node.value if isinstance(node, SequenceNode) else [n for kv in node.value for n in kv]
    total = 1
    for child in pairs:
        total = min(total + _node_count(child, memo, active), MAX_NODES + 1)
    active.discard(id(node))
    memo[id(node)] = total
    return total


def locate(loader: BoundedLoader, root: Node, path: FieldPath) -> tuple[Node | None, Node]:
    """(key node, value node) at `path`; stops at the deepest node that exists."""
    key: Node | None = None
    node = root
    for part in path:
        if isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            key, node = None, node.value[part]
        elif isinstance(node, MappingNode):
            pairs = [kv for kv in node.value if isinstance(kv[0], ScalarNode)]
            found = [kv for kv in pairs if loader.construct_object(kv[0]) == part]
            if not found:
                break
            key, node = found[-1]  # the last duplicate wins, as in the constructed dict
        else:
            break
    return key, node


def parse_document(raw: bytes, shown: str) -> Document | LoadError:
    """`raw` as one YAML document, or a LoadError naming the line (and column) it broke at."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        return load_error(shown, line, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})")
    try:
        loader = BoundedLoader(text)  # checks for unprintable characters first
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        return load_error(shown, line, None, f"YAML syntax error: {e.reason} (#x{e.character:04x})")
    try:
        node = loader.get_single_node()
        if node is None:
            return load_error(shown, None, None, "empty document (expected a ModelDeployment)")
        if _node_count(node, {}, set()) > MAX_NODES:
            return load_error(shown, None, None, f"more than {MAX_NODES} YAML nodes after aliases")
        return Document(loader, node, loader.construct_document(node))
    except yaml.MarkedYAMLError as e:
        return load_error(shown, *_syntax_error(e))
    except yaml.YAMLError as e:
        return load_error(shown, None, None, f"YAML syntax error: {e}")
    except RecursionError:
        return load_error(shown, None, None, "YAML nests too deeply")
    finally:
        loader.dispose()


def _syntax_error(e: yaml.MarkedYAMLError) -> tuple[int | None, None, str]:
    """(line, field, message) for a marked syntax error."""
    mark = e.problem_mark or e.context_mark
    problem = e.problem or e.context or "invalid YAML"
    if problem.startswith("but ") and e.context:  # "expected a single document ..."
        problem = f"{e.context}, {problem}"
    column = f" (column {mark.column + 1})" if mark else ""
    return (mark.line + 1 if mark else None), None, f"YAML syntax error: {problem}{column}"


def read_document(path: Path, shown: str) -> Document | LoadError:
    """The file at `path`, read once and at most MAX_BYTES, as a parsed document."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        return load_error(shown, None, None, f"cannot read: {e.strerror or e}")
    if len(raw) > MAX_BYTES:
        return load_error(shown, None, None, f"file is larger than {MAX_BYTES} bytes")
    return parse_document(raw, shown)
