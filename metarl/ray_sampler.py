"""Rollout workers past one machine: Ray actors, each sampling a contiguous block of tasks.

:class:`RaySampler` has the :class:`~metarl.sampler.Sampler` interface
(``sample(policy, params, tasks, seed) -> Episodes``, a context manager) and
returns the same episodes as the batched sampler, bit for bit, for any number of
workers: worker ``w`` owns a batched engine for tasks ``[lo, hi)`` and samples
them as rows ``[lo * E, hi * E)`` of the whole meta-batch (the same env seeds and
action noise; see ``Sampler.sample``'s ``block``). Per ``sample`` call the driver
puts the policy and its parameters in Ray's object store once; every worker reads
them from there.

Faults: a worker that dies mid-sample (its process killed, its node lost) is
replaced and its block re-run with the same seeds, so the episodes equal an
undisturbed run's; after ``max_restarts`` replacements in one call, or when a
replacement cannot start within ``timeout_s`` (no resources left),
:class:`~metarl.sampler.SamplerError` names the worker, its tasks and the cause.
Closing the sampler (also on error and Ctrl-C, as a context manager) kills the
actors and stops the Ray instance it started.

Ray is an optional dependency: ``pip install metarl[ray]``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from metarl.config import SamplerConfig, check_non_negative, check_positive
from metarl.episodes import Episodes, concat_episodes
from metarl.errors import InputError
from metarl.policies import Params
from metarl.sampler import (
    BaseSampler,
    Sampler,
    SamplerError,
    check_sample_call,
    env_dims,
    sampling_params,
)

__all__ = ["RaySampler", "RaySamplerConfig", "import_ray"]


@dataclass(frozen=True)
class RaySamplerConfig(SamplerConfig):
    """``sampler: {kind: ray}``: Ray actors, each sampling a contiguous block of the tasks, on
    this machine or a cluster."""

    NAME: ClassVar[str] = "ray"

    kind: Literal["ray"] = "ray"
    """Selects this sampler under ``sampler:``."""
    workers: int = 2
    """Ray actors, each sampling a contiguous block of the tasks."""
    threads_per_worker: int = 1
    """Physics threads, and CPUs asked of Ray, per actor."""
    address: str | None = None
    """null starts a local Ray; auto joins a running cluster; ray://host:port through Ray Client."""
    timeout_s: float = 30.0
    """Seconds a replacement actor may take to start before a SamplerError."""
    start_timeout_s: float = 300.0
    """Seconds the first actors may take to start (each imports torch and MuJoCo)."""
    max_restarts: int = 3
    """Dead actors replaced per sample call; 0 raises at the first death."""

    def _check(self) -> None:
        check_positive(self.workers, "workers")
        check_positive(self.threads_per_worker, "threads_per_worker")
        check_positive(self.timeout_s, "timeout_s")
        check_positive(self.start_timeout_s, "start_timeout_s")
        check_non_negative(self.max_restarts, "max_restarts")


_INSTALL = "the Ray sampler needs Ray: pip install 'metarl[ray]' (or pip install ray)"


def import_ray() -> Any:
    """The ``ray`` module, or an :class:`~metarl.errors.InputError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(f"sampler.kind is 'ray' but Ray is not installed; {_INSTALL}") from None
    return ray


class _Worker:
    """One actor: a batched :class:`Sampler` for a block of tasks (Ray wraps this class)."""

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int,
        threads: int,
        env_kwargs: Mapping[str, Any],
    ) -> None:
        torch.set_num_threads(max(1, threads))
        self.sampler = Sampler(
            env_id,
            num_tasks,
            episodes_per_task,
            horizon,
            kind="batched",
            num_threads=threads,
            env_kwargs=env_kwargs,
        )

    def pid(self) -> int:
        return os.getpid()

    def sample(
        self,
        policy: torch.nn.Module,
        params: Params,
        stacked: bool,
        tasks: Sequence[dict[str, Any]],
        seed: int,
        first_task: int,
        total_rows: int,
    ) -> Episodes:
        block = slice(first_task, first_task + len(tasks))
        mine = {name: p[block] for name, p in params.items()} if stacked else params
        first_row = first_task * self.sampler.episodes_per_task
        return self.sampler.sample(policy, mine, tasks, seed, block=(first_row, total_rows))


class RaySampler(BaseSampler):
    """Samples a meta-batch on ``workers`` Ray actors, each owning a contiguous block of tasks.

    Args:
        env_id, num_tasks, episodes_per_task, horizon: as :class:`~metarl.sampler.Sampler`.
        workers: actors (at most ``num_tasks``; tasks are split as evenly as possible).
        threads_per_worker: ``mujoco.batch`` threads (and CPUs asked of Ray) per actor.
        address: ``None`` starts a local Ray (stopped on ``close``); ``"auto"`` joins the
            cluster this machine is part of (``ray start --head`` / ``--address``); a
            ``ray://host:port`` address connects through Ray Client.
        timeout_s: how long a replacement actor may take to start before
            :class:`~metarl.sampler.SamplerError` (no resources to place it).
        start_timeout_s: the same for the first actors, which import torch and MuJoCo.
        max_restarts: replacements of dead actors allowed per ``sample`` call (0: none;
            the first death raises).
        env_kwargs: the env's options.
    """

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int,
        *,
        workers: int = 2,
        threads_per_worker: int = 1,
        address: str | None = None,
        timeout_s: float = 30.0,
        start_timeout_s: float = 300.0,
        max_restarts: int = 3,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        ray = import_ray()
        for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"sampler.{name} must be a positive int, got {value!r}")
        if workers > num_tasks:
            raise InputError(
                f"sampler.workers is {workers} but a meta-batch has only {num_tasks} tasks; "
                "use at most one worker per task"
            )
        self.env_id, self.num_tasks = env_id, num_tasks
        self.episodes_per_task, self.horizon = episodes_per_task, horizon
        self.threads, self.timeout_s, self.max_restarts = (
            threads_per_worker,
            timeout_s,
            max_restarts,
        )
        self.env_kwargs = dict(env_kwargs or {})
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                options["num_cpus"] = max(workers * threads_per_worker, os.cpu_count() or 1)
            ray.init(address=address, **options)
            self._owns_ray = True
        edges = np.linspace(0, num_tasks, workers + 1).round().astype(int)
        self.blocks = [(int(lo), int(hi)) for lo, hi in itertools.pairwise(edges)]
        self._remote = ray.remote(_Worker)
        self._actors: list[Any] = []
        try:
            self._actors = [self._spawn(w) for w in range(workers)]
            self._await_ready(range(workers), timeout_s=start_timeout_s)
        except BaseException:
            self.close()
            raise
        self.obs_dim, self.act_dim = env_dims(env_id, self.env_kwargs)

    # --- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Kill the actors and stop the Ray instance this sampler started (idempotent)."""
        for actor in self._actors:
            with contextlib.suppress(Exception):  # already dead: nothing to stop
                self._ray.kill(actor, no_restart=True)
        self._actors = []
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False

    def worker_pids(self) -> list[int]:
        """The process id of each worker (for monitoring, and for fault tests)."""
        return self._ray.get([actor.pid.remote() for actor in self._actors])

    # --- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        policy: torch.nn.Module,
        params: Params | None,
        tasks: Sequence[dict[str, Any]],
        seed: int,
    ) -> Episodes:
        """Episodes for every task, stacked ``[task, time, episode, ...]``, equal to the
        batched :class:`~metarl.sampler.Sampler`'s for the same arguments."""
        check_sample_call(bool(self._actors), tasks, self.num_tasks)
        params, stacked = sampling_params(policy, params, self.num_tasks)
        # Once per call: the policy and its parameters go to the object store.
        policy_ref = self._ray.put(policy)
        params_ref = self._ray.put(params)
        total_rows = self.num_tasks * self.episodes_per_task

        def launch(w: int) -> Any:
            lo, hi = self.blocks[w]
            return self._actors[w].sample.remote(
                policy_ref, params_ref, stacked, list(tasks[lo:hi]), seed, lo, total_rows
            )

        pending = {launch(w): w for w in range(len(self._actors))}
        results: dict[int, Episodes] = {}
        restarts = 0
        while pending:
            done, _ = self._ray.wait(list(pending), num_returns=1)
            w = pending.pop(done[0])
            try:
                results[w] = self._ray.get(done[0])
            except self._ray.exceptions.RayActorError as err:
                cause = f"{type(err).__name__}: {str(err).splitlines()[0]}"
                if restarts >= self.max_restarts:
                    raise SamplerError(
                        f"Ray worker {w} (tasks {self.blocks[w][0]}..{self.blocks[w][1] - 1}) died "
                        f"and {restarts} of sampler.max_restarts={self.max_restarts} replacements "
                        f"were used ({cause})"
                    ) from None
                restarts += 1
                self._actors[w] = self._spawn(w)
                self._await_ready([w], cause)
                pending[launch(w)] = w
        return concat_episodes([results[w] for w in range(len(self.blocks))])

    # --- workers ----------------------------------------------------------------------------
    def _spawn(self, w: int) -> Any:
        lo, hi = self.blocks[w]
        return self._remote.options(num_cpus=self.threads, max_restarts=0).remote(
            self.env_id,
            hi - lo,
            self.episodes_per_task,
            self.horizon,
            self.threads,
            self.env_kwargs,
        )

    def _await_ready(
        self, workers: Sequence[int], cause: str | None = None, timeout_s: float | None = None
    ) -> None:
        """Wait until the actors answer, at most ``timeout_s``; else a :class:`SamplerError`."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        refs = {self._actors[w].pid.remote(): w for w in workers}
        start = time.monotonic()
        ready, waiting = self._ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        for ref in ready:
            try:
                self._ray.get(ref)
            except Exception as err:
                w = refs[ref]
                raise SamplerError(
                    f"Ray worker {w} could not start: {type(err).__name__}: {err}"
                ) from None
        if waiting:
            w = refs[waiting[0]]
            why = f" after the previous one died ({cause})" if cause else ""
            raise SamplerError(
                f"Ray worker {w} (tasks {self.blocks[w][0]}..{self.blocks[w][1] - 1}) did not start "
                f"within {timeout_s:g} s{why} (sampler.timeout_s, start_timeout_s); the cluster has no free "
                f"resources for it ({time.monotonic() - start:.0f} s waited)"
            )
