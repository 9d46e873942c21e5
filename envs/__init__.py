"""Task-distribution environments of metarl, registered with Gymnasium on import.

``gym.make(id)`` gives a single env whose ``unwrapped`` has ``sample_tasks`` and
a settable ``task``; ``gym.make_vec(id, num_envs=N,
vectorization_mode="vector_entry_point")`` gives the batched engine
(``mujoco.batch`` for the MuJoCo families, numpy for Navigation2D).
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym

__all__ = ["ENV_IDS", "make_vector_env", "register_envs"]

# id -> (module:class of the single env, horizon)
_FAMILIES: dict[str, tuple[str, int]] = {
    "metarl/HalfCheetahVel-v0": ("envs.half_cheetah:HalfCheetahVelEnv", 200),
    "metarl/HalfCheetahDir-v0": ("envs.half_cheetah:HalfCheetahDirEnv", 200),
    "metarl/AntVel-v0": ("envs.ant:AntVelEnv", 200),
    "metarl/AntDir-v0": ("envs.ant:AntDirEnv", 200),
    "metarl/AntGoal-v0": ("envs.ant:AntGoalEnv", 200),
    "metarl/Navigation2D-v0": ("envs.navigation:Navigation2DEnv", 100),
}
ENV_IDS: tuple[str, ...] = tuple(_FAMILIES)


def make_vector_env(
    num_envs: int = 1, *, env_class: str, max_episode_steps: int | None = None, **kwargs: Any
):
    """The registry's ``vector_entry_point``: the batched engine of one family."""
    module_name, class_name = env_class.split(":")
    module = __import__(module_name, fromlist=[class_name])
    cls = getattr(module, class_name)
    return cls.vector_env(num_envs, max_episode_steps=max_episode_steps, **kwargs)


def register_envs() -> None:
    """Register the metarl/* ids (idempotent; the ``gymnasium.envs`` entry point calls it)."""
    for env_id, (entry_point, horizon) in _FAMILIES.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=entry_point,
            vector_entry_point=functools.partial(make_vector_env, env_class=entry_point),
            max_episode_steps=horizon,
        )


register_envs()
