"""The meta-batch sampler: layout, per-task parameters, determinism, engines, faults."""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.navigation import Navigation2DEnv
from metarl.policies import GaussianMLPPolicy, distribution, params_of, stack_params
from metarl.sampler import NonFiniteError, Sampler, SamplerError

NAV = "metarl/Navigation2D-v0"
CHEETAH = "metarl/HalfCheetahVel-v0"


def make_policy(obs_dim: int, act_dim: int, seed: int = 0) -> GaussianMLPPolicy:
    torch.manual_seed(seed)
    return GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes=(8,), init_std=0.5)


def tasks_for(env_id: str, n: int, seed: int = 0) -> list[dict]:
    return gym.make(env_id).unwrapped.sample_tasks(n, np.random.default_rng(seed))


def test_layout_and_tasks():
    tasks = tasks_for(NAV, 3)
    with Sampler(NAV, 3, 4, 10) as sampler:
        policy = make_policy(2, 2)
        ep = sampler.sample(policy, None, tasks, seed=0)
    assert ep.observations.shape == (3, 10, 4, 2)
    assert ep.actions.shape == (3, 10, 4, 2)
    for name in ("rewards", "mask", "log_probs"):
        assert getattr(ep, name).shape == (3, 10, 4)
        assert getattr(ep, name).dtype == torch.float32
    assert list(ep.tasks) == tasks
    assert ep[1].tasks == (tasks[1],)
    assert ep.mask.eq(1).all()  # navigation never terminates
    # The first observation is the start position, the reward the negative distance to the goal.
    assert ep.observations[:, 0].abs().max() == 0
    goal = torch.tensor(tasks[2]["goal"])
    expected = -(ep.observations[2, 1] - goal).norm(dim=-1)
    torch.testing.assert_close(ep.rewards[2, 0], expected)


def test_per_task_parameters_route_to_their_own_sub_envs():
    policy = make_policy(2, 2)
    low, high = params_of(policy), params_of(policy)
    with torch.no_grad():
        low = {k: v.clone() for k, v in low.items()}
        high = {k: v.clone() for k, v in high.items()}
        for p in (low, high):
            p["mean.2.weight"].zero_()
            p["log_std"].fill_(-20.0)
        low["mean.2.bias"].fill_(-0.05)
        high["mean.2.bias"].fill_(0.07)
    tasks = tasks_for(NAV, 2)
    with Sampler(NAV, 2, 3, 5) as sampler:
        ep = sampler.sample(policy, stack_params([low, high]), tasks, seed=1)
    torch.testing.assert_close(ep.actions[0], torch.full((5, 3, 2), -0.05), atol=1e-4, rtol=0)
    torch.testing.assert_close(ep.actions[1], torch.full((5, 3, 2), 0.07), atol=1e-4, rtol=0)


def test_log_probs_are_the_behaviour_policy_s():
    policy = make_policy(17, 6)
    tasks = tasks_for(CHEETAH, 2)
    params = [{k: v.detach() + 0.01 * i for k, v in params_of(policy).items()} for i in range(2)]
    with Sampler(CHEETAH, 2, 2, 6) as sampler:
        ep = sampler.sample(policy, stack_params(params), tasks, seed=3)
    for k in range(2):
        expected = distribution(policy, params[k], ep.observations[k]).log_prob(ep.actions[k])
        torch.testing.assert_close(ep.log_probs[k], expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("env_id", [NAV, CHEETAH])
def test_same_seed_same_episodes(env_id):
    policy = make_policy(*(2, 2) if env_id == NAV else (17, 6))
    tasks = tasks_for(env_id, 2)
    with Sampler(env_id, 2, 2, 8) as sampler:
        a = sampler.sample(policy, None, tasks, seed=5)
        b = sampler.sample(policy, None, tasks, seed=5)
        c = sampler.sample(policy, None, tasks, seed=6)
    for name in ("observations", "actions", "rewards", "log_probs"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.actions, c.actions)


@pytest.mark.parametrize("env_id", [NAV, CHEETAH, "metarl/AntDir-v0"])
def test_batched_and_async_equal_sync_and_pipeline_equals_plain(env_id):
    probe = gym.make(env_id)
    policy = make_policy(probe.observation_space.shape[0], probe.action_space.shape[0])
    tasks = tasks_for(env_id, 4)
    results = {}
    for kind, pipeline in (
        ("batched", True),
        ("batched", False),
        ("sync", False),
        ("async", False),
    ):
        with Sampler(env_id, 4, 2, 30, kind=kind, pipeline=pipeline) as sampler:
            results[kind, pipeline] = sampler.sample(policy, None, tasks, seed=2)
    reference = results["sync", False]
    for key, ep in results.items():
        for name in ("observations", "actions", "rewards", "mask", "log_probs"):
            torch.testing.assert_close(
                getattr(ep, name),
                getattr(reference, name),
                atol=1e-5,
                rtol=1e-5,
                msg=f"{key} {name}",
            )


def test_mask_after_ant_termination():
    env_id = "metarl/AntVel-v0"
    policy = make_policy(105, 8)
    with torch.no_grad():
        policy.log_std.fill_(1.5)  # wild actions make the ant fall over within the horizon
    tasks = tasks_for(env_id, 1)
    with Sampler(env_id, 1, 6, 120) as sampler:
        ep = sampler.sample(policy, None, tasks, seed=0)[0]
    lengths = ep.mask.sum(0).long()
    assert (lengths < 120).any(), "some episode must terminate"
    for e in range(6):
        n = int(lengths[e])
        assert ep.mask[:n, e].eq(1).all() and ep.mask[n:, e].eq(0).all()
        assert ep.rewards[n:, e].eq(0).all()
        for name in ("observations", "actions", "log_probs"):
            assert getattr(ep, name)[n:, e].eq(0).all(), f"{name} after termination"
        if n < 120:  # replay in a single env: the same actions end the episode at the same step
            env = gym.make(env_id)
            env.unwrapped.task = tasks[0]
            env.reset(seed=0 + e)
            low, high = env.action_space.low, env.action_space.high
            for t in range(n):
                # The env received the sample clipped to its bounds.
                action = np.clip(ep.actions[t, e].numpy(), low, high)
                _, reward, terminated, _, _ = env.step(action)
                assert reward == pytest.approx(float(ep.rewards[t, e]), abs=1e-4)
                assert terminated == (t == n - 1)


def test_nan_observation_names_task_and_sub_env():
    policy = make_policy(2, 2)
    bad = {k: v.detach().clone() for k, v in params_of(policy).items()}
    bad["mean.2.bias"] = torch.full_like(bad["mean.2.bias"], float("nan"))
    params = stack_params([params_of(policy), bad])
    tasks = tasks_for(NAV, 2)
    with (
        Sampler(NAV, 2, 3, 5) as sampler,
        pytest.raises(NonFiniteError, match=r"sub-env 3 \(task 1"),
    ):
        sampler.sample(policy, params, tasks, seed=0)


class _NaNRewardEnv(Navigation2DEnv):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return (
            obs,
            float("inf") if self.task["goal"][0] > 0 else reward,
            terminated,
            truncated,
            info,
        )


class _CrashingEnv(Navigation2DEnv):
    def step(self, action):
        if self.task["goal"][0] > 0:
            os._exit(3)  # a worker that dies without a word
        return super().step(action)


class _HangingEnv(Navigation2DEnv):
    def step(self, action):
        if self.task["goal"][0] > 0:
            time.sleep(30)  # a worker that stops answering but does not die
        return super().step(action)


gym.register("metarl-test/NaNReward-v0", entry_point=_NaNRewardEnv, max_episode_steps=100)
gym.register("metarl-test/Hanging-v0", entry_point=_HangingEnv, max_episode_steps=100)
gym.register("metarl-test/Crashing-v0", entry_point=_CrashingEnv, max_episode_steps=100)


def test_infinite_reward_names_task():
    tasks = [{"goal": [-0.3, 0.0]}, {"goal": [0.3, 0.0]}]
    with (
        Sampler("metarl-test/NaNReward-v0", 2, 2, 5, kind="sync") as sampler,
        pytest.raises(NonFiniteError, match=r"reward from sub-env 2 \(task 1"),
    ):
        sampler.sample(make_policy(2, 2), None, tasks, seed=0)


def test_dead_async_worker_raises_quickly():
    tasks = [{"goal": [-0.3, 0.0]}, {"goal": [0.3, 0.0]}]
    start = time.monotonic()
    with (
        Sampler("metarl-test/Crashing-v0", 2, 1, 5, kind="async", step_timeout=5) as sampler,
        pytest.raises(SamplerError, match="died"),
    ):
        sampler.sample(make_policy(2, 2), None, tasks, seed=0)
    assert time.monotonic() - start < 20


def test_hung_async_worker_raises_a_sampler_error_in_time():
    tasks = [{"goal": [-0.3, 0.0]}, {"goal": [0.3, 0.0]}]
    start = time.monotonic()
    with (
        Sampler("metarl-test/Hanging-v0", 2, 1, 5, kind="async", step_timeout=1) as sampler,
        pytest.raises(SamplerError, match="did not answer within 1 s"),
    ):
        sampler.sample(make_policy(2, 2), None, tasks, seed=0)
    assert time.monotonic() - start < 10


def test_context_manager_closes_workers_on_error_and_interrupt(monkeypatch):
    import metarl.sampler

    policy = make_policy(2, 2)
    tasks = tasks_for(NAV, 2)
    calls = {"n": 0}
    original = metarl.sampler.task_stats  # the policy's product, task by task

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(metarl.sampler, "task_stats", interrupted)
    with pytest.raises(KeyboardInterrupt), Sampler(NAV, 2, 1, 5, kind="async") as sampler:
        processes = list(sampler._groups[0].env.processes)
        sampler.sample(policy, None, tasks, seed=0)
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in processes)
    with pytest.raises(SamplerError, match="closed"):
        sampler.sample(make_policy(2, 2), None, tasks, seed=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        Sampler(NAV, 2, 2, 5, kind="ray")
    with pytest.raises(ValueError, match="num_tasks"):
        Sampler(NAV, 0, 2, 5)
    with Sampler(NAV, 2, 2, 5) as sampler:
        policy = make_policy(2, 2)
        with pytest.raises(ValueError, match="expected 2 tasks"):
            sampler.sample(policy, None, tasks_for(NAV, 3), seed=0)
        with pytest.raises(ValueError, match="stacked over 3 tasks; this sampler has 2"):
            sampler.sample(policy, stack_params([params_of(policy)] * 3), tasks_for(NAV, 2), seed=0)
        with pytest.raises(ValueError, match="missing"):
            sampler.sample(policy, {"log_std": policy.log_std}, tasks_for(NAV, 2), seed=0)


def test_env_gets_the_action_clipped_to_its_bounds_and_episodes_keep_the_sample():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(17, 6, hidden_sizes=(8,), init_std=1e-3)
    with torch.no_grad():
        policy.mean[-1].weight.zero_()
        policy.mean[-1].bias.fill_(5.0)  # far outside the cheetah's [-1, 1]
    tasks = [{"velocity": 1.0}]
    with Sampler(CHEETAH, 1, 2, 10) as sampler:
        ep = sampler.sample(policy, None, tasks, seed=4)[0]
    assert (ep.actions > 4.0).all(), "the episodes keep the unclipped sample"
    expected = distribution(policy, params_of(policy), ep.observations).log_prob(ep.actions)
    torch.testing.assert_close(ep.log_probs, expected, atol=1e-3, rtol=1e-5)
    env = gym.make(CHEETAH)
    env.unwrapped.task = tasks[0]
    for e in range(2):
        env.reset(seed=4 + e)
        for t in range(10):
            _, reward, *_ = env.step(np.ones(6))  # what the clipped actions are
            assert reward == pytest.approx(float(ep.rewards[t, e]), abs=1e-4)


@pytest.mark.parametrize("env_id", [NAV, CHEETAH])
def test_blocks_of_a_meta_batch_equal_the_whole_batch(env_id):
    """A worker sampling tasks 2..3 of 4 gets exactly those tasks' episodes of the whole batch."""
    policy = make_policy(*(2, 2) if env_id == NAV else (17, 6))
    tasks = tasks_for(env_id, 4)
    params = stack_params(
        [{k: v.detach() + 0.01 * i for k, v in params_of(policy).items()} for i in range(4)]
    )
    with Sampler(env_id, 4, 3, 12) as sampler:
        whole = sampler.sample(policy, params, tasks, seed=9)
    parts = []
    for lo, hi in ((0, 1), (1, 4)):
        with Sampler(env_id, hi - lo, 3, 12) as sampler:
            block = {k: v[lo:hi] for k, v in params.items()}
            parts.append(sampler.sample(policy, block, tasks[lo:hi], seed=9, block=(3 * lo, 12)))
    for name in ("observations", "actions", "rewards", "mask", "log_probs"):
        joined = torch.cat([getattr(p, name) for p in parts])
        assert torch.equal(joined, getattr(whole, name)), name


def test_a_dead_async_worker_leaves_no_traceback_at_exit(tmp_path):
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "crash.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import gymnasium as gym
            from envs.navigation import Navigation2DEnv
            from metarl.policies import GaussianMLPPolicy
            from metarl.sampler import Sampler, SamplerError

            class Crashing(Navigation2DEnv):
                def step(self, action):
                    if self.task["goal"][0] > 0:
                        os._exit(3)
                    return super().step(action)

            gym.register("crash/Crashing-v0", entry_point=Crashing, max_episode_steps=100)
            tasks = [{"goal": [-0.3, 0.0]}, {"goal": [0.3, 0.0]}]
            try:
                with Sampler("crash/Crashing-v0", 2, 1, 5, kind="async", step_timeout=5) as s:
                    s.sample(GaussianMLPPolicy(2, 2, (4,)), None, tasks, seed=0)
            except SamplerError as err:
                print("SamplerError:", err)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert "SamplerError:" in result.stdout, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
