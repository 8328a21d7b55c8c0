"""Where results go: hive-partitioned Parquet or Delta Lake tables (local disk or GCS),
and Kafka topics; each exactly once across crashes. Where an output is and how its
requests are retried is `storage`.
"""
