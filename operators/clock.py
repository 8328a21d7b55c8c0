"""A stream's event-time progress: the least progress over its input partitions."""

from __future__ import annotations

from typing import Protocol

from operators.batches import END, NEVER


class Progress(Protocol):
    """What a partition reports: who it is, how many there are, how far it has read."""

    @property
    def part(self) -> str: ...
    @property
    def parts(self) -> int: ...
    @property
    def progress(self) -> int: ...
    @property
    def idle(self) -> bool: ...


class Clock:
    """The stream's event-time progress as seen by one shard."""

    __slots__ = ("idle", "low", "parts", "progress")

    def __init__(self) -> None:
        self.progress: dict[str, int] = {}
        self.idle: set[str] = set()
        self.parts = 0
        # Stream progress never goes back, even when an idle partition wakes up.
        self.low = NEVER

    def others(self, part: str) -> int:
        """Least progress of the partitions other than `part` that hold the stream back."""
        if len(self.progress) + (part not in self.progress) < self.parts:
            return NEVER  # a partition we have not heard from yet holds everything back
        low = END
        for other, progress in self.progress.items():
            if other != part and other not in self.idle and progress < low:
                low = progress
        return low

    def update(self, msg: Progress) -> None:
        self.parts = max(self.parts, msg.parts)
        self.progress[msg.part] = max(self.progress.get(msg.part, NEVER), msg.progress)
        if msg.idle:
            self.idle.add(msg.part)
        else:
            self.idle.discard(msg.part)
        if len(self.progress) < self.parts:
            return
        active = [p for part, p in self.progress.items() if part not in self.idle]
        # All partitions idle: the stream moves with the most advanced one.
        low = min(active) if active else max(self.progress.values())
        self.low = max(self.low, low)

    def snapshot(self) -> tuple[dict[str, int], frozenset[str], int, int]:
        return dict(self.progress), frozenset(self.idle), self.parts, self.low

    @classmethod
    def restore(cls, state: tuple[dict[str, int], frozenset[str], int, int]) -> Clock:
        clock = cls()
        progress, idle, clock.parts, clock.low = state
        clock.progress, clock.idle = dict(progress), set(idle)
        return clock
