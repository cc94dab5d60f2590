"""Shared fixtures: a state dir outside /tmp and one tiny real bundle per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import prepare

TEST_STATE = Path(
    os.environ.get(prepare.STATE_DIR_ENV) or Path.home() / ".cache" / "parallelized-autoresearch" / "tests"
)
"""The tests' state root: `AUTORESEARCH_STATE_DIR` when set (so parallel checkouts never share one), else a default."""
os.environ.setdefault(prepare.STATE_DIR_ENV, str(TEST_STATE))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices from the internet


@pytest.fixture(autouse=True)
def _state_dir_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gives back the state dir it was given (a module's own, or the tests' root): the CLI's `--state-dir`
    sets the variable for the whole process, which would otherwise send every later test's files into that folder."""
    monkeypatch.setenv(prepare.STATE_DIR_ENV, os.environ.get(prepare.STATE_DIR_ENV) or str(TEST_STATE))


@pytest.fixture(scope="session")
def state_root() -> Path:
    """The state dir the tests use (outside /tmp, because sandboxed code can write there)."""
    return prepare.state_dir()


def bundle_salt() -> str:
    """A hash of the code that builds a bundle: a test bundle built by other code is never reused."""
    from autoresearch.sandbox import trust

    return trust.salt(trust.REPO / name for name in trust.CONTRACTS)[:8]


@pytest.fixture(scope="session")
def tiny_bundle(state_root: Path) -> Path:
    """A real Shakespeare bundle with a 512-token vocabulary (split seed 0), built once per version of its code."""
    root = state_root / f"tiny-bundle-{bundle_salt()}"
    if not (root / "data" / "profile.json").exists():
        prepare.prepare_bundle("shakespeare", 1, 512, root)
    return root
