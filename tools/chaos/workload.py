"""The chaos run's producer: datagen's users, then its clicks at a steady rate, in Avro
through the Schema Registry, with a set share of clicks from a few hot users, and now and
then a record the pipeline must survive:

- `not_json`: bytes that are no value at all;
- `wrong_types`: a plain JSON click whose numbers are words;
- `far_future`: a click stamped 55 minutes ahead of the clock (a dead letter: the run
  allows 5 minutes; the broker itself refuses an hour and more);
- `late`: a click stamped before the run began (a late event of every table).

The seed fixes every record; what the broker holds is the truth the checker reads back.
Specials go to one of the topic's first partitions, after clicks written there, so a
late one is late whatever order the partitions are read in.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import orjson
from confluent_kafka import Producer

from events import datagen
from events.encoders import CLICK, USER
from kafka_client.admin import client_config
from kafka_client.settings import KafkaSettings
from tools.produce import create_topics, encoder, send

SPECIALS = ("not_json", "wrong_types", "far_future", "late")
FIRST_PARTITIONS = 4
HOT_USERS = (1, 2, 3)
LATE_BY_MS = 600_000  # before the run's start: past every window and session
FAR_AHEAD_MS = 3_300_000
JITTER_MS = 2_000  # clicks are stamped up to this much before they are sent


class Workload:
    def __init__(self, kafka: KafkaSettings, seed: int, rate: float, skew: float) -> None:
        self.kafka, self.rate, self.skew = kafka, rate, skew
        self.rng = random.Random(seed)
        self.gen = datagen.ClickGenerator(seed)
        self.sent: Counter[str] = Counter()
        self.delivered = 0
        self.failed: Counter[str] = Counter()  # delivery errors by kind
        self.started_ms = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def create_topics(self) -> None:
        create_topics(
            self.kafka,
            {
                self.kafka.clickstream_topic: {},
                self.kafka.users_topic: {"cleanup.policy": "compact"},
                self.kafka.user_clickstream_topic: {},
            },
            FIRST_PARTITIONS,
        )

    def start(self) -> None:
        self.started_ms = int(time.time() * 1000)
        self._thread = threading.Thread(target=self._run, daemon=True, name="workload")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _delivered(self, err: object, _msg: object) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed[str(err)] += 1

    def _run(self) -> None:
        kafka = self.kafka
        p = Producer(
            client_config(
                kafka,
                **{
                    "enable.idempotence": True,
                    "linger.ms": 20,
                    # partitions the nemesis adds get clicks within seconds
                    "topic.metadata.refresh.interval.ms": 3000,
                },
            )
        )
        click_value = encoder(kafka, kafka.clickstream_topic, CLICK)
        user_value = encoder(kafka, kafka.users_topic, USER)
        # users first, stamped an hour back: every click of users 1..39 finds its user
        for uid in range(1, datagen.MAX_USER_ID + 1):
            send(
                p,
                kafka.users_topic,
                key=str(uid).encode(),
                value=user_value(self.gen.user(uid)),
                timestamp=self.started_ms - 3_600_000,
                on_delivery=self._delivered,
            )
            self.sent["user"] += 1
        p.flush(60)
        began = time.monotonic()
        n = 0
        next_special = 15.0
        specials = 0
        while not self._stop.is_set():
            elapsed = time.monotonic() - began
            while n < int(elapsed * self.rate):
                self._click(p, click_value)
                n += 1
            if elapsed >= next_special:
                self._special(p, click_value, SPECIALS[specials % len(SPECIALS)])
                specials += 1
                next_special += self.rng.uniform(2.0, 6.0)
            p.poll(0)
            time.sleep(0.01)
        remaining = p.flush(120)
        if remaining:
            self.failed["not delivered at the end"] += remaining

    def _click(self, p: Producer, click_value: object) -> None:
        click = self.gen.click()
        if self.rng.random() < self.skew:
            click["userid"] = self.rng.choice(HOT_USERS)
        now = int(time.time() * 1000)
        send(
            p,
            self.kafka.clickstream_topic,
            key=str(click["ip"]).encode(),
            value=click_value(click),  # type: ignore[operator]
            timestamp=now - self.rng.randrange(JITTER_MS),
            on_delivery=self._delivered,
        )
        self.sent["click"] += 1

    def _special(self, p: Producer, click_value: object, kind: str) -> None:
        click = self.gen.click()
        click["request"] = "GET /site/user_status.html HTTP/1.1"  # counted by every table
        click["status"] = "404"
        now = int(time.time() * 1000)
        ts = now
        if kind == "not_json":
            value = b"\x7fnot a record {" + str(now).encode()
        elif kind == "wrong_types":
            value = orjson.dumps({**click, "userid": "someone", "bytes": "many"})
        else:
            value = click_value(click)  # type: ignore[operator]
            ts = now + FAR_AHEAD_MS if kind == "far_future" else self.started_ms - LATE_BY_MS
        send(
            p,
            self.kafka.clickstream_topic,
            key=str(click["ip"]).encode(),
            value=value,
            timestamp=ts,
            partition=self.rng.randrange(FIRST_PARTITIONS),
            on_delivery=self._delivered,
        )
        self.sent[kind] += 1
