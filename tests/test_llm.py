"""The LLM layer offline: litellm's mock_response stands in for the hosted model (the one edge we mock)."""

from __future__ import annotations

import litellm
import pytest

from autoresearch import llm


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


def test_a_local_server_gets_a_long_timeout_and_a_hosted_model_a_short_one() -> None:
    assert llm.call_timeout(0, "http://127.0.0.1:8080/v1") == llm.LOCAL_TIMEOUT_S >= 600
    assert llm.call_timeout(0, None) == llm.HOSTED_TIMEOUT_S <= 120
    assert llm.call_timeout(45, "http://127.0.0.1:8080/v1") == 45


async def test_a_call_that_timed_out_and_was_retried_counts_its_tokens_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    answered: list = []
    real = litellm.acompletion

    async def keep(**kwargs):
        answered.append(await real(**kwargs))
        return answered[-1]

    monkeypatch.setattr(litellm, "acompletion", keep)
    alone = llm.LLMClient(extra={"mock_response": "ok"})
    await alone("openai/gpt-4o-mini", "s", [{"role": "user", "content": "x"}], None)
    attempts = {"n": 0}

    async def first_hangs(**kwargs):
        attempts["n"] += 1
        if attempts["n"] == 1:
            await asyncio.Event().wait()  # never answers: the client's timeout ends it
        return answered[0]  # the retry answers at once, however busy the machine (no timing in this test)

    monkeypatch.setattr(litellm, "acompletion", first_hangs)
    client = llm.LLMClient(timeout_s=0.5, backoff_s=0.0, extra={"mock_response": "ok"})
    await client("openai/gpt-4o-mini", "s", [{"role": "user", "content": "x"}], None)
    assert attempts["n"] == 2 and client.usage.retries == 1 and client.usage.calls == 1
    assert client.usage.prompt_tokens == alone.usage.prompt_tokens > 0
    assert client.usage.completion_tokens == alone.usage.completion_tokens


async def test_an_unknown_model_has_an_unknown_cost_and_prints_nothing(capfd: pytest.CaptureFixture) -> None:
    client = llm.LLMClient(api_base="http://127.0.0.1:1/v1", extra={"mock_response": "ok"})
    await client("openai/qwen2.5-coder-1.5b-local", "s", [{"role": "user", "content": "x"}], None)
    assert client.usage.calls == 1 and client.usage.cost_known is False
    known = llm.LLMClient(extra={"mock_response": "ok"})
    await known("openai/gpt-4o-mini", "s", [{"role": "user", "content": "x"}], None)
    assert known.usage.cost_known and known.usage.cost_usd > 0
    out, err = capfd.readouterr()
    assert out == "" and "Provider List" not in err and "LiteLLM" not in err, (out, err)
