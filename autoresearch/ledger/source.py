"""An experiment's source as the ledger sees it: path-safe names, normalised code, signatures, checks and diffs.

Pure functions. A signature (normalised code plus the effective config) is the dedup key, so two edits that only
differ in comments, whitespace or docstrings are the same experiment.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import re

from autoresearch.sandbox.classify import preflight
from autoresearch_types import ExperimentConfig


def slugify(title: str) -> str:
    """A path-safe, case-insensitive name: 'Deeper 6L' and 'deeper-6l' both give 'deeper-6l'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop module, class and function docstrings so editing prose is not a code change."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalize_code(source: str) -> str:
    """The code's AST without comments, whitespace or docstrings (raises SyntaxError if it does not parse)."""
    return ast.dump(_strip_docstrings(ast.parse(source)))


def check_source(source: str) -> str | None:
    """None if `source` is runnable by the harness (the sandbox's `preflight` rule), else what is wrong and what
    to do about it, phrased for the agent."""
    problem = preflight(source)
    if problem is None:
        return None
    if "SyntaxError" in problem:
        return f"train_py does not parse ({problem}). Send the full corrected file."
    return (
        f"train_py cannot run: {problem}. It must define run_training(config, data_dir) and build_model(config) "
        "at top level (the harness calls both). Send the whole file, not a fragment; or leave train_py out to "
        "reuse the parent's code."
    )


def signature(source: str, config: ExperimentConfig) -> str:
    """The dedup key: normalised code plus the effective config (overrides and budget included)."""
    payload = json.dumps({"code": normalize_code(source), "config": config.to_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def close_titles(name: str, titles: list[str], n: int = 5) -> list[str]:
    """Titles that look like `name` (by text and by slug), for 'did you mean' messages."""
    by_slug = {slugify(t): t for t in titles}
    hits = difflib.get_close_matches(name, titles, n=n, cutoff=0.5)
    hits += [by_slug[s] for s in difflib.get_close_matches(slugify(name), list(by_slug), n=n, cutoff=0.5)]
    return list(dict.fromkeys(hits))[:n]


def unified_diff(a_title: str, a_src: str, b_title: str, b_src: str, context: int = 3) -> str:
    """A unified diff of two sources, labelled by experiment title."""
    lines = difflib.unified_diff(
        a_src.splitlines(keepends=True),
        b_src.splitlines(keepends=True),
        f"{a_title}/train.py",
        f"{b_title}/train.py",
        n=context,
    )
    return "".join(lines)
