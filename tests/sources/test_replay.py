"""The replay source: every partition in a dump holds the watermark, whatever its layout,
and a file read as parts judges every record as one part does."""

from __future__ import annotations

import contextlib
import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings
from events.schema import RawBatch
from events.streams import Stream
from operators.batches import END
from process import RunArgs
from setting import ConfigError
from sources.replay import ReplaySource, replay_parts, scan_partitions
from tools.replay_gen import kcat_line


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
    mixed = tmp_path / "mixed.jsonl"  # a line of another layout among kcat's, at the head
    mixed.write_text(kcat.read_text() + _line("c", 7, 0) + "\n" + kcat.read_text())
    assert scan_partitions(mixed) == {("clickstream", 0), ("clickstream", 3), ("c", 7)}


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


# --- a file read as parts: every record once, judged as in one part -----------------

_TPS = [("c", 0), ("c", 1), ("c", 2), ("d", 0)]
_line_kinds = st.one_of(
    st.tuples(st.just("record"), st.sampled_from(_TPS), st.integers(0, 120_000)),
    st.tuples(
        st.sampled_from(["no time", "far future", "not utf-8", "reordered"]),
        st.sampled_from(_TPS),
        st.integers(0, 120_000),
    ),
    st.tuples(st.sampled_from(["not json", "blank"]), st.just(("", 0)), st.just(0)),
)


def _dump(path, lines: list[tuple[str, tuple[str, int], int]]) -> None:
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for kind, tp, ts in lines:
        offset = offsets[tp] = offsets.get(tp, -1) + 1
        if kind == "not json":
            out.append(b"{not json")
        elif kind == "blank":
            out.append(b"  ")
        elif kind == "reordered":
            out.append(
                _line(*tp, offset, sort_keys=True).replace('"ts": 1', f'"ts": {ts}').encode()
            )
        else:
            stamp = {"no time": -1, "far future": 9_000_000_000_000}.get(kind, ts)
            line = kcat_line(*tp, offset, stamp, "k", '{"a":1}')
            out.append(line.replace(b'{\\"a\\":1}', b"\xff") if kind == "not utf-8" else line)
    path.write_bytes(b"\n".join(out) + b"\n")


def _read(path, name: str) -> list[RawBatch]:
    part = ReplaySource(path, batch_size=7, parts=[name]).build_part("read", name, None)
    batches = []
    with contextlib.suppress(StopIteration):
        while True:
            batches.extend(part.next_batch())
    part.close()
    return batches


def _judged(batches: list[RawBatch]) -> Counter:
    """Each record read, by where it came from: its event time and mark, or (a record
    set aside for the dead letters) why; the mark of such a record decides nothing."""
    seen: Counter = Counter()
    for b in batches:
        assert b.origins is not None
        for i, origin in enumerate(b.origins):
            if i in b.special:
                seen[(origin, "set aside", b.special[i].error, b.events[i])] += 1
            else:
                seen[(origin, b.times[i], b.marks[i])] += 1
    return seen


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_line_kinds, max_size=80), parts=st.integers(2, 5))
def test_a_file_read_as_parts_judges_every_record_as_one_part_does(tmp_path, lines, parts):
    dump = tmp_path / "dump.jsonl"
    _dump(dump, lines)
    whole = _read(dump, "replay")
    split = [_read(dump, name) for name in replay_parts(parts)]
    assert _judged([b for batches in split for b in batches]) == _judged(whole)
    for name, batches in zip(replay_parts(parts), split, strict=True):
        assert batches[-1].progress == END, f"{name} ends"
        assert {b.part for b in batches} == {name} and {b.parts for b in batches} == {parts}


def test_the_parts_share_out_the_kafka_partitions(tmp_path):
    dump = tmp_path / "dump.jsonl"
    _dump(dump, [("record", tp, 1_000 * i) for i in range(40) for tp in _TPS])
    read = [
        {(t, p) for b in _read(dump, name) for t, p, _ in b.origins or ()}
        for name in replay_parts(2)
    ]
    assert read == [{("c", 0), ("c", 2)}, {("c", 1), ("d", 0)}]
    # more parts than partitions: the fifth reads nothing and ends at once
    fifth = _read(dump, replay_parts(5)[4])
    assert [(len(b.events), b.progress) for b in fifth] == [(0, END)]


def test_a_resume_keeps_the_parts_its_store_saved():
    assert replay_parts(4, {"replay 1/2", "replay 2/2"}) == ["replay 1/2", "replay 2/2"]
    # a store written before parts existed: the whole file, as then
    assert replay_parts(2, {"replay"}) == ["replay"]
    assert replay_parts(3, {"000", "001"}) == ["replay 1/3", "replay 2/3", "replay 3/3"]
    assert replay_parts(1) == ["replay"]
    with pytest.raises(ConfigError, match="two different splits of the replay"):
        replay_parts(2, {"replay", "replay 1/2"})


@pytest.mark.parametrize(
    ("processes", "workers", "setting", "saved", "parts"),
    [
        (1, 1, None, set(), ["replay"]),
        (1, 2, None, set(), ["replay"]),  # one GIL: more parts would only add reading
        (2, 1, None, set(), ["replay 1/2", "replay 2/2"]),
        (2, 2, None, set(), [f"replay {k}/4" for k in range(1, 5)]),
        (2, 1, 3, set(), ["replay 1/3", "replay 2/3", "replay 3/3"]),
        (1, 1, None, {"replay 1/2"}, ["replay 1/2", "replay 2/2"]),
    ],
)
def test_a_cluster_reads_a_part_a_worker_and_one_process_one_part(
    tmp_path, monkeypatch, processes, workers, setting, saved, parts
):
    import sources

    dump = tmp_path / "clickstream.jsonl"
    _dump(dump, [("record", ("c", 0), 1)])
    recovery = tmp_path / "recovery"
    run = RunArgs(recovery, 0, processes, workers=workers)
    monkeypatch.setattr(sources, "run_args", lambda: run)
    stores = {(recovery, "flow.read"): saved}
    monkeypatch.setattr(sources, "saved_keys", lambda store, step: stores[(store, step)])
    settings = Settings(source="replay", replay_path=dump, replay_parts=setting)
    stream = Stream("clickstream", "clickstream", ())
    source = sources.source_for(settings, stream, "flow", "flow.read")
    assert isinstance(source, ReplaySource) and source.list_parts() == parts
