"""A dataflow whose two sink partitions fail as they close, for `tests/test_process.py`:
with `GUARDED=1` their close() raises inside `process.stop_on_error`, otherwise bare."""

import os
from contextlib import nullcontext

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from bytewax.testing import TestingSource

from process import stop_on_error


class _Part(StatefulSinkPartition):
    def write_batch(self, items: list) -> None:
        pass

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        guard = stop_on_error("sink p: closing") if os.environ.get("GUARDED") else nullcontext()
        with guard:
            raise RuntimeError("producing to T failed: Local: Message timed out")


class _Sink(FixedPartitionedSink):
    def list_parts(self) -> list[str]:
        return ["p", "q"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Part:
        return _Part()


flow = Dataflow("closing_sink")
keyed = op.key_on("k", op.input("in", flow, TestingSource(range(4))), lambda x: "pq"[x % 2])
op.output("out", keyed, _Sink())
