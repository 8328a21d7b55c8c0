#!/usr/bin/env bash
# The seed's shape, locally: a real Kafka broker, datagen producing for a minute,
# our users join (dataflows.enrich) replacing ksqlDB live, then both table dataflows
# reading their topics to the end (a bounded backfill flushes every window), and the
# tables printed. Everything it started is stopped at the end (a broker that was
# already up, from `just kafka-up`, stays up). Needs Java 17+ and Maven.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
seconds=${1:-60}
rate=${2:-200}
case "$seconds$rate" in
    '' | *[!0-9.]*) echo "usage: just demo-kafka [SECONDS] [RATE] (numbers)" >&2; exit 2 ;;
esac

own_broker=1
if $py -m infra.kafka_broker env >/dev/null 2>&1; then own_broker=0; fi
eval "$($py -m infra.kafka_broker up)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$own_broker" = 1 ]; then $py -m infra.kafka_broker down; fi
}
trap cleanup EXIT

export CLICKSTREAM_SOURCE=kafka CLICKSTREAM_OUTPUT=output-kafka
rm -rf output-kafka
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
$py -m tools.show output-kafka
