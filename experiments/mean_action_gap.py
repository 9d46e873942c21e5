"""How much of a held-out evaluation's gap is the policies' exploration noise.

`metarl evaluate` scores MAML and the pretrained baseline with sampled actions (the
episodes the inner step learns from) and the oracle with its mean action. This repeats the
evaluation's step 0 and step 1 (same held-out tasks, seeds and inner steps) and scores the
parameters of each step a second time acting with their mean action, for MAML and the
pretrained baseline, and the oracle both ways; then the share of the pretrained -> oracle gap
that step 1 closes per subgroup for each pairing. Writes ``mean-action.json`` and
``mean-action.md`` beside the run's ``evaluation/results.json``.

    .venv/bin/python experiments/mean_action_gap.py experiments/results/halfcheetah-vel/seed0 \\
        experiments/results/halfcheetah-vel-baselines
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

from metarl.checkpoint import load_policy
from metarl.errors import InputError
from metarl.evaluation import adaptation_curve, held_out_tasks, step_seed
from metarl.meta_learners import load_meta_learner
from metarl.sampler import make_sampler
from metarl.sb3 import load_pretrained, oracle_returns

# std * exp(-30) is ~1e-13 of the std: the mean action to float32 precision, through the
# sampler's own path (clipping, env seeds) rather than a second rollout loop.
MEAN_ACTION_LOG_STD_SHIFT = -30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("baselines", help="directory with pretrained.zip and oracle.zip")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1, help="the evaluation's task seed")
    args = parser.parse_args(argv)
    try:
        result = mean_action_gap(args.run_dir, args.baselines, args.tasks, args.episodes, args.seed)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.run_dir) / "evaluation" / "mean-action.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(table(result))
    print(table(result), end="")
    print(f"wrote {out}, {out.with_suffix('.md')}")
    return 0


def mean_action_gap(run_dir: str, baselines: str, num_tasks: int, episodes: int, seed: int) -> dict:
    paths = {name: Path(baselines) / f"{name}.zip" for name in ("pretrained", "oracle")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"{', '.join(missing)} not found: train them with `metarl baseline`")
    config, policy, state = load_policy(run_dir)
    learner = load_meta_learner(config, policy, state)
    distribution = gym.make(config.env).unwrapped
    tasks = held_out_tasks(distribution, num_tasks, seed)
    result: dict = {
        "iteration": int(state["iteration"]),
        "seed": seed,
        "groups": [distribution.task_subgroup(t) for t in tasks],
    }
    pretrained = load_pretrained(paths["pretrained"], config.policy.action_scale)
    with make_sampler(
        config.env, num_tasks, episodes, config.horizon, config.sampler, config.env_kwargs
    ) as sampler:
        for name, candidate, trained in (
            ("metarl", policy, learner),
            ("pretrained", pretrained, None),
        ):
            sampled, history = adaptation_curve(candidate, sampler, tasks, 1, config, seed, trained)
            mean = []
            for k, params in enumerate(history):
                quiet = {**params, "log_std": params["log_std"] + MEAN_ACTION_LOG_STD_SHIFT}
                again = sampler.sample(candidate, quiet, tasks, seed=step_seed(seed, k))
                mean.append([float(r) for r in again.episode_returns.mean(dim=-1)])
            result[name] = {"sampled": sampled, "mean_action": mean}
            result[name]["std"] = [
                float((h["log_std"].exp() * config.policy.action_scale).mean()) for h in history
            ]
    result["oracle"] = {
        mode: oracle_returns(
            paths["oracle"],
            config.env,
            tasks,
            episodes,
            seed,
            horizon=config.horizon,
            env_kwargs=config.env_kwargs,
            deterministic=mode == "mean_action",
        )
        for mode in ("sampled", "mean_action")
    }
    return result


def table(result: dict) -> str:
    groups = result["groups"]

    def mean(values: list[float], group: str) -> float:
        return float(np.mean([v for v, g in zip(values, groups, strict=True) if g == group]))

    lines = [
        f"iteration {result['iteration']}; MAML's std {result['metarl']['std'][0]:.4f} -> "
        f"{result['metarl']['std'][1]:.4f}, pretrained's {result['pretrained']['std'][0]:.4f} -> "
        f"{result['pretrained']['std'][1]:.4f} (env units)",
        "",
        "| tasks | MAML, pretrained act | oracle acts | MAML step 0 -> 1 | pretrained step 0 -> 1 "
        "| oracle | gap closed, step 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in dict.fromkeys(groups):
        for mode in ("sampled", "mean_action"):
            m = [mean(result["metarl"][mode][k], group) for k in (0, 1)]
            p = [mean(result["pretrained"][mode][k], group) for k in (0, 1)]
            for oracle_mode in ("sampled", "mean_action"):
                o = mean(result["oracle"][oracle_mode], group)
                gap = (m[1] - p[1]) / (o - p[1])
                lines.append(
                    f"| {group} | {mode} | {oracle_mode} | {m[0]:.1f} -> {m[1]:.1f} | "
                    f"{p[0]:.1f} -> {p[1]:.1f} | {o:.1f} | {100 * gap:.0f}% |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
