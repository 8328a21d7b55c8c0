"""Replay Kafka records dumped with `kcat -C -J` (one JSON object per line).

Each line has `topic`, `partition`, `offset`, `ts` (epoch ms), `key` and
`payload`. Records are replayed in file order; at end of file every window is
flushed. The position in the file is the recovery state, so a resumed run
continues after the last committed batch.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import msgspec
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from events.schema import RawRecord
from operators.batches import END, TimedBatch
from sources.progress import PartitionProgress

log = logging.getLogger(__name__)

_TOPIC_PARTITION = re.compile(rb'"topic"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"partition"\s*:\s*(-?\d+)')


class KcatLine(msgspec.Struct):
    topic: str
    partition: int
    offset: int
    ts: int | None = None
    key: str | None = None
    payload: str | None = None


_decode_line = msgspec.json.Decoder(KcatLine).decode


def scan_partitions(path: Path) -> set[tuple[str, int]]:
    """Every (topic, partition) in a dump, so that all of them hold the watermark."""
    found: set[tuple[str, int]] = set()
    with path.open("rb") as f:
        tail = b""
        while chunk := f.read(16 << 20):
            # Lines are short: keep the last partial line for the next chunk.
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            for m in _TOPIC_PARTITION.finditer(data, 0, cut or len(data)):
                found.add((m.group(1).decode("utf-8", "replace"), int(m.group(2))))
            tail = data[cut:] if cut else b""
        for m in _TOPIC_PARTITION.finditer(tail):
            found.add((m.group(1).decode("utf-8", "replace"), int(m.group(2))))
    return found


def parse_line(line: bytes, number: int) -> RawRecord:
    try:
        rec = _decode_line(line)
    except UnicodeDecodeError:
        # kcat writes payload bytes as they are; recover the coordinates at least.
        try:
            rec = _decode_line(line.decode("utf-8", "replace").encode())
        except (msgspec.DecodeError, msgspec.ValidationError):
            return RawRecord("", -1, -1, None, None, line, f"bad replay line {number}: not UTF-8")
        key = rec.key.encode() if rec.key is not None else None
        return RawRecord(rec.topic, rec.partition, rec.offset, rec.ts, key, line,
                         "payload is not UTF-8")
    except (msgspec.DecodeError, msgspec.ValidationError) as ex:
        return RawRecord("", -1, -1, None, None, line, f"bad replay line {number}: {ex}")
    key = rec.key.encode() if rec.key is not None else None
    value = rec.payload.encode() if rec.payload is not None else None
    return RawRecord(rec.topic, rec.partition, rec.offset, rec.ts, key, value)


class _ReplayPartition(StatefulSourcePartition[TimedBatch[RawRecord], tuple]):
    def __init__(self, path: Path, batch_size: int, resume: tuple | None) -> None:
        self.path = path
        self.batch_size = batch_size
        if resume is None:
            self.position, self.line_number = 0, 0
            known = scan_partitions(path)
            self.progress = PartitionProgress(known)
            log.info("replay %s: %d Kafka partitions in the file", path, len(known))
        else:
            self.position, self.line_number, state = resume
            self.progress = PartitionProgress(state=state)
            log.info("replay %s: resuming at line %d", path, self.line_number)
        self.file = path.open("rb")
        self.file.seek(self.position)
        self.done = False

    def next_batch(self) -> list[TimedBatch[RawRecord]]:
        if self.done:
            raise StopIteration
        records: list[RawRecord] = []
        times: list[int] = []
        marks: list[int] = []
        progress = self.progress
        readline = self.file.readline
        mark = progress.low
        while len(records) < self.batch_size:
            line = readline()
            if not line:
                self.done = True
                break
            self.line_number += 1
            if not line.strip():
                continue
            record = parse_line(line.rstrip(b"\r\n"), self.line_number)
            if record.ts is not None:
                mark = progress.advance((record.topic, record.partition), record.ts)
            records.append(record)
            times.append(record.ts if record.ts is not None else mark)
            marks.append(mark)
        self.position = self.file.tell()
        if self.done:
            log.info("replay %s: end of file after %d lines", self.path, self.line_number)
        return [
            TimedBatch(
                "replay", 1, records, times, marks, END if self.done else progress.low
            )
        ]

    def snapshot(self) -> tuple:
        return (self.position, self.line_number, self.progress.snapshot())

    def close(self) -> None:
        self.file.close()


class ReplaySource(FixedPartitionedSource[TimedBatch[RawRecord], tuple]):
    """One partition: the whole file, read in order."""

    def __init__(self, path: Path, batch_size: int = 2_000) -> None:
        self.path = path
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return ["replay"]

    def build_part(self, step_id: str, for_part: str, resume_state: tuple | None) -> _ReplayPartition:
        return _ReplayPartition(self.path, self.batch_size, resume_state)
