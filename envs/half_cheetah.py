"""HalfCheetah with a goal velocity or a goal direction (Finn et al. 2017, section 5.3)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from envs.base import Arrays, TaskField
from envs.locomotion import LocomotionEnv

__all__ = ["HalfCheetahDirEnv", "HalfCheetahVelEnv"]


class _HalfCheetah(LocomotionEnv):
    """Gymnasium's HalfCheetah-v5 model and observation (17: qpos without x, qvel).

    Options (constructor keywords): ``exclude_current_positions_from_observation``
    (default true; false adds the root's x position, as rllab's and
    pytorch-maml-rl's observation of the torso's position does: 18 values),
    ``ctrl_cost_weight`` (default 0.05).

    The control cost is 0.05 * sum(a^2), the MAML paper's (rllab) weight, not
    Gymnasium's 0.1. The forward velocity is the root's x displacement over
    ``dt = 0.05`` (5 frames of 0.01 s).
    """

    xml_file = "half_cheetah.xml"
    ctrl_cost_weight: ClassVar[float] = 0.05
    default_camera_config: ClassVar[dict[str, float]] = {"distance": 4.0}

    @classmethod
    def observation(cls, state: Arrays) -> np.ndarray:
        skip = 1 if cls.exclude_current_positions_from_observation else 0
        return np.concatenate([state["qpos"][:, skip:], state["qvel"]], axis=1)

    @classmethod
    def forward_velocity(cls, before: Arrays, state: Arrays) -> np.ndarray:
        return (state["qpos"][:, 0] - before["qpos"][:, 0]) / (0.01 * cls.frame_skip)

    @classmethod
    def step_info(cls, before: Arrays, state: Arrays) -> Arrays:
        return {
            "x_position": state["qpos"][:, 0].copy(),
            "x_velocity": cls.forward_velocity(before, state),
        }

    @classmethod
    def reset_info(cls, state: Arrays) -> Arrays:
        return {"x_position": state["qpos"][:, 0].copy()}

    @classmethod
    def control_cost(cls, action: np.ndarray) -> np.ndarray:
        return cls.ctrl_cost_weight * np.sum(np.square(action), axis=1)


class HalfCheetahVelEnv(_HalfCheetah):
    """HalfCheetah rewarded for running at a goal velocity drawn from U[0, 2].

    Reward (Finn et al. 2017; rllab ``half_cheetah_env_rand.py``, as in
    pytorch-maml-rl ``HalfCheetahVelEnv``): ``-|v - velocity| - 0.05 * sum(a^2)``.
    Info: ``reward_forward`` (the first term), ``reward_ctrl`` (the second).
    """

    task_fields = (TaskField("velocity", "uniform", 0.0, 2.0),)

    @classmethod
    def reward(cls, before, state, action, tasks):
        forward = -np.abs(cls.forward_velocity(before, state) - tasks["velocity"])
        ctrl = -cls.control_cost(action)
        return forward + ctrl, {"reward_forward": forward, "reward_ctrl": ctrl}


class HalfCheetahDirEnv(_HalfCheetah):
    """HalfCheetah rewarded for running forward (direction 1) or backward (-1).

    Reward (Finn et al. 2017; rllab ``half_cheetah_env_rand_direc.py``, as in
    pytorch-maml-rl ``HalfCheetahDirEnv``): ``direction * v - 0.05 * sum(a^2)``.
    Info: ``reward_forward``, ``reward_ctrl``.
    """

    task_fields = (TaskField("direction", "sign"),)

    @classmethod
    def reward(cls, before, state, action, tasks):
        forward = tasks["direction"] * cls.forward_velocity(before, state)
        ctrl = -cls.control_cost(action)
        return forward + ctrl, {"reward_forward": forward, "reward_ctrl": ctrl}
