"""What a `count_window` holds in this process (its watermark and state size), read by
`monitoring.metrics`.
"""

from __future__ import annotations

from operators.batches import END, NEVER
from operators.shards import LiveShards
from operators.windows.state import ShardLogic


class WindowStats(LiveShards[ShardLogic]):
    """What a `count_window` holds in this process: its watermark and state size."""

    def __init__(self, delay_ms: int) -> None:
        super().__init__()
        self.delay = delay_ms

    def watermark_ms(self) -> int | None:
        """The least watermark over this process's shards; None before any progress and
        after the end of input."""
        lows = [shard.clock.low for shard in self._live()]
        if not lows or min(lows) <= NEVER or min(lows) >= END:
            return None
        return min(lows) - self.delay

    def open_windows(self) -> int:
        """State entries: (key, pane) counts of sliding windows, or open sessions."""
        return sum(shard.state_size() for shard in self._live())
