"""The task-distribution environments and the batched engine (the environments contract)."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

import envs

MUJOCO_IDS = [i for i in envs.ENV_IDS if "Navigation" not in i]
# The env step: the model's timestep times the frame skip (read, not assumed).
DT = float(gym.make("metarl/HalfCheetahVel-v0").unwrapped.dt)
ANT_DT = float(gym.make("metarl/AntVel-v0").unwrapped.dt)


def make(env_id: str, task: dict | None = None):
    env = gym.make(env_id)
    if task is not None:
        env.unwrapped.task = task
    return env


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_check_env(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


# Each family's reward parts as its docstring writes them (the MAML paper's rllab costs),
# computed here from the state: qpos before and after the step, the contact forces after
# it, the action, the env step read from the model and the task.
CHEETAH_CTRL_WEIGHT = 0.05
ANT_CTRL_WEIGHT, ANT_CONTACT_WEIGHT, ANT_SURVIVE = 0.005, 5e-4, 0.05


def _expected_parts(env_id, s, action, dt, task):
    a = action.astype(np.float64)
    if "Navigation" in env_id:
        return {"reward_distance": -np.hypot(*(s["after"] - task["goal"]))}
    vx = (s["after"][0] - s["before"][0]) / dt
    if "HalfCheetah" in env_id:
        forward = -abs(vx - task["velocity"]) if "Vel" in env_id else task["direction"] * vx
        return {"reward_forward": forward, "reward_ctrl": -CHEETAH_CTRL_WEIGHT * np.dot(a, a)}
    if "Vel" in env_id:
        forward = -abs(vx - task["velocity"]) + 1.0
    elif "Dir" in env_id:
        forward = task["direction"] * vx
    else:
        forward = -np.abs(s["after"][:2] - task["goal"]).sum()
    return {
        "reward_forward": forward,
        "reward_ctrl": -ANT_CTRL_WEIGHT * np.dot(a, a),
        "reward_contact": -ANT_CONTACT_WEIGHT * np.sum(np.clip(s["cfrc"], -1, 1) ** 2),
        "reward_survive": ANT_SURVIVE,
    }


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_each_reward_part_matches_its_own_formula(env_id):
    """Every part in ``info`` against its own formula, and the reward against their sum.

    The Ant starts in the air, where the contact cost is zero: it is stepped until its
    legs touch the ground, and the contact part must have been non-zero and checked.
    """
    env = make(env_id)
    u = env.unwrapped
    task = u.sample_tasks(1, np.random.default_rng(2))[0]
    u.task = task
    env.reset(seed=5)
    mujoco_env = hasattr(u, "model")
    dt = float(u.model.opt.timestep) * u.frame_skip if mujoco_env else None
    rng = np.random.default_rng(0)
    contact_steps = 0
    for t in range(30):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        if mujoco_env:
            before = u.data.qpos.copy()
            _, reward, terminated, _, info = env.step(action)
            s = {"before": before, "after": u.data.qpos.copy(), "cfrc": u.data.cfrc_ext.copy()}
        else:
            _, reward, terminated, _, info = env.step(action)
            s = {"after": u._position[0].copy()}
        expected = _expected_parts(env_id, s, action, dt, task)
        parts = {k: v for k, v in info.items() if k.startswith("reward_")}
        assert parts.keys() == expected.keys(), f"step {t}"
        for name, value in expected.items():
            assert parts[name] == pytest.approx(value, rel=1e-9, abs=1e-12), f"{name}, step {t}"
        assert reward == pytest.approx(sum(expected.values()), rel=1e-9, abs=1e-12)
        contact_steps += int(parts.get("reward_contact", 0.0) != 0.0)
        if terminated:
            break
    if "Ant" in env_id:
        assert contact_steps > 0, "the Ant must touch the ground within the checked steps"


def _step_from_state(env_id, task, action):
    """Reset with a fixed seed, step once; return the reward and the raw physical quantities."""
    env = make(env_id, task)
    env.reset(seed=7)
    u = env.unwrapped
    qpos_before = u.data.qpos.copy() if hasattr(u, "data") else None
    _, reward, _, _, _ = env.step(action)
    if qpos_before is None:
        return reward, {"position": u._position[0].copy()}
    return reward, {
        "before": qpos_before,
        "after": u.data.qpos.copy(),
        "cfrc": u.data.cfrc_ext.copy(),
    }


ACTION6 = np.array([0.5, -0.3, 0.2, 0.9, -0.7, 0.1], dtype=np.float32)
ACTION8 = np.array([0.4, -0.2, 0.6, -0.9, 0.3, 0.1, -0.5, 0.8], dtype=np.float32)


@pytest.mark.parametrize("velocity", [0.0, 0.7, 2.0])
def test_half_cheetah_vel_reward_formula(velocity):
    reward, s = _step_from_state("metarl/HalfCheetahVel-v0", {"velocity": velocity}, ACTION6)
    v = (s["after"][0] - s["before"][0]) / DT
    a = ACTION6.astype(np.float64)
    assert reward == pytest.approx(-abs(v - velocity) - 0.05 * np.dot(a, a), abs=1e-9)


@pytest.mark.parametrize("direction", [-1, 1])
def test_half_cheetah_dir_reward_formula(direction):
    reward, s = _step_from_state("metarl/HalfCheetahDir-v0", {"direction": direction}, ACTION6)
    v = (s["after"][0] - s["before"][0]) / DT
    a = ACTION6.astype(np.float64)
    assert reward == pytest.approx(direction * v - 0.05 * np.dot(a, a), abs=1e-9)


def _ant_costs(s, a):
    contact = 5e-4 * np.sum(np.clip(s["cfrc"], -1, 1) ** 2)
    return 0.05 - 0.005 * np.dot(a, a) - contact


@pytest.mark.parametrize("velocity", [0.0, 1.5, 3.0])
def test_ant_vel_reward_formula(velocity):
    reward, s = _step_from_state("metarl/AntVel-v0", {"velocity": velocity}, ACTION8)
    vx = (s["after"][0] - s["before"][0]) / ANT_DT
    a = ACTION8.astype(np.float64)
    assert reward == pytest.approx(-abs(vx - velocity) + 1.0 + _ant_costs(s, a), abs=1e-9)


@pytest.mark.parametrize("direction", [-1, 1])
def test_ant_dir_reward_formula(direction):
    reward, s = _step_from_state("metarl/AntDir-v0", {"direction": direction}, ACTION8)
    vx = (s["after"][0] - s["before"][0]) / ANT_DT
    a = ACTION8.astype(np.float64)
    assert reward == pytest.approx(direction * vx + _ant_costs(s, a), abs=1e-9)


@pytest.mark.parametrize("goal", [[0.0, 0.0], [2.0, -1.0], [-0.5, 2.9]])
def test_ant_goal_reward_formula(goal):
    reward, s = _step_from_state("metarl/AntGoal-v0", {"goal": goal}, ACTION8)
    l1 = abs(s["after"][0] - goal[0]) + abs(s["after"][1] - goal[1])
    a = ACTION8.astype(np.float64)
    assert reward == pytest.approx(-l1 + _ant_costs(s, a), abs=1e-9)


@pytest.mark.parametrize("goal", [[0.0, 0.0], [0.5, -0.5], [-0.2, 0.3]])
def test_navigation_reward_formula_and_clipping(goal):
    reward, s = _step_from_state(
        "metarl/Navigation2D-v0", {"goal": goal}, np.array([0.05, 0.5], dtype=np.float32)
    )
    np.testing.assert_allclose(s["position"], [0.05, 0.1])  # the second axis clipped to 0.1
    assert reward == pytest.approx(-np.hypot(0.05 - goal[0], 0.1 - goal[1]), abs=1e-9)


def test_navigation_episode_ends_at_horizon_100():
    env = gym.make("metarl/Navigation2D-v0")
    env.reset(seed=0)
    for t in range(1, 101):
        _, _, terminated, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
        assert not terminated
        assert truncated == (t == 100)


def test_ant_terminates_when_torso_leaves_healthy_range():
    env = make("metarl/AntVel-v0")
    env.reset(seed=0)
    u = env.unwrapped
    qpos, qvel = u.data.qpos.copy(), u.data.qvel.copy()
    qpos[2] = 1.5  # torso above the healthy range [0.2, 1.0]
    u.set_state(qpos, qvel)
    assert env.step(np.zeros(8, dtype=np.float32))[2]


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_sampled_tasks_reproducible_and_in_support(env_id):
    u = gym.make(env_id).unwrapped
    a = u.sample_tasks(50, rng=np.random.default_rng(3))
    b = u.sample_tasks(50, rng=np.random.default_rng(3))
    c = u.sample_tasks(50, rng=np.random.default_rng(4))
    assert a == b and a != c
    import json

    assert json.loads(json.dumps(a)) == a
    for task in a:
        u.task = task  # every sampled task passes validation
        assert u.task == task


def test_task_distributions_match_the_paper():
    rng = np.random.default_rng(0)
    vel = [
        t["velocity"]
        for t in gym.make("metarl/HalfCheetahVel-v0").unwrapped.sample_tasks(2000, rng)
    ]
    assert min(vel) >= 0 and max(vel) <= 2 and abs(np.mean(vel) - 1.0) < 0.05
    ant = [t["velocity"] for t in gym.make("metarl/AntVel-v0").unwrapped.sample_tasks(2000, rng)]
    assert max(ant) <= 3 and max(ant) > 2.9
    dirs = [t["direction"] for t in gym.make("metarl/AntDir-v0").unwrapped.sample_tasks(2000, rng)]
    assert set(dirs) == {-1.0, 1.0} and abs(np.mean(dirs)) < 0.1
    goals = np.array(
        [t["goal"] for t in gym.make("metarl/AntGoal-v0").unwrapped.sample_tasks(2000, rng)]
    )
    radius = np.linalg.norm(goals, axis=1)
    assert radius.max() <= 3 and np.mean(radius < 1.5) == pytest.approx(
        0.25, abs=0.04
    )  # uniform in area
    nav = np.array(
        [t["goal"] for t in gym.make("metarl/Navigation2D-v0").unwrapped.sample_tasks(2000, rng)]
    )
    assert nav.min() >= -0.5 and nav.max() <= 0.5


def _assert_same_step(batched, sync, where):
    for name, x, y in zip(
        ("obs", "reward", "terminated", "truncated"), batched[:4], sync[:4], strict=True
    ):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-8, err_msg=f"{name} at {where}")
    assert batched[4].keys() == sync[4].keys(), f"info keys at {where}"
    for key in sync[4]:
        np.testing.assert_allclose(
            batched[4][key], sync[4][key], rtol=0, atol=1e-8, err_msg=f"{key} at {where}"
        )


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_batched_engine_equals_sync_vector_env(env_id):
    n = 5
    batched = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    tasks = batched.unwrapped.sample_tasks(n, np.random.default_rng(1))
    batched.set_attr("task", tasks)
    sync.set_attr("task", tasks)
    assert list(batched.get_attr("task")) == tasks
    ob, ib = batched.reset(seed=11)
    os_, is_ = sync.reset(seed=11)
    np.testing.assert_allclose(ob, os_, rtol=0, atol=1e-8)
    assert ib.keys() == is_.keys()
    rng = np.random.default_rng(0)
    # Large torques make the ants fall, so episodes terminate and autoreset mid-run.
    scale = 3.0 if "Ant" in env_id else 1.0
    terminations = 0
    for t in range(200):
        actions = scale * rng.uniform(-1, 1, (n, *batched.single_action_space.shape))
        b, s = batched.step(actions), sync.step(actions)
        _assert_same_step(b, s, f"{env_id} step {t}")
        terminations += int(b[2].sum())
    if "Ant" in env_id:
        assert terminations > 0, "the Ant run must cover a termination"
    batched.close()
    sync.close()


def test_batched_engine_uses_mujoco_batch_threads():
    vec = gym.make_vec(
        "metarl/HalfCheetahVel-v0",
        num_envs=3,
        vectorization_mode="vector_entry_point",
        num_threads=2,
    )
    assert vec.unwrapped.batch.nsim == 3 and vec.unwrapped.batch.nthread == 2


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahDir-v0", "metarl/Navigation2D-v0"])
def test_pickle_and_async(env_id):
    env = gym.make(env_id).unwrapped
    env.task = env.sample_tasks(1, np.random.default_rng(5))[0]
    clone = pickle.loads(pickle.dumps(env))
    assert type(clone) is type(env)
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="async")
    try:
        tasks = env.sample_tasks(2, np.random.default_rng(2))
        vec.set_attr("task", tasks)
        assert list(vec.get_attr("task")) == tasks
        vec.reset(seed=0)
        obs, reward, *_ = vec.step(np.zeros((2, *env.action_space.shape), dtype=np.float32))
        assert obs.shape == (2, *env.observation_space.shape) and np.isfinite(reward).all()
    finally:
        vec.close()


# --- bad input ---------------------------------------------------------------------------
BAD_TASKS = [
    ("metarl/HalfCheetahVel-v0", {"speed": 1.0}, "speed"),
    ("metarl/HalfCheetahVel-v0", {"velocity": "fast"}, "velocity"),
    ("metarl/HalfCheetahVel-v0", {"velocity": 2.5}, "velocity"),
    ("metarl/HalfCheetahVel-v0", {}, "velocity"),
    ("metarl/HalfCheetahDir-v0", {"direction": 0.5}, "direction"),
    ("metarl/HalfCheetahDir-v0", {"direction": True}, "direction"),
    ("metarl/AntVel-v0", {"velocity": -0.1}, "velocity"),
    ("metarl/AntGoal-v0", {"goal": [3.0, 3.0]}, "goal"),
    ("metarl/AntGoal-v0", {"goal": [1.0]}, "goal"),
    ("metarl/Navigation2D-v0", {"goal": [0.6, 0.0]}, "goal"),
    ("metarl/Navigation2D-v0", {"goal": "0.1,0.2"}, "goal"),
]


@pytest.mark.parametrize(("env_id", "task", "key"), BAD_TASKS)
def test_bad_task_names_the_key(env_id, task, key):
    env = gym.make(env_id).unwrapped
    before = env.task
    with pytest.raises(ValueError, match=repr(key)):
        env.task = task
    with pytest.raises(ValueError, match=repr(key)):
        env.set_task(task)
    assert env.task == before, "a rejected task must leave the old one in place"
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match=repr(key)):
        vec.set_attr("task", [env.task, task])


def test_task_must_be_a_dict():
    with pytest.raises(ValueError, match="dict"):
        gym.make("metarl/HalfCheetahVel-v0").unwrapped.task = 1.0


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahVel-v0", "metarl/Navigation2D-v0"])
def test_task_list_of_wrong_length(env_id):
    vec = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    tasks = vec.unwrapped.sample_tasks(2)
    with pytest.raises(ValueError, match=r"3 tasks.*length 2"):
        vec.set_attr("task", tasks)


@pytest.mark.parametrize("env_id", ["metarl/AntDir-v0", "metarl/Navigation2D-v0"])
def test_step_before_reset(env_id):
    env = gym.make(env_id)
    with pytest.raises(ResetNeeded):
        env.step(env.action_space.sample())
    with pytest.raises(ResetNeeded, match="reset"):
        env.unwrapped.step(env.action_space.sample())
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ResetNeeded, match="reset"):
        vec.step(np.zeros((2, *env.action_space.shape)))


def test_wrong_action_shape_in_batched_engine():
    vec = gym.make_vec(
        "metarl/HalfCheetahVel-v0", num_envs=2, vectorization_mode="vector_entry_point"
    )
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(2, 6\)"):
        vec.step(np.zeros((2, 5)))


def test_disabled_autoreset_freezes_finished_sub_envs():
    """With autoreset disabled a finished sub-env is not stepped; the others run as before."""
    env_id = "metarl/AntVel-v0"
    frozen = gym.make_vec(
        env_id, num_envs=4, vectorization_mode="vector_entry_point", autoreset_mode="disabled"
    )
    normal = gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point")
    assert frozen.metadata["autoreset_mode"].name == "DISABLED"
    frozen.reset(seed=3)
    normal.reset(seed=3)
    rng = np.random.default_rng(0)
    done = np.zeros(4, dtype=bool)
    final_obs = {}
    mixed_steps = 0
    for _ in range(150):
        actions = 3.0 * rng.uniform(-1, 1, (4, 8))
        f, n = frozen.step(actions), normal.step(actions)
        live = ~done
        mixed_steps += bool(done.any() and live.any())
        np.testing.assert_allclose(f[0][live], n[0][live], rtol=0, atol=1e-12)
        np.testing.assert_allclose(f[1][live], n[1][live], rtol=0, atol=1e-12)
        for i in np.flatnonzero(done):
            np.testing.assert_array_equal(f[0][i], final_obs[i])
            assert f[1][i] == 0.0 and f[2][i]
        for i in np.flatnonzero(live & f[2]):
            final_obs[i] = f[0][i].copy()
        done |= f[2]
    assert mixed_steps > 0, "the run must cover steps with finished and running sub-envs"
    with pytest.raises(ValueError, match="autoreset_mode"):
        gym.make_vec(
            env_id, num_envs=2, vectorization_mode="vector_entry_point", autoreset_mode="later"
        )


def test_module_prefix_makes_ids_without_an_import():
    import subprocess
    import sys

    code = (
        "import gymnasium as gym; "
        "e = gym.make('envs:metarl/HalfCheetahDir-v0'); "
        "v = gym.make_vec('envs:metarl/Navigation2D-v0', num_envs=2, vectorization_mode='vector_entry_point'); "
        "print(e.spec.id, type(v).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["metarl/HalfCheetahDir-v0", "Navigation2DVectorEnv"]


# --- options (Gymnasium v5 style constructor keywords) ------------------------------------

ANT_OPTIONS = {
    "ctrl_cost_weight": 0.5,
    "contact_cost_weight": 1e-3,
    "survive_reward": 1.0,
    "healthy_z_range": [0.3, 1.5],
    "terminate_when_unhealthy": False,
    "exclude_current_positions_from_observation": False,
}


@pytest.mark.parametrize(
    ("env_id", "options"),
    [
        ("metarl/HalfCheetahDir-v0", {"exclude_current_positions_from_observation": False}),
        ("metarl/HalfCheetahVel-v0", {"ctrl_cost_weight": 0.1}),
        ("metarl/AntDir-v0", ANT_OPTIONS),
        ("metarl/AntGoal-v0", {"exclude_current_positions_from_observation": True}),
    ],
)
def test_options_reach_both_engines_alike(env_id, options):
    n = 4
    batched = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **options)
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", **options)
    plain = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    tasks = batched.unwrapped.sample_tasks(n, np.random.default_rng(1))
    for vec in (batched, sync, plain):
        vec.set_attr("task", tasks)
    ob, _ = batched.reset(seed=3)
    os_, _ = sync.reset(seed=3)
    plain.reset(seed=3)
    np.testing.assert_allclose(ob, os_, rtol=0, atol=1e-8)
    rng = np.random.default_rng(0)
    differs = False
    for t in range(30):
        actions = rng.uniform(-1, 1, (n, *batched.single_action_space.shape))
        b, s, p = batched.step(actions), sync.step(actions), plain.step(actions)
        _assert_same_step(b, s, f"{env_id} step {t}")
        differs |= b[0].shape != p[0].shape or not np.allclose(b[1], p[1])
    assert differs, "the options must change the observation or the reward"


def test_observation_with_positions():
    env = gym.make("metarl/HalfCheetahDir-v0", exclude_current_positions_from_observation=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (18,) and env.observation_space.shape == (18,)
    assert obs[0] == pytest.approx(env.unwrapped.data.qpos[0])
    ant = gym.make("metarl/AntGoal-v0")  # a goal task observes where the torso is
    obs, _ = ant.reset(seed=0)
    assert obs.shape == (107,)
    np.testing.assert_allclose(obs[:2], ant.unwrapped.data.qpos[:2])
    blind = gym.make("metarl/AntGoal-v0", exclude_current_positions_from_observation=True)
    assert blind.reset(seed=0)[0].shape == (105,)


def test_ant_options_change_the_reward_parts_and_termination():
    env = gym.make("metarl/AntVel-v0", **ANT_OPTIONS)
    env.unwrapped.task = {"velocity": 1.0}
    env.reset(seed=0)
    action = np.full(8, 0.5)
    _, reward, _, _, info = env.step(action)
    assert info["reward_survive"] == 1.0
    assert info["reward_ctrl"] == pytest.approx(-0.5 * np.sum(action**2))
    assert reward == pytest.approx(
        info["reward_forward"]
        + info["reward_survive"]
        + info["reward_ctrl"]
        + info["reward_contact"]
    )
    # Far above the healthy range: the default terminates, terminate_when_unhealthy=False does not.
    for kwargs, expected in (({}, True), ({"terminate_when_unhealthy": False}, False)):
        ant = gym.make("metarl/AntDir-v0", **kwargs).unwrapped
        ant.reset(seed=0)
        qpos = ant.data.qpos.copy()
        qpos[2] = 2.0
        ant.set_state(qpos, ant.data.qvel.copy())
        assert ant.step(np.zeros(8))[2] == expected


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"ctrl_cost_wieght": 0.1}, TypeError, "ctrl_cost_wieght.*options: "),
        ({"ctrl_cost_weight": -1.0}, ValueError, "ctrl_cost_weight.*non-negative"),
        ({"ctrl_cost_weight": "high"}, ValueError, "ctrl_cost_weight.*number"),
        ({"healthy_z_range": [1.0, 0.2]}, ValueError, "healthy_z_range.*low < high"),
        ({"terminate_when_unhealthy": 1}, ValueError, "terminate_when_unhealthy.*true or false"),
    ],
)
def test_bad_option_names_itself(options, error, match):
    with pytest.raises(error, match=match):
        gym.make("metarl/AntVel-v0", **options)
    with pytest.raises(error, match=match):
        gym.make_vec(
            "metarl/AntVel-v0", num_envs=2, vectorization_mode="vector_entry_point", **options
        )


@pytest.mark.parametrize("env_id", ["metarl/AntDir-v0", "metarl/Navigation2D-v0"])
def test_same_step_autoreset_equals_sync(env_id):
    """SAME_STEP (stable-baselines3's convention): the batched engine as Gymnasium's sync env."""
    from gymnasium.vector import AutoresetMode

    n = 4
    batched = gym.make_vec(
        env_id, num_envs=n, vectorization_mode="vector_entry_point", autoreset_mode="same_step"
    )
    sync = gym.make_vec(
        env_id,
        num_envs=n,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )
    tasks = batched.unwrapped.sample_tasks(n, np.random.default_rng(1))
    batched.set_attr("task", tasks)
    sync.set_attr("task", tasks)
    np.testing.assert_allclose(batched.reset(seed=3)[0], sync.reset(seed=3)[0], atol=1e-8)
    rng = np.random.default_rng(0)
    ends = 0
    for t in range(120):
        actions = 3 * rng.uniform(-1, 1, (n, *batched.single_action_space.shape))
        b, s = batched.step(actions), sync.step(actions)
        for i in range(4):
            np.testing.assert_allclose(b[i], s[i], atol=1e-8, err_msg=f"step {t} output {i}")
        assert set(b[4]) == set(s[4])
        for key, value in s[4].items():
            if key == "final_obs":
                ends += int(s[4]["_final_obs"].sum())
                for i in np.flatnonzero(s[4]["_final_obs"]):
                    np.testing.assert_allclose(b[4][key][i], value[i], atol=1e-8)
            elif key == "final_info":
                for k, v in value.items():
                    np.testing.assert_allclose(b[4][key][k], v, atol=1e-8, err_msg=k)
            else:
                np.testing.assert_allclose(b[4][key], value, atol=1e-8, err_msg=key)
    assert ends > 0, "the run must cover episode ends"
