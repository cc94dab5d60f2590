"""Hostile `train.py` files against the real sandbox and scorer: each is contained or flagged, never a forged success.

Every attack runs under every isolating backend available here (`bubblewrap`, `userns`). Where a
backend cannot contain an attack, the test skips it with the sentence `backends.missing_guarantees`
gives for that backend, so the skip is the documented gap and not a silent pass. An attack is
*contained* when the run succeeds with exactly the honest baseline's `val_bpb` (the same weights,
scored by the trusted side) and bounded fields; *flagged* when it ends `leak`, `tampered`,
`implausible` or `crash` with no `val_bpb`.

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

import pytest

import prepare
from autoresearch.sandbox import backends
from autoresearch.sandbox import experiment as sandbox
from autoresearch_types import ExperimentConfig, ExperimentResult

REPO = Path(__file__).resolve().parent.parent
BASELINE = (REPO / "train.py").read_text()
TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
ISOLATING = [b for b in ("bubblewrap", "userns") if b in backends.available_backends()]
FLAGGED = ("leak", "tampered", "implausible", "crash")
MEMORY_MB = 3072
CONCURRENT_RUNS = 2

pytestmark = [pytest.mark.timeout(900), pytest.mark.parametrize("backend", ISOLATING)]


@dataclass
class Attack:
    """What one hostile run ended as, and what its code observed in each role's work dir."""

    result: ExperimentResult
    observed: dict[str, dict]


def _observed(root: Path) -> dict[str, dict]:
    out = {}
    for role in ("train", "serve", "check"):
        path = root / role / "observed.json"
        if path.is_file() and not path.is_symlink():
            out[role] = json.loads(path.read_text())
    return out


def run_attacks(bundle: Path, backend: str, sources: dict[str, str], **kw) -> dict[str, Attack]:
    """Run every source (two at a time) with its work dirs kept; return results and observations, then clean up."""
    names = {key: f"adv-{key}-{uuid.uuid4().hex[:8]}" for key in sources}

    async def one(key: str, gate: asyncio.Semaphore) -> ExperimentResult:
        options = {"cpu": 1, "memory_mb": MEMORY_MB, "deadline_s": 120.0, "keep_workdir": True}
        spec = sandbox.SandboxSpec(
            sources[key], TINY, str(bundle / "data"), str(bundle / "tokenizer"), backend=backend, run_name=names[key]
        )
        spec = dataclasses.replace(spec, digests=prepare.bundle_digests(bundle))
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


def assert_contained(attack: Attack, honest: float) -> None:
    """Succeeded with exactly the honest number and bounded fields: the attack changed nothing that counts."""
    result = attack.result
    assert result.outcome == "success", (result.outcome, result.message, result.stderr_tail[-800:])
    assert result.val_bpb is not None and abs(result.val_bpb - honest) < 1e-9, (result.val_bpb, honest)
    assert 0 <= result.steps <= TINY.max_steps and result.device in sandbox.DEVICES
    assert 0 <= result.n_params <= sandbox.MAX_PARAMS
    for value in (result.train_seconds, result.train_cpu_s, result.eval_seconds):
        assert math.isfinite(value) and value >= 0
    assert 0 <= result.peak_memory_mb <= MEMORY_MB and 0 <= result.peak_virtual_mb <= MEMORY_MB


def assert_flagged(attack: Attack, outcomes: tuple[str, ...] = FLAGGED) -> None:
    result = attack.result
    assert result.outcome in outcomes, (result.outcome, result.message, result.stderr_tail[-800:])
    assert result.val_bpb is None


def skip_unless_guaranteed(backend: str, gap: str) -> None:
    """Skip with the backend's own stated missing guarantee when it lists `gap`."""
    stated = [g for g in backends.missing_guarantees(backend) if gap in g]
    if stated:
        pytest.skip(f"{backend} cannot contain this: {stated[0]}")


# ---------------------------------------------------------------- patching trusted code in-process


PATCH_EVERYTHING = """
import json as _json
import math as _math
import sys as _sys

import prepare as _prepare

_real_dumps = _json.dumps


def _forged_dumps(obj, *args, **kwargs):
    if isinstance(obj, dict):
        obj = {**obj, "val_bpb": 0.01, "probe_ok": True, "consistent": True, "steps": 10**30,
               "n_params": 10**30, "train_seconds": float("nan"), "peak_memory_mb": 1e300,
               "peak_virtual_mb": -7.0, "device": "x" * 100000}
    return _real_dumps(obj, *args, **kwargs)


_json.dumps = _forged_dumps
_prepare.score_logits = lambda *a, **k: (0.0, 1.0)
_prepare.bits_per_byte = lambda *a, **k: 0.0
_prepare.evaluate_bpb = lambda *a, **k: 0.0
if _sys.modules["__main__"].__dict__.get("phase_serve") and __import__("os").path.exists("checkpoint.pt"):
    _math.log = lambda *a: 1e9
    torch.log_softmax = lambda *a, **k: torch.zeros(1)
    torch.nn.functional.log_softmax = lambda *a, **k: torch.zeros(1)
"""


def test_patching_the_harness_torch_math_and_json_in_process_changes_nothing_that_counts(
    tiny_bundle: Path, backend: str, honest: float
) -> None:
    attacks = run_attacks(tiny_bundle, backend, {"patch": with_code(PATCH_EVERYTHING)})
    assert_contained(attacks["patch"], honest)
    result = attacks["patch"].result
    assert result.steps == TINY.max_steps and result.n_params == sandbox.MAX_PARAMS, "forged fields are clamped"
    assert result.device == "cpu" and result.peak_memory_mb <= MEMORY_MB


FORGED_ANSWER = """
import numpy as _np
import sys as _sys

_harness = _sys.modules["__main__"]
_honest_answer = getattr(_harness, "answer", None)
_honest_write = getattr(_harness, "write_array", None)


def _forged(model, tokens, vocab_size):
    logits = _honest_answer(model, tokens, vocab_size)
    FORGERY
    return logits


if _honest_answer is not None:
    _harness.answer = _forged
"""
FORGERIES = {
    "next-token": "logits[:, :-1][_np.arange(len(tokens))[:, None], _np.arange(tokens.shape[1] - 1), tokens[:, 1:]] += 30",
    "float64": "logits = logits.astype(_np.float64)",
    "missing-row": "logits = logits[1:]",
    "wrong-vocab": "logits = _np.ascontiguousarray(logits[..., :-1])",
    "nan": "logits[0, 0, 0] = _np.nan",
    "fifo": "_harness.write_array = lambda name, array: __import__('os').mkfifo(name)",
    "symlink": "_harness.write_array = lambda name, array: __import__('os').symlink('/etc/hostname', name)",
    "directory": "_harness.write_array = lambda name, array: __import__('os').mkdir(name)",
}
FORGERY_OUTCOMES = {"next-token": ("leak",), "nan": ("implausible",)}


def test_a_harness_patched_to_forge_answers_is_flagged_and_never_hangs(tiny_bundle: Path, backend: str) -> None:
    sources = {name: with_code(FORGED_ANSWER.replace("FORGERY", code)) for name, code in FORGERIES.items()}
    attacks = run_attacks(tiny_bundle, backend, sources)
    for name, attack in attacks.items():
        assert_flagged(attack, FORGERY_OUTCOMES.get(name, ("tampered",)))


# ---------------------------------------------------------------- phase-1 outputs


PLANT_OUTPUT = """
import os as _os
import sys as _sys

import torch as _torch

_harness = _sys.modules["__main__"]
if hasattr(_harness, "phase_train") and not _os.path.exists("checkpoint.pt"):
    PLANT
"""
PLANTS = {
    "summary-fifo": "_harness.write_json = lambda name, payload: _os.mkfifo('out/' + name)",
    "summary-symlink": "_harness.write_json = lambda name, payload: _os.symlink(LEDGER, 'out/' + name)",
    "summary-oversized": (
        "_harness.write_json = lambda name, payload: open('out/' + name, 'w').write("
        "'{\"steps\": 3, \"pad\": \"' + 'x' * (2 << 20) + '\"}')"
    ),
    "checkpoint-symlink": "_torch.save = lambda obj, path, *a, **k: _os.symlink(STOLEN, path)",
    "checkpoint-fifo": "_torch.save = lambda obj, path, *a, **k: _os.mkfifo(path)",
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
    """Another run's kept checkpoint (or the ledger) must never be read, scored or moved through a planted link."""
    stolen_dir = state_root / "checkpoints" / f"victim-{uuid.uuid4().hex[:8]}"
    stolen_dir.mkdir(parents=True)
    stolen = stolen_dir / "checkpoint.pt"
    stolen.write_bytes(b"another experiment's weights")
    ledger = stolen_dir / "train.json"
    ledger.write_text('{"steps": 3, "device": "cpu"}')
    values = {"STOLEN_DIR": str(stolen_dir), "STOLEN": str(stolen), "LEDGER": str(ledger)}
    sources = {name: with_code(PLANT_OUTPUT.replace("PLANT", code), **values) for name, code in PLANTS.items()}
    try:
        attacks = run_attacks(tiny_bundle, backend, sources)
        assert stolen.read_bytes() == b"another experiment's weights" and ledger.is_file()
    finally:
        shutil.rmtree(stolen_dir)
    for attack in attacks.values():
        assert_flagged(attack, ("tampered",))


# ---------------------------------------------------------------- survivors and exit hooks


SURVIVORS = """
import atexit as _atexit
import ctypes as _ctypes
import json as _json
import os as _os
import signal as _signal
import threading as _threading
import time as _time

_FORGED = {"steps": 10**30, "train_seconds": -1.0, "peak_memory_mb": 1e300, "device": "x" * 1000, "val_bpb": 0.0}


def _forge():
    for name in ("out/train.json", "out/metrics.json", "out/server.json", "metrics.json"):
        try:
            _os.makedirs(_os.path.dirname(name) or ".", exist_ok=True)
            with open(name, "w") as fh:
                _json.dump(_FORGED, fh)
        except OSError:
            pass
    for name in sorted(_os.listdir(".")):
        if name.startswith("resp-") and name.endswith(".npy"):
            try:  # rewrite the answer as a next-token copy of its request
                import numpy as _np

                logits, tokens = _np.load(name), _np.load(name.replace("resp-", "req-"))
                rows, cols = _np.arange(len(tokens))[:, None], _np.arange(tokens.shape[1] - 1)
                logits[:, :-1][rows, cols, tokens[:, 1:]] += 30.0
                with open(name, "wb") as fh:
                    _np.save(fh, logits)
            except Exception:
                pass


class _Haunt:
    def __del__(self):
        _forge()


_haunt = _Haunt()
_atexit.register(_forge)
_signal.signal(_signal.SIGTERM, lambda *a: _forge())


def _keep_forging():
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


def test_survivors_and_exit_hooks_cannot_rewrite_outputs_and_die_with_the_run(
    tiny_bundle: Path, backend: str, honest: float
) -> None:
    name = f"sbxf{uuid.uuid4().hex[:8]}"
    attacks = run_attacks(
        tiny_bundle, backend, {"survivors": with_code(OBSERVE + SURVIVORS, DAEMON_NAME=name.encode())}
    )
    attack = attacks["survivors"]
    if attack.result.outcome == "success":
        assert_contained(attack, honest)  # the forgers lost every race: the number is the honest one
    else:
        assert_flagged(attack)  # a rewritten answer was caught
    assert attack.observed.get("train", {}).get("marker"), attack.observed
    assert [pid for pid, comm in _live().items() if comm == name] == [], "a daemon outlived its run"


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


# ---------------------------------------------------------------- conditional and stateful cheating


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


def test_next_token_copying_on_some_calls_shapes_or_rows_is_a_leak(tiny_bundle: Path, backend: str) -> None:
    """Blind probes ride in the same batches as scored rows, so a cheat that fires on them is caught.

    Detection is probabilistic only for the random fraction: 30% of rows escapes the main server's
    32 probe pairs and the check server's 32 probes with probability about 0.49**32 * 0.7**32 < 1e-14.
    """
    sources = {name: with_code(CHEAT.replace("CONDITION", cond)) for name, cond in CONDITIONS.items()}
    for attack in run_attacks(tiny_bundle, backend, sources).values():
        assert_flagged(attack, ("leak", "tampered"))


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
            counts = torch.zeros(config.vocab_size, config.vocab_size)

            def forward(idx):
                logits = honest_forward(idx)
                if model.training:
                    return logits
                out = logits + torch.log1p(counts[idx])
                pairs = (idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1))
                counts.index_put_(pairs, torch.ones(pairs[0].numel()), accumulate=True)
                return out

            model.forward = forward
            return model
    """,
}


def test_stateful_model_servers_are_caught(tiny_bundle: Path, backend: str) -> None:
    """Memoizing by prefix keeps the main server's probe pairs consistent; the fresh check server's probes
    (never shown to the main one) and re-asks still expose it. Adaptation and caches change the answers
    to repeated and re-asked rows: inconsistent answers are `tampered`."""
    sources = {name: with_code(code) for name, code in STATEFUL.items()}
    attacks = run_attacks(tiny_bundle, backend, sources)
    assert_flagged(attacks["memoize-by-prefix"], ("leak", "tampered"))
    for name in ("test-time-adaptation", "bigram-cache-of-the-eval-text"):
        assert_flagged(attacks[name], ("tampered",))


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
    assert set(attack.observed) == {"train", "serve", "check"}, attack.observed
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
