"""The sandbox: pure pre-flight and classification, then an adversarial suite of hostile `train.py`s.

Each hostile script is the baseline with `run_training` wrapped by an attack; what the attack saw
is written to `observed.json` in its own work dir, which the test keeps and reads afterwards.
Everything lives under the tests' state dir in `~/.cache` (never `/tmp`, which sandboxed code can write).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from conftest import TEST_STATE, bundle_salt

import prepare
from autoresearch.sandbox import backends, heldout
from autoresearch.sandbox import experiment as sandbox
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch.sandbox import processes as sandbox_proc
from autoresearch_types import ExperimentConfig, ExperimentResult

REPO = Path(__file__).resolve().parent.parent
BASELINE = (REPO / "train.py").read_text()
TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
ISOLATING = [b for b in ("userns", "bubblewrap") if b in backends.available_backends()]

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def sandbox_state():
    """A state dir outside /tmp for the whole module (bundles, runs, a fake ledger)."""
    root = TEST_STATE / "test-sandbox"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(prepare.STATE_DIR_ENV, str(root))
        yield prepare.state_dir()


@pytest.fixture(scope="module")
def sandbox_bundle(sandbox_state: Path) -> Path:
    """A tiny Shakespeare bundle (vocab 512), built once and reused across sessions."""
    root = sandbox_state / "test-bundles" / f"shakespeare-s1-v512-{bundle_salt()}"
    if not (root / "data" / "profile.json").exists():
        prepare.prepare_bundle("shakespeare", 1, 512, root)
    return root


def make_spec(bundle: Path, source: str = BASELINE, **kw) -> sandbox.SandboxSpec:
    options = {"cpu": 1, "memory_mb": 3072, "deadline_s": 60.0, "digests": prepare.bundle_digests(bundle)}
    options.update(kw)
    return sandbox.SandboxSpec(source, TINY, str(bundle / "data"), str(bundle / "tokenizer"), **options)


def run(spec: sandbox.SandboxSpec) -> ExperimentResult:
    return asyncio.run(sandbox.run_sandboxed(spec))


def hostile(attack: str) -> str:
    """The baseline with `run_training` wrapped so that `attack` runs first inside the sandbox."""
    body = textwrap.indent(textwrap.dedent(attack).strip(), "    ")
    return (
        BASELINE
        + "\n\n_baseline_run_training = run_training\n\n\n"
        + "def run_training(config, data_dir):\n"
        + "    import json, os, sys, socket, time, glob\n"
        + "    observed = {}\n"
        + body
        + "\n    with open('observed.json', 'w') as fh:\n"
        + "        json.dump(observed, fh)\n"
        + "    return _baseline_run_training(config, data_dir)\n"
    )


def run_kept(bundle: Path, source: str, **kw) -> tuple[ExperimentResult, dict, Path]:
    """Run with the work dirs kept; return the result, what the attack observed, and the run dir."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    spec = make_spec(bundle, source, keep_workdir=True, run_name=name, **kw)
    result = run(spec)
    root = sandbox.runs_root() / name
    observed_file = root / "train" / "observed.json"
    observed = json.loads(observed_file.read_text()) if observed_file.exists() else {}
    return result, observed, root


def live_processes() -> dict[int, str]:
    """pid -> comm of every process that is not a zombie."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        comm, state = (
            stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")],
            stat_line.rsplit(")", 1)[1].split()[0],
        )
        if state != "Z":
            out[int(entry.name)] = comm
    return out


@pytest.fixture(scope="module")
def sandbox_baseline(sandbox_bundle: Path) -> tuple[ExperimentResult, Path]:
    """The honest baseline, run once with its work dirs kept."""
    name = f"baseline-{uuid.uuid4().hex[:8]}"
    result = run(make_spec(sandbox_bundle, keep_workdir=True, run_name=name, keep_checkpoint=True))
    yield result, sandbox.runs_root() / name
    shutil.rmtree(sandbox.runs_root() / name, ignore_errors=True)
    if result.checkpoint:  # a failed run kept none ("" is not a path to remove)
        Path(result.checkpoint).unlink(missing_ok=True)


# ---------------------------------------------------------------- pure functions


def test_preflight_accepts_baseline():
    assert sandbox.preflight(BASELINE) is None


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("def build_model(config):\n    return 1\ndef run_training(config, data_dir)\n    pass\n", "line 3"),
        ("def build_model(config):\n    pass\n", "run_training"),
        ("def run_training(config, data_dir):\n    pass\n", "build_model"),
        ("def build_model(config):\n    pass\ndef run_training(config):\n    pass\n", "2 positional"),
        ("def build_model(config):\n    pass\nasync def run_training(config, data_dir):\n    pass\n", "async"),
        ("def build_model(config, *, k):\n    pass\ndef run_training(config, data_dir):\n    pass\n", "build_model"),
    ],
)
def test_preflight_rejects(source: str, needle: str):
    problem = sandbox.preflight(source)
    assert problem is not None and needle in problem


def test_classify_exit():
    assert sandbox.classify_exit(0, "", False) is None
    assert sandbox.classify_exit(137, "", True)[0] == "timeout"
    assert sandbox.classify_exit(137, "", False)[0] == "oom"
    assert sandbox.classify_exit(1, "RuntimeError: DefaultCPUAllocator: not enough memory", False)[0] == "oom"
    assert sandbox.classify_exit(1, "Traceback\nMemoryError\n", False)[0] == "oom"
    lib = "ImportError: libscipy_openblas64_.so: failed to map segment from shared object"
    assert sandbox.classify_exit(1, lib, False)[0] == "oom"
    crash = sandbox.classify_exit(1, "Traceback...\nValueError: boom\n", False)
    assert crash == ("crash", "exit 1: ValueError: boom")


def test_classify_metrics():
    ok = {"val_bpb": 2.5, "probe_ok": True, "logits_finite": True, "probe_max_diff": 0.0, "consistent": True}
    assert sandbox.classify_metrics(ok)[0] == "success"
    assert sandbox.classify_metrics({**ok, "probe_ok": False})[0] == "leak"
    assert sandbox.classify_metrics({**ok, "val_bpb": "nan"})[0] == "implausible"
    assert sandbox.classify_metrics({**ok, "logits_finite": False})[0] == "implausible"
    assert sandbox.classify_metrics({**ok, "val_bpb": 0.01})[0] == "implausible"
    assert sandbox.classify_metrics({**ok, "val_bpb": 0.0, "probe_ok": False})[0] == "leak"
    assert sandbox.classify_metrics({**ok, "consistent": False})[0] == "tampered"
    assert sandbox.classify_metrics({**ok, "probe_ok": False, "consistent": False})[0] == "tampered"
    for key in ("probe_ok", "consistent"):  # a missing verdict never reads as a pass
        assert sandbox.classify_metrics({k: v for k, v in ok.items() if k != key})[0] != "success"


def test_raise_for_outcome():
    import flyte.errors

    ok = ExperimentResult(outcome="success", val_bpb=2.0)
    assert sandbox.raise_for_outcome(ok) is ok
    with pytest.raises(flyte.errors.OOMError) as oom:
        sandbox.raise_for_outcome(ExperimentResult(outcome="oom", message="too big"))
    assert sandbox.result_from_error(oom.value).outcome == "oom"
    for outcome, cls in sandbox.FAILURES.items():
        with pytest.raises(cls) as err:
            sandbox.raise_for_outcome(ExperimentResult(outcome=outcome, message="m", steps=3))
        assert err.value.outcome == outcome
        assert sandbox.result_from_error(err.value) == ExperimentResult(outcome=outcome, message="m", steps=3)


def test_none_backend_needs_opt_in(sandbox_bundle: Path):
    with pytest.raises(ValueError, match="allow_unsandboxed"):
        run(make_spec(sandbox_bundle, backend="none"))


# ---------------------------------------------------------------- the honest baseline


def test_baseline_succeeds_and_matches_in_process_eval(sandbox_bundle: Path, sandbox_baseline):
    """The exported graph is scored by the trusted side; the number equals `prepare.evaluate_bpb` of the eager
    baseline holding the graph's weights (the report measured a difference of exactly 0)."""
    import numpy as np
    import torch

    import train
    from autoresearch.sandbox import graph

    result, root = sandbox_baseline
    assert result.outcome == "success", result
    assert result.steps == TINY.max_steps and result.train_seconds > 0 and result.eval_seconds > 0
    assert result.device == "cpu" and result.peak_memory_mb > 0
    kept = Path(result.checkpoint)
    assert kept.parent == prepare.state_dir() / "checkpoints" and kept.is_file() and kept.suffix == ".graph"
    assert sandbox.runs_root() not in kept.parents, "a kept graph lives outside every work dir"
    assert sorted(p.name for p in root.iterdir()) == ["train"], "one sandboxed process per experiment"
    torch.set_num_threads(1)
    model = train.build_model(TINY).eval()
    model.load_state_dict(graph.load_graph(kept.read_bytes()).weights())
    assert result.n_params == sum(p.numel() for p in model.parameters()), "counted from the graph"
    assert result.tokens_handed == TINY.max_steps * TINY.tokens_per_step and result.flops_per_token > 0
    val = prepare.load_tokens(sandbox_bundle / "data", "val")
    token_bytes = np.load(sandbox_bundle / "tokenizer" / "token_bytes.npy")
    expected = prepare.evaluate_bpb(model, val, token_bytes, TINY.seq_len, eval_tokens=TINY.eval_tokens)
    assert abs(result.val_bpb - expected) < 1e-6


# ---------------------------------------------------------------- adversarial suite


def test_01_forged_metrics_are_ignored(sandbox_bundle: Path, sandbox_baseline):
    source = hostile(
        """
        print("val_bpb: 0.0")
        print(json.dumps({"val_bpb": 0.0, "outcome": "success"}))
        print("val_bpb: 0.0", file=sys.stderr)
        os.makedirs("out", exist_ok=True)
        with open("out/metrics.json", "w") as fh:
            json.dump({"val_bpb": 0.0, "probe_ok": True, "logits_finite": True}, fh)
        """
    )
    result, _, root = run_kept(sandbox_bundle, source)
    shutil.rmtree(root)
    assert result.outcome == "success"
    assert result.val_bpb == pytest.approx(sandbox_baseline[0].val_bpb, abs=1e-9)


@pytest.mark.parametrize("backend", ISOLATING)
def test_02_network_is_blocked(sandbox_bundle: Path, backend: str):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    source = hostile(
        f"""
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
            observed["connect"] = "connected"
        except OSError as exc:
            observed["connect"] = repr(exc)
        """
    )
    try:
        result, observed, root = run_kept(sandbox_bundle, source, backend=backend)
    finally:
        stop.set()
        thread.join()
        server.close()
    shutil.rmtree(root)
    assert result.outcome == "success"
    assert observed["connect"] != "connected" and not accepted, observed
    print(f"[{backend}] loopback connect: {observed['connect']}")


def test_03_parent_secrets_are_absent(sandbox_bundle: Path, monkeypatch):
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    source = hostile("observed['environ'] = dict(os.environ)")
    result, observed, root = run_kept(sandbox_bundle, source)
    shutil.rmtree(root)
    assert result.outcome == "success"
    env = observed["environ"]
    assert "OPENAI_API_KEY" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert not any(secret in v for v in env.values())


def test_04_validation_data_is_not_visible_in_training(sandbox_bundle: Path):
    val = sandbox_bundle / "data" / "val.npy"
    source = hostile(
        f"""
        attempts = {{}}
        for path in [{str(val)!r}, "data/val.npy", os.path.join(data_dir, "val.npy"), "val.npy"]:
            try:
                with open(path, "rb") as fh:
                    attempts[path] = len(fh.read())
            except OSError as exc:
                attempts[path] = repr(exc)
        observed["attempts"] = attempts
        observed["data_listing"] = sorted(os.listdir(data_dir))
        try:
            observed["bundle_listing"] = sorted(os.listdir({str(val.parent)!r}))
        except OSError as exc:
            observed["bundle_listing"] = repr(exc)
        found = []
        for top, dirs, files in os.walk("/"):  # links are not followed (/usr/bin/X11 -> . would loop)
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in ("/proc", "/sys")]
            found += [os.path.join(top, f) for f in files if f == "val.npy"]
        observed["found"] = found[:5]
        """
    )
    result, observed, root = run_kept(sandbox_bundle, source)
    shutil.rmtree(root)
    assert result.outcome == "success"
    assert all(isinstance(v, str) for v in observed["attempts"].values()), observed["attempts"]
    assert observed["data_listing"] == ["batches.npy", "meta.json"]
    assert isinstance(observed["bundle_listing"], str)
    assert observed["found"] == []


def _fake_ledger(state: Path) -> Path:
    ledger = state / "ledger" / "experiments" / "baseline" / "result.json"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text('{"val_bpb": 3.0}')
    return ledger


def test_05_ledger_and_state_dir_are_not_writable(sandbox_bundle: Path, sandbox_state: Path):
    ledger = _fake_ledger(sandbox_state)
    source = hostile(
        f"""
        results = {{}}
        for path, mode in [({str(ledger)!r}, "w"), ({str(ledger.parent / "forged.json")!r}, "w"),
                           ({str(sandbox_state / "pwned")!r}, "w"), ({str(ledger)!r}, "r")]:
            try:
                with open(path, mode) as fh:
                    fh.write("{{}}") if mode == "w" else fh.read()
                results[path + ":" + mode] = "ok"
            except OSError as exc:
                results[path + ":" + mode] = repr(exc)
        observed["results"] = results
        """
    )
    result, observed, root = run_kept(sandbox_bundle, source)
    shutil.rmtree(root)
    assert result.outcome == "success"
    assert all(v != "ok" for v in observed["results"].values()), observed
    assert ledger.read_text() == '{"val_bpb": 3.0}'
    assert not (ledger.parent / "forged.json").exists() and not (sandbox_state / "pwned").exists()


@pytest.mark.parametrize("backend", ISOLATING)
def test_06_host_tmp_write_is_contained(sandbox_bundle: Path, sandbox_state: Path, backend: str, record_property):
    ledger = _fake_ledger(sandbox_state)
    other = sandbox.runs_root() / f"other-experiment-{uuid.uuid4().hex[:8]}" / "train" / "train.py"
    other.parent.mkdir(parents=True, exist_ok=True)
    original = "# another experiment's edited train.py\n"
    other.write_text(original)
    marker = Path("/tmp") / f"autoresearch-sandbox-marker-{uuid.uuid4().hex}"
    source = hostile(
        f"""
        for path in [{str(marker)!r}, {str(ledger)!r}, {str(other)!r}]:
            try:
                with open(path, "w") as fh:
                    fh.write("pwned")
                observed[path] = "written"
            except OSError as exc:
                observed[path] = repr(exc)
        """
    )
    try:
        result, observed, root = run_kept(sandbox_bundle, source, backend=backend)
        tmp_written_on_host = marker.exists()
        other_after = other.read_text()
    finally:
        marker.unlink(missing_ok=True)
        shutil.rmtree(other.parent.parent, ignore_errors=True)
    shutil.rmtree(root)
    assert result.outcome == "success"
    assert ledger.read_text() == '{"val_bpb": 3.0}'
    assert other_after == original, "another experiment's work dir must be out of reach"
    assert observed[str(ledger)] != "written" and observed[str(other)] != "written"
    # What the backend allowed: userns lets the run write the host /tmp; bubblewrap gives it a private one.
    record_property(f"{backend}_host_tmp_write", tmp_written_on_host)
    print(f"[{backend}] in-sandbox /tmp write: {observed[str(marker)]}; landed on host /tmp: {tmp_written_on_host}")
    if backend == "bubblewrap":
        assert not tmp_written_on_host


@pytest.mark.parametrize("backend", ISOLATING)
def test_07_daemon_is_killed_when_the_run_ends(sandbox_bundle: Path, backend: str):
    name = f"sbxd{uuid.uuid4().hex[:8]}"
    source = hostile(
        f"""
        ready_r, ready_w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                import ctypes
                ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)
                os.chdir("/")
                os.write(ready_w, b"up")
                while True:
                    time.sleep(0.5)
            os._exit(0)
        os.wait()
        os.close(ready_w)
        observed["daemon_started"] = os.read(ready_r, 2) == b"up"  # waits for the daemon, however slow
        """
    )
    result, observed, root = run_kept(sandbox_bundle, source, backend=backend)
    shutil.rmtree(root)
    assert result.outcome == "success"
    assert observed["daemon_started"]
    survivors = [pid for pid, comm in live_processes().items() if comm == name]
    assert survivors == []


def test_08_infinite_loop_times_out(sandbox_bundle: Path):
    deadline = 6.0
    source = hostile("while True:\n    pass")
    result = run(make_spec(sandbox_bundle, source, deadline_s=deadline))
    assert result.outcome == "timeout", result
    assert result.wall_seconds >= deadline
    assert result.train_cpu_s < deadline + sandbox_pool.NATIVE_GRACE_S, (
        "the deadline ended the loop (CPU seconds cannot exceed wall seconds), not the CPU-seconds backstop after it"
    )


def test_09_allocating_past_the_limit_is_oom(sandbox_bundle: Path):
    source = hostile("hog = bytearray(6 * 1024 ** 3)\nhog[::4096] = b'x' * len(hog[::4096])")
    result = run(make_spec(sandbox_bundle, source, memory_mb=2048))
    assert result.outcome == "oom", result
    assert "MemoryError" in result.stderr_tail


def test_10_attention_peeking_at_the_future_is_a_leak(sandbox_bundle: Path):
    source = BASELINE.replace("is_causal=True", "is_causal=False")
    assert source != BASELINE
    result = run(make_spec(sandbox_bundle, source))
    assert result.outcome == "leak", result
    assert result.val_bpb is None and "causality" in result.message


def test_11_syntax_error_is_invalid_and_nothing_runs(sandbox_bundle: Path, monkeypatch: pytest.MonkeyPatch):
    name = f"test-{uuid.uuid4().hex[:10]}"
    source = BASELINE + "\n\ndef broken(:\n    pass\n"
    launched: list[object] = []
    monkeypatch.setattr(sandbox, "acquire", lambda *args: launched.append(args))
    result = run(make_spec(sandbox_bundle, source, run_name=name, keep_workdir=True))
    assert result.outcome == "invalid"
    assert f"line {BASELINE.count(chr(10)) + 3}" in result.message and "SyntaxError" in result.message
    assert not (sandbox.runs_root() / name).exists()
    assert launched == [], "pre-flight refused it before any sandboxed process was asked for"


@pytest.mark.parametrize("backend", ISOLATING)
def test_12_bounded_fork_bomb_is_contained(sandbox_bundle: Path, backend: str):
    name = f"sbxb{uuid.uuid4().hex[:8]}"
    source = hostile(
        f"""
        import ctypes
        spawned = 0
        for _ in range(40):
            pid = os.fork()
            if pid == 0:
                ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)
                for _ in range(2):
                    if os.fork() == 0:
                        break
                time.sleep(120)
                os._exit(0)
            spawned += 1
        observed["spawned"] = spawned
        observed["marker"] = os.environ[{sandbox_proc.MARKER_ENV!r}]
        """
    )
    result, observed, root = run_kept(sandbox_bundle, source, backend=backend)
    after = live_processes()
    left = sandbox_proc.marked_pids(observed["marker"], root / "train")
    shutil.rmtree(root)
    assert result.outcome == "success", result
    assert observed["spawned"] == 40
    assert [p for p, comm in after.items() if comm == name] == []
    assert left == set(), "no process of the run (its marker or its work dir) may outlive it"


def test_crash_reports_the_stderr_tail(sandbox_bundle: Path):
    result = run(make_spec(sandbox_bundle, hostile("raise ValueError('boom from the edited code')")))
    assert result.outcome == "crash"
    assert "boom from the edited code" in result.message and "Traceback" in result.stderr_tail


def test_work_dirs_are_removed_and_outside_tmp(sandbox_bundle: Path):
    name = f"test-{uuid.uuid4().hex[:10]}"
    result = run(make_spec(sandbox_bundle, run_name=name))
    assert result.outcome == "success"
    assert not (sandbox.runs_root() / name).exists()
    assert not str(sandbox.runs_root()).startswith("/tmp")


# ---------------------------------------------------------------- backends, audit support


def test_default_backend_is_the_strongest_available_and_gaps_are_stated():
    assert backends.default_backend() in backends.available_backends()
    assert backends.default_backend() in backends.BACKENDS
    if "bubblewrap" in backends.available_backends():
        assert backends.default_backend() == "bubblewrap"
    userns = " ".join(backends.missing_guarantees("userns"))
    assert "no PID namespace" in userns and "/tmp" in userns and "Unix sockets" in userns
    bwrap = " ".join(backends.missing_guarantees("bubblewrap"))
    assert "PID namespace" not in bwrap and "/tmp" not in bwrap
    assert "no isolation" in backends.missing_guarantees("none")[0]
    with pytest.raises(ValueError):
        backends.missing_guarantees("chroot")


def test_score_checkpoint_rescores_a_kept_checkpoint_and_only_it_reads_the_test_split(
    sandbox_bundle: Path, sandbox_baseline, monkeypatch
):
    baseline, _ = sandbox_baseline
    splits: list[str] = []
    real_load, real_held = prepare.load_tokens, heldout.load

    def recording_load(data_dir, split):
        splits.append(split)
        return real_load(data_dir, split)

    def recording_held(data_dir, tokenizer_dir, digests, split, config):
        splits.append(split)
        return real_held(data_dir, tokenizer_dir, digests, split, config)

    monkeypatch.setattr(prepare, "load_tokens", recording_load)
    monkeypatch.setattr(heldout, "load", recording_held)
    again = run(make_spec(sandbox_bundle))
    assert again.outcome == "success" and set(splits) == {"train", "val"}, "an experiment never reads the test split"
    splits.clear()
    spec = make_spec(sandbox_bundle)
    val = asyncio.run(sandbox.score_checkpoint(spec, baseline.checkpoint, "val"))
    test = asyncio.run(sandbox.score_checkpoint(spec, baseline.checkpoint, "test"))
    assert splits == ["val", "test"]
    assert val.outcome == test.outcome == "success", (val.message, test.message)
    assert val.val_bpb == baseline.val_bpb, "the same weights give exactly the same number"
    assert test.val_bpb != val.val_bpb and test.checkpoint == baseline.checkpoint and test.n_params == baseline.n_params
    with pytest.raises(ValueError, match="split"):
        asyncio.run(sandbox.score_checkpoint(spec, baseline.checkpoint, "train"))
    with pytest.raises(ValueError, match="checkpoint"):
        asyncio.run(sandbox.score_checkpoint(spec, str(sandbox.runs_root() / "no-such.pt"), "val"))


def test_phase_1_time_and_cpu_are_measured_from_outside(sandbox_baseline):
    result, _ = sandbox_baseline
    assert 0 < result.train_seconds < result.wall_seconds
    if result.resources["backend"] == "bubblewrap":
        assert result.train_cpu_s > 0, "wait4 on bwrap sees the whole namespace's CPU time"


def test_userns_is_refused_where_it_would_leave_trusted_files_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    """userns shares the host's /tmp read-write: a virtualenv there would be writable by the run (and the trusted
    scorer imports from it), so userns is then not offered, an explicit choice is refused with the reason, and
    a launch refuses too."""
    python = sandbox_pool.python_for_sandbox()
    moved = dataclasses.replace(python, read_only=(*python.read_only, "/tmp/ci/p/.venv/lib/site-packages/torch"))
    monkeypatch.setattr(sandbox_pool, "python_for_sandbox", lambda: moved)
    problem = sandbox_pool.userns_problem()
    assert problem is not None and "lies under" in problem and "bubblewrap" in problem
    assert backends.backend_problem("userns", False) == problem
    assert "userns" not in backends.available_backends()
    key = sandbox_pool.LaunchKey("train", "userns", 1)
    with pytest.raises(RuntimeError, match="userns shares"):
        asyncio.run(sandbox_pool._open_session(key, 1024, 10.0, Path("/nonexistent"), ["true"], {}))
