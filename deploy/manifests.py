"""The Kubernetes manifests of every dataflow, from one template.

    python -m deploy.manifests          # writes deploy/kubernetes/<name>.yaml
    python -m deploy.manifests --check  # exit 1 when a written file is out of date

`deploy/kubernetes/dataflow.yaml.in` holds what every dataflow's StatefulSet, headless
Service, recovery volume and PodDisruptionBudget share; `MANIFESTS` holds what differs:
the Kubernetes name (no underscores), the dataflow, and the memory its soak measured.
"""

from __future__ import annotations

import sys
from pathlib import Path
from string import Template
from typing import NamedTuple

FOLDER = Path(__file__).parent / "kubernetes"
TEMPLATE = FOLDER / "dataflow.yaml.in"


class Manifest(NamedTuple):
    name: str  # the StatefulSet's and Service's name: its pods are name-0, name-1, ...
    dataflow: str
    rss_mib: int  # the soak's peak RSS (docs/performance.md, "Bounded memory")

    def text(self) -> str:
        # requested: the peak and a quarter; the limit: a half more than the peak
        request = -(-self.rss_mib * 5 // 4 // 64) * 64
        limit = -(-self.rss_mib * 3 // 2 // 64) * 64
        return Template(TEMPLATE.read_text()).substitute(
            name=self.name, dataflow=self.dataflow, rss=self.rss_mib, request=request, limit=limit
        )


MANIFESTS = [
    Manifest("clickstream", "clickstream", 328),
    Manifest("user-clickstream", "user_clickstream", 411),
    Manifest("enrich", "enrich", 608),
]


def main(argv: list[str]) -> int:
    stale = []
    for manifest in MANIFESTS:
        path = FOLDER / f"{manifest.name}.yaml"
        text = manifest.text()
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m deploy.manifests", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
