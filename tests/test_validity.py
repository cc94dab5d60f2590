"""Research validity end to end: load invariance in the real sandbox, the noise floor's failure mode, old keys."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_ledger import SCENARIOS, run

import parallelized_autoresearch as pa
import prepare
import tools
from autoresearch.lab.budget import Budget
from autoresearch.lab.loop import ResearchLoop
from autoresearch.lab.runner import ExperimentRunner
from autoresearch.ledger import ledger as ledger_mod
from autoresearch.ledger.records import BASELINE_TITLE
from autoresearch.sandbox import experiment as sandbox
from autoresearch.session import splits
from autoresearch_types import ExperimentConfig, ExperimentResult

ROOT = Path(__file__).resolve().parent.parent
BASELINE = (ROOT / "train.py").read_text()
TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=20 * 4 * 32, eval_tokens=2048, vocab_size=512
)


RUN_DEADLINE_S = 3600.0
"""A run's wall-clock deadline here: far past what any run needs, so a busy machine slows these tests down but
never turns a run into a timeout (what they check is CPU and scores, not speed)."""


def spec(bundle: Path, config: ExperimentConfig) -> sandbox.SandboxSpec:
    where = (str(bundle / "data"), str(bundle / "tokenizer"))
    return sandbox.SandboxSpec(
        BASELINE, config, *where, cpu=1, deadline_s=RUN_DEADLINE_S, digests=prepare.bundle_digests(bundle)
    )


@pytest.mark.timeout(3600)
def test_a_fixed_budget_run_scores_the_same_alone_or_beside_three_others(tiny_bundle: Path) -> None:
    alone = asyncio.run(sandbox.run_sandboxed(spec(tiny_bundle, TINY)))
    others = [dataclasses.replace(TINY, seed=s, learning_rate=lr) for s, lr in ((1, 1e-3), (2, 2e-3), (3, 4e-3))]

    async def crowded() -> list[ExperimentResult]:
        return await asyncio.gather(*(sandbox.run_sandboxed(spec(tiny_bundle, c)) for c in [TINY, *others]))

    together = asyncio.run(crowded())
    assert alone.outcome == together[0].outcome == "success", (alone.message, together[0].message)
    assert alone.steps == together[0].steps == TINY.max_steps
    assert abs(alone.val_bpb - together[0].val_bpb) <= 1e-6, (alone.val_bpb, together[0].val_bpb)
    assert len({round(r.val_bpb, 6) for r in together}) == 4, "the other runs really were different runs"


@pytest.mark.timeout(600)
def test_no_verdict_without_a_noise_floor_exits_non_zero_with_the_reason(
    state_root: Path, capsys: pytest.CaptureFixture
) -> None:
    """Every baseline seed stops at a one-second time cap long before its steps: nothing is comparable, and the
    run says so."""
    key = f"no-floor-{uuid.uuid4().hex[:8]}"
    config = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
    config["seed"] = random.randint(1, 2**30)  # fresh runs: Flyte's cache outlives the session
    argv = ["--memory-key", key, "--vocab-size", "512", "--max-steps", "50000", "--time-budget", "1"]
    argv += ["--n-experiments", "6", "--base-config", json.dumps(config), "--state-dir", str(state_root)]
    code = pa.main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert "the baseline succeeded on 0 of 5 seed(s), so seed noise cannot be measured" in err
    assert "truncated" in err and f"resume with --memory-key {key}" in err


LEGACY_RESULT = {"title": "", "seq": 1, "recorded_at": "2026-01-01T00:00:00+00:00"}


async def legacy_key(key: str) -> dict[str, Any]:
    """A store laid out by the previous version (one result.json per experiment, no settings), then opened."""
    old = await ledger_mod.Ledger.open(key, TINY, start=False)
    await old.start(TINY, old.rule)
    await old.save_edits([{"title": "Old LR", "overrides": {"learning_rate": 0.001}}], "batch-001")
    for n, (title, slug, bpb) in enumerate([(BASELINE_TITLE, "baseline", 4.1), ("Old LR", "old-lr", 4.0)], 1):
        payload = {
            **LEGACY_RESULT,
            "title": title,
            "seq": n,
            "result": ExperimentResult("success", val_bpb=bpb).to_dict(),
        }
        await old.memory.write_json.aio(f"experiments/{slug}/result.json", payload)
    await old.memory.write_text.aio("settings.json", "")  # the previous version had none
    await old.memory.save.aio()
    led = await ledger_mod.Ledger.open(key, TINY)
    research = tools.ResearchTools(ResearchLoop(led, ExperimentRunner(lambda job: None, 1), Budget(10, 2, 1)), {})
    rows = {r.title: r for r in await led.leaderboard()}
    owed = [(j.title, j.seed, j.role) for j in await research.loop.pending_jobs()]
    return {"labels": {t: r.label for t, r in rows.items()}, "old_bpb": rows["Old LR"].val_bpb, "owed": owed}


@pytest.mark.timeout(120)
def test_a_key_from_before_seeds_is_measured_again_and_its_old_results_are_shown_not_compared(state_root: Path) -> None:
    ledger_mod.init_local(project="validity-tests")
    SCENARIOS["legacy_key"] = legacy_key  # run inside a Flyte task, where a MemoryStore works
    out = asyncio.run(run("legacy_key"))
    assert out["labels"] == {BASELINE_TITLE: "legacy", "Old LR": "legacy"}
    assert out["old_bpb"] == 4.0, "the old number is still shown"
    assert out["owed"] == [[BASELINE_TITLE, s, "replicate"] for s in range(5)], "its noise is measured on resume"


READ_TOOLS = (
    "inspect_dataset",
    "get_baseline_train_code",
    "get_leaderboard",
    "get_code_edit_history",
    "get_promising_code",
)


async def tool_views(key: str, profile: dict[str, Any]) -> dict[str, Any]:
    """Every read-only tool's answer on a finished key (what an agent could ever see), given the run's real profile."""
    led = await ledger_mod.Ledger.open(key, start=False)
    base, rule, data = led.settle(ExperimentConfig(), led.rule, ())
    await led.start(base, rule, data)
    loop = ResearchLoop(led, ExperimentRunner(lambda job: None, 1), Budget(10, 2, 1))
    research = tools.ResearchTools(loop, profile)
    t = {f.__name__: f for f in research.as_tools()}
    out = {name: await t[name]() for name in READ_TOOLS}
    out["batch"] = await t["evaluate_batch_results"]("")
    out["history_table"] = await led.history_table()
    val_numbers = [r.val_bpb for rec in await led.records() for r in rec.runs]
    val_numbers += [row.val_bpb for row in await led.leaderboard()]
    out["_val_numbers"] = [v for v in val_numbers if v is not None]
    return json.loads(json.dumps(out, default=str))


def shows(text: str, number: str) -> bool:
    """Whether `number` appears in `text` as a whole number, not as part of a longer one."""
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text) is not None


@pytest.mark.timeout(600)
def test_the_held_out_audit_is_in_the_output_and_report_and_never_in_a_tool(state_root: Path) -> None:
    from test_agent import run_driver

    key = f"audit-{uuid.uuid4().hex[:8]}"
    ledger_mod.init_local(project="agent-tests")
    out = run_driver(memory_key=key, n_experiments=6, batch_size=3)
    assert out.error == "", out.error
    audit = out.audit
    assert audit["best"] == out.best["title"] and audit["baseline"] == BASELINE_TITLE
    assert audit["test"][BASELINE_TITLE]["n"] == 3 and audit["val"][BASELINE_TITLE]["n"] == 3
    test_values = [s["mean"] for s in audit["test"].values()]
    assert all(isinstance(v, float) and v > 0 for v in test_values)
    assert "Held-out test audit" in out.summary
    report = Path(out.report_path).read_text()
    assert "Held-out test audit" in report and f"{audit['test'][BASELINE_TITLE]['mean']:.4f}" in report
    profile = out.profile.to_dict()
    SCENARIOS["tool_views"] = lambda k: tool_views(k, profile)
    answers = asyncio.run(run("tool_views", key))
    val_rounded = {f"{v:.4f}" for v in answers.pop("_val_numbers")}
    views = json.dumps(answers)
    assert views.count(f'"val_tokens": {profile["val_tokens"]}') == 1, "the real profile reached inspect_dataset"
    resumed = run_driver(memory_key=key, n_experiments=6, batch_size=3)  # built after the first session's audit
    assert resumed.error == "" and resumed.audit, resumed.error
    for value in test_values:
        exact = [repr(value), f"{value:.6f}"]
        rounded = [] if f"{value:.4f}" in val_rounded else [f"{value:.4f}"]  # else a val score shows the same digits
        for shown in exact + rounded:
            assert not shows(views, shown), f"a test-split score reached a tool: {shown}"
            assert not shows(resumed.directive, shown), f"the resumed directive carries an audit number: {shown}"
    assert shows(report, f"{audit['test'][BASELINE_TITLE]['mean']:.4f}"), "the numbers the checks look for do exist"
    for text in (views, out.directive, resumed.directive):
        assert "audits/" not in text and "test_gain" not in text and "selection_gap" not in text
        assert "Held-out" not in text and "test_tokens" not in text and "test_documents" not in text
    val, test = held_out_plays(key)
    for play in val + test:  # the split is secret: no tool and no directive names a held-out play
        title = prepare._shakespeare_plays()[play].splitlines()[0].lstrip("# ").strip()
        for text in (views, out.directive, resumed.directive):
            assert play not in text.lower() and title.lower() not in text.lower(), (play, title)


def held_out_plays(key: str) -> tuple[list[str], list[str]]:
    """The key's validation and test plays, from its secret seed (which only the trusted side reads)."""
    (store,) = (prepare.state_dir() / "flyte" / "raw" / "agents" / "memory-store").glob(f"v0/*/*/*/{key}")
    seed = json.loads((store / splits.SECRET).read_text())["seed"]
    return prepare.choose_held_out(sorted(prepare._shakespeare_plays()), seed, *prepare.SHAKESPEARE_HELD_OUT)


def greedy(burn_cpu_s: float) -> str:
    """The baseline plus extra passes over its handed batches until `burn_cpu_s` more CPU-seconds are spent (CPU,
    not wall, so the amount does not depend on what else the machine is doing)."""
    return BASELINE.replace(
        "    elapsed = time.perf_counter() - start\n",
        "    extra = time.process_time()\n"
        f"    while time.process_time() - extra < {burn_cpu_s:.1f}:\n"
        "        for inputs, targets in feed:\n"
        "            loss = F.cross_entropy(model(inputs).view(-1, config.vocab_size), targets.reshape(-1))\n"
        "            optimizer.zero_grad(set_to_none=True)\n"
        "            loss.backward()\n"
        "            optimizer.step()\n"
        "    elapsed = time.perf_counter() - start\n",
    )


def declares_big_builds_small(burn_cpu_s: float) -> str:
    """Whatever the config declares, build the 1 x 32 model, and spend `burn_cpu_s` more on extra passes: the
    compute a big model would need, bought for a small one."""
    source = greedy(burn_cpu_s).replace("import math\n", "import dataclasses\nimport math\n", 1)
    return source.replace(
        "    return TinyGPT(config)\n",
        "    return TinyGPT(dataclasses.replace(config, n_layer=1, n_head=2, n_embd=32))\n",
    )


def records_of(runs: dict[str, list[ExperimentResult]]) -> list:
    from autoresearch.ledger.records import ExperimentRecord, ExperimentSpec, SeedRun

    records, seq = [], 0
    for title, results in runs.items():
        rec = ExperimentRecord(ExperimentSpec(title=title, slug=title.lower()), BASELINE)
        rec.runs = [SeedRun(r.seed, seq + i + 1, "screen", r) for i, r in enumerate(results)]
        seq += len(results)
        records.append(rec)
    return records


@pytest.mark.timeout(3600)
def test_extra_passes_and_a_false_config_declaration_are_flagged_over_budget(tiny_bundle: Path) -> None:
    """Compute is predicted from the exported graph's measured FLOPs x the tokens handed, never from the declared
    config: three passes over the batches, and a config that declares 8 x 384 but builds 1 x 32 and spends the big
    model's compute, are both `over_budget`; the declared-config rule would have let the second through."""
    from autoresearch.ledger.verdicts import OVER_BUDGET_SLACK_S, Arrival, GateRule, over_budget
    from autoresearch.ledger.views import judgement, leaderboard

    config = dataclasses.replace(TINY, time_budget_s=300.0)
    declared = config.with_overrides({"n_layer": 8, "n_head": 8, "n_embd": 384})
    rule = GateRule()

    async def run_all(specs: list[sandbox.SandboxSpec]) -> list[ExperimentResult]:
        return list(await asyncio.gather(*(sandbox.run_sandboxed(s) for s in specs)))

    honest = asyncio.run(run_all([spec(tiny_bundle, dataclasses.replace(config, seed=s)) for s in range(3)]))
    assert all(r.outcome == "success" for r in honest), [r.message for r in honest]
    # twice what the rule allows the busiest baseline seed, so the flag does not depend on how fast the machine is
    burn = 2 * (rule.over_budget_factor * max(r.train_cpu_s for r in honest) + OVER_BUDGET_SLACK_S)
    attacks = {
        "Greedy": dataclasses.replace(spec(tiny_bundle, config), train_py=greedy(burn), deadline_s=600),
        "Declared": dataclasses.replace(
            spec(tiny_bundle, declared), train_py=declares_big_builds_small(burn), deadline_s=600
        ),
    }
    taken = dict(zip(attacks, asyncio.run(run_all(list(attacks.values()))), strict=True))
    for result in taken.values():
        assert result.outcome == "success", result.message
        assert result.train_cpu_s >= burn, "the extra passes are measured from outside the sandbox"
    assert taken["Declared"].flops_per_token == honest[0].flops_per_token, "the graph is what was built"
    records = records_of({"baseline": honest, **{title: [result] for title, result in taken.items()}})
    rows = {r.title: r for r in leaderboard(records, judgement(records, rule, config))}
    for title in attacks:
        assert rows[title].label == "over_budget" and rows[title].rank is None, rows[title]
        assert "CPU-s where its exported graph predicts" in rows[title].verdict
    declared_work = [
        r.tokens * c.nominal_params for r, c in [*((h, config) for h in honest), (taken["Declared"], declared)]
    ]
    old_rule = [Arrival(i, "baseline" if i < 3 else "Declared", 0, "success", 2.0, r.train_cpu_s, w)
                for i, (r, w) in enumerate(zip([*honest, taken["Declared"]], declared_work, strict=True))]  # fmt: skip
    assert over_budget(old_rule, rule.over_budget_factor) == {}, "trusting the declared config hid it"
