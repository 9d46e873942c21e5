"""2-D navigation to a goal: the fast, numpy-only test bed (Finn et al. 2017, section 5.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.utils import EzPickle
from PIL import Image, ImageDraw

from envs.base import ArrayDefinitions, Arrays, TaskField, first
from envs.vector import ArrayVectorEnv

__all__ = ["Navigation2DEnv", "Navigation2DVectorEnv", "top_view"]


def top_view(
    trail: Sequence[np.ndarray], goal: Sequence[float], size: tuple[int, int]
) -> np.ndarray:
    """Top view of Navigation2D as an RGB array: the goal square [-0.5, 0.5]^2, goal (green), trail and agent (red).

    The view shows [-0.8, 0.8]^2 and zooms out when the agent wanders further,
    so the agent never leaves the picture; the goal square gives the scale.
    """
    width, height = size
    extent = max(0.8, 1.1 * float(np.max(np.abs(trail))))
    scale = min(width, height) / (2 * extent)

    def pixel(point: Sequence[float]) -> tuple[float, float]:
        return width / 2 + point[0] * scale, height / 2 - point[1] * scale  # y up, as in a plot

    image = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle([pixel((-0.5, 0.5)), pixel((0.5, -0.5))], outline=(180, 180, 180))
    gx, gy = pixel(goal)
    radius = max(3.0, 0.03 * scale)
    draw.ellipse([gx - radius, gy - radius, gx + radius, gy + radius], fill=(40, 170, 60))
    points = [pixel(p) for p in trail]
    if len(points) > 1:
        draw.line(points, fill=(90, 120, 220), width=2)
    ax, ay = points[-1]
    draw.ellipse([ax - radius, ay - radius, ax + radius, ay + radius], fill=(210, 50, 40))
    return np.asarray(image)


class Navigation2DEnv(ArrayDefinitions, gym.Env, EzPickle):
    """A point agent that starts at the origin and moves toward a goal in [-0.5, 0.5]^2.

    Observation: the position (2). Action: a displacement, clipped to [-0.1, 0.1]
    per axis. Reward (Finn et al. 2017; pytorch-maml-rl ``Navigation2DEnv``):
    ``-||position - goal||_2`` after the move (info ``reward_distance``). The episode
    runs to the horizon (100, from the registry); it never terminates early.

    Args:
        task: the initial task (default: a fixed draw from the distribution).
        render_mode: ``"rgb_array"`` draws the top view (:func:`top_view`): the goal,
            the path taken since ``reset`` and the agent.
        width, height: the size of a rendered frame in pixels.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    task_fields = (TaskField("goal", "box", -0.5, 0.5, dim=2),)
    max_step: ClassVar[float] = 0.1

    def __init__(
        self,
        task: dict[str, Any] | None = None,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
    ) -> None:
        EzPickle.__init__(self, task, render_mode, width, height)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode, self.size = render_mode, (int(width), int(height))
        self._trail: list[np.ndarray] = []
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
        self.action_space = gym.spaces.Box(
            -self.max_step, self.max_step, shape=(2,), dtype=np.float32
        )
        self._position = np.zeros((1, 2))
        self._init_task(task)
        self._was_reset = False

    @classmethod
    def vector_env(cls, num_envs: int, **kwargs: Any) -> Navigation2DVectorEnv:
        """The numpy batched engine (the registry's ``vector_entry_point``)."""
        return Navigation2DVectorEnv(num_envs, **kwargs)

    @classmethod
    def move(cls, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        return position + np.clip(action, -cls.max_step, cls.max_step)

    @classmethod
    def observation(cls, state: Arrays) -> np.ndarray:
        return state["position"].copy()

    @classmethod
    def reward(cls, before, state, action, tasks):
        distance = -np.linalg.norm(state["position"] - tasks["goal"], axis=1)
        return distance, {"reward_distance": distance}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._position = np.zeros((1, 2))
        self._was_reset = True
        self._trail = [self._position[0].copy()]
        return self.observation({"position": self._position})[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._was_reset:
            raise ResetNeeded("Cannot call step() before reset(): call reset(seed=...) first.")
        action = np.asarray(action, dtype=np.float64)[None]
        before = {"position": self._position}
        self._position = self.move(self._position, action)
        self._trail.append(self._position[0].copy())
        obs, reward, terminated, info = self.step_arrays(
            before, {"position": self._position}, action, self._task_arrays
        )
        return obs[0], float(reward[0]), bool(terminated[0]), False, first(info)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        trail = self._trail or [self._position[0]]
        return top_view(trail, self.task["goal"], self.size)


class Navigation2DVectorEnv(ArrayVectorEnv):
    """``num_envs`` navigation sub-envs as one numpy array.

    Args:
        num_envs: number of sub-envs.
        max_episode_steps: truncation horizon (the registry's 100, through ``gym.make_vec``).
        autoreset_mode: ``next_step`` or ``disabled`` (see :class:`~envs.vector.ArrayVectorEnv`).
    """

    def __init__(
        self, num_envs: int, max_episode_steps: int | None = None, autoreset_mode: str = "next_step"
    ) -> None:
        template = Navigation2DEnv()
        super().__init__(
            Navigation2DEnv,
            num_envs,
            template.observation_space,
            template.action_space,
            max_episode_steps,
            autoreset_mode,
        )
        self._position = np.zeros((self.num_envs, 2))

    def _reset_physics(self, ids: np.ndarray) -> None:
        self._position[ids] = 0.0

    def _step_physics(self, actions: np.ndarray, ids: np.ndarray | None) -> None:
        ids = slice(None) if ids is None else ids
        self._position[ids] = Navigation2DEnv.move(self._position[ids], actions[ids])

    def _state(self) -> Arrays:
        return {"position": self._position.copy()}
