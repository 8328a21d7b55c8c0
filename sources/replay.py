"""Replay Kafka records dumped with `kcat -C -J` (one JSON object per line).

Each line has `topic`, `partition`, `offset`, `ts` (epoch ms), `key` and
`payload`. Records are replayed in file order; at end of file every window is
flushed. The position in the file is the recovery state, so a resumed run
continues after the last committed batch.

A file is read as one or more parts, as a topic is read as its partitions, so that
every worker of a cluster reads and parses some of it: with P parts, part k reads the
records of every P-th Kafka partition in the file (in the order of `scan_partitions`),
and only glances at the other lines (does one start with a partition of its own?).
That keeps every record's lateness what it is with one part: a record is judged
against its own Kafka partition's progress (its mark), which only that partition's
earlier records move. One part (`replay`) is the whole file, as before parts existed;
a resumed run keeps the parts its store saved.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from io import BytesIO
from pathlib import Path
from typing import NamedTuple, cast

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from config import DEFAULTS
from events.parse import is_utf8
from events.schema import RawBatch, RawRecord
from events.streams import TimesOf
from monitoring.metrics import InputMeter
from monitoring.progress_bar import READ_BAR
from operators.batches import END, Origins
from setting import ConfigError
from sources.progress import PartitionProgress
from sources.skew import FutureGuard

log = logging.getLogger(__name__)

# How a line of one Kafka partition starts: `{"topic":"...","partition":N,` as kcat -J
# writes it, or with spaces. A topic with an escape in its name, or a line of another key
# order, is decoded instead, which is slower.
_LINE_START = re.compile(rb'\{\s*"topic"\s*:\s*"[^"\\]*"\s*,\s*"partition"\s*:\s*-?\d+\s*,')

_decode_line = msgspec.json.Decoder(RawRecord).decode
_decode_lines = msgspec.json.Decoder(list[RawRecord]).decode


WHOLE_FILE = "replay"
"""The one part of a replay read by one worker (and the part of every earlier version)."""

_PART = re.compile(r"replay (\d+)/(\d+)\Z")


class Layout(NamedTuple):
    """Which part of a replay file a source partition reads."""

    part: int  # 0-based
    parts: int

    @property
    def name(self) -> str:
        return WHOLE_FILE if self.parts == 1 else f"replay {self.part + 1}/{self.parts}"

    @classmethod
    def of(cls, name: str) -> Layout:
        if name == WHOLE_FILE:
            return cls(0, 1)
        found = _PART.match(name)
        if found is None:
            raise ValueError(f"{name!r} is not a replay part")
        return cls(int(found[1]) - 1, int(found[2]))


def replay_parts(parts: int, saved: Collection[str] = ()) -> list[str]:
    """The names of the parts a replay is read as: the parts a recovery store `saved`
    (a resume keeps them, whatever its worker count now), else `parts` parts."""
    counts = set()
    for key in saved:
        try:
            counts.add(Layout.of(key).parts)
        except ValueError:
            continue
    if len(counts) > 1:
        raise ConfigError(
            f"the recovery store holds the parts of two different splits of the replay "
            f"({' and '.join(f'{n} parts' for n in sorted(counts))}); resume it with the "
            "version that wrote it, or start fresh"
        )
    total = counts.pop() if counts else parts
    return [Layout(k, total).name for k in range(total)]


_BLOCK = 1 << 22  # bytes read at a time (clickstream_native.LineFile's buffer)


def scan_partitions(path: Path) -> set[tuple[str, int]]:
    """Every (topic, partition) in a dump, so that all of them hold the watermark.

    A pass over the whole file's lines at start. A line that starts as a line of a pair
    already found started (`_LINE_START`: kcat's layout, or the same keys spaced) is
    passed over in Rust (`clickstream_native.LineFile.next_unknown`); any other line is
    decoded. 956,000 lines (433 MB): 0.29 CPU-s with a regular expression over the
    mapped file, 0.16 comparing the lines in Python, 0.07 in Rust."""
    from clickstream_native import LineFile  # a replay's own: imported when used

    found: set[tuple[str, int]] = set()
    starts: list[bytes] = []
    lines = LineFile(str(path), 0, _BLOCK)
    try:
        while (line := lines.next_unknown(starts)) is not None:
            record = parse_line(line, 0)
            if not record.topic:
                continue  # not a record: its dead letter is the reader's business
            found.add((record.topic, record.partition))
            start = _LINE_START.match(line)
            if start is not None:
                starts.append(start[0])
    finally:
        lines.close()
    return found


def parse_line(line: bytes, number: int) -> RawRecord:
    """One dump line as a record; an unreadable line becomes a record with `error`."""
    try:
        return _decode_line(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as ex:  # ValidationError is a DecodeError
        if is_utf8(line):
            return RawRecord("", -1, -1, None, None, line, f"bad replay line {number}: {ex}")
    # kcat writes payload bytes as they are; recover the coordinates at least.
    try:
        rec = _decode_line(line.decode("utf-8", "replace").encode())
    except msgspec.DecodeError:
        return RawRecord("", -1, -1, None, None, line, f"bad replay line {number}: not UTF-8")
    return RawRecord(
        rec.topic, rec.partition, rec.offset, rec.ts, rec.key, line, "payload is not UTF-8"
    )


def parse_lines(lines: list[bytes], numbers: Sequence[int]) -> list[RawRecord]:
    """Decode many lines (their line numbers `numbers`) in one call; only when that
    fails, line by line.

    The JSON array is made with one copy of the lines: each megabyte-sized buffer is
    fresh memory, and page faults made `b"[" + b",".join(lines) + b"]"` (three copies)
    cost more than the decoding (720 against 370 ns a line)."""
    if not lines:
        return []
    framed = list(lines)
    framed[0] = b"[" + framed[0]
    framed[-1] = framed[-1] + b"]"
    try:
        records = _decode_lines(b",".join(framed))
    except (msgspec.DecodeError, UnicodeDecodeError):
        records = []
    if len(records) != len(lines):  # a bad line, or one holding more than one JSON value
        records = [parse_line(line, n) for n, line in zip(numbers, lines, strict=True)]
    return records


def _prefix(tp: tuple[str, int]) -> bytes:
    """How kcat -J starts a line of Kafka partition `tp`."""
    return b'{"topic":%s,"partition":%d,' % (msgspec.json.encode(tp[0]), tp[1])


class _Share:
    """The Kafka partitions of a replay file one part of several reads, and how it
    picks their lines out of the file's: by how a line starts (kcat's layout), and
    for any other line (another layout, or not a record at all) by decoding it. A line
    that is no partition's record is the first part's (its dead letter, once)."""

    def __init__(self, known: list[tuple[str, int]], layout: Layout) -> None:
        self.first = layout.part == 0
        self.known = set(known)
        self.partitions = {tp for i, tp in enumerate(known) if i % layout.parts == layout.part}
        self.own = tuple(_prefix(tp) for tp in sorted(self.partitions))
        self.any = tuple(_prefix(tp) for tp in known)
        # more parts than Kafka partitions: a part with none reads nothing (the lines that
        # are no partition's record are the first part's)
        self.idle = not self.partitions and not self.first

    def lines(self, raw: list[bytes], first: int) -> tuple[list[bytes], Sequence[int]]:
        """The lines of `raw` (numbered from `first` on) this part reads, and their
        numbers: line by line, the reference (`clickstream_native.LineFile.pick` picks the
        lines of a block that are all in kcat's layout)."""
        lines: list[bytes] = []
        numbers: list[int] = []
        for number, line in enumerate(raw, start=first):
            mine = line.startswith(self.own)
            if mine or (not line.startswith(self.any) and self._stray(line, number)):
                lines.append(line)
                numbers.append(number)
        return lines, numbers

    def _stray(self, line: bytes, number: int) -> bool:
        """Whether this part reads a line not in kcat's layout."""
        if line.isspace():
            return False
        record = parse_line(line, number)
        tp = (record.topic, record.partition)
        if tp in self.partitions:
            return True
        return self.first and tp not in self.known


class ReplayState(NamedTuple):
    """What a replay partition saves (as a plain tuple, see `operators.clock.ClockState`)."""

    position: int  # byte offset of the next line
    line_number: int
    progress: dict  # PartitionProgress.snapshot(): per Kafka partition of the dump


class _ReplayPartition(StatefulSourcePartition[RawBatch, tuple]):
    def __init__(
        self,
        path: Path,
        batch_size: int,
        max_future_skew_s: float,
        dataflow: str,
        resume: tuple | None,
        times_of: TimesOf | None,
        name: str,
        partitions: Callable[[], list[tuple[str, int]]],
        slow_reads_s: float,
    ) -> None:
        self.path = path
        self.slow_reads_s = slow_reads_s
        self.name = name
        self.layout = Layout.of(name)
        self.times_of = times_of
        self.batch_size = batch_size
        self.future = FutureGuard(max_future_skew_s)
        self.mine: _Share | None = None
        known: list[tuple[str, int]] = []
        if resume is None or self.layout.parts > 1:
            known = partitions()
        if self.layout.parts > 1:
            self.mine = _Share(known, self.layout)
        if resume is None:
            self.position, self.line_number = 0, 0
            self.progress = PartitionProgress(self.mine.partitions if self.mine else known)
            log.info(
                "replay %s (%s): %d Kafka partitions in the file%s",
                path,
                name,
                len(known),
                f", {len(self.mine.partitions)} read here" if self.mine else "",
            )
        else:
            saved = ReplayState._make(resume)
            self.position, self.line_number = saved.position, saved.line_number
            self.progress = PartitionProgress(state=saved.progress)
            log.info("replay %s (%s): resuming at line %d", path, name, self.line_number)
        if self.mine is not None and self.mine.idle:
            # no line of the file is this part's: it ends at once, holding nobody back
            self.position = path.stat().st_size
        from clickstream_native import LineFile  # a replay's own: imported when used

        self.lines = LineFile(str(path), self.position, _BLOCK)
        self.done = False
        self.meter = InputMeter(dataflow, f"replay {path.name}")
        READ_BAR.expect(max(path.stat().st_size - self.position, 0), "bytes")

    def next_batch(self) -> list[RawBatch]:
        if self.done:
            raise StopIteration
        records = self._read(self.batch_size * self.layout.parts)
        if self.slow_reads_s:
            time.sleep(self.slow_reads_s * len(records))
        topics = [r.topic for r in records]
        partitions = [r.partition for r in records]
        tps = list(zip(topics, partitions, strict=True))
        stamps = [r.ts for r in records]
        special: dict[int, RawRecord] = {}
        if self._plain(records, stamps):
            times = cast(list[int], stamps)
            marks, lows = self.progress.read(tps, times)
        else:
            times, marks, lows = self._times(records, special)
        position = self.lines.position
        READ_BAR.advance(position - self.position, last=self.done)
        self.position = position
        for (topic, partition), n in Counter(tps).items():
            self.meter.read(topic, partition, n)
        if self.done:
            self.meter.finished()
            log.info(
                "replay %s (%s): end of file after %d lines", self.path, self.name, self.line_number
            )
        else:
            self.meter.polled(len(records), waiting=True)
        end = END if self.done else self.progress.low
        return [
            RawBatch(
                self.name,
                self.layout.parts,
                [r.value for r in records],
                times,
                marks,
                end,
                lows=lows,
                origins=Origins(topics, partitions, [r.offset for r in records]),
                keys=[r.key for r in records],
                special=special,
            )
        ]

    def _read(self, wanted: int) -> list[RawRecord]:
        """The records of this part in the next `wanted` lines of the file (with P parts,
        about a P-th of them), as one decode of the lines `LineFile.pick` keeps; when one
        is not in kcat's layout or fails to decode, line by line (`_lines`)."""
        own, known = (self.mine.own, self.mine.any) if self.mine else (None, ())
        taken, kept, joined = self.lines.pick(wanted, own, known)
        self.done = self.lines.done
        first = self.line_number + 1
        self.line_number += taken
        if joined is not None:
            try:
                records = _decode_lines(joined)
            except (msgspec.DecodeError, UnicodeDecodeError):
                records = []
            if len(records) == kept:
                return records
        raw = list(BytesIO(self.lines.taken()))  # split as a file is: after each \n
        return parse_lines(*self._lines(raw, first))

    def _lines(self, raw: list[bytes], first: int) -> tuple[list[bytes], Sequence[int]]:
        """The lines of `raw` (numbered from `first` on) this part reads, and their numbers."""
        if self.mine is not None:
            return self.mine.lines(raw, first)
        lines = [line for line in raw if not line.isspace()]
        numbers: Sequence[int] = range(first, first + len(raw))
        if len(lines) != len(raw):  # blank lines: keep line numbers right for errors
            numbers = [n for n, line in zip(numbers, raw, strict=True) if not line.isspace()]
        return lines, numbers

    def _plain(self, records: list[RawRecord], stamps: list[int | None]) -> bool:
        """The common batch: every record has its own time, none too far ahead, none
        broken, and the event time is Kafka's (not a payload column)."""
        if self.times_of is not None:
            return False
        if not stamps:
            return True
        try:  # a None among the times raises
            if min(stamps) < 0 or max(stamps) > self.future.limit_ms():  # type: ignore[type-var, operator]
                return False
        except TypeError:
            return False
        return [r.error for r in records].count(None) == len(records)

    def _times(
        self, records: list[RawRecord], special: dict[int, RawRecord]
    ) -> tuple[list[int], list[int], list[int]]:
        """Each record's event time, mark (its own Kafka partition's progress: judges
        lateness) and the whole file's progress after it (the least advanced partition:
        holds the watermark), record by record: a record without a time, or with one from
        its payload, or one too far in the future, goes into `special`."""
        times: list[int] = []
        marks: list[int] = []
        lows: list[int] = []
        progress = self.progress
        latest = progress.latest
        low = progress.low
        limit = self.future.limit_ms()
        payload_times, no_time = (
            self.times_of([r.value for r in records]) if self.times_of else (None, {})
        )
        for i, record in enumerate(records):
            ts = record.ts
            if payload_times is not None and record.error is None:
                # the event time is a column of the payload; the record's own stays as read
                ts = None if i in no_time else payload_times[i]
                record.error = no_time.get(i)
            if ts is not None and ts < 0:  # kcat writes -1 for a record without a timestamp
                record.ts = ts = None
            elif ts is not None and ts > limit and record.error is None:
                # a broken clock: a dead letter that moves no event time
                record.error = self.future.reason(ts)
                ts = None
            tp = (record.topic, record.partition)
            if ts is not None:
                low = progress.advance(tp, ts)
                times.append(ts)
            else:
                times.append(low)
            mark = latest.get(tp, low)
            marks.append(mark if mark > low else low)
            lows.append(low)
            if ts is None or record.error is not None:
                special[i] = record
        return times, marks, lows

    def snapshot(self) -> tuple:
        return tuple(ReplayState(self.position, self.line_number, self.progress.snapshot()))

    def close(self) -> None:
        self.lines.close()


class ReplaySource(FixedPartitionedSource[RawBatch, tuple]):
    """A replay file, read as the parts `parts` names (`replay_parts`; one part, the
    whole file read in order, by default)."""

    def __init__(
        self,
        path: Path,
        batch_size: int = DEFAULTS.batch_size,
        max_future_skew_s: float = DEFAULTS.max_future_skew_s,
        dataflow: str = "",
        times_of: TimesOf | None = None,
        parts: list[str] | None = None,
        slow_reads_s: float = 0.0,
    ) -> None:
        self.dataflow = dataflow
        self.slow_reads_s = slow_reads_s  # config.slow_reads_for_tests
        self.times_of = times_of
        self.path = path
        self.batch_size = batch_size
        self.max_future_skew_s = max_future_skew_s
        self.parts = parts or [WHOLE_FILE]
        self._partitions: list[tuple[str, int]] | None = None
        self._scanning = threading.Lock()

    def partitions(self) -> list[tuple[str, int]]:
        """The file's Kafka partitions, sorted: scanned once for all the parts a process
        reads (`build_part` is called on this one object for each)."""
        with self._scanning:
            if self._partitions is None:
                self._partitions = sorted(scan_partitions(self.path))
            return self._partitions

    def list_parts(self) -> list[str]:
        return self.parts

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple | None
    ) -> _ReplayPartition:
        return _ReplayPartition(
            self.path,
            self.batch_size,
            self.max_future_skew_s,
            self.dataflow,
            resume_state,
            self.times_of,
            for_part,
            self.partitions,
            self.slow_reads_s,
        )
