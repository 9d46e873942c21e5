"""Why Ant does not adapt: episode lengths, what ends episodes, the reward parts, and
what one inner step does, per Ant id, policy and task definition.

For each Ant id, each policy (the paper's: std 1 in env units, torch init; the
cheetah's new default: std 0.1 through action_scale 0.1, xavier; and optionally a
trained run's) and each task definition (the paper's rllab one, ProMP's, and one
without termination), it samples a meta-batch with the batched engine and writes
one JSON row per case to ``experiments/results/ant-diagnosis/diagnosis.json`` and a
table to ``diagnosis.md``:

- mean episode length; the share of episodes ended by the torso going above the
  healthy range, below it, or a non-finite state; the share that ran to the horizon;
- the mean per-episode sum of each reward part from ``info``;
- the step-1 minus step-0 mean return after one inner step (the config's
  adaptation), per task subgroup (forward/backward, lower/upper speeds).

    .venv/bin/python experiments/ant_diagnosis.py [--tasks 20] [--episodes 10] [--run RUN_DIR ...]

``--runs-only`` samples only the ``--run`` rows and puts them into the existing output in place
of earlier rows of the same runs (the iteration-0 rows are kept as they were computed: AntDir's
at the paper's horizon of 200, which its config has since halved).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments" / "results" / "ant-diagnosis"
IDS = ("metarl/AntVel-v0", "metarl/AntDir-v0", "metarl/AntGoal-v0")

# Task definitions as env options (the ids' defaults are rllab's, as in the paper).
DEFINITIONS = {
    "rllab": {},
    # ProMP's AntRandDirec: survive 1.0, control 0.5 |a|^2, ends only when the torso
    # leaves [0, 1]; its AntRandGoal never terminates (control 0.1).
    "promp": {"survive_reward": 1.0, "ctrl_cost_weight": 0.5, "healthy_z_range": [0.0, 1.0]},
    "no-termination": {"terminate_when_unhealthy": False},
}
POLICIES = {
    "paper (std 1, torch init)": {"init_std": 1.0, "init": "torch", "action_scale": 1.0},
    "scaled (std 0.1, x10 space, xavier)": {
        "init_std": 0.1,
        "init": "xavier_uniform",
        "action_scale": 0.1,
    },
}


def rollout(env_id, env_kwargs, policy, tasks, episodes, horizon, seed):
    """Episodes of ``policy`` on ``tasks``: lengths, end causes and reward parts."""
    n = len(tasks) * episodes
    vec = gym.make_vec(
        env_id,
        num_envs=n,
        vectorization_mode="vector_entry_point",
        autoreset_mode="disabled",
        max_episode_steps=horizon,
        **env_kwargs,
    )
    vec.set_attr("task", [t for t in tasks for _ in range(episodes)])
    obs, _ = vec.reset(seed=seed)
    low, high = vec.single_action_space.low, vec.single_action_space.high
    z_low, z_high = vec.unwrapped.definitions.healthy_z_range
    exclude = vec.unwrapped.definitions.exclude_current_positions_from_observation
    z_index = 0 if exclude else 2
    alive = np.ones(n, bool)
    lengths = np.zeros(n, int)
    cause = np.array(["horizon"] * n, dtype=object)
    parts: dict[str, np.ndarray] = {}
    generator = torch.Generator().manual_seed(seed)
    for _ in range(horizon):
        with torch.no_grad():
            mean, std = policy(torch.as_tensor(obs, dtype=torch.float32), stats=True)
            action = (mean + std * torch.randn(mean.shape, generator=generator)).numpy()
        obs, _, terminated, _, info = vec.step(np.clip(action, low, high))
        for key, value in info.items():
            if key.startswith("reward_"):
                parts.setdefault(key, np.zeros(n))
                parts[key] += np.where(alive, value, 0.0)
        lengths += alive
        ended = alive & terminated
        z = obs[:, z_index]
        cause[ended & ~np.isfinite(obs).all(axis=1)] = "non-finite"
        cause[ended & np.isfinite(obs).all(axis=1) & (z > z_high)] = "torso above range"
        cause[ended & np.isfinite(obs).all(axis=1) & (z < z_low)] = "torso below range"
        alive &= ~terminated
        if not alive.any():
            break
    vec.close()
    causes = {c: float(np.mean(cause == c)) for c in sorted(set(cause))}
    return {
        "mean_length": float(lengths.mean()),
        "end_causes": causes,
        "reward_parts": {k: float(v.mean()) for k, v in sorted(parts.items())},
    }


def adaptation_gain(env_id, env_kwargs, config, policy, tasks, episodes, seed):
    """Mean step-1 minus step-0 return per task subgroup, with the config's inner step."""
    from metarl.evaluation import adaptation_curve
    from metarl.sampler import Sampler

    with Sampler(env_id, len(tasks), episodes, config.horizon, env_kwargs=env_kwargs) as sampler:
        curve, _ = adaptation_curve(policy, sampler, tasks, 1, config, seed)
    single = gym.make(env_id, **env_kwargs).unwrapped
    groups: dict[str, list[float]] = {}
    for k, task in enumerate(tasks):
        groups.setdefault(single.task_subgroup(task), []).append(curve[1][k] - curve[0][k])
    return {
        g: {"gain": float(np.mean(v)), "se": float(np.std(v, ddof=1) / np.sqrt(len(v)))}
        for g, v in groups.items()
    }


def main(argv: list[str] | None = None) -> int:
    from metarl.checkpoint import load_policy, make_policy
    from metarl.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", action="append", default=[], help="a trained Ant run to add")
    parser.add_argument(
        "--runs-only",
        action="store_true",
        help="sample only the --run rows; keep the other rows of the existing diagnosis.json",
    )
    args = parser.parse_args(argv)
    rows = []
    cases = [
        (env_id, definition, env_kwargs, label, settings)
        for env_id in IDS
        for definition, env_kwargs in DEFINITIONS.items()
        for label, settings in POLICIES.items()
    ]
    if args.runs_only:
        if not args.run:
            parser.error("--runs-only needs at least one --run")
        existing = OUT / "diagnosis.json"
        if not existing.is_file():
            parser.error(f"--runs-only adds to {existing}, which does not exist: run without it")
        runs = {Path(run) for run in args.run}
        rows = [
            row
            for row in json.loads(existing.read_text())
            if row["definition"] != "as trained" or Path(row["policy"].split(" @ ")[0]) not in runs
        ]
        cases = []
    for env_id, definition, env_kwargs, label, settings in cases:
        # metarl/AntGoal-v0 -> experiments/configs/ant-goal.yaml
        name = env_id.split("/")[1].removesuffix("-v0").lower().replace("ant", "ant-")
        config = load_config(
            ROOT / "experiments" / "configs" / f"{name}.yaml",
            [f"policy.{k}={v}" for k, v in settings.items()],
        )
        probe = gym.make(env_id, **env_kwargs)
        torch.manual_seed(args.seed)
        policy = make_policy(config, probe.observation_space.shape[0], probe.action_space.shape[0])
        tasks = probe.unwrapped.sample_tasks(args.tasks, np.random.default_rng(args.seed))
        row = {"env": env_id, "definition": definition, "policy": label}
        row.update(
            rollout(env_id, env_kwargs, policy, tasks, args.episodes, config.horizon, args.seed)
        )
        row["adaptation_gain"] = adaptation_gain(
            env_id, env_kwargs, config, policy, tasks, args.episodes, args.seed
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    for run in args.run:
        config, policy, state = load_policy(run)
        probe = gym.make(config.env, **config.env_kwargs)
        tasks = probe.unwrapped.sample_tasks(args.tasks, np.random.default_rng(args.seed))
        row = {
            "env": config.env,
            "definition": "as trained",
            "policy": f"{Path(run)} @ {state['iteration']}",
        }
        row.update(
            rollout(
                config.env,
                config.env_kwargs,
                policy,
                tasks,
                args.episodes,
                config.horizon,
                args.seed,
            )
        )
        row["adaptation_gain"] = adaptation_gain(
            config.env, config.env_kwargs, config, policy, tasks, args.episodes, args.seed
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "diagnosis.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "| env | definition | policy | mean length | ends | reward parts (per episode) | one step: gain by subgroup |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ends = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["end_causes"].items())
        parts = ", ".join(f"{k[7:]} {v:.1f}" for k, v in r["reward_parts"].items())
        gains = ", ".join(
            f"{g} {v['gain']:+.1f} (se {v['se']:.1f})" for g, v in r["adaptation_gain"].items()
        )
        lines.append(
            f"| {r['env']} | {r['definition']} | {r['policy']} | {r['mean_length']:.0f} | {ends} | {parts} | {gains} |"
        )
    (OUT / "diagnosis.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
