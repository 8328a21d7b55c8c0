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
# "bytecode": a .venv made before packages were compiled at install is synced once more.
# native/: our Rust, which uv builds (with the machine's cargo) when it changed.
want=$(cat uv.lock pyproject.toml scripts/uv-requirements.txt native/pyproject.toml native/Cargo.* \
    native/src/*.rs <(echo "$python bytecode") | sha256sum | cut -d' ' -f1)
# The product's own modules compiled too (only those changed since; quick): a process
# that compiles them at its start pays 0.05 s (`import dataflows.clickstream`: 0.21 s
# against 0.16 s). Python writes no .pyc itself where PYTHONDONTWRITEBYTECODE is set.
compile_ours() {
    .venv/bin/python -m compileall -q dataflows operators sinks sources sql storage events \
        monitoring ownership kafka_client config.py setting.py process.py >/dev/null
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    compile_ours
    exit 0
fi
bootstrap_uv "$python"
# native/ is Rust that uv builds with maturin: cargo from PATH, or where rustup puts it.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: native/ needs Rust's cargo to build; install it with rustup (https://rustup.rs)" >&2
    exit 1
fi
# --frozen: install what the lock names, never re-resolve (tests/test_install.py fails when the
# lock no longer matches pyproject.toml); exact: packages the lock does not name are removed.
# --compile-bytecode: every package's .pyc made now, not at each start. Where
# PYTHONDONTWRITEBYTECODE is set (this machine sets it) Python never writes them, and
# every process compiled its imports again (`import dataflows.clickstream`: 0.28 s, 0.19 s
# with them).
UV_PROJECT_ENVIRONMENT=.venv "$UV" sync --quiet --frozen --extra dev --compile-bytecode \
    --python "$python"
compile_ours
echo "$want" > "$stamp"
echo "setup: .venv ready ($("$python" --version), packages from uv.lock)"
