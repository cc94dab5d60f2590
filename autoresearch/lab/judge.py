"""The hybrid judge: the gate's rules settle the clear cases; only borderline ones go to a judge.

Borderline (pure, `borderline`): a near miss (within noise after its screen, yet better than the incumbent by
at least `NEAR_MISS_SIGMA` sigma), or a candidate whose learning curve looks wrong (its training loss rose at
the end, or it ended clearly above its parent's while its score beat the parent's). A judge answers
`accept`, `reject` or `more_seeds` with a reason (see `verdicts.Decision` for what each does: a judge can
reject, or ask for the fresh-seed runs the gate needs, but never confirm a gain itself).

With an LLM the judge is one short call whose JSON reply is checked against a schema; a reply that is not
usable falls back to the built-in judge, which asks for more seeds while the budget allows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from autoresearch.ledger.source import unified_diff
from autoresearch.ledger.verdicts import DECISIONS, Verdict

NEAR_MISS_SIGMA = 0.5
"""A screen that missed, but beat the incumbent by at least this many sigma, is borderline."""
RISE_FRAC = 0.10
"""A training loss that ends this fraction above its own minimum is unstable."""
DISAGREE_FRAC = 0.03
"""A final training loss this fraction above the parent's, with a better score, is suspicious."""
MAX_DIFF_CHARS = 3000
CURVE_POINTS = 12

Curve = list[tuple[float, float]]

JUDGE_SYSTEM = (
    "You review one ML experiment whose result is borderline: it is within seed noise of the best so far, or "
    "its learning curve looks wrong. Decide: accept (the result is what it seems), reject (do not build on it: a "
    "broken or suspicious run), or more_seeds (run it on more seeds so the statistical gate can decide). You "
    "cannot confirm a gain; only more seeds can. Reply with ONLY a JSON object: "
    '{"decision": "accept" | "reject" | "more_seeds", "reason": "one sentence"}'
)


@dataclass
class Case:
    """One borderline experiment and everything the judge sees: why it is borderline, its verdict, the diff
    against its parent, the seeds' scores, and both learning curves."""

    title: str
    why: str
    verdict: Verdict
    diff: str = ""
    values: list[float] = field(default_factory=list)
    incumbent_values: list[float] = field(default_factory=list)
    curve: Curve = field(default_factory=list)
    parent_curve: Curve = field(default_factory=list)
    seeds_needed: int = 0
    """Fresh-seed runs `more_seeds` would start (0 when the gate already queues or ran them)."""


def _final(curve: Curve) -> float | None:
    """The last reported training loss, or None for an empty curve."""
    return float(curve[-1][1]) if curve and math.isfinite(curve[-1][1]) else None


def curve_problem(curve: Curve, parent_curve: Curve, beats_parent: bool) -> str | None:
    """What looks wrong with a learning curve, or None: a loss that rose at the end, or one that ended clearly
    above the parent's while the score beat the parent's (the score and the training disagree)."""
    losses = [loss for _, loss in curve if math.isfinite(loss)]
    if len(losses) >= 3 and losses[-1] > min(losses) * (1 + RISE_FRAC):
        return f"its training loss rose to {losses[-1]:.3f} at the end, {losses[-1] / min(losses) - 1:.0%} above its minimum"
    mine, theirs = _final(curve), _final(parent_curve)
    if beats_parent and mine is not None and theirs is not None and mine > theirs * (1 + DISAGREE_FRAC):
        return f"it scored better than its parent, yet its final training loss {mine:.3f} is above the parent's {theirs:.3f}"
    return None


def borderline(verdict: Verdict, curve: Curve, parent_curve: Curve, beats_parent: bool) -> str | None:
    """Why a freshly settled verdict needs a judge, or None when the gate's rule is clear."""
    if verdict.by != "rule":
        return None
    if verdict.label in ("unconfirmed", "confirmed", "within_noise"):
        problem = curve_problem(curve, parent_curve, beats_parent)
        if problem:
            return f"suspicious learning curve: {problem}"
    near = verdict.sigma is not None and verdict.gain is not None and verdict.gain >= NEAR_MISS_SIGMA * verdict.sigma
    if verdict.label == "within_noise" and verdict.n_fresh == 0 and near:
        assert verdict.gain is not None and verdict.sigma is not None
        return (
            f"near miss: {verdict.gain:.4f} better than {verdict.versus!r} ({verdict.gain / verdict.sigma:.1f} sigma) "
            "on its screen seed, not enough to pass the screen"
        )
    return None


def builtin_decision(case: Case, budget_left: int) -> tuple[str, str]:
    """The offline judge: more seeds while the budget allows (the gate then decides on fresh seeds); without
    budget, a near miss is left within noise (reject: not built on) and a flagged curve keeps the gate's label."""
    if case.seeds_needed and budget_left >= case.seeds_needed:
        return "more_seeds", f"borderline ({case.why}); {case.seeds_needed} fresh seed(s) let the gate decide"
    if case.why.startswith("near miss"):
        return "reject", f"borderline ({case.why}) and no budget for {case.seeds_needed} more seed(s)"
    return "accept", f"curve flagged ({case.why}), but the gate's fresh-seed test stands"


def _points(curve: Curve) -> list[list[float]]:
    """At most `CURVE_POINTS` evenly spaced points, rounded, for the prompt."""
    step = max(1, math.ceil(len(curve) / CURVE_POINTS))
    return [[round(f, 3), round(loss, 4)] for f, loss in curve[::step]]


def prompt(case: Case) -> str:
    """The judge's user message: the case in compact JSON plus the diff."""
    v = case.verdict
    facts = {
        "experiment": case.title,
        "why_borderline": case.why,
        "gate": {"label": v.label, "reason": v.reason, "sigma": v.sigma, "gain_vs_incumbent": v.gain},
        "seed_scores_val_bpb": [round(x, 5) for x in case.values],
        "incumbent_seed_scores": [round(x, 5) for x in case.incumbent_values],
        "learning_curve": _points(case.curve),
        "parent_learning_curve": _points(case.parent_curve),
        "more_seeds_would_run": case.seeds_needed,
    }
    diff = case.diff if len(case.diff) <= MAX_DIFF_CHARS else case.diff[:MAX_DIFF_CHARS] + "\n... (diff cut)"
    return f"{json.dumps(facts)}\n\nDiff against its parent:\n{diff or '(config change only)'}"


def parse_reply(text: Any) -> tuple[str, str] | None:
    """(decision, reason) from the judge's reply, or None unless it is a JSON object with a known decision and a
    non-empty reason (a code fence around it is tolerated)."""
    if not isinstance(text, str):
        return None
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0)) if match else None
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) - {"decision", "reason"}:
        return None
    decision, reason = data.get("decision"), data.get("reason")
    if decision not in DECISIONS or not isinstance(reason, str) or not reason.strip():
        return None
    return decision, " ".join(reason.split())[:400]


class Judge:
    """Decides borderline cases: with `call_llm` (an LLM client) one short call, else the built-in rule."""

    def __init__(self, call_llm: Any = None, model: str = "") -> None:
        self.call_llm = call_llm
        self.model = model
        self.calls = 0

    async def decide(self, case: Case, budget_left: int) -> tuple[str, str, str]:
        """(decision, reason, who): `who` names the LLM judge's model or `built-in judge`."""
        fallback = builtin_decision(case, budget_left)
        if self.call_llm is None:
            return (*fallback, "built-in judge")
        self.calls += 1
        try:
            reply = await self.call_llm(self.model, JUDGE_SYSTEM, [{"role": "user", "content": prompt(case)}], None)
            parsed = parse_reply(getattr(reply, "content", reply))
        except Exception as exc:  # a judge that fails must not stop research; the built-in rule decides
            return fallback[0], f"{fallback[1]} (the LLM judge failed: {type(exc).__name__})", "built-in judge"
        if parsed is None:
            return fallback[0], f"{fallback[1]} (the LLM judge's reply was not the JSON asked for)", "built-in judge"
        if parsed[0] == "more_seeds" and (not case.seeds_needed or budget_left < case.seeds_needed):
            return fallback[0], f"{fallback[1]} (the LLM judge asked for seeds the budget cannot run)", "built-in judge"
        return (*parsed, f"LLM judge {self.model}")


def case_for(rec: Any, parent: Any, verdict: Verdict, incumbent_values: list[float], replicates: int) -> Case | None:
    """The judge's case for a ledger record whose verdict just settled, or None when the rule is clear.

    `rec` and `parent` are `autoresearch.ledger.records.ExperimentRecord`s (parent None for a fork of nothing known)."""
    first = rec.runs[0].result if rec.runs else None
    curve = [(float(f), float(loss)) for f, loss in (first.curve if first else [])]
    parent_runs = [r for r in (parent.runs if parent else []) if r.val_bpb is not None]
    parent_curve = [(float(f), float(loss)) for f, loss in (parent_runs[0].result.curve if parent_runs else [])]
    values = [r.val_bpb for r in rec.runs if r.val_bpb is not None]
    parent_mean = sum(r.val_bpb for r in parent_runs) / len(parent_runs) if parent_runs else None
    beats = bool(values and parent_mean is not None and sum(values) / len(values) < parent_mean)
    why = borderline(verdict, curve, parent_curve, beats)
    if why is None:
        return None
    needed = replicates - 1 if verdict.label == "within_noise" and verdict.n_fresh == 0 else 0
    diff = unified_diff(parent.title, parent.train_py, rec.title, rec.train_py) if parent else ""
    return Case(rec.title, why, verdict, diff, values, incumbent_values, curve, parent_curve, needed)
