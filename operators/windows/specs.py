"""What the window operators take and emit: the window kinds, a window's final value, and
an event that came too late for some of its windows.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from math import gcd
from typing import Any, Generic, NamedTuple, TypeVar

from operators.batches import Origin

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Sliding:
    """Epoch-aligned windows of `length_ms`, one starting every `slide_ms`."""

    length_ms: int
    slide_ms: int

    def __post_init__(self) -> None:
        if self.length_ms <= 0 or self.slide_ms <= 0:
            raise ValueError("window length and slide must be positive")
        if self.slide_ms > self.length_ms:
            raise ValueError("the slide must not be longer than the window (as in Spark)")

    @property
    def pane_ms(self) -> int:
        """The stretch of time state is kept per: the greatest common divisor of length and
        slide, so every window is a whole number of panes (the slide itself when the
        length is a multiple of it, and then an event is in `length / slide` windows; with
        60 s sliding by 25 s, 5 s panes, and an event in 2 or 3 windows)."""
        return gcd(self.length_ms, self.slide_ms)

    def first_start(self, time_ms: int) -> int:
        """The start of the earliest window holding `time_ms` (starts are multiples of the
        slide: the one after `time_ms - length`)."""
        return ((time_ms - self.length_ms) // self.slide_ms + 1) * self.slide_ms


def Tumbling(length_ms: int) -> Sliding:
    """Epoch-aligned windows of `length_ms` that do not overlap."""
    return Sliding(length_ms, length_ms)


@dataclass(frozen=True)
class Session:
    """Sessions per key that close after `gap_ms` without events."""

    gap_ms: int

    def __post_init__(self) -> None:
        if self.gap_ms <= 0:
            raise ValueError("session gap must be positive")


Window = Sliding | Session


class WindowRow(NamedTuple, Generic[K]):
    """The final value of one window, `[start_ms, end_ms)` for `key`: its count
    (`count_window`) or the tuple of its aggregates' values (`window_aggregate`)."""

    key: K
    start_ms: int
    end_ms: int
    value: Any


class LateEvent(NamedTuple, Generic[E]):
    """An event that arrived after some or all of its windows had closed."""

    event: E
    key: Hashable
    event_time_ms: int
    watermark_ms: int
    windows_missed: int
    windows_total: int
    reason: str
    origin: Origin | None = None
