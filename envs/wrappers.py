"""Gymnasium wrappers that put a task distribution into single-task RL code: the non-meta
baselines of Finn et al. 2017 (section 5.3) train on them.

- :class:`TaskResampleWrapper`: a new task from the env's own distribution at every
  ``reset``, never observed (the *pretrained* baseline's training env).
- :class:`TaskObservationWrapper`: the task's values appended to the observation
  (the *oracle*'s input).

:class:`metarl.sb3.BatchedTaskVecEnv` does both on a family's batched engine, as a
stable-baselines3 ``VecEnv`` (envs itself does not depend on stable-baselines3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from envs.base import TaskField

__all__ = ["TaskObservationWrapper", "TaskResampleWrapper", "task_fields", "task_values"]


def task_fields(env: gym.Env) -> tuple[TaskField, ...]:
    fields = getattr(env.unwrapped, "task_fields", None)
    if not fields or not hasattr(env.unwrapped, "sample_tasks"):
        raise ValueError(
            f"{env.unwrapped!r} is not a task distribution (no task_fields / sample_tasks)"
        )
    return tuple(fields)


def task_values(fields: Sequence[TaskField], task: Mapping[str, Any]) -> np.ndarray:
    """The task's numbers in ``task_fields`` order, points flattened (``goal`` gives 2)."""
    return np.concatenate([np.ravel(np.asarray(task[f.name], dtype=np.float64)) for f in fields])


def _task_bounds(field: TaskField) -> tuple[np.ndarray, np.ndarray]:
    if field.kind == "sign":
        low, high = -1.0, 1.0
    elif field.kind == "disk":
        low, high = -field.high, field.high
    else:
        low, high = field.low, field.high
    size = 1 if field.kind in ("uniform", "sign") else field.dim
    return np.full(size, low), np.full(size, high)


class TaskResampleWrapper(gym.Wrapper):
    """Draws a new task from the env's own distribution at every ``reset``; the task stays hidden.

    The task is set before the inner env resets, so the whole episode is
    rewarded for it; ``info["task"]`` on reset names it (the observation does not).

    Args:
        env: an env whose ``unwrapped`` is a metarl task distribution.
        rng: the generator tasks are drawn from (an int seeds a new one). Tasks
            come only from it, so ``reset(seed=...)`` seeds the physics but not
            the task sequence.
    """

    def __init__(self, env: gym.Env, rng: np.random.Generator | int | None = None) -> None:
        super().__init__(env)
        task_fields(env)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        task = self.env.unwrapped.sample_tasks(1, rng=self.rng)[0]
        self.env.unwrapped.task = task
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "task": task}


class TaskObservationWrapper(gym.ObservationWrapper):
    """Appends the current task's values to the observation (the oracle's input).

    Values follow ``task_fields`` order, points flattened: Navigation2D gives
    ``[x, y, goal_x, goal_y]``. The observation space gains the task's bounds
    (``[-1, 1]`` for a direction, the box or disk bounds for a goal) and keeps
    its dtype. The task is read at every observation, so a task changed before
    ``reset`` (by :class:`TaskResampleWrapper` underneath, or by hand) is seen
    from the first observation on.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._fields = task_fields(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"TaskObservationWrapper needs a flat Box observation, got {space!r}")
        bounds = [_task_bounds(f) for f in self._fields]
        low = np.concatenate([space.low, *(lo for lo, _ in bounds)]).astype(space.dtype)
        high = np.concatenate([space.high, *(hi for _, hi in bounds)]).astype(space.dtype)
        self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        task = task_values(self._fields, self.env.unwrapped.task)
        return np.concatenate([observation, task]).astype(self.observation_space.dtype)
