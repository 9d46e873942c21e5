"""A held-out evaluation split finer than its subgroups: which tasks one step adapts to.

`metarl evaluate` reports each subgroup's mean (AntGoal: all tasks; the Vel ids: two halves
of the target speeds). This splits an evaluation's per-task returns into bins of the task's
parameter: AntGoal's goals by 45-degree sectors of their angle (0 = +x, counter-clockwise),
the Vel ids' targets by bins of ``--width`` in speed (default 0.25; HalfCheetahVel's
targets are in [0, 2], AntVel's in [0, 3]). Per bin: the mean return before adaptation,
the mean gain of each step over step 0, and, where the evaluation has the baselines, the
share of the pretrained -> oracle gap that step 1 closes (the subgroup tables' definition).
Writes ``breakdown.md`` beside each ``results.json``.

    .venv/bin/python experiments/task_breakdown.py \\
        experiments/results/ant-goal/seed0/evaluation/results.json
    .venv/bin/python experiments/task_breakdown.py \\
        experiments/results/halfcheetah-vel/seed0/evaluation/results.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from metarl.evaluation import by_subgroup

SECTOR_DEG = 45


def _binner(task: dict, width: float) -> tuple[str, Callable[[dict], tuple[float, str]]]:
    """The bins' column title and a task -> (sort key, bin label) function."""
    if "goal" in task:

        def sector(t: dict) -> tuple[float, str]:
            k = int((math.degrees(math.atan2(t["goal"][1], t["goal"][0])) % 360) // SECTOR_DEG)
            return k, f"{k * SECTOR_DEG}-{(k + 1) * SECTOR_DEG}"

        return "goal angle (deg)", sector
    if "velocity" in task:

        def speed(t: dict) -> tuple[float, str]:
            k = int(t["velocity"] // width)
            return k, f"{k * width:g}-{(k + 1) * width:g}"

        return "target velocity", speed
    raise KeyError("the tasks have neither a goal nor a velocity")


def breakdown_table(results: dict, width: float = 0.25) -> str:
    """A markdown table: one row per bin of the task parameter, then all tasks."""
    title, binner = _binner(results["tasks"][0], width)
    keys, labels = zip(*(binner(task) for task in results["tasks"]), strict=True)
    order = dict(sorted(zip(keys, labels, strict=True)))  # bin label by key, in key order
    groups = by_subgroup(results, list(labels))
    groups["all"] = by_subgroup(results, ["all"] * len(labels))["all"]
    steps = sorted(results["metarl"], key=int)
    gap = len(steps) > 1 and "gap_closed" in groups["all"]
    head = [title, "tasks", "step 0", *(f"gain, step {s}" for s in steps[1:])]
    if gap:
        head.append("gap closed, step 1")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in [*order.values(), "all"]:
        group = groups[label]
        metarl = {s: group["metarl"][s]["mean"] for s in steps}
        cells = [label, str(len(group["tasks"])), f"{metarl['0']:.1f}"]
        cells += [f"{metarl[s] - metarl['0']:.1f}" for s in steps[1:]]
        if gap:
            share = group["gap_closed"]["1"]
            cells.append("-" if share is None else f"{share:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json of `metarl evaluate`")
    parser.add_argument("--width", type=float, default=0.25, help="velocity bin width")
    args = parser.parse_args(argv)
    if not args.width > 0:
        parser.error(f"--width must be positive, got {args.width}")
    for path in args.results:
        try:
            results = json.loads(path.read_text())
            table = breakdown_table(results, args.width)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            print(
                f"error: {path} is not a results.json of `metarl evaluate` on a goal or "
                f"velocity task distribution ({e})",
                file=sys.stderr,
            )
            return 2
        title = f"{results['env']}, iteration {results['iteration']}, {len(results['tasks'])} tasks"
        out = path.with_name("breakdown.md")
        out.write_text(f"# {title}\n\n{table}")
        print(f"{title} ({out}):\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
