"""The store never loses a record: damaged records are set aside on open, and saves are atomic under kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_ledger import SCENARIOS, run

from autoresearch.ledger import ledger as ledger_mod
from autoresearch.ledger import store as ledger_store
from autoresearch_types import ExperimentResult

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "rel, raw, problem",
    [
        ("experiments/a/spec.json", b'{"title": "A", "slug": "a", "par', "not valid JSON"),
        ("experiments/a/spec.json", b"", "empty"),
        ("experiments/a/spec.json", b'{"title": "", "slug": "a"}', "not a record of this kind"),
        ("experiments/a/runs/seed-0.json", b"\x00\x01garbage", "not valid JSON"),
        ("experiments/a/runs/seed-0.json", b'{"seq": 1, "result": {}}', "not a record of this kind"),
        ("batches/batch-001.json", b"[1, 2", "not valid JSON"),
        ("messages.json", b'{"role": "user"}', "not a record of this kind"),
        ("settings.json", b'{"base_config": 3}', "not a record of this kind"),
    ],
)
def test_damaged_records_are_recognised(rel: str, raw: bytes, problem: str) -> None:
    assert problem in (ledger_store.record_problem(rel, raw) or "")


def test_sound_records_and_other_files_pass() -> None:
    run = {"seq": 3, "seed": 1, "result": {"outcome": "success", "val_bpb": 2.5}}
    assert ledger_store.record_problem("experiments/a/runs/seed-1.json", json.dumps(run).encode()) is None
    assert ledger_store.record_problem("experiments/a/train.py", b"not json at all") is None
    assert ledger_store.record_problem("settings.json", b"") is None, "a key without settings is an older key"


async def damaged_key(key: str) -> dict[str, Any]:
    """A key with records of every kind; damage one of each in the store; open it again."""
    led = await ledger_mod.Ledger.open(key)
    await led.save_edits(
        [{"title": "Wide", "overrides": {"n_embd": 96}}, {"title": "Deep", "overrides": {"n_layer": 3}}]
    )
    for seed in range(3):
        await led.record_result(
            "baseline", ExperimentResult("success", val_bpb=2.7 + seed / 100, seed=seed), "replicate"
        )
    await led.record_result("Wide", ExperimentResult("success", val_bpb=2.6))
    await led.record_result("Deep", ExperimentResult("success", val_bpb=2.8))
    await led.record_batch_plan("batch-001", ["Wide", "Deep"], "try width and depth")
    led.memory.append({"role": "user", "content": "hello"})
    await led.save()
    store = ledger_store.local_path(led.memory.remote_path)
    originals = {}
    damage = {
        "experiments/wide/spec.json": lambda b: b[: len(b) // 2],
        "experiments/deep/runs/seed-0.json": lambda b: b"",
        "batches/batch-001.json": lambda b: b"\x00garbage",
        "messages.json": lambda b: b[:7],
    }
    for rel, hurt in damage.items():
        originals[rel] = (store / rel).read_bytes()
        (store / rel).write_bytes(hurt(originals[rel]))
    again = await ledger_mod.Ledger.open(key)
    rows = {r.title: r for r in await again.leaderboard()}
    kept = {d["path"]: (store / d["kept_at"]).read_bytes() for d in again.damaged}
    return {
        "damaged": sorted(d["path"] for d in again.damaged),
        "kept_bytes": {rel: kept[rel] == damage[rel](originals[rel]) for rel in kept},
        "still_in_store": [rel for rel in damage if (store / rel).exists()],
        "titles": sorted(rows),
        "baseline_seeds": rows["baseline"].n_seeds,
        "deep_runs": rows["Deep"].n_seeds,
        "messages": again.memory.messages,
        "reopened": [d["path"] for d in (await ledger_mod.Ledger.open(key)).damaged],
    }


def test_damaged_records_are_set_aside_and_the_rest_of_the_key_opens(state_root: Path) -> None:
    ledger_mod.init_local(project="store-tests")
    SCENARIOS["damaged_key"] = damaged_key
    import asyncio

    out = asyncio.run(run("damaged_key"))
    expected = sorted(
        ["experiments/wide/spec.json", "experiments/deep/runs/seed-0.json", "batches/batch-001.json", "messages.json"]
    )
    assert out["damaged"] == expected
    assert all(out["kept_bytes"].values()), "the damaged bytes are kept for recovery"
    assert out["still_in_store"] == [], "set aside, not left in place"
    assert out["titles"] == ["Deep", "baseline"], "only the experiment whose spec was damaged is missing"
    assert out["baseline_seeds"] == 3 and out["deep_runs"] == 0
    assert out["messages"] == [] and out["reopened"] == [], "once set aside, the key opens clean"


WRITER = """
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from autoresearch.ledger import store as ledger_store
work, store = Path(sys.argv[1]), Path(sys.argv[2])
for n in range(10**9):
    for i in range(20):
        body = json.dumps({{"seq": n, "result": {{"outcome": "success", "pad": "x" * (20000 + n % 997)}}}})
        (work / f"experiments/e{{i}}/runs").mkdir(parents=True, exist_ok=True)
        (work / f"experiments/e{{i}}/runs/seed-0.json").write_text(body)
    ledger_store.sync_local(work, store)
    if n == 3:
        Path(sys.argv[3]).write_text("saving")
"""


@pytest.mark.timeout(120)
def test_a_kill_mid_save_leaves_every_record_old_or_new(state_root: Path) -> None:
    base = state_root / f"kill-save-{os.getpid()}-{time.monotonic_ns()}"
    work, store, started = base / "work", base / "store", base / "started"
    work.mkdir(parents=True)
    script = base / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    proc = subprocess.Popen([sys.executable, str(script), str(work), str(store), str(started)])
    give_up = time.monotonic() + 60
    while not started.exists() and proc.poll() is None and time.monotonic() < give_up:
        time.sleep(0.01)  # waiting for the writer's own signal, not synchronising on time
    assert started.exists(), "the writer never got going"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    records = list(store.rglob("seed-0.json"))
    assert len(records) == 20
    for path in records:
        assert ledger_store.record_problem("experiments/e/runs/seed-0.json", path.read_bytes()) is None, path


def test_leftovers_of_dead_runs_are_removed_and_a_live_runs_are_kept(state_root: Path) -> None:
    from autoresearch.sandbox import workdirs

    root = state_root / f"leftovers-{os.getpid()}-{time.monotonic_ns()}"
    root.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_tag = workdirs.owner_tag(dead.pid)
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        names = {
            "dead": f"{dead_tag}-key-1",
            "dead_sandbox": f"train-{dead_tag}-abc",
            "live": f"{workdirs.owner_tag(live.pid)}-key-2",
            "mine": f"eval-{workdirs.owner_tag()}-def",
            "untagged": "key-3-0123abcd",
        }
        for name in names.values():
            (root / name).mkdir()
            (root / name / "file").write_text("x")
        removed = {p.name for p in workdirs.clean(root)}
        assert removed == {names["dead"], names["dead_sandbox"]}
        assert sorted(p.name for p in root.iterdir()) == sorted([names["live"], names["mine"], names["untagged"]])
    finally:
        live.communicate(b"")
