"""The real driver with scripted LLMs (a litellm provider, the one mocked edge) and real training, tiny sizes.

The tutorial's documented sequence records and ranks its experiments; a weak model recovers after the
corrective message, or is stopped with the reason and a non-zero exit; a positive --max-llm-cost stops the
run cleanly with no call after the cap; the terminal shows only our lines.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from pathlib import Path
from typing import Any

import litellm
import pytest

import parallelized_autoresearch as pa
import prepare
from benchmarks import llm_sessions as ls
from benchmarks.common import side_answer

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
PRICED = "openai/scripted-priced"
CALL_USD = 0.05
"""litellm's mock answer has 10 prompt and 20 completion tokens: at these prices every call costs $0.05."""


class ScriptedProvider(litellm.CustomLLM):
    """A stand-in LLM: agent turns from a script of replies (strings or functions of the messages)."""

    def __init__(self, script: list[ls.Reply], model: str = "openai/scripted"):
        super().__init__()
        self.script, self.model = list(script), model
        self.turns: list[list[dict[str, Any]]] = []
        self.calls = 0

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        side = side_answer(messages, memory="2Gi")
        if side:
            text = side[1]
        else:
            self.turns.append(list(messages))
            reply = self.script.pop(0) if self.script else ls.FINAL
            text = reply(messages) if callable(reply) else reply
        return litellm.mock_completion(model=self.model, messages=messages, mock_response=text)


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install a scripted provider as `scripted/...` for one test."""

    def install(script: list[ls.Reply], model: str = "openai/scripted") -> ScriptedProvider:
        handler = ScriptedProvider(script, model)
        monkeypatch.setattr(litellm, "custom_provider_map", [{"provider": "scripted", "custom_handler": handler}])
        return handler

    return install


def cli(key: str, *extra: str) -> list[str]:
    config = {**TINY, "seed": random.randint(1, 2**30)}
    argv = ["--memory-key", key, "--model", "scripted/agent", "--n-experiments", "12", "--batch-size", "2"]
    argv += ["--replicates", "3"]  # these check mechanics at small counts; test_cli checks the default's own count
    return argv + ["--vocab-size", "512", "--max-steps", "4", "--base-config", json.dumps(config), *extra]


def stored_titles(state: Path, key: str) -> dict[str, int]:
    """title -> number of runs, straight from the store's files."""
    (root,) = (state / "flyte" / "raw" / "agents" / "memory-store").glob(f"v0/*/*/*/{key}")
    out = {}
    for spec in (root / "experiments").glob("*/spec.json"):
        out[json.loads(spec.read_text())["title"]] = len(list((spec.parent / "runs").glob("seed-*.json")))
    return out


@pytest.fixture
def state(state_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's state dir for one test (`main` exports it; the fixture restores the old one)."""
    monkeypatch.setenv(prepare.STATE_DIR_ENV, str(state_root))
    return state_root


@pytest.mark.timeout(600)
def test_the_tutorials_sequence_through_the_driver_records_and_ranks_its_experiments(
    provider: Any, state: Path, capsys: pytest.CaptureFixture
) -> None:
    handler = provider(ls.TUTORIAL)
    key = f"tutorial-{uuid.uuid4().hex[:8]}"
    assert pa.main(cli(key)) == 0
    out = capsys.readouterr().out
    runs = stored_titles(state, key)
    assert all(runs.get(t, 0) >= 1 for t in ls.TUTORIAL_TITLES), runs
    board = out[out.index("Leaderboard") :]
    assert all(t in board for t in ls.TUTORIAL_TITLES), "every tutorial experiment is ranked"
    observations = [m["content"] for m in handler.turns[-1] if m["role"] == "user"]
    assert all("Your code raised an error" not in o for o in observations), observations
    evaluated = json.loads(observations[2].removeprefix("Execution result:").split("\n\n")[0])
    assert [r["title"] for r in evaluated["ranked"]] == sorted(
        ["higher-lr", "deeper-3L"], key=lambda t: next(r["val_bpb"] for r in evaluated["ranked"] if r["title"] == t)
    )
    assert "status: done: 3 experiments" in out and "0 of 3 agent turns errored" in out


WEAK = [
    ls.fenced(ls.SURVEY_MISSING_KEY, "Let me check the budget first.", "Then I will plan a batch."),
    ls.fenced(ls.SURVEY_MISSING_KEY, "Let me check the budget first.", "Then I will plan a batch."),
    ls.follows_example(ls.fenced(ls.SURVEY_MISSING_KEY), fence=False),
    ls.FINAL,
]
"""Indexes a missing key with prose around the block, repeats it, then copies the example without its fence."""


@pytest.mark.timeout(600)
def test_a_weak_model_recovers_after_the_corrective_message(
    provider: Any, state: Path, capfd: pytest.CaptureFixture
) -> None:
    handler = provider(WEAK)
    key = f"weak-{uuid.uuid4().hex[:8]}"
    assert pa.main(cli(key)) == 0, "it recovered: at least one experiment ran"
    out, err = capfd.readouterr()
    runs = stored_titles(state, key)
    assert sum(n for t, n in runs.items() if t != "baseline") >= 1
    second = [m["content"] for m in handler.turns[2] if m["role"] == "user"][2]
    third = [m["content"] for m in handler.turns[3] if m["role"] == "user"][3]
    assert "This run is stuck" in second and "```python" in second
    assert third.startswith("Execution result:"), "the unfenced copy of the example was fenced and ran"
    assert "status: done: 1 experiment" in out
    assert "2 of 3 agent turns errored, 1 loop correction(s)" in out and "cost unknown" in out
    for noise in ("Provider List", "Traceback", "LiteLLM", "Give Feedback"):
        assert noise not in out + err, noise


@pytest.mark.timeout(600)
def test_a_model_that_keeps_looping_is_stopped_with_the_reason_and_exit_1(
    provider: Any, state: Path, capsys: pytest.CaptureFixture
) -> None:
    handler = provider(ls.STUBBORN)
    key = f"stubborn-{uuid.uuid4().hex[:8]}"
    assert pa.main(cli(key, "--max-turns", "12")) == 1
    out, err = capsys.readouterr()
    assert len(handler.turns) == 4, "stopped two turns after the corrective message, not after 12"
    assert "status: stopped: the model looped, 0 experiments" in out and "4 of 4 agent turns errored" in out
    assert "error: the model kept making no progress" in err and "--model builtin" in err
    assert set(stored_titles(state, key)) == {"baseline"}


@pytest.mark.timeout(600)
def test_a_positive_llm_cost_cap_stops_the_run_cleanly_with_no_call_after_it(
    provider: Any, state: Path, capsys: pytest.CaptureFixture
) -> None:
    litellm.register_model(
        {
            PRICED: {
                "input_cost_per_token": 1e-3,
                "output_cost_per_token": 2e-3,
                "litellm_provider": "openai",
                "mode": "chat",
            }
        }
    )
    handler = provider([ls.fenced(ls.BATCH), ls.fenced(ls.BATCH.replace("LR 6e-3", "LR 1e-3")), ls.FINAL], PRICED)
    key = f"cost-{uuid.uuid4().hex[:8]}"
    cap = 5.5 * CALL_USD  # spent by the check, 3 baseline sizings, turn 1 and the first experiment's sizing
    assert pa.main(cli(key, "--concurrency", "1", "--max-llm-cost", f"{cap}")) == 0
    out = capsys.readouterr().out
    allowed = math.ceil(cap / CALL_USD)  # a call may start while the spend is under the cap, and none after
    assert handler.calls == allowed, "no call after the cap, however the calls were ordered"
    assert f"${allowed * CALL_USD:.4f}" in out and "Unsupported Type" not in out
    status = re.search(r"status: stopped: LLM cost cap, (\d+) experiments", out)
    assert status, out
    runs = stored_titles(state, key)
    ran = [title for title, n in runs.items() if title != "baseline" and n]
    planned = [title for title in runs if title != "baseline"]
    assert int(status.group(1)) == len(ran) >= 1 and ran == planned, (
        "the batch in flight finished, sized by the estimate"
    )


def test_the_driver_reports_what_really_happened() -> None:
    import ui

    assert ui.session_status("Reached max_turns=12 without producing a final answer.", 0, False)[0] == (
        "stopped: max turns, 0 experiments"
    )
    status, error = ui.session_status("Reached max_turns=12 without producing a final answer.", 0, False)
    assert "ran no experiment" in error and "--model builtin" in error
    assert ui.session_status("Reached max_turns=12 without a final answer.", 2, False) == (
        "stopped: max turns, 2 experiments",
        "",
    )
    assert ui.session_status("LLM call failed on turn 3: LLM budget spent: $0.3 of $0.3", 1, False)[1] == ""
    assert ui.session_status("", 1, False) == ("done: 1 experiment", "")
    assert ui.session_status("every experiment failed (2 of them)", 2, False)[0] == "failed, 2 experiments"
    totals = {"status": "done: 1 experiment", "llm": {"calls": 3, "prompt_tokens": 10, "cost_known": False}}
    totals |= {"ideas_in_ledger": 1, "n_experiments": 10, "runs_in_ledger": 4, "max_runs": 23}
    totals |= {"runs_this_session": 4, "runs_by_role_this_session": {"replicate": 3, "explore": 1}}
    assert ui.closing_lines(totals) == [
        "status: done: 1 experiment",
        "spent: 1 of 10 ideas and 4 of 23 runs for this key; this session 4 runs (1 explore, 3 replicate), "
        "0 training CPU-s",
        "LLM: 3 calls, 10 tokens, cost unknown; 0 of 0 agent turns errored",
    ]


def stored_record(state: Path, key: str, folder: str) -> list[dict[str, Any]]:
    """Every JSON record of one folder of the key's store (e.g. `transfers`), oldest first."""
    (root,) = (state / "flyte" / "raw" / "agents" / "memory-store").glob(f"v0/*/*/*/{key}")
    return [json.loads(p.read_text()) for p in sorted((root / folder).glob("*.json"))]


@pytest.mark.timeout(900)
def test_n_experiments_2_tries_two_ideas_and_the_tutorial_sequence_records_them(
    provider: Any, state: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--n-experiments` counts ideas, as the README says: the tutorial's sequence with 2 records its first two
    experiments (the baseline's seeds and any confirmation draw on the run budget, not on them), refuses the third
    for the budget, exits 0, and the closing lines say what was spent."""
    provider(ls.TUTORIAL)
    key = f"tutorial2-{uuid.uuid4().hex[:8]}"
    argv = cli(key)
    argv[argv.index("--n-experiments") + 1] = "2"
    assert pa.main(argv) == 0
    out = capsys.readouterr().out
    runs = stored_titles(state, key)
    assert runs["baseline"] == 3 and runs.get("higher-lr", 0) >= 1 and runs.get("deeper-3L", 0) >= 1, runs
    assert runs.get("lower-lr", 0) == 0, "a third idea is past --n-experiments 2"
    assert "status: done: 2 experiments" in out
    spent = next(line for line in out.splitlines() if line.startswith("spent:"))
    assert "2 of 2 ideas" in spent and f"{sum(runs.values())} of 7 runs" in spent and "training CPU-s" in spent


@pytest.mark.timeout(900)
def test_the_transfer_check_runs_and_is_recorded_in_the_ledger_the_report_and_the_summary(
    state: Path, capsys: pytest.CaptureFixture
) -> None:
    """A first session tries two ideas with the built-in planner; a person accepts one; a second session (no ideas
    left) runs the transfer check at 2x the token budget on fresh seeds: the pick and the baseline, three seeds
    each, stored under `transfers/`, printed, in the report and in `summary`."""
    key = f"transfer-{uuid.uuid4().hex[:8]}"
    argv = cli(key)
    argv[argv.index("--model") + 1] = "builtin"
    argv[argv.index("--n-experiments") + 1] = "2"
    assert pa.main(argv) == 0
    tried = [t for t, n in stored_titles(state, key).items() if t != "baseline" and n]
    assert tried, "the planner tried an idea"
    assert pa.main(["verdict", "--memory-key", key, "--title", tried[0], "accept", "--state-dir", str(state)]) == 0
    capsys.readouterr()
    assert pa.main([*argv, "--transfer-check", "2"]) == 0
    out = capsys.readouterr().out
    (check,) = stored_record(state, key, "transfers")
    assert check["pick"] in tried and check["scale"] == 2.0 and len(check["seeds"]) == 3, check
    seed = json.loads(argv[argv.index("--base-config") + 1])["seed"]
    assert check["seeds"] == [seed + 1000 + i for i in range(3)], "seeds the key never used"
    assert set(check["stats"]) == {check["pick"], "baseline"} and all(s["n"] == 3 for s in check["stats"].values())
    assert "Transfer check at 2x the token budget on fresh seeds" in out and check["verdict"] in out
    runs = stored_titles(state, key)
    assert runs["baseline"] == 3, "the transfer runs are not runs of the key"
    (report,) = (state / "results" / key).glob("report.html")
    assert "Transfer check at 2x the token budget" in report.read_text()
    capsys.readouterr()
    assert pa.main(["summary", "--memory-key", key, "--state-dir", str(state)]) == 0
    summary = capsys.readouterr().out
    assert "Transfer check (latest)" in summary and check["verdict"] in summary
    assert pa.main(["summary", "--memory-key", key, "--json", "--state-dir", str(state)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["incumbent"] == check["pick"], "the pick is the key's incumbent (accepted, or confirmed past it)"
    assert data["transfer"]["verdict"] == check["verdict"] and data["totals"]["cost_per_gain"]["confirmed_gains"] >= 0
    assert data["noise"]["campaign"]["bound"] >= 0 and data["noise"]["mde"] > 0
    assert "cost per confirmed gain" in summary and "campaign: expected false confirmations" in summary


@pytest.mark.timeout(600)
def test_a_model_that_only_replies_in_prose_ends_non_zero_with_the_reason_and_no_summary_quote(
    provider: Any, state: Path, capsys: pytest.CaptureFixture
) -> None:
    handler = provider(ls.PROSE_ONLY)
    key = f"prose-{uuid.uuid4().hex[:8]}"
    assert pa.main(cli(key, "--max-turns", "12")) == 1
    out, err = capsys.readouterr()
    assert len(handler.turns) == 3, "answered with the next step twice, then stopped"
    step = [m["content"] for m in handler.turns[1] if m["role"] == "user"][-1]
    assert "not a final answer" in step and "```python\nsaved = edit_train_code_batch(" in step
    assert "status: stopped: the model sent no plan, 0 experiments" in out
    assert "The agent's summary" not in out and ls.NON_ANSWER not in out, "a non-answer is never quoted back"
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "replied without a plan 3 times before any experiment ran" in line and "--model builtin" in line
    assert set(stored_titles(state, key)) == {"baseline"}


@pytest.mark.timeout(600)
def test_stop_research_with_no_experiment_exits_cleanly_and_a_contradicting_resume_exits_2(
    provider: Any, state: Path, capsys: pytest.CaptureFixture
) -> None:
    provider(ls.STOP_AT_ONCE)
    key = f"stop-{uuid.uuid4().hex[:8]}"
    argv = cli(key)
    assert pa.main(argv) == 0
    out, err = capsys.readouterr()
    assert "status: done: 0 experiments (research stopped: the baseline already meets the goal" in out
    assert "The agent's summary: I stopped the research" in out and "error:" not in err
    provider([ls.FINAL])
    steps = argv.index("--max-steps") + 1
    assert pa.main([*argv[:steps], "5", *argv[steps + 1 :]]) == 2, "the README's exit code for a contradiction"
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err and "token_budget" in err


@pytest.mark.timeout(600)
def test_a_key_whose_budget_is_already_spent_is_a_clean_exit(
    provider: Any, state: Path, capsys: pytest.CaptureFixture
) -> None:
    key = f"spent-{uuid.uuid4().hex[:8]}"
    argv = cli(key)
    argv[argv.index("--n-experiments") + 1] = "1"
    argv[argv.index("--model") + 1] = "builtin"
    assert pa.main(argv) == 0, "the built-in planner spends the key's one idea"
    capsys.readouterr()
    provider([ls.FINAL])
    argv[argv.index("--model") + 1] = "scripted/agent"
    assert pa.main(argv) == 0
    out = capsys.readouterr().out
    assert "status: done: 0 experiments (the experiment budget was already spent)" in out
