"""The built-in offline planner: a deterministic policy that speaks the `call_llm` protocol.

It reads the observations of earlier turns from the transcript and writes code-mode plans that call
the tools (no imports, no dict mutation, no augmented assignment, as the Monty sandbox requires):
survey first, then a batch of config overrides around the baseline, then batches of `train.py` code
edits (patches from a small recipe library) forked from the best, then a plain-text summary.
All decisions are pure functions of the observations, so they are testable without an agent run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flyte.ai.agents import LLMMessage

from ledger_views import best_line

RESULT_PREFIX = "Execution result:"
ERROR_PREFIX = "Your code raised an error"
MAX_CODE_ERRORS = 3


@dataclass(frozen=True)
class Recipe:
    """A named code change: patches against the baseline `train.py`, with the hypothesis behind it."""

    name: str
    summary: str
    hypothesis: str
    expected_effect: str
    patches: tuple[tuple[str, str], ...]


RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "cosine-lr",
        "linear warmup over the first 10% of steps, then cosine decay to 10% of the peak",
        "a constant LR wastes the end of a short run; decaying it lets the model settle into a lower loss",
        "-0.02 to -0.05 val_bpb",
        (
            (
                '    """Constant learning rate (a schedule is a good first edit)."""\n    return config.learning_rate',
                '    """Warmup over the first 10% of steps, then cosine decay to 10% of the peak."""\n'
                "    warmup = max(1, config.max_steps // 10)\n"
                "    if step < warmup:\n"
                "        return config.learning_rate * (step + 1) / warmup\n"
                "    progress = min(1.0, (step - warmup) / max(1, config.max_steps - warmup))\n"
                "    return config.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))",
            ),
        ),
    ),
    Recipe(
        "grad-clip",
        "clip the global gradient norm at 1.0",
        "clipping tames loss spikes at a high learning rate, which makes the run more stable",
        "-0.005 to -0.02 val_bpb",
        (
            (
                "        loss.backward()\n",
                "        loss.backward()\n        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n",
            ),
        ),
    ),
    Recipe(
        "adam-beta2-0.95",
        "AdamW betas (0.9, 0.95)",
        "a shorter second-moment memory adapts faster in a short run",
        "-0.005 to -0.02 val_bpb",
        (
            (
                "lr=config.learning_rate, weight_decay=config.weight_decay)",
                "lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.95))",
            ),
        ),
    ),
    Recipe(
        "silu-mlp",
        "SiLU instead of GELU in the MLP",
        "SiLU trains as well as GELU at this size and is slightly cheaper",
        "about 0, maybe -0.01 val_bpb",
        (("F.gelu(self.fc(x))", "F.silu(self.fc(x))"),),
    ),
    Recipe(
        "tied-embeddings",
        "tie the LM head to the token embedding",
        "with a large vocabulary the head is most of the parameters; tying them regularises a small model",
        "-0.01 val_bpb and fewer parameters",
        (
            (
                "        self.apply(self._init_weights)\n",
                "        self.head.weight = self.tok_emb.weight\n        self.apply(self._init_weights)\n",
            ),
        ),
    ),
)


# ---------------------------------------------------------------- reading the transcript


def observations(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planner's own observations in order: parsed results, or `{"code_error": text}` for a failed plan."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        if msg.get("role") != "user" or not isinstance(content, str):
            continue
        if content.startswith(ERROR_PREFIX):
            out.append({"code_error": content[:2000]})
        elif content.startswith(RESULT_PREFIX):
            try:
                data = json.loads(content[len(RESULT_PREFIX) :].strip())
            except json.JSONDecodeError:
                data = {"unparsed": content[:2000]}
            out.append(data if isinstance(data, dict) else {"value": data})
    return out


@dataclass
class State:
    """What the observations say: base config, budget, the board, the history, and the titles already tried."""

    base: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    code_errors: int = 0
    surveyed: bool = False


def read_state(obs: list[dict[str, Any]]) -> State:
    """Fold the observations, oldest first, into the planner's state."""
    state = State()
    for o in obs:
        if "code_error" in o:
            state.code_errors += 1
            continue
        if o.get("step") == "survey":
            state.surveyed = True
            state.base = o.get("info", {}).get("base_config", state.base)
        budget = o.get("budget") or o.get("info", {}).get("budget") or o.get("ran", {}).get("budget")
        state.budget = budget or state.budget
        state.rows = o.get("board", {}).get("rows", state.rows)
        state.history = o.get("history", {}).get("experiments", state.history)
        saved = o.get("saved") or {}
        state.tried |= {s.get("title") for s in saved.get("saved", [])} | {
            r.get("title") for r in saved.get("rejected", [])
        }
    state.tried |= {h["title"] for h in state.history}
    state.tried.discard(None)
    return state


# ---------------------------------------------------------------- decisions


def config_candidates(base: dict[str, Any]) -> list[dict[str, Any]]:
    """One-axis config changes around the base, in order of how often they help a short run."""
    lr, layers, width = base.get("learning_rate", 3e-3), base.get("n_layer", 3), base.get("n_embd", 128)
    heads, batch = base.get("n_head", 4), base.get("batch_size", 8)
    wider = max(heads, int(width * 1.5) // heads * heads)
    axes = [
        ("learning_rate", round(lr * 2, 6), f"LR {lr * 2:g}", "the base LR is conservative for a short run"),
        ("n_layer", layers + 1, f"Depth {layers + 1}L", "more depth adds capacity at a modest cost per step"),
        ("n_embd", wider, f"Width {wider}", "a wider residual stream learns faster per step"),
        ("batch_size", batch * 2, f"Batch {batch * 2}", "a bigger batch gives less noisy gradients"),
        ("learning_rate", round(lr / 2, 6), f"LR {lr / 2:g}", "the base LR may be too high and noisy"),
        ("dropout", 0.1, "Dropout 0.1", "dropout may help if the small corpus overfits"),
        ("weight_decay", 0.0, "No weight decay", "decay may slow a short run down"),
    ]
    return [
        {
            "title": title,
            "overrides": {key: value},
            "change_summary": f"{key} {base.get(key)} -> {value}",
            "hypothesis": why,
            "expected_effect": "lower val_bpb than the baseline",
        }
        for key, value, title, why in axes
    ]


def ancestry(title: str | None, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The experiment and its ancestors, newest first, from the edit history."""
    by_title = {h["title"]: h for h in history}
    chain, seen = [], set()
    while title and title in by_title and title not in seen:
        seen.add(title)
        chain.append(by_title[title])
        title = by_title[title].get("parent")
    return chain


def recipes_in(chain: list[dict[str, Any]]) -> set[str]:
    """Recipe names already applied along a fork chain (they are tagged in the change summary)."""
    return {r.name for r in RECIPES for h in chain if f"[{r.name}]" in (h.get("change_summary") or "")}


def code_candidates(best: str, history: list[dict[str, Any]], tried: set[str]) -> list[dict[str, Any]]:
    """Recipe edits forked from `best`, skipping recipes already in its lineage or tried on it."""
    applied = recipes_in(ancestry(best, history))
    out = []
    for recipe in RECIPES:
        title = f"{recipe.name} on {best}"[:80]
        if recipe.name in applied or title in tried:
            continue
        out.append(
            {
                "title": title,
                "parent_title": best,
                "patches": [{"old": old, "new": new} for old, new in recipe.patches],
                "change_summary": f"[{recipe.name}] {recipe.summary}",
                "hypothesis": recipe.hypothesis,
                "expected_effect": recipe.expected_effect,
            }
        )
    return out


def next_edits(state: State) -> tuple[list[dict[str, Any]], str]:
    """The next batch and its rationale: a config sweep until one has run, then code edits on the best."""
    size = min(int(state.budget.get("batch_size", 1)), int(state.budget.get("remaining", 0)))
    if size <= 0:
        return [], ""
    ran_configs = any(h.get("batch_id", "").startswith("batch") and h.get("result") for h in state.history)
    best = next((r["title"] for r in state.rows if r.get("rank") == 1), "baseline")
    if not ran_configs:
        pool = [c for c in config_candidates(state.base) if c["title"] not in state.tried]
        if pool:
            return pool[:size], "sweep one config axis per experiment around the baseline"
    pool = code_candidates(best, state.history, state.tried)
    return pool[:size], f"fork the best so far ({best}) with one code recipe each"


# ---------------------------------------------------------------- plans


SURVEY_PLAN = """info = inspect_dataset()
board = get_leaderboard(50)
history = get_code_edit_history(500)
{"step": "survey", "info": info, "board": board, "history": history}"""


def batch_plan(edits: list[dict[str, Any]], rationale: str) -> str:
    """Code that saves the edits, records the plan and hypotheses, runs the batch and reviews it."""
    hyps = {e["title"]: {"hypothesis": e["hypothesis"], "expected_effect": e["expected_effect"]} for e in edits}
    return f"""edits = {edits!r}
saved = edit_train_code_batch(edits)
titles = [s["title"] for s in saved["saved"]]
plan = record_batch_plan(titles, {rationale!r}) if titles else None
hyps = record_batch_hypotheses(saved["batch_id"], {hyps!r}) if titles else None
ran = run_experiment_batch(titles) if titles else {{"results": [], "budget": None}}
review = evaluate_batch_results(saved["batch_id"]) if titles else None
board = get_leaderboard(50)
history = get_code_edit_history(500)
{{"step": "batch", "saved": saved, "ran": ran, "review": review, "board": board, "history": history}}"""


def final_summary(state: State, reason: str) -> str:
    """The closing plain-text answer: the best experiment, its gain over the baseline, and what helped."""
    best = best_line(state.rows)
    if best is None:
        return f"Research stopped ({reason}). No experiment succeeded, so there is no best train.py yet."
    text = f"Research finished ({reason}). {best}"
    helped = [r["title"] for r in state.rows if r.get("label") == "new_best" and r["title"] != "baseline"]
    text += ". What helped: " + (", ".join(helped) if helped else "nothing beat the baseline") + "."
    return text


def decide(messages: list[dict[str, Any]]) -> str:
    """The next reply: a fenced plan, or the final plain-text summary."""
    state = read_state(observations(messages))
    if state.code_errors >= MAX_CODE_ERRORS:
        return final_summary(state, f"{state.code_errors} plans failed to run")
    if not state.surveyed:
        return f"Survey the data, the budget and prior research.\n```python\n{SURVEY_PLAN}\n```"
    if int(state.budget.get("remaining", 0)) <= 0:
        return final_summary(state, "experiment budget spent")
    edits, rationale = next_edits(state)
    if not edits:
        return final_summary(state, "no untried idea left")
    return f"Next batch: {rationale}.\n```python\n{batch_plan(edits, rationale)}\n```"


class BuiltinPlanner:
    """A `call_llm` that plans without a network: `await planner(model, system, messages, tools)`."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(
        self, model: str, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> LLMMessage:
        self.calls += 1
        return LLMMessage(content=decide(messages), tool_calls=[], raw=None)
