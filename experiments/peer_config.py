"""metarl at pytorch-maml-rl's own HalfCheetahDir config, one difference at a time.

Each variant meta-trains ``experiments/configs/halfcheetah-dir.yaml`` with the
peer's settings (horizon 100, (64, 64) tanh, seed 1 unless told, 60 iterations)
plus the variant's overrides, into ``experiments/results/peer-config/<variant>-seed<S>/``.
A run that exists is continued with ``--resume``, so the script can be stopped
and rerun across sessions. ``summary.csv`` and ``summary.md`` beside the runs
give each run's post- (and pre-) adaptation block means over 10 iterations next
to the peer's (``../shared/peer``'s CSVs are copied into ``peer/``).

    .venv/bin/python experiments/peer_config.py                  # every variant, seed 1
    .venv/bin/python experiments/peer_config.py xavier --seeds 1 2
    .venv/bin/python experiments/peer_config.py --summary-only
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from runs import train_run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results" / "peer-config"
CONFIG = ROOT / "experiments" / "configs" / "halfcheetah-dir.yaml"
BLOCK = 10

# The peer's scale: horizon 100, (64, 64) tanh. Everything else (40 tasks x 20 episodes,
# one second-order step, gamma 0.99, GAE lambda 1) is the shared config's.
PEER_SCALE = ["horizon=100", "policy.hidden_sizes=[64,64]", "policy.activation=tanh"]
# The peer's algorithm, MAML-TRPO (TRPO max KL 0.01, CG 10 x 1e-5, line search 15 x 0.8)
# with its inner lr 0.1: the shipped cheetah config meta-trains with ProMP's outer step, so
# the peer's estimator and optimizer are set here (fvp and cg_subsample as shipped before the
# switch; the variants below change them).
PEER = [
    *PEER_SCALE,
    "adaptation.lr=0.1",
    "objective=maml",
    "meta_optimizer.name=trpo",
    "meta_optimizer.fvp=gauss_newton",
    "meta_optimizer.cg_subsample=0.25",
]
# metarl as it was before the ablation: the torch-default policy in env units, the
# Fisher at the adapted policy as TRPO's metric, Gymnasium's 17-value observation.
OLD = [
    "policy.init=torch",
    "policy.init_std=1.0",
    "policy.action_scale=1.0",
    "meta_optimizer.fvp=adapted_fisher",
    "meta_optimizer.cg_subsample=1.0",
    "env_kwargs={}",
]
SCALED = ["policy.init_std=0.1", "policy.action_scale=0.1"]  # the peer's action space

# name -> overrides on top of PEER; each row adds one difference to one before it.
VARIANTS: dict[str, list[str]] = {
    "scaled-xavier": [*OLD, *SCALED, "policy.init=xavier_uniform"],
    # The exact KL Hessian at theta_old, through the inner step (the peer's curvature).
    "scaled-xavier-gn": [
        *OLD,
        *SCALED,
        "policy.init=xavier_uniform",
        "meta_optimizer.fvp=gauss_newton",
    ],
    "scaled-xavier-xpos": [
        *OLD,
        *SCALED,
        "policy.init=xavier_uniform",
        "env_kwargs={exclude_current_positions_from_observation: false}",
    ],
    "scaled-xavier-gn-xpos": [
        *OLD,
        *SCALED,
        "policy.init=xavier_uniform",
        "meta_optimizer.fvp=gauss_newton",
        "env_kwargs={exclude_current_positions_from_observation: false}",
    ],
    # ProMP's low-variance curvature estimator in place of MAML's biased one.
    "scaled-xavier-gn-lvc": [
        *OLD,
        *SCALED,
        "policy.init=xavier_uniform",
        "meta_optimizer.fvp=gauss_newton",
        "objective=lvc",
    ],
    # The same curvature estimated on a quarter of the tasks: 4x cheaper products.
    "scaled-xavier-gn-sub25": [
        *OLD,
        *SCALED,
        "policy.init=xavier_uniform",
        "meta_optimizer.fvp=gauss_newton",
        "meta_optimizer.cg_subsample=0.25",
    ],
    "std1-torch": OLD,
    "std1-xavier": [*OLD, "policy.init=xavier_uniform"],
    "scaled-torch": [*OLD, *SCALED],
    "defaults": [],  # the shipped policy with MAML-TRPO (= scaled-xavier-gn-sub25, see SAME)
    # Twice the paper's inner step size (the same ablation at the paper's scale:
    # experiments/reports/halfcheetah-dir-forward-half.md).
    "defaults-inner-lr-0.2": ["adaptation.lr=0.2"],
    # (defaults-kl-new-old, the line search's KL in the peer's direction, ran at commit 7d3c6e4:
    # bit-identical to defaults, so metarl dropped the key; its progress.csv stays for the summary.)
    # The shipped config as it is (its own outer step and inner lr) at the peer's scale.
    "shipped": [],
}
# Variants over PEER_SCALE alone, not the peer's algorithm.
AT_PEER_SCALE_ONLY = {"shipped"}


def run(name: str, seed: int, iterations: int) -> Path:
    run_dir = RESULTS / f"{name}-seed{seed}"
    base = PEER_SCALE if name in AT_PEER_SCALE_ONLY else PEER
    return train_run(CONFIG, run_dir, seed, iterations, [*base, *VARIANTS[name]])


def block_means(path: Path, column: str) -> list[float]:
    with path.open(newline="") as f:
        values = [float(row[column]) for row in csv.DictReader(f)]
    full = len(values) // BLOCK
    return [sum(values[i * BLOCK : (i + 1) * BLOCK]) / BLOCK for i in range(full)]


# Variants that are the same config under two names: their runs are seeds of one group.
SAME = {"scaled-xavier-gn-sub25": "defaults"}


def seed_means(rows: list[dict]) -> list[dict]:
    """A mean row per group of seeds (run names that differ only in ``-seedS``; the
    peer's seed-1 file has no suffix), over the blocks every seed of the group ran."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        name = re.sub(r"-seed\d+$", "", r["run"])
        groups.setdefault(SAME.get(name, name), []).append(r)
    means = []
    for name, group in sorted(groups.items()):
        if len(group) < 2:
            continue
        blocks = min(len(r["post"]) for r in group)
        mean = {
            key: [sum(r[key][i] for r in group) / len(group) for i in range(blocks)]
            for key in ("post", "pre")
        }
        seeds = ", ".join(r["run"] for r in group)
        means.append({"run": f"{name}: mean of {seeds}", **mean, "s_per_iteration": float("nan")})
    return means


def summarise() -> None:
    rows = []
    for path in sorted(RESULTS.glob("peer/*.csv")) + sorted(RESULTS.glob("*/progress.csv")):
        name = path.stem if path.parent.name == "peer" else path.parent.name
        times = block_means(path, "time_s") if path.parent.name == "peer" else None
        if times is None:  # metarl's time_s is cumulative; the peer's is per iteration
            with path.open(newline="") as f:
                cumulative = [float(r["time_s"]) for r in csv.DictReader(f)]
            per_iteration = cumulative[-1] / len(cumulative) if cumulative else float("nan")
        else:
            per_iteration = sum(times) / len(times) if times else float("nan")
        rows.append(
            {
                "run": name,
                "post": block_means(path, "return_post"),
                "pre": block_means(path, "return_pre"),
                "s_per_iteration": per_iteration,
            }
        )
    rows += seed_means(rows)
    blocks = max((len(r["post"]) for r in rows), default=0)
    with (RESULTS / "summary.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["run", "s_per_iteration"]
            + [f"post_{i * BLOCK}_{i * BLOCK + BLOCK - 1}" for i in range(blocks)]
            + [f"pre_{i * BLOCK}_{i * BLOCK + BLOCK - 1}" for i in range(blocks)]
        )
        for r in rows:
            pad = [""] * (blocks - len(r["post"]))
            out.writerow(
                [r["run"], f"{r['s_per_iteration']:.2f}"]
                + [f"{v:.1f}" for v in r["post"]]
                + pad
                + [f"{v:.1f}" for v in r["pre"]]
                + pad
            )
    header = "| run | s/it | " + " | ".join(f"{i * BLOCK}-{i * BLOCK + 9}" for i in range(blocks))
    lines = [header + " |", "|---|---|" + "---|" * blocks]
    for r in rows:
        cells = [f"{post:.0f} ({pre:.0f})" for post, pre in zip(r["post"], r["pre"], strict=True)]
        cells += [""] * (blocks - len(cells))
        lines.append(f"| {r['run']} | {r['s_per_iteration']:.1f} | " + " | ".join(cells) + " |")
    text = (
        "Post-adaptation return per block of 10 iterations, pre-adaptation in parentheses.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    (RESULTS / "summary.md").write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help=f"default: all of {list(VARIANTS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {list(VARIANTS)}")
    if not args.summary_only:
        for name in args.variants or list(VARIANTS):
            for seed in args.seeds:
                run(name, seed, args.iterations)
                summarise()
    summarise()
    return 0


if __name__ == "__main__":
    sys.exit(main())
