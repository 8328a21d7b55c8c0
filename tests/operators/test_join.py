"""lookup_join: the latest right record as of the left event's time, misses, recovery."""

from __future__ import annotations

from typing import NamedTuple

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from operators.batches import END, TimedBatch
from operators.join import LEFT, RIGHT, Joined, _JoinLogic, _SideMsg, lookup_join


class Click(NamedTuple):
    user: int
    ts: int


class User(NamedTuple):
    id: int
    name: str
    ts: int


def _batches(part: str, events, stamp) -> list[TimedBatch]:
    times = [stamp(e) for e in events]
    marks = [max(times[: i + 1]) for i in range(len(times))]
    return [
        TimedBatch(part, 1, list(events), times, marks, marks[-1] if marks else -1),
        TimedBatch(part, 1, progress=END),
    ]


def test_join_as_of_event_time_with_misses(entry_point):
    users = [User(1, "ann", 10), User(2, "bob", 10), User(1, "ann-renamed", 50)]
    clicks = [Click(1, 20), Click(1, 60), Click(2, 5), Click(3, 30), Click(1, 50)]
    flow = Dataflow("join")
    left = op.input("clicks", flow, TestingSource(_batches("c", clicks, lambda c: c.ts)))
    right = op.input("users", flow, TestingSource(_batches("u", users, lambda u: u.ts)))
    out: list[list[Joined]] = []
    joined = lookup_join("join", left, right, lambda c: c.user, lambda u: u.id, shards=3)
    op.output("out", joined, TestingSink(out))
    entry_point(flow)
    got = sorted(
        (j.left.user, j.time, j.right.name if j.right else None) for batch in out for j in batch
    )
    assert got == [
        (1, 20, "ann"),
        (1, 50, "ann-renamed"),
        (1, 60, "ann-renamed"),
        (2, 5, None),
        (3, 30, None),
    ]


def test_user_table_and_waiting_clicks_survive_a_restart():
    logic = _JoinLogic(None)
    logic.on_batch(
        [
            _SideMsg(RIGHT, "u", 1, [(10, 1, "ann", ("users", 0, 3))], 10, False),
            # waits for the users' progress to pass 15
            _SideMsg(LEFT, "c", 1, [(15, 1, "early click", ("clicks", 2, 40))], 15, False),
        ]
    )
    restored = _JoinLogic(logic.snapshot())
    out, _ = restored.on_batch(
        [
            _SideMsg(LEFT, "c", 1, [(20, 1, "click", ("clicks", 2, 41))], 20, False),
            _SideMsg(RIGHT, "u", 1, [], END, False),
            _SideMsg(LEFT, "c", 1, [], END, False),
        ]
    )
    assert [(j.left, j.right, j.origin) for batch in out for j in batch] == [
        ("early click", "ann", ("clicks", 2, 40)),
        ("click", "ann", ("clicks", 2, 41)),
    ]


def test_a_store_from_before_origins_restores_without_them():
    logic = _JoinLogic(None)
    logic.on_batch([_SideMsg(LEFT, "c", 1, [(15, 1, "click", ("clicks", 0, 9))], 15, False)])
    right, left, table, pending, seq = logic.snapshot()
    old = (right, left, table, [p[:5] for p in pending], seq)
    out, _ = _JoinLogic(old).on_batch(
        [_SideMsg(RIGHT, "u", 1, [], END, False), _SideMsg(LEFT, "c", 1, [], END, False)]
    )
    assert [(j.left, j.right, j.origin) for batch in out for j in batch] == [("click", None, None)]


HOUR = 3_600_000


def test_an_idle_users_side_holds_the_clicks_back_no_longer():
    # users written an hour before the clicks, then nothing: once every users partition
    # is idle, a tailing run joins each click as it comes (a chaos run's enrich held
    # them all back, the users' progress creeping on from an hour ago)
    logic = _JoinLogic(None)
    out, _ = logic.on_batch(
        [
            _SideMsg(RIGHT, "u0", 2, [(0, 1, "ann", None)], 0, False),
            _SideMsg(RIGHT, "u1", 2, [], 0, False),
            _SideMsg(LEFT, "c", 1, [(HOUR, 1, "click", None)], HOUR, False),
        ]
    )
    assert out == [], "users still being read: the click waits"
    out, _ = logic.on_batch(
        [
            _SideMsg(RIGHT, "u0", 2, [], 10_000, True),
            _SideMsg(RIGHT, "u1", 2, [], 10_000, True),
            _SideMsg(LEFT, "c", 1, [(HOUR + 1, 2, "other click", None)], HOUR + 1, False),
        ]
    )
    assert [(j.left, j.right) for batch in out for j in batch] == [
        ("click", "ann"),
        ("other click", None),
    ]
