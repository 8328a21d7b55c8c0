"""Is this process making progress? Sources and sinks report here; `/health` asks.

Unhealthy (503) when storage writes failed past their retries, or when a source
partition has input waiting and has read nothing for the stall timeout, or has not
even been polled for that long (its worker is stuck, for example in a sink that
cannot write). An orchestrator's liveness probe then restarts the process, which
resumes from its recovery store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from config import DEFAULTS


@dataclass
class _Input:
    polled_at: float
    read_at: float
    waiting: bool


class Health:
    """```python
    health = Health(stall_timeout_s=60)
    health.polled("clickstream#0", read=100, waiting=True)
    health.problems()   # [] now; ["clickstream#0: input waiting, ..."] 60 s on
    ```

    `clock` is the monotonic clock it judges by (a test's own clock, to skip waiting).
    """

    def __init__(
        self,
        stall_timeout_s: float = DEFAULTS.stall_timeout_s,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.clock = clock
        self.inputs: dict[str, _Input] = {}
        self.storage_error: str | None = None

    def polled(self, part: str, read: int, waiting: bool) -> None:
        """Source partition `part` was asked for records and read `read` of them;
        `waiting`: it knows of more input it has not read yet."""
        now = self.clock()
        entry = self.inputs.get(part)
        if entry is None:
            self.inputs[part] = _Input(now, now, waiting)
            return
        entry.polled_at = now
        if read:
            entry.read_at = now
        entry.waiting = waiting

    def finished(self, part: str) -> None:
        """A bounded input that has read everything cannot stall."""
        self.inputs.pop(part, None)

    def storage_failed(self, error: str) -> None:
        self.storage_error = error

    def storage_ok(self) -> None:
        self.storage_error = None

    def problems(self) -> list[str]:
        """Why this process is unhealthy; empty when it is fine."""
        out = []
        if self.storage_error is not None:
            out.append(f"storage writes failing past their retries: {self.storage_error}")
        now = self.clock()
        for part, entry in list(self.inputs.items()):
            if now - entry.polled_at > self.stall_timeout_s:
                out.append(f"{part}: not polled for {now - entry.polled_at:.0f} s")
            elif entry.waiting and now - entry.read_at > self.stall_timeout_s:
                out.append(f"{part}: input waiting, nothing read for {now - entry.read_at:.0f} s")
        return out


HEALTH = Health()
"""The process's health; one dataflow runs per process."""
