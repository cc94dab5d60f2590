#!/usr/bin/env bash
# Create .venv and install the project (and with --dev, the test tools). Idempotent: a stamp keyed
# by pyproject.toml skips the install when nothing changed. Torch is pinned to 2.13.0 and installed
# first, so a machine with a local CPU wheel of it never pulls CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
python=${PYTHON:-python3}
if ! [ -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)${extra:+-dev}"
if ! [ -f "$stamp" ]; then
  echo "setup: installing into .venv (torch first, then the project${extra:+ with test tools})" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".${extra}"
  touch "$stamp"
fi
