"""What the notebook's four tables were called in recovery stores before tables were SQL.

Until 2026-12-02 the four tables were Python calls, and a store saved their definition
as text about lambdas. A store saved then still resumes when the table's SQL computes
what that Python did: `EARLIER` pairs each old text with the SQL it equals (the repo's
`tables/` as first shipped). A table whose SQL differs has no earlier name: its old
store is refused like any other change.
"""

from __future__ import annotations

from typing import NamedTuple


class Earlier(NamedTuple):
    definition: str  # as saved in `definition-<flow>.json`
    sql: str  # the SQL that computes the same


EARLIER = {
    "pages_per_min": Earlier(
        "Sliding(length_ms=60000, slide_ms=5000), delay 60000 ms, key attrgetter('userid'), "
        "where lambda c: 'html' in c.request, having none, 32 shards",
        "SELECT userid, window.start AS event_start, window.end AS event_end, count(*) AS pages "
        "FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS "
        "WHERE request LIKE '%html%' "
        "GROUP BY window(timestamp, '60 seconds', '5 seconds'), userid",
    ),
    "errors_per_min_alert": Earlier(
        "Sliding(length_ms=60000, slide_ms=20000), delay 60000 ms, key attrgetter('status'), "
        "where lambda c: c.status > 400, having lambda errors: errors > 5, 32 shards",
        "SELECT status, window.start AS event_start, window.end AS event_end, count(*) AS errors "
        "FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS "
        "WHERE status > 400 "
        "GROUP BY window(timestamp, '60 seconds', '20 seconds'), status HAVING errors > 5",
    ),
    "click_user_sessions": Earlier(
        "Session(gap_ms=30000), delay 30000 ms, key attrgetter('username'), where none, "
        "having none, 32 shards",
        "SELECT USERNAME AS username, session_window.start AS event_start, "
        "session_window.end AS event_end, count(*) AS events "
        "FROM user_clickstream WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS "
        "GROUP BY session_window(timestamp, '30 seconds'), USERNAME",
    ),
    "user_ip_activity": Earlier(
        "Sliding(length_ms=60000, slide_ms=60000), delay 60000 ms, "
        "key attrgetter('username', 'ip', 'city'), where none, "
        "having lambda count: count > 1, 32 shards",
        "SELECT username, ip, city, window.start AS event_start, window.end AS event_end, "
        "count(*) AS count FROM user_clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS "
        "GROUP BY window(timestamp, '60 seconds'), username, ip, city HAVING count > 1",
    ),
}
