"""Bad input lands in dead_letters with its reason, and every record is accounted for."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import orjson
from bytewax.testing import run_main

import dataflows.clickstream
import dataflows.user_clickstream
from config import Settings
from events.parse import is_utf8
from tests.tables import read_rows
from tools.replay_gen import generate, kcat_line

GOOD_CLICK = {
    "ip": "1.2.3.4",
    "userid": 5,
    "request": "GET /index.html HTTP/1.1",
    "status": "404",
    "bytes": "278",
}
GOOD_USER_CLICK = {
    "USERNAME": None,
    "REGISTERED_AT": None,
    "IP": "1.2.3.4",
    "CITY": None,
    "REQUEST": "GET /index.html HTTP/1.1",
    "STATUS": 404,
    "BYTES": 278,
}


def _dump(path: Path, topic: str, payloads: Sequence[bytes | None], raw_lines: list[bytes]) -> None:
    lines = []
    for offset, payload in enumerate(payloads):
        line = orjson.loads(kcat_line(topic, 0, offset, 1_000 + offset, "k", "x"))
        line["payload"] = None if payload is None else "__PAYLOAD__"
        text = orjson.dumps(line)
        if payload is not None:
            # kcat writes payload bytes as they are, so a non-UTF-8 payload makes a
            # line that is not UTF-8 either
            escaped = (
                orjson.dumps(payload.decode())
                if is_utf8(payload)
                else b'"' + payload.replace(b'"', b'\\"') + b'"'
            )
            text = text.replace(b'"__PAYLOAD__"', escaped)
        lines.append(text)
    path.write_bytes(b"\n".join(lines + raw_lines) + b"\n")


BAD_CLICKS: dict[str, bytes | None] = {
    "not JSON": b'{"ip": "1.2.3.4", "userid": ',
    "not an object: the value is an array": b"[1, 2]",
    "payload is not UTF-8": b'{"ip": "\xff\xfe"}',
    "empty payload (tombstone)": None,
}
# Values that are objects are events, as in Spark's from_json: a field that is missing or
# does not cast to its column's type is null.
NULL_FIELDS = [
    orjson.dumps({k: v for k, v in GOOD_CLICK.items() if k != "userid"}),
    orjson.dumps({**GOOD_CLICK, "userid": "abc"}),
    orjson.dumps({**GOOD_CLICK, "status": "OK"}),
]


def test_every_bad_click_is_a_dead_letter_with_its_reason(tmp_path):
    dump = tmp_path / "clickstream.jsonl"
    good = [orjson.dumps(GOOD_CLICK)] * 3
    payloads = good + NULL_FIELDS + list(BAD_CLICKS.values())
    _dump(dump, "clickstream", payloads, [b"this is not a kcat line"])
    out = tmp_path / "out"
    from bytewax.testing import run_main

    run_main(
        dataflows.clickstream.build(Settings(source="replay", replay_path=dump, output=str(out)))
    )
    dead = read_rows(out, "dead_letters")
    reasons = [row[-1] for row in dead]
    assert len(dead) == len(BAD_CLICKS) + 1
    for expected in BAD_CLICKS:
        assert sum(expected in r for r in reasons) == 1, (expected, reasons)
    assert sum(r.startswith("bad replay line 11") for r in reasons) == 1
    # coordinates and the raw payload are kept
    by_offset = {row[3]: row for row in dead}
    assert by_offset[7][6] == BAD_CLICKS["not an object: the value is an array"]
    assert by_offset[8][-1] == "payload is not UTF-8" and by_offset[8][1] == "clickstream"
    assert sorted(row[1] for row in dead) == [""] + ["clickstream"] * len(BAD_CLICKS)
    # 12 windows each: userid 5 has the 3 good pages and the one whose status is null;
    # the two whose userid is null (missing, "abc") are a group of their own
    pages = read_rows(out, "pages_per_min")
    assert len(pages) == 24
    assert {(row[0], row[3]) for row in pages} == {(5, 4), (None, 2)}
    # nothing else: events + dead letters == lines read
    assert 3 + len(NULL_FIELDS) + len(dead) == len(dump.read_bytes().splitlines())


def test_user_clickstream_fields_that_are_missing_or_null_are_null(tmp_path):
    dump = tmp_path / "user_clickstream.jsonl"
    nulls = [
        orjson.dumps({**GOOD_USER_CLICK, "STATUS": None}),
        orjson.dumps({k: v for k, v in GOOD_USER_CLICK.items() if k != "IP"}),
    ]
    _dump(dump, "USER_CLICKSTREAM", [orjson.dumps(GOOD_USER_CLICK)] * 2 + nulls, [b"[]"])
    out = tmp_path / "out"
    from bytewax.testing import run_main

    run_main(
        dataflows.user_clickstream.build(
            Settings(source="replay", replay_path=dump, output=str(out))
        )
    )
    reasons = [row[-1] for row in read_rows(out, "dead_letters")]
    assert len(reasons) == 1 and reasons[0].startswith("bad replay line 5"), reasons
    # four join misses: one session with a null username
    assert [(r[0], r[3]) for r in read_rows(out, "click_user_sessions")] == [(None, 4)]


def test_reading_the_wrong_shape_is_a_warning_in_the_log(tmp_path, caplog):
    # user_clickstream records fed to the clickstream dataflow: none has a column of
    # clickstream (Spark's from_json makes them rows of nulls, and so do we), and the log
    # says so once a minute
    generate(tmp_path / "dump", events=3_000, rate=20, seed=2)
    (tmp_path / "dump" / "clickstream.jsonl").write_bytes(
        (tmp_path / "dump" / "user_clickstream.jsonl").read_bytes()
    )
    settings = Settings(
        source="replay", replay_path=tmp_path / "dump", output=str(tmp_path / "out"), batch_size=500
    )
    with caplog.at_level(logging.WARNING, logger="events.parse"):
        run_main(dataflows.clickstream.build(settings))
    warnings = [
        r.getMessage()
        for r in caplog.records
        if "none of the columns the tables read" in r.getMessage()
    ]
    # once a minute, however many batches: this run takes seconds
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("clickstream: 8 of 8 records sampled have none of the columns")
    assert "the tables read (userid, request, status)" in warnings[0]
    assert read_rows(tmp_path / "out", "dead_letters") == []
    assert read_rows(tmp_path / "out", "pages_per_min") == []  # request is null: no html
