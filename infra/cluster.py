"""A Bytewax cluster on this host, for tests, benchmarks and profiles."""

from __future__ import annotations

from infra.server import free_port


def local_cluster(command: list[str], processes: int) -> list[list[str]]:
    """`command` (a `python -m bytewax.run ...` line) for each process of a cluster of
    `processes` on localhost, with its `-i` and the shared `-a`; one process: as it is."""
    if processes == 1:
        return [command]
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    return [[*command, "-i", str(i), "-a", addresses] for i in range(processes)]
