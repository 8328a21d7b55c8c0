"""What the sink tests share: rows of `pages_per_min` around an hour boundary."""

from __future__ import annotations

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # an hour boundary


def pages_rows(n: int, start: int = T0, first: int = 0) -> list[tuple]:
    """`n` rows of `pages_per_min` (userid, event_start, event_end, pages), 5 s apart from
    `start`, numbered from `first`."""
    return [
        (i % 7, start + i * 5_000, start + i * 5_000 + 60_000, i + 1)
        for i in range(first, first + n)
    ]
