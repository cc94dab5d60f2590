"""Summaries from the store alone: the pure renderers on plain data, and the ledger's human verdicts and sessions.

The CLI subcommands themselves are tested in `test_subcommands.py`, on a key built here (`build_key`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_ledger import BASELINE, SCENARIOS, WARMUP, run

from autoresearch.ledger import ledger
from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec, SeedRun
from autoresearch.ledger.verdicts import GateRule
from autoresearch.ledger.views import judgement, leaderboard
from autoresearch.report import summary
from autoresearch.session.audit import audit_summary
from autoresearch_types import ExperimentConfig, ExperimentResult

LLM_SESSIONS = [
    {"calls": 3, "prompt_tokens": 1000, "completion_tokens": 200, "cost_usd": 0.0125, "retries": 0},
    {"calls": 2, "prompt_tokens": 500, "completion_tokens": 100, "cost_usd": 0.0075, "retries": 1},
]
"""The LLM usage of the two sessions `build_key` records: 5 calls, $0.02 in all."""


def ok(val_bpb: float, seed: int) -> ExperimentResult:
    """A successful run with measured compute (10 s wall, 8 s training CPU)."""
    return ExperimentResult("success", val_bpb=val_bpb, seed=seed, wall_seconds=10.0, train_cpu_s=8.0)


async def build_key(key: str) -> dict[str, Any]:
    """A small key with every kind of record: baseline on 3 seeds, a confirmed edit and a confirmed child of it
    (the best path baseline -> LR up -> LR up + warmup), an edit within noise, one not run, an audit, 2 sessions."""
    led = await ledger.Ledger.open(key, rule=GateRule(replicates=3))  # the fixture's three seeds
    await led.save_edits(
        [{"title": "LR up", "overrides": {"learning_rate": 0.006}}, {"title": "Wide", "overrides": {"n_embd": 96}}]
    )
    for seed, value in enumerate([2.70, 2.71, 2.72]):
        await led.record_result("baseline", ok(value, seed), "replicate")
    await led.record_result("LR up", ok(2.60, 0))
    await led.record_result("Wide", ok(2.715, 0))
    for seed, value in [(1, 2.61), (2, 2.60)]:
        await led.record_result("LR up", ok(value, seed), "confirm")
    await led.save_edits([{"title": "LR up + warmup", "parent_title": "LR up", "train_py": WARMUP}])
    await led.record_result("LR up + warmup", ok(2.50, 0))
    for seed, value in [(1, 2.51), (2, 2.50)]:
        await led.record_result("LR up + warmup", ok(value, seed), "confirm")
    await led.save_edits([{"title": "Deep", "overrides": {"n_layer": 3}}])
    val = {"baseline": [2.70, 2.71, 2.72], "LR up + warmup": [2.50, 2.51, 2.50]}
    test = {"baseline": [2.75, 2.76, 2.77], "LR up + warmup": [2.56, 2.57, 2.55]}
    await led.record_audit(audit_summary("LR up + warmup", val, test))
    for usage in LLM_SESSIONS:
        await led.record_session({"runs_this_session": 5, "llm": usage})
    return {"titles": sorted(r.title for r in await led.records()), "sessions": len(await led.sessions())}


SCENARIOS["build_key"] = build_key


def make_key(state: Path, key: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Build `key` with `build_key` under `state` (the CLI's org, project and domain)."""
    monkeypatch.setenv("AUTORESEARCH_STATE_DIR", str(state))
    ledger.init_local()
    return asyncio.run(run("build_key", key))


# ---------------------------------------------------------------- pure renderers on plain data


def rec(title: str, parent: str | None, values: list[float], seq: int) -> ExperimentRecord:
    """A record with one successful run per value, seeds 0.., arriving from `seq` on."""
    spec = ExperimentSpec(title, title.lower().replace(" ", "-"), parent=parent, created_at=f"2026-01-0{seq}")
    runs = [
        SeedRun(i, seq + i, "screen" if i == 0 else "confirm", ok(v, i), f"2026-02-{seq + i:02d}")
        for i, v in enumerate(values)
    ]
    return ExperimentRecord(spec, BASELINE, runs)


def plain_key() -> tuple[list[ExperimentRecord], Any, list[Any]]:
    """The same lineage as `build_key`, built in memory (Wide and Deep saved without a parent): records, the gate's
    judgement, the leaderboard."""
    records = [
        rec("baseline", None, [2.70, 2.71, 2.72], 1),
        rec("LR up", "baseline", [2.60, 2.61, 2.60], 4),
        rec("Wide", None, [2.715], 7),
        rec("LR up + warmup", "LR up", [2.50, 2.51, 2.50], 8),
        ExperimentRecord(ExperimentSpec("Deep", "deep", created_at="2026-01-09"), BASELINE),
    ]
    verdicts = judgement(records, GateRule(replicates=3), ExperimentConfig())
    return records, verdicts, leaderboard(records, verdicts)


def plain_summary(human: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    records, verdicts, rows = plain_key()
    sessions = [{"at": "2026-03-01", "totals": {"llm": u}} for u in LLM_SESSIONS]
    audit = audit_summary("LR up + warmup", {"baseline": [2.7, 2.71]}, {"baseline": [2.75, 2.76]})
    return summary.build_summary("k", records, verdicts, rows, GateRule(replicates=3), audit, sessions, human or {})


def test_best_path_follows_parents_from_the_root_to_the_incumbent() -> None:
    records, verdicts, _ = plain_key()
    assert verdicts.incumbent == "LR up + warmup"
    assert summary.best_path(records, verdicts.incumbent) == ["baseline", "LR up", "LR up + warmup"]
    assert summary.best_path(records, None) == []


def test_the_ascii_tree_nests_children_and_stars_only_the_best_path() -> None:
    data = plain_summary()
    text = summary.tree_text(data["lineage"]["tree"], data["leaderboard"])
    lines = text.splitlines()
    assert lines[0].startswith("* baseline  2.7100 +/- 0.0058 (3 seeds) [baseline]")
    assert "|-- * LR up  2.6033 +/- 0.0033 (3 seeds) [confirmed]" in lines[1]
    assert lines[2].startswith("|   `-- * LR up + warmup  2.5033") and lines[2].endswith("<- incumbent")
    assert lines[3].startswith("|-- Wide  2.7150 (1 seed) [regression]"), "off the best path: no star"
    assert lines[4] == "`-- Deep  not run [not_run]", "saved without a parent: it starts from the baseline"
    assert text.isascii()


def test_verdicts_say_who_decided_and_a_human_verdict_wins_the_attribution() -> None:
    human = {"Wide": {"title": "Wide", "decision": "reject", "note": "a fluke", "at": "2026-03-02"}}
    rows = {v["title"]: v for v in plain_summary(human)["verdicts"]}
    assert rows["LR up"]["decided_by"] == "rule" and rows["LR up"]["label"] == "confirmed"
    assert rows["Wide"]["decided_by"] == "human" and rows["Wide"]["human_decision"] == "reject"
    assert rows["Wide"]["note"] == "a fluke" and rows["Wide"]["label"] == "regression", "the rule's label stays"
    assert [v["title"] for v in plain_summary(human)["verdicts"]][:2] == ["baseline", "LR up"], "run order"
    line = summary.verdict_line(rows["Wide"])
    assert line.startswith('- Wide [regression] by human: reject: "a fluke" (2026-03-02)')


def test_decided_by_reads_the_verdicts_own_field() -> None:
    class Judged:
        decided_by = "judge"

    records, verdicts, _ = plain_key()
    assert summary.decided_by(verdicts.verdicts["Wide"]) == "rule"
    assert summary.decided_by(Judged()) == "judge" and summary.decided_by(None) == "rule"


def test_totals_add_up_runs_compute_and_llm_cost_over_sessions() -> None:
    t = plain_summary()["totals"]
    assert (t["experiments"], t["experiments_run"], t["runs"]) == (5, 4, 10)
    assert t["compute"] == {"wall_s": 100.0, "train_cpu_s": 80.0}
    assert t["llm"] == {"sessions": 2, "calls": 5, "prompt_tokens": 1500, "completion_tokens": 300, "cost_usd": 0.02}
    assert "LLM: $0.0200 over 5 calls in 2 session(s)" in summary.totals_text(t)


def test_the_summary_text_has_every_section_and_is_the_same_every_time() -> None:
    text = summary.summary_text(plain_summary())
    assert text == summary.summary_text(plain_summary())
    for heading in ("Leaderboard", "Lineage (* = best path: baseline -> LR up -> LR up + warmup)", "Verdicts"):
        assert heading in text
    assert "sigma (pooled seed noise): 0.0" in text and "Welch's t" in text
    assert "Held-out test audit" in text and "last activity: 2026-03-01" in text
    assert json.loads(summary.summary_json(plain_summary()))["incumbent"] == "LR up + warmup"


def test_list_rows_sort_newest_first_and_an_empty_list_says_so() -> None:
    records, _, rows = plain_key()
    row = summary.key_row("a", records, rows, ["2026-05-01"])
    assert row["best"]["title"] == "LR up + warmup" and row["experiments"] == 5 and row["runs"] == 10
    keys = [
        row,
        {**row, "memory_key": "b", "last_activity": "2026-06-01"},
        {**row, "memory_key": "c", "last_activity": None},
    ]
    assert [k["memory_key"] for k in summary.sort_keys_by_activity(keys)] == ["b", "a", "c"]
    assert summary.list_text([], "/x") == "no memory keys under /x\n"
    assert "LR up + warmup 2.5033" in summary.list_text([row], "/x")


# ---------------------------------------------------------------- the ledger: human verdicts and sessions


async def human_verdicts(key: str) -> dict[str, Any]:
    """Record, replace and refuse human verdicts; read them back from a second open of the key."""
    led = await ledger.Ledger.open(key)
    await led.save_edits([{"title": "Wide", "overrides": {"n_embd": 96}}])
    first = await led.record_human_verdict("Wide", "reject", "looks like a fluke")
    await led.record_human_verdict("Wide", "accept", "re-ran it by hand")
    errors = {}
    for name, args in {
        "bad": ("Wide", "maybe"),
        "unknown": ("Wdie", "accept"),
        "baseline": ("baseline", "reject"),
    }.items():
        try:
            await led.record_human_verdict(*args)
        except ledger.LedgerError as exc:
            errors[name] = str(exc)
    accepted_baseline = await led.record_human_verdict("baseline", "accept")
    again = await ledger.Ledger.open(key)
    await led.record_session({"llm": {"calls": 1}})
    return {
        "first": first,
        "stored": await again.human_verdicts(),
        "errors": errors,
        "baseline": accepted_baseline["decision"],
        "sessions": await (await ledger.Ledger.open(key)).sessions(),
    }


SCENARIOS["human_verdicts"] = human_verdicts


def test_human_verdicts_are_stored_replaced_with_history_and_checked(
    state_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTORESEARCH_STATE_DIR", str(state_root / "summary-ledger"))
    ledger.init_local()
    out = asyncio.run(run("human_verdicts"))
    assert out["first"]["history"] == []
    wide = out["stored"]["Wide"]
    assert (wide["decision"], wide["note"]) == ("accept", "re-ran it by hand"), "a later verdict replaces the earlier"
    assert [(h["decision"], h["note"]) for h in wide["history"]] == [("reject", "looks like a fluke")]
    assert wide["history"][0]["at"] < wide["at"]
    assert "decision must be one of accept, reject, got 'maybe'" in out["errors"]["bad"]
    assert "no experiment titled 'Wdie'" in out["errors"]["unknown"] and "'Wide'" in out["errors"]["unknown"]
    assert "the baseline cannot be rejected" in out["errors"]["baseline"]
    assert out["baseline"] == "accept" and sorted(out["stored"]) == ["Wide", "baseline"]
    assert [s["totals"] for s in out["sessions"]] == [{"llm": {"calls": 1}}]
