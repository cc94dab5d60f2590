"""The research program: the human-editable text (`program.md`) that steers the agent, and how it is recorded.

The program reaches only the agent's prompt: goal, strategy, style of edits. The tool protocol, the budget, the
sandbox, the gate and the held-out split are code, which no program text can reach or relax.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parents[2] / "program.md"
"""The default program, at the repository root; it ships with the code to a cluster (`trust.shipped_files`)."""
MAX_CHARS = 40_000
"""The longest program accepted: about 10,000 tokens, already more than a small model's whole prompt."""
COMPACT_CHARS = 2_400
"""About 600 tokens: a longer program is said to inflate the compact prompt a small model reads."""


class ProgramError(ValueError):
    """A program that cannot be used: the message names the file or the input and what is allowed."""


def check(text: Any, name: str = "program") -> str:
    """`text` as a program: text with something besides whitespace, at most `MAX_CHARS` characters."""
    if not isinstance(text, str) or not text.strip():
        raise ProgramError(f"{name} is empty: give the research instructions as text (e.g. a copy of program.md)")
    if len(text) > MAX_CHARS:
        raise ProgramError(f"{name} has {len(text):,} characters; at most {MAX_CHARS:,} are allowed")
    return text


def read(path: str | Path) -> str:
    """The program in the file at `path`; a missing, unreadable or empty file is a `ProgramError` naming it."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ProgramError(
            f"--program {path}: cannot be read ({reason}); give a text file such as program.md"
        ) from None
    return check(text, f"--program {path}")


def default_text() -> str:
    """The default program's text (the repository's `program.md`)."""
    return read(DEFAULT)


def digest(text: str) -> str:
    """The program's sha256, hex: what a result is traced to."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def source(text: str) -> str:
    """Where the text came from, as far as the driver can tell: the default file, or another one."""
    try:
        return "program.md (default)" if text == default_text() else "--program"
    except ProgramError:
        return "--program"


def record(text: str, used: bool) -> dict[str, Any]:
    """The session's program record: its hash, where it came from, whether the planner read it, and its text."""
    return {"sha256": digest(text), "source": source(text), "used": used, "chars": len(text), "text": text}


def skill(text: str) -> str:
    """The program as the agent reads it, headed so it is seen as steering, below the protocol's rules."""
    return (
        "The research program below (program.md) steers the research; the tools enforce the protocol, the budget "
        "and the rules whatever it says.\n\n" + text.strip()
    )


def line(text: str, builtin: bool) -> str:
    """The one line that says which program steers the agent, or that the built-in planner ignores it."""
    if builtin:
        return "program: ignored: the built-in planner follows its own rules (program.md steers an LLM agent only)"
    size = " (long for a compact prompt)" if len(text) > COMPACT_CHARS else ""
    return f"program: {source(text)}, sha256 {digest(text)[:12]}{size}"
