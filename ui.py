"""What people read: the terminal lines of a run, and (re-exported) the report's renderer.

Pure functions, data in, text out: nothing here touches Flyte, the ledger store or the sandbox, so every line
is testable on plain dicts. The report tabs themselves are `autoresearch.report`'s; the agent's prompts are
`autoresearch.agent.prompts`'.
"""

from __future__ import annotations

from typing import Any

from autoresearch.report.chart import chart_points
from autoresearch.report.html import TABS as REPORT_TABS
from autoresearch.report.html import render_report
from autoresearch.report.parts import cost_text
from autoresearch.report.text import audit_text, fmt_bpb, leaderboard_text
from autoresearch_types import ExperimentConfig

__all__ = [
    "REPORT_TABS",
    "audit_text",
    "chart_points",
    "render_report",
    "budget_summary",
    "experiment_line",
    "leaderboard_text",
]


def open_lines(done: int, pending: int, runs: int, damaged: list[dict[str, str]], cleaned: int) -> list[str]:
    """What the driver found when it opened a key: experiments done and pending, runs, records set aside."""
    lines = [f"found: {done} experiment(s) done, {pending} pending, {runs} run(s) recorded"]
    if cleaned:
        lines.append(f"cleaned up what crashed runs left: {cleaned} working director{'y' if cleaned == 1 else 'ies'}")
    for d in damaged:
        lines.append(
            f"set aside a damaged record: {d['path']} ({d['problem']}); its bytes are kept at {d['kept_at']} in the "
            "store: repair it and move it back to recover it"
        )
    return lines


def budget_summary(config: ExperimentConfig) -> str:
    """The fixed budget in one phrase: tokens, steps at the base batch and length, time cap, eval tokens."""
    return (
        f"{config.token_budget:,} training tokens ({config.max_steps} steps of {config.batch_size} x {config.seq_len}), "
        f"time cap {config.time_budget_s:g} s, {config.eval_tokens:,} eval tokens, vocab {config.vocab_size}"
    )


# ---------------------------------------------------------------- terminal


def progress_bar(done: int, total: int, width: int = 10) -> str:
    """A fixed-width text bar such as `[####------]`."""
    filled = round(width * done / max(1, total))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def batch_start_line(batch_id: str, jobs: list[dict[str, Any]], done: int, total: int) -> str:
    """The terminal line when runs start: the key's counter (runs recorded of its budget) and what starts (title,
    and the seed of re-runs)."""
    names = [_job_name(j) for j in jobs]
    shown = ", ".join(n[:44] for n in names[:6]) + (" ..." if len(names) > 6 else "")
    return f"  {batch_id} {progress_bar(done, total)} {done}/{total}  starting: {shown}"


def _job_name(job: dict[str, Any]) -> str:
    """A run's name in the terminal: the title, with its seed when it is not the experiment's first run."""
    role = job.get("role", "screen")
    return job["title"] if role == "screen" else f"{job['title']} (seed {job.get('seed')}, {role})"


def experiment_line(
    batch_id: str, done: int, total: int, job: dict[str, Any], result: dict[str, Any], standing: dict[str, Any] | None
) -> str:
    """One terminal line per finished run: the key's counter (runs recorded of its budget: it never goes back),
    outcome and val_bpb, then the gate's verdict so far."""
    bar = progress_bar(done, total)
    extra = f" after {result.get('oom_retries')} OOM retries" if result.get("oom_retries") else ""
    message = "" if result.get("outcome") == "success" else f"  ({str(result.get('message', ''))[:80]})"
    verdict = ""
    if standing and standing.get("verdict"):
        mean = standing.get("mean_val_bpb")
        se = standing.get("se")
        spread = f" ± {se:.4f}" if se is not None else ""
        verdict = f"  -> {standing['verdict']}" + (
            f" (mean {mean:.4f}{spread}, {standing.get('n_seeds')} seeds)" if mean is not None else ""
        )
    return (
        f"  {batch_id} {bar} {done}/{total}  {_job_name(job)[:44]:<44} {result.get('outcome', '?'):<9} "
        f"val_bpb {fmt_bpb(result.get('val_bpb'))}  {float(result.get('wall_seconds') or 0):5.1f}s{extra}{message}{verdict}"
    )


NO_EXPERIMENT_HINT = "try the built-in planner (--model builtin) or a stronger model"


def llm_lines(timeout_s: float, cost_known: bool, max_cost: float) -> list[str]:
    """What the run says at start about its LLM: the per-call timeout, and a cost cap that cannot work."""
    lines = [f"llm: {timeout_s:g} s per call (--llm-timeout)"]
    if max_cost and not cost_known:
        lines.append(f"warning: this model's price is unknown, so --max-llm-cost {max_cost:g} cannot stop it")
    return lines


def session_status(error: str, experiments: int, stuck: str = "", why_none: str = "") -> tuple[str, str]:
    """The report's status for a finished session, and the error that makes the exit non-zero ("" if none).

    Zero experiments is not success: a session that could run one and ran none failed, whatever the model said.
    It ends cleanly with none only for a reason in `why_none` (the budget was already spent, the goal was reached,
    or the agent stopped research with its reason). A user's limit (max turns, the LLM cost cap) stops the agent
    cleanly once it ran an experiment. A model the loop guard stopped (`stuck`: it looped, or sent no plan) is
    always an error.
    """
    count = f"{experiments} experiment{'' if experiments == 1 else 's'}"
    if stuck:
        return f"stopped: {stuck}, {count}", error
    limit = (
        "max turns" if error.startswith("Reached max_turns") else "LLM cost cap" if "LLM budget spent" in error else ""
    )
    if error and not limit:
        return f"failed, {count}", error
    status = f"stopped: {limit}, {count}" if limit else f"done: {count}"
    if experiments:
        return status, ""
    if why_none:
        return f"{status} ({why_none})", ""
    if limit:
        return status, f"the agent ran no experiment before it stopped ({limit}): {NO_EXPERIMENT_HINT}"
    return f"failed: no experiment ran, {count}", (
        f"the agent ended without running an experiment though the budget allowed one: {NO_EXPERIMENT_HINT}"
    )


def closing_lines(totals: dict[str, Any]) -> list[str]:
    """The run's closing lines: its status, then LLM calls, tokens, cost and errored turns."""
    usage = totals.get("llm") or {}
    agent = totals.get("agent") or {}
    tokens = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    turns = agent.get("agent_turns", totals.get("turns", 0))
    llm = (
        f"LLM: {usage.get('calls', 0)} calls, {tokens:,} tokens, {cost_text(usage)}; "
        f"{usage.get('errored_turns', 0)} of {turns} agent turns errored"
    )
    if agent.get("corrections"):
        llm += f", {agent['corrections']} loop correction(s)"
    lines = [f"status: {totals.get('status', '-')}", spent_line(totals), llm]
    sandbox = totals.get("sandbox") or {}
    if sandbox:
        lines.append(f"sandbox: {', '.join(sorted(sandbox))} (what it does not guarantee: the report's Summary tab)")
    return lines


def spent_line(totals: dict[str, Any]) -> str:
    """What the key spent: ideas and runs against their budgets, and this session's runs and training CPU-seconds."""
    roles = totals.get("runs_by_role_this_session") or {}
    parts = ", ".join(f"{n} {role}" for role, n in sorted(roles.items())) or "none"
    return (
        f"spent: {totals.get('ideas_in_ledger', 0)} of {totals.get('n_experiments', 0)} ideas and "
        f"{totals.get('runs_in_ledger', 0)} of {totals.get('max_runs', 0)} runs for this key; this session "
        f"{totals.get('runs_this_session', 0)} runs ({parts}), {float(totals.get('compute_cpu_s_this_session') or 0):.0f} "
        "training CPU-s"
    )
