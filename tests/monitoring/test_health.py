"""The health rules and the plain progress line, without a dataflow around them."""

from __future__ import annotations

from events.parse import reason_kind
from monitoring.health import Health
from monitoring.progress_bar import ReadBar


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_input_waiting_but_not_read_for_the_stall_timeout_is_unhealthy():
    clock = Clock()
    health = Health(stall_timeout_s=60, clock=clock)
    health.polled("clickstream#0", read=100, waiting=True)
    assert health.problems() == []
    for _ in range(5):
        clock.now += 13
        health.polled("clickstream#0", read=0, waiting=True)
        assert (health.problems() == []) == (clock.now - 1000 <= 60)
    [problem] = health.problems()
    assert problem.startswith("clickstream#0: input waiting, nothing read for")
    health.polled("clickstream#0", read=10, waiting=True)
    assert health.problems() == []


def test_a_caught_up_input_may_read_nothing_for_ever():
    clock = Clock()
    health = Health(stall_timeout_s=60, clock=clock)
    health.polled("clickstream#0", read=0, waiting=False)
    for _ in range(100):
        clock.now += 50
        health.polled("clickstream#0", read=0, waiting=False)
    assert health.problems() == []


def test_an_input_not_polled_for_the_stall_timeout_is_unhealthy_until_it_finishes():
    # its worker is stuck (for example in a sink that cannot write)
    clock = Clock()
    health = Health(stall_timeout_s=60, clock=clock)
    health.polled("replay", read=10, waiting=False)
    clock.now += 59
    assert health.problems() == []
    clock.now += 2
    assert health.problems()[0].startswith("replay: not polled for 61 s")
    health.finished("replay")
    assert health.problems() == []


def test_storage_failure_is_unhealthy_until_a_write_succeeds():
    health = Health()
    health.storage_failed("upload gs://b/x: OSError: refused")
    assert "storage writes failing" in health.problems()[0]
    health.storage_ok()
    assert health.problems() == []


def test_progress_line_gives_share_rate_and_time_left():
    progress = ReadBar()
    progress.expect(1_000_000, "records")
    assert progress.started is not None
    progress.done = 400_000
    # 4 s after the start exactly: a clock read here would be a little later under load
    # (99.9k records/s, seen in a loaded test-fast run)
    line = progress.line(progress.started + 4.0)
    assert line.startswith(" 40% (400k/1.00M records) 100k records/s"), line
    assert "00:06 left" in line


def test_dead_letter_reasons_are_grouped_without_their_details():
    assert reason_kind("not JSON: input data was truncated") == "not JSON"
    assert reason_kind("invalid Click: Expected `int`, got `str` - at `$.userid`") == (
        "invalid Click"
    )
    assert reason_kind("timestamp 2100-01-01T00:00:00.000Z is more than 3600 s ahead") == (
        "timestamp in the future"
    )
    assert reason_kind("no record timestamp") == "no record timestamp"
