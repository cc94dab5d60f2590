"""The research program (`program.md`, `--program PATH`): it reaches the agent's prompt in both forms, is recorded
with its hash in the ledger and shown by `summary --json`, a bad path is refused before any work, and the
built-in planner says once that it ignores it. The real driver, real tiny training, a scripted litellm provider."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import litellm
import pytest
from test_agent_llm import ScriptedProvider, cli

import parallelized_autoresearch as pa
import prepare
from autoresearch.agent import program, prompts
from autoresearch.ledger import store
from autoresearch.session import inputs
from benchmarks import llm_sessions as ls

MARKER = "Prefer changes to the learning-rate schedule; never touch the tokenizer. (marker 7f3a)"
"""A program line no other prompt text holds, so finding it proves the program reached the model."""


@pytest.fixture
def state(state_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(prepare.STATE_DIR_ENV, str(state_root))
    return state_root


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(script: list[ls.Reply]) -> ScriptedProvider:
        handler = ScriptedProvider(script)
        monkeypatch.setattr(litellm, "custom_provider_map", [{"provider": "scripted", "custom_handler": handler}])
        return handler

    return install


def session_records(state: Path, key: str) -> list[dict[str, Any]]:
    """The key's stored session records, oldest first, straight from the store's files."""
    (root,) = (state / "flyte" / "raw" / "agents" / "memory-store").glob(f"v0/*/*/*/{key}")
    return [json.loads(p.read_text()) for p in sorted((root / "sessions").glob("*.json"))]


def summary_json(key: str, capsys: pytest.CaptureFixture) -> dict[str, Any]:
    capsys.readouterr()
    assert pa.main(["summary", "--memory-key", key, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.timeout(900)
def test_the_program_reaches_the_prompt_in_both_forms_and_the_ledger_with_its_hash(
    provider: Any, state: Path, capsys: pytest.CaptureFixture
) -> None:
    text = f"# My program\n\n{MARKER}\n"
    path = state / f"program-{uuid.uuid4().hex[:8]}.md"
    path.write_text(text)
    key = f"program-{uuid.uuid4().hex[:8]}"
    argv = cli(key)
    handler = provider(list(ls.STOP_AT_ONCE))
    assert pa.main([*argv, "--program", str(path), "--prompt", "full"]) == 0
    out = capsys.readouterr().out
    sha = hashlib.sha256(text.encode()).hexdigest()
    assert f"program: --program, sha256 {sha[:12]}" in out
    system = handler.turns[0][0]
    assert system["role"] == "system" and MARKER in system["content"]
    protocol = system["content"].index("The protocol, batch by batch:")
    assert protocol < system["content"].index(MARKER), "the protocol comes first, the program after it"
    assert "Start with a sweep of config overrides" not in system["content"], "the default program is replaced"

    handler = provider(list(ls.STOP_AT_ONCE))
    assert pa.main([*argv, "--prompt", "compact"]) == 0, "the same key, the default program, the compact form"
    system = handler.turns[0][0]["content"]
    assert system.startswith("You improve train.py") and MARKER not in system
    assert program.default_text().strip() in system

    first, second = session_records(state, key)
    assert first["program"] == {"sha256": sha, "source": "--program", "used": True, "chars": len(text), "text": text}
    assert second["program"]["sha256"] == program.digest(program.default_text())
    assert second["program"]["source"] == "program.md (default)" and second["program"]["text"] == program.default_text()
    sessions = summary_json(key, capsys)["sessions"]
    assert [s["program_sha256"] for s in sessions] == [sha, second["program"]["sha256"]]


@pytest.mark.timeout(600)
def test_the_builtin_planner_says_once_it_ignores_the_program_and_records_it_unused(
    state: Path, capsys: pytest.CaptureFixture
) -> None:
    path = state / f"program-{uuid.uuid4().hex[:8]}.md"
    path.write_text(MARKER)
    key = f"program-builtin-{uuid.uuid4().hex[:8]}"
    argv = cli(key, "--program", str(path), "--n-experiments", "1")
    argv[argv.index("--model") + 1] = "builtin"
    assert pa.main(argv) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("program:")] == [
        "program: ignored: the built-in planner follows its own rules (program.md steers an LLM agent only)"
    ]
    (record,) = session_records(state, key)
    assert record["program"]["used"] is False and record["program"]["text"] == MARKER


@pytest.mark.parametrize("content", [None, "", "  \n\t\n"], ids=["missing", "empty", "blank"])
def test_a_missing_or_empty_program_exits_2_with_the_path_before_any_work(
    state: Path, content: str | None, capsys: pytest.CaptureFixture
) -> None:
    path = state / f"no-program-{uuid.uuid4().hex[:8]}.md"
    if content is not None:
        path.write_text(content)
    key = f"program-bad-{uuid.uuid4().hex[:8]}"
    assert pa.main(cli(key, "--program", str(path))) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: --program ") and str(path) in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err and "memory key:" not in out, "refused before the driver started"
    assert not list((state / "flyte" / "raw" / "agents" / "memory-store").glob(f"v0/*/*/*/{key}")), "no ledger"


def test_the_driver_task_refuses_a_blank_program_and_takes_empty_as_the_default() -> None:
    base = {"n_experiments": 4, "batch_size": 2, "concurrency": 0, "max_turns": 0}
    assert inputs.run_inputs({**base, "program": ""}) == []
    assert inputs.run_inputs({**base, "program": MARKER}) == []
    with pytest.raises(inputs.InputError, match="program is empty"):
        inputs.run_inputs({**base, "program": " \n"})
    with pytest.raises(inputs.InputError, match="40,000 are allowed"):
        inputs.run_inputs({**base, "program": "x" * (program.MAX_CHARS + 1)})


def test_a_session_record_with_a_malformed_program_is_damaged() -> None:
    good = {"at": "2026-01-01T00:00:00", "totals": {}, "program": program.record(MARKER, used=True)}
    assert store.record_problem("sessions/a.json", json.dumps(good).encode()) is None
    assert store.record_problem("sessions/a.json", json.dumps({**good, "program": None}).encode()) is None
    bad = {**good, "program": {"text": MARKER}}
    assert store.record_problem("sessions/a.json", json.dumps(bad).encode()) is not None
    assert store.record_problem("sessions/a.json", b'{"totals": {}}') is not None


def test_the_program_sits_below_the_protocol_in_both_prompt_forms() -> None:
    from autoresearch_types import ExperimentConfig, WorkshopBounds

    base, bounds = ExperimentConfig(), WorkshopBounds()
    full = prompts.agent_prompt("full", MARKER, base, bounds)
    assert full["instructions"] == prompts.INSTRUCTIONS and MARKER not in full["instructions"]
    assert full["prompt"] == "" and len(full["skills"]) == 1 and full["skills"][0].endswith(MARKER)
    compact = prompts.agent_prompt("compact", MARKER, base, bounds)
    assert compact["prompt"].endswith(MARKER) and compact["prompt"].index("Tools:") < compact["prompt"].index(MARKER)
