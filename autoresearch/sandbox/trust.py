"""The trusted set, in one place: `sandbox/` plus `prepare.py` (and its data-source half, `corpus.py`) plus
`autoresearch_types.py`.

Everything that produces or checks a number lives there. The one list decides three things:
- the experiment cache salt (`code_salt`): editing any trusted file invalidates every cached result;
- what a sandbox stages (`STAGED`): the few trusted files that run inside it, next to the edited `train.py`
  (of `prepare.py`, only the training runtime: `runtime.py`, staged under that name);
- what a cluster pod must receive: `shipped_files` extends the same rule from the trusted set to every module a
  task reads or imports, lazily or not (`bundle.py` puts it in every environment's `include`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

SANDBOX = Path(__file__).resolve().parent
REPO = SANDBOX.parent.parent
CONTRACTS = ("prepare.py", "corpus.py", "autoresearch_types.py")
"""The top-level trusted files (the contracts and the fixed infrastructure)."""
STAGED = {
    "harness.py": SANDBOX / "harness.py",
    "graph_export.py": SANDBOX / "graph_export.py",
    "prepare.py": SANDBOX / "runtime.py",
    "autoresearch_types.py": REPO / "autoresearch_types.py",
}
"""Work-dir name -> source of every trusted file a sandbox runs: the harness, the graph writer and what they import.
`prepare.py` there is the training runtime alone (`runtime.py`): the repository's `prepare.py` also holds the data sources and
the tokenizer, which a sandbox must not have."""


def trusted_files() -> list[Path]:
    """Every trusted source file: each module of `sandbox/` and the top-level contracts, in a fixed order."""
    return sorted(SANDBOX.glob("*.py")) + [REPO / name for name in CONTRACTS]


SHIPPED_TEXT = ("program.md",)
"""The text files a task reads besides modules: the default research program, which the driver falls back on."""


def shipped_files() -> list[Path]:
    """Every file a task pod reads or imports: the trusted set, the rest of the package, the top-level modules (the
    faces, `train.py` among them) and `SHIPPED_TEXT`, in a fixed order. A rule, not a list: a new module ships by
    being one."""
    package = set((REPO / "autoresearch").rglob("*.py")) | set(REPO.glob("*.py"))
    return trusted_files() + sorted(package - set(trusted_files())) + [REPO / name for name in SHIPPED_TEXT]


def salt(paths: Iterable[Path]) -> str:
    """A short hash of files (their paths relative to the repository, and their bytes)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def code_salt() -> str:
    """The experiment cache salt: a hash of the whole trusted set."""
    return salt(trusted_files())
