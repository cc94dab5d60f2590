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
    assert [m for m in modules if f"`{m}.py`" not in readme] == [], "the README's module map names every module"


def test_readme_documents_every_cli_flag() -> None:
    from autoresearch.session import cli

    readme = (REPO / "README.md").read_text()
    flags = [a.option_strings[0] for a in cli.build_parser()._actions if a.option_strings[0].startswith("--")]
    missing = [f for f in flags if f != "--help" and f not in readme]
    assert not missing, f"README does not document {missing}"


def test_cli_refuses_bad_input_with_a_clear_message() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "parallelized_autoresearch.py"), "--num-shards", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "allowed 1..8" in proc.stderr
