"""The LLM layer offline: litellm's mock_response stands in for the hosted model (the one edge we mock)."""

from __future__ import annotations

import litellm
import pytest

import llm


def test_resolve_model_explains_its_choice() -> None:
    assert llm.resolve_model("openai/gpt-4o", {})[0] == "openai/gpt-4o"
    model, why = llm.resolve_model(None, {"ANTHROPIC_API_KEY": "k"})
    assert model.startswith("anthropic/") and "ANTHROPIC_API_KEY" in why
    model, why = llm.resolve_model(None, {})
    assert model == llm.BUILTIN and "built-in" in why


async def test_call_counts_tokens_and_returns_content() -> None:
    client = llm.LLMClient(extra={"mock_response": "```python\nprint(1)\n```"})
    msg = await client("openai/gpt-4o-mini", "system", [{"role": "user", "content": "hi"}], None)
    assert "print(1)" in msg.content
    assert client.usage.calls == 1
    assert client.usage.prompt_tokens > 0 and client.usage.completion_tokens > 0


async def test_transient_error_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    real = litellm.acompletion
    failures = {"left": 2}

    async def flaky(**kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-4o-mini")
        return await real(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", flaky)
    client = llm.LLMClient(backoff_s=0.01, extra={"mock_response": "ok"})
    msg = await client("openai/gpt-4o-mini", "s", [{"role": "user", "content": "x"}], None)
    assert msg.content == "ok"
    assert client.usage.retries == 2


async def test_permanent_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}

    async def bad(**kwargs):
        calls["n"] += 1
        raise litellm.AuthenticationError("bad key", llm_provider="openai", model="gpt-4o-mini")

    monkeypatch.setattr(litellm, "acompletion", bad)
    client = llm.LLMClient(backoff_s=0.01)
    with pytest.raises(litellm.AuthenticationError):
        await client("openai/gpt-4o-mini", "s", [{"role": "user", "content": "x"}], None)
    assert calls["n"] == 1


async def test_cost_cap_stops_further_calls() -> None:
    client = llm.LLMClient(max_cost_usd=0.0, extra={"mock_response": "ok"})
    with pytest.raises(llm.LLMBudgetExceeded, match="budget spent"):
        await client("openai/gpt-4o-mini", "s", [{"role": "user", "content": "x"}], None)
