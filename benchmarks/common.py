"""What the benchmarks share: a sink that only counts, and how results are recorded."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

ROOT = Path(__file__).resolve().parents[1]


def start_dataflows(env: dict[str, str]) -> list[subprocess.Popen]:
    """Both table dataflows as `python -m bytewax.run` processes with `env`, output discarded."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"dataflows.{flow}:flow"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for flow in ("clickstream", "user_clickstream")
    ]


Record = Callable[[str, str, float, str, float], None]
"""`record(group, name, rate, baseline, baseline_rate)`: one row of the results."""


class _Count(StatelessSinkPartition[Any]):
    def __init__(self, box: list[int]) -> None:
        self.box = box

    def write_batch(self, items: list[Any]) -> None:
        for item in items:
            value = item[1] if isinstance(item, tuple) and len(item) == 2 else item
            self.box[0] += len(value) if isinstance(value, list) else 1


class CountingSink(DynamicSink[Any]):
    """Counts output rows; the cheapest possible sink, the same for both sides."""

    def __init__(self) -> None:
        self.box = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
        return _Count(self.box)
