-- Confluent datagen's users quickstart (key: user_id), a compacted topic: the table the
-- `enrich` dataflow joins clicks with; a tombstone deletes a user.
CREATE STREAM clickstream_users (
    user_id BIGINT,
    username STRING,
    registered_at BIGINT,
    first_name STRING,
    last_name STRING,
    city STRING,
    level STRING
) WITH (KAFKA_TOPIC = 'clickstream_users');
