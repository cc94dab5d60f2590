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


@pytest.fixture(scope="session")
def state_root() -> Path:
    """The state dir the tests use (outside /tmp, because sandboxed code can write there)."""
    return prepare.state_dir()


@pytest.fixture(scope="session")
def tiny_bundle(state_root: Path) -> Path:
    """A real Shakespeare bundle with a 512-token vocabulary, built once per session."""
    root = state_root / "tiny-bundle"
    if not (root / "data" / "profile.json").exists():
        prepare.prepare_bundle("shakespeare", 1, 512, root)
    return root
