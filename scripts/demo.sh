#!/usr/bin/env bash
# The main job on the embedded default: datagen into both table dataflows, tables to
# ./output, then printed. Both dataflows stop with the script (Ctrl-C included).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
rate=${1:-2000}
count=${2:-60000}
case "$rate$count" in *[!0-9.]*) echo "usage: just demo [RATE] [COUNT] (numbers)" >&2; exit 2;; esac

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# ./output is the demo's own and starts empty; an output of yours must be empty already
# (a demo is a fresh run, without recovery: it would add its rows to what is there).
out=${CLICKSTREAM_OUTPUT:-output}
if [ "$out" = output ]; then
    rm -rf output
elif [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "error: CLICKSTREAM_OUTPUT $out is not empty: the demo writes a fresh run there" >&2
    exit 2
fi
export CLICKSTREAM_OUTPUT="$out" CLICKSTREAM_DATAGEN_RATE="$rate" CLICKSTREAM_DATAGEN_COUNT="$count"
$py -m bytewax.run dataflows.clickstream:flow &
pids+=($!)
$py -m bytewax.run dataflows.user_clickstream:flow &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done
pids=()
$py -m tools.show "$out"
echo
echo "Query it:      just query \"select * from pages_per_min order by pages desc limit 10\""
echo "Look at it:    just dashboard --output $out    (then open http://127.0.0.1:8050/)"
echo "Share it:      just report $out report.html"
