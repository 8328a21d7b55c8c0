"""A chaos run's timeline as one SVG: a bar per fault (by kind, start to end), and under
them the clicks produced per second and each dataflow's lag (records its consumer group
has not committed), from `faults.jsonl` and `timeline.jsonl`.

    python -m tools.chaos.report RUN_DIR [OUT.svg]     (default RUN_DIR/timeline.svg)
"""

from __future__ import annotations

import itertools
import json
import sys
from html import escape
from pathlib import Path

from tools.chaos.nemesis import KINDS

WIDTH, LEFT, ROW = 900, 150, 16
COLORS = {"produced": "#333333", "lag_enrich": "#1f77b4", "lag_clickstream": "#d62728",
          "lag_user_clickstream": "#2ca02c"}  # fmt: skip


def timeline_svg(run_dir: Path) -> str:
    faults = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines()]
    end = max([s["t"] for s in samples] + [f["end_s"] for f in faults] + [1.0])

    def x(t: float) -> float:
        return LEFT + (WIDTH - LEFT - 10) * t / end

    out = []
    kinds = [k for k in KINDS if any(f["kind"] == k for f in faults)]
    for i, kind in enumerate(kinds):
        y = 10 + i * ROW
        out.append(f'<text x="{LEFT - 6}" y="{y + 11}" text-anchor="end">{kind}</text>')
        for f in (f for f in faults if f["kind"] == kind):
            w = max(2.0, x(f["end_s"]) - x(f["start_s"]))
            out.append(
                f'<rect x="{x(f["start_s"]):.1f}" y="{y}" width="{w:.1f}" height="{ROW - 4}" '
                f'fill="#ff7f0e"><title>{escape(f["detail"])}</title></rect>'
            )
    top = 20 + len(kinds) * ROW
    height = 200
    rates = [(b["t"], (b["produced"] - a["produced"]) / max(b["t"] - a["t"], 1e-9))
             for a, b in itertools.pairwise(samples)]  # fmt: skip
    series = {"produced": rates}
    for name in ("lag_enrich", "lag_clickstream", "lag_user_clickstream"):
        series[name] = [(s["t"], s[name]) for s in samples if s.get(name) is not None]
    peak = max([v for points in series.values() for _, v in points] + [1.0])
    for i, (name, points) in enumerate(series.items()):
        line = " ".join(f"{x(t):.1f},{top + height - height * v / peak:.1f}" for t, v in points)
        out.append(f'<polyline fill="none" stroke="{COLORS[name]}" points="{line}"/>')
        label = "clicks produced / s" if name == "produced" else f"{name[4:]} lag (records)"
        out.append(f'<text x="{LEFT + 10 + 200 * i}" y="{top + height + 30}" '
                   f'fill="{COLORS[name]}">{label}</text>')  # fmt: skip
    axis = top + height
    out.append(f'<line x1="{LEFT}" y1="{axis}" x2="{WIDTH - 10}" y2="{axis}" stroke="#999"/>')
    for t in range(0, int(end) + 1, 30):
        out.append(f'<text x="{x(t):.1f}" y="{axis + 14}" text-anchor="middle">{t} s</text>')
    out.append(f'<text x="{LEFT - 6}" y="{top + 10}" text-anchor="end">{peak:,.0f}</text>')
    total = axis + 40
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total}" '
        f'font-family="sans-serif" font-size="11">\n' + "\n".join(out) + "\n</svg>\n"
    )


def main() -> None:
    run_dir = Path(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else run_dir / "timeline.svg"
    target.write_text(timeline_svg(run_dir))
    print(target)


if __name__ == "__main__":
    main()
