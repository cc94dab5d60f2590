"""What the agent reads before its first turn: the system instructions and the directive (the opening message).

Pure functions, data in, text out. The directive carries the goal, the budget, the data, the noise floor and the
gate, the bounds, the rules and, on resume, the research so far; never a held-out test number.
"""

from __future__ import annotations

import json
from typing import Any

from autoresearch.agent.program import skill
from autoresearch_types import RUN_OWNED, DatasetProfile, ExperimentConfig, WorkshopBounds

INSTRUCTIONS = """You are an ML research agent. You improve `train.py`, the training script of a small GPT
language model, by running experiments in parallel batches. The metric is val_bpb (validation bits per
byte, from a trusted evaluation you cannot change): lower is better. The research program at the end of
this prompt says what to aim for and how to edit; the protocol and rules here hold whatever it says.

The protocol, batch by batch:
1. inspect_dataset(), get_leaderboard(), get_code_edit_history() show the data, the results and the edits.
2. edit_train_code_batch(edits) saves a batch of DISTINCT edits. The first batch may change only config
   overrides; after that, change the training code (send `patches` or the full `train_py`), forking an
   experiment with parent_title. Give every edit a hypothesis and an expected effect.
3. record_batch_plan(titles, rationale), then run them. Either run_experiment_batch(titles), which runs
   them in parallel and waits for all of them; or, to keep every slot busy, submit_experiments(titles),
   which returns at once, then wait_for_results(1) and submit the next experiment into each slot that
   frees (its "slots" say how many are free).
4. evaluate_batch_results(batch_id): only a "confirmed" verdict beat seed noise.
Stop when the experiment budget is spent (tools say so) and reply in plain text, with no code block:
name the confirmed best experiment, its mean val_bpb over seeds, the gain over the baseline, and what
helped; if nothing was confirmed, say that no edit beat seed noise.

Rules: tools return {"error": ...} for bad input and say what to do instead; read it and adapt, do not
repeat the same call. Never repeat an experiment that already ran (duplicates are refused)."""
"""The Agent's system instructions (the protocol); the SDK appends the tool catalogue and code-mode rules, then the
research program (`program.md`) as a skill."""


def _budget_lines(budget: dict[str, Any]) -> list[str]:
    ideas, runs = budget.get("ideas", 0), budget.get("started", 0)
    return [
        f"- ideas (experiments beyond the baseline) for this memory key: {budget['n_experiments']} in total, {ideas} "
        f"tried so far; batches of up to {budget['batch_size']}, {budget['concurrency']} at once",
        f"- runs for this memory key: {budget.get('max_runs', 0)} in total, {runs} used so far (the baseline's seeds, "
        "every idea's first run and the confirmation re-runs of those that pass the screen)",
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
        f"- held out for validation: {profile.val_documents:,} documents, chosen for this research key and never "
        "named; a test split you never see audits the final pick",
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
    if noise.get("mde") is not None:
        lines.append(
            f"- findable now: against the incumbent, at this key's seeds, an edit must be about {noise['mde']:.4f} "
            "val_bpb better to be confirmed with 80% chance; smaller effects mostly end 'within_noise', so spend "
            "ideas on changes that can plausibly move val_bpb that much"
        )
    if noise.get("campaign"):
        lines.append(f"- error control over the whole key: {noise['campaign']}")
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
    base = {k: v for k, v in base_config.to_dict().items() if k not in RUN_OWNED}
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
        "causal, and its eval-mode forward() must export with torch.export as a pure tensor program (no Python `if` "
        "on tensor values, no .item(), no buffer written in forward, no random op in eval mode; else 'unexportable'). "
        "The trusted scorer checks both; metrics come only from it. Training compute is predicted from the exported "
        "graph's FLOPs: a run using far more CPU than that is 'over_budget'.",
        "- Titles are unique names; fork with parent_title to build on an experiment.",
        f"- The budget is fixed and belongs to the run: every experiment trains on the same {base_config.token_budget:,} "
        "tokens (steps = tokens / (batch_size x seq_len)) with one thread, and the seed is chosen by the run. Overrides "
        f"of {', '.join(RUN_OWNED)} are refused. A run stopped by the time cap is 'truncated' and not ranked.",
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


# ---------------------------------------------------------------- the compact form, for small and local models

PROMPT_FORMS = ("auto", "full", "compact")
"""`--prompt`: `auto` picks compact for a local server or a small context window, else full."""
SMALL_CONTEXT = 16_384
"""A model whose context window is smaller than this gets the compact prompt under `auto`."""
COMPACT_TOOLS: dict[str, tuple[str, str]] = {
    "inspect_dataset": (
        "()",
        'the data, base config, bounds and budget. Returns {"base_config": {...}, "bounds": {key: [low, high]}, '
        '"sigma": seed noise, "budget": {"remaining": runs left, "batch_size": int}}',
    ),
    "get_leaderboard": (
        "(top_n=20)",
        'experiments ranked by mean val_bpb. Returns {"rows": [{"title", "val_bpb", "verdict", "overrides"}], '
        '"best": the confirmed best row, "budget": {...}}',
    ),
    "edit_train_code_batch": (
        "(edits)",
        'saves up to batch_size new experiments; nothing runs yet. Each edit is a dict: {"title": a new name, '
        '"overrides": {config key: value within bounds}, "hypothesis": why, "parent_title": an experiment to build '
        'on (optional)}. Returns {"saved": [{"title", ...}], "rejected": [{"title", "error"}]}',
    ),
    "run_experiment_batch": (
        "(titles)",
        'runs saved experiments at once and waits. Returns {"results": [{"title", "outcome", "val_bpb"}], '
        '"verdicts": {title: {"verdict", "mean_val_bpb"}}, "budget": {"remaining": int}}',
    ),
    "stop_research": ("(reason)", "ends the research early; the reason is one sentence."),
}
"""The core tools of the compact prompt: the signature a plan calls and what the tool does and returns."""


def choose_form(requested: str, local_server: bool, context_window: int | None) -> tuple[str, str]:
    """The prompt form and why: the one asked for, else compact for a local server or a small context window."""
    if requested in ("full", "compact"):
        return requested, f"--prompt {requested}"
    if local_server:
        return "compact", "the model is served locally"
    if context_window is not None and context_window < SMALL_CONTEXT:
        return "compact", f"the model's context window is {context_window:,} tokens"
    return "full", "a hosted model with a large context window"


def example_plan(base: ExperimentConfig, bounds: WorkshopBounds) -> str:
    """One worked plan for the compact prompt, with real config keys and values inside the bounds."""
    limits = bounds.describe()
    rate = min(base.learning_rate * 2, limits["learning_rate"][1])
    layers = int(min(base.n_layer + 1, limits["n_layer"][1]))
    return f"""info = inspect_dataset()
saved = edit_train_code_batch([
    {{"title": "lr {rate:g}", "overrides": {{"learning_rate": {rate:g}}}, "hypothesis": "the LR is too low"}},
    {{"title": "{layers} layers", "overrides": {{"n_layer": {layers}}}, "hypothesis": "more depth helps"}}])
print("rejected:", saved["rejected"])
r = run_experiment_batch([s["title"] for s in saved["saved"]])
{{"verdicts": r["verdicts"], "left": r["budget"]["remaining"]}}"""


def compact_system_prompt(base: ExperimentConfig, bounds: WorkshopBounds, program: str = "") -> str:
    """The whole system prompt for a small model: the task, how a turn works, the core tools, one worked turn, and
    the research program (`program.md`) last."""
    steer = f"\n\n{skill(program)}" if program.strip() else ""
    tools = "\n".join(f"- {name}{sig}: {doc}" for name, (sig, doc) in COMPACT_TOOLS.items())
    return f"""You improve train.py, the training script of a small GPT, by running experiments. The metric is
val_bpb (validation bits per byte, computed by trusted code): lower is better.

Each turn, reply with ONE ```python block. It runs in a sandbox where the tools below are plain functions
(call them directly, no await). Then you see what it printed and the value of its last line. Variables do not
survive between turns. Python subset: no imports except math, json and re; no files, classes or del.
Reply in plain text, with no code, only when the budget is spent (budget["remaining"] is 0) or after
stop_research: name the best experiment, its val_bpb and the gain over the baseline.

Tools:
{tools}
Only the verdict "confirmed" beats seed noise. A tool returns {{"error": "..."}} for bad input: read it and fix
the call. Every title must be new.

A full turn, for example:
```python
{example_plan(base, bounds)}
```
The next turn reads the printed line and the dict, then plans the next batch from the verdicts.{steer}"""


def compact_directive(
    base_config: ExperimentConfig,
    bounds: WorkshopBounds,
    budget: dict[str, Any],
    history_table: str = "",
    best: dict[str, Any] | None = None,
    noise: dict[str, Any] | None = None,
) -> str:
    """The opening message in few words: goal, budget, noise, base config and bounds, and prior research."""
    base = {k: v for k, v in base_config.to_dict().items() if k not in RUN_OWNED}
    sigma = (noise or {}).get("sigma")
    baseline = (noise or {}).get("baseline") or {}
    parts = [
        "Goal: lower val_bpb of train.py within the budget.",
        f"Budget: {budget['n_experiments']} runs for this key, {budget.get('started', 0)} used (baseline seeds and "
        f"confirmation re-runs count); batches of up to {budget['batch_size']}; {budget['max_turns']} turns.",
        f"Seed noise: sigma = {sigma:.4f}." if sigma is not None else "Seed noise: not measured yet.",
    ]
    if baseline.get("val_bpb") is not None:
        parts.append(f"Baseline: val_bpb {baseline['val_bpb']:.4f}.")
    parts += [
        f"Base config: {json.dumps(base)}",
        f"Override bounds [low, high]: {json.dumps(bounds.describe())}",
        f"Every run trains on the same {base_config.token_budget:,} tokens; overrides of {', '.join(RUN_OWNED)} are "
        "refused.",
    ]
    rows = [line for line in history_table.strip().splitlines() if line.strip()]
    if rows:
        parts += ["Prior research under this key (do not repeat it):", *rows[:2], *rows[2:][-12:]]
        if best:
            parts.append(f"Confirmed best so far: {best['title']!r} at val_bpb {best['val_bpb']:.4f}: build on it.")
    else:
        parts.append("No prior research: start with a batch of config overrides.")
    return "\n".join(parts)


def agent_prompt(form: str, program: str, base: ExperimentConfig, bounds: WorkshopBounds) -> dict[str, Any]:
    """The Agent's prompt arguments for a form: the protocol's instructions with the program as the SDK's skill
    (appended after the tool catalogue), or, compact, the whole short prompt with the program in it."""
    if form == "compact":
        return {"instructions": INSTRUCTIONS, "skills": (), "prompt": compact_system_prompt(base, bounds, program)}
    return {"instructions": INSTRUCTIONS, "skills": (skill(program),) if program.strip() else (), "prompt": ""}
