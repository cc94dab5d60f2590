"""What people and the agent read: the directive, the terminal lines, and the report HTML.

Pure functions, data in, text out: nothing here touches Flyte, the ledger or the sandbox, so every
renderer is testable on plain dicts.
"""

from __future__ import annotations

import json
from typing import Any

from autoresearch_types import DatasetProfile, ExperimentConfig, WorkshopBounds
from ui_html import TABS as REPORT_TABS
from ui_html import chart_points, render_report

__all__ = [
    "INSTRUCTIONS",
    "REPORT_TABS",
    "chart_points",
    "render_report",
    "directive",
    "budget_dict",
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
3. record_batch_plan(titles, rationale), then run_experiment_batch(titles): it runs them in parallel.
4. evaluate_batch_results(batch_id): keep what helped, fork the winner, drop what did not.
Stop when the experiment budget is spent (tools say so) and reply in plain text, with no code block:
name the best experiment, its val_bpb, the improvement over the baseline, and what helped.

Rules: tools return {"error": ...} for bad input and say what to do instead; read it and adapt, do not
repeat the same call. Never repeat an experiment that already ran (duplicates are refused)."""
"""The Agent's system instructions; the tool catalogue and code-mode rules are appended by the SDK."""


def _budget_lines(budget: dict[str, Any]) -> list[str]:
    return [
        f"- experiments this run: {budget['n_experiments']} "
        f"(batches of up to {budget['batch_size']}, {budget['concurrency']} running at once)",
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


def directive(
    profile: DatasetProfile,
    base_config: ExperimentConfig,
    bounds: WorkshopBounds,
    budget: dict[str, Any],
    history_table: str = "",
    best: dict[str, Any] | None = None,
) -> str:
    """The opening message of a run: goal, budget, data, bounds, rules and, on resume, prior research.

    `budget` holds n_experiments, batch_size, concurrency, max_steps, time_budget_s and max_turns;
    `history_table` is the ledger's markdown table (empty for a fresh key); `best` a leaderboard row.
    """
    base = {k: v for k, v in base_config.to_dict().items() if k not in ("max_steps", "time_budget_s", "seed")}
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
        "# Base config and override bounds",
        f"- base config: {json.dumps(base)}",
        f"- allowed overrides [low, high]: {json.dumps(bounds.describe())}",
        "",
        "# Rules",
        "- Edits in one batch must differ from each other and from everything in the ledger.",
        "- train.py must keep `build_model(config)` and `run_training(config, data_dir)`; the model must stay "
        "causal (the harness checks), and metrics come only from the harness.",
        "- Titles are unique names; fork with parent_title to build on an experiment.",
    ]
    if history_table.strip():
        parts += ["", "# Prior research under this memory key", history_table.strip()]
        if best:
            parts.append(
                f"\nBest so far: {best['title']!r} at val_bpb {best['val_bpb']:.4f}. "
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


def batch_start_line(batch_id: str, titles: list[str]) -> str:
    """The terminal line when a batch starts: an empty bar and what runs."""
    shown = ", ".join(t[:40] for t in titles[:6]) + (" ..." if len(titles) > 6 else "")
    return f"  {batch_id} {progress_bar(0, len(titles))} 0/{len(titles)}  running: {shown}"


def experiment_line(batch_id: str, done: int, total: int, title: str, result: dict[str, Any]) -> str:
    """One terminal line per finished experiment: a progress bar for its batch, then outcome and val_bpb."""
    bar = progress_bar(done, total)
    extra = f" after {result.get('oom_retries')} OOM retries" if result.get("oom_retries") else ""
    message = "" if result.get("outcome") == "success" else f"  ({str(result.get('message', ''))[:80]})"
    return (
        f"  {batch_id} {bar} {done}/{total}  {title[:40]:<40} {result.get('outcome', '?'):<8} "
        f"val_bpb {_fmt_bpb(result.get('val_bpb'))}  {float(result.get('wall_seconds') or 0):5.1f}s{extra}{message}"
    )


def leaderboard_text(rows: list[dict[str, Any]], limit: int = 20) -> str:
    """The leaderboard as a fixed-width table for the terminal."""
    head = f"{'rank':>4}  {'title':<36} {'val_bpb':>8} {'vs best':>8} {'vs base':>8}  {'outcome':<8} label"
    lines = [head, "-" * len(head)]
    for row in rows[:limit]:
        vs_best = "" if row.get("delta_vs_best") is None else f"{row['delta_vs_best']:+.4f}"
        vs_base = "" if row.get("delta_vs_baseline") is None else f"{row['delta_vs_baseline']:+.4f}"
        rank = "" if row.get("rank") is None else str(row["rank"])
        lines.append(
            f"{rank:>4}  {str(row['title'])[:36]:<36} {_fmt_bpb(row.get('val_bpb')):>8} {vs_best:>8} {vs_base:>8}  "
            f"{str(row.get('outcome') or '-'):<8} {row.get('label', '')}"
        )
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return "\n".join(lines)
