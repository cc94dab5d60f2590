"""Packaging stays consistent: one dependency list, and CI runs exactly the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import bundle

REPO = Path(__file__).resolve().parent.parent


def _pep723_dependencies() -> list[str]:
    text = (REPO / "parallelized_autoresearch.py").read_text()
    block = re.search(r"^# /// script\n(.*?)^# ///$", text, re.S | re.M).group(1)
    return tomllib.loads("\n".join(line[2:] for line in block.splitlines()))["dependencies"]


def test_one_dependency_list() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["dependencies"] == list(bundle.RUNTIME_PACKAGES)
    assert _pep723_dependencies() == list(bundle.RUNTIME_PACKAGES)
    assert "torch==2.13.0" in bundle.RUNTIME_PACKAGES


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = "bash scripts/setup.sh --dev && .venv/bin/python -m pytest"
    assert command in readme
    assert re.search(rf"^{re.escape(command)}$", ci, re.M)
    assert "bash scripts/setup.sh && .venv/bin/python parallelized_autoresearch.py" in readme


def test_every_module_is_packaged_and_in_the_readme_layout() -> None:
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["py-modules"]
    modules = sorted(p.stem for p in REPO.glob("*.py"))
    assert sorted(listed) == modules, "pyproject's py-modules must list every top-level module"
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## Data")]
    assert [m for m in modules if f"`{m}.py`" not in layout] == [], "the README's layout names every face"
    for folder in sorted(p for p in (REPO / "autoresearch").iterdir() if p.is_dir() and p.name != "__pycache__"):
        block = layout[layout.index(f"- `autoresearch/{folder.name}/`") :]
        block = block[: block.index("\n- `", 3)] if "\n- `" in block[3:] else block
        missing = [p.name for p in folder.glob("*.py") if p.name != "__init__.py" and f"`{p.name}`" not in block]
        assert not missing, f"the README's layout names every module of autoresearch/{folder.name}/: {missing}"


def readme_flag_rows() -> dict[str, str]:
    """The README's flag table: flag -> its default cell."""
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `(--[a-z-]+)[^`]*` \| ([^|]*) \|", readme, re.M)
    return {flag: cell.strip() for flag, cell in rows}


def test_readme_documents_every_cli_flag_with_the_default_the_code_applies() -> None:
    from autoresearch.session import cli

    actions = [a for a in cli.build_parser()._actions if a.option_strings[0].startswith("--") and a.dest != "help"]
    rows = readme_flag_rows()
    assert [a.option_strings[0] for a in actions if a.option_strings[0] not in rows] == [], "every flag has a row"
    applied = cli.effective_defaults()
    for action in actions:
        flag = action.option_strings[0]
        value = applied.get(flag, action.default)
        cell = rows[flag]
        if flag == "--config" or value in (None, "", False) or (value == 0 and action.type is float and "none" in cell):
            assert cell, f"{flag} has an empty default cell"
            continue
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert re.search(rf"(^|[^\w.]){re.escape(shown)}($|[^\w.])", cell.strip("`")), (
            f"README says {flag} defaults to {cell!r}; the code applies {shown}"
        )


def test_cli_refuses_bad_input_with_a_clear_message() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "parallelized_autoresearch.py"), "--num-shards", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "allowed 1..8" in proc.stderr
