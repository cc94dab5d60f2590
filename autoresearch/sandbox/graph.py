"""The trusted reader of an exported graph, its dry run on the meta device, and its interpreter.

The file comes from the sandbox, so it is hostile input. `load_graph(data)` parses it with `json` and
`struct` only and copies tensors out with `torch.frombuffer`: it never unpickles, imports, evaluates or
calls `getattr` on a name from the file. Op names are keys into `graph_ops.OPS` (trusted overloads);
every other value is a JSON literal, a reference to an earlier node (so the graph is acyclic by
construction), the token input or a weight. `Program.analyse` then runs the graph once on the meta
device (shapes only, no memory): the output must be `(1, T, vocab)` floating point, and parameters,
FLOPs per token and peak live memory are counted from what the graph really does, under caps, before
a real tensor is computed. `Program.run` is a straight loop over the live nodes calling trusted ATen
kernels under `inference_mode`; nothing outlives a call, and no allowlisted op writes, so the logits
are a pure function of the weights, the graph and the one window handed in.

Three kinds of refusal, each with its outcome (`error.outcome`): a file the harness could not have
written (bad structure, references, sizes) is `tampered`; a well-formed graph the scorer will not run
(an op off the allowlist, random dropout, over a cap, wrong output) is `unexportable`, with what to
change; NaN weights (a diverged run) are `implausible`.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from autoresearch.sandbox import graph_ops
from autoresearch.sandbox.graph_export import (
    ALIGN,
    DTYPES,
    FLOATS,
    FORMAT,
    LAYOUTS,
    MAGIC,
    MEMORY_FORMATS,
    PREFIX,
    TENSOR_KINDS,
    first_line,
)

MAX_HEADER_BYTES = 4 << 20
MAX_NODES = 20_000
MAX_TENSORS = 4096
MAX_RANK = 8
MAX_DIM = 1 << 40
MAX_STRING = 64
MAX_DEPTH = 8
MAX_LIST = 1 << 16
HEADER_KEYS = {"format", "input", "tensors", "nodes", "output"}
TENSOR_KEYS = {"name", "kind", "dtype", "shape", "offset", "nbytes"}
NODE_KEYS = {"op", "args", "kwargs"}
if hasattr(torch._C._functorch, "_set_vmap_fallback_warning_enabled"):  # SDPA has no batching rule: a row loop
    torch._C._functorch._set_vmap_fallback_warning_enabled(False)


class GraphError(ValueError):
    """The graph is not scored; `outcome` says how the run is classified."""

    outcome = "tampered"


class GraphTampered(GraphError):
    """The file is not one the trusted writer produces."""


class GraphRefused(GraphError):
    """A well-formed graph the scorer will not run; the message says what to change."""

    outcome = "unexportable"


class GraphNonFinite(GraphError):
    """NaN weights: the run diverged."""

    outcome = "implausible"


@dataclass(frozen=True)
class Caps:
    """What a graph may cost before anything real runs (see `scorer.caps_for`)."""

    max_params: int
    max_flops_per_token: float
    max_peak_bytes: int
    max_file_bytes: int = 1 << 62
    """The largest graph file read at all (checked before it is read into memory)."""


@dataclass(frozen=True)
class Analysis:
    """What the dry run measured: the graph's real size and forward cost (trusted numbers)."""

    params: int
    weight_bytes: int
    matmul_flops_per_token: float
    other_ops_per_token: float
    peak_bytes: int
    nodes: int
    dropped_nodes: int

    @property
    def flops_per_token(self) -> float:
        """Forward cost per token: matmul FLOPs plus every other element operation."""
        return self.matmul_flops_per_token + self.other_ops_per_token


@dataclass(frozen=True)
class Node:
    """One live call: its op name, the trusted callable (None for `getitem`), encoded arguments."""

    op: str
    fn: Any
    args: list
    kwargs: dict


# ---------------------------------------------------------------- parsing


def _check_value(v: Any, n_nodes: int, n_tensors: int, depth: int = 0) -> None:
    """A VALUE is a literal, a list of VALUEs or one known tag; references point backwards."""
    if depth > MAX_DEPTH:
        raise GraphTampered("argument nesting too deep")
    if v is None or isinstance(v, bool) or (isinstance(v, int) and -(1 << 63) <= v < 1 << 63):
        return
    if isinstance(v, float) and math.isfinite(v):
        return
    if isinstance(v, str) and len(v) <= MAX_STRING and v.isascii():
        return
    if isinstance(v, list) and len(v) <= MAX_LIST:
        for item in v:
            _check_value(item, n_nodes, n_tensors, depth + 1)
        return
    if isinstance(v, dict) and len(v) == 1:
        ((tag, x),) = v.items()
        index_ok = type(x) is int and 0 <= x < {"node": n_nodes, "tensor": n_tensors, "input": 1}.get(tag, 0)
        names = {"dtype": DTYPES, "device": ("auto",), "layout": LAYOUTS, "memory_format": MEMORY_FORMATS}
        if index_ok or (tag in names and isinstance(x, str) and x in names[tag]):
            return
        if tag == "float" and isinstance(x, str) and x in FLOATS:
            return
    raise GraphTampered(f"bad value {str(v)[:80]}")


def _header(data: bytes) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and where the tensor bytes start."""
    if sys.byteorder != "little":
        raise RuntimeError("the graph reader assumes a little-endian host")
    if len(data) < PREFIX.size or data[:8] != MAGIC:
        raise GraphTampered("not an exported graph file (no magic)")
    _, length = PREFIX.unpack_from(data)
    if length > MAX_HEADER_BYTES or PREFIX.size + length > len(data):
        raise GraphTampered("bad header length")
    try:
        header = json.loads(data[PREFIX.size : PREFIX.size + length].decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise GraphTampered(f"header is not plain JSON: {str(error)[:100]}") from None
    if not isinstance(header, dict) or set(header) != HEADER_KEYS or header["format"] != FORMAT:
        raise GraphTampered("header keys or format version")
    start = PREFIX.size + length
    return header, start + (-start % ALIGN)


def _no_constant(name: str) -> None:
    raise ValueError(f"JSON constant {name} is not allowed")


def _input_shape(spec: Any) -> tuple[int, int]:
    if not isinstance(spec, dict) or set(spec) != {"shape", "dtype"} or spec["dtype"] != "int64":
        raise GraphTampered("input spec")
    shape = spec["shape"]
    if not isinstance(shape, list) or len(shape) != 2:
        raise GraphTampered("input spec")
    if not all(type(s) is int and 0 < s <= 1 << 16 for s in shape):
        raise GraphTampered("input shape")
    return shape[0], shape[1]


def _tensor(j: int, meta: Any, data: bytes, base: int, after: int) -> torch.Tensor:
    """Tensor `j`: checked against the file's bounds (starting at or after byte `after` of the tensor bytes, so
    no byte is copied twice and the copies never exceed the file), copied into memory of our own."""
    if not isinstance(meta, dict) or set(meta) != TENSOR_KEYS:
        raise GraphTampered(f"tensor {j}: keys")
    if meta["kind"] not in TENSOR_KINDS or meta["dtype"] not in DTYPES or not isinstance(meta["name"], str):
        raise GraphTampered(f"tensor {j}: kind, dtype or name")
    shape, offset, nbytes = meta["shape"], meta["offset"], meta["nbytes"]
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_RANK
        or not all(type(s) is int and 0 <= s < MAX_DIM for s in shape)
    ):
        raise GraphTampered(f"tensor {j}: shape")
    dtype = DTYPES[meta["dtype"]]
    want = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if type(offset) is not int or type(nbytes) is not int or nbytes != want or offset < after or offset % ALIGN:
        raise GraphTampered(f"tensor {j}: offset or size")
    if base + offset + nbytes > len(data):
        raise GraphTampered(f"tensor {j}: past the end of the file")
    if nbytes == 0:
        return torch.zeros(shape, dtype=dtype)
    raw = bytearray(data[base + offset : base + offset + nbytes])
    if dtype == torch.bool:  # a byte other than 0 or 1 in a bool tensor is undefined behaviour in kernels
        return torch.frombuffer(raw, dtype=torch.uint8).reshape(shape) != 0
    tensor = torch.frombuffer(raw, dtype=dtype).reshape(shape)
    if tensor.is_floating_point() and bool(torch.isnan(tensor).any()):  # +-inf is fine: attention masks
        raise GraphNonFinite(f"weight {meta['name'][:80]!r} holds NaN values (did training diverge?)")
    return tensor


def _node(i: int, raw: Any, n_tensors: int) -> Node:
    """Node `i`: an allowlisted op with literal constraints met, or `getitem(earlier node, int)`."""
    if not isinstance(raw, dict) or set(raw) != NODE_KEYS:
        raise GraphTampered(f"node {i}: keys")
    op, args, kwargs = raw["op"], raw["args"], raw["kwargs"]
    if not isinstance(op, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
        raise GraphTampered(f"node {i}: op, args or kwargs")
    for value in [*args, *kwargs.values()]:
        _check_value(value, i, n_tensors)
    if op == graph_ops.GETITEM:
        if (
            kwargs
            or len(args) != 2
            or not (isinstance(args[0], dict) and "node" in args[0])
            or type(args[1]) is not int
        ):
            raise GraphTampered(f"node {i}: getitem(node, int) expected")
        return Node(op, None, args, kwargs)
    fn = graph_ops.OPS.get(op)
    if fn is None:
        raise GraphRefused(f"node {i}: {graph_ops.explain_refusal(op)}")
    schema = graph_ops.SCHEMAS[op]
    known = {a.name for a in schema.arguments}
    if not all(k in known for k in kwargs) or len(args) > len(schema.arguments):
        raise GraphTampered(f"node {i}: arguments that {op} does not take")
    why = graph_ops.check_constraints(op, args, kwargs)
    if why:
        raise GraphRefused(f"node {i}: {why}")
    if "device" in known and "device" not in kwargs and len(args) <= _position(schema, "device"):
        kwargs = {**kwargs, "device": {"device": "auto"}}  # a factory op runs where the scorer runs
    return Node(op, fn, args, kwargs)


def _position(schema: Any, name: str) -> int:
    return next(i for i, a in enumerate(schema.arguments) if a.name == name)


def load_graph(data: bytes) -> Program:
    """Parse and check a graph file's bytes. Raises GraphError; never runs anything from the file."""
    header, base = _header(data)
    shape = _input_shape(header["input"])
    metas, raw_nodes = header["tensors"], header["nodes"]
    if not isinstance(metas, list) or len(metas) > MAX_TENSORS:
        raise GraphTampered("tensor table")
    if not isinstance(raw_nodes, list) or len(raw_nodes) > MAX_NODES:
        raise GraphTampered("node list")
    tensors, after = [], 0
    for j, meta in enumerate(metas):
        tensors.append(_tensor(j, meta, data, base, after))
        after = meta["offset"] + meta["nbytes"]
    nodes = [_node(i, raw, len(tensors)) for i, raw in enumerate(raw_nodes)]
    _check_value(header["output"], len(nodes), len(tensors))
    program = Program(shape, tensors, [m["kind"] for m in metas], nodes, header["output"], [m["name"] for m in metas])
    program.prune()
    return program


# ---------------------------------------------------------------- the program


def _refs(value: Any, nodes: set[int], tensors: set[int]) -> None:
    """Collect the node and tensor references inside an encoded value."""
    if isinstance(value, list):
        for item in value:
            _refs(item, nodes, tensors)
    elif isinstance(value, dict):
        ((tag, x),) = value.items()
        if tag == "node":
            nodes.add(x)
        elif tag == "tensor":
            tensors.add(x)


def _renumber(value: Any, new: dict[int, int]) -> Any:
    if isinstance(value, list):
        return [_renumber(item, new) for item in value]
    if isinstance(value, dict) and "node" in value:
        return {"node": new[value["node"]]}
    return value


@dataclass
class Program:
    """A checked graph and its weights. `run` is a pure function of one `(1, T)` token window."""

    input_shape: tuple[int, int]
    tensors: list[torch.Tensor]
    kinds: list[str]
    nodes: list[Node]
    output: Any
    names: list[str] = field(default_factory=list)
    dropped_nodes: int = 0
    used_tensors: list[int] = field(default_factory=list)
    frees: list[list[int]] = field(default_factory=list)
    analysis: Analysis | None = None

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights by the names the writer gave them (`state_dict` keys; a tied weight under its first name)."""
        return dict(zip(self.names, self.tensors, strict=True))

    def prune(self) -> None:
        """Drop nodes the output does not depend on (no op has a side effect) and note each value's last use."""
        live: set[int] = set()
        used: set[int] = set()
        pending: set[int] = set()
        _refs(self.output, pending, used)
        while pending:
            i = pending.pop()
            if i not in live:
                live.add(i)
                deps: set[int] = set()
                _refs([self.nodes[i].args, list(self.nodes[i].kwargs.values())], deps, used)
                pending |= deps - live
        keep = sorted(live)
        new = {old: i for i, old in enumerate(keep)}
        self.dropped_nodes = len(self.nodes) - len(keep)
        self.nodes = [
            Node(n.op, n.fn, _renumber(n.args, new), {k: _renumber(v, new) for k, v in n.kwargs.items()})
            for n in (self.nodes[i] for i in keep)
        ]
        self.output = _renumber(self.output, new)
        self.used_tensors = sorted(used)
        last: dict[int, int] = {}
        for i, node in enumerate(self.nodes):
            deps = set()
            _refs([node.args, list(node.kwargs.values())], deps, set())
            last.update(dict.fromkeys(deps, i))
        kept: set[int] = set()
        _refs(self.output, kept, set())
        self.frees = [[] for _ in self.nodes]
        for value, i in last.items():
            if value not in kept:
                self.frees[i].append(value)

    def _resolve(self, v: Any, env: list, x: torch.Tensor, weights: list) -> Any:
        if isinstance(v, list):
            return [self._resolve(item, env, x, weights) for item in v]
        if isinstance(v, dict):
            ((tag, a),) = v.items()
            if tag == "node":
                return env[a]
            table = {"input": lambda: x, "tensor": lambda: weights[a], "dtype": lambda: DTYPES[a],
                     "device": lambda: x.device, "layout": lambda: LAYOUTS[a],
                     "memory_format": lambda: MEMORY_FORMATS[a], "float": lambda: FLOATS[a]}  # fmt: skip
            return table[tag]()
        return v

    def _execute(self, x: torch.Tensor, weights: list, on_node: Any = None) -> Any:
        """Every live node in order; values are dropped after their last use."""
        env: list[Any] = [None] * len(self.nodes)
        with torch.inference_mode():
            for i, node in enumerate(self.nodes):
                args = [self._resolve(a, env, x, weights) for a in node.args]
                kwargs = {k: self._resolve(v, env, x, weights) for k, v in node.kwargs.items()}
                if node.fn is None:
                    if not isinstance(args[0], (list, tuple)):
                        raise GraphRefused(f"node {i}: getitem on a single tensor")
                    env[i] = args[0][args[1]]
                elif graph_ops.output_count(node.op, args, kwargs) > graph_ops.MAX_OUTPUTS:
                    raise GraphRefused(f"node {i}: {node.op} would return over {graph_ops.MAX_OUTPUTS} tensors")
                else:
                    env[i] = node.fn(*args, **kwargs)
                if on_node is not None:
                    on_node(i, node, args, kwargs, env[i])
                for j in self.frees[i]:
                    env[j] = None
            return self._resolve(self.output, env, x, weights)

    def run(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits `(1, T, V)` for one `(1, T)` int64 window."""
        if self.analysis is None:
            raise RuntimeError("a graph runs only after `analyse` has checked it")
        if tokens.dtype != torch.int64 or tuple(tokens.shape) != self.input_shape:
            raise ValueError(f"expected int64 {self.input_shape}, got {tokens.dtype} {tuple(tokens.shape)}")
        return self._execute(tokens, self.tensors)

    def run_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Logits `(k, T, V)` of `k` windows `(k, T)` in one `vmap` call: each row through `run`, and `vmap` keeps
        rows independent, as long as every op's batching rule is right (`scorer` checks that against `run_each`)."""
        if rows.shape[0] == 1:
            return self.run(rows)
        return torch.func.vmap(lambda row: self.run(row.unsqueeze(0)).squeeze(0))(rows)

    def run_each(self, rows: torch.Tensor) -> torch.Tensor:
        """Logits `(k, T, V)` of `k` windows `(k, T)`, one call per window (no batching rule involved)."""
        return torch.cat([self.run(rows[i : i + 1]) for i in range(rows.shape[0])])

    def analyse(self, vocab_size: int, caps: Caps) -> Analysis:
        """Dry run on the meta device: output shape, counts and caps. Raises GraphRefused."""
        meter = _Meter(self.frees)
        meta_weights = [torch.empty(t.shape, dtype=t.dtype, device="meta") for t in self.tensors]
        try:
            out = self._execute(torch.empty(self.input_shape, dtype=torch.int64, device="meta"), meta_weights, meter)
        except GraphError:
            raise
        except Exception as error:  # noqa: BLE001 - a trusted op refusing the arguments it was given
            raise GraphRefused(f"the graph does not run: {first_line(error, 200)}") from None
        want = (*self.input_shape, vocab_size)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want or not out.dtype.is_floating_point:
            got = f"{out.dtype} {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise GraphRefused(f"forward() returns {got}; the scorer needs floating-point logits of shape {want}")
        tokens = math.prod(self.input_shape)
        used = [self.tensors[j] for j in self.used_tensors]
        analysis = Analysis(
            params=sum(t.numel() for t in used),
            weight_bytes=sum(t.numel() * t.element_size() for t in used),
            matmul_flops_per_token=meter.matmul / tokens,
            other_ops_per_token=meter.other / tokens,
            peak_bytes=meter.peak,
            nodes=len(self.nodes),
            dropped_nodes=self.dropped_nodes,
        )
        _check_caps(analysis, caps)
        self.analysis = analysis
        return analysis


def _check_caps(analysis: Analysis, caps: Caps) -> None:
    if analysis.peak_bytes > caps.max_peak_bytes:
        raise GraphRefused(
            f"forward() needs up to {analysis.peak_bytes / 2**20:.0f} MiB of live tensors, over the cap of "
            f"{caps.max_peak_bytes / 2**20:.0f} MiB"
        )
    if analysis.params > caps.max_params:
        raise GraphRefused(f"the graph reads {analysis.params:,} weights, over the cap of {caps.max_params:,}")
    if analysis.flops_per_token > caps.max_flops_per_token:
        raise GraphRefused(
            f"forward() costs {analysis.flops_per_token:.3g} FLOPs per token, over the cap of "
            f"{caps.max_flops_per_token:.3g}"
        )


@dataclass
class _Meter:
    """Counts FLOPs and live bytes while the dry run walks the nodes (views counted as new memory: a bound)."""

    frees: list[list[int]]
    matmul: int = 0
    other: int = 0
    live: int = 0
    peak: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def __call__(self, i: int, node: Node, args: list, kwargs: dict, out: Any) -> None:
        matmul, other = graph_ops.node_cost(node.op, args, kwargs, out)
        self.matmul += matmul
        self.other += other
        self.sizes[i] = sum(t.numel() * t.element_size() for t in graph_ops.tensors_in(out))
        self.live += self.sizes[i]
        self.peak = max(self.peak, self.live)
        self.live -= sum(self.sizes.get(j, 0) for j in self.frees[i])
