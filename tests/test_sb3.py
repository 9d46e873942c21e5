"""stable-baselines3 interop: policy conversion, task wrappers, and the PPO baselines."""

from __future__ import annotations

import math
import tempfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from torch import nn

from envs.wrappers import TaskObservationWrapper, TaskResampleWrapper
from metarl.comparison import (
    curve_path,
    curve_summary,
    load_pretrained,
    oracle_returns,
    saved_steps,
    train_baseline,
    train_oracle,
    train_pretrained,
)
from metarl.errors import InputError
from metarl.plotting import read_curve
from metarl.policies import GaussianMLPPolicy, distribution, params_of
from metarl.sb3 import BatchedTaskVecEnv, from_sb3, to_sb3

NAV = "metarl/Navigation2D-v0"
# A PPO small enough for a test: one rollout of 2 x 64 steps per update.
TINY_PPO = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}


@pytest.fixture
def nav():
    env = gym.make(NAV)
    yield env
    env.close()


def _obs_actions(obs_dim: int, act_dim: int, n: int = 32):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, obs_dim, generator=gen), torch.randn(n, act_dim, generator=gen)


def _sb3_log_prob(model: PPO, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.policy.get_distribution(obs).log_prob(actions)


@pytest.mark.parametrize(
    ("activation", "hidden"), [("tanh", (16, 8)), ("relu", (12,)), ("elu", ())]
)
def test_to_sb3_gives_the_same_log_probs(nav, activation, hidden):
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=hidden, activation=activation, init_std=0.3)
    # Move log_std off its init so a copied-back constant would be caught.
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-1.0, 0.2]))
    model = to_sb3(policy, nav)
    obs, actions = _obs_actions(2, 2)
    with torch.no_grad():
        ours = policy(obs).log_prob(actions)
    torch.testing.assert_close(_sb3_log_prob(model, obs, actions), ours, atol=1e-5, rtol=1e-5)
    if hidden:  # without hidden layers there is no activation to carry over
        expected = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}[activation]
        assert model.policy.activation_fn is expected


def test_to_sb3_with_adapted_params(nav):
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(8, 8), init_std=0.5)
    # An adapted dict: non-leaf tensors in a graph, as adapt() returns them.
    adapted = {name: p * 1.3 + 0.1 for name, p in params_of(policy).items()}
    model = to_sb3(policy, nav, params=adapted)
    obs, actions = _obs_actions(2, 2)
    with torch.no_grad():
        expected = distribution(policy, adapted, obs).log_prob(actions)
        unadapted = policy(obs).log_prob(actions)
    got = _sb3_log_prob(model, obs, actions)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, unadapted, atol=1e-3)  # the params, not the module, were used
    # and the policy module itself is untouched
    torch.testing.assert_close(policy(obs).log_prob(actions).detach(), unadapted)


def test_from_sb3_of_a_native_sb3_model(nav):
    model = PPO(
        "MlpPolicy",
        nav,
        seed=3,
        device="cpu",
        policy_kwargs={
            "net_arch": {"pi": [16, 16], "vf": [8]},
            "activation_fn": nn.Tanh,
            "log_std_init": -0.7,
        },
    )  # SB3's own orthogonal init
    policy = from_sb3(model)
    widths = [m.out_features for m in policy.mean if isinstance(m, nn.Linear)]
    assert widths == [16, 16, 2]
    obs, actions = _obs_actions(2, 2)
    with torch.no_grad():
        ours = policy(obs).log_prob(actions)
    torch.testing.assert_close(ours, _sb3_log_prob(model, obs, actions), atol=1e-5, rtol=1e-5)


def test_round_trip_keeps_every_parameter(nav):
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(8, 4), activation="tanh", init_std=0.2)
    back = from_sb3(to_sb3(policy, nav))
    for (name, p), (name_back, q) in zip(
        policy.state_dict().items(), back.state_dict().items(), strict=True
    ):
        assert name == name_back
        torch.testing.assert_close(q, p)


def test_to_sb3_checks_shapes_and_keys(nav):
    with pytest.raises(ValueError, match="observation size 2"):
        to_sb3(GaussianMLPPolicy(3, 2, hidden_sizes=(4,)), nav)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(4,))
    params = dict(params_of(policy))
    del params["log_std"]
    with pytest.raises(ValueError, match="log_std"):
        to_sb3(policy, nav, params=params)


def test_task_resample_wrapper_draws_a_hidden_task_per_reset(nav):
    env = TaskResampleWrapper(nav, np.random.default_rng(0))
    assert env.observation_space == nav.observation_space
    goals = []
    for _ in range(4):
        obs, info = env.reset()
        assert obs.shape == (2,)
        assert info["task"] == env.unwrapped.task
        goals.append(tuple(env.unwrapped.task["goal"]))
    assert len(set(goals)) == 4
    # The same generator seed gives the same task sequence.
    again = TaskResampleWrapper(gym.make(NAV), 0)
    assert [tuple(again.reset()[1]["task"]["goal"]) for _ in range(4)] == goals


def test_task_observation_wrapper_appends_the_task(nav):
    env = TaskObservationWrapper(nav)
    assert env.observation_space.shape == (4,)
    np.testing.assert_array_equal(env.observation_space.low[2:], [-0.5, -0.5])
    np.testing.assert_array_equal(env.observation_space.high[2:], [0.5, 0.5])
    env.unwrapped.task = {"goal": [0.25, -0.4]}
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, [0.0, 0.0, 0.25, -0.4])
    obs, *_ = env.step(np.array([0.1, 0.05], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.1, 0.05, 0.25, -0.4])
    assert env.observation_space.contains(obs)


def test_task_observation_wrapper_on_a_direction_task():
    env = TaskObservationWrapper(gym.make("metarl/HalfCheetahDir-v0"))
    assert env.observation_space.shape == (18,)
    assert (env.observation_space.low[-1], env.observation_space.high[-1]) == (-1.0, 1.0)
    env.unwrapped.task = {"direction": -1.0}
    obs, _ = env.reset(seed=0)
    assert obs[-1] == -1.0
    env.close()


def test_observation_follows_resampled_tasks(nav):
    env = TaskObservationWrapper(TaskResampleWrapper(nav, 1))
    for _ in range(3):
        obs, info = env.reset()
        np.testing.assert_allclose(obs[2:], info["task"]["goal"])


def test_wrappers_refuse_envs_without_tasks():
    with pytest.raises(ValueError, match="task distribution"):
        TaskObservationWrapper(gym.make("Pendulum-v1"))


def test_train_save_load_and_evaluate_the_baselines(tmp_path, nav, monkeypatch):
    scratch = tmp_path / "tempdir"  # SB3 makes a folder there per learn() without its own logger
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    common = {
        "hidden_sizes": [8, 8],
        "activation": "tanh",
        "init_std": 0.5,
        "seed": 0,
        "progress_bar": False,
        "n_envs": 2,
        "algo_kwargs": TINY_PPO,
    }
    pretrained = train_pretrained(NAV, 200, out_path=tmp_path / "pretrained", **common)
    oracle = train_oracle(NAV, 200, out_path=tmp_path / "oracle.zip", **common)
    assert pretrained == tmp_path / "pretrained.zip" and pretrained.is_file()
    assert oracle.is_file()
    assert list(scratch.glob("SB3-*")) == []  # no empty log folder per learn()

    policy = load_pretrained(pretrained)
    assert (policy.obs_dim, policy.act_dim) == (2, 2)
    obs, actions = _obs_actions(2, 2)
    saved = PPO.load(pretrained, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(
            policy(obs).log_prob(actions), _sb3_log_prob(saved, obs, actions), atol=1e-5, rtol=1e-5
        )
    # PPO moved the actor away from its initialisation.
    torch.manual_seed(0)
    fresh = GaussianMLPPolicy(2, 2, hidden_sizes=(8, 8), activation="tanh", init_std=0.5)
    assert not torch.allclose(fresh.log_std, policy.log_std)
    assert load_pretrained(oracle).obs_dim == 4  # the oracle sees the goal too

    tasks = nav.unwrapped.sample_tasks(3, rng=np.random.default_rng(0))
    returns = oracle_returns(oracle, NAV, tasks, episodes=2, seed=0)
    assert len(returns) == 3 and all(math.isfinite(r) for r in returns)
    # 100 steps of -distance, the agent starting at the origin: strictly negative.
    assert all(r < 0 for r in returns)
    assert oracle_returns(oracle, NAV, tasks, episodes=2, seed=0) == returns
    assert oracle_returns(oracle, NAV, tasks, 2, 0, deterministic=True) != returns
    with pytest.raises(ValueError, match="oracle"):
        oracle_returns(pretrained, NAV, tasks, episodes=1, seed=0)
    with pytest.raises(FileNotFoundError):
        load_pretrained(tmp_path / "missing.zip")


def test_sac_oracle_with_the_runs_horizon_and_its_learning_curve(tmp_path, nav):
    sac = {"learning_starts": 20, "batch_size": 16, "policy_kwargs": {"net_arch": [8]}}
    oracle = train_oracle(
        NAV, 120, [8], "tanh", 0.5, 0, tmp_path / "oracle.zip", False,
        algorithm="sac", horizon=10, n_envs=2, algo_kwargs=sac,
    )  # fmt: skip
    steps, returns = read_curve(curve_path(oracle))
    # 120 steps of 2 sub-envs with 10-step episodes: 12 episodes, every one cut at 10.
    assert len(returns) == 12 and list(steps) == list(range(10, 130, 10))
    assert curve_summary(curve_path(oracle), share=1 / 6)["episodes"] == 12

    tasks = nav.unwrapped.sample_tasks(3, rng=np.random.default_rng(0))
    short = oracle_returns(oracle, NAV, tasks, 2, 0, horizon=10, deterministic=True)
    full = oracle_returns(oracle, NAV, tasks, 2, 0, deterministic=True)
    # Each step pays -distance to the goal (> 0 until it is reached): 10 steps cost less than 100.
    assert all(s > f for s, f in zip(short, full, strict=True))
    with pytest.raises(InputError, match="SAC model"):
        load_pretrained(oracle)


def test_the_pretrained_baseline_must_be_ppo(tmp_path):
    with pytest.raises(InputError, match="PPO"):
        train_baseline(
            NAV, 100, [8], "tanh", 0.5, 0, tmp_path / "p.zip", False,
            observe_task=False, algorithm="sac",
        )  # fmt: skip
    with pytest.raises(InputError, match="bogus"):
        train_oracle(
            NAV, 100, [8], "tanh", 0.5, 0, tmp_path / "o.zip", False, algo_kwargs={"bogus": 1}
        )
    assert not (tmp_path / "p.zip").exists() and not (tmp_path / "o.zip").exists()


def test_curve_summary_tells_a_flat_curve_from_a_rising_one(tmp_path):
    path = tmp_path / "c.monitor.csv"

    def write(returns):
        rows = "".join(f"{r},10,0.0\n" for r in returns)
        path.write_text('#{"t_start": 0}\nr,l,t\n' + rows)

    wiggle = [-0.5, 0.5] * 5  # block noise with a known standard error
    write([r + 10 * b for b in range(10) for r in wiggle])  # still rising by 10 a block
    rising = curve_summary(path)
    assert (rising["before"], rising["last"], rising["change"], rising["rise"]) == (80, 90, 10, 90)
    assert rising["noise"] == pytest.approx(2 * math.sqrt(2 * (10 / 36) / 10))
    assert not rising["flat"]
    write([r + min(10 * b, 80) for b in range(10) for r in wiggle])  # rose 80, then flat
    flat = curve_summary(path)
    assert flat["change"] == 0 and flat["flat"]
    write([r + 10 * b for b in range(9) for r in wiggle] + [80.5] * 10)
    assert curve_summary(path)["change"] == pytest.approx(0.5)  # 0.5 <= 5% of a rise of 80.5
    assert curve_summary(path)["flat"]
    # A dip (a resumed SAC refilling its replay buffer) and the climb back to the level
    # before it is not a rise: the last block is compared with the best one before it.
    write(
        [r + min(20 * b, 80) for b in range(8) for r in wiggle]
        + [r + 10 for r in wiggle]
        + [r + 80 for r in wiggle]
    )
    dipped = curve_summary(path)
    assert (dipped["before"], dipped["last"], dipped["change"]) == (80, 80, 0) and dipped["flat"]
    write(
        [r + min(20 * b, 80) for b in range(8) for r in wiggle]
        + [r + 10 for r in wiggle]
        + [r + 95 for r in wiggle]
    )
    assert not curve_summary(path)["flat"]  # past the level before the dip: still rising
    steps, _ = read_curve(path)
    assert steps[-1] == 1000
    path.write_text("r,l,t\n1,2,3\n")
    with pytest.raises(InputError, match="monitor"):
        read_curve(path)


def test_action_scale_is_folded_into_sb3_and_back(nav):
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(8,), init_std=0.05, action_scale=0.1)
    with torch.no_grad():
        policy.mean[-1].bias.copy_(torch.tensor([0.3, -0.2]))
    model = to_sb3(policy, nav)
    obs, actions = _obs_actions(2, 2)
    actions = 0.05 * actions  # inside the policy's support
    with torch.no_grad():
        ours = policy(obs).log_prob(actions)
    torch.testing.assert_close(_sb3_log_prob(model, obs, actions), ours, atol=1e-5, rtol=1e-5)
    back = from_sb3(model, action_scale=0.1)
    assert back.action_scale == 0.1
    for (name, p), q in zip(policy.state_dict().items(), back.state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=1e-5, msg=name)


def test_obs_normalization_is_folded_into_sb3s_first_layer(nav):
    """SB3's MlpPolicy has no observation statistics: to_sb3 folds the policy's into the first
    layer, the same distribution for observations within the clip."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(8,), activation="tanh", obs_normalization=True)
    seen = torch.randn(100, 2) * torch.tensor([0.2, 3.0]) + torch.tensor([0.5, -1.0])
    policy.update_obs_stats(seen, torch.ones(100))
    model = to_sb3(policy, nav)
    obs, actions = _obs_actions(2, 2)
    obs = obs * torch.tensor([0.2, 3.0]) + torch.tensor([0.5, -1.0])
    with torch.no_grad():
        ours = policy(obs).log_prob(actions)
    torch.testing.assert_close(_sb3_log_prob(model, obs, actions), ours, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("obs_normalization", [False, True])
def test_a_cavia_context_is_folded_into_sb3s_first_layer(nav, obs_normalization):
    """SB3's MlpPolicy sees the observation alone: to_sb3 folds the (adapted) context into the
    first layer's bias, the same distribution."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(
        2, 2, hidden_sizes=(8,), obs_normalization=obs_normalization, context_dim=3
    )
    if obs_normalization:
        policy.update_obs_stats(torch.randn(50, 2) * 2.0 + 1.0, torch.ones(50))
    adapted = {n: p.detach().clone() for n, p in policy.named_parameters()}
    adapted["context"] = torch.tensor([0.5, -1.5, 2.0])
    model = to_sb3(policy, nav, params=adapted)
    obs, actions = _obs_actions(2, 2)
    with torch.no_grad():
        ours = torch.func.functional_call(policy, adapted, (obs,)).log_prob(actions)
        at_zero = policy(obs).log_prob(actions)
    torch.testing.assert_close(_sb3_log_prob(model, obs, actions), ours, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours, at_zero)  # the context changes the function


def test_batched_task_vec_env_resamples_tasks_and_appends_them():
    vec = BatchedTaskVecEnv("metarl/Navigation2D-v0", 3, seed=0, observe_task=True, horizon=5)
    obs = vec.reset()
    assert obs.shape == (3, 4)
    first = [dict(t) for t in vec.tasks]
    np.testing.assert_allclose(obs[:, 2:], [t["goal"] for t in first])
    np.testing.assert_allclose(obs[:, :2], 0.0)
    for t in range(5):
        obs, _, done, infos = vec.step(np.full((3, 2), 0.05))
        assert done.all() == (t == 4)
    for i, info in enumerate(infos):
        # The last observation of the episode, with the task it was rewarded for.
        np.testing.assert_allclose(info["terminal_observation"][:2], [0.25, 0.25], atol=1e-6)
        np.testing.assert_allclose(info["terminal_observation"][2:], first[i]["goal"])
        assert info["episode"]["l"] == 5 and info["TimeLimit.truncated"]
        expected = -sum(
            np.linalg.norm(np.array([0.05, 0.05]) * (k + 1) - first[i]["goal"]) for k in range(5)
        )
        assert info["episode"]["r"] == pytest.approx(expected, rel=1e-6)
    # A new episode: new tasks, appended to the reset observations.
    assert [t["goal"] for t in vec.tasks] != [t["goal"] for t in first]
    np.testing.assert_allclose(obs[:, 2:], [t["goal"] for t in vec.tasks])
    np.testing.assert_allclose(obs[:, :2], 0.0)
    hidden = BatchedTaskVecEnv("metarl/Navigation2D-v0", 3, seed=0, observe_task=False)
    assert hidden.reset().shape == (3, 2)


def test_conversions_name_a_wrong_argument(nav):
    from metarl.errors import InputError

    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(4,))
    with pytest.raises(InputError, match="GaussianMLPPolicy"):
        to_sb3("not a policy", nav)
    with pytest.raises(InputError, match="dict of tensors"):
        to_sb3(policy, nav, params=[1, 2])
    stacked = {k: v.detach().expand(3, *v.shape) for k, v in params_of(policy).items()}
    with pytest.raises(InputError, match=r"params\['log_std'\] is \(3, 2\).*index a stacked dict"):
        to_sb3(policy, nav, params=stacked)
    broken = {k: v.detach().clone() for k, v in params_of(policy).items()}
    broken["log_std"][0] = float("nan")
    with pytest.raises(InputError, match=r"params\['log_std'\] holds NaN"):
        to_sb3(policy, nav, params=broken)
    with pytest.raises(InputError, match="stable-baselines3 PPO"):
        from_sb3(policy)
    with pytest.raises(InputError, match="action_scale"):
        from_sb3(to_sb3(policy, nav), action_scale=0)


SAC_TINY = {"learning_starts": 20, "batch_size": 16, "policy_kwargs": {"net_arch": [8]}}


def _sac_oracle(tmp_path, total, **kwargs):
    return train_oracle(
        NAV, total, [8], "tanh", 0.5, 0, tmp_path / "oracle.zip", False,
        algorithm="sac", horizon=10, n_envs=2, algo_kwargs=SAC_TINY, **kwargs,
    )  # fmt: skip


def test_resume_trains_on_to_the_total_and_continues_the_curve(tmp_path):
    from stable_baselines3 import SAC

    oracle = _sac_oracle(tmp_path, 60)
    first = SAC.load(oracle, device="cpu")
    assert first.num_timesteps == 60
    lines = []
    _sac_oracle(tmp_path, 140, resume=True, save_every=20, log=lines.append)
    # One line per save (at 80, 100, 120, 140), with the curve's last episodes.
    assert [line.split(" at ")[1].split(":")[0] for line in lines] == [
        f"{steps} of 140 steps" for steps in (80, 100, 120, 140)
    ]
    assert all(line.startswith(f"saved {oracle} ") for line in lines)
    assert "mean return of the last 14 episodes" in lines[-1]
    resumed = SAC.load(oracle, device="cpu")
    assert resumed.num_timesteps == 140
    # Training went on from the saved weights, not from a fresh start.
    before = dict(first.policy.actor.named_parameters())
    assert any(
        not torch.equal(p, before[name]) for name, p in resumed.policy.actor.named_parameters()
    )
    steps, _ = read_curve(curve_path(oracle))
    # 60 then 80 steps of 2 sub-envs with 10-step episodes: 6 + 8 episodes, in order.
    assert list(steps) == list(range(10, 150, 10))
    times = [float(line.split(",")[2]) for line in curve_path(oracle).read_text().splitlines()[2:]]
    assert times == sorted(times)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_a_resumed_sac_refills_its_replay_buffer_first(tmp_path):
    oracle = _sac_oracle(tmp_path, 60)
    from stable_baselines3 import SAC

    from metarl import comparison as sb3

    loaded = sb3._reload(oracle, sb3._vec_env(NAV, 2, 1, True, 10, None), 1, None)
    assert isinstance(loaded, SAC) and loaded.learning_starts == 60 + 20
    assert _sac_oracle(tmp_path, 100, resume=True, save_every=20) == oracle
    assert SAC.load(oracle, device="cpu").num_timesteps == 100
    # Saved with the warm-up's length, so a second resume refills 20 steps again, not 80.
    assert SAC.load(oracle, device="cpu").learning_starts == 20
    loaded = sb3._reload(oracle, sb3._vec_env(NAV, 2, 1, True, 10, None), 1, None)
    assert loaded.learning_starts == 100 + 20


def test_an_interrupted_training_keeps_its_last_save_and_resumes(tmp_path, monkeypatch):
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import VecEnvWrapper

    from metarl import comparison as sb3

    class Interrupted(VecEnvWrapper):  # the user's Ctrl-C after 50 steps of 2 sub-envs
        steps = 0

        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            Interrupted.steps += 1
            if Interrupted.steps > 25:
                raise KeyboardInterrupt
            return self.venv.step_wait()

    make = sb3._vec_env
    monkeypatch.setattr(sb3, "_vec_env", lambda *a: Interrupted(make(*a)))
    with pytest.raises(KeyboardInterrupt):
        _sac_oracle(tmp_path, 200, save_every=20)
    oracle = tmp_path / "oracle.zip"
    # Saved at 20 and 40 steps; the curve holds the episodes finished by the last save.
    assert SAC.load(oracle, device="cpu").num_timesteps == 40
    assert list(read_curve(curve_path(oracle))[0]) == [10, 20, 30, 40]
    assert not list(tmp_path.glob(".*"))
    monkeypatch.setattr(sb3, "_vec_env", make)
    _sac_oracle(tmp_path, 100, resume=True, save_every=20)
    assert SAC.load(oracle, device="cpu").num_timesteps == 100
    assert list(read_curve(curve_path(oracle))[0]) == list(range(10, 110, 10))


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        _sac_oracle(tmp_path, 60, resume=True)
    oracle = _sac_oracle(tmp_path, 60)
    saved = oracle.read_bytes()
    assert _sac_oracle(tmp_path, 60, resume=True) == oracle  # the total reached: nothing to do
    assert saved_steps(oracle) == 60
    with pytest.raises(InputError, match="sac model"):
        train_oracle(NAV, 100, [8], "tanh", 0.5, 0, oracle, False, resume=True)
    with pytest.raises(InputError, match="does not fit"):
        train_oracle(
            "metarl/HalfCheetahDir-v0", 100, [8], "tanh", 0.5, 0, oracle, False,
            algorithm="sac", resume=True,
        )  # fmt: skip
    assert oracle.read_bytes() == saved


def test_the_baseline_command_resumes_to_the_total(tmp_path, capsys):
    from conftest import CONFIGS

    from metarl.cli import main

    out = tmp_path / "pretrained.zip"
    argv = ["baseline", "pretrain", str(CONFIGS / "navigation2d.yaml"), "--out", str(out)]
    small = ["--n-envs", "2", "--algo-kwargs", str(TINY_PPO), "--no-progress"]
    assert main([*argv, *small, "--timesteps", "256"]) == 0
    assert main([*argv, *small, "--timesteps", "512", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming {out} at 256 steps, to 512 in all" in printed
    # --no-progress: a line at the save instead of the bar.
    assert f"saved {out} at 512 of 512 steps: mean return of the last 4 episodes" in printed
    assert saved_steps(out) == 512
    steps, _ = read_curve(curve_path(out))
    assert list(steps) == [100, 200, 300, 400]  # 100-step episodes, 2 sub-envs
    assert main([*argv, *small, "--timesteps", "400", "--resume"]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert saved_steps(out) == 512
