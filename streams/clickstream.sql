-- Confluent datagen's clickstream quickstart (key: ip). The datagen writes status and
-- bytes as JSON strings: they are cast, as Spark's CAST does ("404" is 404).
-- The event time is the Kafka record timestamp, as in the notebook.
CREATE STREAM clickstream (
    ip STRING,
    userid INT,
    remote_user STRING,
    time STRING,
    _time BIGINT,
    request STRING,
    status INT,
    bytes BIGINT,
    referrer STRING,
    agent STRING
) WITH (KAFKA_TOPIC = 'clickstream');
