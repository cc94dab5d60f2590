"""The op allowlist of a scored graph: which ATen overloads it may call, under which literal arguments, at what cost.

Trusted and static. An op name read from a graph file is only ever a key into `OPS`, a dict built here
from literal strings: nothing resolves a name from a file with getattr or import. Every listed op is
checked when this module loads: ATen namespace, no argument its schema marks as written (no in-place
or `out=` variant: a graph cannot keep state in its weights between calls), no random number
generator unless a literal argument switches it off (dropout with `train=False`, SDPA with
`dropout_p=0`, checked per node by `check_constraints`), and no output whose shape depends on data.

Left out on purpose: `empty*` (uninitialised memory), `rand*`/`bernoulli`/`native_dropout` (random),
in-place and `out=` ops, `copy_`, `index_put_`, `set_`, `resize_` (writes), `as_strided` (raw strides),
`nonzero`, `masked_select`, `unique`, `item` (data-dependent shapes or host syncs), control flow
(`cond`, `while_loop`, `map`), custom and Triton ops. An op an honest edit needs can be added here
with its cost.

Cost model, from the shapes of a dry run on the meta device: a matmul-like op counts 2 FLOPs per
multiply-add; a view or shape op counts nothing; every other op counts one operation per element of
its largest tensor argument or output (so a matmul written as broadcast-multiply-and-sum still costs
about what it computes).
"""

from __future__ import annotations

import math
from typing import Any

import torch

VIEWS = """
view.default reshape.default _unsafe_view.default permute.default transpose.int t.default unsqueeze.default
squeeze.dim squeeze.dims squeeze.default flatten.using_ints unflatten.int expand.default expand_as.default
slice.Tensor select.int narrow.default split.Tensor split_with_sizes.default chunk.default unbind.int
movedim.int alias.default detach.default view_as.default unsafe_split.Tensor tensor_split.sections
diagonal.default
"""
SHAPE = """
cat.default stack.default repeat.default flip.default roll.default contiguous.default clone.default
lift_fresh_copy.default hstack.default vstack.default constant_pad_nd.default pad.default
repeat_interleave.self_int
"""
ELEMENTWISE = """
add.Tensor add.Scalar sub.Tensor sub.Scalar rsub.Tensor rsub.Scalar mul.Tensor mul.Scalar div.Tensor
div.Scalar div.Tensor_mode div.Scalar_mode neg.default pow.Tensor_Scalar pow.Tensor_Tensor pow.Scalar
sqrt.default rsqrt.default exp.default exp2.default log.default log2.default log1p.default expm1.default
tanh.default sigmoid.default sin.default cos.default abs.default sign.default square.default
reciprocal.default clamp.default clamp.Tensor clamp_min.default clamp_max.default maximum.default
minimum.default where.self where.ScalarOther where.ScalarSelf where.Scalar masked_fill.Scalar
masked_fill.Tensor eq.Scalar eq.Tensor ne.Scalar ne.Tensor lt.Scalar lt.Tensor le.Scalar le.Tensor
gt.Scalar gt.Tensor ge.Scalar ge.Tensor logical_not.default logical_and.default logical_or.default
logical_xor.default bitwise_and.Tensor bitwise_or.Tensor bitwise_xor.Tensor bitwise_not.default
__and__.Tensor __or__.Tensor __xor__.Tensor floor.default ceil.default round.default trunc.default
remainder.Scalar remainder.Tensor fmod.Scalar fmod.Tensor floor_divide.default erf.default lerp.Scalar
lerp.Tensor addcmul.default addcdiv.default _to_copy.default to.dtype to.dtype_layout to.device
type_as.default gelu.default silu.default relu.default leaky_relu.default softplus.default mish.default
hardtanh.default elu.default hardswish.default hardsigmoid.default logit.default softmax.int
log_softmax.int _softmax.default _log_softmax.default layer_norm.default rms_norm.default
native_layer_norm.default group_norm.default dropout.default feature_dropout.default alpha_dropout.default
"""
REDUCTION = """
sum.dim_IntList sum.default mean.dim mean.default amax.default amin.default max.dim min.dim max.default
min.default var.correction var.dim std.correction std.dim linalg_vector_norm.default norm.ScalarOpt_dim
cumsum.default cumprod.default logsumexp.default argmax.default argmin.default prod.dim_int prod.default
any.dim any.default all.dim all.default logcumsumexp.default
"""
INDEXING = """
embedding.default index_select.default gather.default index.Tensor take_along_dim.default one_hot.default
tril.default triu.default
"""
SCATTER = """
scatter.value scatter.src scatter.reduce scatter.value_reduce scatter_add.default scatter_reduce.two
index_add.default index_copy.default index_fill.int_Scalar index_fill.int_Tensor index_put.default
slice_scatter.default select_scatter.default diagonal_scatter.default masked_scatter.default fill.Scalar
fill.Tensor copy.default
"""
"""The out-of-place forms `run_decompositions` turns in-place writes on intermediates into (`x[:, 0] = v` becomes
`select_scatter`, `t.scatter_(...)` becomes `scatter`): each returns a new tensor and writes nothing."""
FACTORY = """
arange.default arange.start arange.start_step full.default zeros.default ones.default scalar_tensor.default
zeros_like.default ones_like.default full_like.default eye.default linspace.default
"""
MATMUL = """
linear.default matmul.default mm.default outer.default bmm.default addmm.default baddbmm.default
einsum.default scaled_dot_product_attention.default
"""

RANDOM_UNLESS_OFF = {
    "aten.dropout.default": "train",
    "aten.feature_dropout.default": "train",
    "aten.alpha_dropout.default": "train",
    "aten.scaled_dot_product_attention.default": "dropout_p",
}
"""Ops tagged random that are deterministic when this literal argument switches the randomness off."""
SHAPE_FIXED_BY_CHECKS = {"aten.index.Tensor", "aten.one_hot.default"}
"""Tagged dynamic-output-shape, but fixed here: a boolean index has no meta kernel, so the dry run refuses it
(integer indices give the index's shape), and `one_hot` must have a literal `num_classes`."""
REFERENCE_ONLY = {"aten.view.default": "aten.reshape.default", "aten._unsafe_view.default": "aten.reshape.default"}
"""View ops run as `reshape`. Nothing in a scored graph writes, so aliasing cannot be observed and a copy
is exact; `view` alone would fail where the exporting kernel left other strides than the scoring one
(export drops a `.contiguous()` that was a no-op there), which would tie a graph to one machine."""


def _aten(qualname: str) -> torch._ops.OpOverload:
    packet, overload = qualname.split(".")
    return getattr(getattr(torch.ops.aten, packet), overload)


def _checked(qualname: str) -> torch._ops.OpOverload | None:
    """The trusted overload for a listed name, after the purity checks (None if this torch lacks it)."""
    try:
        op = _aten(qualname)
    except (AttributeError, RuntimeError):
        return None
    name = f"aten.{qualname}"
    schema = op._schema
    if schema.name.split("::")[0] != "aten":
        raise AssertionError(f"{name} is not an ATen op")
    if any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments):
        raise AssertionError(f"{name} writes one of its arguments")
    if torch.Tag.nondeterministic_seeded in op.tags and name not in RANDOM_UNLESS_OFF:
        raise AssertionError(f"{name} is random")
    shaped_by_data = torch.Tag.dynamic_output_shape in op.tags and name not in SHAPE_FIXED_BY_CHECKS
    if torch.Tag.data_dependent_output in op.tags or shaped_by_data:
        raise AssertionError(f"{name} has a data-dependent output")
    return op


def _build() -> dict[str, torch._ops.OpOverload]:
    ops = {}
    for block in (VIEWS, SHAPE, ELEMENTWISE, REDUCTION, INDEXING, SCATTER, FACTORY, MATMUL):
        for qualname in block.split():
            op = _checked(qualname)
            if op is not None:
                ops[f"aten.{qualname}"] = op
    for name, runs_as in REFERENCE_ONLY.items():
        ops[name] = ops[runs_as]
    return ops


OPS: dict[str, torch._ops.OpOverload] = _build()
"""Allowed op name (as written in a file, e.g. `aten.linear.default`) -> the trusted overload that runs it."""
SCHEMAS: dict[str, torch._C.FunctionSchema] = {name: _aten(name.removeprefix("aten."))._schema for name in OPS}
"""The schema each name was written against (a `view` keeps its own argument names, though it runs as reshape)."""
FREE = {f"aten.{q}" for q in VIEWS.split()}
"""View ops: no arithmetic, so no cost."""
MATMULS = {f"aten.{q}" for q in MATMUL.split()}
LOOKUPS = {f"aten.{q}" for q in INDEXING.split()} - {"aten.one_hot.default", "aten.tril.default", "aten.triu.default"}
GETITEM = "getitem"
"""The one pseudo-op: `getitem(node, k)` takes output `k` of a multi-output op."""


def explain_refusal(name: str) -> str:
    """Why an op name is not allowed, in the words an agent can act on (from the name alone: never resolved)."""
    packet = name.split(".")[1] if name.count(".") == 2 else name
    if not name.startswith("aten."):
        return f"op {name[:80]!r} is not an ATen op (custom, Triton and Python ops cannot be scored)"
    if packet.endswith("_") or name.endswith(".out"):
        return f"op {name} writes a tensor in place (a scored graph may not keep state)"
    if any(word in packet for word in ("rand", "bernoulli", "normal", "multinomial", "native_dropout", "poisson")):
        return f"op {name} is random (forward() must be deterministic in eval mode)"
    if packet in ("nonzero", "masked_select", "unique", "item", "_local_scalar_dense", "unique_consecutive"):
        return f"op {name} has a data-dependent output shape"
    return f"op {name[:80]} is not on the scorer's allowlist of pure ops"


# ------------------------------------------------------------------------------------ literal constraints


def literal(name: str, args: list, kwargs: dict, arg: str, default: Any = None) -> Any:
    """Argument `arg` of a call to `name` as written in the file (positional or keyword), else `default`."""
    for i, spec in enumerate(SCHEMAS[name].arguments):
        if spec.name == arg:
            if i < len(args):
                return args[i]
            return kwargs.get(arg, default)
    raise KeyError(arg)


def check_constraints(name: str, args: list, kwargs: dict) -> str | None:
    """Why this call is not a pure function of its inputs (None when it is), from its literal arguments."""
    switch = RANDOM_UNLESS_OFF.get(name)
    if switch == "train" and literal(name, args, kwargs, "train") is not False:
        return f"{name} with train not literally False is random (dropout must be off in eval mode)"
    if switch == "dropout_p":
        p = literal(name, args, kwargs, "dropout_p", 0.0)
        if type(p) not in (int, float) or p != 0:
            return f"{name} with dropout_p != 0 is random (pass dropout_p=0.0 when not training)"
    if name == "aten.one_hot.default":
        n = literal(name, args, kwargs, "num_classes", -1)
        if type(n) is not int or n <= 0:
            return "one_hot needs a literal num_classes (else its shape depends on the data)"
    return None


MAX_OUTPUTS = 1 << 16
"""The most tensors one call may return (a split of a huge dimension would build that many, even on meta)."""


def output_count(name: str, args: list, kwargs: dict) -> int:
    """How many tensors a multi-output call returns, from its (resolved) arguments, before it runs; 1 otherwise."""
    if name not in ("aten.unbind.int", "aten.split.Tensor", "aten.unsafe_split.Tensor", "aten.chunk.default",
                    "aten.tensor_split.sections"):  # fmt: skip
        return 1
    x = args[0]
    dim = literal(name, args, kwargs, "dim", 0)
    if not isinstance(x, torch.Tensor) or type(dim) is not int or not -x.dim() <= dim < max(1, x.dim()):
        return 1  # the op itself refuses these
    size = x.shape[dim] if x.dim() else 1
    if name == "aten.unbind.int":
        return size
    count = literal(
        name, args, kwargs, "split_size" if "split" in name else ("chunks" if "chunk" in name else "sections")
    )
    if type(count) is not int or count <= 0:
        return 1
    return -(-size // count) if "split" in name else count


# ------------------------------------------------------------------------------------------------ costs


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) argument or output."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    return []


def _einsum_flops(equation: str, operands: list[torch.Tensor]) -> int:
    """2 x the product of every index's size (an upper bound for any contraction order)."""
    lhs = equation.replace(" ", "").split("->")[0]
    sizes: dict[str, int] = {}
    for term, t in zip(lhs.split(","), operands, strict=False):
        dims = list(t.shape)
        head, _, tail = term.partition("...")
        tail_letters = [c for c in tail if c.isalpha()]
        for c, d in zip(head, dims, strict=False):
            sizes[c] = d
        for c, d in zip(tail_letters, dims[len(dims) - len(tail_letters) :], strict=False):
            sizes[c] = d
        if "..." in term:
            middle = math.prod(dims[len(head) : len(dims) - len(tail_letters)])
            sizes["..."] = max(sizes.get("...", 1), middle)
    return 2 * math.prod(sizes.values())


def matmul_flops(name: str, args: list, out: Any) -> int:
    """FLOPs (2 per multiply-add) of a matmul-like call, from real or meta shapes."""
    numel = out.numel() if isinstance(out, torch.Tensor) else 0
    if name == "aten.linear.default":
        return 2 * args[0].numel() * args[1].shape[0]
    if name == "aten.outer.default":
        return 2 * numel
    if name in ("aten.mm.default", "aten.bmm.default", "aten.matmul.default"):
        return 2 * numel * args[0].shape[-1]
    if name in ("aten.addmm.default", "aten.baddbmm.default"):
        return 2 * numel * args[1].shape[-1]
    if name == "aten.einsum.default":
        return _einsum_flops(args[0], list(args[1]))
    if name == "aten.scaled_dot_product_attention.default":
        q, k, v = args[0], args[1], args[2]
        rows = math.prod(q.shape[:-2]) * q.shape[-2] * k.shape[-2]
        return 2 * rows * (q.shape[-1] + v.shape[-1])
    return 0


def node_cost(name: str, args: list, kwargs: dict, out: Any) -> tuple[int, int]:
    """(matmul FLOPs, other element operations) of one call. A lookup costs what it reads out, not the size of
    the table it reads from (a large table would otherwise inflate the compute a run is allowed)."""
    if name in MATMULS:
        return matmul_flops(name, args, out), 0
    if name in FREE or name == GETITEM:
        return 0, 0
    if name in LOOKUPS:
        return 0, sum(t.numel() for t in tensors_in(out))
    sizes = [t.numel() for t in tensors_in(list(args)) + tensors_in(list(kwargs.values())) + tensors_in(out)]
    return 0, max(sizes, default=0)
