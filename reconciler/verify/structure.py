"""Structural validation of an ONNX file before anything loads it.

`verify()` calls `validate_model()` after the sha256 pin and before the interface contract; the
checks here are the ones that do not depend on desired state, only on the bytes and on the
device's trust policy (which operator domains it accepts, how large a model may be):

| check, in order                                   | reason              |
|---------------------------------------------------|---------------------|
| file size, before a byte is parsed                | model-too-large     |
| protobuf parse (external data *not* loaded)       | onnx-invalid        |
| opset_import well formed, strings UTF-8           | onnx-invalid        |
| operator domains against the allow-list           | custom-op-domain    |
| every node's domain declared in its opset_import  | onnx-invalid        |
| default-domain (and ai.onnx.ml) opset range       | opset-unsupported   |
| external data stays inside the package            | external-data-escape|
| model plus external data size                     | model-too-large     |
| `onnx.checker.check_model(full_check=True)`       | onnx-invalid        |

Every graph is visited: the main graph, subgraphs in node attributes (If/Loop/Scan bodies, at any
depth) and model-local functions, so nothing hides a custom op or an external tensor in a branch.

External data: ONNX Runtime resolves a tensor's `location` relative to the model file's directory
and opens it. A location that is absolute, has a `..` component, a backslash, a drive letter, or
runs through a symbolic link could make the runtime read any file on the device into a weight
(and, through the outputs, back to a client), so such a model is refused before it is parsed
further. Symbolic links are refused even when they point inside the package: their target can be
changed after this check. A model verified from the content-addressed store is a single file
(`package_dir=None`), so there any external data is refused outright.

Raises `IntegrityError` (terminal for that digest) with the stable reasons above; returns a
`ValidatedModel` carrying the parsed proto and the external files it reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx

from reconciler.core.errors import IntegrityError

DEFAULT_MAX_BYTES = 2 * 1024**3  # protobuf cannot hold more in one file anyway
MIN_OPSET = 7  # the oldest default-domain opset ONNX Runtime supports

# Domains allowed without the trust policy naming them: the ONNX standard operators, the ONNX-ML
# operators and com.microsoft, ONNX Runtime's own contrib operators (fused attention, quantized
# ops, ...) that its optimiser and the exporters emit. All three ship inside onnxruntime, so
# allowing them loads no code from outside it (a backend without them, like TensorRT, fails the
# build step instead). Any other domain needs a custom-op library and is refused unless the
# trust policy names it.
ALWAYS_ALLOWED_DOMAINS = frozenset({"", "ai.onnx.ml", "com.microsoft"})

# The keys ONNX Runtime reads from `external_data`; anything else (e.g. `basepath`, which some
# tools join in front of `location`) could change where the bytes come from and is refused.
_EXTERNAL_KEYS = frozenset({"location", "offset", "length", "checksum"})
# ONNX Runtime treats this location as "the offset is a memory address in this process".
_ORT_MEMORY_TAG = "*/_ORT_MEM_ADDR_/*"
_DRIVE = re.compile(r"^[A-Za-z]:")
# offset/length as ONNX Runtime parses them; int() alone also takes " 12", "1_0" and "١٢"
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class ValidatedModel:
    model: onnx.ModelProto = field(repr=False, compare=False)
    opsets: Mapping[str, int]  # domain ("" for the default domain) -> version
    external_data: tuple[Path, ...]  # resolved files the model reads its weights from
    total_bytes: int  # model file plus its external data files


def _invalid(path: Path, message: str) -> IntegrityError:
    return IntegrityError(f"not a valid ONNX model ({path.name}): {message}", reason="onnx-invalid")


def _one_line(e: Exception) -> str:
    """The checker's messages span lines; journal details and log lines read better in one."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _text(value: object, path: Path, what: str) -> str:
    """A string field as str: protobuf hands back bytes for a proto2 string that is not UTF-8."""
    if not isinstance(value, str):
        raise _invalid(path, f"{what} {value!r} is not UTF-8 text")
    return value


def _domain(name: str) -> str:
    return "" if name == "ai.onnx" else name


def _shown(domain: str) -> str:
    return repr(domain) if domain else "'' (ai.onnx)"


def _opsets(entries: Iterable[onnx.OperatorSetIdProto], path: Path, where: str) -> dict[str, int]:
    opsets: dict[str, int] = {}
    for entry in entries:
        domain = _domain(_text(entry.domain, path, f"{where}: an opset_import domain"))
        if domain in opsets:
            raise _invalid(path, f"{where}: opset_import lists domain {_shown(domain)} twice")
        opsets[domain] = entry.version
    return opsets


@dataclass
class _Inventory:
    """Every node (with the opset scope it resolves in) and every tensor, in every graph."""

    nodes: list[tuple[onnx.NodeProto, str, dict[str, int]]] = field(default_factory=list)
    tensors: list[tuple[onnx.TensorProto, str]] = field(default_factory=list)
    scopes: list[tuple[str, dict[str, int]]] = field(default_factory=list)

    def add_attribute(self, attr: onnx.AttributeProto, where: str) -> Iterator[onnx.GraphProto]:
        """Record the attribute's tensors; yield its subgraphs."""
        label = f"{where}, attribute {attr.name!r}"
        if attr.HasField("t"):
            self.tensors.append((attr.t, label))
        self.tensors.extend((t, label) for t in attr.tensors)
        sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
        for s in [*sparse, *attr.sparse_tensors]:
            self.tensors.extend([(s.values, label), (s.indices, label)])
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def _inventory(model: onnx.ModelProto, path: Path) -> _Inventory:
    inv = _Inventory()
    # (where, graph or function, its opsets): an explicit stack, so a deeply nested model
    # cannot exhaust Python's recursion limit
    pending: list[tuple[str, onnx.GraphProto | onnx.FunctionProto, dict[str, int]]] = []
    model_opsets = _opsets(model.opset_import, path, "model")
    inv.scopes.append(("model", model_opsets))
    pending.append((f"graph {model.graph.name!r}", model.graph, model_opsets))
    for fn in model.functions:
        where = f"function {fn.domain}:{fn.name}"
        fn_opsets = _opsets(fn.opset_import, path, where)
        inv.scopes.append((where, fn_opsets))
        for attr in fn.attribute_proto:  # attribute defaults may hold tensors too
            for sub in inv.add_attribute(attr, where):
                pending.append((f"subgraph {sub.name!r} of {where}", sub, fn_opsets))
        pending.append((where, fn, fn_opsets))
    while pending:
        where, graph, opsets = pending.pop()
        if isinstance(graph, onnx.GraphProto):
            inv.tensors.extend((t, f"{where}, initializer") for t in graph.initializer)
            for s in graph.sparse_initializer:
                label = f"{where}, sparse initializer"
                inv.tensors.extend([(s.values, label), (s.indices, label)])
        for i, node in enumerate(graph.node):
            inv.nodes.append((node, where, opsets))
            node_where = f"{where}, node {node.name or f'#{i}'!r} ({node.op_type})"
            for attr in node.attribute:
                for sub in inv.add_attribute(attr, node_where):
                    pending.append((f"subgraph {sub.name!r} of {node_where}", sub, opsets))
    return inv


def _check_domains(
    model: onnx.ModelProto, inv: _Inventory, path: Path, allowed: frozenset[str]
) -> None:
    local_functions = {
        (_domain(_text(f.domain, path, "a function domain")), f.name, f.overload)
        for f in model.functions
    }
    local_domains = {domain for domain, _, _ in local_functions}
    users: dict[str, str] = {}  # domain -> the first op that uses it, for messages
    for node, where, opsets in inv.nodes:
        domain = _domain(_text(node.domain, path, f"the domain of node {node.name!r} in {where}"))
        users.setdefault(domain, f"{node.op_type} (node {node.name!r} in {where})")
        # A call of a model-local function is resolved inside the model (its body is checked
        # like any other graph); exporters put those in their own domains.
        if (domain, node.op_type, node.overload) in local_functions:
            pass
        elif domain not in allowed:
            raise IntegrityError(
                f"operator {node.op_type} (node {node.name!r} in {where}) is in domain"
                f" {domain!r}, which the trust policy does not allow (allowed:"
                f" {sorted(d or 'ai.onnx' for d in allowed)})",
                reason="custom-op-domain",
            )
        if domain not in opsets:
            raise _invalid(
                path,
                f"operator {node.op_type} (node {node.name!r} in {where}) uses domain"
                f" {_shown(domain)}, which its opset_import does not declare",
            )
    for where, opsets in inv.scopes:
        for domain in opsets:
            if domain not in allowed and domain not in local_domains:
                used = users.get(domain, "no node")
                raise IntegrityError(
                    f"{where} imports operator domain {domain!r}, used by {used}, which the trust"
                    f" policy does not allow (allowed: {sorted(d or 'ai.onnx' for d in allowed)})",
                    reason="custom-op-domain",
                )


def _check_opsets(inv: _Inventory, max_opset: int | None) -> None:
    supported = onnx.defs.onnx_opset_version()
    ml_max = onnx.defs.C.schema_version_map().get("ai.onnx.ml", (1, 1))[1]
    for where, opsets in inv.scopes:
        top = min(supported, max_opset) if max_opset is not None else supported
        version = opsets.get("")
        if version is not None and not MIN_OPSET <= version <= top:
            raise IntegrityError(
                f"{where} imports default-domain opset {version}; this device supports"
                f" {MIN_OPSET} to {top}",
                reason="opset-unsupported",
            )
        ml = opsets.get("ai.onnx.ml")
        if ml is not None and not 1 <= ml <= ml_max:
            raise IntegrityError(
                f"{where} imports ai.onnx.ml opset {ml}; this device supports 1 to {ml_max}",
                reason="opset-unsupported",
            )


def _is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0


def _escape(tensor: onnx.TensorProto, where: str, location: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"tensor {tensor.name!r} ({where}) keeps its data at {location!r}: {why}",
        reason="external-data-escape",
    )


def _external_entries(tensor: onnx.TensorProto, where: str, path: Path) -> dict[str, str]:
    """The tensor's external_data as a dict; unknown or repeated keys are refused."""
    entries: dict[str, str] = {}
    for entry in tensor.external_data:
        key = _text(entry.key, path, f"tensor {tensor.name!r}: an external_data key")
        value = _text(entry.value, path, f"tensor {tensor.name!r}: external_data {key!r}")
        if key not in _EXTERNAL_KEYS or key in entries:
            raise _escape(tensor, where, value, f"external_data key {key!r} is unknown or repeated")
        entries[key] = value
    return entries


def _check_location(tensor: onnx.TensorProto, where: str, location: str) -> None:
    """`location` is a relative path with no way out of its directory, judged by its text alone."""
    if location == _ORT_MEMORY_TAG:
        raise _escape(tensor, where, location, "ONNX Runtime reads this as a memory address")
    if "\x00" in location or "\\" in location or ":" in location or _DRIVE.match(location):
        raise _escape(tensor, where, location, "NUL, backslash, colon or drive letter in the path")
    posix = PurePosixPath(location)
    if posix.is_absolute() or PureWindowsPath(location).is_absolute():
        raise _escape(tensor, where, location, "an absolute path")
    if ".." in posix.parts:
        raise _escape(tensor, where, location, "a '..' component leaves the package")


def _resolve_inside(
    tensor: onnx.TensorProto, where: str, location: str, model_dir: Path, base: Path
) -> tuple[Path, int | None]:
    """(resolved file, its size or None if missing), walking no symlink and staying in `base`."""
    posix = PurePosixPath(location)
    try:
        target = model_dir
        for part in posix.parts:
            target = target / part
            if target.is_symlink():
                raise _escape(
                    tensor,
                    where,
                    location,
                    f"{target.relative_to(model_dir)} is a symbolic link (its target can change"
                    " after verification)",
                )
        resolved = target.resolve()
        inside = resolved.is_relative_to(base)
        size = resolved.stat().st_size if inside and resolved.is_file() else None
    except (OSError, RuntimeError) as e:  # a name too long, a loop (RuntimeError before 3.13)
        raise _escape(tensor, where, location, f"cannot be checked: {e}") from e
    if not inside:
        raise _escape(tensor, where, location, f"resolves to {resolved}, outside {base}")
    return resolved, size


def _check_range(
    tensor: onnx.TensorProto, where: str, entries: dict[str, str], size: int, path: Path
) -> None:
    """offset and length are decimal and lie within the external file's `size` bytes."""
    location = entries["location"]
    offset_text, length_text = entries.get("offset", "0"), entries.get("length", "")
    if not _DIGITS.fullmatch(offset_text) or not _DIGITS.fullmatch(length_text or "0"):
        raise _invalid(
            path,
            f"tensor {tensor.name!r} ({where}): offset {offset_text!r} / length"
            f" {length_text!r} must be decimal integers",
        )
    offset = int(offset_text)
    length = int(length_text) if length_text else size - offset
    if offset + length > size or length < 0:
        raise _invalid(
            path,
            f"tensor {tensor.name!r} ({where}): bytes {offset}..{offset + length} of {location!r}"
            f" do not lie within its {size} bytes",
        )


def _external_file(
    tensor: onnx.TensorProto, where: str, model_dir: Path, base: Path, path: Path
) -> Path:
    """The file an external tensor reads, once it is shown to stay inside `base`."""
    entries = _external_entries(tensor, where, path)
    location = entries.get("location", "")
    if not location:
        raise _invalid(path, f"tensor {tensor.name!r} ({where}) has external data but no location")
    _check_location(tensor, where, location)
    resolved, size = _resolve_inside(tensor, where, location, model_dir, base)
    if size is None:
        raise _invalid(
            path, f"tensor {tensor.name!r} ({where}): external file {location!r} is missing"
        )
    _check_range(tensor, where, entries, size, path)
    return resolved


def _external_data(inv: _Inventory, path: Path, package_dir: Path | None) -> tuple[Path, ...]:
    external = [(t, where) for t, where in inv.tensors if _is_external(t)]
    if not external:
        return ()
    if package_dir is None:
        tensor, where = external[0]
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        raise _escape(
            tensor,
            where,
            location,
            "external data is not allowed here (a model from the store is a single file)",
        )
    base = package_dir.resolve()
    model_dir = path.absolute().parent
    files = {_external_file(t, where, model_dir, base, path) for t, where in external}
    return tuple(sorted(files))


def validate_model(
    path: Path,
    *,
    package_dir: Path | None,
    allowed_domains: Iterable[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_opset: int | None = None,
) -> ValidatedModel:
    """Check the ONNX file at `path` before anything loads it; see the module docstring.

    `package_dir`: the directory the model and its external data came from (external tensors
    must resolve inside it); None for a single-file model, which then may not use external data.
    `allowed_domains`: operator domains the trust policy accepts beyond ALWAYS_ALLOWED_DOMAINS.
    `max_opset`: the newest default-domain opset the device's runtime supports, when that is
    older than the installed onnx package's.
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        raise _invalid(path, f"cannot read it: {e}") from e
    if size > max_bytes:
        raise IntegrityError(
            f"model file {path.name} is {size} bytes; the limit is {max_bytes}",
            reason="model-too-large",
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, but also RuntimeWarning, ValueError...
        raise _invalid(path, _one_line(e)) from e
    inv = _inventory(model, path)
    allowed = ALWAYS_ALLOWED_DOMAINS | {_domain(d) for d in allowed_domains}
    _check_domains(model, inv, path, allowed)
    _check_opsets(inv, max_opset)
    files = _external_data(inv, path, package_dir)
    total = size + sum(f.stat().st_size for f in files)
    if total > max_bytes:
        raise IntegrityError(
            f"model {path.name} with its external data is {total} bytes; the limit is {max_bytes}",
            reason="model-too-large",
        )
    try:
        # With external data, check the file: the checker then resolves (and re-checks) the
        # locations against the model's directory, as the runtime will.
        onnx.checker.check_model(str(path) if files else model, full_check=True)
    except Exception as e:  # ValidationError, InferenceError, ValueError (> 2 GiB)...
        raise _invalid(path, _one_line(e)) from e
    return ValidatedModel(model, dict(inv.scopes[0][1]), files, total)
