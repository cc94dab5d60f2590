"""What people and the agent read: the directive, the terminal lines, and the report HTML.

Pure functions, data in, text out: nothing here touches Flyte, the ledger or the sandbox, so every
renderer is testable on plain dicts.
"""

from __future__ import annotations

import json
from typing import Any

from autoresearch.report.chart import chart_points
from autoresearch.report.html import TABS as REPORT_TABS
from autoresearch.report.html import render_report
from autoresearch.report.parts import cost_text
from autoresearch_types import RUN_KEYS, DatasetProfile, ExperimentConfig, WorkshopBounds

__all__ = [
    "INSTRUCTIONS",
    "REPORT_TABS",
    "chart_points",
    "render_report",
    "directive",
    "budget_dict",
    "budget_summary",
    "experiment_line",
    "leaderboard_text",
]

INSTRUCTIONS = """You are an ML research agent. You improve `train.py`, the training script of a small GPT
language model, by running experiments in parallel batches. The metric is val_bpb (validation bits per
byte, from a trusted evaluation you cannot change): lower is better.

How to work, batch by batch:
1. Look before you plan: inspect_dataset(), get_leaderboard(), get_code_edit_history().
2. Plan a batch of DISTINCT edits with edit_train_code_batch(edits). The first batch may change only
   config overrides; after that, change the training code (send `patches` or the full `train_py`),
   forking the best experiment with parent_title. Give every edit a hypothesis and an expected effect.
3. record_batch_plan(titles, rationale), then run them. Either run_experiment_batch(titles), which runs
   them in parallel and waits for all of them; or, to keep every slot busy, submit_experiments(titles),
   which returns at once, then wait_for_results(1) and submit the next experiment into each slot that
   frees (its "slots" say how many are free).
4. evaluate_batch_results(batch_id): only a "confirmed" verdict beat seed noise; fork the confirmed best,
   drop what did not. A result "within_noise" is not a gain, however low its val_bpb.
Stop when the experiment budget is spent (tools say so) and reply in plain text, with no code block:
name the confirmed best experiment, its mean val_bpb over seeds, the gain over the baseline, and what
helped; if nothing was confirmed, say that no edit beat seed noise.

Rules: tools return {"error": ...} for bad input and say what to do instead; read it and adapt, do not
repeat the same call. Never repeat an experiment that already ran (duplicates are refused)."""
"""The Agent's system instructions; the tool catalogue and code-mode rules are appended by the SDK."""


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


def _split_text(stats: dict[str, Any] | None) -> str:
    stats = stats or {}
    if stats.get("mean") is None:
        return "-"
    se = f" ± {stats['se']:.4f}" if stats.get("se") is not None else ""
    return f"{stats['mean']:.4f}{se} ({stats.get('n', 0)} seed{'s' if stats.get('n') != 1 else ''})"


def audit_text(audit: dict[str, Any]) -> str:
    """The held-out audit in one sentence: both splits for the pick and the baseline, the gains and the gap."""
    best, base = audit.get("best"), audit.get("baseline", "baseline")
    val, test = audit.get("val") or {}, audit.get("test") or {}
    if best == base:
        return f"Held-out test audit: the baseline scores {_split_text(test.get(base))} on the test split (val {_split_text(val.get(base))})."
    text = (
        f"Held-out test audit of {best!r}: test {_split_text(test.get(best))} vs the baseline's "
        f"{_split_text(test.get(base))}"
    )
    if audit.get("test_gain") is not None and audit.get("val_gain") is not None:
        text += (
            f": test gain {audit['test_gain']:+.4f}, val gain {audit['val_gain']:+.4f}, selection gap "
            f"{audit['selection_gap']:+.4f}"
        )
    failed = audit.get("failed") or []
    return text + (f" ({len(failed)} audit run(s) failed)" if failed else "") + "."


def budget_summary(config: ExperimentConfig) -> str:
    """The fixed budget in one phrase: tokens, steps at the base batch and length, time cap, eval tokens."""
    return (
        f"{config.token_budget:,} training tokens ({config.max_steps} steps of {config.batch_size} x {config.seq_len}), "
        f"time cap {config.time_budget_s:g} s, {config.eval_tokens:,} eval tokens, vocab {config.vocab_size}"
    )


def _budget_lines(budget: dict[str, Any]) -> list[str]:
    used = budget.get("started", 0)
    return [
        f"- runs for this memory key: {budget['n_experiments']} in total, {used} used so far (baseline seeds and "
        f"confirmation re-runs count too); batches of up to {budget['batch_size']}, {budget['concurrency']} at once",
        f"- training budget per experiment: {budget['max_steps']} steps of the base config "
        f"({budget.get('token_budget', 0):,} tokens; an edit that changes batch_size or seq_len trains the same "
        f"tokens in more or fewer steps), with a safety cap of {budget['time_budget_s']:g} s",
        f"- agent turns at most: {budget['max_turns']}",
    ]


def _profile_lines(profile: DatasetProfile) -> list[str]:
    return [
        f"- dataset {profile.dataset!r}: {profile.train_tokens:,} training tokens "
        f"({profile.train_documents:,} documents), {profile.val_tokens:,} validation tokens",
        f"- tokenizer: {profile.vocab_size} tokens, {profile.bytes_per_token:.2f} bytes per token on average",
        f"- held out for validation: {', '.join(profile.val_names) or 'a separate split'}",
    ]


def _noise_lines(noise: dict[str, Any] | None) -> list[str]:
    """The measured noise floor and the acceptance gate, for the directive."""
    if not noise:
        return []
    base = noise.get("baseline") or {}
    sigma = noise.get("sigma")
    measured = f"sigma = {sigma:.4f} val_bpb (pooled over seeds, {noise.get('df', 0)} degrees of freedom)"
    lines = [f"- seed noise: {measured if sigma is not None else 'not measured yet'}"]
    if base.get("val_bpb") is not None:
        se = f" ± {base['se']:.4f}" if base.get("se") is not None else ""
        lines.append(f"- baseline: val_bpb {base['val_bpb']:.4f}{se} over {base.get('n_seeds', 0)} seeds")
    lines.append(f"- the gate: {noise.get('gate', '')}")
    return lines


def directive(
    profile: DatasetProfile,
    base_config: ExperimentConfig,
    bounds: WorkshopBounds,
    budget: dict[str, Any],
    history_table: str = "",
    best: dict[str, Any] | None = None,
    noise: dict[str, Any] | None = None,
) -> str:
    """The opening message of a run: goal, budget, data, bounds, noise floor, rules and, on resume, prior research.

    `budget` holds n_experiments, batch_size, concurrency, max_steps, time_budget_s and max_turns (and `started`);
    `history_table` is the ledger's markdown table (empty for a fresh key); `best` the incumbent's leaderboard row;
    `noise` holds sigma, df, the baseline's row and the gate rule's text.
    """
    base = {k: v for k, v in base_config.to_dict().items() if k not in RUN_KEYS + ("max_steps",)}
    budget = {"token_budget": base_config.token_budget, **budget}
    parts = [
        "# Goal",
        "Lower val_bpb of train.py on the held-out validation text, within the budget below.",
        "",
        "# Budget",
        *_budget_lines(budget),
        "",
        "# Data",
        *_profile_lines(profile),
        "",
        "# Noise floor and what counts as a gain",
        *_noise_lines(noise),
        "",
        "# Base config and override bounds",
        f"- base config: {json.dumps(base)}",
        f"- allowed overrides [low, high]: {json.dumps(bounds.describe())}",
        "",
        "# Rules",
        "- Edits in one batch must differ from each other and from everything in the ledger.",
        "- train.py must keep `build_model(config)` and `run_training(config, data_dir)`; the model must stay "
        "causal (the harness checks), and metrics come only from the harness.",
        "- Titles are unique names; fork with parent_title to build on an experiment.",
        f"- The budget is fixed and belongs to the run: every experiment trains on the same {base_config.token_budget:,} "
        "tokens (steps = tokens / (batch_size x seq_len)) with one thread, and the seed is chosen by the run. Overrides "
        f"of {', '.join(RUN_KEYS)} or max_steps are refused. A run stopped by the time cap is 'truncated' and not ranked.",
    ]
    if history_table.strip():
        parts += ["", "# Prior research under this memory key", history_table.strip()]
        if best:
            parts.append(
                f"\nConfirmed best so far: {best['title']!r} at mean val_bpb {best['val_bpb']:.4f}. "
                "Continue from it: do not rerun experiments that already have results."
            )
    else:
        parts += ["", "# Prior research", "None yet: this memory key is new. Start with a config sweep."]
    return "\n".join(parts)


def budget_dict(
    n_experiments: int, batch_size: int, concurrency: int, max_steps: int, time_budget_s: float, max_turns: int
) -> dict[str, Any]:
    """The budget as the directive and the tools report it."""
    return {
        "n_experiments": n_experiments,
        "batch_size": batch_size,
        "concurrency": concurrency,
        "max_steps": max_steps,
        "time_budget_s": time_budget_s,
        "max_turns": max_turns,
    }


# ---------------------------------------------------------------- terminal


def _fmt_bpb(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def progress_bar(done: int, total: int, width: int = 10) -> str:
    """A fixed-width text bar such as `[####------]`."""
    filled = round(width * done / max(1, total))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def batch_start_line(batch_id: str, jobs: list[dict[str, Any]]) -> str:
    """The terminal line when a batch starts: an empty bar and what runs (title, and the seed of re-runs)."""
    names = [_job_name(j) for j in jobs]
    shown = ", ".join(n[:44] for n in names[:6]) + (" ..." if len(names) > 6 else "")
    return f"  {batch_id} {progress_bar(0, len(jobs))} 0/{len(jobs)}  running: {shown}"


def _job_name(job: dict[str, Any]) -> str:
    """A run's name in the terminal: the title, with its seed when it is not the experiment's first run."""
    role = job.get("role", "screen")
    return job["title"] if role == "screen" else f"{job['title']} (seed {job.get('seed')}, {role})"


def experiment_line(
    batch_id: str, done: int, total: int, job: dict[str, Any], result: dict[str, Any], standing: dict[str, Any] | None
) -> str:
    """One terminal line per finished run: a progress bar, outcome and val_bpb, then the gate's verdict so far."""
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
        f"val_bpb {_fmt_bpb(result.get('val_bpb'))}  {float(result.get('wall_seconds') or 0):5.1f}s{extra}{message}{verdict}"
    )


def leaderboard_text(rows: list[dict[str, Any]], limit: int = 20) -> str:
    """The leaderboard as a fixed-width table: mean val_bpb ± standard error over seeds, deltas and the verdict."""
    head = f"{'rank':>4}  {'title':<36} {'val_bpb':>8} {'± se':>7} {'seeds':>5} {'vs best':>8} {'vs base':>8}  verdict"
    lines = [head, "-" * len(head)]
    for row in rows[:limit]:
        vs_best = "" if row.get("delta_vs_best") is None else f"{row['delta_vs_best']:+.4f}"
        vs_base = "" if row.get("delta_vs_baseline") is None else f"{row['delta_vs_baseline']:+.4f}"
        rank = "" if row.get("rank") is None else str(row["rank"])
        se = "" if row.get("se") is None else f"{row['se']:.4f}"
        label = str(row.get("label") or "-") + (" *best*" if row.get("incumbent") else "")
        if row.get("label") == "failed":
            label += f" ({row.get('outcome')})"
        lines.append(
            f"{rank:>4}  {str(row['title'])[:36]:<36} {_fmt_bpb(row.get('val_bpb')):>8} {se:>7} "
            f"{row.get('n_seeds', 0) or '':>5} {vs_best:>8} {vs_base:>8}  {label}"
        )
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return "\n".join(lines)


NO_EXPERIMENT_HINT = "try the built-in planner (--model builtin) or a stronger model"


def llm_lines(timeout_s: float, cost_known: bool, max_cost: float) -> list[str]:
    """What the run says at start about its LLM: the per-call timeout, and a cost cap that cannot work."""
    lines = [f"llm: {timeout_s:g} s per call (--llm-timeout)"]
    if max_cost and not cost_known:
        lines.append(f"warning: this model's price is unknown, so --max-llm-cost {max_cost:g} cannot stop it")
    return lines


def session_status(error: str, experiments: int, looped: bool) -> tuple[str, str]:
    """The report's status for a finished session, and the error that makes the exit non-zero ("" if none).

    A user's limit (max turns, the LLM cost cap) stops the agent cleanly once it ran an experiment; with none
    run, the research gave no verdict, so it is an error. A loop the guard broke is always one.
    """
    count = f"{experiments} experiment{'' if experiments == 1 else 's'}"
    if looped:
        return f"stopped: the model looped, {count}", error
    if error.startswith("Reached max_turns"):
        why = "max turns"
    elif "LLM budget spent" in error:
        why = "LLM cost cap"
    else:
        return (f"failed, {count}" if error else f"done: {count}"), error
    if experiments:
        return f"stopped: {why}, {count}", ""
    return f"stopped: {why}, {count}", f"the agent ran no experiment before it stopped ({why}): {NO_EXPERIMENT_HINT}"


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
    return [f"status: {totals.get('status', '-')}", llm]
