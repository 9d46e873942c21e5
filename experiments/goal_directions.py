"""AntGoal's held-out adaptation split by the direction of the goal.

`metarl evaluate` reports AntGoal as one group (its tasks have no natural halves); this
splits an evaluation's per-task returns into eight 45-degree sectors of the goal's angle
(0 = +x, counter-clockwise) and gives, per sector, the mean return before adaptation and
the mean gain of each step over step 0. It shows which goal directions one step has
learned to reach. Writes ``directions.md`` beside each ``results.json``.

    .venv/bin/python experiments/goal_directions.py \\
        experiments/results/ant-goal/seed0/evaluation*/results.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SECTOR_DEG = 45


def sector_table(results: dict) -> str:
    """A markdown table: one row per sector of goal angle, then all tasks."""
    goals = [task["goal"] for task in results["tasks"]]
    steps = sorted(results["metarl"], key=int)
    returns = {s: results["metarl"][s]["per_task"] for s in steps}
    sectors: dict[int, list[int]] = {}
    for i, (x, y) in enumerate(goals):
        angle = math.degrees(math.atan2(y, x)) % 360
        sectors.setdefault(int(angle // SECTOR_DEG), []).append(i)
    gains = [f"gain, step {s}" for s in steps[1:]]
    head = ["goal angle (deg)", "tasks", "step 0", *gains]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, tasks: list[int]) -> str:
        before = [returns["0"][i] for i in tasks]
        cells = [label, str(len(tasks)), f"{sum(before) / len(tasks):.1f}"]
        for s in steps[1:]:
            gain = [returns[s][i] - returns["0"][i] for i in tasks]
            cells.append(f"{sum(gain) / len(tasks):.1f}")
        return "| " + " | ".join(cells) + " |"

    for k in sorted(sectors):
        lines.append(row(f"{k * SECTOR_DEG}-{(k + 1) * SECTOR_DEG}", sectors[k]))
    lines.append(row("all", list(range(len(goals)))))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json of `metarl evaluate`")
    args = parser.parse_args(argv)
    for path in args.results:
        try:
            results = json.loads(path.read_text())
            if "goal" not in results["tasks"][0]:
                raise KeyError("goal")
        except (OSError, ValueError, KeyError, IndexError) as e:
            print(
                f"error: {path} is not an AntGoal results.json of `metarl evaluate` ({e})",
                file=sys.stderr,
            )
            return 2
        table = sector_table(results)
        title = f"{results['env']}, iteration {results['iteration']}, {len(results['tasks'])} tasks"
        out = path.with_name("directions.md")
        out.write_text(f"# {title}\n\n{table}")
        print(f"{title} ({out}):\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
