"""Everything about talking to Kafka, in one place: the connection settings
(`settings.KafkaSettings`, Confluent's `client.properties`), the translation of Java's
`sasl.jaas.config` (`jaas`), and the admin side (`admin`: client configs, end offsets,
the topic checks before a run). The sources and sinks that read and write records are
in `sources.kafka` and `sinks.kafka`.

Named `kafka_client`, not `kafka`, so it shadows no library.
"""
