#!/usr/bin/env bash
# `just upgrade`: uv.lock refreshed to the newest releases pyproject.toml allows, .venv
# synced to it, then the whole suite. The new lock stays only if the suite passes; on a
# failure the previous lock is put back (the failing one is kept as uv.lock.failed to study).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cp uv.lock .cache/uv.lock.before
.cache/uv/bin/uv lock --upgrade
# What changed, one line a package: name old -> new.
.venv/bin/python - .cache/uv.lock.before uv.lock <<'PY'
import sys, tomllib
def versions(path):
    with open(path, "rb") as f:
        return {(p["name"], p.get("version")) for p in tomllib.load(f)["package"]}
old, new = versions(sys.argv[1]), versions(sys.argv[2])
names = sorted({n for n, _ in old ^ new})
for name in names:
    was = ", ".join(sorted(v or "-" for n, v in old if n == name)) or "(new)"
    now = ", ".join(sorted(v or "-" for n, v in new if n == name)) or "(gone)"
    print(f"upgrade: {name} {was} -> {now}")
print(f"upgrade: {len(names)} packages changed")
PY
scripts/setup.sh
if ! just test "$@"; then
    cp uv.lock uv.lock.failed
    cp .cache/uv.lock.before uv.lock
    scripts/setup.sh >/dev/null
    echo "upgrade: the suite failed on the new versions; uv.lock is as before, the new one is uv.lock.failed" >&2
    exit 1
fi
echo "upgrade: the suite passed on the new uv.lock; commit it"
