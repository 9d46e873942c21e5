"""MuJoCo locomotion with tasks: the single env and the batched engine on ``mujoco.batch``.

:class:`LocomotionEnv` is a Gymnasium ``MujocoEnv`` over one of Gymnasium's v5
models; :class:`LocomotionVectorEnv` steps ``num_envs`` copies of that model with
``mujoco.batch.Batch`` on a thread pool (the GIL released) and computes the
observations and rewards with the family's array definitions, the same ones the
single env calls with a batch of one.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import mujoco.batch
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.error import ResetNeeded
from gymnasium.utils import EzPickle

from envs.base import ArrayDefinitions, Arrays, first
from envs.vector import ArrayVectorEnv

__all__ = ["LocomotionEnv", "LocomotionVectorEnv", "build_model"]

ASSETS = Path(gym.__file__).parent / "envs" / "mujoco" / "assets"


@functools.cache
def _compiled(xml_file: str, contact_sensor_body: str | None) -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_file(str(ASSETS / xml_file))
    if contact_sensor_body is not None:
        # An acceleration sensor makes mj_forward run mj_rnePostConstraint, so cfrc_ext
        # (the contact forces) is computed at the post-step state by mujoco.batch too.
        # A sensor only reads the state: the trajectory is unchanged.
        site = spec.body(contact_sensor_body).add_site(name="metarl_contact_probe")
        spec.add_sensor(
            name="metarl_contact_probe",
            type=mujoco.mjtSensor.mjSENS_ACCELEROMETER,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname=site.name,
        )
    with warnings.catch_warnings():
        # half_cheetah.xml's `settotalmass` is deprecated in MuJoCo 4; the model is unchanged.
        warnings.filterwarnings("ignore", message=".*settotalmass.*")
        return spec.compile()


def build_model(xml_file: str, contact_sensor_body: str | None = None) -> mujoco.MjModel:
    """A fresh copy of a Gymnasium asset's model, with the contact-force probe if asked."""
    return _compiled(xml_file, contact_sensor_body).__copy__()


class LocomotionEnv(ArrayDefinitions, MujocoEnv, EzPickle):
    """Base of the MuJoCo task families; a subclass sets the class constants and formulas.

    Args:
        task: the initial task (default: a fixed draw from the distribution).
        render_mode, width, height, camera_id, camera_name: as Gymnasium's ``MujocoEnv``.
        **options: the family's settings to change, by name (its ``options``; for
            example ``exclude_current_positions_from_observation=False``).
    """

    options: ClassVar[tuple[str, ...]] = (
        "exclude_current_positions_from_observation",
        "ctrl_cost_weight",
    )
    engine_takes_threads: ClassVar[bool] = True
    render_needs_opengl: ClassVar[bool] = True
    # Gymnasium falls back to its free camera when the model has no "track" camera.
    render_kwargs: ClassVar[dict[str, Any]] = {"camera_name": "track"}
    xml_file: ClassVar[str]
    frame_skip: ClassVar[int] = 5
    exclude_current_positions_from_observation: ClassVar[bool] = True
    """Leave the root's horizontal position out of the observation (Gymnasium v5's default)."""
    ctrl_cost_weight: ClassVar[float]
    reset_noise_scale: ClassVar[float] = 0.1
    # Body that carries the contact-force probe; None for families that ignore contacts.
    contact_sensor_body: ClassVar[str | None] = None
    default_camera_config: ClassVar[dict[str, float]] = {}
    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"],
        "render_fps": 20,
    }

    def __init__(
        self,
        task: dict[str, Any] | None = None,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
        camera_id: int | None = None,
        camera_name: str | None = None,
        **options: Any,
    ) -> None:
        EzPickle.__init__(self, task, render_mode, width, height, camera_id, camera_name, **options)
        self.definitions = type(self).with_options(**options)
        MujocoEnv.__init__(
            self,
            str(ASSETS / self.xml_file),
            self.frame_skip,
            observation_space=None,
            render_mode=render_mode,
            width=width,
            height=height,
            camera_id=camera_id,
            camera_name=camera_name,
            default_camera_config=dict(self.default_camera_config),
        )
        self.observation_space = self.definitions.observation_space_for(self.model)
        self._init_task(task)
        self._was_reset = False

    @classmethod
    def vector_env(
        cls,
        num_envs: int,
        max_episode_steps: int | None = None,
        num_threads: int = 0,
        autoreset_mode: str = "next_step",
        **options: Any,
    ) -> LocomotionVectorEnv:
        """This family's batched engine (the registry's ``vector_entry_point``)."""
        return LocomotionVectorEnv(
            cls.with_options(**options), num_envs, max_episode_steps, num_threads, autoreset_mode
        )

    @classmethod
    def physics_model(cls) -> mujoco.MjModel:
        """A fresh copy of the model the engine steps (contact probe included)."""
        return build_model(cls.xml_file, cls.contact_sensor_body)

    @classmethod
    def observation_space_for(cls, model: mujoco.MjModel) -> gym.spaces.Box:
        zeros = {
            "qpos": np.zeros((1, model.nq)),
            "qvel": np.zeros((1, model.nv)),
            "cfrc_ext": np.zeros((1, model.nbody, 6)),
        }
        size = cls.observation(zeros).shape[1]
        return gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float64)

    @classmethod
    def action_space_for(cls, model: mujoco.MjModel) -> gym.spaces.Box:
        low, high = model.actuator_ctrlrange.astype(np.float32).T
        return gym.spaces.Box(low=low, high=high, dtype=np.float32)

    @classmethod
    def dt_for(cls, model: mujoco.MjModel) -> float:
        return float(model.opt.timestep) * cls.frame_skip

    # --- MujocoEnv hooks ------------------------------------------------------------------
    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = build_model(self.xml_file, self.contact_sensor_body)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)
        if self.contact_sensor_body is not None:
            # Contact forces at the post-step state, as the batched engine computes them.
            mujoco.mj_forward(self.model, self.data)
            mujoco.mj_rnePostConstraint(self.model, self.data)

    def _physics_state(self) -> Arrays:
        return {
            "qpos": self.data.qpos[None].copy(),
            "qvel": self.data.qvel[None].copy(),
            "cfrc_ext": self.data.cfrc_ext[None].copy(),
        }

    def reset_model(self) -> np.ndarray:
        # Gymnasium v5's initial-state noise, drawn in the same order.
        s = self.reset_noise_scale
        qpos = self.init_qpos + self.np_random.uniform(low=-s, high=s, size=self.model.nq)
        qvel = self.init_qvel + s * self.np_random.standard_normal(self.model.nv)
        self.set_state(qpos, qvel)
        self._was_reset = True
        return self.definitions.observation(self._physics_state())[0]

    def _get_reset_info(self) -> dict[str, Any]:
        return first(self.definitions.reset_info(self._physics_state()))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._was_reset:
            raise ResetNeeded("Cannot call step() before reset(): call reset(seed=...) first.")
        action = np.asarray(action, dtype=np.float64)
        before = self._physics_state()
        self.do_simulation(action, self.frame_skip)
        obs, reward, terminated, info = self.definitions.step_arrays(
            before, self._physics_state(), action[None], self._task_arrays
        )
        if self.render_mode == "human":
            self.render()
        return obs[0], float(reward[0]), bool(terminated[0]), False, first(info)


class LocomotionVectorEnv(ArrayVectorEnv):
    """``num_envs`` sub-envs of a :class:`LocomotionEnv` family stepped by ``mujoco.batch``.

    Args:
        env_class: the family, e.g. ``HalfCheetahVelEnv``.
        num_envs: number of sub-envs.
        max_episode_steps: truncation horizon (the registry's, through ``gym.make_vec``).
        num_threads: threads of the ``mujoco.batch`` pool (0: all cores).
        autoreset_mode: ``next_step`` or ``disabled`` (see :class:`~envs.vector.ArrayVectorEnv`).
    """

    def __init__(
        self,
        env_class: type[LocomotionEnv],
        num_envs: int,
        max_episode_steps: int | None = None,
        num_threads: int = 0,
        autoreset_mode: str = "next_step",
    ) -> None:
        model = build_model(env_class.xml_file, env_class.contact_sensor_body)
        super().__init__(
            env_class,
            num_envs,
            env_class.observation_space_for(model),
            env_class.action_space_for(model),
            max_episode_steps,
            autoreset_mode,
        )
        self.model = model
        self.batch = mujoco.batch.Batch(model, self.num_envs, num_threads)
        self._qpos = self.batch.bind("qpos")
        self._qvel = self.batch.bind("qvel")
        self._ctrl = self.batch.bind("ctrl")
        self._contacts = env_class.contact_sensor_body is not None
        self._cfrc = self.batch.bind("cfrc_ext") if self._contacts else None
        self._no_contacts = np.zeros((self.num_envs, model.nbody, 6))
        # After each env step, compute the stages the observation needs at the new state.
        self._stage = (
            mujoco.mjtStage.mjSTAGE_ACC if self._contacts else mujoco.mjtStage.mjSTAGE_NONE
        )
        self._init_qpos = model.qpos0.copy()
        self._init_qvel = np.zeros(model.nv)
        self.dt = env_class.dt_for(model)

    def _reset_physics(self, ids: np.ndarray) -> None:
        self.batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        s = self.definitions.reset_noise_scale
        nq, nv = self.model.nq, self.model.nv
        for i in ids:
            rng = self._rngs[i]
            self._qpos[i] = self._init_qpos + rng.uniform(low=-s, high=s, size=nq)
            self._qvel[i] = self._init_qvel + s * rng.standard_normal(nv)
        if self._contacts:
            self.batch.forward(ids)

    def _step_physics(self, actions: np.ndarray, ids: np.ndarray | None) -> None:
        self._ctrl[:] = actions
        self.batch.step(ids, nstep=self.definitions.frame_skip, stage=self._stage)

    def _state(self) -> Arrays:
        return {
            "qpos": self._qpos.copy(),
            "qvel": self._qvel.copy(),
            "cfrc_ext": self._cfrc.copy() if self._contacts else self._no_contacts,
        }
