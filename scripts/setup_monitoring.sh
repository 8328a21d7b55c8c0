#!/usr/bin/env bash
# Prometheus (with promtool) and Alertmanager for the alerting tests and `just demo-kafka
# ... alerts`: Debian's packages `prometheus` (2.42) and `prometheus-alertmanager` (0.25).
# Quick when present. The packages' services are not started: the tests start their own.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
    && command -v prometheus-alertmanager >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "error: the alerting tests need prometheus and prometheus-alertmanager; install them (apt-get install prometheus prometheus-alertmanager) or run as root" >&2
    exit 1
fi
echo "setup: installing prometheus and prometheus-alertmanager with apt-get"
"${as_root[@]}" apt-get update -qq
# policy-rc.d 101: the packages' services stay stopped where a package would start them
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager >/dev/null
