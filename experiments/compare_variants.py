"""The MAML family compared at equal environment samples, on held-out tasks.

Every method of ``METHODS`` meta-trains its config,
``experiments/configs/variants/<env>-<method>.yaml`` (MAML on Navigation2D: its
shipped config), into ``experiments/results/variants/<env>/<method>-seed<S>/``; each
gets the same budget of environment steps: ``--iterations N`` is N iterations of
a one-step method (two samples per iteration: before and after adaptation), and
a method with K inner steps (K + 1 samples per iteration) gets
``2N // (K + 1)`` iterations. A run that exists is continued with ``--resume``,
so the script can be stopped and rerun. Each finished run is then evaluated with
``metarl evaluate`` on 40 held-out tasks (task stream seed 1, 20 episodes per
task and step) after 0..3 inner steps at the run's inner rates.

Beside the runs, ``summary.csv`` / ``summary.md`` give per run and per method
(mean over seeds) the held-out return after 0 to 3 steps with a 95%
confidence interval (over tasks for a run, over seeds for a method), the
training curve's post-adaptation return in blocks of equal env steps, the env
steps and the wall time; ``curves.png`` draws post-adaptation return against
env steps (mean over seeds, min-max band).

    .venv/bin/python experiments/compare_variants.py                         # Navigation2D, seeds 0-2
    .venv/bin/python experiments/compare_variants.py --env halfcheetah-dir --seeds 0
    .venv/bin/python experiments/compare_variants.py reptile imaml --seeds 0 --iterations 50
    .venv/bin/python experiments/compare_variants.py --summary-only
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from runs import ROOT, train_run

from metarl.config import load_config
from metarl.evaluation import confidence_interval
from metarl.plotting import plot_runs, read_progress

RESULTS = ROOT / "experiments" / "results" / "variants"
CONFIGS = ROOT / "experiments" / "configs"
# env -> (shipped config, default budget in one-step iterations). The cheetah's budget is
# the comparison's, not the paper's 500: 9 methods at about 10 s an iteration.
ENVS: dict[str, tuple[Path, int]] = {
    "navigation2d": (CONFIGS / "navigation2d.yaml", 100),
    "halfcheetah-dir": (CONFIGS / "halfcheetah-dir.yaml", 40),
}
EVAL_STEPS = 3

# name -> label. A method's config is experiments/configs/variants/<env>-<name>.yaml: MAML-TRPO's
# config as its base, with the method's keys (see method_config for MAML-TRPO's own).
METHODS: dict[str, str] = {
    "maml": "MAML-TRPO (Finn et al. 2017)",
    "promp": "ProMP: LVC + PPO (Rothfuss et al. 2019)",
    "fo-maml": "FO-MAML",
    "maml-2step": "MAML, 2 inner steps",
    "maml-3step": "MAML, 3 inner steps",
    "maml++": "MAML++, 2 steps (Antoniou et al. 2019)",
    "reptile": "Reptile, 2 steps (Nichol et al. 2018)",
    "imaml": "iMAML (Rajeswaran et al. 2019)",
    "emaml": "E-MAML (Stadie et al. 2018)",
    "cavia": "CAVIA (Zintgraf et al. 2019)",
    "dr-maml": "DR-MAML's tail, half the tasks (Wang et al. 2023)",
}


def method_config(env: str, name: str) -> Path:
    """The config file that ``name`` meta-trains on ``env`` with. MAML-TRPO is Navigation2D's
    shipped config; the cheetah's shipped config meta-trains with ProMP's outer step, so its
    MAML-TRPO has a file of its own, which the cheetah's other methods build on."""
    path = CONFIGS / "variants" / f"{env}-{name}.yaml"
    if name == "maml" and not path.exists():
        return ENVS[env][0]
    return path


def method_iterations(env: str, name: str, iterations: int) -> int:
    """The iterations of ``name`` that sample as many env steps as ``iterations`` one-step ones
    (a method with K inner steps, its config's ``adaptation.steps``, samples K + 1 times)."""
    steps = load_config(method_config(env, name)).adaptation.steps
    return max(1, 2 * iterations // (steps + 1))


def evaluation_path(run_dir: Path) -> Path:
    return run_dir / "evaluation" / "results.json"


def last_evaluation(run_dir: Path, progress: dict) -> dict | None:
    """The run's ``results.json`` if it evaluates the run's last iteration, else ``None``."""
    path = evaluation_path(run_dir)
    if not path.exists():
        return None
    held_out = json.loads(path.read_text())
    done = int(progress["iteration"][-1]) + 1  # results.json counts the iterations done
    return held_out if held_out.get("iteration") == done else None


def evaluate(run_dir: Path) -> Path:
    """``metarl evaluate`` the run's last checkpoint, unless its results already are of it."""
    out = evaluation_path(run_dir)
    if last_evaluation(run_dir, read_progress(run_dir)) is not None:
        return out
    command = [
        str(ROOT / ".venv" / "bin" / "metarl"),
        "evaluate",
        str(run_dir),
        *("--tasks", "40", "--steps", str(EVAL_STEPS), "--episodes", "20", "--seed", "1"),
        *("--out", str(out), "--force"),
    ]
    print(" ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return out


def run(env: str, name: str, seed: int, iterations: int, extra: list[str], results: Path) -> Path:
    run_dir = results / f"{name}-seed{seed}"
    iterations = method_iterations(env, name, iterations)
    train_run(method_config(env, name), run_dir, seed, iterations, extra)
    evaluate(run_dir)
    return run_dir


def block_means(steps: list[float], returns: list[float], budget: float, blocks: int):
    """Mean post-adaptation return of the iterations whose env steps end in each of ``blocks``
    equal shares of ``budget`` (``None`` for a share no iteration ended in)."""
    means: list[float | None] = []
    for b in range(blocks):
        low, high = b * budget / blocks, (b + 1) * budget / blocks
        values = [r for s, r in zip(steps, returns, strict=True) if low < s <= high + 1e-9]
        means.append(sum(values) / len(values) if values else None)
    return means


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _cell(stat: dict | None) -> str:
    """``mean [low, high]`` of a confidence_interval result."""
    if stat is None:
        return ""
    low, high = stat["ci95"]
    if low is None:
        return _fmt(stat["mean"])
    return f"{_fmt(stat['mean'])} [{_fmt(low)}, {_fmt(high)}]"


def summarise(env: str, results: Path, blocks: int) -> str:
    """Write ``summary.csv``, ``summary.md`` and ``curves.png`` of the runs under ``results``."""
    runs = []
    for path in sorted(results.glob("*-seed*/progress.csv")):
        method = path.parent.name.rsplit("-seed", 1)[0]
        if method not in METHODS:
            continue
        progress = read_progress(path.parent)
        runs.append((path.parent, method, progress, last_evaluation(path.parent, progress)))
    if not runs:
        return f"no runs under {results}\n"
    budget = max(float(p["env_steps"][-1]) for _, _, p, _ in runs)
    eval_steps = [str(k) for k in range(EVAL_STEPS + 1)]
    rows = []
    for run_dir, method, progress, held_out in runs:
        evaluated = held_out is not None
        rows.append(
            {
                "run": run_dir.name,
                "method": method,
                "seeds": 1,
                "iterations": len(progress["iteration"]),
                "env_steps": float(progress["env_steps"][-1]),
                "wall_s": float(progress["time_s"][-1]),
                "held_out": {k: held_out["metarl"][k] for k in eval_steps} if evaluated else None,
                # Every subgroup of the task distribution (HalfCheetahDir: forward, backward).
                "subgroups": {
                    name: {k: group["metarl"][k] for k in eval_steps}
                    for name, group in (held_out.get("subgroups") or {}).items()
                }
                if evaluated
                else {},
                "blocks": block_means(
                    list(progress["env_steps"]), list(progress["return_post"]), budget, blocks
                ),
            }
        )
    method_rows = []
    for method in METHODS:
        group = [r for r in rows if r["method"] == method]
        if not group:
            continue
        evaluated = [r for r in group if r["held_out"] is not None]
        held_out = None
        if evaluated:
            # Over seeds: each seed's mean over its held-out tasks is one sample.
            held_out = {
                k: confidence_interval([r["held_out"][k]["mean"] for r in evaluated])
                for k in eval_steps
            }
        subgroups = {
            name: {
                k: confidence_interval([r["subgroups"][name][k]["mean"] for r in evaluated])
                for k in eval_steps
            }
            for name in (evaluated[0]["subgroups"] if evaluated else {})
        }
        per_block = [
            [r["blocks"][b] for r in group if r["blocks"][b] is not None] for b in range(blocks)
        ]
        method_rows.append(
            {
                "run": f"{method} (mean of {len(group)})",
                "method": method,
                "seeds": len(group),
                "evaluated": len(evaluated),
                "iterations": sum(r["iterations"] for r in group) / len(group),
                "env_steps": sum(r["env_steps"] for r in group) / len(group),
                "wall_s": sum(r["wall_s"] for r in group) / len(group),
                "held_out": held_out,
                "subgroups": subgroups,
                "blocks": [sum(v) / len(v) if v else None for v in per_block],
            }
        )

    block_names = [f"post_block{b + 1}" for b in range(blocks)]
    with (results / "summary.csv").open("w", newline="") as f:
        out = csv.writer(f)
        stat_names = [f"{c}_step{k}" for k in eval_steps for c in ("mean", "ci_low", "ci_high")]
        out.writerow(
            [
                "run",
                "method",
                "seeds",
                "iterations",
                "env_steps",
                "wall_s",
                *stat_names,
                *block_names,
            ]
        )
        for r in rows + method_rows:
            stats = []
            for k in eval_steps:
                stat = r["held_out"][k] if r["held_out"] else None
                stats += (
                    ["", "", ""]
                    if stat is None
                    else [_fmt(stat["mean"], 3), *(_fmt(v, 3) for v in stat["ci95"])]
                )
            out.writerow(
                [
                    r["run"],
                    r["method"],
                    r["seeds"],
                    f"{r['iterations']:g}",
                    f"{r['env_steps']:.0f}",
                    f"{r['wall_s']:.0f}",
                    *stats,
                    *(_fmt(v, 2) for v in r["blocks"]),
                ]
            )

    def held_out_row(first: list[str], r: dict) -> str:
        """A table row: the ``first`` cells, then iterations, env steps, wall time, held-out."""
        held = r["held_out"] or {}
        cells = [
            *first,
            f"{r['iterations']:g}",
            f"{r['env_steps']:,.0f}",
            f"{r['wall_s'] / 60:.1f}",
        ]
        return "| " + " | ".join(cells + [_cell(held.get(k)) for k in eval_steps]) + " |"

    steps_header = " | ".join(f"step {k}" for k in eval_steps)
    lines = [
        f"{env}: held-out return (40 tasks, 20 episodes each) after 0 to {EVAL_STEPS} inner "
        f"steps, mean over seeds [95% CI over seeds], at an equal budget of {budget:,.0f} env "
        "steps.",
        "",
        f"| method | seeds | iterations | env steps | wall time (min) | {steps_header} |",
        "|---|---|---|---|---|" + "---|" * len(eval_steps),
    ]
    for r in method_rows:
        seeds = f"{r['seeds']}"
        if r["evaluated"] != r["seeds"]:
            seeds += f" ({r['evaluated']} evaluated)"
        lines.append(held_out_row([METHODS[r["method"]], seeds], r))
    if any(set(r["subgroups"]) - {"all"} for r in method_rows):  # more than the whole
        lines += [
            "",
            "Every subgroup of the task distribution (mean over seeds [95% CI over seeds]):",
            "",
            f"| method | tasks | {steps_header} |",
            "|---|---|" + "---|" * len(eval_steps),
        ]
        for r in method_rows:
            for name, stats in r["subgroups"].items():
                cells = [_cell(stats[k]) for k in eval_steps]
                lines.append(f"| {METHODS[r['method']]} | {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Training curve: post-adaptation return averaged over {blocks} blocks of equal env "
        "steps (mean over seeds).",
        "",
        "| method | " + " | ".join(f"block {b + 1}" for b in range(blocks)) + " |",
        "|---|" + "---|" * blocks,
    ]
    for r in method_rows:
        lines.append(
            f"| {METHODS[r['method']]} | " + " | ".join(_fmt(v) for v in r["blocks"]) + " |"
        )
    lines += [
        "",
        "Per run (95% CI over the 40 held-out tasks):",
        "",
        f"| run | iterations | env steps | wall time (min) | {steps_header} |",
        "|---|---|---|---|" + "---|" * len(eval_steps),
    ]
    lines += [held_out_row([r["run"]], r) for r in rows]
    text = "\n".join(lines) + "\n"
    (results / "summary.md").write_text(text)

    labels = {
        METHODS[m]: [d for d, method, _, _ in runs if method == m]
        for m in METHODS
        if any(method == m for _, method, _, _ in runs)
    }
    plot_runs(
        [d for d, _, _, _ in runs],
        results / "curves.png",
        title=f"{env}: post-adaptation return at equal env steps",
        x="env_steps",
        phases=("post",),
        labels=labels,
    )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="*", help=f"default: all of {list(METHODS)}")
    parser.add_argument("--env", choices=list(ENVS), default="navigation2d")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="the budget, in iterations of a one-step method "
        f"(default {', '.join(f'{e}: {v[1]}' for e, v in ENVS.items())})",
    )
    parser.add_argument("--blocks", type=int, default=5, help="blocks of the summary (default 5)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every method (e.g. sampler.num_threads=1)",
    )
    parser.add_argument("--results", type=Path, default=None, help=f"default {RESULTS}/<env>")
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {list(METHODS)}")
    iterations = ENVS[args.env][1] if args.iterations is None else args.iterations
    if iterations < 1 or args.blocks < 1:
        parser.error("--iterations and --blocks must be at least 1")
    results = args.results or RESULTS / args.env
    os.makedirs(results, exist_ok=True)
    if not args.summary_only:
        for seed in args.seeds:
            for name in args.methods or list(METHODS):
                run(args.env, name, seed, iterations, args.sets, results)
                summarise(args.env, results, args.blocks)
    print(summarise(args.env, results, args.blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
