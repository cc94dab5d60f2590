"""Hostile `train.py` files against the real sandbox and scorer: each is contained or flagged, never a forged success.

Every attack runs under every isolating backend available here (`bubblewrap`, `userns`). Where a
backend cannot contain an attack, the test skips it with the sentence `backends.missing_guarantees`
gives for that backend, so the skip is the documented gap and not a silent pass. An attack is
*contained* when the run succeeds with exactly the number an honest evaluation of its own weights gives
(the kept graph's weights loaded into the trusted baseline architecture and scored by
`prepare.evaluate_bpb`) and bounded fields; *flagged* when it ends `leak`, `tampered`, `implausible`,
`unexportable`, `over_budget` or `crash` with no `val_bpb`.

Scoring runs no code written by the agent: the harness exports the trained model's forward pass as a
graph, and the trusted scorer evaluates that graph itself, after every process of the run is dead. So the
attacks of the model-server era (a stateful memoiser, a covert channel between two servers, training at
serve time) have nothing left to run in; the tests below show each ends contained or refused. Extra passes
over the handed batches and a false config declaration are `over_budget` (`test_validity.py`, which needs
a calibrated baseline).

Each hostile source writes what it saw to `observed.json` in its own work dir; runs are kept
(`keep_workdir`) just long enough to read those files. State lives under the tests' state dir.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import prepare
import train
from autoresearch.sandbox import backends, graph, scorer
from autoresearch.sandbox import experiment as sandbox
from autoresearch_types import ExperimentConfig, ExperimentResult

REPO = Path(__file__).resolve().parent.parent
BASELINE = (REPO / "train.py").read_text()
TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
ISOLATING = [b for b in ("bubblewrap", "userns") if b in backends.available_backends()]
FLAGGED = ("leak", "tampered", "implausible", "unexportable", "crash")
MEMORY_MB = 3072
CONCURRENT_RUNS = 2

pytestmark = [pytest.mark.timeout(1200), pytest.mark.parametrize("backend", ISOLATING)]


@dataclass
class Attack:
    """What one hostile run ended as, what its code observed, and the honest score of the weights it kept."""

    result: ExperimentResult
    observed: dict[str, dict]
    honest_of_weights: float | None = None


def _observed(root: Path) -> dict[str, dict]:
    out = {}
    path = root / "train" / "observed.json"
    if path.is_file() and not path.is_symlink():
        out["train"] = json.loads(path.read_text())
    return out


def honest_evaluation(kept: Path, bundle: Path) -> float | None:
    """`prepare.evaluate_bpb` of the trusted baseline architecture holding the kept graph's weights, or None when
    those weights do not fit it (another architecture: then only the graph itself defines the model). Constants
    the graph holds besides the baseline's weights are ignored here: if they change its function, the score
    and this evaluation differ, and `assert_contained` says so."""
    torch.set_num_threads(1)
    model = train.build_model(TINY).eval()
    program = graph.load_graph(kept.read_bytes())
    try:
        missing, _ = model.load_state_dict(program.weights(), strict=False)
    except RuntimeError:  # a weight of another shape
        return None
    if missing:
        return None
    val = prepare.load_tokens(bundle / "data", "val")
    table = np.load(bundle / "tokenizer" / "token_bytes.npy")
    return prepare.evaluate_bpb(model, val, table, TINY.seq_len, eval_tokens=TINY.eval_tokens)


def run_attacks(bundle: Path, backend: str, sources: dict[str, str], **kw) -> dict[str, Attack]:
    """Run every source (two at a time) with its work dir and graph kept; return results, observations and the
    honest score of each kept graph's weights, then clean up."""
    names = {key: f"adv-{key}-{uuid.uuid4().hex[:8]}" for key in sources}

    async def one(key: str, gate: asyncio.Semaphore) -> ExperimentResult:
        options = {"cpu": 1, "memory_mb": MEMORY_MB, "deadline_s": 180.0, "keep_workdir": True}
        spec = sandbox.SandboxSpec(
            sources[key], TINY, str(bundle / "data"), str(bundle / "tokenizer"), backend=backend, run_name=names[key]
        )
        spec = dataclasses.replace(spec, digests=prepare.bundle_digests(bundle), keep_checkpoint=True)
        spec = dataclasses.replace(spec, **{**options, **kw})
        async with gate:
            return await sandbox.run_sandboxed(spec)

    async def all_of_them() -> list[ExperimentResult]:
        gate = asyncio.Semaphore(CONCURRENT_RUNS)
        return await asyncio.gather(*(one(key, gate) for key in sources))

    attacks = {}
    try:
        for key, result in zip(sources, asyncio.run(all_of_them()), strict=True):
            attacks[key] = Attack(result, _observed(sandbox.runs_root() / names[key]))
            if result.checkpoint:
                if result.outcome == "success":
                    attacks[key].honest_of_weights = honest_evaluation(Path(result.checkpoint), bundle)
                Path(result.checkpoint).unlink(missing_ok=True)
    finally:
        for name in names.values():
            shutil.rmtree(sandbox.runs_root() / name, ignore_errors=True)
    return attacks


@pytest.fixture(scope="module")
def honest(tiny_bundle: Path) -> float:
    """The honest baseline's `val_bpb` (training is deterministic, so every backend gives exactly this)."""
    spec = sandbox.SandboxSpec(BASELINE, TINY, str(tiny_bundle / "data"), str(tiny_bundle / "tokenizer"))
    spec = dataclasses.replace(spec, digests=prepare.bundle_digests(tiny_bundle))
    result = asyncio.run(sandbox.run_sandboxed(spec))
    assert result.outcome == "success", result.message
    return result.val_bpb


def with_code(module_code: str, **values: object) -> str:
    """The baseline plus `module_code` (placeholders `NAME` replaced by `repr(values[NAME])`)."""
    code = textwrap.dedent(module_code)
    for name, value in values.items():
        code = code.replace(name, repr(value))
    return BASELINE + "\n\n" + code


OBSERVE = """
import json as _obs_json
import os as _obs_os


def _observe(key, value):
    seen = {}
    if _obs_os.path.exists("observed.json"):
        with open("observed.json") as fh:
            seen = _obs_json.load(fh)
    seen[key] = value
    with open("observed.json", "w") as fh:
        _obs_json.dump(seen, fh)


def _attempt(fn):
    try:
        return "ok: " + repr(fn())[:200]
    except Exception as exc:
        return "refused: " + repr(exc)[:200]
"""


def assert_contained(attack: Attack, honest: float | None = None) -> None:
    """Succeeded with exactly the honest evaluation of its weights (and `honest`, when given), bounded fields."""
    result = attack.result
    assert result.outcome == "success", (result.outcome, result.message, result.stderr_tail[-800:])
    assert attack.honest_of_weights is not None, "the kept weights fit the baseline architecture"
    assert abs(result.val_bpb - attack.honest_of_weights) < 1e-6, (result.val_bpb, attack.honest_of_weights)
    if honest is not None:
        assert abs(result.val_bpb - honest) < 1e-9, (result.val_bpb, honest)
    assert 0 <= result.steps <= TINY.max_steps and result.device in sandbox.DEVICES
    built = sum(p.numel() for p in train.build_model(TINY).parameters())
    assert built <= result.n_params <= built + 64, "counted from the graph (with any constant it computes with)"
    for value in (result.train_seconds, result.train_cpu_s, result.eval_seconds):
        assert math.isfinite(value) and value >= 0
    assert 0 <= result.peak_memory_mb <= MEMORY_MB and 0 <= result.peak_virtual_mb <= MEMORY_MB


def assert_flagged(attack: Attack, outcomes: tuple[str, ...] = FLAGGED) -> None:
    result = attack.result
    assert result.outcome in outcomes, (result.outcome, result.message, result.stderr_tail[-800:])
    assert result.val_bpb is None


def assert_contained_or_flagged(attack: Attack, outcomes: tuple[str, ...] = FLAGGED) -> None:
    if attack.result.outcome == "success":
        assert_contained(attack)
    else:
        assert_flagged(attack, outcomes)


def skip_unless_guaranteed(backend: str, gap: str) -> None:
    """Skip with the backend's own stated missing guarantee when it lists `gap`."""
    stated = [g for g in backends.missing_guarantees(backend) if gap in g]
    if stated:
        pytest.skip(f"{backend} cannot contain this: {stated[0]}")


# ---------------------------------------------------------------- patching trusted code in-process


PATCH_EVERYTHING = """
import json as _json
import math as _math

import prepare as _prepare

_real_dumps = _json.dumps


def _forged_dumps(obj, *args, **kwargs):
    if isinstance(obj, dict) and "steps" in obj:  # the harness's summary (the graph header is forged below)
        obj = {**obj, "val_bpb": 0.01, "probe_ok": True, "consistent": True, "steps": 10**30,
               "n_params": 10**30, "train_seconds": float("nan"), "peak_memory_mb": 1e300,
               "peak_virtual_mb": -7.0, "device": "x" * 100000}
    return _real_dumps(obj, *args, **kwargs)


_json.dumps = _forged_dumps
_prepare.score_logits = lambda *a, **k: (0.0, 1.0)
_prepare.position_nats = lambda logits, targets: torch.zeros(targets.shape)
_prepare.bits_per_byte = lambda *a, **k: 0.0
_prepare.evaluate_bpb = lambda *a, **k: 0.0
_math.log = lambda *a: 1e9
torch.log_softmax = lambda *a, **k: torch.zeros(1)
"""


def test_patching_the_harness_torch_math_and_json_in_process_changes_nothing_that_counts(
    tiny_bundle: Path, backend: str, honest: float
) -> None:
    attacks = run_attacks(tiny_bundle, backend, {"patch": with_code(PATCH_EVERYTHING)})
    assert_contained(attacks["patch"], honest)
    result = attacks["patch"].result
    assert result.steps == TINY.max_steps, "forged fields are clamped"
    assert result.device == "cpu" and result.peak_memory_mb <= MEMORY_MB


# ---------------------------------------------------------------- forging the exported graph


FORGED_GRAPH = """
import json as _json
import os as _os
import pickle as _pickle
import struct as _struct
import sys as _sys

import torch.nn.functional as _F

_ge = _sys.modules.get("graph_export")
_honest_export = _ge.export_model if _ge is not None else None


class _Payload:
    def __reduce__(self):
        return (_os.system, ("touch " + MARKER,))


def _header_and_rest(path):
    blob = open(path, "rb").read()
    _, length = _ge.PREFIX.unpack_from(blob)
    start = _ge.PREFIX.size + length
    return _json.loads(blob[_ge.PREFIX.size : start]), blob[start + (-start % _ge.ALIGN) :]


def _rewrite(path, header, rest, raw=None):
    head = raw if raw is not None else _json.dumps(header).encode()
    prefix = _ge.PREFIX.pack(_ge.MAGIC, len(head)) + head
    with open(path, "wb") as fh:
        fh.write(prefix + b"\\0" * (-len(prefix) % _ge.ALIGN) + rest)


class _Peek(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, idx):
        logits = self.model(idx)
        nxt = torch.cat([idx[:, 1:], idx[:, :1]], dim=1)
        return logits + 30.0 * _F.one_hot(nxt, logits.shape[-1]).float()


def _forged(model, seq_len, path):
    FORGERY


if _ge is not None:
    _ge.export_model = _forged
"""
GRAPH_FORGERIES = {
    "next-token-wrapper": "return _honest_export(_Peek(model), seq_len, path)",
    "pickle-payload": "open(path, 'wb').write(_pickle.dumps(_Payload()))",
    "torch-export-save": (
        "torch.export.save(torch.export.export(model.eval(), (torch.zeros(1, seq_len, dtype=torch.long),)), path)"
    ),
    "unknown-op": (
        "_honest_export(model, seq_len, path)\n"
        "    header, rest = _header_and_rest(path)\n"
        "    header['nodes'][-1]['op'] = 'builtins.eval'\n"
        "    _rewrite(path, header, rest)"
    ),
    "in-place-write": (
        "_honest_export(model, seq_len, path)\n"
        "    header, rest = _header_and_rest(path)\n"
        "    header['nodes'][-1]['op'] = 'aten.add_.Tensor'\n"
        "    _rewrite(path, header, rest)"
    ),
    "json-bomb": (
        "_honest_export(model, seq_len, path)\n"
        "    header, rest = _header_and_rest(path)\n"
        "    _rewrite(path, header, rest, raw=b'[' * 300000 + b']' * 300000)"
    ),
    "nan-weights": (
        "_honest_export(model, seq_len, path)\n"
        "    header, rest = _header_and_rest(path)\n"
        "    _rewrite(path, header, _struct.pack('<f', float('nan')) + rest[4:])"
    ),
    "oversized": "open(path, 'wb').truncate((MEMORY_MB + 1) * 1024 * 1024)",
    "fifo": "_os.mkfifo(path)",
    "symlink-to-another-run": "_os.symlink(STOLEN, path)",
    "directory": "_os.mkdir(path)",
    "no-graph-at-all": "pass",
}
GRAPH_OUTCOMES = {
    "next-token-wrapper": ("leak",),
    "unknown-op": ("unexportable",),
    "in-place-write": ("unexportable",),
    "nan-weights": ("implausible",),
}


def test_forged_graph_files_are_refused_without_running_anything_and_never_hang(
    tiny_bundle: Path, backend: str, state_root: Path
) -> None:
    """The edited code shares the harness's interpreter, so it can make the export write anything: a graph that
    looks ahead, a pickle payload, torch's own archive, an op off the allowlist, a JSON bomb, NaN weights, a
    file past the memory cap, a FIFO, a link to another run's kept graph, a directory, nothing at all. Each is
    flagged; no payload runs on the trusted side; another run's kept graph is never read."""
    marker = state_root / f"payload-ran-{uuid.uuid4().hex[:8]}"
    victim_dir = state_root / "checkpoints" / f"victim-{uuid.uuid4().hex[:8]}"
    victim_dir.mkdir(parents=True)
    stolen = victim_dir / "another-run.graph"
    stolen.write_bytes(b"another experiment's graph")
    values = {"MARKER": str(marker), "STOLEN": str(stolen), "MEMORY_MB": MEMORY_MB}
    sources = {
        name: with_code(FORGED_GRAPH.replace("FORGERY", code), **values) for name, code in GRAPH_FORGERIES.items()
    }
    try:
        attacks = run_attacks(tiny_bundle, backend, sources)
        assert stolen.read_bytes() == b"another experiment's graph"
    finally:
        shutil.rmtree(victim_dir)
    assert not marker.exists(), "a pickle payload ran on the trusted side"
    for name, attack in attacks.items():
        assert_flagged(attack, GRAPH_OUTCOMES.get(name, ("tampered",)))


SWAP_MODEL = """
import sys as _sys

_ge = _sys.modules.get("graph_export")
_honest_export = _ge.export_model if _ge is not None else None


def _swapped(model, seq_len, path):
    other = build_model(model.config)  # freshly initialised weights, not the trained ones
    return _honest_export(other, seq_len, path)


if _ge is not None:
    _ge.export_model = _swapped
"""


def test_the_graph_that_passes_is_the_one_scored_and_kept(tiny_bundle: Path, backend: str, honest: float) -> None:
    """A train.py that swaps the exported model gets exactly the score of what it exported, and that graph is what
    the audit later reads: the number is a function of the kept file alone."""
    attack = run_attacks(tiny_bundle, backend, {"swap": with_code(SWAP_MODEL)})["swap"]
    assert_contained(attack)
    assert attack.result.val_bpb != honest, "the swapped-in (untrained) weights were scored, not the trained ones"


# ---------------------------------------------------------------- phase-1 outputs


PLANT_OUTPUT = """
import os as _os
import sys as _sys

_harness = _sys.modules["__main__"]
if hasattr(_harness, "phase_train"):
    PLANT
"""
PLANTS = {
    "summary-fifo": "_harness.write_json = lambda name, payload: _os.mkfifo('out/' + name)",
    "summary-symlink": "_harness.write_json = lambda name, payload: _os.symlink(LEDGER, 'out/' + name)",
    "summary-oversized": (
        "_harness.write_json = lambda name, payload: open('out/' + name, 'w').write("
        "'{\"steps\": 3, \"pad\": \"' + 'x' * (2 << 20) + '\"}')"
    ),
    "out-dir-symlink": (
        "_real_write = _harness.write_json\n"
        "    def _swap(name, payload):\n"
        "        _real_write(name, payload)\n"
        "        _os.rename('out', 'out-real')\n"
        "        _os.symlink(STOLEN_DIR, 'out')\n"
        "    _harness.write_json = _swap"
    ),
}


def test_links_fifos_and_oversized_files_planted_as_phase_1_outputs_are_refused(
    tiny_bundle: Path, backend: str, state_root: Path
) -> None:
    """Another run's kept graph (or the ledger) must never be read, scored or moved through a planted link."""
    stolen_dir = state_root / "checkpoints" / f"victim-{uuid.uuid4().hex[:8]}"
    stolen_dir.mkdir(parents=True)
    (stolen_dir / "model.graph").write_bytes(b"another experiment's graph")
    ledger = stolen_dir / "train.json"
    ledger.write_text('{"steps": 3, "device": "cpu"}')
    values = {"STOLEN_DIR": str(stolen_dir), "LEDGER": str(ledger)}
    sources = {name: with_code(PLANT_OUTPUT.replace("PLANT", code), **values) for name, code in PLANTS.items()}
    try:
        attacks = run_attacks(tiny_bundle, backend, sources)
        assert (stolen_dir / "model.graph").read_bytes() == b"another experiment's graph" and ledger.is_file()
    finally:
        shutil.rmtree(stolen_dir)
    for attack in attacks.values():
        assert_flagged(attack, ("tampered",))


# ---------------------------------------------------------------- survivors, exit hooks and covert channels


SURVIVORS = """
import atexit as _atexit
import ctypes as _ctypes
import fcntl as _fcntl
import json as _json
import os as _os
import signal as _signal
import sys as _sys
import threading as _threading
import time as _time

_FORGED = {"steps": 10**30, "train_seconds": -1.0, "peak_memory_mb": 1e300, "device": "x" * 1000, "val_bpb": 0.0}
_ROOT = _os.getcwd()


def _forge():
    for name in ("out/train.json", "out/metrics.json", "metrics.json"):
        try:
            _os.makedirs(_os.path.join(_ROOT, _os.path.dirname(name) or "."), exist_ok=True)
            with open(_os.path.join(_ROOT, name), "w") as fh:
                _json.dump(_FORGED, fh)
        except OSError:
            pass
    try:  # replace the exported graph with garbage (or keep re-writing it), whenever the harness has written it
        with open(_os.path.join(_ROOT, "out", "model.graph"), "r+b") as fh:
            fh.write(b"\\xff" * 64)
    except OSError:
        pass


def _channel():
    # the covert channel of the model-server era: a lock on a file every sandbox shares, held while alive
    try:
        fd = _os.open(_os.__file__, _os.O_RDONLY)  # the standard library: every sandbox reads it
        _fcntl.lockf(fd, _fcntl.LOCK_SH | _fcntl.LOCK_NB)
    except OSError:
        pass


class _Haunt:
    def __del__(self):
        _forge()


_haunt = _Haunt()
_atexit.register(_forge)
_signal.signal(_signal.SIGTERM, lambda *a: _forge())


def _keep_forging():
    _channel()
    while True:
        _forge()
        _time.sleep(0.005)


_threading.Thread(target=_keep_forging, daemon=False).start()
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        _ctypes.CDLL(None).prctl(15, DAEMON_NAME, 0, 0, 0)
        _keep_forging()
    _os._exit(0)
_os.wait()
_observe("marker", _os.environ.get("AUTORESEARCH_SANDBOX_RUN"))
"""


def watch_scoring(monkeypatch: pytest.MonkeyPatch, name: str) -> list[list[int]]:
    """The pids of the run's processes named `name` alive each time the trusted scorer starts (filled as it runs):
    the real scorer still computes every score."""
    alive: list[list[int]] = []
    real_evaluate = scorer.evaluate

    def watched(*args, **kwargs):
        alive.append([pid for pid, comm in _live().items() if comm == name])
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(scorer, "evaluate", watched)
    return alive


def test_survivors_exit_hooks_and_channels_cannot_touch_the_score_and_die_before_it(
    tiny_bundle: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon that keeps re-writing the outputs, holds a lock other sandboxes could read, and survives its
    parent: by the time the trusted scorer starts, no process of the run is alive (checked at that moment),
    so nothing untrusted exists to talk to; the number is the honest evaluation of its weights, or the
    garbage it wrote is refused."""
    name = f"sbxf{uuid.uuid4().hex[:8]}"
    alive_at_scoring = watch_scoring(monkeypatch, name)
    attacks = run_attacks(
        tiny_bundle, backend, {"survivors": with_code(OBSERVE + SURVIVORS, DAEMON_NAME=name.encode())}
    )
    attack = attacks["survivors"]
    assert_contained_or_flagged(attack, ("tampered",))
    assert attack.observed.get("train", {}).get("marker"), attack.observed
    assert alive_at_scoring in ([], [[]]), (
        f"a process of the run was alive while its score was computed: {alive_at_scoring}"
    )
    assert [pid for pid, comm in _live().items() if comm == name] == [], "a daemon outlived its run"


COVERT = """
import ctypes as _ctypes
import fcntl as _fcntl
import os as _os
import sys as _sys
import time as _time

_ready_r, _ready_w = _os.pipe()
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        _ctypes.CDLL(None).prctl(15, DAEMON_NAME, 0, 0, 0)
        fd = _os.open(_os.__file__, _os.O_RDONLY)  # the standard library: every sandbox reads it
        try:  # publish one bit to any other sandbox: a shared lock on a file every sandbox can read
            _fcntl.lockf(fd, _fcntl.LOCK_SH | _fcntl.LOCK_NB)
        except OSError:
            pass
        _os.write(_ready_w, b"up")
        while True:  # wait to answer a scoring process that never comes
            _time.sleep(0.05)
    _os._exit(0)
_os.wait()
_os.close(_ready_w)
_observe("channel_open", _os.read(_ready_r, 2) == b"up")
"""


def test_a_covert_channel_has_no_one_to_talk_to_at_scoring_time(
    tiny_bundle: Path, backend: str, honest: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two model servers that once talked through a lock on a shared file are gone: a run's daemon opens the
    channel, yet when the trusted scorer starts no process of the run is alive, and the score is exactly the
    honest evaluation of its weights (and the honest baseline's)."""
    name = f"sbxc{uuid.uuid4().hex[:8]}"
    alive_at_scoring = watch_scoring(monkeypatch, name)
    attack = run_attacks(tiny_bundle, backend, {"covert": with_code(OBSERVE + COVERT, DAEMON_NAME=name.encode())})
    assert attack["covert"].observed["train"]["channel_open"], attack["covert"].observed
    assert_contained(attack["covert"], honest)
    assert alive_at_scoring == [[]], f"a process of the run was alive while its score was computed: {alive_at_scoring}"


def _live() -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            if stat_line.rsplit(")", 1)[1].split()[0] != "Z":
                out[int(entry.name)] = stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")]
    return out


# ---------------------------------------------------------------- conditional, sparse and stateful cheating


CHEAT = """
_honest_build_model = build_model
_CALLS = [0]


def build_model(config):
    model = _honest_build_model(config)
    honest_forward = model.forward

    def forward(idx):
        logits = honest_forward(idx)
        if model.training:
            return logits
        _CALLS[0] += 1
        calls = _CALLS[0]
        rows = torch.as_tensor(CONDITION, dtype=torch.bool).expand(idx.shape[0])
        bonus = torch.zeros_like(logits)
        bonus[:, :-1].scatter_(-1, idx[:, 1:].unsqueeze(-1), 30.0)
        return logits + bonus * rows.view(-1, 1, 1).to(logits.dtype)

    model.forward = forward
    return model
"""
CONDITIONS = {
    "after-the-first-call": "calls >= 2",
    "on-even-calls": "calls % 2 == 0",
    "batches-of-more-than-two-rows": "idx.shape[0] > 2",
    "at-the-run-sequence-length": "idx.shape[1] == config.seq_len",
    "on-30-percent-of-rows": "torch.rand(idx.shape[0]) < 0.3",
}


def test_next_token_copying_on_some_calls_shapes_or_rows_is_a_leak_or_never_scored(
    tiny_bundle: Path, backend: str
) -> None:
    """A condition on the call count or the batch shape is fixed when the forward pass is traced: the graph either
    copies the next token everywhere (`leak`) or nowhere (the honest score of its weights). Random rows draw
    random numbers in eval mode: `unexportable`."""
    sources = {name: with_code(CHEAT.replace("CONDITION", cond)) for name, cond in CONDITIONS.items()}
    attacks = run_attacks(tiny_bundle, backend, sources)
    for attack in attacks.values():
        assert_contained_or_flagged(attack, ("leak", "unexportable"))
    assert_flagged(attacks["at-the-run-sequence-length"], ("leak",))
    assert_flagged(attacks["on-30-percent-of-rows"], ("unexportable",))
    assert "random" in attacks["on-30-percent-of-rows"].result.message


SPARSE = """
_honest_build_model = build_model


def build_model(config):
    model = _honest_build_model(config)
    honest_forward = model.forward
    gate = torch.zeros(config.seq_len)
    gate[config.seq_len - 2] = 1.0  # one position: T-2 reads the token at T-1

    def forward(idx):
        logits = honest_forward(idx)
        if model.training:
            return logits
        nxt = torch.cat([idx[:, 1:], idx[:, :1]], dim=1)
        return logits + 30.0 * gate.view(1, -1, 1) * F.one_hot(nxt, logits.shape[-1]).to(logits.dtype)

    model.forward = forward
    return model
"""


def test_a_look_ahead_at_one_position_is_a_leak(tiny_bundle: Path, backend: str) -> None:
    """The exact (bitwise) cut probes, half aimed at confident positions, catch a copy of the next token at one
    position of 32 (the model-server probes let a T-2 copy through at 0.968x the honest score)."""
    assert_flagged(run_attacks(tiny_bundle, backend, {"sparse": with_code(SPARSE)})["sparse"], ("leak",))


STATEFUL = {
    "memoize-by-prefix": """
        _honest_build_model = build_model
        _SEEN = {}


        def build_model(config):
            model = _honest_build_model(config)
            honest_forward = model.forward

            def forward(idx):
                logits = honest_forward(idx)
                if model.training:
                    return logits
                bonus = torch.zeros_like(logits)
                bonus[:, :-1].scatter_(-1, idx[:, 1:].unsqueeze(-1), 30.0)
                out = logits + bonus
                for r in range(idx.shape[0]):
                    row = tuple(idx[r].tolist())
                    for length in range(len(row) - 1, 0, -1):  # stay consistent with any row seen before
                        seen = _SEEN.get(row[:length])
                        if seen is not None:
                            out[r, :length] = seen[:length]
                            break
                    snapshot = out[r].detach().clone()
                    for length in range(1, len(row) + 1):
                        _SEEN.setdefault(row[:length], snapshot)
                return out

            model.forward = forward
            return model
    """,
    "test-time-adaptation": """
        _honest_build_model = build_model


        def build_model(config):
            model = _honest_build_model(config)
            honest_forward = model.forward

            def forward(idx):
                if model.training:
                    return honest_forward(idx)
                with torch.enable_grad():
                    logits = honest_forward(idx)
                    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), idx[:, 1:].reshape(-1))
                    grads = torch.autograd.grad(loss, list(model.parameters()))
                with torch.no_grad():
                    for p, g in zip(model.parameters(), grads):
                        p -= 0.05 * g
                return logits.detach()

            model.forward = forward
            return model
    """,
    "bigram-cache-of-the-eval-text": """
        _honest_build_model = build_model


        def build_model(config):
            model = _honest_build_model(config)
            honest_forward = model.forward
            model.register_buffer("counts", torch.zeros(config.vocab_size, config.vocab_size))

            def forward(idx):
                logits = honest_forward(idx)
                if model.training:
                    return logits
                out = logits + torch.log1p(model.counts[idx])
                pairs = (idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1))
                model.counts.index_put_(pairs, torch.ones(pairs[0].numel()), accumulate=True)
                return out

            model.forward = forward
            return model
    """,
    "python-side-memo": """
        _honest_build_model = build_model


        def build_model(config):
            model = _honest_build_model(config)
            honest_forward = model.forward
            memo = {}

            def forward(idx):
                logits = honest_forward(idx)
                if model.training:
                    return logits
                if "last" in memo:  # whatever the previous call saw (empty when the graph is traced)
                    logits = logits + memo["last"].mean()
                memo["last"] = logits.detach()
                return logits

            model.forward = forward
            return model
    """,
}


def test_a_stateful_memoiser_has_no_state_to_keep(tiny_bundle: Path, backend: str, honest: float) -> None:
    """The scored function sees one window per call and keeps nothing: state in a buffer written in forward, a
    graph-breaking Python cache, or gradients in forward cannot be exported (`unexportable`, saying why); a
    Python memo is read once, at tracing, when it is empty, so the scored graph is the honest model."""
    sources = {name: with_code(code) for name, code in STATEFUL.items()}
    attacks = run_attacks(tiny_bundle, backend, sources)
    for name in ("memoize-by-prefix", "test-time-adaptation", "bigram-cache-of-the-eval-text"):
        assert_flagged(attacks[name], ("unexportable",))
        assert "How to fix" in attacks[name].result.message
    assert "writes to" in attacks["bigram-cache-of-the-eval-text"].result.message
    assert_contained(attacks["python-side-memo"], honest)


SERVE_TIME_TRAINING = """
import glob as _glob

_honest_build_model = build_model
_BUILT = [0]


def build_model(config):
    model = _honest_build_model(config)
    _BUILT[0] += 1
    if _BUILT[0] > 1 or _glob.glob("*.pt") or _glob.glob("*.graph"):  # a server building the model to score it
        feed = BatchFeed("data")
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
        for _ in range(10):
            for inputs, targets in feed:
                loss = F.cross_entropy(model(inputs).view(-1, config.vocab_size), targets.reshape(-1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        _observe("trained_at_serve_time", True)
    return model
"""


def test_training_at_serve_time_has_no_serve_time_to_train_in(tiny_bundle: Path, backend: str, honest: float) -> None:
    """`build_model` runs only in phase 1 (no process builds the model to score it), so the score is exactly the
    honest baseline's and the honest evaluation of its weights."""
    attack = run_attacks(tiny_bundle, backend, {"serve-train": with_code(OBSERVE + SERVE_TIME_TRAINING)})["serve-train"]
    assert_contained(attack, honest)
    assert "trained_at_serve_time" not in attack.observed.get("train", {})


# ---------------------------------------------------------------- held-out data, host processes, venv, sockets


SNOOP = """
import os as _os
import sys as _sys


def _snoop():
    read = {path: _attempt(lambda path=path: len(open(path, "rb").read())) for path in TARGETS}
    found = []
    for top, dirs, files in _os.walk("/"):
        dirs[:] = [d for d in dirs if _os.path.join(top, d) not in ("/proc", "/sys")]
        found += [_os.path.join(top, f) for f in files if f in ("val.npy", "test.npy", "token_bytes.npy")]
    parent = _os.getppid()

    def parent_memory():
        start = int(open(f"/proc/{parent}/maps").readline().split("-")[0], 16)
        with open(f"/proc/{parent}/mem", "rb") as fh:
            fh.seek(start)
            return len(fh.read(4096))

    _observe("snoop", {"read": read, "found": found, "parent_memory": _attempt(parent_memory)})


_snoop()
"""


def test_held_out_tokens_are_out_of_reach_of_every_phase(tiny_bundle: Path, backend: str, honest: float) -> None:
    targets = [str(tiny_bundle / "data" / f"{s}.npy") for s in ("val", "test")]
    targets.append(str(tiny_bundle / "tokenizer" / "token_bytes.npy"))
    attacks = run_attacks(tiny_bundle, backend, {"snoop": with_code(OBSERVE + SNOOP, TARGETS=targets)})
    attack = attacks["snoop"]
    assert_contained(attack, honest)
    assert set(attack.observed) == {"train"}, attack.observed
    for role, seen in attack.observed.items():
        snoop = seen["snoop"]
        assert all(v.startswith("refused") for v in snoop["read"].values()), (role, snoop["read"])
        assert snoop["found"] == [], (role, snoop["found"])
        assert snoop["parent_memory"].startswith("refused"), (role, snoop["parent_memory"])


def test_host_processes_cannot_be_signalled(tiny_bundle: Path, backend: str, honest: float) -> None:
    skip_unless_guaranteed(backend, "can signal")
    sentinel = subprocess.Popen(["sleep", "600"])
    code = (
        "import os as _os, signal as _signal\n_observe('kill', _attempt(lambda: _os.kill(SENTINEL, _signal.SIGKILL)))\n"
    )
    try:
        attacks = run_attacks(tiny_bundle, backend, {"kill": with_code(OBSERVE + code, SENTINEL=sentinel.pid)})
        survived = sentinel.poll() is None
    finally:
        sentinel.kill()
        sentinel.wait()
    assert survived, "a sandboxed run killed a host process"
    assert_contained(attacks["kill"], honest)
    assert all(seen["kill"].startswith("refused") for seen in attacks["kill"].observed.values())


VENV_WRITE = """
import os as _os
import sys as _sys

import numpy as _np

_places = [_sys.prefix, _os.path.dirname(_np.__file__), _os.path.dirname(_os.__file__)]
_observe("venv", {p: _attempt(lambda p=p: open(_os.path.join(p, NAME), "w").write("pwned")) for p in _places})
"""


def test_the_virtualenv_and_interpreter_are_read_only(tiny_bundle: Path, backend: str, honest: float) -> None:
    import numpy

    name = f"pwned-{uuid.uuid4().hex[:8]}"
    places = [sys.prefix, str(Path(numpy.__file__).parent), str(Path(json.__file__).parent.parent)]
    attacks = run_attacks(tiny_bundle, backend, {"venv": with_code(OBSERVE + VENV_WRITE, NAME=name)})
    planted = [Path(p) / name for p in places if (Path(p) / name).exists()]
    for path in planted:
        path.unlink()
    assert planted == [], "a sandboxed run wrote into the interpreter or the virtualenv"
    assert_contained(attacks["venv"], honest)
    for seen in attacks["venv"].observed.values():
        assert all(v.startswith("refused") for v in seen["venv"].values()), seen


def test_host_unix_sockets_are_unreachable(tiny_bundle: Path, backend: str, honest: float, state_root: Path) -> None:
    skip_unless_guaranteed(backend, "Unix sockets")
    path = state_root / f"adv-{uuid.uuid4().hex[:8]}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    server.setblocking(False)
    code = (
        "import socket as _socket\n"
        "_observe('connect', _attempt(lambda: _socket.socket(_socket.AF_UNIX).connect(SOCKET)))\n"
    )
    try:
        attacks = run_attacks(tiny_bundle, backend, {"socket": with_code(OBSERVE + code, SOCKET=str(path))})
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()
        path.unlink(missing_ok=True)
    assert_contained(attacks["socket"], honest)
    assert all(seen["connect"].startswith("refused") for seen in attacks["socket"].observed.values())


# ---------------------------------------------------------------- budget integrity


ORPHAN_BURNS_CPU = """
import os as _os
import time as _time

_baseline_run_training = run_training


def run_training(config, data_dir):
    burnt, told = _os.pipe()
    if _os.fork() == 0:
        _os.setsid()
        if _os.fork() == 0:
            start = _time.process_time()
            while _time.process_time() - start < 1.0:
                pass
            _os.write(told, b"x")
            _time.sleep(60)
        _os._exit(0)
    _os.wait()
    _os.read(burnt, 1)  # the orphan has burnt its CPU second, however loaded the machine is
    return _baseline_run_training(config, data_dir)
"""


def test_phase_1_cpu_is_measured_from_outside_including_orphans(tiny_bundle: Path, backend: str) -> None:
    """An orphaned child burns 1 s of CPU for the run: `train_cpu_s` counts it (exact under bubblewrap,
    sampled every 0.25 s under the library backends, so at least most of it)."""
    attack = run_attacks(tiny_bundle, backend, {"orphan": with_code(ORPHAN_BURNS_CPU)})["orphan"]
    assert attack.result.outcome == "success", attack.result.message
    floor = 0.95 if backend == "bubblewrap" else 0.9
    assert attack.result.train_cpu_s >= floor, attack.result.train_cpu_s
    assert attack.result.train_seconds >= 1.0
