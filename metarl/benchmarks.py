"""Speed measurements that print numbers (never timed unit tests)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

import envs

__all__ = [
    "benchmark_iteration",
    "benchmark_sampler",
    "env_steps_per_second",
    "raw_physics_steps_per_second",
    "sampler_steps_per_second",
]


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


def raw_physics_steps_per_second(
    env_id: str, num_sims: int, steps: int, seed: int = 0
) -> float | None:
    """``mujoco.batch`` alone: ``num_sims`` simulations of the env's model, random controls,
    ``frame_skip`` substeps per env step, no observation, reward or policy. ``None`` for an
    env without MuJoCo physics."""
    import mujoco.batch
    from gymnasium.envs.registration import load_env_creator

    envs.register_envs()
    cls = load_env_creator(gym.spec(env_id).entry_point)
    model = cls.physics_model() if hasattr(cls, "physics_model") else None
    if model is None:
        return None
    batch = mujoco.batch.Batch(model, num_sims, 0)
    ctrl = batch.bind("ctrl")
    low, high = model.actuator_ctrlrange.T
    controls = np.random.default_rng(seed).uniform(low, high, (steps, num_sims, model.nu))
    batch.reset()
    start = time.perf_counter()
    for t in range(steps):
        ctrl[:] = controls[t]
        batch.step(nstep=cls.frame_skip)
    return steps * num_sims / (time.perf_counter() - start)


def sampler_steps_per_second(
    env_id: str,
    kind: str,
    tasks: int,
    episodes: int,
    horizon: int,
    seed: int = 0,
    repeats: int = 1,
    workers: int = 2,
) -> dict[str, float]:
    """Throughput of one meta-batch collection with the paper's policy (2x100 ReLU) and
    per-task parameters, measured after the sampler is built (best of ``repeats``).

    ``steps_per_s`` counts the meta-batch's ``tasks * episodes * horizon`` env steps
    (as the benchmark's ``env_steps``); ``collected_steps_per_s`` counts only the steps
    taken before each episode ended. They differ where episodes terminate (Ant): a
    sampler that keeps stepping finished episodes pays for steps it throws away.
    ``kind: ray`` runs ``workers`` actors (one thread each) and adds the bytes a
    ``sample`` call moves: the policy and parameters out (``bytes_out``, put once) and
    the episodes back (``bytes_back``).
    """
    import pickle

    import torch

    from metarl.config import SamplerConfig, coerce_variant
    from metarl.policies import GaussianMLPPolicy, params_of, stack_params
    from metarl.sampling import make_sampler

    torch.manual_seed(seed)
    settings = {"kind": kind, **({"workers": workers} if kind == "ray" else {})}
    config = coerce_variant(settings, SamplerConfig, "sampler")
    with make_sampler(env_id, tasks, episodes, horizon, config) as sampler:
        policy = GaussianMLPPolicy(sampler.obs_dim, sampler.act_dim, (100, 100), "relu")
        params = stack_params([params_of(policy)] * tasks)
        task_list = sampler.sample_tasks(tasks, np.random.default_rng(seed))
        best = {"steps_per_s": 0.0, "collected_steps_per_s": 0.0}
        for r in range(repeats):
            start = time.perf_counter()
            collected = sampler.sample(policy, params, task_list, seed=seed + r)
            elapsed = time.perf_counter() - start
            if tasks * episodes * horizon / elapsed > best["steps_per_s"]:
                best = {
                    "steps_per_s": tasks * episodes * horizon / elapsed,
                    "collected_steps_per_s": collected.num_steps / elapsed,
                }
        if kind == "ray":
            detached = {k: v.detach() for k, v in params.items()}
            best["workers"] = workers
            best["bytes_out"] = len(pickle.dumps(policy)) + len(pickle.dumps(detached))
            best["bytes_back"] = len(pickle.dumps(collected))
        return best


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure_in_child(queue, fn, args) -> None:
    try:
        queue.put((fn(*args), peak_rss_mib(), None))
    except BaseException as exc:
        queue.put((None, peak_rss_mib(), f"{type(exc).__name__}: {exc}"))


def in_fresh_process(fn, *args) -> tuple[float | None, float]:
    """``fn(*args)`` in a new process; its result and that process's peak memory (MiB).

    Each sampler is measured alone, so one's memory (800 Gymnasium envs) or leftover
    threads cannot colour another's figures.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_measure_in_child, args=(queue, fn, args))
    child.start()
    result, rss, error = queue.get()
    child.join()
    if error is not None:
        raise RuntimeError(f"{getattr(fn, '__name__', fn)}{args} failed: {error}")
    return result, rss


def benchmark_sampler(
    env_id: str,
    tasks: int,
    episodes: int,
    horizon: int,
    async_envs: int = 16,
    seed: int = 0,
    repeats: int = 3,
    kinds: tuple[str, ...] = ("batched", "sync", "async"),
    workers: int = 2,
) -> dict:
    """The sampler benchmark of ``metarl benchmark sampler``; every figure comes from this run.

    Raw physics and each sampler run in a fresh process, best of ``repeats`` collections
    (raw physics: best of ``repeats`` runs, interleaved in the same way). The async sampler
    runs one process per sub-env (Gymnasium's AsyncVectorEnv), so it is measured on
    ``async_envs`` sub-envs of one task rather than hundreds of processes. ``kinds``
    picks the samplers (the batched one always runs: the ratios are against it); ``ray``
    runs ``workers`` actors on a local Ray.
    """
    envs.register_envs()
    num_sims = tasks * episodes
    raw, raw_rss = in_fresh_process(_best_raw, env_id, num_sims, horizon, seed, repeats)
    batched, batched_rss = in_fresh_process(
        sampler_steps_per_second, env_id, "batched", tasks, episodes, horizon, seed, repeats
    )
    samplers = {"batched": {**batched, "peak_rss_mib": batched_rss}}
    if "sync" in kinds:
        sync, rss = in_fresh_process(
            sampler_steps_per_second, env_id, "sync", tasks, episodes, horizon, seed, 1
        )
        samplers["sync"] = {**sync, "peak_rss_mib": rss}
    if "async" in kinds:
        rate, rss = in_fresh_process(
            sampler_steps_per_second, env_id, "async", 1, async_envs, horizon, seed, 1
        )
        samplers["async"] = {**rate, "num_envs": async_envs, "peak_rss_mib": rss}
    if "ray" in kinds:
        rate, rss = in_fresh_process(
            sampler_steps_per_second,
            env_id,
            "ray",
            tasks,
            episodes,
            horizon,
            seed,
            repeats,
            workers,
        )
        samplers["ray"] = {**rate, "peak_rss_mib": rss}
    ratios = {
        "batched_over_raw": batched["steps_per_s"] / raw if raw else None,
        "batched_collected_over_raw": batched["collected_steps_per_s"] / raw if raw else None,
    }
    if "sync" in samplers:
        ratios["batched_over_sync"] = batched["steps_per_s"] / samplers["sync"]["steps_per_s"]
    if "ray" in samplers:
        ratios["ray_over_batched"] = samplers["ray"]["steps_per_s"] / batched["steps_per_s"]
    return {
        "env": env_id,
        "env_steps": num_sims * horizon,
        "raw_physics_steps_per_s": raw,
        "samplers": samplers,
        "ratios": ratios,
        "raw_peak_rss_mib": raw_rss,
    }


def _best_raw(env_id: str, num_sims: int, horizon: int, seed: int, repeats: int) -> float | None:
    rates = [
        raw_physics_steps_per_second(env_id, num_sims, horizon, seed + r) for r in range(repeats)
    ]
    return None if rates[0] is None else max(rates)


class IterationRunner(Protocol):
    """What :func:`benchmark_iteration` needs of the training loop's ``Trainer``."""

    def make_sampler(self) -> Any: ...

    def iteration(self, sampler: Any, iteration: int) -> dict[str, float]: ...

    def close(self) -> None: ...


def benchmark_iteration(
    make_trainer: Callable[[Path], IterationRunner], iterations: int = 3, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of sampling, adaptation and meta-optimisation over ``iterations``
    meta-iterations, after ``warmup`` more, of the trainer ``make_trainer(run_dir)`` builds.

    The run directory is a temporary one, removed afterwards. The caller builds the
    trainer, so that benchmarks do not depend on the training loop's module.
    """
    with tempfile.TemporaryDirectory(prefix="metarl-bench-") as tmp:
        trainer = make_trainer(Path(tmp) / "run")
        try:
            with trainer.make_sampler() as sampler:
                rows = [trainer.iteration(sampler, i) for i in range(warmup + iterations)]
        finally:
            trainer.close()
    result = {
        key: statistics.median(row[key] for row in rows[warmup:])
        for key in ("sampling_s", "adaptation_s", "meta_optimization_s")
    }
    result["learning_over_sampling"] = (
        result["adaptation_s"] + result["meta_optimization_s"]
    ) / result["sampling_s"]
    return result
