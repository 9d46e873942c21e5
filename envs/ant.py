"""Ant with a goal velocity, a goal direction or a goal position (Finn et al. 2017, section 5.3).

Contact forces: Gymnasium's Ant-v5 calls ``mj_rnePostConstraint`` right after
``mj_step``, from a mix of pre- and post-integration quantities that
``mujoco.batch`` does not reproduce. metarl defines them at the post-step state
instead, in both engines: the single env runs ``mj_forward`` and
``mj_rnePostConstraint`` after the step, and the batched engine steps a model
with an accelerometer on the torso (a sensor that needs them) with
``stage=mjSTAGE_ACC``. The two agree exactly and the trajectory is unchanged;
only the contact part of the observation and cost differs from Gymnasium's Ant.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from envs.base import Arrays, TaskField
from envs.locomotion import LocomotionEnv

__all__ = ["AntDirEnv", "AntGoalEnv", "AntVelEnv"]


class _Ant(LocomotionEnv):
    """Gymnasium's Ant-v5 model and observation (105: qpos without x, y; qvel; clipped
    contact forces of the 13 bodies), with the MAML paper's (rllab) costs:
    control ``0.005 * sum(a^2)``, contact ``5e-4 * sum(clip(cfrc_ext, -1, 1)^2)``, a
    survive bonus of 0.05, and termination when the torso height leaves [0.2, 1.0]
    or the state is not finite. Velocities are the torso's xy displacement over
    ``dt = 0.05``.

    Options (constructor keywords, Gymnasium Ant-v5 style): ``ctrl_cost_weight``
    (0.005), ``contact_cost_weight`` (5e-4), ``survive_reward`` (0.05, paid every
    step), ``healthy_z_range`` ((0.2, 1.0)), ``terminate_when_unhealthy`` (true;
    false never ends an episode early, though a non-finite state still does),
    ``exclude_current_positions_from_observation`` (true; false adds the torso's
    x and y: 107 values).
    """

    options: ClassVar[tuple[str, ...]] = (
        *LocomotionEnv.options,
        "contact_cost_weight",
        "survive_reward",
        "healthy_z_range",
        "terminate_when_unhealthy",
    )
    xml_file = "ant.xml"
    contact_sensor_body = "torso"
    ctrl_cost_weight: ClassVar[float] = 0.005
    contact_cost_weight: ClassVar[float] = 5e-4
    survive_reward: ClassVar[float] = 0.05
    healthy_z_range: ClassVar[tuple[float, float]] = (0.2, 1.0)
    terminate_when_unhealthy: ClassVar[bool] = True
    default_camera_config: ClassVar[dict[str, float]] = {"distance": 4.0}

    @classmethod
    def contact_forces(cls, state: Arrays) -> np.ndarray:
        return np.clip(state["cfrc_ext"], -1.0, 1.0)

    @classmethod
    def observation(cls, state: Arrays) -> np.ndarray:
        n = len(state["qpos"])
        contacts = cls.contact_forces(state)[:, 1:].reshape(n, -1)
        skip = 2 if cls.exclude_current_positions_from_observation else 0
        return np.concatenate([state["qpos"][:, skip:], state["qvel"], contacts], axis=1)

    @classmethod
    def xy_velocity(cls, before: Arrays, state: Arrays) -> np.ndarray:
        return (state["qpos"][:, :2] - before["qpos"][:, :2]) / (0.01 * cls.frame_skip)

    @classmethod
    def terminated(cls, state: Arrays) -> np.ndarray:
        finite = np.isfinite(state["qpos"]).all(axis=1) & np.isfinite(state["qvel"]).all(axis=1)
        low, high = cls.healthy_z_range
        if not cls.terminate_when_unhealthy:
            return ~finite
        z = state["qpos"][:, 2]
        return ~(finite & (z >= low) & (z <= high))

    @classmethod
    def reset_info(cls, state: Arrays) -> Arrays:
        xy = state["qpos"][:, :2]
        return {
            "x_position": xy[:, 0].copy(),
            "y_position": xy[:, 1].copy(),
            "distance_from_origin": np.linalg.norm(xy, axis=1),
        }

    @classmethod
    def step_info(cls, before: Arrays, state: Arrays) -> Arrays:
        velocity = cls.xy_velocity(before, state)
        return {**cls.reset_info(state), "x_velocity": velocity[:, 0], "y_velocity": velocity[:, 1]}

    @classmethod
    def costs(cls, state: Arrays, action: np.ndarray) -> Arrays:
        n = len(action)
        return {
            "reward_ctrl": -cls.ctrl_cost_weight * np.sum(np.square(action), axis=1),
            "reward_contact": -cls.contact_cost_weight
            * np.sum(np.square(cls.contact_forces(state)).reshape(n, -1), axis=1),
            "reward_survive": np.full(n, cls.survive_reward),
        }

    @classmethod
    def goal_term(cls, before: Arrays, state: Arrays, tasks: Arrays) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def reward(cls, before, state, action, tasks):
        parts = {"reward_forward": cls.goal_term(before, state, tasks), **cls.costs(state, action)}
        return sum(parts.values()), parts


class AntVelEnv(_Ant):
    """Ant rewarded for running forward at a goal velocity drawn from U[0, 3].

    Reward (Finn et al. 2017; rllab ``ant_env_rand.py``, as in pytorch-maml-rl
    ``AntVelEnv``): ``-|v_x - velocity| + 1.0 + 0.05 - ctrl - contact``. Info:
    ``reward_forward`` (``-|v_x - velocity| + 1.0``), ``reward_survive``,
    ``reward_ctrl``, ``reward_contact``.
    """

    task_fields = (TaskField("velocity", "uniform", 0.0, 3.0),)

    @classmethod
    def goal_term(cls, before, state, tasks):
        return -np.abs(cls.xy_velocity(before, state)[:, 0] - tasks["velocity"]) + 1.0


class AntDirEnv(_Ant):
    """Ant rewarded for running forward (direction 1) or backward (-1).

    Reward (Finn et al. 2017; rllab ``ant_env_rand_direc.py``, as in pytorch-maml-rl
    ``AntDirEnv``): ``direction * v_x + 0.05 - ctrl - contact``.
    """

    task_fields = (TaskField("direction", "sign"),)

    @classmethod
    def goal_term(cls, before, state, tasks):
        return tasks["direction"] * cls.xy_velocity(before, state)[:, 0]


class AntGoalEnv(_Ant):
    """Ant rewarded for reaching a goal position drawn uniformly from the disk of radius 3.

    Observes the torso's x and y (107 values; option
    ``exclude_current_positions_from_observation=True`` hides them).

    Reward (Finn et al. 2017; rllab ``ant_env_rand_goal.py``, as in pytorch-maml-rl
    ``AntPosEnv`` but without its +4 offset): ``-L1(torso_xy - goal) + 0.05 - ctrl -
    contact``.
    """

    task_fields = (TaskField("goal", "disk", high=3.0, dim=2),)
    # A goal position is unreachable blind: the torso's x and y are observed (107 values),
    # as rllab's ant_env_rand_goal.py and pytorch-maml-rl observe the full qpos.
    exclude_current_positions_from_observation: ClassVar[bool] = False

    @classmethod
    def goal_term(cls, before, state, tasks):
        return -np.abs(state["qpos"][:, :2] - tasks["goal"]).sum(axis=1)
