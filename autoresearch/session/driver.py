"""The research driver's steps: open a key, research it, audit the pick on the test split, close.

The driver task in `parallelized_autoresearch.py` calls these in order; each takes what it needs (the session,
the runner, the tasks) as arguments, so every step reads on its own and nothing rides on module state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flyte
from flyte.ai import agents as flyte_agents

import bundle
import prepare
import tools as tools_mod
import ui
from autoresearch import llm
from autoresearch.agent import loop_guard, plans, prompts
from autoresearch.agent import program as program_mod
from autoresearch.agent.code_agent import ResearchAgent
from autoresearch.lab.budget import Budget, auto_max_runs
from autoresearch.lab.goal import Goal
from autoresearch.lab.judge import Judge
from autoresearch.lab.loop import ResearchLoop
from autoresearch.lab.pruning import PruneRule
from autoresearch.lab.runner import ExperimentRunner
from autoresearch.ledger import ledger as ledger_mod
from autoresearch.ledger import store as ledger_store
from autoresearch.ledger.records import BASELINE_TITLE, LeaderboardRow
from autoresearch.ledger.verdicts import GateRule
from autoresearch.ledger.views import best_line
from autoresearch.planner import builtin as planner
from autoresearch.report.results_tsv import results_tsv
from autoresearch.report.text import cost_per_gain, transfer_text
from autoresearch.sandbox import backends, cgroups, workdirs
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch.session import inputs, results, splits
from autoresearch.session.activity import Activity
from autoresearch.session.reporter import Reporter, report_html
from autoresearch_types import AutoresearchOutput, ExperimentConfig


def is_local() -> bool:
    """True in Flyte local mode or outside a task (experiments then run as subprocesses of this process)."""
    ctx = flyte.ctx()
    return not ctx or ctx.mode == "local"


def make_call_llm(model: str, choice: PlannerChoice) -> Any:
    """The built-in planner (seeded, batch or async) for `builtin`, otherwise litellm with retries, the per-call
    timeout and the cost cap."""
    if model == llm.BUILTIN:
        return planner.BuiltinPlanner(seed=choice.planner_seed, scheduling=choice.scheduling)
    timeout = llm.call_timeout(choice.llm_timeout, choice.api_base)
    return llm.LLMClient(api_base=choice.api_base or None, max_cost_usd=choice.max_llm_cost or None, timeout_s=timeout)


def usage_of(call_llm: Any, guard: loop_guard.LoopGuard | None = None) -> dict[str, Any]:
    """Token and dollar usage of a `call_llm` (the planner counts calls only), with the agent's errored turns."""
    if isinstance(call_llm, llm.LLMClient):
        usage = call_llm.usage.to_dict()
    else:
        usage = llm.Usage(calls=getattr(call_llm, "calls", 0)).to_dict()
    return {**usage, "errored_turns": guard.errored_turns if guard else 0}


def bundle_problem(data: bundle.Bundle) -> str:
    """Why a cached local bundle cannot be used ("" if it can): its files are gone (a deleted state dir), or a
    held-out file no longer matches the hash recorded when it was built."""
    if not (Path(data.data.path) / "meta.json").exists():
        return "is gone"
    for name, digest in data.digests.items():
        try:
            prepare.read_verified(prepare.held_out_path(data.data.path, data.tokenizer.path, name), digest)
        except (OSError, prepare.DataError):
            return f"has a changed or missing {name} file"
    return "" if data.digests else "records no content hashes"


async def load_bundle(dataset: str, num_shards: int, vocab_size: int, split_seed: int) -> bundle.Bundle:
    """The cached bundle of this key's split, rebuilt without the cache when its files are gone or damaged."""
    inputs = {"dataset": dataset, "num_shards": num_shards, "vocab_size": vocab_size, "split_seed": split_seed}
    data = await bundle.build_bundle.aio(**inputs)
    problem = bundle_problem(data) if is_local() else ""
    if problem:
        print(f"cached bundle {data.root} {problem}; rebuilding it", flush=True)
        data = await bundle.build_bundle.override(cache="disable").aio(**inputs)
    return data


def run_name() -> str:
    """This run's name (the Flyte run, or "local" outside one), for the key's lease."""
    action = getattr(flyte.ctx(), "action", None)
    return str(getattr(action, "run_name", "") or "local")


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
    data = {"dataset": dataset or prepare.DEFAULT_DATASET, "num_shards": num_shards or prepare.DEFAULT_NUM_SHARDS}
    explicit |= {k for k, v in (("dataset", dataset), ("num_shards", num_shards)) if v}
    return base, rule, data, explicit


def check_backend(backend: str, allow_unsandboxed: bool) -> None:
    """Refuse an unknown backend, and `none` without the explicit opt-in ("" means the strongest one available)."""
    problem = backends.backend_problem(backend, allow_unsandboxed) if backend else None
    if problem:
        raise inputs.InputError(problem)


LOCAL_CONCURRENCY = 2
"""Experiments at once on this machine by default: one per core of a small laptop."""
CLUSTER_CONCURRENCY = 8
"""Experiments at once on a cluster by default: each is its own one-CPU pod."""


def auto_concurrency(local: bool) -> int:
    """How many experiments run at once when `--concurrency` is left out."""
    return LOCAL_CONCURRENCY if local else CLUSTER_CONCURRENCY


def check_cluster(api_base: str, llm_secret: str, local: bool) -> None:
    """A cluster run's endpoint and secret, before any experiment: an `api_base` a pod can reach, and the LLM
    secret present in this pod under its variable. Raises `InputError` naming the fix."""
    if local:
        return
    if api_base:
        inputs.cluster_endpoint("api_base", api_base)
    if llm_secret:
        name, env = bundle.parse_secret(llm_secret)
        if not os.environ.get(env):
            raise inputs.InputError(
                f"the LLM secret {name!r} did not reach this pod as ${env}: create it on the cluster "
                f"(flyte create secret {name}) or fix --llm-secret NAME[:ENV]"
            )


def say_guarantees(backend: str, where: str = "") -> None:
    """Say once which sandbox runs the experiments (`where`, on a cluster) and what it cannot guarantee."""
    gaps = backends.missing_guarantees(backend)
    print(f"sandbox{f' in {where}' if where else ''}: {backend}; what it does not guarantee:", flush=True)
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
    budget: Budget
    research: tools_mod.ResearchTools | None = None
    reporter: Reporter | None = None
    guard: loop_guard.LoopGuard | None = None
    prompt_form: str = "full"
    """The agent's prompt: `full`, or `compact` for a small or local model (`prompts.choose_form`)."""
    program: str = ""
    """The research program the agent reads (`program.md`), recorded with the session."""
    could_run: bool = False
    """True when the budget allowed an experiment as the agent started: ending with none is then a failure."""
    files: results.ResultsDir | None = None
    """The key's results dir (a local run), where the report, `results.tsv` and `best_train.py` go."""
    sandbox: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """The sandbox backends experiments really ran under (as their results report), each with what it does not
    guarantee: shown in the output, the terminal and the report's Summary tab."""

    def on_result(self, job: Any, done: int, total: int, result: Any, standing: dict[str, Any] | None) -> None:
        """A run finished: the activity line, and the backend it ran under (said once per backend)."""
        self.activity.on_result(job, done, total, result, standing)
        backend = str((result.resources or {}).get("backend") or "")
        if backend in backends.BACKEND_GAPS and backend not in self.sandbox:
            self.sandbox[backend] = backends.missing_guarantees(backend)
            if not is_local():
                say_guarantees(backend, "the experiment pods")
            if self.reporter:
                self.reporter.run_info["sandbox"] = dict(self.sandbox)


def auto_turns(n_experiments: int) -> int:
    """Agent turns when none are given: enough for a planner that submits one experiment per turn."""
    return min(1000, 2 * n_experiments + 6)


@dataclasses.dataclass(frozen=True)
class RunLimits:
    """How much one session may do: ideas and runs in total for the key, batch size, slots, agent turns."""

    n_experiments: int
    batch_size: int
    concurrency: int
    max_turns: int
    goal: Goal = dataclasses.field(default_factory=Goal)
    max_runs: int = 0
    """Runs in total for the key; 0 takes `budget.auto_max_runs`."""
    transfer_check: float = 0.0
    """After research, re-run the pick and the baseline at this many times the token budget (0: no check)."""
    prune: PruneRule = dataclasses.field(default_factory=PruneRule)
    """Learning-curve pruning and futile confirmations (`pruning.py`); off by default."""


@dataclasses.dataclass(frozen=True)
class PlannerChoice:
    """Who plans: a litellm model (and where it is served, and its cost cap) or the built-in planner (and its seed
    and scheduling)."""

    model: str = ""
    api_base: str = ""
    max_llm_cost: float = 0.0
    planner_seed: int = 0
    scheduling: str = "async"
    llm_timeout: float = 0.0
    """Seconds per LLM call; 0 picks by where the model is served (`llm.call_timeout`)."""
    prompt: str = "auto"
    """The prompt form asked for: `auto`, `full` or `compact` (`prompts.choose_form`)."""
    program: str = ""
    """The research program's text (`program.md`); "" for the default file."""


async def open_session(memory_key: str, choice: PlannerChoice, settings: tuple, limits: RunLimits) -> Session:
    """Step 1: the key's ledger and fixed settings, the data bundle, the planner and the budget."""
    model_name, reason = llm.resolve_model(choice.model or None)
    files = results.ResultsDir(results.results_dir(memory_key)) if is_local() else None
    report = f"{files.root / results.REPORT} (live; Flyte's own: {report_location()})" if files else report_location()
    print(f"memory key: {memory_key}\nplanner: {model_name} ({reason})\nreport: {report}", flush=True)
    call_llm = make_call_llm(model_name, choice)
    form, steer = "full", choice.program or program_mod.default_text()
    print(program_mod.line(steer, model_name == llm.BUILTIN), flush=True)
    if isinstance(call_llm, llm.LLMClient):
        await call_llm.check(model_name)
        for line in ui.llm_lines(call_llm.timeout_s, call_llm.usage.cost_known, choice.max_llm_cost):
            print(line, flush=True)
        local = llm.is_local_server(choice.api_base)
        form, why = prompts.choose_form(choice.prompt, local, llm.context_window(model_name))
        print(f"prompt: {form} ({why})", flush=True)
    cleaned = workdirs.clean(prepare.state_dir() / ledger_store.WORK_DIR) if is_local() else []
    cleaned += workdirs.clean(sandbox_pool.runs_root()) if is_local() else []
    cleaned += cgroups.sweep_stale(cgroups.host()) if is_local() else []  # dead runs' cgroups, and what was in them
    ledger = await ledger_mod.Ledger.open(memory_key, start=False, run=run_name())
    ledger.store.lease.keep()
    try:
        session = await _prepare_key(memory_key, model_name, call_llm, ledger, settings, limits, len(cleaned))
    except BaseException:
        await ledger.store.close()
        raise
    session.files, session.prompt_form, session.program = files, form, steer
    return session


async def _prepare_key(
    memory_key: str,
    model_name: str,
    call_llm: Any,
    ledger: ledger_mod.Ledger,
    settings: tuple,
    limits: RunLimits,
    cleaned: int,
) -> Session:
    """The rest of step 1, with the key held: its settings, the data bundle and profile, the budget."""
    if ledger.exists:
        records = await ledger.records()
        done = sum(1 for r in records if r.runs or r.legacy)
        for line in ui.open_lines(done, len(records) - done, ledger.runs_used(), ledger.damaged, cleaned):
            print(line, flush=True)
    requested, rule, dataset, explicit = settings
    rule = dataclasses.replace(rule, horizon=limits.n_experiments)  # a new key spreads its campaign over its ideas
    try:
        base, rule, dataset = ledger.settle(requested, rule, explicit, dataset)
    except ledger_mod.LedgerError as exc:  # a flag that contradicts the key's settings: bad input, exit 2
        raise inputs.InputError(str(exc)) from None
    if ledger.stored_settings:
        print(
            f"resuming: this key's own settings apply ({ui.budget_summary(base)}; {rule.replicates} seeds)", flush=True
        )
    seed = key_split_seed(memory_key, ledger, dataset)
    dataset = {**dataset, "split": prepare.split_id(seed)}
    data = await load_bundle(dataset["dataset"], dataset["num_shards"], base.vocab_size, seed)
    profile = await bundle.profile_bundle.aio(bundle=data)
    await ledger.start(base.with_overrides({"vocab_size": profile.vocab_size}), rule, dataset)
    budget = Budget(limits.n_experiments, limits.batch_size, limits.concurrency, ledger.runs_used())
    budget.confirm_runs, budget.ideas = rule.replicates - 1, ledger.ideas_used()
    budget.max_runs = limits.max_runs or auto_max_runs(limits.n_experiments, rule.replicates)
    return Session(memory_key, model_name, ledger, data, profile, call_llm, Activity(), budget)


def key_split_seed(memory_key: str, ledger: ledger_mod.Ledger, dataset: dict[str, Any]) -> int:
    """The key's secret split seed (see `splits.py`); a key created before splits were secret is refused, because
    its runs were scored on another validation split than any new run would be."""
    if ledger.stored_settings and not dataset.get("split"):
        raise splits.SplitError(
            f"key {memory_key!r} was created before held-out splits were secret per key: its runs were scored on the "
            "old fixed validation plays, which every model (and the agent) could know. Start a new key."
        )
    return splits.key_split(ledger.store.work, dataset.get("split"))


async def research(session: Session, runner: ExperimentRunner, limits: RunLimits) -> tuple[str, str, str]:
    """Step 2: run what the key owes (baseline seeds first), then the Agent; returns directive, summary, error."""
    ledger, activity = session.ledger, session.activity
    hosted = session.call_llm if isinstance(session.call_llm, llm.LLMClient) else None  # None: offline
    loop = ResearchLoop(
        ledger=ledger,
        runner=runner,
        budget=session.budget,
        emit=activity.emit,
        on_result=session.on_result,
        on_start=activity.on_start,
        judge=Judge(hosted, session.model_name),
        goal=limits.goal,
        prune=limits.prune,
    )
    session.research = tools_mod.ResearchTools(
        loop, session.profile.to_dict(), call_llm=hosted, model=session.model_name
    )
    usage = lambda: usage_of(session.call_llm, session.guard)  # noqa: E731
    session.reporter = Reporter(ledger, run_info(session), activity, usage, session.files)
    await session.reporter.start()
    try:
        await run_owed(loop)
        floor = await noise_floor_problem(ledger)
        if floor:
            return "", "", floor
        directive = await build_directive(session, limits.max_turns)
        summary, error = await run_agent(session, directive, limits.max_turns)
        await loop.finish_confirmations()
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
        "max_runs": session.budget.max_runs,
        "batch_size": session.budget.batch_size,
        "concurrency": session.budget.concurrency,
        "gate": session.ledger.rule.describe(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def run_owed(loop: ResearchLoop) -> None:
    """Run what the ledger owes before new research: the baseline's seeds (the noise floor), experiments a
    crashed session saved but did not run, and confirmations. Finished runs are Flyte cache hits, not reruns."""
    jobs = await loop.pending_jobs()
    if jobs:
        titles = ", ".join(dict.fromkeys(j.title for j in jobs[:8])) + (" ..." if len(jobs) > 8 else "")
        print(f"running {len(jobs)} owed run(s): {titles}", flush=True)
        await loop.run_jobs(jobs)


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
        "--max-runs if the run budget ran out before its seeds."
    )


async def build_directive(session: Session, max_turns: int) -> str:
    """The opening message: goal, budget, data, noise floor, gate and, on resume, the prior research."""
    ledger, budget = session.ledger, session.budget
    records, verdicts, rows = await ledger.view()
    prior = any(r.runs for r in records if r.title != BASELINE_TITLE)
    best = next((r for r in rows if r.incumbent), None)
    baseline = next((r for r in rows if r.title == BASELINE_TITLE), None)
    base = ledger.base_config
    limits = prompts.budget_dict(
        budget.n_experiments, budget.batch_size, budget.concurrency, base.max_steps, base.time_budget_s, max_turns
    )
    limits.update(started=budget.started, replicates=ledger.rule.replicates, ideas=budget.ideas)
    limits.update(max_runs=budget.max_runs)
    noise = {"sigma": verdicts.sigma, "df": verdicts.df, "gate": ledger.rule.describe(), "mde": verdicts.mde}
    noise["campaign"] = verdicts.campaign.text() if verdicts.campaign else ""
    noise["baseline"] = baseline.to_dict() if baseline else None
    await ledger.archive_transcript()
    history = await ledger.history_table() if prior else ""
    best_row = best.to_dict() if prior and best else None
    if session.prompt_form == "compact":
        return prompts.compact_directive(base, ledger.bounds, limits, history, best_row, noise)
    return prompts.directive(session.profile, base, ledger.bounds, limits, history, best_row, noise)


async def run_agent(session: Session, directive: str, max_turns: int) -> tuple[str, str]:
    """The code-mode Agent over the research tools; returns its summary ("" unless its reply was judged final) and
    its error. The compact form gives a small model only the core tools and a short prompt."""
    ledger, budget, activity = session.ledger, session.budget, session.activity
    assert session.research is not None
    tools = session.research.as_tools()
    compact = session.prompt_form == "compact"
    if compact:
        tools = [t for t in tools if t.__name__ in prompts.COMPACT_TOOLS]
    stop = llm.StopGuard(session.call_llm, lambda: budget.remaining == 0, lambda: closing_text(ledger))
    active = session.model_name != llm.BUILTIN
    guard = loop_guard.LoopGuard(stop, session.research, [t.__name__ for t in tools], active=active)
    session.guard, session.could_run = guard, budget.remaining > 0
    agent = ResearchAgent(
        name="autoresearch",
        model=session.model_name,
        tools=tools,
        max_turns=max_turns,
        call_llm=guard,
        answer=guard.answer,
        value_limit=plans.COMPACT_VALUE_LIMIT if compact else None,
        **prompts.agent_prompt(session.prompt_form, session.program, ledger.base_config, ledger.bounds),
    )
    cb_token = flyte_agents.agent_progress_cb.set(activity.on_agent_event)
    try:
        result = await agent.run.aio(directive, memory=ledger.memory)
    finally:
        flyte_agents.agent_progress_cb.reset(cb_token)
    await guard.finish(list(ledger.memory.messages))
    return result.summary, guard.stop_reason or result.error


async def closing_text(ledger: ledger_mod.Ledger) -> str:
    """The trusted verdict in one sentence, from the ledger: the confirmed gain, or that nothing beat the noise."""
    _, verdicts, rows = await ledger.view()
    best = best_line([r.to_dict() for r in rows], verdicts.sigma)
    return f"{best}." if best else "No experiment succeeded, so there is no best train.py yet."


async def close_session(
    session: Session,
    directive: str,
    summary: str,
    error: str,
    audit: dict[str, Any] | None = None,
    stats: dict[str, float] | None = None,
    transfer: dict[str, Any] | None = None,
) -> AutoresearchOutput:
    """Step 3: the final report and the output (best with its source, leaderboard, verdict, audit, totals)."""
    ledger, activity = session.ledger, session.activity
    records, verdicts, board = await ledger.view()
    rows = [json.loads(json.dumps(r.to_dict(), default=str)) for r in board]
    best = next((i for i, r in enumerate(board) if r.incumbent), None)
    source = (await ledger.specs([board[best].title]))[0].train_py if best is not None else ""
    tsv = results_tsv(records, board, session.memory_key, ledger.base_config)
    verdict = await closing_text(ledger)
    if session.budget.stopped:
        cost = usage_of(session.call_llm, session.guard).get("cost_usd") or 0.0
        verdict += (
            f" Research stopped before its budget: {session.budget.stopped} ({activity.elapsed():.0f} s into this "
            f"session, {len(activity.results)} runs this session, LLM cost ${cost:.4f})."
        )
    if audit:
        verdict += " " + ui.audit_text(audit)
        print(ui.audit_text(audit), flush=True)
    if transfer:
        verdict += " " + transfer_text(transfer)
        print(transfer_text(transfer), flush=True)
    experiments = activity.experiments_run()
    stuck = session.guard.stuck if session.guard else ""
    why_none = no_experiment_reason(session)
    status, error = ui.session_status(error or failure_reason(board), experiments, stuck, why_none)
    if session.reporter:
        await session.reporter.stop(status, error)
    saved = session.files.save_final(report_html(), tsv, source, session.memory_key) if session.files else []
    if error:
        print(f"stopped: {error}", flush=True)
    totals = {
        "experiments_in_ledger": len(rows),
        "runs_in_ledger": ledger.runs_used(),
        "runs_this_session": len(activity.results),
        "compute_s_this_session": round(sum(r.wall_seconds for r in activity.results), 1),
        "turns": sum(1 for e in activity.events if e.get("kind") == "turn"),
        "sigma": verdicts.sigma,
        "first_confirmed_gain_s": activity.first_confirmed_s,
        "stopped": session.budget.stopped,
        "compute_cpu_s_this_session": round(sum(r.train_cpu_s for r in activity.results), 1),
        "llm": usage_of(session.call_llm, session.guard),
        "experiments_this_session": experiments,
        "status": status,
        "agent": session.guard.totals() if session.guard else {},
        "sandbox": dict(session.sandbox),
        **(stats or {}),
        **spending(session, verdicts, board, activity),
        "transfer": dict(transfer or {}),
    }
    steered = session.model_name != llm.BUILTIN
    await ledger.record_session(totals, program_mod.record(session.program, used=steered) if session.program else None)
    await ledger.close()
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
        results_tsv=tsv,
        saved=saved,
    )


def spending(session: Session, verdicts: Any, board: list[LeaderboardRow], activity: Activity) -> dict[str, Any]:
    """What the key spent and what it bought: ideas and runs against their budgets, this session's runs by role,
    the campaign's false-confirmation bound, the incumbent's detectable effect and the cost per confirmed gain."""
    budget, ledger = session.budget, session.ledger
    roles: dict[str, int] = {}
    for role in activity.roles:
        roles[role] = roles.get(role, 0) + 1
    cpu = sum(r.train_cpu_s for r in activity.results)
    usd = usage_of(session.call_llm, session.guard).get("cost_usd")
    confirmed = sum(r.label == "confirmed" for r in board)
    return {
        "ideas_in_ledger": ledger.ideas_used(),
        "n_experiments": budget.n_experiments,
        "max_runs": budget.max_runs,
        "runs_by_role_this_session": roles,
        "campaign": verdicts.campaign.to_dict() if verdicts.campaign else {},
        "mde": verdicts.mde,
        "cost_per_gain": cost_per_gain(confirmed, cpu, usd),
    }


def no_experiment_reason(session: Session) -> str:
    """Why a session may cleanly end with no experiment ("" when it may not: the budget allowed one, research was
    not stopped, so none running is a failure): the budget was spent, the goal reached, or the agent stopped."""
    if session.budget.stopped:
        return f"research stopped: {session.budget.stopped}"
    if not session.could_run:
        return "the experiment budget was already spent"
    return ""


def failure_reason(board: list[LeaderboardRow]) -> str:
    """Why the research did not really run, or "": every experiment beyond the baseline failed."""
    tried = [r for r in board if r.title != BASELINE_TITLE and r.outcome is not None]
    if tried and all(r.label == "failed" for r in tried):
        return f"every experiment failed ({len(tried)} of them): see their messages in the leaderboard"
    return ""


def new_memory_key() -> str:
    """A fresh, unique research key."""
    return f"research-{datetime.now(UTC).strftime('%Y%m%d')}-{uuid.uuid4().hex[:6]}"
