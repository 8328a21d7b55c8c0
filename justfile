# Clickstream analytics on Bytewax. `just demo` runs it, `just test` checks it.

set shell := ["bash", "-euo", "pipefail", "-c"]
# Arguments reach commands as "$@", quoted as given (SQL with spaces stays one argument).
set positional-arguments

python := ".venv/bin/python"
export PYTHONUNBUFFERED := "1"

# List the recipes.
default:
    @just --list

# Build .venv with exactly what uv.lock names (instant when nothing changed).
[no-exit-message]
setup:
    @scripts/setup.sh

# The main job on the embedded default: datagen -> both dataflows -> ./output, then print the tables.
[no-exit-message]
demo rate="2000" count="60000": setup
    @scripts/demo.sh "$@"

# SQL over the output tables, e.g. `just query "select count(*) from pages_per_min"`; no SQL: a prompt.
[no-exit-message]
query *args: setup
    @{{python}} -m tools.query "$@"

# Start a local Apache Kafka broker (jars from Maven Central; needs Java 17+ and Maven).
kafka-up: setup
    {{python}} -m infra.kafka_broker up

# Stop the local broker.
kafka-down: setup
    {{python}} -m infra.kafka_broker down

# Produce datagen records into Kafka (KAFKA_BOOTSTRAP_SERVERS or the local broker).
[no-exit-message]
produce *args: setup
    @{{python}} -m tools.produce "$@"

# Start a local Schema Registry (Apicurio from Maven Central, on the lock's Java 25).
registry-up: setup
    {{python}} -m infra.schema_registry up

# Stop the local Schema Registry.
registry-down: setup
    {{python}} -m infra.schema_registry down

# Start a local Alertmanager (Debian's package) that the dataflows post alert rows to.
alertmanager-up: setup
    @scripts/setup_monitoring.sh
    {{python}} -m infra.monitoring up

# Stop the local Alertmanager.
alertmanager-down: setup
    {{python}} -m infra.monitoring down

# The full local mode: broker, producer, users join, both table dataflows, tables printed;
# FORMAT avro, json_sr or protobuf runs it all through a local Schema Registry; `alerts`
# posts alert rows to a local Alertmanager and lists its alerts: `just demo-kafka 60 200 json alerts`.
[no-exit-message]
demo-kafka seconds="60" rate="200" format="json" alerts="": setup
    @scripts/demo_kafka.sh "$@"

# Run a dataflow with recovery (resumes after a crash), e.g. `just run-recoverable clickstream -w 2`.
[no-exit-message]
run-recoverable flow *args: setup
    @scripts/run_recoverable.sh "$@"

# Run the whole test suite on three pytest-xdist workers (installs headless Chromium for the
# dashboard test, and Prometheus and Alertmanager for the alerting tests, if missing).
# Three on 2 cores: on two, the suite kept 1.04 cores busy, the rest waiting on brokers,
# restarts and leases. `worksteal` moves tests from a busy worker to an idle one (the chaos
# run, minutes on one worker, starts first). `just test -n 0` runs it in one process.
test *args: setup
    @scripts/setup_browser.sh
    @scripts/setup_monitoring.sh
    @scripts/setup_spark.sh
    {{python}} -m pytest -n 3 --dist worksteal "$@"

# The edit-test loop: every test that needs no broker, emulator, browser, Spark, Prometheus or
# Alertmanager and is not slow.
test-fast *args: setup
    TEST_FAST=1 {{python}} -m pytest -n 2 -m "not (kafka or gcs or browser or spark or monitoring or slow)" "$@"

# Refresh uv.lock to the newest releases within pyproject.toml's ranges, then run the suite on them.
upgrade *args:
    @scripts/upgrade.sh "$@"

# The graph of a dataflow's steps, as Mermaid (paste into any Mermaid viewer): `just graph enrich`.
[no-exit-message]
graph flow="clickstream" format="mermaid": setup
    @{{python}} -m bytewax.visualize "dataflows.{{flow}}:flow" -o "{{format}}"

# The live dashboard of the output tables (http://127.0.0.1:8050/).
[no-exit-message]
dashboard *args: setup
    @{{python}} -m tools.dashboard "$@"

# One self-contained HTML file with the dashboard's charts: `just report output report.html`.
[no-exit-message]
report output="output" file="report.html": setup
    @{{python}} -m tools.report "$@"

# ruff and mypy.
lint: setup
    {{python}} -m ruff check .
    {{python}} -m ruff format --check .
    {{python}} -m mypy .

# Compact, vacuum and checkpoint Delta output: `just maintain [OUTPUT] [--retention-hours 168]`.
[no-exit-message]
maintain *args: setup
    @{{python}} -m tools.maintain "$@"

# Benchmarks against Bytewax's built-in windowing and the raw Kafka ceiling (figures, not tests).
bench *args: setup
    {{python}} -m benchmarks.run "$@"

# Where a dataflow's CPU goes: py-spy (with Bytewax's Rust) -> profile/FLOW.svg and a table of
# steps and functions, e.g. `just profile --kafka --records 956000`.
[no-exit-message]
profile *args: setup
    @{{python}} -m tools.profile "$@"

# Delta tables after a live run (default 30 min), before and after `just maintain`.
bench-compaction *args: setup
    {{python}} -m benchmarks.compaction "$@"

# State and memory over 6 h of event time, 10,000 users, 5M records per dataflow.
soak *args: setup
    {{python}} -m benchmarks.soak "$@"

# The whole pipeline for N minutes under a nemesis (every fault kind, overlapping), then an
# independent checker's one-line verdict: `just chaos --minutes 10 --seed 2`.
[no-exit-message]
chaos *args: setup
    @scripts/setup_monitoring.sh
    @{{python}} -m tools.chaos "$@"
