"""The batched VectorEnv shared by every family: seeding, autoreset, infos and tasks.

A subclass supplies the physics (``_reset_physics``, ``_step_physics``,
``_state``); everything a user sees of a Gymnasium vector env is here, written
to match ``gym.make_vec(id, vectorization_mode="sync")`` exactly: sub-env ``i``
is seeded with ``seed + i``, a sub-env that terminated or was truncated is
reset on the next ``step`` (Gymnasium's ``NEXT_STEP`` autoreset, reward 0),
and infos carry Gymnasium's ``_key`` masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.base import ArrayDefinitions, Arrays, task_arrays, validate_tasks

__all__ = ["ArrayVectorEnv"]


class ArrayVectorEnv(VectorEnv):
    """A vector env whose sub-envs are rows of arrays, stepped together.

    Args:
        definitions: the family (an :class:`~envs.base.ArrayDefinitions` subclass,
            usually the single env's class).
        num_envs: number of sub-envs.
        single_observation_space, single_action_space: the single env's spaces.
        max_episode_steps: truncate an episode after this many steps (``None``: never).
        autoreset_mode: ``NEXT_STEP`` (Gymnasium's default, as the sync vector env) or
            ``DISABLED``: a sub-env that terminated or was truncated then stays frozen
            until ``reset`` (its actions are ignored, its reward is 0, it keeps reporting
            its final flags, and its physics is not stepped: a sampler that only needs
            one episode per sub-env skips the work of the finished ones), or
            ``SAME_STEP``: a sub-env that ends is reset within the same ``step``, which
            returns the new episode's observation, with the last one in
            ``info["final_obs"]`` and the step's info in ``info["final_info"]``
            (stable-baselines3's convention).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": [],
    }

    def __init__(
        self,
        definitions: type[ArrayDefinitions],
        num_envs: int,
        single_observation_space: gym.spaces.Box,
        single_action_space: gym.spaces.Box,
        max_episode_steps: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ) -> None:
        modes = {
            "next_step": AutoresetMode.NEXT_STEP,
            "same_step": AutoresetMode.SAME_STEP,
            "disabled": AutoresetMode.DISABLED,
        }
        mode = (
            modes.get(str(autoreset_mode).lower())
            if isinstance(autoreset_mode, str)
            else autoreset_mode
        )
        if mode not in modes.values():
            raise ValueError(
                f"autoreset_mode must be one of {sorted(modes)}, got {autoreset_mode!r}"
            )
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.autoreset_mode = mode
        if (
            isinstance(num_envs, bool)
            or not isinstance(num_envs, (int, np.integer))
            or num_envs < 1
        ):
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.definitions = definitions
        self.num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self._rngs: list[np.random.Generator] = [
            seeding.np_random()[0] for _ in range(self.num_envs)
        ]
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._final_flags = (np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool))
        self._was_reset = False
        default = definitions.sample_tasks(1, rng=np.random.default_rng(0))[0]
        self.set_attr("task", [default] * self.num_envs)

    # --- physics hooks -------------------------------------------------------------------
    def _reset_physics(self, ids: np.ndarray) -> None:
        """Reset sub-envs ``ids``, drawing their initial states from ``self._rngs[i]`` in order."""
        raise NotImplementedError

    def _step_physics(self, actions: np.ndarray, ids: np.ndarray | None) -> None:
        """Advance sub-envs ``ids`` (``None``: all) by one env step under ``actions``."""
        raise NotImplementedError

    def _state(self) -> Arrays:
        """The current state of every sub-env, as the family's named arrays (copies)."""
        raise NotImplementedError

    # --- tasks ------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[dict[str, Any]]:
        return [dict(t) for t in self._tasks]

    def sample_tasks(self, n: int, rng: np.random.Generator | None = None) -> list[dict[str, Any]]:
        """Tasks from the family's distribution, as the single env's ``sample_tasks``."""
        return self.definitions.sample_tasks(n, rng)

    @property
    def task(self) -> dict[str, Any]:
        raise AttributeError(
            "a vector env has one task per sub-env: read them with vec.get_attr('task')"
        )

    @task.setter
    def task(self, value: Any) -> None:
        raise AttributeError(
            "a vector env has one task per sub-env: set them with "
            "vec.set_attr('task', [task_0, ..., task_N-1]) (one task dict per sub-env)"
        )

    def set_attr(self, name: str, values: Any) -> None:
        """Set ``task`` per sub-env (a list of ``num_envs`` task dicts), as Gymnasium's vector envs."""
        if name != "task":
            raise AttributeError(
                f"{type(self).__name__} has only the settable attribute 'task', not {name!r}"
            )
        tasks = validate_tasks(self.definitions.task_fields, values, self.num_envs)
        self._tasks = tasks
        self._task_arrays = task_arrays(self.definitions.task_fields, tasks)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        if name != "task":
            raise AttributeError(
                f"{type(self).__name__} has only the attribute 'task', not {name!r}"
            )
        return tuple(self.tasks)

    # --- the Gymnasium API ----------------------------------------------------------------
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        seeds: Sequence[int | None]
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"expected {self.num_envs} seeds (one per sub-env), got {len(seeds)}"
                )
        for i, s in enumerate(seeds):
            if s is not None:
                self._rngs[i] = seeding.np_random(s)[0]
        ids = np.arange(self.num_envs)
        self._reset_physics(ids)
        self._elapsed[:] = 0
        self._autoreset[:] = False
        self._final_flags = (np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool))
        self._was_reset = True
        state = self._state()
        infos = self._with_masks(self.definitions.reset_info(state), np.ones(self.num_envs, bool))
        return self.definitions.observation(state), infos

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._was_reset:
            raise ResetNeeded("Cannot call step() before reset(): call reset(seed=...) first.")
        actions = np.asarray(actions, dtype=np.float64)
        expected = (self.num_envs, *self.single_action_space.shape)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        done = self._autoreset
        frozen = self.autoreset_mode == AutoresetMode.DISABLED
        resetting = np.flatnonzero(done) if not frozen else np.zeros(0, dtype=np.int64)
        stepping = np.flatnonzero(~done) if done.any() else None
        before = self._state()
        if stepping is None or len(stepping):
            self._step_physics(actions, stepping)
        state = self._state()
        obs, reward, terminated, info = self.definitions.step_arrays(
            before, state, actions, self._task_arrays
        )
        self._elapsed[~done] += 1
        truncated = (
            self._elapsed >= self.max_episode_steps
            if self.max_episode_steps is not None
            else np.zeros(self.num_envs, dtype=bool)
        )
        if frozen and done.any():
            # Finished sub-envs did not move: they report reward 0 and their final flags.
            reward[done] = 0.0
            terminated[done], truncated[done] = (
                self._final_flags[0][done],
                self._final_flags[1][done],
            )
            infos = self._with_masks(info, ~done)
        elif len(resetting):
            # Gymnasium's NEXT_STEP autoreset: these sub-envs ignore their action, start a
            # new episode, and report the reset observation and info with reward 0.
            self._reset_physics(resetting)
            reset_state = self._state()
            obs[resetting] = self.definitions.observation(reset_state)[resetting]
            reward[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
            self._elapsed[resetting] = 0
            reset_info = self.definitions.reset_info(reset_state)
            for key, value in reset_info.items():
                info[key] = np.where(done, value, info[key]) if key in info else value
            infos = self._with_masks(info, ~done, always=reset_info)
        else:
            infos = self._with_masks(info, np.ones(self.num_envs, dtype=bool))
        ending = terminated | truncated
        if self.autoreset_mode == AutoresetMode.SAME_STEP and ending.any():
            obs, infos = self._reset_within_step(np.flatnonzero(ending), obs, infos)
            ending = np.zeros_like(ending)
        self._autoreset = ending
        self._final_flags = (terminated.copy(), truncated.copy())
        return obs, reward.astype(np.float64), terminated, truncated, infos

    def _reset_within_step(
        self, ids: np.ndarray, obs: np.ndarray, infos: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """SAME_STEP autoreset of sub-envs ``ids``, in the layout of Gymnasium's sync vector env."""
        ended = np.zeros(self.num_envs, dtype=bool)
        ended[ids] = True
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in ids:
            final_obs[i] = obs[i].copy()
        final_info = self._with_masks(
            {k: v for k, v in infos.items() if not k.startswith("_")}, ended
        )
        self._reset_physics(ids)
        self._elapsed[ids] = 0
        reset_state = self._state()
        obs = obs.copy()
        obs[ids] = self.definitions.observation(reset_state)[ids]
        reset_info = self.definitions.reset_info(reset_state)
        merged = {k: v for k, v in infos.items() if not k.startswith("_")}
        for key, value in reset_info.items():
            merged[key] = np.where(ended, value, merged[key]) if key in merged else value
        infos = self._with_masks(merged, ~ended, always=reset_info)
        infos.update(
            final_obs=final_obs,
            _final_obs=ended.copy(),
            final_info=final_info,
            _final_info=ended.copy(),
        )
        return obs, infos

    def _with_masks(
        self, info: Arrays, present: np.ndarray, always: Arrays | None = None
    ) -> dict[str, Any]:
        """Gymnasium's vector info layout: each key with a ``_key`` mask of the sub-envs that have it."""
        out: dict[str, Any] = {}
        for key, value in info.items():
            mask = np.ones(self.num_envs, bool) if always and key in always else present
            if not mask.any():
                continue  # as in Gymnasium: a key no sub-env reported is absent
            out[key] = np.where(mask, value, np.zeros_like(value))
            out["_" + key] = mask.copy()
        return out

    def close_extras(self, **kwargs: Any) -> None:
        pass
