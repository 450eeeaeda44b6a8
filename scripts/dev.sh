#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs ndx-neurrator and neurrator, then
#   bash scripts/dev.sh demo [ARGS]   runs `neurrator demo ARGS`
#   bash scripts/dev.sh test [ARGS]   runs the test suite (pytest ARGS)
set -euo pipefail
cd "$(dirname "$0")/.."

cmd="${1:-}"
case "$cmd" in demo|test) shift ;; *) echo "usage: bash scripts/dev.sh demo|test [ARGS]" >&2; exit 2 ;; esac

py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Error: neurrator needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 2
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv

# Re-install only when the packaging changed (or the extension's schema/code did).
stamp=.venv/.neurrator-installed
want=$(cat pyproject.toml ndx-neurrator/pyproject.toml spec/*.yaml ndx-neurrator/src/ndx_neurrator/*.py 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q ./ndx-neurrator
    .venv/bin/python -m pip install -q -e ".[test]"
    echo "$want" > "$stamp"
fi

if [ "$cmd" = demo ]; then
    exec .venv/bin/neurrator demo "$@"
fi
exec .venv/bin/python -m pytest "$@"
