"""The LLM layer: `call_llm` through litellm with retries, a per-call timeout, model choice and cost.

`LLMClient` is the `call_llm` the Agent gets. It counts tokens and dollars per run and refuses
further calls once `max_cost_usd` is spent, which the Agent reports as a clean stop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

from flyte.ai.agents import LLMMessage

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

log = logging.getLogger(__name__)

BUILTIN = "builtin"
"""The model name of the offline built-in planner."""

HOSTED_DEFAULTS = (
    ("OPENAI_API_KEY", "openai/gpt-4o-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5"),
    ("GEMINI_API_KEY", "gemini/gemini-2.0-flash"),
)
"""Hosted models used by default, in order, when their API key is in the environment."""


class LLMBudgetExceeded(RuntimeError):
    """The run spent its `--max-llm-cost`; the agent stops cleanly with this as its error."""


class LLMUnavailable(RuntimeError):
    """The model did not answer the check at start; the message is the provider's error in one line."""


HOSTED_TIMEOUT_S = 120.0
"""Seconds one call to a hosted model may take before it is retried."""
LOCAL_TIMEOUT_S = 600.0
"""Seconds one call to a local server (`--api-base`) may take: a CPU server reads a 3k-token prompt in minutes."""

CHECK_SYSTEM = "You check that a model answers."
"""The system prompt of the one small call made at start (scripted test models recognise it)."""


def resolve_model(model: str | None, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Pick the model and say why: the one asked for, a hosted one whose key is set, else the built-in planner."""
    env = os.environ if env is None else env
    if model:
        return model, f"--model {model} was given"
    for key, name in HOSTED_DEFAULTS:
        if env.get(key):
            return name, f"{key} is set, so the hosted {name} plans"
    keys = ", ".join(k for k, _ in HOSTED_DEFAULTS)
    return BUILTIN, f"no --model and none of {keys} is set, so the built-in offline planner plans"


def call_timeout(requested: float, api_base: str | None) -> float:
    """Seconds per LLM call: the one asked for, else long enough for a local CPU server, short for a hosted model."""
    if requested and requested > 0:
        return float(requested)
    return LOCAL_TIMEOUT_S if api_base else HOSTED_TIMEOUT_S


def is_local_server(api_base: str | None) -> bool:
    """True when `api_base` names this machine or a private network (a llama.cpp or Ollama server, typically a
    small model on a CPU), where a long prompt costs minutes."""
    host = (urlparse(api_base).hostname or "") if api_base else ""
    if not host:
        return False
    if host == "localhost" or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def context_window(model: str) -> int | None:
    """The model's input context in tokens as litellm's (offline) model map knows it; None when it does not."""
    import litellm

    quiet_litellm(litellm)
    try:
        info = litellm.get_model_info(model)
    except Exception:  # an unknown or local model
        return None
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if window else None


def count_tokens(text: str, encoding: str = "cl100k_base") -> int:
    """Tokens of `text` with a real BPE tokenizer, offline: tiktoken's encoding from the copy litellm ships (tiktoken
    itself would download it). Used to measure prompts; a served model's own count comes from its usage."""
    import litellm.litellm_core_utils.default_encoding  # noqa: F401 - points tiktoken at litellm's bundled files
    import tiktoken

    return len(tiktoken.get_encoding(encoding).encode(text, disallowed_special=()))


@dataclass
class Usage:
    """Tokens and dollars spent by one run's LLM calls (each answered call once, however often it was retried)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    cost_known: bool = True
    """False once litellm could not price a call (an unknown or local model): the dollars are then unknown."""
    research_calls: int = 0
    research_tokens: int = 0
    research_cost_usd: float = 0.0
    """The research subagent's share of the figures above: its calls go through the same client, so the same
    `--max-llm-cost` caps both, and the report shows this share on its own."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


def response_usage(response: Any) -> Usage:
    """One provider response's calls, tokens and dollars (an unknown model's price: tokens count, dollars become
    unknown)."""
    import litellm

    usage = getattr(response, "usage", None)
    out = Usage(calls=1 if response is not None else 0)
    out.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    out.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    if response is not None:
        try:
            out.cost_usd = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # litellm cannot price this model (a local or unknown one)
            out.cost_known = False
    return out


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Provider errors worth retrying: rate limits, timeouts, connection and 5xx errors."""
    import litellm

    names = ("RateLimitError", "APIConnectionError", "Timeout", "ServiceUnavailableError", "InternalServerError")
    return tuple(getattr(litellm, n) for n in names if hasattr(litellm, n)) + (asyncio.TimeoutError,)


def to_llm_message(response: Any) -> LLMMessage:
    """litellm's response as the Agent's provider-neutral `LLMMessage`."""
    msg = response.choices[0].message
    calls = []
    for call in getattr(msg, "tool_calls", None) or []:
        raw = call.function.arguments
        try:
            args = json.loads(raw) if isinstance(raw, str) else (raw or {})
        except json.JSONDecodeError:
            args = {"_raw": raw}
        calls.append(
            {
                "id": getattr(call, "id", None) or f"call_{uuid.uuid4().hex[:12]}",
                "name": call.function.name,
                "arguments": args,
            }
        )
    return LLMMessage(content=getattr(msg, "content", None) or "", tool_calls=calls, raw=response)


def quiet_litellm(litellm: Any) -> None:
    """litellm's own switches for a clean terminal: no feedback banners, no provider lists, no debug text."""
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)


class LLMClient:
    """A `call_llm` for the Agent: litellm with retries and backoff, timeout, usage and a cost cap."""

    def __init__(
        self,
        api_base: str | None = None,
        max_cost_usd: float | None = None,
        retries: int = 3,
        timeout_s: float = HOSTED_TIMEOUT_S,
        backoff_s: float = 1.0,
        extra: dict[str, Any] | None = None,
    ):
        self.api_base = api_base
        self.max_cost_usd = max_cost_usd
        self.retries = retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.extra = dict(extra or {})
        self.usage = Usage()

    async def __call__(
        self, model: str, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> LLMMessage:
        return await self._call(model, system, messages, tools, self.retries)

    async def _call(
        self, model: str, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, retries: int
    ) -> LLMMessage:
        if self.max_cost_usd is not None and self.usage.cost_usd >= self.max_cost_usd:
            raise LLMBudgetExceeded(f"LLM budget spent: ${self.usage.cost_usd:.4f} of ${self.max_cost_usd:.4f}")
        kwargs: dict[str, Any] = {"model": model, "messages": [{"role": "system", "content": system}, *messages]}
        kwargs["timeout"] = self.timeout_s  # litellm's own request timeout, the same as ours
        kwargs.update(self.extra)
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kwargs.setdefault("api_key", "no-key-needed")  # local OpenAI-compatible servers take any key
        if tools:
            kwargs.update(tools=tools, tool_choice="auto")
        response = await self._complete_with_retries(kwargs, retries)
        self._count(response)
        return to_llm_message(response)

    async def check(self, model: str) -> None:
        """One small call before any work (one retry at most): raise `LLMUnavailable` with the provider's error."""
        try:
            await self._call(model, CHECK_SYSTEM, [{"role": "user", "content": "Reply with the word OK."}], None, 1)
        except Exception as exc:
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise LLMUnavailable(f"the model {model!r} did not answer ({type(exc).__name__}: {first})") from None

    async def _complete_with_retries(self, kwargs: dict[str, Any], retries: int) -> Any:
        import litellm

        quiet_litellm(litellm)
        transient = _transient_errors()
        for attempt in range(retries + 1):
            try:
                return await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=self.timeout_s)
            except transient as exc:
                if attempt == retries:
                    raise
                self.usage.retries += 1
                delay = self.backoff_s * 2**attempt
                log.warning("LLM call failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _count(self, response: Any) -> None:
        spent = response_usage(response)
        self.usage.calls += 1
        self.usage.prompt_tokens += spent.prompt_tokens
        self.usage.completion_tokens += spent.completion_tokens
        self.usage.cost_usd += spent.cost_usd
        self.usage.cost_known = self.usage.cost_known and spent.cost_known


class StopGuard:
    """Wraps a `call_llm`: once `should_stop()` holds, allows `grace` more turns, then ends the run itself.

    The Agent stops on a plain-text reply; a model that keeps planning after the experiment budget is
    spent gets `closing()` as its final answer instead of burning turns and money.
    """

    def __init__(
        self,
        call_llm: Any,
        should_stop: Callable[[], bool],
        closing: Callable[[], Awaitable[str]],
        grace: int = 2,
    ):
        self.call_llm, self.should_stop, self.closing, self.grace = call_llm, should_stop, closing, grace
        self.turns_after_stop = 0

    async def __call__(
        self, model: str, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> LLMMessage:
        if self.should_stop():
            self.turns_after_stop += 1
            if self.turns_after_stop > self.grace:
                return LLMMessage(content=await self.closing(), tool_calls=[], raw=None)
        return await self.call_llm(model, system, messages, tools)
