"""What the window operators take and emit: the window kinds, a window's final value, and
an event that came too late for some of its windows.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
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
        if self.length_ms % self.slide_ms:
            # Spark allows it, but then events belong to a varying number of windows;
            # none of our tables needs it.
            raise ValueError("window length must be a multiple of the slide")


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
