"""The exported-graph file format, and its writer: the trained model's forward pass as data, not code.

The writer runs INSIDE the sandbox (the harness stages this file as `graph_export.py` and calls
`export_model` after `run_training`), in the same interpreter as the edited `train.py`, so nothing it
writes is trusted: the reader (`graph.py`, outside) checks everything again. The writer only turns an
honest model into a file and, when that is impossible, says why in words the agent can act on.

File layout (little-endian):

    MAGIC (8 bytes) | u64 header length | header (UTF-8 JSON) | zero padding to ALIGN | tensor bytes

Header: `{"format", "input": {"shape": [1, T], "dtype": "int64"}, "tensors": [...], "nodes": [...],
"output": VALUE}`. Each tensor is `{"name", "kind", "dtype", "shape", "offset", "nbytes"}` (offset from
the start of the tensor bytes). Each node is `{"op": "aten.<name>.<overload>" | "getitem", "args": [VALUE],
"kwargs": {name: VALUE}}`. A VALUE is a JSON number, bool, null or short string, a list of VALUEs, or one
tagged object: `{"node": i}` (output of an earlier node), `{"input": 0}`, `{"tensor": j}`,
`{"dtype": name}`, `{"device": "auto"}`, `{"layout": "strided"}`, `{"memory_format": name}`,
`{"float": "inf" | "-inf" | "nan"}`. No pickle, no Python object, no code: op names are looked up in a
fixed allowlist by the reader.

Imports only the standard library and torch (this file runs where no project module exists).
"""

from __future__ import annotations

import json
import math
import operator
import os
import struct
from typing import Any

import torch

MAGIC = b"ARGRAPH1"
FORMAT = "autoresearch-graph/1"
ALIGN = 64
PREFIX = struct.Struct("<8sQ")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
"""Every dtype a weight or a dtype argument may have, by the name the file uses."""
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
LAYOUTS = {"strided": torch.strided}
MEMORY_FORMATS = {"contiguous_format": torch.contiguous_format, "preserve_format": torch.preserve_format}
FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
TENSOR_KINDS = ("param", "buffer", "constant")
SKIPPED_OPS = ("aten._assert", "aten.sym_constrain")
"""Runtime assertions on shapes that are static here: nothing flows from them, so they are left out."""
GRAPH_FILE = "model.graph"
"""The file phase 1 writes under `out/` (and the scorer reads)."""

HOW_TO_EXPORT = (
    "the scorer evaluates forward() as a pure tensor program exported with torch.export at one (1, seq_len) "
    "int64 input: keep forward() straight-line (no Python `if` or loop on tensor values, no .item() or "
    ".tolist()), write no buffer or parameter in forward(), draw no random numbers in eval mode (dropout "
    "only through nn.Dropout / training=self.training), and use ATen ops only (no custom or Triton ops)"
)
"""Appended to every refusal: what a model must be for the scorer to accept it."""


class ExportRefused(ValueError):
    """The model cannot be written as a pure graph; the message says why and how to fix it."""

    def __init__(self, why: str) -> None:
        super().__init__(f"{why}. How to fix: {HOW_TO_EXPORT}")


def op_name(target: Any) -> str:
    """`aten.<name>.<overload>` for an ATen `OpOverload` (the name the file and the allowlist use)."""
    return f"{target.namespace}.{target._schema.name.split('::')[1]}.{target._overloadname}"


def _encode(value: Any, names: dict[str, Any]) -> Any:
    """One FX argument as a file VALUE; `names` maps FX node names to their tagged references."""
    if isinstance(value, torch.fx.Node):
        if value.name not in names:
            raise ExportRefused(f"argument {value.name} is not a value the graph format can reference")
        return names[value.name]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"float": "nan"}
        return {"float": "inf" if value > 0 else "-inf"} if math.isinf(value) else value
    if isinstance(value, (list, tuple)):
        return [_encode(v, names) for v in value]
    if isinstance(value, torch.dtype) and value in DTYPE_NAMES:
        return {"dtype": DTYPE_NAMES[value]}
    if isinstance(value, torch.device):
        return {"device": "auto"}
    if isinstance(value, torch.layout) and value == torch.strided:
        return {"layout": "strided"}
    if isinstance(value, torch.memory_format) and str(value).split(".")[-1] in MEMORY_FORMATS:
        return {"memory_format": str(value).split(".")[-1]}
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        raise ExportRefused("a symbolic (data-dependent) size reached the graph")
    raise ExportRefused(f"an argument of type {type(value).__name__} cannot be written")


class _Weights:
    """The tensor table and bytes being written; tied weights (one storage, one view) are stored once."""

    def __init__(self) -> None:
        self.table: list[dict[str, Any]] = []
        self.blobs: list[bytes] = []
        self.offset = 0
        self.seen: dict[tuple, int] = {}

    def add(self, name: str, kind: str, tensor: Any) -> dict[str, int]:
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter, torch.nn.Buffer):
            raise ExportRefused(f"{name}: only plain tensors can be weights (got {type(tensor).__name__})")
        t = tensor.detach()
        if t.dtype not in DTYPE_NAMES:
            raise ExportRefused(f"{name}: dtype {t.dtype} is not supported")
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key not in self.seen:
            data = t.to("cpu").contiguous()
            raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
            pad = -self.offset % ALIGN
            self.blobs.append(b"\0" * pad + raw)
            self.offset += pad
            entry = {"name": name[:200], "kind": kind, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape)}
            self.table.append({**entry, "offset": self.offset, "nbytes": len(raw)})
            self.offset += len(raw)
            self.seen[key] = len(self.table) - 1
        return {"tensor": self.seen[key]}


def _check_outputs(ep: Any) -> None:
    """Refuse a graph that writes state (a buffer or parameter mutated in forward) or has odd outputs."""
    from torch.export.graph_signature import OutputKind

    for spec in ep.graph_signature.output_specs:
        if spec.kind in (OutputKind.BUFFER_MUTATION, OutputKind.PARAMETER_MUTATION, OutputKind.USER_INPUT_MUTATION):
            raise ExportRefused(
                f"forward() writes to {spec.target!r}: a scored model may not keep state between calls; "
                "compute it as a local tensor instead"
            )
        if spec.kind != OutputKind.USER_OUTPUT:
            raise ExportRefused(f"forward() has a graph output of kind {spec.kind.name}")


def _inputs(ep: Any, weights: _Weights) -> tuple[dict[str, Any], list[int]]:
    """References for every placeholder (the token input and the weights), and the input's shape."""
    from torch.export.graph_signature import InputKind

    names: dict[str, Any] = {}
    shape: list[int] = []
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    for spec, node in zip(ep.graph_signature.input_specs, placeholders, strict=True):
        if spec.kind == InputKind.USER_INPUT:
            val = node.meta.get("val")
            if shape or val is None or val.dtype != torch.int64 or val.dim() != 2:
                raise ExportRefused("forward() must take exactly one (B, T) int64 token tensor")
            shape = [int(s) for s in val.shape]
            names[node.name] = {"input": 0}
        elif spec.kind == InputKind.PARAMETER:
            names[node.name] = weights.add(spec.target, "param", ep.state_dict[spec.target])
        elif spec.kind == InputKind.BUFFER:
            source = ep.state_dict if spec.persistent else ep.constants
            names[node.name] = weights.add(spec.target, "buffer", source[spec.target])
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            names[node.name] = weights.add(spec.target, "constant", ep.constants[spec.target])
        else:
            raise ExportRefused(f"graph input {spec.target or node.name} is a {spec.kind.name}, not a tensor")
    if not shape:
        raise ExportRefused("forward() takes no token tensor")
    return names, shape


def _why_not(target: Any) -> str | None:
    """Why an ATen op can never be scored (from its own schema and tags), or None when it may be."""
    if torch.Tag.nondeterministic_seeded in target.tags:
        return "random"
    schema = target._schema
    if any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments):
        return "an in-place write"
    if torch.Tag.data_dependent_output in target.tags:
        return "data-dependent (its output value leaves the graph)"
    return None  # the reader's allowlist decides the rest (a boolean index, say, fails its dry run)


def _node(node: Any, names: dict[str, Any]) -> dict[str, Any] | None:
    """One FX call as a file node (None for a skipped assertion); refuses what cannot be scored."""
    target = node.target
    if node.op != "call_function":
        raise ExportRefused(f"graph node {node.name} is a {node.op}: only op calls can be scored")
    if isinstance(target, torch._ops.HigherOrderOperator):
        raise ExportRefused(f"{node.name}: control flow or a subgraph ({target.name()}) cannot be scored")
    if target is operator.getitem:
        name = "getitem"
    elif isinstance(target, torch._ops.OpOverload):
        name = op_name(target)
        if target.namespace != "aten":
            raise ExportRefused(f"{node.name}: custom op {name} (only ATen ops can be scored)")
        if name.startswith(SKIPPED_OPS):
            return None
        why = _why_not(target)
        random_ok = name in ("aten.dropout.default", "aten.scaled_dot_product_attention.default")
        if why and not (why == "random" and random_ok):
            raise ExportRefused(f"{node.name}: op {name} is {why}")
    else:
        raise ExportRefused(f"{node.name}: call to {target!r} is not an ATen op (symbolic shape arithmetic?)")
    args = [_encode(a, names) for a in node.args]
    return {"op": name, "args": args, "kwargs": {k: _encode(v, names) for k, v in node.kwargs.items()}}


def graph_header(ep: Any) -> tuple[dict[str, Any], _Weights]:
    """The file header and weights of an ExportedProgram (already functionalised, exported at static shapes)."""
    for node in ep.graph.nodes:  # control flow first: its subgraphs would trip the checks below
        if node.op == "call_function" and isinstance(node.target, torch._ops.HigherOrderOperator):
            raise ExportRefused(f"{node.name}: control flow or a subgraph ({node.target.name()}) cannot be scored")
    _check_outputs(ep)
    weights = _Weights()
    names, shape = _inputs(ep, weights)
    nodes: list[dict[str, Any]] = []
    output = None
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            outs = node.args[0]
            output = _encode(outs[0] if isinstance(outs, (list, tuple)) else outs, names)
            continue
        encoded = _node(node, names)
        if encoded is not None:
            names[node.name] = {"node": len(nodes)}
            nodes.append(encoded)
    header = {"format": FORMAT, "input": {"shape": shape, "dtype": "int64"}, "tensors": weights.table}
    return {**header, "nodes": nodes, "output": output}, weights


def write_graph(header: dict[str, Any], weights: _Weights, path: str) -> int:
    """Write the file atomically (a reader never sees half of it); its size in bytes."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    prefix = PREFIX.pack(MAGIC, len(head)) + head
    prefix += b"\0" * (-len(prefix) % ALIGN)
    tmp = f"{path}.part"
    with open(tmp, "wb") as fh:
        fh.write(prefix)
        for blob in weights.blobs:
            fh.write(blob)
    os.replace(tmp, path)
    return len(prefix) + weights.offset


def first_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, short: what an agent needs to see of an export failure."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:limit] if text else ''}"


def export_model(model: torch.nn.Module, seq_len: int, path: str) -> int:
    """Export `model`'s eval-mode forward at one `(1, seq_len)` int64 input and write it to `path`; its size.

    `run_decompositions({})` functionalises the graph (in-place ops on intermediates become pure ones,
    buffer writes become explicit outputs, refused above, autocast regions become casts) while keeping
    the high-level ops eager runs, so the scored logits are bitwise those of eager. Raises ExportRefused.
    """
    model = model.cpu().eval()
    example = (torch.zeros(1, seq_len, dtype=torch.int64),)
    try:
        program = torch.export.export(model, example, strict=False)
    except Exception as error:  # noqa: BLE001 - the edited code may raise anything: report it
        raise ExportRefused(f"torch.export failed: {first_line(error)}") from None
    try:
        program = program.run_decompositions(decomp_table={})
    except Exception as error:  # noqa: BLE001
        raise ExportRefused(f"functionalising the exported graph failed: {first_line(error)}") from None
    header, weights = graph_header(program)
    return write_graph(header, weights, path)
