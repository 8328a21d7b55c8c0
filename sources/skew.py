"""Records stamped too far in the future: dead letters, not event time.

One record from a producer with a broken clock (a `CreateTime` of 2100-01-01)
would otherwise move its partition's progress decades ahead and make every later
record of that partition late. A record whose timestamp is more than the allowed
skew ahead of the wall clock when it is read is set aside with a reason that
names both, and its partition's progress stays where it was.

```python
guard = FutureGuard(3600.0)
guard.check(4_102_444_800_000)   # 2100-01-01: "timestamp 2100-01-01T00:00:00.000Z is ..."
guard.check(int(time.time() * 1000))   # None: fine
```
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class FutureGuard:
    """Says why a record timestamp is too far ahead of the wall clock, or None."""

    def __init__(self, max_skew_s: float) -> None:
        self.max_skew_ms = max_skew_s * 1000.0

    def limit_ms(self) -> float:
        """The latest acceptable timestamp right now (epoch ms)."""
        return time.time() * 1000.0 + self.max_skew_ms

    def reason(self, ts: int) -> str:
        try:
            when = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")
            when = when.replace("+00:00", "Z")
        except (OverflowError, ValueError, OSError):  # beyond year 9999
            when = f"{ts} ms"
        return (
            f"timestamp {when} is more than "
            f"{self.max_skew_ms / 1000:g} s ahead of the wall clock "
            "(CLICKSTREAM_MAX_FUTURE_SKEW)"
        )

    def check(self, ts: int) -> str | None:
        return self.reason(ts) if ts > self.limit_ms() else None
