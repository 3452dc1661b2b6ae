#!/usr/bin/env bash
# Set up a development environment: system packages (as root), then .venv with occystrap.
#   scripts/setup.sh            everything (system tools used by the tests + Python deps)
#   scripts/setup.sh --python   only the virtual environment
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--python" ]; then
  if [ "$(id -u)" = 0 ]; then
    bash scripts/install-system-deps.sh
  else
    echo "setup: not root, skipping system packages (tests needing them will be skipped locally)" >&2
  fi
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# Bytecode now, as pip does for an installed package: an editable install would compile
# every module again on each run where PYTHONDONTWRITEBYTECODE is set.
.venv/bin/python -m compileall -q src
