"""Local infrastructure for tests, demos and benchmarks: a Kafka broker, the GCS emulator."""
