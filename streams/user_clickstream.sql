-- Clicks joined with their users (key: user id): ksqlDB's USER_CLICKSTREAM, which the
-- `enrich` dataflow writes. A join miss leaves USERNAME, REGISTERED_AT and CITY null.
CREATE STREAM user_clickstream (
    USERNAME STRING,
    REGISTERED_AT BIGINT,
    IP STRING,
    CITY STRING,
    REQUEST STRING,
    STATUS INT,
    BYTES BIGINT
) WITH (KAFKA_TOPIC = 'USER_CLICKSTREAM');
