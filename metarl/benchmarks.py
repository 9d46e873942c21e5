"""Speed measurements that print numbers (never timed unit tests)."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

import envs

__all__ = ["env_steps_per_second"]


def env_steps_per_second(
    env_id: str, num_envs: int, mode: str, steps: int = 50, seed: int = 0, **kwargs
) -> float:
    """Steps per second of a vector env under uniform random actions (after one warm-up step)."""
    envs.register_envs()
    vec = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
    try:
        vec.reset(seed=seed)
        rng = np.random.default_rng(seed)
        space = vec.single_action_space
        actions = rng.uniform(space.low, space.high, (steps + 1, num_envs, *space.shape))
        vec.step(actions[0])
        start = time.perf_counter()
        for t in range(1, steps + 1):
            vec.step(actions[t])
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        vec.close()
