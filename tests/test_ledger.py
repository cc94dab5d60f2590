"""Tests for the experiment ledger: pure rules and views, and the ledger on a real keyed `MemoryStore`.

`MemoryStore` needs a Flyte task context, so store tests run a named scenario inside one local task
(`run_scenario`) under the tests' state dir in `~/.cache` (never `/tmp`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import flyte
import pytest
from conftest import TEST_STATE

from autoresearch.ledger import ledger
from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec, SeedRun
from autoresearch.ledger.source import check_source, normalize_code, signature, slugify
from autoresearch.ledger.verdicts import GateRule
from autoresearch.ledger.views import history_table, judgement, leaderboard, lineage
from autoresearch_types import ExperimentConfig, ExperimentResult

ROOT = Path(__file__).resolve().parent.parent
BASELINE = (ROOT / "train.py").read_text()
WARMUP = BASELINE.replace("return config.learning_rate\n", "return config.learning_rate * min(1.0, (step + 1) / 50)\n")
PROJECT, DOMAIN = "ledger-tests", "development"

env = flyte.TaskEnvironment(name="ledger_tests")
SCENARIOS: dict[str, Callable[[str], Awaitable[Any]]] = {}


def scenario(fn: Callable[[str], Awaitable[Any]]) -> Callable[[str], Awaitable[Any]]:
    """Register an async function of the memory key to run inside the test task."""
    SCENARIOS[fn.__name__] = fn
    return fn


@env.task
async def run_scenario(name: str, key: str) -> str:
    """Run a registered scenario inside a Flyte task (where `MemoryStore` works); JSON out."""
    try:
        return json.dumps(await SCENARIOS[name](key), default=str)
    except ledger.LedgerError as exc:
        return json.dumps({"ledger_error": str(exc)})


@pytest.fixture
def ledger_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh state dir under the tests' state dir (removed afterwards), and Flyte initialised locally."""
    path = TEST_STATE / "ledger" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    monkeypatch.setenv("AUTORESEARCH_STATE_DIR", str(path))
    ledger.init_local(project=PROJECT, domain=DOMAIN)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def run(name: str, key: str | None = None) -> Any:
    """Run scenario `name` in a local task whose raw data (and so the store) lives under the state dir."""
    key = key or f"k-{uuid.uuid4().hex[:8]}"
    result = await flyte.with_runcontext(**ledger.run_context_kwargs()).run.aio(run_scenario, name=name, key=key)
    outputs = result.outputs()
    if inspect.isawaitable(outputs):
        outputs = await outputs
    return json.loads(outputs[0])


def ok(val_bpb: float) -> ExperimentResult:
    return ExperimentResult("success", val_bpb=val_bpb)


# ---------------------------------------------------------------- pure rules and views


def test_slugify_folds_case_and_punctuation() -> None:
    assert slugify("Deeper 6L") == slugify("deeper-6l") == "deeper-6l"
    assert slugify("  LR: 3e-3 / cosine!! ") == "lr-3e-3-cosine"


def test_normalize_code_ignores_comments_whitespace_and_docstrings() -> None:
    edited = BASELINE.replace('"""Constant learning rate', '"""A new docstring') + "\n\n# a comment\n"
    assert normalize_code(edited) == normalize_code(BASELINE)
    assert normalize_code(WARMUP) != normalize_code(BASELINE)


def test_signature_covers_code_overrides_and_budget() -> None:
    base = ExperimentConfig()
    sig = signature(BASELINE, base)
    assert sig == signature(BASELINE + "\n# comment\n", base)
    assert sig != signature(WARMUP, base)
    assert sig != signature(BASELINE, base.with_overrides({"n_layer": 4}))
    assert sig != signature(BASELINE, base.with_overrides({"time_budget_s": 30.0}))


def test_effective_config_keeps_the_budget_it_was_planned_under() -> None:
    spec = ExperimentSpec(
        "Deeper", "deeper", overrides={"n_layer": 6}, budget={"max_steps": 100, "time_budget_s": 20.0}
    )
    config = spec.effective_config(ExperimentConfig(token_budget=999 * 8 * 128, time_budget_s=99.0, vocab_size=512))
    assert (config.n_layer, config.max_steps, config.time_budget_s, config.vocab_size) == (6, 100, 20.0, 512)


def test_check_source_names_missing_entry_point() -> None:
    assert check_source(BASELINE) is None
    assert "run_training" in check_source("def build_model(config):\n    pass\n")
    assert "does not parse" in check_source("def run_training(:\n")


def _rec(title: str, runs: list[tuple[int, float | None, int]], parent: str | None = None, outcome: str = "success"):
    """A record whose runs are (seed, val_bpb, arrival seq); the first run is its screen."""
    first = runs[0][2] if runs else 99
    spec = ExperimentSpec(title=title, slug=slugify(title), parent=parent, created_at=f"t{first:03d}")
    rec = ExperimentRecord(spec, "")
    for i, (seed, bpb, seq) in enumerate(runs):
        role = "replicate" if title == "baseline" else ("screen" if i == 0 else "confirm")
        rec.runs.append(SeedRun(seed, seq, role, ExperimentResult(outcome, val_bpb=bpb, seed=seed)))
    return rec


def board(records: list) -> list:
    return leaderboard(records, judgement(records, GateRule(replicates=3)))


def test_leaderboard_ranks_by_mean_with_the_gates_labels() -> None:
    records = [
        _rec("baseline", [(0, 2.0, 1), (1, 2.02, 2), (2, 1.98, 3)]),
        _rec("Deeper", [(0, 2.1, 4)]),
        _rec("Warmup", [(0, 1.85, 5), (1, 1.86, 6), (2, 1.84, 7)]),
        _rec("Wider", [(0, 1.97, 8)]),
        _rec("Boom", [(0, None, 9)], outcome="oom"),
        _rec("Capped", [(0, 1.5, 10)], outcome="truncated"),
        _rec("Lucky", [(0, 1.86, 11)]),
        _rec("Later", []),
    ]
    rows = {r.title: r for r in board(records)}
    assert [r.title for r in board(records)] == [
        "Warmup",
        "Lucky",
        "Wider",
        "baseline",
        "Deeper",
        "Boom",
        "Capped",
        "Later",
    ]
    assert rows["Warmup"].rank == 1 and rows["Warmup"].label == "confirmed" and rows["Warmup"].incumbent
    assert rows["Warmup"].delta_vs_best == 0.0 and rows["Warmup"].n_seeds == 3
    assert rows["Warmup"].se == pytest.approx(0.01 / 3**0.5)
    assert rows["baseline"].label == "baseline" and not rows["baseline"].incumbent
    assert rows["Deeper"].label == "regression", "worse than the baseline by far more than the noise"
    assert rows["Wider"].label == "regression", "judged against the new incumbent, Warmup"
    assert rows["Lucky"].label == "within_noise" and rows["Lucky"].rank == 2
    assert rows["Boom"].label == "failed" and rows["Boom"].rank is None
    assert rows["Capped"].label == "truncated" and rows["Capped"].rank is None and rows["Capped"].val_bpb == 1.5
    assert rows["Later"].label == "not_run"
    assert rows["Wider"].delta_vs_baseline == pytest.approx(-0.03)


def test_history_table_keeps_last_rows_and_says_how_many_are_omitted() -> None:
    records = [_rec(f"Exp {i}", [(0, 2.0 - i / 100, i)]) for i in range(1, 8)]
    table = history_table(records, board(records), last_n=3)
    assert "Exp 7" in table and "Exp 5" in table and "Exp 4" not in table
    assert "4 earlier experiments omitted; 7 in total" in table


def test_lineage_nests_children_under_parents() -> None:
    records = [
        _rec("baseline", [(0, 2.0, 1), (1, 2.01, 2)]),
        _rec("Warmup", [(0, 1.9, 3)]),
        _rec("Warmup deeper", [(0, 1.8, 4)], parent="Warmup"),
    ]
    tree = lineage(records, board(records))
    warm = next(n for n in tree if n["title"] == "Warmup")
    assert warm["children"][0]["title"] == "Warmup deeper" and warm["children"][0]["val_bpb"] == 1.8
    assert warm["label"] == "unconfirmed" and next(n for n in tree if n["title"] == "baseline")["incumbent"]


# ---------------------------------------------------------------- the ledger on a MemoryStore


@scenario
async def opens_under_state_dir(key: str) -> Any:
    led = await ledger.Ledger.open(key)
    return {
        "remote": led.memory.remote_path,
        "root": str(led.memory.root),
        "titles": [r.title for r in await led.records()],
    }


async def test_open_keeps_store_and_working_copy_under_state_dir(ledger_state: Path) -> None:
    out = await run("opens_under_state_dir", "k-open")
    assert out["titles"] == ["baseline"]
    assert out["remote"].startswith(str(ledger_state)) and out["root"].startswith(str(ledger_state))
    stored = Path(out["remote"]) / "experiments" / "baseline" / "spec.json"
    assert stored.exists(), "the baseline record must be saved on first open"
    assert f"/local/{PROJECT}/{DOMAIN}/k-open" in out["remote"]


async def test_open_without_run_context_still_keeps_the_store_under_state_dir(ledger_state: Path) -> None:
    result = await flyte.run.aio(run_scenario, name="opens_under_state_dir", key="k-tmp")
    outputs = result.outputs()
    out = json.loads((await outputs if inspect.isawaitable(outputs) else outputs)[0])
    assert out["remote"].startswith(str(ledger_state)), "a default /tmp raw-data path must be rebased"
    assert f"/local/{PROJECT}/{DOMAIN}/k-tmp" in out["remote"]
    assert (Path(out["remote"]) / "experiments" / "baseline" / "spec.json").exists()


@scenario
async def bad_input(key: str) -> Any:
    led = await ledger.Ledger.open(key)
    first = await led.save_edits(
        [{"title": "Deeper 6L", "overrides": {"n_layer": 6}}, {"title": "Warmup", "train_py": WARMUP}], "b1"
    )
    second = await led.save_edits(
        [
            {"overrides": {"n_layer": 2}},  # missing title
            {"title": "deeper-6l", "overrides": {"n_layer": 5}},  # slug collision
            {"title": "Listy", "overrides": [("n_layer", 4)]},  # non-dict overrides
            {"title": "Unknown keys", "overrides": {"n_layer": 5, "flux_capacitor": 1}},  # saved, key reported
            {"title": "Too wide", "overrides": {"n_embd": 100000, "learning_rate": -1}},  # saved, clamped
            {"title": "Wordy", "overrides": {"n_layer": "six"}},  # not a number
            {"title": "Orphan", "parent_title": "Warmpu", "overrides": {"n_layer": 4}},  # missing parent
            {"title": "Fragment", "train_py": "x = 1\n"},  # no entry point
            {"title": "Same as deeper", "overrides": {"n_layer": 6}},  # duplicate config
            {"title": "No change", "train_py": BASELINE + "\n# just a comment\n"},  # identical to baseline
            {"title": "Warm child", "parent_title": "Warmup", "overrides": {"n_layer": 4}},  # valid fork
            "not a dict",
        ],
        "b2",
    )
    child = (await led.specs(["Warm child"]))[0]
    return {
        "first": first,
        "second": second,
        "child_is_warmup": child.train_py == WARMUP,
        "n": len(await led.records()),
    }


async def test_bad_input_is_rejected_with_clear_messages_and_nothing_else_lost(ledger_state: Path) -> None:
    out = await run("bad_input")
    assert [s["title"] for s in out["first"]["saved"]] == ["Deeper 6L", "Warmup"]
    second = out["second"]
    assert [s["title"] for s in second["saved"]] == ["Unknown keys", "Too wide", "Warm child"]
    errors = [(r["title"], r["error"]) for r in second["rejected"]]
    expected = [
        (None, "a title is required"),
        ("deeper-6l", "collides with the existing experiment 'Deeper 6L'"),
        ("Listy", "overrides must be a dict"),
        ("Wordy", "n_layer must be a finite number"),
        ("Orphan", "Close titles: 'Warmup'"),
        ("Fragment", "must define run_training(config, data_dir) and build_model(config)"),
        ("Same as deeper", "duplicate of 'Deeper 6L'"),
        ("No change", "identical to the baseline"),
        (None, "each edit must be a dict"),
    ]
    assert len(errors) == len(expected)
    for (title, error), (want_title, want_text) in zip(errors, expected, strict=True):
        assert title == want_title and want_text in error, (title, error)
    assert second["ignored_keys"] == {"Unknown keys": ["flux_capacitor"]}
    assert second["clamped"]["Too wide"]["n_embd"]["used"] == 384
    assert second["clamped"]["Too wide"]["learning_rate"]["used"] == 1e-5
    assert out["child_is_warmup"], "a fork without train_py runs its parent's code"
    assert out["n"] == 6  # baseline + 2 + 3


@scenario
async def forks_of_unranked(key: str) -> Any:
    led = await ledger.Ledger.open(key)
    outcomes = {"Capped": "truncated", "Pruned": "pruned", "Crashed": "crash", "Fine": "success"}
    await led.save_edits([{"title": t, "overrides": {"n_layer": 3 + i}} for i, t in enumerate(outcomes)])
    for seed, bpb in enumerate((2.70, 2.66, 2.70)):
        await led.record_result("baseline", ExperimentResult("success", val_bpb=bpb, seed=seed), "replicate")
    for title, outcome in outcomes.items():
        await led.record_result(title, ExperimentResult(outcome, val_bpb=2.69 if outcome != "crash" else None))
    forks = [{"title": f"{t} child", "parent_title": t, "overrides": {"n_embd": 96}} for t in outcomes]
    return await led.save_edits(forks)


async def test_a_truncated_pruned_or_failed_experiment_cannot_be_forked(ledger_state: Path) -> None:
    out = await run("forks_of_unranked")
    assert [s["title"] for s in out["saved"]] == ["Fine child"]
    errors = {r["title"]: r["error"] for r in out["rejected"]}
    assert "cannot be forked: it is truncated (stopped at the time cap" in errors["Capped child"]
    assert "cannot be forked: it is pruned (stopped early" in errors["Pruned child"]
    assert "cannot be forked: it is failed (its run ended crash)" in errors["Crashed child"]


@scenario
async def config_only_limit(key: str) -> Any:
    led = await ledger.Ledger.open(key, config_only_after=2)
    out = await led.save_edits(
        [
            {"title": "L4", "overrides": {"n_layer": 4}},
            {"title": "L5", "overrides": {"n_layer": 5}},
            {"title": "L6", "overrides": {"n_layer": 6}},
            {"title": "Warmup", "train_py": WARMUP, "overrides": {"n_layer": 6}},
            {"title": "Warm L2", "parent_title": "Warmup", "overrides": {"n_layer": 2}},
        ]
    )
    again = await led.save_edits([{"title": "Warmup cosine", "train_py": WARMUP.replace("/ 50", "/ 100")}])
    assert [s["title"] for s in again["saved"]] == ["Warmup cosine"], again
    return {**out, "next_batch_id": again["batch_id"]}


async def test_config_only_edits_are_refused_after_the_limit(ledger_state: Path) -> None:
    out = await run("config_only_limit")
    assert [s["title"] for s in out["saved"]] == ["L4", "L5", "Warmup", "Warm L2"], "a nudge on a code line is open"
    assert [r["title"] for r in out["rejected"]] == ["L6"]
    assert all("change the training code" in r["error"].lower() for r in out["rejected"])
    assert out["batch_id"] == "batch-001"
    assert out["next_batch_id"] == "batch-002"


@scenario
async def concurrent_results(key: str) -> Any:
    led = await ledger.Ledger.open(key, config_only_after=1000)
    edits = [{"title": f"LR {i}", "overrides": {"learning_rate": 1e-4 * i + 5e-5}} for i in range(1, 64)]
    saved = await led.save_edits(edits, "seeds")
    titles = ["baseline"] + [f"LR {i}" for i in range(1, 64)]
    await asyncio.gather(*(led.record_result(t, ok(2.0 + i / 1000)) for i, t in enumerate(titles)))
    reopened = await ledger.Ledger.open(key)  # a fresh working copy of what was saved
    records = await reopened.records()
    return {
        "saved": len(saved["saved"]),
        "results": sum(1 for r in records if r.result is not None),
        "seqs": sorted(r.seq for r in records if r.seq is not None),
        "rows": len(await reopened.leaderboard()),
        "best": (await reopened.best()).title,
    }


async def test_64_concurrent_results_are_all_kept(ledger_state: Path) -> None:
    out = await run("concurrent_results")
    assert out["saved"] == 63
    assert out["results"] == 64 and out["rows"] == 64
    assert out["seqs"] == list(range(1, 65)), "each result gets its own arrival number"
    assert out["best"] == "baseline"


RESUME_WRITER = """
import asyncio, json, os, sys
sys.path.insert(0, {root!r})
import flyte
from autoresearch.ledger import ledger
from autoresearch_types import ExperimentResult
env = flyte.TaskEnvironment(name="ledger_resume_writer")
warmup = open({root!r} + "/train.py").read().replace(
    "return config.learning_rate\\n", "return config.learning_rate * min(1.0, (step + 1) / 50)\\n")

@env.task
async def write(key: str) -> str:
    led = await ledger.Ledger.open(key)
    await led.save_edits([{{"title": "Warmup", "train_py": warmup, "change_summary": "linear warmup"}},
                          {{"title": "Deeper 6L", "overrides": {{"n_layer": 6}}}}], "b1")
    await led.record_batch_plan("b1", ["Warmup", "Deeper 6L"], "try a schedule and depth")
    for seed, bpb in enumerate([2.0, 2.01, 1.99]):
        await led.record_result("baseline", ExperimentResult("success", val_bpb=bpb, seed=seed), "replicate")
    await led.record_result("Warmup", ExperimentResult("success", val_bpb=1.9))
    led.memory.append({{"role": "user", "content": "directive for resume test"}})
    await led.save()
    return "ok"

ledger.init_local(project={project!r}, domain={domain!r})
print(flyte.with_runcontext(**ledger.run_context_kwargs()).run(write, key=sys.argv[1]).outputs()[0])
"""


@scenario
async def resume_reader(key: str) -> Any:
    led = await ledger.Ledger.open(key)
    return {
        "titles": sorted(r.title for r in await led.records()),
        "messages": led.memory.messages,
        "history": await led.history_table(),
        "plans": await led.batch_plans(),
        "best": (await led.best()).title,
        "labels": {r.title: r.label for r in await led.leaderboard()},
        "sigma": (await led.judgement()).sigma,
    }


async def test_resume_from_another_process_sees_everything(ledger_state: Path) -> None:
    script = ledger_state / "writer.py"
    script.write_text(RESUME_WRITER.format(root=str(ROOT), project=PROJECT, domain=DOMAIN))
    proc = subprocess.run(
        [sys.executable, str(script), "k-resume"], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    out = await run("resume_reader", "k-resume")
    assert out["titles"] == ["Deeper 6L", "Warmup", "baseline"]
    assert out["messages"] == [{"role": "user", "content": "directive for resume test"}]
    assert "| Warmup |" in out["history"] and "linear warmup" in out["history"] and "| Deeper 6L |" in out["history"]
    assert out["plans"][0]["titles"] == ["Warmup", "Deeper 6L"]
    assert out["best"] == "baseline", "one good seed is not a confirmed gain"
    assert out["labels"]["Warmup"] == "unconfirmed" and out["labels"]["Deeper 6L"] == "not_run"
    assert out["sigma"] == pytest.approx(0.01), "the baseline's seeds, kept across processes"


@scenario
async def two_writers(key: str) -> Any:
    """Two working copies of one key (what a second writer process would hold), each writing and saving."""
    setup = await ledger.Ledger.open(key)
    await setup.save_edits(
        [{"title": "A", "overrides": {"n_layer": 1}}, {"title": "B", "overrides": {"n_layer": 3}}], "b1"
    )
    one, two = await ledger.Ledger.open(key), await ledger.Ledger.open(key)
    one.memory.append({"role": "user", "content": "from writer one"})
    await one.record_result("A", ok(1.9))
    await one.record_batch_plan("b2", ["A"], "writer one's plan")
    two.memory.append({"role": "user", "content": "from writer two"})
    await two.record_result("B", ok(2.1))
    await two.record_batch_plan("b2", ["B"], "writer two's plan")
    after = await ledger.Ledger.open(key)
    recs = {r.title: r.seq for r in await after.records()}
    return {"messages": after.memory.messages, "seqs": recs, "plan": (await after.batch_plans())[-1]["titles"]}


@scenario
async def one_writer(key: str) -> Any:
    """The ledger's way: one `Ledger` in the driver, concurrent callers serialised by its lock."""
    led = await ledger.Ledger.open(key)
    await led.save_edits(
        [{"title": "A", "overrides": {"n_layer": 1}}, {"title": "B", "overrides": {"n_layer": 3}}], "b1"
    )

    async def writer(name: str, title: str, bpb: float) -> None:
        led.memory.append({"role": "user", "content": f"from writer {name}"})
        await led.record_result(title, ok(bpb))
        await led.record_batch_plan(f"b2-{name}", [title], f"writer {name}'s plan")

    await asyncio.gather(writer("one", "A", 1.9), writer("two", "B", 2.1))
    after = await ledger.Ledger.open(key)
    recs = {r.title: r.seq for r in await after.records()}
    return {"messages": after.memory.messages, "seqs": recs, "plans": len(await after.batch_plans())}


async def test_single_writer_rule(ledger_state: Path) -> None:
    """Why only the driver writes: `save()` uploads a whole working copy, so a second copy overwrites the first.

    Per-experiment files written by different copies survive (records, not tables, limit the damage), but
    every file both copies hold is last-writer-wins: the transcript loses writer one's message, a batch plan
    under the same id is replaced, and both results claim arrival number 1, so run order (and `kept`) is wrong.
    One ledger with its lock loses nothing.
    """
    lost = await run("two_writers")
    assert lost["messages"] == [{"role": "user", "content": "from writer two"}], "writer one's transcript is lost"
    assert lost["plan"] == ["B"], "writer one's batch plan was overwritten"
    assert lost["seqs"]["A"] == lost["seqs"]["B"] == 1, "both copies computed the same arrival number"

    kept = await run("one_writer")
    contents = sorted(m["content"] for m in kept["messages"])
    assert contents == ["from writer one", "from writer two"]
    assert sorted([kept["seqs"]["A"], kept["seqs"]["B"]]) == [1, 2]
    assert kept["plans"] == 2


@scenario
async def views_and_compare(key: str) -> Any:
    led = await ledger.Ledger.open(key)
    await led.save_edits([{"title": "Warmup", "train_py": WARMUP}, {"title": "Deeper 6L", "overrides": {"n_layer": 6}}])
    await led.save_edits(
        [{"title": "Warmup deeper", "parent_title": "Warmup", "train_py": WARMUP.replace("4 * config", "3 * config")}]
    )
    runs = [("baseline", 0, 2.0), ("baseline", 1, 2.02), ("baseline", 2, 1.98), ("baseline", 3, 2.01)]
    runs += [("baseline", 4, 1.99), ("Warmup", 0, 1.85), ("Warmup", 1, 1.86), ("Warmup", 2, 1.84), ("Warmup", 3, 1.85)]
    runs += [("Warmup", 4, 1.85), ("Deeper 6L", 0, 2.05), ("Warmup deeper", 0, 1.70), ("Warmup deeper", 1, 1.71)]
    runs += [("Warmup deeper", 2, 1.69), ("Warmup deeper", 3, 1.70), ("Warmup deeper", 4, 1.70)]
    for title, seed, bpb in runs:
        await led.record_result(title, ExperimentResult("success", val_bpb=bpb, seed=seed))
    unknown = await led.compare("baseline", "Warmpu")
    try:
        await led.specs(["Nope"])
        missing = ""
    except ledger.LedgerError as exc:
        missing = str(exc)
    return {
        "compare": await led.compare("baseline", "Warmup"),
        "unknown": unknown,
        "missing": missing,
        "lineage": await led.lineage_text(),
        "summary": await led.summary(),
    }


async def test_views_compare_and_lineage(ledger_state: Path) -> None:
    out = await run("views_and_compare")
    cmp = out["compare"]
    assert cmp["delta"] == pytest.approx(-0.15) and cmp["seeds"] == {"baseline": 5, "Warmup": 5}
    assert (
        "-    return config.learning_rate\n" in cmp["diff"] and "+    return config.learning_rate * min" in cmp["diff"]
    )
    assert "Close titles: 'Warmup'" in out["unknown"]["error"]
    assert "no experiment titled 'Nope'" in out["missing"]
    assert (
        "- Warmup (medium): 1.8500 [confirmed]\n  - Warmup deeper (medium): 1.7000 [confirmed] *best*" in out["lineage"]
    )
    summary = out["summary"]
    assert summary["best"]["title"] == "Warmup deeper" and summary["best"]["delta_vs_baseline"] == pytest.approx(-0.3)
    assert [r["label"] for r in summary["leaderboard"]] == ["confirmed", "confirmed", "baseline", "regression"]
    assert summary["runs_used"] == 16 and summary["sigma"] is not None
