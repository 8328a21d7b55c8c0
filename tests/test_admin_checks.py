"""`kafka_client.admin`: a start check the broker did not answer in time is exit 75 (the
supervisor starts the run again), one it refused is exit 2 (a chaos run caught a
broker restart turning into a refusal for good)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from kafka_client.admin import _answer_error
from setting import ConfigError, Unreachable


@pytest.mark.parametrize(
    "code", [KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError.NOT_CONTROLLER]
)
def test_no_answer_in_time_is_unreachable(code):
    error = _answer_error(KafkaException(KafkaError(code)), "Kafka topic 't' at b:9092")
    assert isinstance(error, Unreachable)
    assert str(error).startswith("Kafka topic 't' at b:9092: ")


def test_a_refusal_is_a_setting_to_fix():
    denied = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    error = _answer_error(denied, "Kafka topic 't' at b:9092")
    assert isinstance(error, ConfigError) and not isinstance(error, Unreachable)
