"""What every benchmark shares: the `--quick`/`--json` flags and printing the figures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(doc: str) -> argparse.Namespace:
    """`--quick` (a run under a minute) and `--json PATH` (the figures as one flat JSON object)."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run that finishes in under a minute")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as one flat JSON object")
    return parser.parse_args()


def report(figures: dict[str, float], json_path: Path | None, targets: dict[str, str] | None = None) -> None:
    """Print the figures as a table (with their targets) and write them to `json_path` if given."""
    targets = targets or {}
    print(f"{'figure':<30}{'value':>14}  target")
    for name, value in figures.items():
        print(f"{name:<30}{value:>14}  {targets.get(name, '')}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures) + "\n")
