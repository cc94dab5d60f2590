"""One writer per key, and saves that write only what changed: the lease on a real folder and a real object store
(obstore's local store, the same library and calls as S3, GCS and Azure), and a live session against a second run
and a person's verdict, in separate processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import TEST_STATE

from autoresearch.ledger import lease as lease_mod
from autoresearch.ledger.blobs import Folder, Objects
from autoresearch.ledger.lease import Holder, Lease, LeaseHeld, LeaseLost

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def where() -> Path:
    path = TEST_STATE / "lease" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    return path


def stores(where: Path) -> list:
    """The same key as a local folder and as an object-store prefix."""
    from obstore.store import LocalStore

    (where / "objects").mkdir()
    return [Folder(where / "folder"), Objects(LocalStore(prefix=str(where / "objects")), "keys/k", "local-objects")]


def test_create_if_absent_is_exclusive_on_both_kinds_of_store(where: Path) -> None:
    async def check(blobs) -> None:
        assert await blobs.create("lease/1.json", b"first")
        assert not await blobs.create("lease/1.json", b"second"), "a second create of the same name must fail"
        assert await blobs.read("lease/1.json") == b"first"
        await blobs.write("a/b.json", b"x")
        assert await blobs.list("lease") == ["lease/1.json"]
        assert sorted(await blobs.list()) == ["a/b.json", "lease/1.json"]
        await blobs.delete("a/b.json")
        assert await blobs.read("a/b.json") is None

    for blobs in stores(where):
        asyncio.run(check(blobs))


def test_a_second_writer_is_refused_naming_the_holder_and_takes_over_once_the_lease_expires(where: Path) -> None:
    async def check(blobs) -> None:
        first = Lease(blobs, run="run-one", host="pod-a", ttl_s=60)
        await first.acquire()
        second = Lease(blobs, run="run-two", host="pod-b", ttl_s=60)
        with pytest.raises(LeaseHeld) as held:
            await second.acquire()
        text = str(held.value)
        assert "run 'run-one'" in text and "host pod-a" in text and f"since {first.since}" in text
        epoch, holder = await first.newest()
        expired = Holder(**{**holder.__dict__, "expires": time.time() - 1})  # run-one stopped renewing
        assert await blobs.create(lease_mod.epoch_name(epoch + 1), expired.to_bytes())
        await second.acquire()
        with pytest.raises(LeaseLost, match="run-two"):
            await first.renew(force=True)
        await second.release()
        third = Lease(blobs, run="run-three", host="pod-c")
        await third.acquire()  # a released key is free at once

    for blobs in stores(where):
        asyncio.run(check(blobs))


def test_of_two_racing_writers_exactly_one_gets_the_epoch(where: Path) -> None:
    async def check(blobs) -> None:
        a, b = Lease(blobs, host="a"), Lease(blobs, host="b")
        won = await asyncio.gather(a._write(1), b._write(1))
        assert sorted(won) == [False, True]

    for blobs in stores(where):
        asyncio.run(check(blobs))


def test_a_dead_local_holder_is_stale_at_once(where: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    holder = Holder("here", pid, "crashed", "t0", "t0", time.time() + 3600)
    assert lease_mod.is_stale(holder, time.time(), host="here")
    assert not lease_mod.is_stale(holder, time.time(), host="elsewhere"), "another host's pid says nothing"


HOLDER = """
import json, sys
sys.path.insert(0, {root!r})
import flyte
from autoresearch.ledger import ledger as L

L.init_local()  # the CLI's project and domain: the same key
env = flyte.TaskEnvironment(name="lease_holder")


@env.task
async def hold(key: str, state: str) -> str:
    led = await L.Ledger.open(key, state_dir=state, run="holder-run")
    print("ready", flush=True)
    sys.stdin.readline()
    seen = sorted(await led.human_verdicts())
    written = await led.store.save()
    await led.close()
    return json.dumps({{"seen": seen, "written": written}})


run = flyte.with_runcontext(**L.run_context_kwargs({state!r})).run(hold, key={key!r}, state={state!r})
print("result " + run.outputs()[0], flush=True)
"""


def start_holder(where: Path, key: str) -> subprocess.Popen:
    """A live session holding `key` in another process; it says `ready` once it holds the lease."""
    script = where / "holder.py"
    script.write_text(HOLDER.format(root=str(ROOT), state=str(where), key=key))
    env = {**os.environ, "AUTORESEARCH_STATE_DIR": str(where)}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"the holder did not start: {line!r}"
    return proc


def cli(where: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTORESEARCH_STATE_DIR": str(where)}
    return subprocess.run(
        [sys.executable, str(ROOT / "parallelized_autoresearch.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.timeout(600)
def test_a_live_session_refuses_a_second_run_sees_a_verdict_and_keeps_it(where: Path) -> None:
    key = f"lease-{uuid.uuid4().hex[:6]}"
    holder = start_holder(where, key)
    try:
        second = cli(where, "--memory-key", key, "--n-experiments", "1", "--model", "builtin")
        assert second.returncode != 0
        assert "held by run 'holder-run'" in second.stderr and f"pid {holder.pid}" in second.stderr, second.stderr
        assert "since " in second.stderr
        verdict = cli(where, "verdict", "--memory-key", key, "--title", "baseline", "accept", "--note", "checked")
        assert verdict.returncode == 0, verdict.stderr
        holder.stdin.write("go\n")
        holder.stdin.flush()
        out = json.loads(holder.stdout.readline().removeprefix("result "))
    finally:
        holder.kill()
        holder.wait()
    assert out["seen"] == ["baseline"], "the running session sees the verdict stored while it runs"
    summary = cli(where, "summary", "--memory-key", key, "--json")
    assert json.loads(summary.stdout)["verdicts"], "the session's save kept the person's verdict"
    assert any(v.get("decided_by") == "human" for v in json.loads(summary.stdout)["verdicts"])


@pytest.mark.timeout(600)
def test_a_killed_session_leaves_a_lease_the_next_run_takes_over(where: Path) -> None:
    key = f"lease-{uuid.uuid4().hex[:6]}"
    holder = start_holder(where, key)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    again = start_holder(where, key)  # the dead holder's pid is gone: its lease is stale at once
    again.stdin.write("go\n")
    again.stdin.flush()
    assert again.stdout.readline().startswith("result ")
    again.wait(timeout=120)


def test_a_save_to_an_object_store_uploads_only_what_this_writer_changed(where: Path) -> None:
    from flyte.ai.agents import MemoryStore
    from obstore.store import LocalStore

    from autoresearch.ledger import store as ledger_store

    work = where / "work"
    (work / "experiments" / "a").mkdir(parents=True)
    (work / "experiments" / "a" / "spec.json").write_text('{"title": "a", "slug": "a"}')
    (work / "settings.json").write_text("null")
    opened = ledger_store.OpenedStore(work, "s3://bucket/keys/k", exists=True)
    memory = MemoryStore(key="k", root=work, remote_path=opened.remote)
    (where / "objects").mkdir()
    objects = Objects(LocalStore(prefix=str(where / "objects")), "keys/k", "objects")
    keystore = ledger_store.KeyStore(memory, opened, blobs=objects)

    async def scenario() -> tuple[int, int, int, list[str]]:
        first = await keystore.save()  # only messages.json is new since the key was opened
        (work / "experiments" / "a" / "runs").mkdir()
        (work / "experiments" / "a" / "runs" / "seed-0.json").write_text('{"seq": 1, "result": {"outcome": "success"}}')
        second = await keystore.save()
        third = await keystore.save()
        await keystore.blobs.write("human_verdicts/a.json", b'{"title": "a", "decision": "accept"}')
        pulled = await keystore.pull("human_verdicts")
        fourth = await keystore.save()  # what was pulled is not written back
        return first, second, third + fourth, sorted(await keystore.blobs.list()) + [str(pulled)]

    first, second, rest, listed = asyncio.run(scenario())
    assert (first, second, rest) == (1, 1, 0)
    assert listed == ["experiments/a/runs/seed-0.json", "human_verdicts/a.json", "messages.json", "1"]
    assert (work / "human_verdicts" / "a.json").is_file()
