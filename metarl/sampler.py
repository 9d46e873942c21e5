"""Roll out a Gymnasium VectorEnv for a meta-batch: one episode slot per sub-env.

Sub-env ``j`` runs episode ``j % E`` of task ``j // E``. Its actions come from
its own task's parameters, the policy evaluated task by task
(:func:`~metarl.policies.task_stats`) on a copy of each task's parameters. The sampler
runs under ``no_grad`` and knows nothing of learning: it returns
:class:`~metarl.episodes.Episodes` stacked over tasks (``episodes[k]`` is task
``k``'s batch).

With the batched engine, the sub-envs are split into two groups at a task
boundary and pipelined: while one group's physics runs on the ``mujoco.batch``
thread pool (the GIL released), the main thread computes the other group's
actions, so the policy's forward pass hides behind physics.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

import envs
from metarl.config import SamplerConfig, check_non_negative
from metarl.episodes import Episodes
from metarl.policies import Params, gaussian_log_prob_of_noise, stacked_tasks, task_stats

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "LOCAL_KINDS",
    "AsyncSamplerConfig",
    "BaseSampler",
    "BatchedSamplerConfig",
    "NonFiniteError",
    "Sampler",
    "SamplerError",
    "SyncSamplerConfig",
]

LOCAL_KINDS = ("batched", "sync", "async")
"""The kinds :class:`Sampler` runs in this process (``ray`` is :mod:`metarl.ray_sampler`'s)."""


@dataclass(frozen=True)
class BatchedSamplerConfig(SamplerConfig):
    """``sampler: {kind: batched}``: the env's batched engine (``mujoco.batch`` or numpy)."""

    NAME: ClassVar[str] = "batched"

    kind: Literal["batched"] = "batched"
    """Selects this sampler under ``sampler:``."""
    num_threads: int = 0
    """Worker threads for the physics; 0 uses every core."""

    def _check(self) -> None:
        check_non_negative(self.num_threads, "num_threads")


@dataclass(frozen=True)
class SyncSamplerConfig(SamplerConfig):
    """``sampler: {kind: sync}``: Gymnasium's SyncVectorEnv, the reference path for any env."""

    NAME: ClassVar[str] = "sync"

    kind: Literal["sync"] = "sync"
    """Selects this sampler under ``sampler:``."""


@dataclass(frozen=True)
class AsyncSamplerConfig(SamplerConfig):
    """``sampler: {kind: async}``: Gymnasium's AsyncVectorEnv, one process per sub-env."""

    NAME: ClassVar[str] = "async"

    kind: Literal["async"] = "async"
    """Selects this sampler under ``sampler:``."""


class SamplerError(RuntimeError):
    """The environments failed (a worker died or stopped answering)."""


class NonFiniteError(FloatingPointError):
    """An environment returned a NaN or infinite observation or reward."""


class BaseSampler:
    """What every sampler kind shares: tasks from its env, and closing as a context manager
    (``with make_sampler(...) as sampler:`` closes its workers on exit, error and Ctrl-C).

    A kind adds ``sample(policy, params, tasks, seed) -> Episodes`` and ``close()``.
    """

    env_id: str
    env_kwargs: dict[str, Any]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    def sample_tasks(self, n: int, rng: np.random.Generator | None = None) -> list[dict[str, Any]]:
        """Tasks from the env's distribution."""
        return env_tasks(self.env_id, self.env_kwargs, n, rng)


@dataclass
class _Group:
    """A vector env serving a contiguous block of sub-envs (and whole tasks)."""

    env: gym.vector.VectorEnv
    rows: slice  # sub-env rows of the meta-batch
    tasks: slice  # task indices whose episodes these rows hold


class Sampler(BaseSampler):
    """Collects ``episodes_per_task`` episodes of ``horizon`` steps for each of ``num_tasks`` tasks.

    Args:
        env_id: a registered Gymnasium id (``import envs`` registers the metarl ones).
        num_tasks: tasks per meta-batch.
        episodes_per_task: episodes (sub-envs) per task.
        horizon: steps per episode; episodes are truncated there.
        kind: ``batched`` (the env's ``vector_entry_point``: ``mujoco.batch`` or numpy),
            ``sync`` or ``async`` (Gymnasium's reference vector envs, for any env).
        num_threads: threads of the batched engine's pool (0: all cores).
        pipeline: overlap the policy with physics by stepping two groups of sub-envs
            in turn (batched engine only).
        step_timeout: seconds to wait for an async worker before declaring it dead.
        env_kwargs: constructor keywords of the env (its options), for every kind.

    Use it as a context manager (``with Sampler(...) as sampler:``) so that its
    workers are closed on exit, on error and on Ctrl-C.
    """

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int,
        kind: str = "batched",
        num_threads: int = 0,
        pipeline: bool = True,
        step_timeout: float = 30.0,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if kind not in LOCAL_KINDS:
            raise ValueError(
                f"sampler kind must be one of {LOCAL_KINDS} (ray: use metarl.sampling.make_sampler), got {kind!r}"
            )
        for name, value in (
            ("num_tasks", num_tasks),
            ("episodes_per_task", episodes_per_task),
            ("horizon", horizon),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        envs.register_envs()
        self.env_id, self.kind = env_id, kind
        self.num_tasks, self.episodes_per_task, self.horizon = num_tasks, episodes_per_task, horizon
        self.num_envs = num_tasks * episodes_per_task
        self.step_timeout = step_timeout
        self.env_kwargs = dict(env_kwargs or {})
        self._pool: ThreadPoolExecutor | None = None
        self._groups: list[_Group] = []
        try:
            if kind == "batched":
                splits = (
                    [0, num_tasks // 2, num_tasks]
                    if pipeline and num_tasks >= 2
                    else [0, num_tasks]
                )
                for lo, hi in itertools.pairwise(splits):
                    vec = gym.make_vec(
                        env_id,
                        num_envs=(hi - lo) * episodes_per_task,
                        vectorization_mode="vector_entry_point",
                        max_episode_steps=horizon,
                        # One episode per sub-env: finished ones stay frozen and their
                        # physics is skipped instead of running a discarded new episode.
                        autoreset_mode="disabled",
                        **({"num_threads": num_threads} if _engine_takes_threads(env_id) else {}),
                        **self.env_kwargs,
                    )
                    rows = slice(lo * episodes_per_task, hi * episodes_per_task)
                    self._groups.append(_Group(vec, rows, slice(lo, hi)))
                if len(self._groups) > 1:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="metarl-physics")
            else:
                vec = gym.make_vec(
                    env_id,
                    num_envs=self.num_envs,
                    vectorization_mode=kind,
                    max_episode_steps=horizon,
                    **self.env_kwargs,
                )
                self._groups.append(_Group(vec, slice(0, self.num_envs), slice(0, num_tasks)))
        except BaseException:
            self.close()
            raise
        first = self._groups[0].env
        self.obs_dim = int(np.prod(first.single_observation_space.shape))
        self.act_dim = int(np.prod(first.single_action_space.shape))
        space = first.single_action_space
        self.action_low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        self.action_high = np.asarray(space.high, dtype=np.float64).reshape(-1)

    # --- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close every vector env and the physics thread (idempotent)."""
        for group in self._groups:
            try:
                if isinstance(group.env, gym.vector.AsyncVectorEnv):
                    group.env.close(terminate=True)
                else:
                    group.env.close()
            except Exception as err:  # closing must go on (we may be here for another error)
                # A dead worker's pipe is broken: mark the env closed so its __del__ does not
                # try again and print an "Exception ignored" traceback at exit.
                group.env.closed = True
                warnings.warn(
                    f"closing a vector env of {self.env_id} failed: {type(err).__name__}: {err}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self._groups = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # --- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        policy: torch.nn.Module,
        params: Params | None,
        tasks: Sequence[dict[str, Any]],
        seed: int,
        *,
        block: tuple[int, int] | None = None,
    ) -> Episodes:
        """Episodes for every task, stacked ``[task, time, episode, ...]``.

        Args:
            policy: a :class:`~metarl.policies.GaussianMLPPolicy` (any module whose
                ``forward(obs, stats=True)`` returns ``(mean, std)``).
            params: one parameter set per task (tensors with a leading task axis of
                ``num_tasks``), or one set for all tasks (no task axis), or ``None``
                for the policy's own parameters.
            tasks: ``num_tasks`` task dicts.
            seed: seeds the environments (sub-env ``j`` with ``seed + j``) and the
                action noise: the same seed gives the same episodes.
            block: ``(first_row, total_rows)`` when these tasks are a contiguous block
                of a larger meta-batch whose other blocks are sampled elsewhere (a Ray
                worker's share): the env seeds and action noise are those of these rows
                in the whole batch, so the blocks together equal one sampler's episodes.
        """
        check_sample_call(bool(self._groups), tasks, self.num_tasks)
        params, stacked = sampling_params(policy, params, self.num_tasks)
        if not stacked:
            params = {name: p.expand(self.num_tasks, *p.shape) for name, p in params.items()}
        E = self.episodes_per_task
        for group in self._groups:
            lo, hi = group.tasks.start, group.tasks.stop
            group.env.set_attr("task", [tasks[k] for k in range(lo, hi) for _ in range(E)])
        first, total = (0, self.num_envs) if block is None else block
        if not 0 <= first <= total - self.num_envs:
            raise ValueError(f"block {block} cannot hold this sampler's {self.num_envs} rows")
        generator = torch.Generator().manual_seed(seed)
        # The whole batch's noise, of which these rows take their own (cheap: T x rows x act).
        noise = torch.randn(self.horizon, total, self.act_dim, generator=generator)
        rollout = _Rollout(self, policy, params, tasks, noise[:, first : first + self.num_envs])
        return rollout.run(first_seed=seed + first)

    def _step(self, group: _Group, actions: np.ndarray) -> tuple:
        env = group.env
        if isinstance(env, gym.vector.AsyncVectorEnv):
            env.step_async(actions)
            try:
                return env.step_wait(timeout=self.step_timeout)
            # A dead worker shows as a broken pipe; a hung one as multiprocessing's
            # TimeoutError, which is not the built-in TimeoutError.
            except (
                EOFError,
                BrokenPipeError,
                ConnectionResetError,
                TimeoutError,
                multiprocessing.TimeoutError,
            ) as exc:
                raise SamplerError(
                    f"an async worker of {self.env_id} died or did not answer within "
                    f"{self.step_timeout:.0f} s ({type(exc).__name__}: {exc})"
                ) from exc
        return env.step(actions)


class _Rollout:
    """One :meth:`Sampler.sample` call: the per-task parameters, the action noise, the
    buffers, and which sub-envs are still in their episode.

    :meth:`act` turns a group's observations into actions, :meth:`record` stores what a
    group's step returned, and :meth:`run` drives the groups through the horizon, in turn
    or pipelined on the sampler's physics thread.
    """

    def __init__(
        self,
        sampler: Sampler,
        policy: torch.nn.Module,
        params: Params,
        tasks: Sequence[dict[str, Any]],
        noise: Tensor,
    ) -> None:
        self.sampler, self.policy, self.params, self.tasks = sampler, policy, params, tasks
        # Each task's parameters in memory of their own (see act).
        self.task_params = [
            {name: p[j].clone() for name, p in params.items()} for j in range(len(tasks))
        ]
        self.noise = noise  # [time, sub-env, action]
        self.buffers = _Buffers(sampler.horizon, sampler.num_envs, sampler.obs_dim, sampler.act_dim)
        self.alive = np.ones(sampler.num_envs, dtype=bool)

    def run(self, first_seed: int) -> Episodes:
        """Reset sub-env ``j`` with ``first_seed + j``, step every group to the horizon."""
        s = self.sampler
        threads = torch.get_num_threads()
        if s._pool is not None:
            # The physics pool owns the cores; one torch thread avoids fighting it.
            torch.set_num_threads(1)
        try:
            observations = [
                g.env.reset(seed=[first_seed + j for j in range(g.rows.start, g.rows.stop)])[0]
                for g in s._groups
            ]
            actions = [self.act(g, o, 0) for g, o in zip(s._groups, observations, strict=True)]
            if s._pool is None:
                self._in_turn(actions)
            else:
                self._pipelined(actions)
        finally:
            torch.set_num_threads(threads)
        return self.buffers.episodes(s.num_tasks, s.episodes_per_task, self.tasks)

    def _in_turn(self, actions: list[np.ndarray | None]) -> None:
        """Step the groups one after the other on this thread."""
        s = self.sampler
        for t in range(s.horizon):
            for gi, group in enumerate(s._groups):
                actions[gi] = self._next(group, t, s._step(group, actions[gi]))

    def _pipelined(self, actions: list[np.ndarray | None]) -> None:
        """Step group ``g`` on the physics thread while this thread serves the other group."""
        s, pool = self.sampler, self.sampler._pool
        groups = s._groups
        assert pool is not None
        pending = pool.submit(s._step, groups[0], actions[0])
        for t in range(s.horizon):
            for gi, group in enumerate(groups):
                result = pending.result()
                nxt = (gi + 1) % len(groups)
                if t + (gi + 1) // len(groups) < s.horizon:
                    pending = pool.submit(s._step, groups[nxt], actions[nxt])
                actions[gi] = self._next(group, t, result)

    def _next(self, group: _Group, t: int, result: tuple) -> np.ndarray | None:
        """Record step ``t`` of ``group``; its actions for step ``t + 1`` (None after the last)."""
        obs = self.record(group, t, result)
        return self.act(group, obs, t + 1) if t + 1 < self.sampler.horizon else None

    def act(self, group: _Group, obs: np.ndarray, t: int) -> np.ndarray:
        """The group's actions at step ``t``, clipped to the action space; stores the step."""
        s, rows, k = self.sampler, group.rows, group.tasks
        obs_t = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, s.obs_dim)
        self._check_finite(obs_t.numpy(), group, "observation", t)
        # One task at a time, on that task's parameters and observations in memory of
        # their own: a sub-env's action then comes from the same [E, obs] products on
        # identically placed data whatever the grouping of tasks, so the episodes do not
        # depend on the pipeline's split or a Ray worker's block down to the last bit.
        # (vmap over per-task views of the stacked parameters rounded differently with the
        # task's place in its group on AMD EPYC; a copy per task fixes the placement.)
        obs_k = obs_t.reshape(k.stop - k.start, s.episodes_per_task, s.obs_dim)
        stats = [
            task_stats(self.policy, self.task_params[k.start + i], obs_k[i].clone())
            for i in range(k.stop - k.start)
        ]
        mean, std = torch.cat([m for m, _ in stats]), torch.cat([d for _, d in stats])
        mean, std = mean.reshape(-1, s.act_dim), std.reshape(-1, s.act_dim)
        eps = self.noise[t, rows]
        action = mean + std * eps
        buf = self.buffers
        buf.observations[t, rows] = obs_t.numpy()
        buf.actions[t, rows] = action.numpy()
        buf.log_probs[t, rows] = gaussian_log_prob_of_noise(eps, std).numpy()
        # The env gets the action clipped to its bounds; the episodes keep the
        # sample, whose log-probability the objectives see (stable-baselines3's
        # convention; rllab's `normalize` clips too).
        return np.clip(action.numpy().astype(np.float64), s.action_low, s.action_high)

    def record(self, group: _Group, t: int, result: tuple) -> np.ndarray:
        """Store the rewards of the group's step ``t``; its next observations."""
        obs, reward, terminated, _, _ = result
        rows, alive = group.rows, self.alive
        self._check_finite(reward, group, "reward", t)
        self.buffers.mask[t, rows] = alive[rows]
        self.buffers.rewards[t, rows] = np.where(alive[rows], reward, 0.0)
        alive[rows] &= ~np.asarray(terminated, dtype=bool)
        return obs

    def _check_finite(self, values: np.ndarray, group: _Group, what: str, t: int) -> None:
        alive = self.alive[group.rows]
        bad = ~np.isfinite(values).reshape(len(alive), -1).all(axis=1) & alive
        if bad.any():
            E = self.sampler.episodes_per_task
            j = group.rows.start + int(np.flatnonzero(bad)[0])
            k = j // E
            raise NonFiniteError(
                f"non-finite {what} from sub-env {j} (task {k}: {self.tasks[k]}, episode "
                f"{j % E}) at step {t} of {self.sampler.env_id}"
            )


class _Buffers:
    """Preallocated ``[time, sub-env]`` arrays, reshaped to ``[task, time, episode]`` at the end."""

    def __init__(self, T: int, N: int, obs_dim: int, act_dim: int) -> None:
        self.observations = np.zeros((T, N, obs_dim), dtype=np.float32)
        self.actions = np.zeros((T, N, act_dim), dtype=np.float32)
        self.rewards = np.zeros((T, N), dtype=np.float32)
        self.mask = np.zeros((T, N), dtype=np.float32)
        self.log_probs = np.zeros((T, N), dtype=np.float32)

    def episodes(self, K: int, E: int, tasks: Sequence[dict[str, Any]]) -> Episodes:
        # Steps after a termination hold zeros whatever the engine did meanwhile
        # (an autoreset's new episode, or a frozen sub-env), so every engine agrees.
        alive = self.mask.astype(bool)
        for array in (self.observations, self.actions, self.log_probs):
            array[~alive] = 0.0

        def per_task(array: np.ndarray) -> Tensor:
            T = array.shape[0]
            shaped = array.reshape(T, K, E, *array.shape[2:])
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(shaped, 1, 0)))

        return Episodes(
            observations=per_task(self.observations),
            actions=per_task(self.actions),
            rewards=per_task(self.rewards),
            mask=per_task(self.mask),
            log_probs=per_task(self.log_probs),
            tasks=tuple(dict(t) for t in tasks),
        )


def check_sample_call(is_open: bool, tasks: Sequence[dict[str, Any]], num_tasks: int) -> None:
    """What every sampler kind checks first: it is open, and it got one task per task slot."""
    if not is_open:
        raise SamplerError("this sampler is closed; create a new one")
    if len(tasks) != num_tasks:
        raise ValueError(f"expected {num_tasks} tasks, got {len(tasks)}")


def sampling_params(
    policy: torch.nn.Module, params: Params | None, num_tasks: int
) -> tuple[Params, bool]:
    """The detached parameters to sample with (``None``: the policy's own), and whether they
    are stacked over the ``num_tasks`` tasks of a sampler (False: shared by all tasks);
    stacked over another number of tasks is a ValueError."""
    params = {k: v.detach() for k, v in (params or dict(policy.named_parameters())).items()}
    count = stacked_tasks(policy, params)
    if count is not None and count != num_tasks:
        raise ValueError(f"params are stacked over {count} tasks; this sampler has {num_tasks}")
    return params, count is not None


@contextlib.contextmanager
def single_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> Iterator[gym.Env]:
    """One env of ``env_id`` (with its options) for a question about it, closed after."""
    env = gym.make(env_id, **dict(env_kwargs or {}))
    try:
        yield env
    finally:
        env.close()


def env_tasks(
    env_id: str, env_kwargs: Mapping[str, Any] | None, n: int, rng: np.random.Generator | None
) -> list[dict[str, Any]]:
    """``n`` tasks from the env's distribution."""
    with single_env(env_id, env_kwargs) as env:
        return env.unwrapped.sample_tasks(n, rng)


def env_dims(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """The flat observation and action sizes of the env."""
    with single_env(env_id, env_kwargs) as env:
        return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


def _engine_takes_threads(env_id: str) -> bool:
    """Whether the env's batched engine takes ``num_threads`` (the family says so)."""
    from gymnasium.envs.registration import load_env_creator

    creator = load_env_creator(gym.spec(env_id).entry_point)
    return bool(getattr(creator, "engine_takes_threads", False))
