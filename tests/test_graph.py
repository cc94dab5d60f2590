"""The exported graph, in-process (fast): every recipe exports and scores exactly as eager, non-exportable edits
fail with how to fix them, and crafted files are refused without running anything from them.

The export is the harness's own code path (`graph_export.export_model`), the models are the real `train.py`
and recipe sources trained by their own `run_training` for two steps, and the scoring is the trusted
scorer's (`scorer.evaluate` on real held-out windows) compared with `prepare.evaluate_bpb` of the eager model.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import pickle
import random
import struct
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import prepare
from autoresearch.planner import recipes
from autoresearch.sandbox import graph, graph_export, scorer
from autoresearch_types import ExperimentConfig

REPO = Path(__file__).resolve().parent.parent
BASELINE = (REPO / "train.py").read_text()
TINY = ExperimentConfig(
    n_layer=2, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=2 * 4 * 32, vocab_size=512, eval_tokens=4096
)
CAPS = scorer.caps_for(TINY, 3072)


@pytest.fixture(scope="module")
def workdir(state_root: Path) -> Path:
    """A scratch dir for module files, batches and graphs (under the state dir, never /tmp)."""
    path = state_root / "graph-tests" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def data(tiny_bundle: Path, workdir: Path) -> dict:
    """The run's batches (as the harness hands them), the held-out windows and the byte table."""
    data_dir = workdir / "data"
    data_dir.mkdir()
    meta = prepare.load_meta(tiny_bundle / "data")
    (data_dir / "meta.json").write_text(json.dumps(meta))
    tokens = prepare.load_tokens(tiny_bundle / "data", "train")
    batches = prepare.make_batches(tokens, meta["bos_id"], TINY.batch_size, TINY.seq_len, TINY.max_steps, 0)
    np.save(data_dir / prepare.BATCHES_FILE, batches)
    val = prepare.load_tokens(tiny_bundle / "data", "val")
    return {
        "dir": str(data_dir),
        "val": val,
        "windows": prepare.eval_windows(val, TINY.seq_len, TINY.eval_tokens),
        "bytes": np.load(tiny_bundle / "tokenizer" / "token_bytes.npy"),
    }


def module_from(source: str, workdir: Path):
    """Import `source` as a fresh module (what the harness does with the edited train.py)."""
    name = f"edited_{uuid.uuid4().hex[:8]}"
    path = workdir / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def trained(source: str, data: dict, workdir: Path) -> nn.Module:
    torch.set_num_threads(1)
    model, _ = module_from(source, workdir).run_training(TINY, data["dir"])
    return model.eval()


def export_bytes(model: nn.Module, workdir: Path, seq_len: int = TINY.seq_len) -> bytes:
    path = workdir / f"{uuid.uuid4().hex[:8]}.graph"
    graph_export.export_model(model, seq_len, str(path))
    return path.read_bytes()


def evaluate(blob: bytes, data: dict, seed: int = 0, config: ExperimentConfig = TINY) -> scorer.Evaluation:
    return scorer.evaluate(blob, data["windows"], data["bytes"], config, CAPS, random.Random(seed))


def eager_bpb(model: nn.Module, data: dict) -> float:
    return prepare.evaluate_bpb(model, data["val"], data["bytes"], TINY.seq_len, eval_tokens=TINY.eval_tokens)


def one_per_family() -> str:
    source = BASELINE
    seen: set[str] = set()
    for recipe in recipes.RECIPES:
        if recipe.family not in seen and (out := recipe.apply(source)) is not None:
            source, _ = out, seen.add(recipe.family)
    return source


SOURCES = {"baseline": BASELINE, **{r.name: r.apply(BASELINE) for r in recipes.RECIPES}, "stack": one_per_family()}


# ---------------------------------------------------------------- honest models


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_recipe_exports_and_scores_exactly_as_eager(name: str, data: dict, workdir: Path) -> None:
    model = trained(SOURCES[name], data, workdir)
    blob = export_bytes(model, workdir)
    result = evaluate(blob, data)
    assert result.failure is None, result.failure
    assert result.metrics["probe_ok"] and result.metrics["probe_max_diff"] == 0.0 and result.metrics["consistent"]
    assert abs(result.metrics["val_bpb"] - eager_bpb(model, data)) < 1e-6
    program = graph.load_graph(blob)
    program.analyse(TINY.vocab_size, CAPS)
    rows = torch.from_numpy(data["windows"][:8, :-1].copy())
    with torch.no_grad():
        assert torch.equal(program.run_rows(rows), prepare.model_logits(model, rows)), "bitwise the eager logits"
    built = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    assert result.analysis.params == built, "what is built is counted, tied weights once"


def test_the_scored_function_is_stateless_and_ignores_batch_layout(data: dict, workdir: Path) -> None:
    program = graph.load_graph(export_bytes(trained(BASELINE, data, workdir), workdir))
    program.analyse(TINY.vocab_size, CAPS)
    a, b = (torch.from_numpy(data["windows"][i : i + 1, :-1].copy()) for i in (0, 1))
    first = program.run(a)
    program.run(b)
    assert torch.equal(program.run(a), first), "A, B, A: the second A is bitwise the first"
    rows = torch.from_numpy(data["windows"][:5, :-1].copy())
    assert torch.equal(program.run_rows(rows)[0], first[0]), "a row alone and inside a batch are bitwise equal"
    blob = export_bytes(trained(BASELINE, data, workdir), workdir)
    one, other = evaluate(blob, data, seed=1), evaluate(blob, data, seed=2)
    assert one.metrics["val_bpb"] == other.metrics["val_bpb"], "the metric does not depend on the random order"


def test_the_graph_counts_what_is_built_not_what_is_declared(data: dict, workdir: Path) -> None:
    import train

    small = export_bytes(train.build_model(TINY).eval(), workdir)
    declared_big = TINY.with_overrides({"n_layer": 8})
    builds_small = module_from(BASELINE.replace("range(config.n_layer)", "range(1)"), workdir).build_model(declared_big)
    built_big = train.build_model(declared_big).eval()
    measured = {}
    for name, blob in (("small", small), ("declares-8-builds-1", export_bytes(builds_small, workdir)),
                       ("builds-8", export_bytes(built_big, workdir))):  # fmt: skip
        program = graph.load_graph(blob)
        measured[name] = program.analyse(TINY.vocab_size, CAPS)
    assert measured["declares-8-builds-1"].flops_per_token < measured["small"].flops_per_token
    assert measured["builds-8"].flops_per_token > 2.5 * measured["small"].flops_per_token  # 8 layers, not 2
    assert measured["builds-8"].params == sum(p.numel() for p in built_big.parameters())
    hidden = export_bytes(HiddenMatmul(train.build_model(TINY)).eval(), workdir)
    program = graph.load_graph(hidden)
    extra = program.analyse(TINY.vocab_size, CAPS).flops_per_token - measured["small"].flops_per_token
    assert extra >= TINY.n_embd * TINY.vocab_size, "a matmul written as multiply-and-sum is still counted"


class HiddenMatmul(nn.Module):
    """An extra (d x vocab) layer written as broadcast-multiply-and-sum, so no matmul op appears."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base, self.w = base, nn.Parameter(torch.randn(TINY.n_embd, TINY.vocab_size) * 0.01)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        e = self.base.tok_emb(idx)
        return self.base(idx) + (e.unsqueeze(-1) * self.w).sum(-2)


class WritesLocals(nn.Module):
    """In-place writes on tensors forward() creates (not on weights): honest, and scored as eager."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.base(idx).clone()
        logits[:, :, 0] = -1e4  # never predict token 0
        bonus = torch.zeros_like(logits)
        bonus.scatter_(-1, idx.unsqueeze(-1), 0.5)  # a little weight on repeating the current token
        logits.masked_fill_(logits < -50, -50.0)
        return torch.relu_(logits + 60.0) + bonus


def test_in_place_writes_on_local_tensors_export_and_score_as_eager(data: dict, workdir: Path) -> None:
    model = WritesLocals(trained(BASELINE, data, workdir)).eval()
    result = evaluate(export_bytes(model, workdir), data)
    assert result.failure is None and result.metrics["probe_ok"] and result.metrics["consistent"], result
    assert abs(result.metrics["val_bpb"] - eager_bpb(model, data)) < 1e-6


# ---------------------------------------------------------------- edits that cannot be exported


class Stateful(nn.Module):
    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("memory", torch.zeros(TINY.vocab_size))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.base(idx)
        self.memory.mul_(0.9).add_(logits.mean((0, 1)))
        return logits + self.memory


class Branchy(nn.Module):
    def __init__(self, base: nn.Module, how: str) -> None:
        super().__init__()
        self.base, self.how = base, how

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.base(idx)
        if self.how == "if":
            return logits * 2 if idx.sum() > 5 else logits
        if self.how == "item":
            return logits * float(idx.max().item() > 3)
        if self.how == "dropout":
            return F.dropout(logits, 0.1, training=True)
        if self.how == "noise":
            return logits + torch.randn_like(logits)
        if self.how == "cond":
            return torch.cond(idx.sum() > 5, lambda x: x * 2, lambda x: x + 1, (logits,))
        if self.how == "nonzero":
            return logits + idx.nonzero().sum()
        return logits


HOW = {
    "if": "torch.export failed",
    "item": "torch.export failed",
    "dropout": "random",
    "noise": "random",
    "cond": "control flow",
    "nonzero": "",
}


@pytest.mark.parametrize("how", list(HOW))
def test_non_exportable_edits_fail_and_say_how_to_fix(how: str, workdir: Path) -> None:
    import train

    with pytest.raises(graph_export.ExportRefused) as refused:
        export_bytes(Branchy(train.build_model(TINY), how).eval(), workdir)
    assert HOW[how] in str(refused.value) and "How to fix" in str(refused.value), str(refused.value)
    assert "no Python `if`" in str(refused.value) and ".item()" in str(refused.value)


def test_a_buffer_written_in_forward_is_refused_as_state(workdir: Path) -> None:
    import train

    with pytest.raises(graph_export.ExportRefused, match="writes to 'memory'.*keep state"):
        export_bytes(Stateful(train.build_model(TINY)).eval(), workdir)


def test_a_custom_op_is_refused(workdir: Path) -> None:
    import train

    name = f"argraphtest{uuid.uuid4().hex[:6]}"
    lib = torch.library.Library(name, "DEF")
    lib.define("scale(Tensor x) -> Tensor")
    lib.impl("scale", lambda x: x * 2, "CompositeExplicitAutograd")
    lib.impl("scale", lambda x: torch.empty_like(x), "Meta")
    op = getattr(torch.ops, name).scale

    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = train.build_model(TINY)

        def forward(self, idx):
            return op(self.base(idx))

    with pytest.raises(graph_export.ExportRefused, match="custom op"):
        export_bytes(Custom().eval(), workdir)


def test_a_python_cache_is_frozen_into_the_graph_and_cannot_carry_state(data: dict, workdir: Path) -> None:
    """A Python-side memo is traced once; the scored graph keeps no state, so scoring it twice gives one number."""
    import train

    class Memo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base, self.cache = train.build_model(TINY), {}

        def forward(self, idx):
            logits = self.base(idx)
            if "prev" in self.cache:
                logits = logits + 0.5 * self.cache["prev"]
            self.cache["prev"] = logits.detach()
            return logits

    blob = export_bytes(Memo().eval(), workdir)
    first, second = evaluate(blob, data, seed=3), evaluate(blob, data, seed=4)
    assert first.failure is None and first.metrics["consistent"] and first.metrics["probe_ok"]
    assert first.metrics["val_bpb"] == second.metrics["val_bpb"]


# ---------------------------------------------------------------- causality


class LookAhead(nn.Module):
    """Adds `boost` to the true next token's logit at the given positions only."""

    def __init__(self, base: nn.Module, positions: list[int], boost: float = 30.0) -> None:
        super().__init__()
        self.base, self.boost = base, boost
        gate = torch.zeros(TINY.seq_len)
        gate[positions] = 1.0
        self.register_buffer("gate", gate)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.base(idx)
        nxt = torch.cat([idx[:, 1:], torch.zeros_like(idx[:, :1])], dim=1)
        return logits + self.boost * self.gate.view(1, -1, 1) * F.one_hot(nxt, TINY.vocab_size).float()


class NaNChannel(nn.Module):
    """Causal SDPA by the book, yet 0 * inf = NaN tells every position whether token 7 occurs later."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.base(idx)
        b, t = idx.shape
        q = k = torch.ones(b, 1, t, 4)
        v = torch.where((idx == 7).view(b, 1, t, 1), torch.full_like(q, math_inf()), torch.zeros_like(q))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        later = (y != y).any(-1).view(b, t, 1).float()
        return logits + 4.0 * later * F.one_hot(torch.full_like(idx, 7), TINY.vocab_size).float()


def math_inf() -> float:
    return float("inf")


@pytest.mark.parametrize("seed", range(3))
def test_a_look_ahead_at_one_position_is_a_leak(seed: int, data: dict, workdir: Path) -> None:
    """The cut probes are bitwise, and half of them aim at confident positions: one leaking position is caught."""
    model = LookAhead(trained(BASELINE, data, workdir), [TINY.seq_len - 2]).eval()
    result = evaluate(export_bytes(model, workdir), data, seed=seed)
    assert result.failure is None and result.metrics["probe_ok"] is False, result.metrics
    assert result.metrics["probe_failures"] >= 1


def test_a_nan_channel_behind_a_causal_mask_is_a_leak(data: dict, workdir: Path) -> None:
    result = evaluate(export_bytes(NaNChannel(trained(BASELINE, data, workdir)).eval(), workdir), data)
    assert result.failure is None and result.metrics["probe_ok"] is False, result.metrics


def test_probes_change_only_the_tokens_after_their_cut() -> None:
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 50, (6, 16))
    cuts = [0, 3, 7, 14, 14, 9]
    probes = scorer.probe_rows(inputs, cuts, 50, gen)
    for r, cut in enumerate(cuts):
        assert torch.equal(probes[r, : cut + 1], inputs[r, : cut + 1])
        assert probes[r, cut + 1] != inputs[r, cut + 1], "the token right after the cut always changes"
    rng = random.Random(0)
    nats = torch.full((16,), 6.0)
    nats[11] = 0.0  # the model is sure of position 11's next token
    hits = sum(scorer.draw_cut(nats, rng) == 11 for _ in range(400))
    assert hits > 150, "half the cuts aim at confident positions"
    assert all(0 <= scorer.draw_cut(nats, rng) <= 14 for _ in range(100))


# ---------------------------------------------------------------- crafted files


@pytest.fixture(scope="module")
def honest_blob(workdir: Path) -> bytes:
    import train

    return export_bytes(train.build_model(TINY).eval(), workdir)


def split(blob: bytes) -> tuple[dict, bytes]:
    _, length = graph_export.PREFIX.unpack_from(blob)
    start = graph_export.PREFIX.size + length
    return json.loads(blob[graph_export.PREFIX.size : start]), blob[start + (-start % graph_export.ALIGN) :]


def join(header: dict, tensors: bytes, raw_header: bytes | None = None) -> bytes:
    head = raw_header if raw_header is not None else json.dumps(header).encode()
    prefix = graph_export.PREFIX.pack(graph_export.MAGIC, len(head)) + head
    return prefix + b"\0" * (-len(prefix) % graph_export.ALIGN) + tensors


def edited(blob: bytes, change) -> bytes:
    header, tensors = split(blob)
    change(header)
    return join(header, tensors)


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path(os.environ[prepare.STATE_DIR_ENV]) / f"graph-payload-{uuid.uuid4().hex[:8]}"


def set_op(index: int, op: str, args=None, kwargs=None):
    def change(header):
        node = header["nodes"][index]
        node["op"] = op
        node["args"] = node["args"] if args is None else args
        node["kwargs"] = node["kwargs"] if kwargs is None else kwargs

    return change


def first(header: dict, op: str) -> int:
    return next(i for i, n in enumerate(header["nodes"]) if n["op"] == op)


def crafted(blob: bytes, workdir: Path) -> dict[str, tuple[bytes, str]]:
    """Hostile files, each with the outcome it must get."""
    header, tensors = split(blob)
    linear = first(header, "aten.linear.default")
    sdpa = first(header, "aten.scaled_dot_product_attention.default")
    zip_path = workdir / "torch-export.pt2"
    import train

    torch.export.save(
        torch.export.export(train.build_model(TINY).eval(), (torch.zeros(1, 32, dtype=torch.long),)), zip_path
    )
    nan = bytearray(tensors)
    nan[0:4] = struct.pack("<f", float("nan"))
    deep = b'{"format": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    return {
        "pickle": (pickle.dumps(Payload()), "tampered"),
        "torch.save": (_torch_save(workdir), "tampered"),
        "torch.export.save": (zip_path.read_bytes(), "tampered"),
        "op builtins.eval": (edited(blob, set_op(linear, "builtins.eval")), "unexportable"),
        "op torch.load": (edited(blob, set_op(linear, "torch.load")), "unexportable"),
        "custom op": (edited(blob, set_op(linear, "research.scale.default")), "unexportable"),
        "in-place add_": (edited(blob, set_op(linear, "aten.add_.Tensor")), "unexportable"),
        "copy_ into a weight": (
            edited(blob, set_op(linear, "aten.copy_.default", [{"tensor": 0}, {"tensor": 1}])),
            "unexportable",
        ),
        "index_put_": (edited(blob, set_op(linear, "aten.index_put_.default")), "unexportable"),
        "an out= variant": (edited(blob, set_op(linear, "aten.linear.out")), "unexportable"),
        "bernoulli": (edited(blob, set_op(linear, "aten.bernoulli.default")), "unexportable"),
        "empty": (edited(blob, set_op(linear, "aten.empty.memory_format")), "unexportable"),
        "as_strided": (edited(blob, set_op(linear, "aten.as_strided.default")), "unexportable"),
        "dropout on": (
            edited(blob, set_op(linear, "aten.dropout.default", [{"node": 0}, 0.5, True], {})),
            "unexportable",
        ),
        "sdpa dropout": (edited(blob, lambda h: h["nodes"][sdpa]["kwargs"].update(dropout_p=0.5)), "unexportable"),
        "unknown keyword": (edited(blob, lambda h: h["nodes"][linear]["kwargs"].update(hook="os.system")), "tampered"),
        "forward reference (cycle)": (
            edited(blob, lambda h: h["nodes"][linear]["args"].__setitem__(0, {"node": linear})),
            "tampered",
        ),
        "reference past the end": (edited(blob, lambda h: h.__setitem__("output", {"node": 10**6})), "tampered"),
        "weight index out of range": (
            edited(blob, lambda h: h["nodes"][linear]["args"].__setitem__(1, {"tensor": 999})),
            "tampered",
        ),
        "tensor past the file": (edited(blob, lambda h: h["tensors"][-1].__setitem__("offset", 1 << 40)), "tampered"),
        "overlapping tensors": (edited(blob, lambda h: h["tensors"][1].__setitem__("offset", 0)), "tampered"),
        "oversized shape": (
            edited(blob, lambda h: h["tensors"][0].__setitem__("shape", [1 << 39, 1 << 39])),
            "tampered",
        ),
        "64 GiB intermediate": (edited(blob, _huge_intermediate), "unexportable"),
        "a trillion-way unbind": (edited(blob, _huge_unbind), "unexportable"),
        "getitem on a weight": (edited(blob, set_op(linear, "getitem", [{"tensor": 0}, 0], {})), "tampered"),
        "unknown tag": (
            edited(blob, lambda h: h["nodes"][linear]["args"].__setitem__(0, {"callable": "os.system"})),
            "tampered",
        ),
        "JSON bomb": (join({}, tensors, raw_header=deep), "tampered"),
        "JSON NaN": (join({}, tensors, raw_header=json.dumps(header).replace("1e-05", "NaN").encode()), "tampered"),
        "header past the end": (graph_export.PREFIX.pack(graph_export.MAGIC, 1 << 40) + b"{}", "tampered"),
        "wrong output": (edited(blob, lambda h: h.__setitem__("output", {"input": 0})), "unexportable"),
        "exported at another shape": (edited(blob, lambda h: h["input"].__setitem__("shape", [2, 32])), "tampered"),
        "NaN weights": (join(header, bytes(nan)), "implausible"),
    }


def _torch_save(workdir: Path) -> bytes:
    path = workdir / "payload.pt"
    torch.save({"weights": Payload()}, path)
    return path.read_bytes()


def _huge_intermediate(header: dict) -> None:
    """A (2^18, 2^16) float32 `full` (64 GiB), summed away and added to the output."""
    nodes = header["nodes"]
    out = header["output"]["node"]
    nodes.append({"op": "aten.full.default", "args": [[1 << 18, 1 << 16], 0.0], "kwargs": {}})
    nodes.append({"op": "aten.sum.default", "args": [{"node": len(nodes) - 1}], "kwargs": {}})
    nodes.append({"op": "aten.add.Tensor", "args": [{"node": out}, {"node": len(nodes) - 1}], "kwargs": {}})
    header["output"] = {"node": len(nodes) - 1}


def _huge_unbind(header: dict) -> None:
    """`unbind` of a 2^40-long dimension: 2^40 tensors, even on the meta device, unless refused before it runs."""
    nodes = header["nodes"]
    out = header["output"]["node"]
    nodes.append({"op": "aten.full.default", "args": [[1 << 40], 0.0], "kwargs": {}})
    nodes.append({"op": "aten.unbind.int", "args": [{"node": len(nodes) - 1}], "kwargs": {}})
    nodes.append({"op": "getitem", "args": [{"node": len(nodes) - 1}, 0], "kwargs": {}})
    nodes.append({"op": "aten.add.Tensor", "args": [{"node": out}, {"node": len(nodes) - 1}], "kwargs": {}})
    header["output"] = {"node": len(nodes) - 1}


def test_crafted_files_are_refused_without_running_anything(honest_blob: bytes, data: dict, workdir: Path) -> None:
    """Each crafted file ends with its outcome; no pickle, import, exec or process start happens while loading."""
    evaluate(honest_blob, data)  # torch's lazy imports happen here, not inside the audited calls below
    events: list[str] = []
    watching = [False]
    forbidden = ("pickle.find_class", "exec", "compile", "os.system", "subprocess.Popen", "import", "ctypes.dlopen")

    def hook(event: str, args) -> None:
        if watching[0] and event.startswith(forbidden):
            events.append(f"{event} {str(args)[:80]}")

    sys.addaudithook(hook)
    watching[0] = True
    pickle.loads(pickle.dumps(collections.OrderedDict()))  # control: the hook does see an unpickling
    watching[0] = False
    assert any(e.startswith("pickle.find_class") for e in events), events
    events.clear()
    for name, (blob, outcome) in crafted(honest_blob, workdir).items():
        watching[0] = True
        try:
            result = evaluate(blob, data)
        finally:
            watching[0] = False
        assert result.failure is not None and result.failure[0] == outcome, (name, result.failure, result.metrics)
        assert events == [], (name, events)
    assert not MARKER.exists(), "a payload ran"


def test_refusals_name_the_reason(honest_blob: bytes, data: dict, workdir: Path) -> None:
    files = crafted(honest_blob, workdir)
    reasons = {name: evaluate(files[name][0], data).failure[1] for name in files}
    assert "in place" in reasons["in-place add_"] and "random" in reasons["bernoulli"]
    assert "not an ATen op" in reasons["op builtins.eval"] and "allowlist" in reasons["as_strided"]
    assert "MiB of live tensors" in reasons["64 GiB intermediate"] and "NaN" in reasons["NaN weights"]
    assert "dropout" in reasons["dropout on"] and "logits of shape" in reasons["wrong output"]


def test_caps_refuse_a_graph_that_costs_too_much(honest_blob: bytes, data: dict) -> None:
    tight = graph.Caps(max_params=1000, max_flops_per_token=1e12, max_peak_bytes=1 << 30)
    with pytest.raises(graph.GraphRefused, match="weights, over the cap"):
        graph.load_graph(honest_blob).analyse(TINY.vocab_size, tight)
    slow = graph.Caps(max_params=10**9, max_flops_per_token=1000, max_peak_bytes=1 << 30)
    with pytest.raises(graph.GraphRefused, match="FLOPs per token"):
        graph.load_graph(honest_blob).analyse(TINY.vocab_size, slow)
    caps = scorer.caps_for(ExperimentConfig(), 3072)
    assert caps.max_flops_per_token > scorer.nominal_flops_per_token(ExperimentConfig(n_layer=8, n_embd=384))
