"""The results dir, `<state dir>/results/<memory key>/`: the files a person opens after (or during) a run.

`report.html` (the live report, rewritten at every redraw from the tabs in memory, never copied from Flyte's own
file under `/tmp`, which a sandbox without a private `/tmp` could write), `results.tsv` (rewritten at every redraw)
and `best_train.py` (at the close). Every entry point passes through the driver task, so every one of them writes
here; a file that cannot be written is reported in one line and never stops the research or the other files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import prepare

REPORT = "report.html"
TSV = "results.tsv"
BEST = "best_train.py"


def results_dir(memory_key: str) -> Path:
    """Where a key's results go: `<state dir>/results/<memory key>/`."""
    return prepare.state_dir() / "results" / memory_key


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename, so a reader never sees half a file; raises
    OSError (the file is then unchanged)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_writable(path: Path) -> None:
    """Refuse (ValueError, with the fix) a file path that cannot be written: a folder, or a missing or read-only
    parent folder."""
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory; give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write {path}: permission denied")


@dataclass
class ResultsDir:
    """A key's results dir, written file by file: a failure is kept as one line and the other files still go."""

    root: Path
    errors: dict[str, str] = field(default_factory=dict)
    """The last failure per file name (cleared when that file is written again)."""
    said: set[str] = field(default_factory=set)

    def unreported(self) -> list[str]:
        """The failures not yet shown to the user (each is shown once, however often the file is retried)."""
        new = [e for e in self.errors.values() if e not in self.said]
        self.said.update(new)
        return new

    def save_text(self, name: str, text: str) -> Path | None:
        """Write one file; its path, or None with the reason in `errors`."""
        return self._save(name, lambda path: write_atomic(path, text))

    def _save(self, name: str, how) -> Path | None:
        path = self.root / name
        try:
            how(path)
        except OSError as exc:
            self.errors[name] = f"could not write {path}: {exc.strerror or exc}"
            return None
        self.errors.pop(name, None)
        return path

    def save_final(self, html: str, tsv: str, best_train_py: str, key: str) -> list[str]:
        """The final report, `results.tsv` and best `train.py`; the paths written. A file that cannot be written is
        one error line; the others, and the ledger, are unaffected."""
        written = [self.save_text(REPORT, html) if html else None, self.save_text(TSV, tsv)]
        written.append(self.save_text(BEST, best_train_py) if best_train_py else None)
        for problem in self.unreported():
            print(f"error: {problem}; the ledger keeps every record (`summary --memory-key {key} --tsv`)", flush=True)
        return [str(p) for p in written if p is not None]
