#!/usr/bin/env bash
# The seed's shape, locally: a real Kafka broker, datagen producing for a minute,
# our users join (dataflows.enrich) replacing ksqlDB live, then both table dataflows
# reading their topics to the end (a bounded backfill flushes every window), and the
# tables printed. With a FORMAT (avro, json_sr, protobuf) every topic is written and read
# in it, through a local Schema Registry (Apicurio), as Datagen's Avro connector and
# ksqlDB write them. With `alerts`, the table dataflows post the rows of
# errors_per_min_alert to a local Alertmanager (Debian's package), whose alerts are
# listed at the end. Everything it started is stopped at the end (a broker, registry or
# Alertmanager that was already up, from `just kafka-up` / `registry-up` /
# `alertmanager-up`, stays up). Needs Java 17+ and Maven; the registry's Java comes from
# the lock. Writes to CLICKSTREAM_OUTPUT when it is set (it must be empty), else to
# ./output-kafka.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
seconds=${1:-60}
rate=${2:-200}
format=${3:-json}
alerts=${4:-}
usage="usage: just demo-kafka [SECONDS] [RATE] [FORMAT] [alerts] (numbers; json, avro, json_sr or protobuf; alerts: post alert rows to a local Alertmanager)"
case "$seconds$rate" in
    '' | *[!0-9.]*) echo "$usage" >&2; exit 2 ;;
esac
case "$format" in
    json | avro | json_sr | protobuf) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
case "$alerts" in
    '' | alerts) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
out=${CLICKSTREAM_OUTPUT:-output-kafka}
if [ -n "${CLICKSTREAM_OUTPUT:-}" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "error: CLICKSTREAM_OUTPUT $out is not empty; the demo writes a fresh output" >&2
    exit 2
fi

own_broker=1 own_registry=0 own_alertmanager=0
if $py -m infra.kafka_broker env >/dev/null 2>&1; then own_broker=0; fi
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$own_alertmanager" = 1 ]; then $py -m infra.monitoring down; fi
    if [ "$own_registry" = 1 ]; then $py -m infra.schema_registry down; fi
    if [ "$own_broker" = 1 ]; then $py -m infra.kafka_broker down; fi
}
trap cleanup EXIT
eval "$($py -m infra.kafka_broker up)"
export KAFKA_VALUE_FORMAT=$format
if [ "$format" != json ]; then
    if ! $py -m infra.schema_registry env >/dev/null 2>&1; then own_registry=1; fi
    eval "$($py -m infra.schema_registry up)"
    echo "demo: values in $format, schemas in the registry at $KAFKA_SCHEMA_REGISTRY_URL"
fi

if [ -n "$alerts" ]; then
    scripts/setup_monitoring.sh
    if ! $py -m infra.monitoring env >/dev/null 2>&1; then own_alertmanager=1; fi
    eval "$($py -m infra.monitoring up)"
    echo "demo: alert rows go to the Alertmanager at $CLICKSTREAM_ALERTMANAGER_URL"
fi

export CLICKSTREAM_SOURCE=kafka CLICKSTREAM_OUTPUT=$out
rm -rf "$out"
$py -m tools.produce --rate "$rate" --duration "$seconds" --partitions 4 &
producer=$!
pids+=("$producer")
sleep 3  # the producer creates the topics
$py -m bytewax.run dataflows.enrich:flow -w 2 &
pids+=($!)
wait "$producer"
echo "demo: producer done; waiting for the join to catch up"
$py -m tools.produce --wait-enriched 90
kill -TERM "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true; pids=()
echo "demo: reading both topics to their end with the table dataflows"
KAFKA_STOP_AT_END=true $py -m bytewax.run dataflows.clickstream:flow &
pids+=($!)
KAFKA_STOP_AT_END=true $py -m bytewax.run dataflows.user_clickstream:flow &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done
pids=()
$py -m tools.show "$out"
if [ -n "$alerts" ]; then
    echo "demo: the alerts Alertmanager holds ($CLICKSTREAM_ALERTMANAGER_URL):"
    amtool --alertmanager.url="$CLICKSTREAM_ALERTMANAGER_URL" alert query -o extended
fi
