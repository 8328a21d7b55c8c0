#!/usr/bin/env bash
# Prometheus (with promtool) and Alertmanager for the alerting tests and `just demo-kafka
# ... alerts`: Debian's `prometheus` (2.42) and `prometheus-alertmanager` (0.25).
exec "$(dirname "$0")/install_debian.sh" "the alerting tests" \
    "prometheus promtool prometheus-alertmanager" prometheus prometheus-alertmanager
