"""Gymnasium wrappers and a stable-baselines3 ``VecEnv`` that put a task distribution into
single-task RL code: the non-meta baselines of Finn et al. 2017 (section 5.3) train on them.

- :class:`TaskResampleWrapper`: a new task from the env's own distribution at every
  ``reset``, never observed (the *pretrained* baseline's training env).
- :class:`TaskObservationWrapper`: the task's values appended to the observation
  (the *oracle*'s input).
- :class:`BatchedTaskVecEnv`: both, on a family's batched engine, as an SB3 ``VecEnv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from envs.base import TaskField

__all__ = ["BatchedTaskVecEnv", "TaskObservationWrapper", "TaskResampleWrapper"]


def _task_fields(env: gym.Env) -> tuple[TaskField, ...]:
    fields = getattr(env.unwrapped, "task_fields", None)
    if not fields or not hasattr(env.unwrapped, "sample_tasks"):
        raise ValueError(
            f"{env.unwrapped!r} is not a task distribution (no task_fields / sample_tasks)"
        )
    return tuple(fields)


def _task_values(fields: Sequence[TaskField], task: Mapping[str, Any]) -> np.ndarray:
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
        _task_fields(env)
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
        self._fields = _task_fields(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"TaskObservationWrapper needs a flat Box observation, got {space!r}")
        bounds = [_task_bounds(f) for f in self._fields]
        low = np.concatenate([space.low, *(lo for lo, _ in bounds)]).astype(space.dtype)
        high = np.concatenate([space.high, *(hi for _, hi in bounds)]).astype(space.dtype)
        self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        task = _task_values(self._fields, self.env.unwrapped.task)
        return np.concatenate([observation, task]).astype(self.observation_space.dtype)


class BatchedTaskVecEnv(VecEnv):
    """A metarl family's batched engine as a stable-baselines3 ``VecEnv``, a new task per episode.

    The sub-envs are stepped together by the family's batched engine (``mujoco.batch``
    for MuJoCo; Gymnasium's ``SAME_STEP`` autoreset, which is SB3's convention). Each
    sub-env draws a new task from the distribution for every episode, as
    :class:`TaskResampleWrapper` does; with ``observe_task`` the task's values are
    appended to the observation, as :class:`TaskObservationWrapper` does (the
    oracle's input). Finished episodes report ``info["episode"]`` (return ``r``,
    length ``l``) as SB3's ``Monitor`` would.

    Args:
        env_id: a metarl id with a batched engine.
        num_envs: sub-envs.
        seed: seeds the physics (sub-env ``i`` with ``seed + i``) and the task draws.
        observe_task: append the task to the observation.
        horizon: episode length (default: the registry's).
        env_kwargs: the env's options.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int,
        observe_task: bool,
        horizon: int | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.vec = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="vector_entry_point",
            autoreset_mode="same_step",
            **({"max_episode_steps": horizon} if horizon is not None else {}),
            **dict(env_kwargs or {}),
        )
        single = gym.make(env_id, **dict(env_kwargs or {}))
        self.fields = _task_fields(single)
        self.distribution = single.unwrapped
        space = self.vec.single_observation_space
        if observe_task:
            space = TaskObservationWrapper(single).observation_space
        super().__init__(num_envs, space, self.vec.single_action_space)
        single.close()
        self.observe_task, self.seed_value = observe_task, seed
        self.rng = np.random.default_rng([seed, 0x7A5C])
        self.tasks = self.distribution.sample_tasks(num_envs, self.rng)
        self.vec.set_attr("task", self.tasks)
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self._actions: np.ndarray | None = None

    def _with_task(self, obs: np.ndarray, task: Mapping[str, Any]) -> np.ndarray:
        if not self.observe_task:
            return obs.astype(self.observation_space.dtype)
        values = _task_values(self.fields, task)
        return np.concatenate([obs, values]).astype(self.observation_space.dtype)

    def _observations(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([self._with_task(o, t) for o, t in zip(obs, self.tasks, strict=True)])

    def reset(self) -> np.ndarray:
        seeds = [s if s is not None else self.seed_value + i for i, s in enumerate(self._seeds)]
        obs, _ = self.vec.reset(seed=seeds)
        self._reset_seeds()
        self.returns[:], self.lengths[:] = 0.0, 0
        return self._observations(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async first"
        obs, reward, terminated, truncated, info = self.vec.step(self._actions)
        self.returns += reward
        self.lengths += 1
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        ended = np.flatnonzero(done)
        for i in ended:
            infos[i] = {
                "terminal_observation": self._with_task(info["final_obs"][i], self.tasks[i]),
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "episode": {"r": float(self.returns[i]), "l": int(self.lengths[i])},
            }
        if len(ended):
            drawn = self.distribution.sample_tasks(len(ended), self.rng)
            for i, task in zip(ended, drawn, strict=True):
                self.tasks[i] = task
            self.vec.set_attr("task", self.tasks)
            self.returns[ended], self.lengths[ended] = 0.0, 0
        return self._observations(obs), reward.astype(np.float32), done, infos

    def close(self) -> None:
        self.vec.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None] * len(self._get_indices(indices))
        raise AttributeError(f"{type(self).__name__} has no attribute {attr_name!r} per sub-env")

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"{type(self).__name__} has no settable attribute {attr_name!r}")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list:
        raise AttributeError(f"{type(self).__name__} has no per-sub-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
