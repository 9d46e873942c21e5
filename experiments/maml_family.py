"""The MAML family on Navigation2D at equal environment samples.

Each method meta-trains ``experiments/configs/navigation2d.yaml`` with its
overrides (see ``METHODS``) into
``experiments/results/maml-family/<method>-seed<S>/``. Every method gets the
same budget of environment steps: ``--iterations N`` is N iterations of a
one-step method (two samples per iteration: before and after adaptation), and a
method with K inner steps (K + 1 samples per iteration) gets ``2N // (K + 1)``
iterations. A run that exists is continued with ``--resume``, so the script can
be stopped and rerun. ``summary.csv`` and ``summary.md`` beside the runs give
each run's, and each method's mean over seeds, post-adaptation return averaged
over blocks of equal environment steps, and the environment steps it used.

    .venv/bin/python experiments/maml_family.py                      # all methods, seeds 0-2
    .venv/bin/python experiments/maml_family.py reptile imaml --seeds 0 --iterations 50
    .venv/bin/python experiments/maml_family.py --summary-only
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from runs import train_run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results" / "maml-family"
CONFIG = ROOT / "experiments" / "configs" / "navigation2d.yaml"

TWO_STEPS = ["adaptation.steps=2", "adaptation.lr=[0.1,0.1]"]
# name -> (inner steps, overrides of the shipped config). MAML++'s multi-step loss is
# annealed over 20 iterations, fixed so that a run continued with more iterations is the
# same config (MAML++ anneals over 10-15 of its 100-150 epochs).
METHODS: dict[str, tuple[int, list[str]]] = {
    "maml": (1, []),
    "maml-2step": (2, TWO_STEPS),
    "maml++": (
        2,
        [*TWO_STEPS, "adaptation.learn_lr=true", "adaptation.multi_step_loss_iterations=20"],
    ),
    # Reptile with one step is joint training (Nichol et al. 2018, section 5): two steps.
    "reptile": (2, [*TWO_STEPS, "meta_learner=reptile"]),
    "imaml": (1, ["meta_learner=imaml"]),
    "emaml": (1, ["objective=emaml"]),
}


def method_iterations(name: str, iterations: int) -> int:
    """The iterations of ``name`` that sample as many env steps as ``iterations`` one-step ones."""
    steps, _ = METHODS[name]
    return max(1, 2 * iterations // (steps + 1))


def run(name: str, seed: int, iterations: int, extra: list[str], results: Path) -> Path:
    run_dir = results / f"{name}-seed{seed}"
    overrides = [*METHODS[name][1], *extra]
    return train_run(CONFIG, run_dir, seed, method_iterations(name, iterations), overrides)


def block_means(rows: list[dict[str, str]], budget: float, blocks: int) -> list[float | None]:
    """Mean post-adaptation return of the iterations whose env steps end in each of ``blocks``
    equal shares of ``budget`` (``None`` for a share no iteration ended in)."""
    means: list[float | None] = []
    for b in range(blocks):
        low, high = b * budget / blocks, (b + 1) * budget / blocks
        values = [
            float(r["return_post"]) for r in rows if low < float(r["env_steps"]) <= high + 1e-9
        ]
        means.append(sum(values) / len(values) if values else None)
    return means


def summarise(results: Path, blocks: int) -> str:
    runs = []
    for path in sorted(results.glob("*-seed*/progress.csv")):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            runs.append((path.parent.name, rows))
    # The budget: the most env steps any run used (every method's is the same up to rounding).
    budget = max((float(rows[-1]["env_steps"]) for _, rows in runs), default=0.0)
    table = []
    for name, rows in runs:
        method = name.rsplit("-seed", 1)[0]
        table.append(
            {
                "run": name,
                "method": method,
                "steps": METHODS[method][0] if method in METHODS else "",
                "iterations": len(rows),
                "env_steps": int(float(rows[-1]["env_steps"])),
                "blocks": block_means(rows, budget, blocks),
            }
        )
    methods: dict[str, list[dict]] = {}
    for row in table:
        methods.setdefault(row["method"], []).append(row)
    for method, group in methods.items():
        if len(group) < 2:
            continue
        per_block = [
            [r["blocks"][b] for r in group if r["blocks"][b] is not None] for b in range(blocks)
        ]
        table.append(
            {
                "run": f"{method}: mean of {len(group)} seeds",
                "method": method,
                "steps": group[0]["steps"],
                "iterations": sum(r["iterations"] for r in group) / len(group),
                "env_steps": sum(r["env_steps"] for r in group) / len(group),
                "blocks": [sum(v) / len(v) if v else None for v in per_block],
            }
        )
    names = [f"post_block{b + 1}" for b in range(blocks)]
    with (results / "summary.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["run", "method", "inner_steps", "iterations", "env_steps", *names])
        for r in table:
            cells = ["" if v is None else f"{v:.2f}" for v in r["blocks"]]
            out.writerow(
                [r["run"], r["method"], r["steps"], r["iterations"], r["env_steps"], *cells]
            )
    header = "| run | inner steps | iterations | env steps | " + " | ".join(
        f"block {b + 1}" for b in range(blocks)
    )
    lines = [header + " |", "|---|---|---|---|" + "---|" * blocks]
    for r in table:
        cells = ["" if v is None else f"{v:.1f}" for v in r["blocks"]]
        lines.append(
            f"| {r['run']} | {r['steps']} | {r['iterations']:g} | {r['env_steps']:,.0f} | "
            + " | ".join(cells)
            + " |"
        )
    text = (
        f"Navigation2D, post-adaptation return averaged over {blocks} blocks of equal "
        f"environment steps (of {budget:,.0f}).\n\n" + "\n".join(lines) + "\n"
    )
    (results / "summary.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="*", help=f"default: all of {list(METHODS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--iterations",
        type=int,
        default=100,
        help="the budget, in iterations of a one-step method (default 100)",
    )
    parser.add_argument("--blocks", type=int, default=5, help="blocks of the summary (default 5)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every method (e.g. tasks_per_batch=10)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"default {RESULTS}")
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {list(METHODS)}")
    if args.iterations < 1 or args.blocks < 1:
        parser.error("--iterations and --blocks must be at least 1")
    if not args.summary_only:
        for name in args.methods or list(METHODS):
            for seed in args.seeds:
                run(name, seed, args.iterations, args.sets, args.results)
                summarise(args.results, args.blocks)
    print(summarise(args.results, args.blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
