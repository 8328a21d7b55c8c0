#!/usr/bin/env bash
# Run a dataflow with Bytewax recovery, creating the recovery store on first use.
#   scripts/run_recoverable.sh FLOW [extra `python -m bytewax.run` flags, e.g. -w 2]
# Environment (defaults): CLICKSTREAM_RECOVERY_DIR (./recovery/FLOW),
# CLICKSTREAM_RECOVERY_PARTS (4: at least the largest worker count you will ever use),
# CLICKSTREAM_SNAPSHOT_INTERVAL (10 s, the epoch length), CLICKSTREAM_BACKUP_INTERVAL (30 s).
# Kill it at any moment and run the same command again: it resumes from the last
# snapshot and the output tables hold every row exactly once.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: just run-recoverable FLOW [bytewax.run flags], FLOW one of: clickstream, user_clickstream, enrich"
flow=${1:-}
case "$flow" in
    clickstream | user_clickstream | enrich) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
shift
dir=${CLICKSTREAM_RECOVERY_DIR:-./recovery/$flow}
# Check the settings, inputs and outputs (one line and exit 2 when wrong) before the
# recovery store is made, so a bad start leaves nothing behind.
.venv/bin/python -c "import dataflows.$flow as m; m.flow"
if [ ! -f "$dir/.initialized" ]; then
    mkdir -p "$dir"
    .venv/bin/python -m bytewax.recovery "$dir" "${CLICKSTREAM_RECOVERY_PARTS:-4}"
    touch "$dir/.initialized"
fi
exec .venv/bin/python -m bytewax.run "dataflows.$flow:flow" -r "$dir" \
    -s "${CLICKSTREAM_SNAPSHOT_INTERVAL:-10}" -b "${CLICKSTREAM_BACKUP_INTERVAL:-30}" "$@"
