"""A replay file's lines read in Rust (`clickstream_native.LineFile`: `pick` and
`next_unknown`) against the Python reference, on random files.

The reference reads the file as Python does, one line after each `\\n`, and decodes the
lines a part keeps one by one (`_Share.lines`, `parse_line`): the path a replay takes
when a block holds a line that is not in kcat's layout. Files mix kcat lines with
spaced and reordered ones, blank lines, lines that are not JSON or not UTF-8, two
values on a line, and a last line with no newline; blocks are made tiny so that lines
straddle them.
"""

from __future__ import annotations

import json
from io import BytesIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sources.replay
from events.schema import RawRecord
from sources.replay import Layout, ReplaySource, _Share, parse_line, replay_parts, scan_partitions
from tools.replay_gen import kcat_line

_TPS = [("c", 0), ("c", 1), ("c", 12), ("d", 0)]
_KINDS = ["kcat", "kcat", "kcat", "spaced", "reordered", "blank", "not json", "not utf-8", "two"]


def _line(kind: str, tp: tuple[str, int], offset: int) -> bytes:
    if kind == "kcat":
        return kcat_line(*tp, offset, 1_000 * offset, "k", '{"a":1}')
    record = {"topic": tp[0], "partition": tp[1], "offset": offset, "ts": 5, "payload": "{}"}
    if kind == "spaced":
        return json.dumps(record).encode()
    if kind == "reordered":
        return json.dumps(record, sort_keys=True).encode()
    if kind == "not utf-8":
        return kcat_line(*tp, offset, 1, None, "x").replace(b'"x"', b'"\xff"')
    if kind == "two":  # one line, two values: the batch decode must not take it
        return kcat_line(*tp, offset, 1, None, "x") + b" {}"
    return {"blank": b" \t\x0b\x0c\r ", "not json": b"{not json"}[kind]


@st.composite
def dumps(draw: st.DrawFn) -> bytes:
    kinds = draw(st.lists(st.sampled_from(_KINDS), max_size=40))
    lines = [_line(k, draw(st.sampled_from(_TPS)), i) for i, k in enumerate(kinds)]
    data = b"\n".join(lines)
    return data if draw(st.booleans()) else data + b"\n"  # the last line may have no \n


def _partitions(data: bytes) -> set[tuple[str, int]]:
    """The Kafka partitions of a dump, every line decoded."""
    records = [parse_line(line, 0) for line in BytesIO(data) if not line.isspace()]
    return {(r.topic, r.partition) for r in records if r.topic}


def _reference(data: bytes, part: str) -> list[RawRecord]:
    """What part `part` reads, line by line."""
    raw = list(BytesIO(data))
    layout = Layout.of(part)
    if layout.parts == 1:
        kept = [(line, n) for n, line in enumerate(raw, start=1) if not line.isspace()]
    else:
        known = sorted(_partitions(data))
        kept = list(zip(*_Share(known, layout).lines(raw, 1), strict=True))
    return [parse_line(line, n) for line, n in kept]


def _read(path, part: str, batch_size: int) -> list[RawRecord]:
    """What part `part` reads, batch by batch (`wanted` lines each, as `next_batch`)."""
    reader = ReplaySource(path, batch_size, parts=[part]).build_part("read", part, None)
    records = []
    while not reader.done:
        records.extend(reader._read(batch_size * reader.layout.parts))
    assert reader.lines.position == path.stat().st_size, "every byte read"
    reader.close()
    return records


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of 64 bytes, so that most lines straddle two (a line is 90-150 bytes)."""
    monkeypatch.setattr(sources.replay, "_BLOCK", 64)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=dumps(), parts=st.integers(1, 3), batch_size=st.integers(1, 9))
def test_each_part_reads_what_the_python_reference_reads(
    tmp_path, tiny_blocks, data, parts, batch_size
):
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(data)
    for part in replay_parts(parts):
        got = _read(dump, part, batch_size)
        # a record's value is the line it came from when it is broken: compare as bytes
        assert got == _reference(data, part), part


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=dumps())
def test_the_scan_finds_what_decoding_every_line_finds(tmp_path, tiny_blocks, data):
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(data)
    assert scan_partitions(dump) == _partitions(data)


def test_a_line_longer_than_a_block_is_read_whole(tmp_path):
    line = kcat_line("c", 0, 0, 1, "k", "x" * (3 * 64))
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(line + b"\n" + line)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sources.replay, "_BLOCK", 64)
        assert _read(dump, "replay", 1) == [parse_line(line, 1), parse_line(line, 2)]
        assert scan_partitions(dump) == {("c", 0)}


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kinds=st.lists(st.sampled_from(["kcat", "blank"]), max_size=40),
    parts=st.integers(1, 3),
    batch_size=st.integers(1, 9),
)
def test_lines_in_kcat_layout_take_the_fast_path(
    tmp_path, tiny_blocks, monkeypatch, kinds, parts, batch_size
):
    # the line-by-line path gives the same records, so a fast path that fell back on
    # lines it should have taken would pass the tests above, only slower
    def refused(*args: object) -> None:
        raise AssertionError("read line by line")

    monkeypatch.setattr(sources.replay._ReplayPartition, "_lines", refused)
    data = b"\n".join(_line(k, _TPS[i % 4], i) for i, k in enumerate(kinds)) + b"\n"
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(data)
    for part in replay_parts(parts):
        assert _read(dump, part, batch_size) == _reference(data, part)
