"""How far one inner step moves the policy's action mean at initialisation: MAML's step (every
tensor, ``adaptation.lr``) against CAVIA's (the context alone, ``cavia.lr`` 10, 100, 1000), on
the shipped HalfCheetahDir config with 50 context inputs, 4 tasks x 10 episodes, seed 0.
Writes ``experiments/results/halfcheetah-dir-ablations/cavia-seed0/step-probe.json``.

    .venv/bin/python experiments/cavia_step_probe.py
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from metarl.adaptation import AdaptationSettings, policy_stats
from metarl.baselines import LinearFeatureBaseline
from metarl.checkpoint import make_policy
from metarl.config import load_config
from metarl.meta_learners import CAVIA, MAML
from metarl.sampler import make_sampler

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments/results/halfcheetah-dir-ablations/cavia-seed0/step-probe.json"


def main() -> None:
    config = load_config(
        ROOT / "experiments/configs/halfcheetah-dir.yaml",
        ["meta_learner=cavia", "policy.context_dim=50"],
    )
    env = gym.make(config.env).unwrapped
    tasks = env.sample_tasks(4, rng=np.random.default_rng(0))
    torch.manual_seed(0)
    policy = make_policy(config, env.observation_space.shape[0], env.action_space.shape[0])
    theta = {n: p.detach() for n, p in policy.named_parameters()}
    settings = AdaptationSettings.from_config(config)
    learners = {f"maml, lr {config.adaptation.lr}": MAML()}
    learners.update({f"cavia, lr {lr}": CAVIA(policy, lr) for lr in (10.0, 100.0, 1000.0)})
    moved = {}
    with make_sampler(
        config.env, 4, 10, config.horizon, config.sampler, config.env_kwargs
    ) as sampler:
        episodes = sampler.sample(policy, theta, tasks, seed=0)
        before, _ = policy_stats(policy, theta, episodes.observations)
        for name, learner in learners.items():
            _, phi = learner.adapt_for_sampling(
                policy, theta, theta, episodes, LinearFeatureBaseline(config.baseline_reg),
                settings, gamma=config.gamma, gae_lambda=config.gae_lambda, normalize=True,
                step=0,
            )  # fmt: skip
            after, _ = policy_stats(policy, phi, episodes.observations)
            change = (after - before).abs()
            moved[name] = {
                "mean_abs_change": float(change.mean()),
                # how state-dependent the change is: its std over steps, per action, averaged
                "std_over_steps": float((after - before).std(dim=(1, 2)).mean()),
            }
    OUT.write_text(json.dumps({"env_units": True, "moved": moved}, indent=1))
    for name, value in moved.items():
        print(f"{name}: mean |change| {value['mean_abs_change']:.4f}, "
              f"std over steps {value['std_over_steps']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
