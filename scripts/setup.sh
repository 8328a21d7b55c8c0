#!/usr/bin/env bash
# Builds .venv with exactly the versions uv.lock names (the product and its dev tools, with
# their hashes). Instant when nothing changed: it re-syncs only when uv.lock, pyproject.toml,
# the pinned uv or the interpreter changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

uv_dir=.cache/uv
export UV="$uv_dir/bin/uv"

# uv itself, pinned with its hashes in scripts/uv-requirements.txt, in a venv of its own.
bootstrap_uv() {
    local python=$1
    local want
    want=$(sha256sum scripts/uv-requirements.txt | cut -d' ' -f1)
    [ -x "$UV" ] && [ "$(cat "$uv_dir/.installed" 2>/dev/null)" = "$want" ] && return
    rm -rf "$uv_dir"
    "$python" -m venv "$uv_dir"
    "$uv_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        --require-hashes --no-deps -r scripts/uv-requirements.txt
    echo "$want" > "$uv_dir/.installed"
}

if ! python=$(scripts/find_python.sh 2>/dev/null); then
    # No 3.11-3.12 outside uv: any python3 can bring uv, whose own Pythons are searched last.
    if [ ! -x "$UV" ] && command -v python3 >/dev/null 2>&1; then
        bootstrap_uv python3 2>/dev/null || true
    fi
    python=$(scripts/find_python.sh)
fi

stamp=.venv/.installed
want=$(cat uv.lock pyproject.toml scripts/uv-requirements.txt <(echo "$python") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
bootstrap_uv "$python"
# --frozen: install what the lock names, never re-resolve (tests/test_install.py fails when the
# lock no longer matches pyproject.toml); exact: packages the lock does not name are removed.
UV_PROJECT_ENVIRONMENT=.venv "$UV" sync --quiet --frozen --extra dev --python "$python"
echo "$want" > "$stamp"
echo "setup: .venv ready ($("$python" --version), packages from uv.lock)"
