"""What the sink tests share: rows of `pages_per_min` around an hour boundary, and the
lines a sink would stop its process with."""

from __future__ import annotations

from typing import NoReturn

import pytest

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # an hour boundary


def pages_rows(n: int, start: int = T0, first: int = 0) -> list[tuple]:
    """`n` rows of `pages_per_min` (userid, event_start, event_end, pages), 5 s apart from
    `start`, numbered from `first`."""
    return [
        (i % 7, start + i * 5_000, start + i * 5_000 + 60_000, i + 1)
        for i in range(first, first + n)
    ]


@pytest.fixture
def stop_lines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The lines `process.stop` is called with; a call raises `SystemExit` with its exit
    status instead of ending the test process."""
    said: list[str] = []

    def stop(message: str, status: int = 2) -> NoReturn:
        said.append(message)
        raise SystemExit(status)

    monkeypatch.setattr("process.stop", stop)
    return said
