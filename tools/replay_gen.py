"""Write datagen-shaped records as `kcat -C -J` dumps, with chosen event times.

    python -m tools.replay_gen DIR --events 100000 --rate 500 --partitions 4 --jitter-ms 20000

Writes DIR/clickstream.jsonl and DIR/user_clickstream.jsonl. Event times advance
at `rate` events per second from `--start-ms`, with random pauses (`--pause-every`)
and per-record jitter (earlier, never later, by up to `--jitter-ms`), spread over
`--partitions` Kafka partitions. Use it for tests, benchmarks and Spark comparisons.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path

import orjson

from events import datagen


def timestamps(
    n: int,
    rate: float,
    start_ms: int,
    jitter_ms: int,
    pause_every: int,
    pause_ms: int,
    rng: random.Random,
) -> Iterator[int]:
    clock = float(start_ms)
    for i in range(n):
        clock += rng.expovariate(rate) * 1000.0
        if pause_every and i and i % pause_every == 0:
            clock += rng.uniform(0, pause_ms)
        yield int(clock) - (rng.randint(0, jitter_ms) if jitter_ms else 0)


def kcat_line(
    topic: str, partition: int, offset: int, ts: int, key: str | None, payload: bytes | str
) -> bytes:
    text = payload.decode() if isinstance(payload, bytes) else payload
    return orjson.dumps(
        {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "tstype": "create",
            "ts": ts,
            "broker": 1,
            "key": key,
            "payload": text,
        }
    )


def generate(
    out: Path,
    events: int,
    rate: float,
    partitions: int = 1,
    jitter_ms: int = 0,
    start_ms: int = 1_700_000_000_000,
    seed: int = 7,
    pause_every: int = 0,
    pause_ms: int = 0,
    by_partition: bool = False,
) -> None:
    """Write both dumps. `by_partition` orders lines partition by partition, like a backfill."""
    rng = random.Random(seed)
    gen = datagen.ClickGenerator(seed)
    users = {uid: gen.user(uid) for uid in range(1, datagen.MAX_USER_ID + 1)}
    out.mkdir(parents=True, exist_ok=True)
    clicks: list[tuple[int, bytes]] = []
    joined: list[tuple[int, bytes]] = []
    offsets = [0] * partitions
    uoffsets = [0] * partitions
    for ts in timestamps(events, rate, start_ms, jitter_ms, pause_every, pause_ms, rng):
        click = gen.click()
        p = rng.randrange(partitions)
        clicks.append(
            (p, kcat_line("clickstream", p, offsets[p], ts, str(click["ip"]), datagen.dumps(click)))
        )
        offsets[p] += 1
        uid = int(str(click["userid"]))
        value = datagen.enriched(click, users.get(uid))
        joined.append((p, kcat_line("USER_CLICKSTREAM", p, uoffsets[p], ts, str(uid), value)))
        uoffsets[p] += 1
    for name, lines in (("clickstream.jsonl", clicks), ("user_clickstream.jsonl", joined)):
        if by_partition:
            lines = sorted(lines, key=lambda pl: pl[0])
        with (out / name).open("wb") as f:
            for _, line in lines:
                f.write(line + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second of event time")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--jitter-ms", type=int, default=0)
    parser.add_argument("--start-ms", type=int, default=1_700_000_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pause-every", type=int, default=0)
    parser.add_argument("--pause-ms", type=int, default=0)
    parser.add_argument("--by-partition", action="store_true")
    args = parser.parse_args()
    generate(
        args.out,
        args.events,
        args.rate,
        args.partitions,
        args.jitter_ms,
        args.start_ms,
        args.seed,
        args.pause_every,
        args.pause_ms,
        args.by_partition,
    )
    print(f"wrote {args.events} records to {args.out}/clickstream.jsonl and user_clickstream.jsonl")


if __name__ == "__main__":
    main()
