#!/usr/bin/env bash
# Spark 4.0.1 (the pyspark wheel pinned with hashes in infra/spark/requirements.txt, in a
# venv of its own: not a dependency of the product)
# and delta-spark 4.0.0 (jars from Maven Central) for the Spark read check of our Delta
# tables. Quick when present.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/spark
want=$(sha256sum infra/spark/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$dir/venv/.installed" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing pyspark 4.0.1 into $dir/venv"
    rm -rf "$dir/venv"
    "$(scripts/find_python.sh)" -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q --require-hashes -r infra/spark/requirements.txt
    echo "$want" > "$dir/venv/.installed"
fi
if ! ls "$dir"/jars/delta-spark_2.13-4.0.0.jar "$dir"/jars/spark-sql-kafka-0-10_2.13-4.0.0.jar \
    >/dev/null 2>&1; then
    echo "setup: fetching delta-spark 4.0.0 and Spark's Kafka source with Maven"
    mvn -q -f infra/spark/pom.xml dependency:copy-dependencies -DoutputDirectory="$PWD/$dir/jars"
fi
