#!/usr/bin/env bash
# Create .venv and install the project (and with --dev, the test tools); install bubblewrap where this
# user can (root with apt-get), else say what the sandbox gives without it. Idempotent: a stamp keyed
# by pyproject.toml skips the install when nothing changed. Torch is pinned to 2.13.0 and installed
# first, so a machine with a local CPU wheel of it never pulls CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
python=${PYTHON:-python3}
# The strongest sandbox (backend bubblewrap: PID namespace, private /tmp) needs the bwrap binary.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing bubblewrap (apt-get) for the bubblewrap sandbox backend" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; } \
      || echo "setup: could not install bubblewrap; experiments will run under backend userns" >&2
  else
    echo "setup: bubblewrap is not installed, and installing it needs root and apt-get." >&2
    echo "       Experiments will run under backend userns: no PID namespace (a run can signal your" >&2
    echo "       processes) and the host /tmp is shared. Ask an administrator to run" >&2
    echo "       'apt-get install bubblewrap'; once installed it works for any user whose kernel allows" >&2
    echo "       unprivileged user namespaces." >&2
  fi
fi
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
