#!/usr/bin/env bash
# Spark 4.0.1 (the pyspark wheel, in a venv of its own: not a dependency of the product)
# and delta-spark 4.0.0 (jars from Maven Central) for the Spark read check of our Delta
# tables. Quick when present.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/spark
if [ ! -x "$dir/venv/bin/python" ] || ! "$dir/venv/bin/python" -c "import pyspark" 2>/dev/null; then
    echo "setup: installing pyspark 4.0.1 into $dir/venv"
    "$(command -v python3.11 || command -v python3)" -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q "pyspark==4.0.1"
fi
if ! ls "$dir"/jars/delta-spark_2.13-4.0.0.jar >/dev/null 2>&1; then
    echo "setup: fetching delta-spark 4.0.0 with Maven"
    mvn -q -f infra/spark/pom.xml dependency:copy-dependencies -DoutputDirectory="$PWD/$dir/jars"
fi
