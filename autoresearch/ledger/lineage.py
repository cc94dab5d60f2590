"""The lineage rule: which experiments an edit may start from (a fork of a rejected, unranked or failed experiment
is refused, with the reason)."""

from __future__ import annotations

from autoresearch.ledger.verdicts import Decision, Verdict

UNFORKABLE = ("truncated", "over_budget", "pruned", "failed", "rejected")
"""Labels of experiments no edit may start from: nothing says they work at the fixed budget, or a judge or a person
ruled them out."""


def fork_refusal(verdict: Verdict | None, decision: Decision | None = None) -> str | None:
    """Why an experiment may not be forked (its label and the reason), or None when it may."""
    if decision is not None and decision.decision == "reject":
        return f"it was rejected ({decision.by}: {decision.reason})".replace(": )", ")")
    if verdict is None or verdict.label not in UNFORKABLE:
        return None
    return f"it is {verdict.label} ({verdict.reason})"
