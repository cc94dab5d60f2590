"""The cluster path, proven by running what a pod runs: Flyte's `a0` over the real code bundle, nothing else.

Every pod here is `tests/podemu.py`'s emulation: the bundle built by Flyte's own bundler in a fresh interpreter, the
task's wire spec, `inputs.pb` in a `file://` object store, and `a0` in an empty directory with its own HOME, in a
container where the repository is hidden and /proc is masked as Kubernetes masks it (see that module for what it
does not cover). Tiny sizes: the emulation proves the path, not the model.
"""

from __future__ import annotations

import asyncio
import filecmp
import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import flyte
import podemu
import pytest
from conftest import TEST_STATE

import bundle
import parallelized_autoresearch as app
from autoresearch.lab import pods, sizing
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch.sandbox import trust
from autoresearch_types import ExperimentConfig

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(podemu.container_problem() is not None, reason=str(podemu.container_problem()))
HOSTILE = """
import glob as _glob, os as _os
_targets = []
for _pattern in ("/tmp/**/*.npy", _os.path.expanduser("~") + "/**/*.npy", {state!r} + "/**/*.npy", "/**/val.npy"):
    try:
        _targets += _glob.glob(_pattern, recursive=True)
    except OSError:
        pass
_own = _os.path.realpath(_os.getcwd())
for _path in _targets:  # overwrite the data arrays wherever they can be reached (its own batches spared)
    if _os.path.realpath(_path).startswith(_own):
        continue
    try:
        with open(_path, "r+b") as _fh:
            _fh.seek(256)
            _fh.write(b"\\x00" * 256)
    except OSError:
        pass
"""


@pytest.fixture(scope="module")
def emu() -> dict[str, Any]:
    """One object store, the code bundle in it, the tiny data bundle, and Flyte initialised for local runs."""
    root = TEST_STATE / "pods" / uuid.uuid4().hex[:8]
    store = root / "store"
    store.mkdir(parents=True)
    flyte.init(org="local", project="pod-tests", domain="development")
    data = podemu.tiny_data(TEST_STATE)
    yield {"root": root, "store": store, "shipment": podemu.ship(store), "data": data}
    shutil.rmtree(root, ignore_errors=True)


def experiment_task(config: ExperimentConfig) -> Any:
    """`run_experiment` as the driver calls it on a cluster: its pod sized and configured by `pods.overrides`."""
    task = app.run_experiment.target
    size = sizing.initial_size(config, sizing.SizingPolicy())
    return task.override(**pods.overrides(task, config, size, pods.PodSettings(), "exp-s0")), size


def pod_run(emu: dict, name: str, task: Any, posture: str, limit: int | None = None, **inputs: Any) -> podemu.PodRun:
    pod = podemu.Pod(emu["store"], emu["root"] / name)
    asyncio.run(podemu.write_inputs(task, pod, **inputs))
    spec = podemu.task_spec(task, emu["shipment"])
    run = podemu.run_pod(pod, spec, posture, read_only=(emu["data"],), memory_limit=limit)
    run.pod = pod
    return run


def local_result(emu: dict, config: dict) -> Any:
    """The same experiment in Flyte's local mode, on the same bundle (the machine's strongest backend)."""
    inputs = podemu.experiment_inputs(emu["data"], config) | {"data": podemu.local_data(emu["data"])}
    return flyte.run(app.run_experiment.target, **inputs).outputs()[0]


def same_tree(a: Path, b: Path) -> bool:
    """Two folders with the same files, byte for byte."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    if names != sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()):
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


# ---------------------------------------------------------------- what ships


IMPORT_ALL = """
import importlib, json, pkgutil, sys
from pathlib import Path
here = Path.cwd().resolve()
sys.path.insert(0, str(here))
import parallelized_autoresearch, bundle
from autoresearch.session import commands
import autoresearch
names = [m.name for m in pkgutil.walk_packages(autoresearch.__path__, "autoresearch.")]
for name in names:
    importlib.import_module(name)
outside = sorted(
    n for n, m in sys.modules.items()
    if getattr(m, "__file__", None) and n.split(".")[0] in {"autoresearch", *[p.stem for p in here.glob("*.py")]}
    and here not in Path(m.__file__).resolve().parents
)
from autoresearch.sandbox import trust
from autoresearch.session import driver, inputs
from autoresearch.agent import program
inputs.run_inputs({"n_experiments": 4, "batch_size": 2, "concurrency": 0, "max_turns": 0}, local=False)
settings = driver.requested_settings({"n_layer": 1}, 0, 0.0, 0, 0, "", 0)
tasks = [parallelized_autoresearch.run_experiment.target, parallelized_autoresearch.score_on_test,
         parallelized_autoresearch.parallelized_autoresearch, bundle.build_bundle, bundle.profile_bundle,
         commands.store_command]
print(json.dumps({"modules": len(names), "outside": outside, "salt": trust.code_salt(),
                  "tasks": [t.name for t in tasks], "base": settings[0].n_layer,
                  "concurrency": driver.auto_concurrency(False), "program": str(program.DEFAULT),
                  "program_sha256": program.digest(program.default_text())}))
"""


@pytest.mark.parametrize("copy_style", ["loaded_modules", "all"])
def test_the_bundle_ships_what_every_task_reads_or_imports(emu: dict, copy_style: str) -> None:
    shipment = podemu.ship(emu["store"], copy_style)
    wanted = [str(p.relative_to(trust.REPO)) for p in trust.shipped_files()]
    assert [f for f in wanted if f not in shipment.files] == [], "the shipping rule's files are all in the bundle"
    assert {"train.py", "autoresearch/sandbox/harness.py", "autoresearch/lab/cache_probe.py"} <= set(shipment.files)
    if copy_style == "loaded_modules":
        assert not [f for f in shipment.files if f.startswith(("tests/", "benchmarks/"))]
    folder = podemu.unpack(shipment, emu["root"] / f"unpacked-{copy_style}")
    pod = podemu.Pod(emu["store"], emu["root"] / f"import-{copy_style}")
    pod.prepare()
    cmd = podemu.container(pod, "vanilla", read_only=(folder,))
    cmd[cmd.index("--chdir") + 1] = str(folder)
    proc = subprocess.run(
        [*cmd, str(podemu.venv() / "bin" / "python"), "-c", IMPORT_ALL],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(pod.home), "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["outside"] == [], "every project module came from the bundle, none from the repository"
    assert out["modules"] >= 50 and len(out["tasks"]) == 6 and out["base"] == 1
    assert out["salt"] == trust.code_salt(), "the pod computes the same experiment cache salt as the submitter"
    assert out["concurrency"] == 8
    shipped_program = (folder / "program.md").read_text()
    assert "program.md" in shipment.files and shipped_program == (trust.REPO / "program.md").read_text()
    assert out["program"] == str(folder.resolve() / "program.md"), (
        "the pod's driver falls back on the shipped default program"
    )
    assert out["program_sha256"] == hashlib.sha256(shipped_program.encode()).hexdigest()


# ---------------------------------------------------------------- run_experiment in a pod


def needs_userns_fallback() -> None:
    """Skip, with the reason, where a vanilla pod's `userns` fallback must refuse this install: a clone whose
    virtualenv lies under /tmp (shared with userns runs). A cluster's image keeps its virtualenv elsewhere."""
    problem = sandbox_pool.userns_problem()
    if problem:
        pytest.skip(f"the emulated pod shares this host's virtualenv, which userns refuses here: {problem}")


@pytest.fixture(scope="module")
def vanilla(emu: dict) -> dict[str, Any]:
    """A hostile `run_experiment` in a vanilla pod: the baseline, plus code that overwrites every data array it
    can reach outside its own work dir (in /tmp, HOME, the pod's state dir, anywhere)."""
    needs_userns_fallback()
    config = ExperimentConfig().with_overrides(podemu.TINY)
    task, size = experiment_task(config)
    pod = podemu.Pod(emu["store"], emu["root"] / "vanilla")
    future = "from __future__ import annotations\n"
    hostile = (ROOT / "train.py").read_text().replace(future, future + HOSTILE.format(state=str(pod.state_dir)), 1)
    assert hostile != (ROOT / "train.py").read_text()
    inputs = podemu.experiment_inputs(emu["data"], config.to_dict(), memory_mb=size.memory_mb)
    run = pod_run(emu, "vanilla", task, "vanilla", **(inputs | {"train_py": hostile}))
    assert run.rc == 0 and run.outputs is not None, f"{run.error}\n{run.stderr[-3000:]}"
    return {"run": run, "pod": pod, "result": asyncio.run(podemu.native_outputs(task, run)), "config": config}


@pytest.mark.timeout(900)
def test_a_vanilla_pod_falls_back_to_userns_keeps_the_data_out_of_reach_and_equals_a_local_run(
    emu: dict, vanilla: dict
) -> None:
    result = vanilla["result"]
    assert result.outcome == "success", result.message
    assert result.resources["backend"] == "userns", "a masked /proc stops bubblewrap: the fallback ran"
    downloads = vanilla["pod"].state_dir / bundle.DOWNLOADS
    copies = {p.name.split("-", 1)[1]: p for p in downloads.iterdir()}
    assert set(copies) == {"data", "tokenizer"}, "the pod keeps its data under the state dir, not /tmp"
    for name, copy in copies.items():
        assert same_tree(emu["data"] / name, copy), f"the pod's copy of {name} was changed"
    honest = local_result(emu, vanilla["config"].to_dict())
    assert result.val_bpb == pytest.approx(honest.val_bpb, abs=1e-6), "the same number as a local run"


@pytest.mark.timeout(900)
def test_score_on_test_in_a_pod_equals_a_local_score(emu: dict, vanilla: dict) -> None:
    kept = Path(vanilla["result"].checkpoint)
    assert kept.is_file() and vanilla["pod"].state_dir in kept.parents
    in_store = emu["store"] / "checkpoints" / kept.name  # where a cluster's raw-data upload would have put it
    in_store.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kept, in_store)
    inputs = podemu.experiment_inputs(emu["data"], vanilla["config"].to_dict()) | {"checkpoint": podemu.uri(in_store)}
    inputs.pop("train_py")  # scoring runs no code of the agent's: the kept graph is all it reads
    run = pod_run(emu, "score", app.score_on_test, "vanilla", **inputs)
    assert run.outputs is not None, f"{run.error}\n{run.stderr[-3000:]}"
    scored = asyncio.run(podemu.native_outputs(app.score_on_test, run))
    local = inputs | {"data": podemu.local_data(emu["data"]), "checkpoint": str(kept)}
    expected = flyte.run(app.score_on_test, **local).outputs()[0]
    assert scored.outcome == expected.outcome == "success", scored.message
    assert scored.val_bpb == pytest.approx(expected.val_bpb, abs=1e-6)


@pytest.mark.timeout(900)
def test_an_unmasked_pod_runs_bubblewrap_within_its_memory_limit(emu: dict) -> None:
    reason = podemu.MemoryCgroup.available()
    config = ExperimentConfig().with_overrides(podemu.TINY)
    task, size = experiment_task(config)
    spec_limit = podemu.memory_limit_mb(podemu.task_spec(task, emu["shipment"]))
    assert spec_limit == pods.pod_memory_mb(config), "the spec carries the pod's limit, not only a request"
    inputs = podemu.experiment_inputs(emu["data"], config.to_dict(), memory_mb=size.memory_mb)
    run = pod_run(emu, "unmasked", task, "unmasked", None if reason else spec_limit, **inputs)
    assert run.rc == 0 and run.outputs is not None, f"{run.error}\n{run.stderr[-3000:]}"
    result = asyncio.run(podemu.native_outputs(task, run))
    assert result.outcome == "success" and result.resources["backend"] == "bubblewrap"
    assert result.val_bpb == pytest.approx(local_result(emu, config.to_dict()).val_bpb, abs=1e-6)
    if reason:
        pytest.skip(f"memory limit not checked: {reason}")
    assert run.oom_kills == 0 and run.peak_mb <= spec_limit


@pytest.mark.timeout(600)
def test_an_undersized_pod_is_killed_as_on_a_cluster(emu: dict) -> None:
    reason = podemu.MemoryCgroup.available()
    if reason:
        pytest.skip(reason)
    needs_userns_fallback()
    config = ExperimentConfig().with_overrides(podemu.TINY)
    task, size = experiment_task(config)
    inputs = podemu.experiment_inputs(emu["data"], config.to_dict(), memory_mb=size.memory_mb)
    run = pod_run(emu, "undersized", task, "vanilla", 200, **inputs)
    assert run.rc in (137, -9) and run.oom_kills >= 1
    assert run.outputs is None and run.error is None, "a pod killed by its limit writes nothing; the backend says OOM"


@pytest.mark.timeout(600)
def test_failures_in_a_pod_are_final_and_a_required_backend_is_refused(emu: dict) -> None:
    config = ExperimentConfig().with_overrides(podemu.TINY)
    task, size = experiment_task(config)
    inputs = podemu.experiment_inputs(emu["data"], config.to_dict(), memory_mb=size.memory_mb)
    required = pod_run(emu, "required", task, "vanilla", **(inputs | {"backend": "bubblewrap"}))
    assert required.error is not None and required.recoverable is False
    assert (
        required.error.code == "SandboxUnavailable" and "bwrap cannot create its namespaces" in required.error.message
    )
    broken = inputs | {"train_py": "raise SystemExit('this edit is broken')\n"}
    crash = pod_run(emu, "crash", task, "vanilla", **broken)
    assert crash.error is not None and crash.recoverable is False, "a deterministic failure is never retried"
    assert "RESULT_JSON" in crash.error.message or "crash" in crash.error.message


# ---------------------------------------------------------------- the driver and the store on the emulated cluster

keys_env = flyte.TaskEnvironment(name="pod_tests_keys")


@keys_env.task
async def make_key(key: str, state: str) -> int:
    """A local key with its settings and baseline recorded, as a first local session leaves it."""
    import prepare
    from autoresearch.ledger.ledger import Ledger
    from autoresearch.ledger.verdicts import GateRule
    from autoresearch.session import splits

    led = await Ledger.open(key, state_dir=state, run="maker", start=False)
    split = prepare.split_id(splits.key_split(led.store.work, None))
    dataset = {"dataset": "shakespeare", "num_shards": 1, "split": split}
    await led.start(*led.settle(ExperimentConfig().with_overrides(podemu.TINY), GateRule(), (), dataset))
    await led.close()
    return len(await led.records())


def driver_pod(emu: dict, name: str, **inputs: Any) -> podemu.PodRun:
    """The driver task in a pod, over the emulated cluster's store, with the built-in planner."""
    task = app.parallelized_autoresearch
    if inputs.get("llm_secret"):
        task = task.override(secrets=bundle.llm_secret(inputs["llm_secret"]))
    shipment = podemu.ship(emu["store"], task="parallelized_autoresearch")
    pod = podemu.Pod(emu["store"], emu["root"] / name)
    asyncio.run(podemu.write_inputs(task, pod, model="builtin", n_experiments=1, **inputs))
    return podemu.run_pod(pod, podemu.task_spec(task, shipment), "vanilla", read_only=(emu["data"],))


@pytest.mark.timeout(900)
def test_a_key_moves_to_the_cluster_a_driver_pod_resumes_it_and_it_moves_back(emu: dict) -> None:
    """The key's files move both ways, its held-out split secret with them (it is a file of the key's store), and a
    driver pod on the cluster resumes it: the split it records is the one its secret gives."""
    from autoresearch.ledger import ledger as ledger_mod
    from autoresearch.session import commands, subcommands
    from autoresearch.session.moves import move_key

    state = emu["root"] / "local-state"
    key = f"moving-{uuid.uuid4().hex[:6]}"
    ledger_mod.init_local()
    made = flyte.with_runcontext(**ledger_mod.run_context_kwargs(state)).run(make_key, key=key, state=str(state))
    assert made.outputs()[0] == 1
    local, cluster = (
        subcommands.side(state, None),
        podemu.store_side(emu["store"], emu["root"], emu["shipment"], (state,)),
    )
    never = lambda uri, dest: pytest.fail("a file:// store needs no fetch")  # noqa: E731
    moved = move_key(key, local, cluster, never, state / "moving")
    assert moved["files"] > 3 and str(emu["store"]) in moved["to"]
    assert key not in [k["memory_key"] for k in local("list", {})["keys"]]
    assert key in [k["memory_key"] for k in cluster("list", {})["keys"]]
    with pytest.raises(commands.BadInput, match="already exists"):
        cluster("incoming", {"key": key, "data": str(state)})

    resumed = driver_pod(emu, "driver-resume", memory_key=key)
    assert "resuming: this key's own settings apply" in resumed.stdout, resumed.stdout[-2000:]
    assert resumed.error is not None and "inputs.pb" in resumed.error.message, "it stops at its first sub-action"
    assert "held-out split" not in resumed.stdout + resumed.error.message

    back = move_key(key, cluster, local, never, state / "moving")
    assert back["files"] == moved["files"]
    assert key not in [k["memory_key"] for k in cluster("list", {})["keys"]]
    summary = local("summary", {"key": key})
    assert [row["title"] for row in summary["leaderboard"]] == ["baseline"]


@pytest.mark.timeout(600)
def test_a_driver_pod_refuses_a_missing_secret_before_any_experiment(emu: dict) -> None:
    run = driver_pod(emu, "driver-secret", memory_key="secret-check", llm_secret="openai-key:OPENAI_API_KEY")
    assert run.error is not None and "the LLM secret 'openai-key' did not reach this pod as $OPENAI_API_KEY" in (
        run.error.message
    )
    assert "memory key:" not in run.stdout, "refused before the key was opened"
