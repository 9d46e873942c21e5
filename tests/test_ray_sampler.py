"""The Ray sampler on a local Ray (2 actors): the batched sampler's episodes bit for bit,
dead workers replaced (or a SamplerError in bounded time), nothing left running."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch
from conftest import CONFIGS, tiny_navigation_config

from metarl.errors import InputError
from metarl.policies import GaussianMLPPolicy, params_of, stack_params
from metarl.ray_sampler import RaySamplerConfig
from metarl.sampler import Sampler, SamplerError
from metarl.sampling import make_sampler

ray = pytest.importorskip("ray")

CHEETAH = "metarl/HalfCheetahVel-v0"
FIELDS = ("observations", "actions", "rewards", "mask", "log_probs")


def _problem(num_tasks=4):
    import gymnasium as gym

    torch.manual_seed(0)
    policy = GaussianMLPPolicy(17, 6, (16, 16))
    tasks = gym.make(CHEETAH).unwrapped.sample_tasks(num_tasks, np.random.default_rng(0))
    params = stack_params(
        [{k: v.detach() + 0.01 * i for k, v in params_of(policy).items()} for i in range(num_tasks)]
    )
    return policy, tasks, params


def _assert_equal(a, b):
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def _ray_children() -> list[str]:
    """Ray's processes on this machine (raylet, GCS, workers), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in command for mark in ("raylet", "gcs_server", "ray::", "default_worker.py")):
            found.append(command[:80])
    return found


def test_closing_leaves_no_ray_processes():
    """Runs first: this sampler starts (and must stop) its own local Ray."""
    assert not ray.is_initialized()
    policy, tasks, params = _problem()
    with RaySamplerFactory(max_restarts=0) as sampler:
        assert sampler._owns_ray
        sampler.sample(policy, params, tasks, seed=1)
        assert _ray_children(), "a local Ray runs while the sampler is open"
    assert not ray.is_initialized()
    deadline = time.monotonic() + 30
    while _ray_children() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_children() == []


def RaySamplerFactory(episodes_per_task=3, horizon=40, **kwargs):
    from metarl.ray_sampler import RaySampler

    # A replacement imports torch and MuJoCo: allow it time on a loaded machine.
    return RaySampler(
        CHEETAH, 4, episodes_per_task, horizon, workers=2, **{"timeout_s": 120, **kwargs}
    )


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_same_episodes_as_the_batched_sampler(local_ray):
    policy, tasks, params = _problem()
    with Sampler(CHEETAH, 4, 3, 40) as batched:
        expected = batched.sample(policy, params, tasks, seed=7)
        shared = batched.sample(policy, None, tasks, seed=8)
    for workers in (1, 2, 3):
        with make_sampler(CHEETAH, 4, 3, 40, RaySamplerConfig(workers=workers)) as r:
            _assert_equal(r.sample(policy, params, tasks, seed=7), expected)
            _assert_equal(r.sample(policy, None, tasks, seed=8), shared)


def _kill_during_sample(sampler, worker: int, policy, params, tasks, seed):
    # The sample takes seconds (LONG's size); the kill lands half a second into it.
    pid = sampler.worker_pids()[worker]
    timer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
    timer.start()
    try:
        return sampler.sample(policy, params, tasks, seed=seed)
    finally:
        timer.cancel()


LONG = {"episodes_per_task": 50, "horizon": 500}  # 100,000 steps: seconds per sample


def test_a_worker_killed_mid_sample_is_replaced_and_the_episodes_are_unchanged(local_ray):
    policy, tasks, params = _problem()
    with Sampler(CHEETAH, 4, LONG["episodes_per_task"], LONG["horizon"]) as batched:
        expected = batched.sample(policy, params, tasks, seed=3)
    with RaySamplerFactory(max_restarts=2, **LONG) as sampler:
        before = sampler.worker_pids()
        episodes = _kill_during_sample(sampler, 1, policy, params, tasks, seed=3)
        after = sampler.worker_pids()
    _assert_equal(episodes, expected)
    assert after[0] == before[0] and after[1] != before[1], "worker 1 was replaced"


def test_with_restarts_disabled_a_death_raises_in_bounded_time(local_ray):
    policy, tasks, params = _problem()
    with RaySamplerFactory(max_restarts=0, **LONG) as sampler:
        start = time.monotonic()
        with pytest.raises(SamplerError, match=r"Ray worker 1 \(tasks 2\.\.3\) died"):
            _kill_during_sample(sampler, 1, policy, params, tasks, seed=3)
        assert time.monotonic() - start < 30


def test_training_with_ray_gives_the_batched_returns(local_ray, tmp_path):
    import csv
    import dataclasses

    from metarl.trainer import Trainer

    def returns(config, name):
        Trainer(config, tmp_path / name, progress=False).train()
        with (tmp_path / name / "progress.csv").open() as f:
            return [(r["return_pre"], r["return_post"]) for r in csv.DictReader(f)]

    nav = tiny_navigation_config(iterations=20)
    ray_nav = dataclasses.replace(nav, sampler=RaySamplerConfig(workers=2))
    assert returns(ray_nav, "nav-ray") == returns(nav, "nav-batched")
    # Three HalfCheetahVel iterations with the shipped config (a smaller meta-batch).
    from metarl.config import load_config

    cheetah = load_config(
        CONFIGS / "halfcheetah-vel.yaml",
        ["iterations=3", "tasks_per_batch=4", "episodes_per_task=3", "horizon=50"],
    )
    ray_cheetah = dataclasses.replace(cheetah, sampler=RaySamplerConfig(workers=2))
    assert returns(ray_cheetah, "vel-ray") == returns(cheetah, "vel-batched")


def test_ray_kind_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"pip install 'metarl\[ray\]'"):
        make_sampler(CHEETAH, 4, 3, 40, RaySamplerConfig())
