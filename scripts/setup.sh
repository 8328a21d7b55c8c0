#!/usr/bin/env bash
# Builds .venv with the product and its dev tools. Re-running is quick: it only
# reinstalls when pyproject.toml changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
    for candidate in "${PYTHON:-}" python3.12 python3.11 python3.10 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "error: need Python 3.10-3.12 (bytewax 0.21.1 has no wheels for 3.13+); set PYTHON=" >&2
    exit 1
}

stamp=.venv/.installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$(pick_python)" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$want" > "$stamp"
echo "setup: .venv ready"
