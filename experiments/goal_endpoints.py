"""Where the ant of an AntGoal run ends its episodes, before and after adaptation, per goal.

`experiments/task_breakdown.py` says which goals one step helps; this says how: for goals at
``--radius`` metres in ``--angles`` evenly spaced directions (0 = +x, counter-clockwise), it
adapts the run's policy as `metarl evaluate` does (0..``--steps`` steps, ``--episodes`` per
step, seeded alike) and reports, per goal and step, the mean return and where the episodes
end: the mean end position's distance from the start and its angle, the spread of the end
positions (root of the summed variances of x and y) and the mean distance to the goal. A policy
that adapts to the goal turns to it: its end angle follows the goal's. Navigation2D runs work
too (their observation is the position). Prints the table and, with ``--out``, writes it there
(markdown).

    .venv/bin/python experiments/goal_endpoints.py experiments/results/ant-goal/seed0 \\
        --out runs/ant-goal-endpoints.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs
from metarl.checkpoint import CheckpointError, load_policy
from metarl.errors import InputError
from metarl.evaluation import adaptation_curve, step_seed
from metarl.meta_learners import load_meta_learner
from metarl.sampling import make_sampler


def goals(radius: float, angles: int) -> list[tuple[float, dict]]:
    """``angles`` goals evenly spaced on the circle of ``radius``, with their angle (degrees)."""
    out = []
    for k in range(angles):
        deg = 360.0 * k / angles
        rad = math.radians(deg)
        out.append((deg, {"goal": [radius * math.cos(rad), radius * math.sin(rad)]}))
    return out


def end_positions(episodes) -> np.ndarray:
    """The torso's x, y in the last observation of each episode, ``[task, episode, 2]``."""
    last = episodes.mask.sum(dim=-2).long() - 1  # [task, episode]: each episode's last step
    obs = episodes.observations.numpy()
    t, e = np.meshgrid(np.arange(obs.shape[0]), np.arange(obs.shape[2]), indexing="ij")
    return obs[t, last.numpy(), e, :2]


def table(run: str, radius: float, angles: int, steps: int, episodes: int, seed: int) -> str:
    config, policy, state = load_policy(run)
    envs.register_envs()
    single = gym.make(config.env, **config.env_kwargs).unwrapped
    if "goal" not in single.sample_tasks(1)[0]:
        raise InputError(f"{run} meta-trained {config.env}, whose tasks have no goal position")
    if getattr(single, "exclude_current_positions_from_observation", False):
        raise InputError(
            f"{run} observes no torso position (exclude_current_positions_from_observation)"
        )
    learner = load_meta_learner(config, policy, state)
    angled = goals(radius, angles)
    tasks = [task for _, task in angled]
    rows = [
        f"{config.env} run {run} at iteration {state['iteration']} (horizon {config.horizon}), "
        f"goals at {radius:g} m, {episodes} episodes per step, seed {seed}",
        "",
        "| goal angle | step | return | end distance (m) | end angle | end spread (m) "
        "| distance to goal (m) |",
        "|---|---|---|---|---|---|---|",
    ]
    with make_sampler(
        config.env, len(tasks), episodes, config.horizon, config.sampler, config.env_kwargs
    ) as sampler:
        _, history = adaptation_curve(policy, sampler, tasks, steps, config, seed, learner)
        # The episodes each step adapted on (the same seeds give the same episodes).
        sampled = [
            sampler.sample(policy, params, tasks, seed=step_seed(seed, k))
            for k, params in enumerate(history)
        ]
    for i, (deg, task) in enumerate(angled):
        for k, eps in enumerate(sampled):
            xy = end_positions(eps)[i]
            mean = xy.mean(axis=0)
            to_goal = np.linalg.norm(xy - np.asarray(task["goal"]), axis=1).mean()
            rows.append(
                f"| {deg:g} | {k} | {float(eps.episode_returns[i].mean()):.1f} "
                f"| {np.linalg.norm(mean):.2f} "
                f"| {math.degrees(math.atan2(mean[1], mean[0])) % 360:.0f} "
                f"| {math.sqrt(float(xy.var(axis=0).sum())):.2f} | {to_goal:.2f} |"
            )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the run directory of an AntGoal (or Navigation2D) run")
    parser.add_argument("--radius", type=float, default=2.0, help="goal distance (m)")
    parser.add_argument("--angles", type=int, default=8, help="goal directions")
    parser.add_argument("--steps", type=int, default=1, help="inner steps (as evaluate)")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task and step")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the table here too")
    args = parser.parse_args(argv)
    for name in ("angles", "episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.steps < 0 or args.radius <= 0:
        parser.error("--steps must be at least 0 and --radius positive")
    try:
        text = table(args.run, args.radius, args.angles, args.steps, args.episodes, args.seed)
    except (InputError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
