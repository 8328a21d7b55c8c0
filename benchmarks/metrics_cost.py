"""What keeping the metrics costs: the `clickstream` dataflow from a replay file with its
metrics as they are (and `/metrics` scraped every second) against the same run with
every metric update turned into a no-op."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import Counter, Gauge, Histogram

import dataflows.clickstream
from benchmarks.common import Record
from benchmarks.replay import best_replay_rate
from monitoring.health import Health
from tools.replay_gen import generate


@contextmanager
def _no_metrics() -> Iterator[None]:
    """Every counter, gauge, histogram and health update does nothing."""

    def nothing(*args: object, **kwargs: object) -> None:
        return None

    with (
        mock.patch.object(Counter, "inc", nothing),
        mock.patch.object(Gauge, "set", nothing),
        mock.patch.object(Histogram, "observe", nothing),
        mock.patch.object(Health, "polled", nothing),
    ):
        yield


@contextmanager
def _scraped_every_second() -> Iterator[None]:
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(1.0):
            generate_latest(REGISTRY)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def bench_metrics(scale: float, record: Record) -> None:
    n = int(300_000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp, "dump")
        generate(dump, events=n, rate=500, partitions=4, jitter_ms=20_000, seed=5)
        print(f"metrics: clickstream replay of {n:,} records, metrics on and off", flush=True)
        build = dataflows.clickstream.build
        rates: dict[str, float] = {}
        # interleaved rounds, so drift of this machine hits both sides alike
        for _ in range(2):
            with _scraped_every_second():
                rates["on"] = max(
                    rates.get("on", 0.0), best_replay_rate(build, dump, Path(tmp, "on"), n)
                )
            with _no_metrics():
                rates["off"] = max(
                    rates.get("off", 0.0), best_replay_rate(build, dump, Path(tmp, "off"), n)
                )
        record(
            "metrics",
            "clickstream replay with metrics (scraped every second)",
            rates["on"],
            "same run, every metric update a no-op",
            rates["off"],
        )
