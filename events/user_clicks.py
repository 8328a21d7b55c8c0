"""USER_CLICKSTREAM's records: a click joined with its user, as ksqlDB made them.

The notebook read a ksqlDB stream, `clickstream LEFT JOIN users ON userid = user_id`,
whose values have upper-case fields, numbers as numbers, in ksqlDB's order. `enrich`
makes the same (and the datagen, for its joined records); the stream reading them back
is declared in `streams/user_clickstream.sql`.

```python
user_click(click, user)   # {"USERNAME": "akatz1022", "REGISTERED_AT": 1420654807513,
                          #  "IP": "222.245.174.222", "CITY": "London", "REQUEST": ...,
                          #  "STATUS": 404, "BYTES": 4006}
```
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

_MISS = SimpleNamespace(username=None, registered_at=None, city=None)


def user_click(click: Any, user: Any) -> dict[str, Any]:
    """`click` LEFT JOIN `user` (objects with the columns as attributes, or None): a
    user without a name is a miss, and leaves USERNAME, REGISTERED_AT and CITY null."""
    found = user if user is not None and user.username is not None else _MISS
    return {
        "USERNAME": found.username,
        "REGISTERED_AT": found.registered_at,
        "IP": click.ip,
        "CITY": found.city,
        "REQUEST": click.request,
        "STATUS": click.status,
        "BYTES": click.bytes,
    }
