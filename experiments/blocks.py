"""Block means of a learning curve: the per-block figures the README's tables and notes give.

A run's ``progress.csv`` is cut into blocks of ``--every`` iterations (default 25) and each
return column (``return_pre``, ``return_post`` and their per-subgroup columns, or the
``--columns`` named) averaged per block, blanks skipped. A baseline's ``*.monitor.csv``
(``metarl baseline``'s learning curve) is cut into blocks of ``--every`` environment steps
(default 50,000) by the steps done when each episode ended, and its episode returns averaged.

    .venv/bin/python experiments/blocks.py experiments/results/ant-goal/seed0/progress.csv
    .venv/bin/python experiments/blocks.py experiments/results/ant-vel/baselines/oracle.monitor.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from metarl.plotting import read_curve


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.1f}" if values else ""


def progress_blocks(path: Path, every: int, columns: list[str] | None) -> list[list[str]]:
    """Rows of [first-last iteration, mean of each column] per block of ``every`` iterations."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "iteration" not in rows[0]:
        raise ValueError("not a progress.csv of `metarl train` (no iteration column)")
    names = columns or [c for c in rows[0] if c.startswith(("return_pre", "return_post"))]
    missing = [c for c in names if c not in rows[0]]
    if missing:
        raise ValueError(f"no column {', '.join(missing)}; it has {', '.join(rows[0])}")
    blocks: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        blocks.setdefault(int(row["iteration"]) // every, []).append(row)
    table = [["iterations", *names]]
    for _, block in sorted(blocks.items()):
        first, last = int(block[0]["iteration"]), int(block[-1]["iteration"])
        cells = [_mean([float(r[c]) for r in block if r[c] != ""]) for c in names]
        table.append([f"{first}-{last}", *cells])
    return table


def monitor_blocks(path: Path, every: int) -> list[list[str]]:
    """Rows of [steps range, episodes, mean return] per block of ``every`` env steps."""
    steps, returns = read_curve(path)
    blocks: dict[int, list[float]] = {}
    for done, episode_return in zip(steps, returns, strict=True):
        blocks.setdefault(int(done - 1) // every, []).append(float(episode_return))
    table = [["env steps", "episodes", "mean return"]]
    for k, block in sorted(blocks.items()):
        table.append([f"{k * every}-{(k + 1) * every}", str(len(block)), _mean(block)])
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("curve", type=Path, help="progress.csv or *.monitor.csv")
    parser.add_argument("--every", type=int, help="block size: iterations or env steps")
    parser.add_argument("--columns", nargs="+", help="progress.csv columns (default: returns)")
    args = parser.parse_args(argv)
    if args.every is not None and args.every < 1:
        parser.error(f"--every must be at least 1, got {args.every}")
    monitor = args.curve.name.endswith(".monitor.csv")
    try:
        if monitor:
            table = monitor_blocks(args.curve, args.every or 50_000)
        else:
            table = progress_blocks(args.curve, args.every or 25, args.columns)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args.curve}: {e}", file=sys.stderr)
        return 2
    print("| " + " | ".join(table[0]) + " |")
    print("|" + "---|" * len(table[0]))
    for row in table[1:]:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
