#!/usr/bin/env bash
# Prints the path of a Python 3.11-3.12 (bytewax 0.21.1 ships wheels for no newer one),
# looking where people keep them: $PYTHON, python3.12/3.11 and python3 on PATH,
# pyenv's versions, then the Pythons uv installed (`uv python install`). None: one line, exit 1.
set -euo pipefail

# Prints the interpreter's real path (not a shim's) when it is 3.11-3.12.
in_range() {
    "$1" -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13); print(sys.executable)' 2>/dev/null
}

if [ -n "${PYTHON:-}" ]; then
    in_range "$PYTHON" && exit 0
    echo "error: PYTHON=$PYTHON is not a Python 3.11-3.12 (bytewax 0.21.1 has no wheels for 3.13+)" >&2
    exit 1
fi

# A pyenv shim answers `command -v` for versions it does not have active: run each one.
for candidate in python3.12 python3.11 python3; do
    command -v "$candidate" >/dev/null 2>&1 && in_range "$candidate" && exit 0
done

pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for candidate in $(ls -d "$pyenv_root"/versions/3.1[12]* 2>/dev/null | sort -rV); do
    in_range "$candidate/bin/python3" && exit 0
done

for uv in "${UV:-}" uv; do
    if [ -n "$uv" ] && command -v "$uv" >/dev/null 2>&1 &&
        found=$("$uv" python find --no-project --python-preference only-managed '>=3.11,<3.13' 2>/dev/null) &&
        in_range "$found"; then
        exit 0
    fi
done

echo "error: need Python 3.11-3.12 (bytewax 0.21.1 has no wheels for 3.13+) and found none on PATH, in pyenv or uv's Pythons; get one with \`uv python install 3.12\` (or \`pyenv install 3.12\`), or set PYTHON=/path/to/python3.12" >&2
exit 1
