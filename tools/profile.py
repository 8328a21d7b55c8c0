"""`just profile`: where a dataflow's CPU goes, sampled by py-spy with `--native` (Bytewax's
Rust and timely too), as a flame graph and a table of steps and functions.

    python -m tools.profile [--flow clickstream] [--records 300000] [--kafka] [--out profile]

Generates a replay of `--records` records (4 partitions, the datagen's shapes), or with
`--kafka` produces it to a local broker (started and stopped here unless
`KAFKA_BOOTSTRAP_SERVERS` is set) and reads it bounded; then runs
`python -m bytewax.run dataflows.FLOW:flow` under `py-spy record` twice: once for the
flame graph (`OUT/FLOW.svg`), once for the collapsed stacks the table is made from
(`OUT/FLOW.raw.txt`, `OUT/FLOW.md`). py-spy needs to be allowed to trace the process
(root, or `kernel.yama.ptrace_scope=0`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY_SPY = Path(sys.executable).parent / "py-spy"

# The step a sample belongs to: the innermost frame of ours decides (file path parts).
STEPS = [
    ("sources/", "source (read, envelope, progress)"),
    ("events/", "parse (payloads to events)"),
    ("operators/windows/routing.py", "map-side combine"),
    ("operators/windows/", "window state and emit"),
    ("operators/aggregates.py", "window state and emit"),
    ("operators/", "other operators"),
    ("sinks/", "sink"),
    ("dataflows/", "rows out of windows"),
    ("monitoring/", "metrics and progress"),
    ("ownership/", "lease and fencing"),
]


def step_of(frames: list[str]) -> str:
    """The step of one sampled stack (outermost frame first)."""
    if any("_find_and_load" in f or "<frozen importlib" in f for f in frames):
        return "start-up (imports)"
    for frame in reversed(frames):
        where = frame[frame.rfind("(") + 1 :]
        if "/site-packages/" in where or "/lib/python3" in where:
            continue
        for part, step in STEPS:
            if f"/{part}" in f"/{where}" or where.startswith(part):
                return step
    if any("bytewax" in f or "timely" in f for f in frames):
        return "Bytewax and timely"
    return "other (interpreter, libraries, idle)"


def read_raw(path: Path) -> Iterator[tuple[list[str], int]]:
    """py-spy's raw (collapsed) stacks: `frame;frame;... count` a line."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


WAITING = ("PyThread_acquire_lock_timed", "Event.wait", "Condition.wait", "epoll_wait", "nanosleep")


def table(raw: Path, top: int = 25) -> str:
    """Markdown: the share of each step among the samples inside the worker loop (as
    `py-spy` sees it: imports and threads that wait are counted apart), then the
    functions with the most samples of their own and in all (each stack counted once
    per function)."""
    steps: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    apart: Counter[str] = Counter()
    for frames, n in read_raw(raw):
        if any(w in frames[-1] or w in f for f in frames[-3:] for w in WAITING):
            apart["a thread waiting (no CPU)"] += n
            continue
        step = step_of(frames)
        if step.startswith("start-up"):
            # py-spy --native reads each new library's symbols: a profiled start is slower
            apart["start-up (imports; slowed by the profiler, see `just bench`)"] += n
            continue
        if not any("worker_main" in f for f in frames):
            apart["outside the worker loop (main thread, other threads)"] += n
            continue
        steps[step] += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    total = sum(steps.values())
    if not total:
        return "no samples in the worker loop\n"
    lines = [f"{total:,} samples in the worker loop", "", "| step | share |", "|---|---:|"]
    lines += [f"| {s} | {n / total:.1%} |" for s, n in steps.most_common()]
    lines += ["", "Samples counted apart:", ""]
    lines += [f"- {what}: {n:,}" for what, n in apart.most_common()]
    lines += ["", "| function (own samples) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {n / total:.1%} |" for f, n in own.most_common(top)]
    lines += ["", "| function (in the stack) | share |", "|---|---:|"]
    # the frames every sample has (the run's own chain down to the worker loop) say nothing
    shared = [(f, n) for f, n in inclusive.most_common() if n < 0.95 * total]
    lines += [f"| `{f}` | {n / total:.1%} |" for f, n in shared[:top]]
    return "\n".join(lines) + "\n"


@contextmanager
def kafka_input(dump: Path, tmp: Path) -> Iterator[dict[str, str]]:
    """The dump produced to topics of a local broker; the settings that read them."""
    from infra import kafka_broker
    from tools.produce import replay_to_new_topics

    broker = (
        None if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else kafka_broker.start(tmp / "kafka")
    )
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"] if broker is None else broker.bootstrap
    try:
        kafka = replay_to_new_topics(bootstrap, dump, "profile")
        yield {
            "CLICKSTREAM_SOURCE": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_STOP_AT_END": "true",
            "CLICKSTREAM_TOPIC": kafka.clickstream_topic,
            "USER_CLICKSTREAM_TOPIC": kafka.user_clickstream_topic,
        }
    finally:
        if broker is not None:
            broker.stop()


def record(flow: str, env: dict[str, str], outs: list[Path], fmt: str, rate: int) -> None:
    """One run under py-spy: one process, or a cluster of `len(outs)` processes, each
    recorded into its own file."""
    from infra.cluster import local_cluster

    run = [sys.executable, "-m", "bytewax.run", f"dataflows.{flow}:flow"]
    procs = []
    for out, process in zip(outs, local_cluster(run, len(outs)), strict=True):
        command = [str(PY_SPY), "record", "--native", "-r", str(rate), "-f", fmt, "-o", str(out)]
        procs.append(
            subprocess.Popen(
                [*command, "--", *process],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"error: py-spy record failed: {err.strip()[-1500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--flow", default="clickstream", choices=["clickstream", "user_clickstream"]
    )
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--kafka", action="store_true", help="read from a local broker")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--processes", type=int, default=1, help="a cluster of N processes")
    parser.add_argument("--out", type=Path, default=Path("profile"))
    args = parser.parse_args()
    if not PY_SPY.exists():
        raise SystemExit("error: py-spy is missing: run `just setup`")
    from tools.replay_gen import generate

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        dump = tmp / "dump"
        generate(dump, events=args.records, rate=500, partitions=4, jitter_ms=20_000, seed=17)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM", "KAFKA"))}
        names = (
            [args.flow]
            if args.processes == 1
            else [f"{args.flow}-p{i}" for i in range(args.processes)]
        )
        with kafka_input(dump, tmp) if args.kafka else _replay(dump) as source:
            for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".raw.txt")):
                env = {**base, **source, "CLICKSTREAM_OUTPUT": str(tmp / f"out-{fmt}")}
                record(args.flow, env, [args.out / f"{n}{suffix}" for n in names], fmt, args.rate)
    where = "a local broker, bounded" if args.kafka else "a replay file"
    run = "1 worker" if args.processes == 1 else f"{args.processes} processes"
    for name in names:
        text = f"# `{name}`, {args.records:,} records from {where}, {run}\n\n"
        text += table(args.out / f"{name}.raw.txt")
        (args.out / f"{name}.md").write_text(text)
        print(text)
        print(f"flame graph: {args.out / f'{name}.svg'}")


@contextmanager
def _replay(dump: Path) -> Iterator[dict[str, str]]:
    yield {"CLICKSTREAM_SOURCE": f"replay:{dump}"}


if __name__ == "__main__":
    main()
