"""The reward-sized inner step on a policy trained without it: is the step's size the cause?

Evaluates a finished run's policy on 40 tasks of ``--seed`` (2: the validation tasks, not the
held-out seed 1) after one inner step, twice: with the run's own step and with
``adaptation.reward_scaled_step`` set to ``--zero-reward``, ``--unit``, ``--max-scale``, with
no retraining; the pretrained baseline adapts with the same step each time, and the gap per
subgroup is taken to the oracle (mean action). Writes ``reward-step-probe.{json,md}`` in
``RUN/evaluation-validation/``.

    .venv/bin/python experiments/reward_step_probe.py experiments/results/halfcheetah-vel/seed0 \\
        experiments/results/halfcheetah-vel-baselines
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import gymnasium as gym

from metarl.checkpoint import load_policy
from metarl.config import RewardScaledStepConfig
from metarl.evaluation import adaptation_curve, by_subgroup, confidence_interval, held_out_tasks
from metarl.meta_learners import load_meta_learner
from metarl.sampler import make_sampler
from metarl.sb3 import load_pretrained, oracle_returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("baselines", type=Path)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--zero-reward", type=float, default=-0.1)
    parser.add_argument("--unit", type=float, default=0.4)
    parser.add_argument("--max-scale", type=float, default=1.5)
    args = parser.parse_args()
    config, policy, state = load_policy(args.run)
    sized = RewardScaledStepConfig(args.zero_reward, args.unit, args.max_scale)
    steps = {
        "run's step": config,
        "reward-sized step": dataclasses.replace(
            config, adaptation=dataclasses.replace(config.adaptation, reward_scaled_step=sized)
        ),
    }
    distribution = gym.make(config.env).unwrapped
    tasks = held_out_tasks(distribution, 40, args.seed)
    groups = [distribution.task_subgroup(t) for t in tasks]
    pretrained = load_pretrained(args.baselines / "pretrained.zip", config.policy.action_scale)
    oracle = oracle_returns(
        args.baselines / "oracle.zip",
        config.env,
        tasks,
        20,
        args.seed,
        horizon=config.horizon,
        env_kwargs=config.env_kwargs,
        deterministic=True,
    )
    out: dict = {
        "run": str(args.run),
        "seed": args.seed,
        "tasks": tasks,
        "rule": dataclasses.asdict(sized),
    }
    with make_sampler(config.env, 40, 20, config.horizon, config.sampler, config.env_kwargs) as s:
        for label, cfg in steps.items():
            learner = load_meta_learner(cfg, policy, state)
            curves = {
                "metarl": adaptation_curve(policy, s, tasks, 1, cfg, args.seed, learner)[0],
                "pretrained": adaptation_curve(pretrained, s, tasks, 1, cfg, args.seed)[0],
            }
            results = {
                "metarl": {str(k): confidence_interval(v) for k, v in enumerate(curves["metarl"])},
                "baselines": {
                    "pretrained": {
                        str(k): confidence_interval(v) for k, v in enumerate(curves["pretrained"])
                    },
                    "oracle": {str(k): confidence_interval(oracle) for k in range(2)},
                },
            }
            out[label] = by_subgroup(results, groups)
    lines = ["| step | subgroup | metarl step 1 | pretrained step 1 | oracle | gap closed |"]
    lines.append("|---|---|---|---|---|---|")
    for label in steps:
        for group, entry in out[label].items():
            lines.append(
                f"| {label} | {group} | {entry['metarl']['1']['mean']:.1f} | "
                f"{entry['baselines']['pretrained']['1']['mean']:.1f} | "
                f"{entry['baselines']['oracle']['1']['mean']:.1f} | "
                f"{100 * entry['gap_closed']['1']:.0f}% |"
            )
    where = args.run / "evaluation-validation"
    where.mkdir(exist_ok=True)
    (where / "reward-step-probe.json").write_text(json.dumps(out, indent=1))
    (where / "reward-step-probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
