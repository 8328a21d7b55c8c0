"""The replay source: every partition in a dump holds the watermark, whatever its layout."""

from __future__ import annotations

import json

from sources.replay import scan_partitions


def _line(topic: str, partition: int, offset: int, **dumps_args: object) -> str:
    record = {
        "payload": "{}",
        "key": None,
        "ts": 1,
        "offset": offset,
        "partition": partition,
        "topic": topic,
    }
    return json.dumps(record, **dumps_args)  # type: ignore[arg-type]


def test_partitions_found_in_kcat_layout_and_in_other_layouts(tmp_path):
    kcat = tmp_path / "kcat.jsonl"
    kcat.write_text(
        '{"topic":"clickstream","partition":0,"offset":0,"ts":1,"payload":"{}"}\n'
        '{"topic":"clickstream","partition":3,"offset":0,"ts":2,"payload":"{}"}\n'
    )
    assert scan_partitions(kcat) == {("clickstream", 0), ("clickstream", 3)}
    spaced = tmp_path / "spaced.jsonl"
    spaced.write_text('{"topic": "c", "partition": 2, "offset": 0, "ts": 1, "payload": "{}"}\n')
    assert scan_partitions(spaced) == {("c", 2)}
    reordered = tmp_path / "reordered.jsonl"  # payload first, partition before topic
    reordered.write_text("\n".join(_line("c", p, 0) for p in (1, 5)) + "\n")
    assert scan_partitions(reordered) == {("c", 1), ("c", 5)}


def test_a_partition_or_topic_first_seen_far_into_the_file_is_found(tmp_path):
    # the scan learns the pairs of the file's head, then looks only for pairs it does not
    # know: a partition 12 beside 1 and 2, a topic whose name starts like a known one
    head = "".join(
        f'{{"topic":"c","partition":{1 + i % 2},"offset":{i},"ts":1,"payload":"{{}}"}}\n'
        for i in range(40_000)
    )
    late = [
        '{"topic":"c","partition":12,"offset":0,"ts":1,"payload":"{}"}\n',
        '{"topic":"c2","partition":1,"offset":0,"ts":1,"payload":"{}"}\n',
        '{"topic": "c", "partition": 3, "offset": 0, "ts": 1, "payload": "{}"}\n',
    ]
    dump = tmp_path / "dump.jsonl"
    dump.write_text(head + late[0] + head + late[1] + head + late[2] + head)
    assert dump.stat().st_size > 4 << 20
    assert scan_partitions(dump) == {("c", 1), ("c", 2), ("c", 12), ("c2", 1), ("c", 3)}
