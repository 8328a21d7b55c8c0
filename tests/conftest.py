"""Shared fixtures. `entry_point` runs a flow on one worker and on a two-worker cluster,
as Bytewax's own tests do, so every flow is checked both ways."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main, run_main

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

EntryPoint = Callable[[Dataflow], None]


def _cluster_two_workers(flow: Dataflow) -> None:
    cluster_main(flow, addresses=[], proc_id=0, worker_count_per_proc=2)


@pytest.fixture(params=["run_main", "cluster_main-2workers"])
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    return run_main if request.param == "run_main" else _cluster_two_workers
