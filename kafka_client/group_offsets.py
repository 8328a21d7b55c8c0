"""Offsets committed to a consumer group from a helper process of their own.

librdkafka (2.16) aborts the whole process (`rd_kafka_enq_once_del_source_return:
Assertion 'eonce->refcnt > 0' failed`) when the broker goes away under a
coordinator-bound admin request (confluentinc/librdkafka#4605, a fix proposed in #5397).
Offset commits are such requests, and `just chaos` showed the abort two or three times in
two minutes with the broker restarting. A dataflow's commits are for Kafka's lag tools
only (reads resume from the recovery store), so they are sent by a small child process:
if librdkafka aborts there, the commits in flight fail, the next commit starts a new
child, and the dataflow reads on.

    future = committer(kafka).commit("clickstream-clickstream", "clickstream", 0, 1234)
    future.result()          # None, or raises KafkaException (the broker's answer)

The child reads its librdkafka settings (secrets too) from its stdin, never from its
command line or environment, and ends when the dataflow's process closes its stdin or
dies. It is started at the first commit, so a run that commits nothing pays nothing.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import json
import logging
import subprocess
import sys
import threading
from typing import IO, Any

from confluent_kafka import KafkaError, KafkaException

from kafka_client.settings import KafkaSettings

log = logging.getLogger(__name__)


class OffsetCommitter:
    def __init__(self, kafka: KafkaSettings) -> None:
        self.config = kafka.librdkafka_config()
        self.lock = threading.Lock()
        self.child: subprocess.Popen | None = None
        self.pending: dict[int, concurrent.futures.Future] = {}
        self.ids = itertools.count()
        self.restarts = 0

    def commit(
        self, group: str, topic: str, partition: int, offset: int
    ) -> concurrent.futures.Future:
        """Send `offset` (the next to read) of `topic`[`partition`] to `group`."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self.lock:
            n = next(self.ids)
            self.pending[n] = future
            request = {"id": n, "group": group, "topic": topic, "partition": partition,
                       "offset": offset}  # fmt: skip
            try:
                stdin = self._child_stdin()
                stdin.write(json.dumps(request) + "\n")
                stdin.flush()
            except OSError as ex:
                self.pending.pop(n, None)
                future.set_exception(KafkaException(KafkaError(KafkaError._TRANSPORT, str(ex))))
        return future

    def close(self) -> None:
        with self.lock:
            child, self.child = self.child, None
        if child is not None and child.stdin is not None:
            try:
                child.stdin.close()
                child.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                child.kill()

    def _child_stdin(self) -> IO[str]:
        if self.child is None or self.child.poll() is not None:
            if self.child is not None:
                self.restarts += 1
                log.info(
                    "the offset committer process ended (status %s); a new one starts",
                    self.child.returncode,
                )
            self.child = subprocess.Popen(
                [sys.executable, "-m", "kafka_client.group_offsets"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # librdkafka's abort line: the status says it
                text=True,
            )
            assert self.child.stdin is not None
            self.child.stdin.write(json.dumps(self.config) + "\n")
            threading.Thread(target=self._answers, args=(self.child,), daemon=True).start()
        assert self.child.stdin is not None
        return self.child.stdin

    def _answers(self, child: subprocess.Popen) -> None:
        """Resolve each commit with the child's answer; once it ends, every commit still
        waiting fails (the broker may have gone away: the next snapshot commits again)."""
        assert child.stdout is not None
        for line in child.stdout:
            answer = json.loads(line)
            with self.lock:
                future = self.pending.pop(answer["id"], None)
            if future is None:
                continue
            if answer["error"] is None:
                future.set_result(None)
            else:
                error = KafkaError(answer["error"], answer.get("reason", ""))
                future.set_exception(KafkaException(error))
        child.wait()
        with self.lock:
            if self.child is not child:
                lost: list[concurrent.futures.Future] = []
            else:
                lost, self.pending = list(self.pending.values()), {}
        for future in lost:
            error = KafkaError(
                KafkaError._TRANSPORT, f"offset committer ended ({child.returncode})"
            )
            future.set_exception(KafkaException(error))


_COMMITTERS: dict[tuple, OffsetCommitter] = {}
_COMMITTERS_LOCK = threading.Lock()


def committer(kafka: KafkaSettings) -> OffsetCommitter:
    """The process's committer for a cluster and its credentials (one child for every
    source of the process)."""
    key = tuple(sorted(kafka.librdkafka_config().items()))
    with _COMMITTERS_LOCK:
        if key not in _COMMITTERS:
            _COMMITTERS[key] = OffsetCommitter(kafka)
        return _COMMITTERS[key]


def _serve() -> None:
    """The child: commit each request read from stdin, one answer line each."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    config = json.loads(sys.stdin.readline())
    admin = AdminClient(config)
    out = threading.Lock()

    def answer(n: int, future: concurrent.futures.Future) -> None:
        err: Any = future.exception()
        if err is None:
            err = next((tp.error for tp in future.result().topic_partitions if tp.error), None)
        elif isinstance(err, KafkaException):
            err = err.args[0]
        line: dict[str, Any] = {"id": n, "error": None}
        if err is not None:
            code = err.code() if isinstance(err, KafkaError) else KafkaError._FAIL
            reason = err.str() if isinstance(err, KafkaError) else str(err)
            line.update(error=code, reason=reason)
        with out:
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    for text in sys.stdin:
        request = json.loads(text)
        offsets = [TopicPartition(request["topic"], request["partition"], request["offset"])]
        group = request["group"]
        sent = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, offsets)], request_timeout=10
        )
        sent[group].add_done_callback(functools.partial(answer, request["id"]))


if __name__ == "__main__":
    _serve()
