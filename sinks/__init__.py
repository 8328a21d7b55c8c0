"""Where results go: partitioned Parquet tables (local or GCS) and Kafka topics."""
