"""The sampler factory: the sampler a config's ``sampler:`` section describes.

Every kind has the same interface (:class:`~metarl.sampler.BaseSampler`:
``sample(policy, params, tasks, seed) -> Episodes``, a context manager), so the
trainer, evaluation and rendering ask this one function for theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metarl.config import SamplerConfig
from metarl.ray_sampler import RaySampler, RaySamplerConfig
from metarl.sampler import BaseSampler, BatchedSamplerConfig, Sampler

__all__ = ["make_sampler"]


def make_sampler(
    env_id: str,
    num_tasks: int,
    episodes_per_task: int,
    horizon: int,
    config: SamplerConfig,
    env_kwargs: Mapping[str, Any] | None = None,
) -> BaseSampler:
    """The sampler ``config`` describes: a :class:`~metarl.sampler.Sampler` for the local kinds
    (batched, sync, async), or a :class:`~metarl.ray_sampler.RaySampler` for ``kind: ray``."""
    if isinstance(config, RaySamplerConfig):
        return RaySampler(
            env_id,
            num_tasks,
            episodes_per_task,
            horizon,
            workers=min(config.workers, num_tasks),
            threads_per_worker=config.threads_per_worker,
            address=config.address,
            timeout_s=config.timeout_s,
            start_timeout_s=config.start_timeout_s,
            max_restarts=config.max_restarts,
            env_kwargs=env_kwargs,
        )
    num_threads = config.num_threads if isinstance(config, BatchedSamplerConfig) else 0
    return Sampler(
        env_id,
        num_tasks,
        episodes_per_task,
        horizon,
        kind=config.kind,
        num_threads=num_threads,
        env_kwargs=env_kwargs,
    )
