"""The layout's layers, checked on the code: every import (parsed with `ast`, lazy ones included) stays inside
what its folder may import. See the README's Layout section and ARCHITECTURE's "may import" column."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "autoresearch"
FACES = ("parallelized_autoresearch", "tools", "ui", "bundle", "train", "prepare", "corpus", "autoresearch_types")
CONTRACTS = ("autoresearch_types", "prepare", "corpus")
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "autoresearch_types": (),
    "prepare": ("autoresearch_types", "sandbox", "corpus"),  # re-exports the training runtime and the data sources
    "corpus": ("sandbox",),  # the data sources, prepare.py's other half: DataError from the runtime
    "train": ("by_hand", *CONTRACTS),
    "by_hand": ("bundle", "sandbox", *CONTRACTS),
    "sandbox": ("sandbox", *CONTRACTS),
    "ledger": ("ledger", "sandbox", *CONTRACTS),
    "report": ("report", "ledger", *CONTRACTS),
    "planner": ("planner", "ledger", *CONTRACTS),
    "llm": (),
    "ui": ("report", "ledger", *CONTRACTS),
    "lab": ("lab", "ledger", "sandbox", "llm", *CONTRACTS),
    "agent": ("agent", "planner", "ledger", "llm", *CONTRACTS),
    "tools": ("agent", "lab", "ledger", "planner", "llm", *CONTRACTS),
    "bundle": ("sandbox", *CONTRACTS),
    "session": (
        "session",
        "agent",
        "lab",
        "ledger",
        "report",
        "planner",
        "sandbox",
        "llm",
        "tools",
        "ui",
        "bundle",
        *CONTRACTS,
    ),
    "parallelized_autoresearch": ("session", "lab", "sandbox", "bundle", *CONTRACTS),
}
"""Each layer and the project layers it may import (itself included where it is a folder)."""


def layer_of(module: str) -> str | None:
    """The layer of a project module (`autoresearch.lab.runner` -> `lab`), or None for a third-party one."""
    parts = module.split(".")
    if parts[0] == PACKAGE:
        return parts[1] if len(parts) > 1 else None
    return parts[0] if parts[0] in FACES else None


def project_files() -> list[Path]:
    """Every module of the package (its own `__init__` only names it) and every face."""
    modules = [p for p in sorted((REPO / PACKAGE).rglob("*.py")) if p != REPO / PACKAGE / "__init__.py"]
    return modules + [REPO / f"{face}.py" for face in FACES]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth (lazy imports and `TYPE_CHECKING` blocks too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(path: Path) -> list[str]:
    """The imports of `path` that its layer may not make."""
    mine = layer_of(module_name(path))
    assert mine in MAY_IMPORT, f"{path} is in no layer: add its folder to MAY_IMPORT"
    bad = []
    for line, module in imports(path):
        theirs = layer_of(module)
        if theirs is not None and theirs != mine and theirs not in MAY_IMPORT[mine]:
            bad.append(f"{path.relative_to(REPO)}:{line} imports {module} ({mine} may not import {theirs})")
    return bad


def test_every_import_stays_inside_its_layer() -> None:
    bad = [v for path in project_files() for v in violations(path)]
    assert not bad, "\n".join(bad)


def test_the_trust_boundary_is_the_sandbox_folder_and_the_contracts() -> None:
    from autoresearch.sandbox import trust

    trusted = {p.relative_to(REPO).as_posix() for p in trust.trusted_files()}
    assert trusted == {p.relative_to(REPO).as_posix() for p in (REPO / PACKAGE / "sandbox").glob("*.py")} | {
        "prepare.py",
        "corpus.py",
        "autoresearch_types.py",
    }
    assert set(trust.STAGED.values()) <= set(trust.trusted_files()), "a sandbox runs trusted files only"
    for path in trust.trusted_files():
        assert not violations(path) and all(layer_of(m) in (None, "sandbox", *CONTRACTS) for _, m in imports(path)), (
            f"{path} reaches outside the trusted set"
        )


def test_nothing_but_the_face_imports_the_session() -> None:
    users = [
        f"{path.relative_to(REPO)}:{line}"
        for path in project_files()
        for line, module in imports(path)
        if layer_of(module) == "session" and layer_of(module_name(path)) not in ("session", "parallelized_autoresearch")
    ]
    assert not users, users


@pytest.mark.parametrize(
    ("source", "layer"),
    [
        ("from autoresearch.session import cli\n", "sandbox"),
        ("import tools\n", "ledger"),
        ("from autoresearch import llm\n", "planner"),
    ],
)
def test_the_check_catches_a_forbidden_import(tmp_path: Path, source: str, layer: str) -> None:
    """The rule can fail: a file placed in a layer with an import that layer may not make is reported."""
    folder = tmp_path / PACKAGE / layer
    folder.mkdir(parents=True)
    planted = folder / "planted.py"
    planted.write_text(f"def f():\n    {source.strip()}\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert violations(planted), f"{source.strip()} in {layer}/ must be refused"
    finally:
        REPO = saved


def test_no_module_is_past_six_hundred_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in project_files() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
