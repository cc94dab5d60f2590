"""Feedback a model can act on: which line of a failed plan broke, why, and what to do instead.

The code-mode Agent shows the model only `str(exc)` of a failed plan: "KeyError: max_steps", or "Simple
statements must be separated by newlines or semicolons", with no line. A weak model cannot fix what it cannot
find, so it sends the same plan again. This module rebuilds the failure by *replaying* the plan in the same
Monty sandbox, with every tool answering from `ToolCallLog`, the record of what it returned during the real
run: nothing runs twice and nothing is written. The replay yields Monty's own exception, which knows the line;
for a `KeyError` a second replay wraps the failing line's subscripts to catch the very dict that was indexed,
so the feedback can list the keys it has and where the missing key lives instead.

It also repairs a reply whose plan came without its ```python fence (the Agent would take it as the final
answer and end the run), and lists the tool calls of a plan that returned an error the plan did not show.
Pure apart from the replays, which run plans in Monty and never touch a tool.
"""

from __future__ import annotations

import ast
import difflib
import re
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from autoresearch.agent.plans import run_plan

FRESH_SANDBOX = "Each plan runs in a fresh sandbox: variables from earlier plans do not exist, so define them again."
RESTRICTED = (
    "The sandbox runs a Python subset: call tools directly (no `await`), no `del`, no `yield`, no files, no "
    "network; put explanations outside the ``` fence or in # comments."
)
REPLAY_TIMEOUT_MS = 10_000
"""A replay answers from records, so it is quick; a plan that spins is cut short (it failed the same way before)."""
INDEX_PROBE = "_ar_index"
"""The function a KeyError replay puts around each subscript of the failing line."""


@dataclass
class ToolCall:
    """One tool call made by a plan: its name and arguments, and what it returned."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any

    @property
    def error(self) -> str:
        """The tool's error message, or "" when it did not return one."""
        return str(self.result.get("error") or "") if isinstance(self.result, dict) else ""

    def call_text(self) -> str:
        """The call as a plan would write it, arguments shortened."""
        parts = [_short(repr(a), 40) for a in self.args] + [
            f"{k}={_short(repr(v), 40)}" for k, v in self.kwargs.items()
        ]
        return f"{self.name}({', '.join(parts)})"


@dataclass
class ToolCallLog:
    """Every tool call of a run in order; the driver's tools append, the loop guard reads a turn's calls."""

    calls: list[ToolCall] = field(default_factory=list)

    def record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        self.calls.append(ToolCall(name, tuple(args), dict(kwargs), result))

    def since(self, mark: int) -> list[ToolCall]:
        """The calls made after the first `mark` ones (one plan's calls, when `mark` was taken before it ran)."""
        return self.calls[mark:]

    def __len__(self) -> int:
        return len(self.calls)


@dataclass
class Failure:
    """A failed plan, rebuilt: the exception, the line it broke on and, for a KeyError, what was indexed."""

    kind: str
    message: str
    line_no: int | None = None
    line: str = ""
    indexed: Any = None
    indexed_expr: str = ""


class _Diverged(Exception):
    """The replay asked a tool for more than the real run recorded: it is not the same run."""


class _Missing(Exception):
    """A probed subscript whose container lacks the key: carries the container and its expression."""

    def __init__(self, obj: Any, expr: str):
        super().__init__(expr)
        self.obj, self.expr = obj, expr


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalise(code: str) -> str:
    """The plan as Monty runs it (dedented, stripped), so line numbers agree."""
    return textwrap.dedent(code).strip()


# ---------------------------------------------------------------- replaying a plan


def _stubs(calls: list[ToolCall], tool_names: list[str]) -> list[Callable[..., Awaitable[Any]]]:
    """Stand-ins for the tools that answer, in order, what each tool returned in the real run."""
    queues: dict[str, list[Any]] = {name: [] for name in tool_names}
    for call in calls:
        queues.setdefault(call.name, []).append(call.result)

    def stub(name: str) -> Callable[..., Awaitable[Any]]:
        async def answer(*args: Any, **kwargs: Any) -> Any:
            if not queues[name]:
                raise _Diverged(name)
            return queues[name].pop(0)

        answer.__name__ = name
        return answer

    return [stub(name) for name in queues]


async def _run(code: str, tasks: list[Callable[..., Awaitable[Any]]]) -> BaseException | None:
    """Run `code` in Monty with `tasks`; the exception it raised, or None. What a replay prints is dropped: the
    model saw it after the real run, and the user's terminal never sees a plan's prints."""
    return (await run_plan(code, tasks, timeout_ms=REPLAY_TIMEOUT_MS)).error


async def replay(code: str, calls: list[ToolCall], tool_names: list[str]) -> Failure | None:
    """The plan's failure rebuilt from the recorded tool results; None if the replay does not fail the same way."""
    code = normalise(code)
    exc = await _run(code, _stubs(calls, tool_names))
    if exc is None or isinstance(exc, _Diverged):
        return None
    failure = _failure(code, exc)
    if failure.kind == "KeyError" and failure.line_no:
        found = await _probe_index(code, calls, tool_names, failure.line_no)
        if found is not None:
            failure.indexed, failure.indexed_expr = found
    return failure


def _failure(code: str, exc: BaseException) -> Failure:
    """A `Failure` from Monty's exception (which knows the line) or a host exception (located in the source)."""
    frames = exc.traceback() if callable(getattr(exc, "traceback", None)) else None
    line_no = frames[-1].line if frames else None
    text = str(exc)
    if type(exc).__name__ == "MontySyntaxError":
        kind, message = "SyntaxError", text
    elif type(exc).__name__ == "MontyRuntimeError" and re.match(r"^[A-Za-z_]\w*:", text):
        kind, message = text.split(":", 1)[0], text.split(":", 1)[1].strip()
    else:
        kind, message = type(exc).__name__, text
        line_no = line_no or _locate(code, text)
    lines = code.splitlines()
    line = lines[line_no - 1] if line_no and 0 < line_no <= len(lines) else ""
    return Failure(kind, message, line_no, line)


def _locate(code: str, message: str) -> int | None:
    """The line of an unknown function's call or an unexpected keyword named in a host exception's message."""
    name = re.search(r"unknown external function: (\w+)|^(\w+)\(\) got an unexpected keyword argument '(\w+)'", message)
    if not name:
        return None
    func, keyword = name.group(1) or name.group(2), name.group(3)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        named = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == func
        if named and (keyword is None or any(k.arg == keyword for k in node.keywords)):
            return node.lineno
    return None


class _WrapSubscripts(ast.NodeTransformer):
    """Turns each read `x[k]` on one line into `_ar_index(x, k, "x")`, so a replay can catch what was indexed."""

    def __init__(self, line_no: int):
        self.line_no = line_no

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:  # noqa: N802 - ast's visitor name
        self.generic_visit(node)
        if node.lineno != self.line_no or not isinstance(node.ctx, ast.Load) or isinstance(node.slice, ast.Slice):
            return node
        expr = ast.Constant(ast.unparse(node.value))
        probe = ast.Call(ast.Name(INDEX_PROBE, ast.Load()), [node.value, node.slice, expr], [])
        return ast.copy_location(probe, node)


async def _probe_index(code: str, calls: list[ToolCall], tool_names: list[str], line_no: int) -> tuple[Any, str] | None:
    """The container the failing line indexed with a missing key, and its expression; None if not found."""
    try:
        tree = ast.fix_missing_locations(_WrapSubscripts(line_no).visit(ast.parse(code)))
    except SyntaxError:
        return None

    async def index(obj: Any, key: Any, expr: str) -> Any:
        if isinstance(obj, dict) and key not in obj:
            raise _Missing(obj, expr)
        return obj[key]

    index.__name__ = INDEX_PROBE
    exc = await _run(ast.unparse(tree), [*_stubs(calls, tool_names), index])
    return (exc.obj, exc.expr) if isinstance(exc, _Missing) else None


# ---------------------------------------------------------------- explaining it


def where(value: Any, calls: list[ToolCall], depth: int = 4) -> str:
    """Which tool result `value` is, as a path such as `inspect_dataset()['budget']`; "" if none."""
    for call in calls:
        path = _path_to(call.result, lambda v: v is value or v == value, depth)
        if path is not None:
            return f"{call.name}(){path}"
    return ""


def key_paths(key: Any, calls: list[ToolCall], depth: int = 4) -> list[str]:
    """Where a dict with `key` sits among the plan's tool results, e.g. `inspect_dataset()['budget']['remaining']`."""
    out = []
    for call in calls:
        path = _path_to(call.result, lambda v: isinstance(v, dict) and key in v, depth)
        if path is not None:
            out.append(f"{call.name}(){path}[{key!r}]")
    return out


def _path_to(obj: Any, match: Callable[[Any], bool], depth: int) -> str | None:
    """The subscript path from `obj` to the first nested value that `match`es (breadth of one level at a time)."""
    if match(obj):
        return ""
    if depth <= 0:
        return None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj[:3]) if isinstance(obj, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)):
            sub = _path_to(value, match, depth - 1)
            if sub is not None:
                return f"[{key!r}]{sub}"
    return None


def key_error_advice(failure: Failure, calls: list[ToolCall], aliases: dict[str, str]) -> str:
    """What a KeyError means here: the keys the indexed dict has, where the key lives, what it is called here."""
    key = literal_key(failure.message)
    obj, expr = failure.indexed, failure.indexed_expr or "the dict"
    if not isinstance(obj, dict):
        return f"The value indexed on that line has no key {key!r}. Print its keys first, e.g. `list(x.keys())`."
    origin = where(obj, calls)
    named = f"`{expr}`" + (f" ({origin})" if origin and origin != expr else "")
    if set(obj) == {"error"}:
        return f"{named} is an error result, not data: {obj['error']} Fix that call first."
    text = f"{named} has no key {key!r}; its keys are: {', '.join(map(str, obj))}."
    alias = aliases.get(str(key))
    if alias and alias in obj:
        text += f" This project calls it {alias!r}: use {expr}[{alias!r}]."
    elsewhere = [p for p in key_paths(key, calls) if not p.startswith(origin or "\0")]
    if elsewhere:
        text += f" {key!r} is at {elsewhere[0]}."
    return text + f" Use one of those keys, or {expr}.get({key!r}) when it may be missing."


def literal_key(text: str) -> Any:
    """A KeyError's key from its message: `'max_steps'` or `max_steps` -> 'max_steps', `3` -> 3."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def kind_advice(failure: Failure, tool_names: list[str]) -> str:
    """What to do about the other kinds of failure."""
    message = failure.message
    unknown = re.search(r"unknown external function: (\w+)", message)
    if unknown:
        close = difflib.get_close_matches(unknown.group(1), tool_names, n=2)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        return f"{unknown.group(1)} is not a tool here.{hint} The tools are: {', '.join(tool_names)}."
    if failure.kind == "NameError":
        name = re.search(r"name '(\w+)'", message)
        close = difflib.get_close_matches(name.group(1), tool_names, n=1) if name else []
        return f"Did you mean the tool {close[0]}()? " + FRESH_SANDBOX if close else FRESH_SANDBOX
    if failure.kind == "SyntaxError":
        line = failure.line or ""
        prose = re.match(r"\s*[A-Za-z][\w'-]*\s+[\w'.,:-]+", line) and not re.search(r"[=()\[\]{}#]", line)
        lead = "That line is prose, not Python. " if prose else ""
        return lead + RESTRICTED
    if failure.kind == "AttributeError" and "'dict'" in message:
        return "Tool results are plain dicts and lists: read a field with r['key'], not r.key."
    if failure.kind == "TypeError" and "can't be awaited" in message:
        return "Call tools directly, without `await`: r = get_leaderboard()."
    if failure.kind == "TypeError" and ("not subscriptable" in message or "indices must be" in message):
        return "That value is not the dict you expected (a list, None or a string): look at it before indexing."
    return "Fix that line; " + RESTRICTED


def explain(
    failure: Failure | None, error_text: str, calls: list[ToolCall], tool_names: list[str], aliases: dict[str, str]
) -> str:
    """The feedback after a failed plan: the line, the exception, what to do instead, and the tools' errors."""
    if failure is None:
        return tool_errors(calls) or f"What to do instead: read the error above. {RESTRICTED}"
    where_text = f" on line {failure.line_no}:\n    {failure.line.strip()}" if failure.line_no and failure.line else ":"
    message = repr(literal_key(failure.message)) if failure.kind == "KeyError" else _short(failure.message, 300)
    head = f"Your plan failed{where_text}\n{failure.kind}: {message}"
    if failure.kind == "KeyError":
        advice = key_error_advice(failure, calls, aliases)
    else:
        advice = kind_advice(failure, tool_names)
    errors = tool_errors(calls)
    return f"{head}\nWhat to do instead: {advice}" + (f"\n{errors}" if errors else "")


def tool_errors(calls: list[ToolCall], limit: int = 3) -> str:
    """The tool calls of a plan that returned an error, one line each; "" when none did."""
    failed = [c for c in calls if c.error]
    if not failed:
        return ""
    lines = [f"- {c.call_text()}: {_short(c.error, 400)}" for c in failed[:limit]]
    more = f"\n- ... and {len(failed) - limit} more" if len(failed) > limit else ""
    return "Tool calls in this plan that returned an error:\n" + "\n".join(lines) + more


def unseen_tool_errors(calls: list[ToolCall], observation: str) -> str:
    """The errors of a plan that succeeded, when its last value did not show them; "" otherwise."""
    seen = _letters(observation)
    return tool_errors([c for c in calls if c.error and _letters(c.error)[:60] not in seen])


def _letters(text: str) -> str:
    """Letters and digits only: an error's text survives JSON escaping in an observation."""
    return re.sub(r"\W+", "", text)


# ---------------------------------------------------------------- repairing a reply

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_STARTS_CODE = re.compile(r"^\s*(?:[A-Za-z_]\w*(?:\[[^\]]*\])?\s*=[^=]|[A-Za-z_][\w.]*\s*\(|\{|\[)")


def calls_a_tool(code: str, tool_names: list[str]) -> bool:
    """True when `code` parses as Python and calls one of the tools."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    names = set(tool_names)
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names for n in ast.walk(tree))


def repair_reply(text: str, tool_names: list[str]) -> str | None:
    """The reply with its plan fenced as ```python, when the model forgot or mislabelled the fence; else None."""
    if not text:
        return None
    fences = list(_FENCE.finditer(text))
    if fences:
        if any(f.group(1).lower() in ("", "python", "py") for f in fences):
            return None
        code = next((f.group(2) for f in fences if calls_a_tool(f.group(2), tool_names)), None)
    else:
        code = unfenced_plan(text, tool_names)
    return f"```python\n{code.strip()}\n```" if code else None


def unfenced_plan(text: str, tool_names: list[str]) -> str | None:
    """The longest run of lines in `text` that parses as a plan calling a tool, starting at its first code line."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if not _STARTS_CODE.match(line):
            continue
        for end in range(len(lines), start, -1):
            code = "\n".join(lines[start:end])
            if calls_a_tool(code, tool_names):
                return code
    return None
