#!/usr/bin/env bash
# The seed's shape, locally: a real Kafka broker, datagen producing for a minute,
# our users join (dataflows.enrich) replacing ksqlDB live, then both table dataflows
# reading their topics to the end (a bounded backfill flushes every window), and the
# tables printed. With a FORMAT (avro, json_sr, protobuf) every topic is written and read
# in it, through a local Schema Registry (Apicurio), as Datagen's Avro connector and
# ksqlDB write them. Everything it started is stopped at the end (a broker or registry
# that was already up, from `just kafka-up` / `just registry-up`, stays up). Needs Java
# 17+ and Maven; the registry's Java comes from the lock. Writes to CLICKSTREAM_OUTPUT
# when it is set (it must be empty), else to ./output-kafka.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
seconds=${1:-60}
rate=${2:-200}
format=${3:-json}
usage="usage: just demo-kafka [SECONDS] [RATE] [FORMAT] (numbers; json, avro, json_sr or protobuf)"
case "$seconds$rate" in
    '' | *[!0-9.]*) echo "$usage" >&2; exit 2 ;;
esac
case "$format" in
    json | avro | json_sr | protobuf) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
out=${CLICKSTREAM_OUTPUT:-output-kafka}
if [ -n "${CLICKSTREAM_OUTPUT:-}" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "error: CLICKSTREAM_OUTPUT $out is not empty; the demo writes a fresh output" >&2
    exit 2
fi

own_broker=1 own_registry=0
if $py -m infra.kafka_broker env >/dev/null 2>&1; then own_broker=0; fi
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
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
