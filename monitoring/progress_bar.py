"""The progress bar of a bounded run (a Kafka backfill to the end offsets, a replay file).

On a terminal, a tqdm bar on stderr: the share of records (Kafka) or bytes (replay)
read, the rate and the time left. Elsewhere (logs, CI, Kubernetes) the same
figures as a plain log line every few seconds. Sources announce what they will
read (`expect`) and report what they read (`advance`); all source partitions of
the process add up into one figure.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from tqdm import tqdm

log = logging.getLogger(__name__)

_PLAIN = (
    "{percentage:3.0f}% ({n_fmt}/{total_fmt}{unit}) {rate_fmt}, {elapsed} elapsed, {remaining} left"
)


class ReadBar:
    def __init__(self, log_every_s: float = 5.0) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.done = 0
        self.unit = "records"
        self.started: float | None = None
        self.log_every_s = log_every_s
        self.next_log = 0.0
        self.bar: tqdm | None = None

    def expect(self, amount: int, unit: str) -> None:
        """A source partition will read `amount` more `unit`s before it ends."""
        with self.lock:
            self.unit = unit
            self.total += amount
            if self.started is None:
                self.started = time.monotonic()
                self.next_log = self.started + self.log_every_s
            if sys.stderr.isatty():
                if self.bar is None:
                    self.bar = tqdm(
                        total=self.total, unit=f" {unit}", unit_scale=True, file=sys.stderr
                    )
                else:
                    self.bar.total = self.total
                    self.bar.refresh()

    def advance(self, amount: int, last: bool = False) -> None:
        """`amount` more were read; `last`: a source partition reached its end."""
        if self.started is None:
            return
        with self.lock:
            self.done += amount
            if self.bar is not None:
                self.bar.update(amount)
                if self.done >= self.total:
                    self.bar.close()
                return
            now = time.monotonic()
            if now >= self.next_log or (last and self.done >= self.total):
                self.next_log = now + self.log_every_s
                log.info("progress: %s", self.line(now))

    def line(self, now: float) -> str:
        """The plain progress line: share, counts, rate and time left."""
        assert self.started is not None
        return tqdm.format_meter(
            self.done,
            max(self.total, self.done),
            now - self.started,
            unit=f" {self.unit}",
            unit_scale=True,
            bar_format=_PLAIN,
        )


READ_BAR = ReadBar()
"""The process's bounded-run progress; one dataflow runs per process."""
