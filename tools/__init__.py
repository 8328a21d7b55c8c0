"""Command-line helpers: replay-file generator, Kafka producer, table printer, benchmarks."""
