"""What every benchmark shares: the `--quick`/`--json` flags, printing the figures, the state dir, a scripted LLM."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "AUTORESEARCH_STATE_DIR"
BENCH_STATE = Path(
    os.environ.setdefault(STATE_DIR_ENV, str(Path.home() / ".cache" / "parallelized-autoresearch" / "bench"))
)
"""Where benchmarks keep their state: never /tmp, which sandboxed code can write."""
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices from the internet


def parse_args(doc: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """`--quick` (a run under a minute) and `--json PATH` (the figures as one flat JSON object), and any flags
    `extra` adds."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run that finishes in under a minute")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as one flat JSON object")
    if extra:
        extra(parser)
    return parser.parse_args()


def report(figures: dict[str, float], json_path: Path | None, targets: dict[str, str] | None = None) -> None:
    """Print the figures as a table (with their targets) and write them to `json_path` if given."""
    targets = targets or {}
    print(f"{'figure':<34}{'value':>14}  target")
    for name, value in figures.items():
        print(f"{name:<34}{value:>14}  {targets.get(name, '')}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures) + "\n")


def side_answer(messages: list[dict[str, Any]], memory: str = "1Mi") -> tuple[str, str] | None:
    """A scripted model's reply to the product's side questions, as (kind, text), or None for an agent turn: "OK"
    to the start check, `memory` to a sizing question, no decision to the judge (so the built-in judge decides,
    as it does for the built-in planner, and the script is not spent on it)."""
    from autoresearch import llm
    from autoresearch.lab.judge import JUDGE_SYSTEM

    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    if system == llm.CHECK_SYSTEM:
        return "check", "OK"
    if system.startswith("You size compute"):
        return "sizing", json.dumps({"cpu": 1, "memory": memory})
    if system == JUDGE_SYSTEM:
        return "judge", "no opinion"
    return None


def scripted_llm(reply: Callable[[int, list[dict[str, Any]]], str]) -> Any:
    """A litellm `CustomLLM` standing in for a hosted model: agent turns from `reply(turn, messages)`, and the
    smallest size to every sizing question (so the deterministic estimate applies), and `side_answer`'s replies
    to the other side questions."""
    import litellm

    class Scripted(litellm.CustomLLM):
        def __init__(self) -> None:
            super().__init__()
            self.turns = 0

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            side = side_answer(messages)
            if side is None:
                self.turns += 1
            text = side[1] if side else reply(self.turns, list(messages))
            return litellm.mock_completion(model="openai/scripted", messages=messages, mock_response=text)

    return Scripted()


SDS = (0.022, 0.033, 0.051, 0.118)
"""The seed spreads measured at the old default learning rate of 3e-3 (VALIDITY.md): embedding-lr-3x, relu2, the
baseline, warmup-cosine. Wider and more unequal than at today's 1.5e-3: the hard case for the gate."""


def campaign(rng: Any, n: int, rule: Any, effect: float = 0.0, base_sd: float = 0.051, sds: tuple = SDS) -> list[str]:
    """One simulated key through the gate's real fold: the baseline on its seeds, then `n` candidates one after
    another, each with a spread drawn from `sds`, screened and (when they pass) confirmed. The first candidate is
    `effect` better than the baseline (with the quiet spread of a good config, 0.017), the rest do nothing relative
    to whatever is the incumbent. Returns the labels of the candidates that did nothing (and `real:<label>`)."""
    from autoresearch.ledger import verdicts as v

    def arrivals(runs: list[tuple[str, int, float]]) -> list[Any]:
        return [v.Arrival(i, t, s, "success", b) for i, (t, s, b) in enumerate(runs, 1)]

    runs = [("baseline", s, rng.gauss(2.7, base_sd)) for s in range(rule.replicates)]
    titles, truth, null = ["baseline"], 2.7, []
    for k in range(n):
        title, real = f"C{k}", k == 0 and bool(effect)
        mean, sd = (2.7 - effect, 0.017) if real else (truth, rng.choice(sds))
        null += [] if real else [title]
        titles.append(title)
        runs.append((title, 0, rng.gauss(mean, sd)))
        judged = v.judge(arrivals(runs), titles, rule, with_mde=False)
        runs += [(title, s, rng.gauss(mean, sd)) for s in judged.confirm_seeds.get(title, [])]
        judged = v.judge(arrivals(runs), titles, rule, with_mde=False)
        truth = mean if judged.incumbent == title else truth
    final = v.judge(arrivals(runs), titles, rule, with_mde=False)
    return [final.verdicts[t].label for t in null] + (["real:" + final.verdicts["C0"].label] if effect else [])


def false_confirmations(
    n: int, keys: int, seed: int, rule: Any, effect: float = 0.0, base_sd: float = 0.051, sds: tuple = SDS
) -> tuple[float, float]:
    """Mean false confirmations per key over `keys` simulated keys of `n` candidates, and the share of keys whose
    real first candidate (with `effect`) was confirmed."""
    import random

    rng = random.Random(seed)
    labels = [campaign(rng, n, rule, effect, base_sd, sds) for _ in range(keys)]
    false = sum(lab == "confirmed" for key in labels for lab in key) / keys
    return false, sum("real:confirmed" in key for key in labels) / keys
