"""Commands users run: SQL over the tables, the dashboard and its report, a table printer,
Delta maintenance, a datagen producer for Kafka, a replay-file generator, and the
comparison with Spark's CSVs."""
