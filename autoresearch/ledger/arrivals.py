"""The runs the verdict fold reads, and the over-budget rule that flags some of them before it does.

A run's training CPU-seconds are measured outside the sandbox. Its work is predicted from what the trusted side
measured, never from the declared config: `TRAIN_FORWARDS` (3) x the forward FLOPs per token the scorer counted on
its exported graph x the tokens handed to it. The baseline's runs calibrate CPU-seconds per FLOP; a run that used
more than the gate's `over_budget_factor` (4) times its predicted CPU, plus 10 s, bought its score with compute its
model does not account for (more passes over its handed batches, a large teacher behind a small exported student,
a config that declares a big model and builds a small one) and is `over_budget`: shown, never ranked. Runs without
a measured graph (recorded before graphs were exported) are neither calibrated on nor flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

BASELINE = "baseline"
"""The reference experiment's title (`records.BASELINE_TITLE` names it)."""


@dataclass(frozen=True)
class Arrival:
    """One finished run: which experiment, which seed, its outcome and val_bpb, in arrival order (`seq`);
    with the training CPU-seconds measured outside the sandbox and its predicted work (`predicted_work`)."""

    seq: int
    title: str
    seed: int
    outcome: str
    val_bpb: float | None
    cpu_s: float = 0.0
    work: float = 0.0


TRAIN_FORWARDS = 3.0
"""Training FLOPs per token in forward passes: the forward, and a backward pass of about twice its cost."""
OVER_BUDGET_SLACK_S = 10.0
"""CPU-seconds of start-up, export and measurement noise allowed on top of the factor."""


def predicted_work(flops_per_token: float, tokens_handed: int) -> float:
    """Training FLOPs a run should need: from its exported graph's measured forward cost and the tokens handed
    to it (both counted by the trusted side; 0 when either is unknown)."""
    return TRAIN_FORWARDS * max(0.0, float(flops_per_token)) * max(0, int(tokens_handed))


def over_budget(arrivals: list[Arrival], factor: float, slack_s: float = OVER_BUDGET_SLACK_S) -> dict[int, str]:
    """The runs (by seq) that used far more training CPU than their work predicts, with the reason.

    The baseline's successful runs calibrate CPU-seconds per FLOP (their median); without them, or
    without measurements, nothing is flagged."""
    rates = sorted(
        a.cpu_s / a.work
        for a in arrivals
        if a.title == BASELINE and a.outcome == "success" and a.cpu_s > 0 and a.work > 0
    )
    if not rates:
        return {}
    rate = rates[len(rates) // 2]
    flagged = {}
    for a in arrivals:
        if a.title == BASELINE or a.outcome != "success" or a.cpu_s <= 0 or a.work <= 0:
            continue
        predicted = rate * a.work
        if a.cpu_s > factor * predicted + slack_s:
            flagged[a.seq] = (
                f"trained on {a.cpu_s:.0f} CPU-s where its exported graph predicts {predicted:.0f} "
                f"(limit {factor:g}x): compute its model does not account for"
            )
    return flagged
