"""How much of a held-out evaluation's gap is the policies' exploration noise.

`metarl evaluate` scores MAML and the pretrained baseline with sampled actions (the
episodes the inner step learns from) and the oracle with its mean action. This repeats the
evaluation's step 0 and step 1 (same held-out tasks, seeds and inner steps) and scores the
parameters of each step a second time acting with their mean action, for MAML and the
pretrained baseline, and the oracle both ways; then the share of the pretrained -> oracle gap
that step 1 closes per subgroup for each pairing. Writes ``mean-action.json`` and
``mean-action.md`` beside the run's ``evaluation/results.json``.

    .venv/bin/python experiments/mean_action_gap.py runs/cheetah-vel \\
        experiments/results/halfcheetah-vel/baselines
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym

from metarl.checkpoint import load_policy
from metarl.comparison import load_pretrained, oracle_returns
from metarl.errors import InputError
from metarl.evaluation import (
    adaptation_curve,
    by_subgroup,
    confidence_interval,
    held_out_tasks,
    step_seed,
)
from metarl.meta_learners import load_meta_learner
from metarl.sampling import make_sampler

# std * exp(-30) is ~1e-13 of the std: the mean action to float32 precision, through the
# sampler's own path (clipping, env seeds) rather than a second rollout loop.
MEAN_ACTION_LOG_STD_SHIFT = -30.0
MODES = ("sampled", "mean_action")  # how a policy acts: its samples, or its mean action


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
    text = table(result)
    out.with_suffix(".md").write_text(text)
    print(text, end="")
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
        for mode in MODES
    }
    return result


def table(result: dict) -> str:
    """Per subgroup and pairing of action modes, steps 0 -> 1 and the gap closed at step 1, as
    :func:`metarl.evaluation.by_subgroup` defines it for `metarl evaluate`'s tables."""

    def steps(curve: list[list[float]]) -> dict:
        return {str(k): confidence_interval(values) for k, values in enumerate(curve)}

    parts = {
        (mode, oracle_mode): by_subgroup(
            {
                "metarl": steps(result["metarl"][mode]),
                "baselines": {
                    "pretrained": steps(result["pretrained"][mode]),
                    "oracle": steps([result["oracle"][oracle_mode]] * 2),
                },
            },
            result["groups"],
        )
        for mode in MODES
        for oracle_mode in MODES
    }
    lines = [
        f"iteration {result['iteration']}; MAML's std {result['metarl']['std'][0]:.4f} -> "
        f"{result['metarl']['std'][1]:.4f}, pretrained's {result['pretrained']['std'][0]:.4f} -> "
        f"{result['pretrained']['std'][1]:.4f} (env units)",
        "",
        "| tasks | MAML, pretrained act | oracle acts | MAML step 0 -> 1 | pretrained step 0 -> 1 "
        "| oracle | gap closed, step 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in dict.fromkeys(result["groups"]):
        for (mode, oracle_mode), part in parts.items():
            entry = part[group]
            m, p = entry["metarl"], entry["baselines"]["pretrained"]
            gap = entry["gap_closed"]["1"]
            lines.append(
                f"| {group} | {mode} | {oracle_mode} | {m['0']['mean']:.1f} -> {m['1']['mean']:.1f} "
                f"| {p['0']['mean']:.1f} -> {p['1']['mean']:.1f} "
                f"| {entry['baselines']['oracle']['1']['mean']:.1f} "
                f"| {'-' if gap is None else f'{100 * gap:.0f}%'} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
