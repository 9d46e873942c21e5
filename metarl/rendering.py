"""Videos of adaptation: the same task rolled out before and after each inner step, side by side.

:func:`render_adaptation` lays panels out in a grid, one row per task and one
column per parameter set (for example ``theta`` and the parameters after one
inner step), and steps every panel in lockstep so each video frame shows the
same time step everywhere. Frames are streamed to the writer, never all held.

MuJoCo families render through Gymnasium's offscreen renderer, looking through
the model's ``track`` camera when it has one (it follows the body's centre of
mass, so a running cheetah stays in view). Navigation2D draws itself (its
``render``): the goal region, the goal, the agent and its trail. Each family
says which it needs (``render_needs_opengl``, ``render_kwargs``).

Headless machines: when ``MUJOCO_GL`` is unset and there is no ``DISPLAY``,
EGL is tried first and ``MUJOCO_GL`` is set to the backend that works before
the first MuJoCo renderer is created; if none works, :class:`RenderingError`
lists what was tried and how to install a backend.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import load_env_creator
from PIL import Image, ImageDraw, ImageFont

import envs as _envs  # noqa: F401  (registers the metarl/* ids for gym.make)
from metarl.errors import InputError
from metarl.policies import GaussianMLPPolicy, Params, distribution

__all__ = [
    "GL_BACKENDS",
    "VIDEO_SUFFIXES",
    "RenderingError",
    "ensure_gl_backend",
    "render_adaptation",
]

VIDEO_SUFFIXES = (".mp4", ".gif")
GL_BACKENDS = ("egl", "osmesa", "glfw")
_INSTALL_HINT = (
    "Install an OpenGL backend for MuJoCo: on Debian/Ubuntu `apt-get install libegl1` "
    "(EGL: GPU or Mesa, headless) or `apt-get install libosmesa6` (OSMesa: software, slow), "
    "then set MUJOCO_GL=egl or MUJOCO_GL=osmesa before starting Python; glfw needs a display "
    "(DISPLAY set)."
)


class RenderingError(RuntimeError):
    """No OpenGL backend could create a MuJoCo rendering context."""


# --- OpenGL backend ----------------------------------------------------------------

_gl_backend: str | None = None  # the backend that worked, probed once per process


def _gl_context(name: str, width: int, height: int) -> Any:
    if name == "egl":
        from mujoco.egl import GLContext
    elif name == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        from mujoco.glfw import GLContext
    return GLContext(width, height)


def ensure_gl_backend() -> str:
    """Pick a working MuJoCo GL backend, set ``MUJOCO_GL`` to it and return its name.

    ``MUJOCO_GL`` set by the user is the only candidate. Otherwise the order is
    egl, osmesa, glfw without a ``DISPLAY`` and glfw, egl, osmesa with one.
    Gymnasium reads ``MUJOCO_GL`` when it creates its renderer, so this must run
    before the first ``render()``.

    Raises:
        RenderingError: naming every backend tried, why it failed, and how to install one.
    """
    global _gl_backend
    if _gl_backend is not None and os.environ.get("MUJOCO_GL") == _gl_backend:
        return _gl_backend
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen:
        if chosen not in GL_BACKENDS:
            raise RenderingError(
                f"MUJOCO_GL={chosen!r} is not one of {list(GL_BACKENDS)}. {_INSTALL_HINT}"
            )
        candidates: tuple[str, ...] = (chosen,)
    elif os.environ.get("DISPLAY"):
        candidates = ("glfw", "egl", "osmesa")
    else:
        candidates = GL_BACKENDS
    errors = []
    for name in candidates:
        # mujoco.egl / mujoco.osmesa set PYOPENGL_PLATFORM on import; undo a failed
        # attempt's choice while PyOpenGL has not yet fixed it for the process.
        platform = os.environ.get("PYOPENGL_PLATFORM")
        try:
            _gl_context(name, 8, 8).free()
        except Exception as err:
            errors.append(f"{name}: {type(err).__name__}: {err}")
            if "OpenGL.platform" not in sys.modules:
                if platform is None:
                    os.environ.pop("PYOPENGL_PLATFORM", None)
                else:
                    os.environ["PYOPENGL_PLATFORM"] = platform
            continue
        os.environ["MUJOCO_GL"] = name
        _gl_backend = name
        return name
    raise RenderingError(
        f"no OpenGL backend works for MuJoCo rendering; tried {', '.join(candidates)}:\n  "
        + "\n  ".join(errors)
        + f"\n{_INSTALL_HINT}"
    )


# --- panels ------------------------------------------------------------------------


def _describe(task: Mapping[str, Any]) -> str:
    parts = []
    for key, value in task.items():
        if isinstance(value, Sequence) and not isinstance(value, str):
            parts.append(f"{key}=({', '.join(f'{v:.2f}' for v in value)})")
        else:
            parts.append(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


class _Panel:
    """One rollout: an env on one task, driven by one parameter set, and its current frame."""

    def __init__(
        self,
        env_id: str,
        task: Mapping[str, Any],
        params: Params,
        caption: str,
        size: tuple[int, int],
        env_kwargs: Mapping[str, Any],
    ) -> None:
        creator = load_env_creator(gym.spec(env_id).entry_point)
        # A metarl family says how it renders; any other env is taken for a MuJoCo one.
        if getattr(creator, "render_needs_opengl", True):
            ensure_gl_backend()
        self.env = gym.make(
            env_id,
            render_mode="rgb_array",
            width=size[0],
            height=size[1],
            **getattr(creator, "render_kwargs", {}),
            **env_kwargs,
        )
        self.env.unwrapped.task = task  # ValueError naming the key for a bad task
        self.task, self.params, self.caption, self.size = dict(task), params, caption, size
        self.obs: np.ndarray | None = None
        self.total, self.steps, self.done = 0.0, 0, False
        self.noise: torch.Generator | None = None

    def reset(self, seed: int, deterministic: bool) -> None:
        self.obs, _ = self.env.reset(seed=seed)
        # Every panel draws the same noise stream, so panels differ only by their parameters.
        self.noise = None if deterministic else torch.Generator().manual_seed(seed)

    def step(self, policy: GaussianMLPPolicy, max_steps: int | None) -> None:
        obs = torch.as_tensor(self.obs, dtype=torch.float32)
        with torch.no_grad():
            dist = distribution(policy, self.params, obs)
            if self.noise is None:
                action = dist.mean.numpy()
            else:
                # Sampled as the sampler samples: a meta-trained policy's gait can rely
                # on its exploration noise, and its mean action alone may not move at all.
                eps = torch.randn(dist.mean.shape, generator=self.noise)
                action = (dist.mean + dist.stddev * eps).numpy()
        space = self.env.action_space
        action = np.clip(action, space.low, space.high)  # as the sampler does
        self.obs, reward, terminated, truncated, _ = self.env.step(action)
        self.total += float(reward)
        self.steps += 1
        self.done = terminated or truncated or (max_steps is not None and self.steps >= max_steps)

    def frame(self) -> np.ndarray:
        try:
            image = self.env.render()
        except Exception as err:  # the GL context can still fail past the probe
            raise RenderingError(f"rendering failed: {err}\n{_INSTALL_HINT}") from err
        image = np.asarray(image, dtype=np.uint8)
        state = "done" if self.done else f"t={self.steps}"
        lines = [self.caption, _describe(self.task), f"{state}  return {self.total:.1f}"]
        return _caption(image, lines)

    def close(self) -> None:
        self.env.close()


def _caption(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The image with ``lines`` in white on a dark box in its top-left corner."""
    pil = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(pil, "RGBA")
    font = ImageFont.load_default()
    text = "\n".join(lines)
    *_, right, bottom = draw.multiline_textbbox((4, 3), text, font=font, spacing=2)
    draw.rectangle([0, 0, right + 4, bottom + 4], fill=(0, 0, 0, 140))
    draw.multiline_text((4, 3), text, font=font, fill=(255, 255, 255), spacing=2)
    return np.asarray(pil)


def _tile(frames: Sequence[Sequence[np.ndarray]], even: bool) -> np.ndarray:
    """Rows of panels as one image, padded to even sides when the codec needs it."""
    grid = np.concatenate([np.concatenate(row, axis=1) for row in frames], axis=0)
    if even:
        pad_h, pad_w = grid.shape[0] % 2, grid.shape[1] % 2
        grid = np.pad(grid, ((0, pad_h), (0, pad_w), (0, 0)))
    return grid


def _writer(out: Path, fps: float):
    import imageio.v2 as imageio

    if out.suffix.lower() == ".gif":
        # loop=0: repeat forever; duration per frame in milliseconds
        return imageio.get_writer(out, mode="I", duration=1000 / fps, loop=0)
    # yuv420p (what players expect) needs even sides; _tile pads them, so
    # macro_block_size=2 keeps imageio from resizing the frames.
    return imageio.get_writer(
        out, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
        macro_block_size=2,
    )  # fmt: skip


def _per_task(
    policy: GaussianMLPPolicy, params: Params, num_tasks: int, column: int
) -> list[Params]:
    """One parameter dict per task from shared or task-stacked ``params``.

    A tensor shaped like the policy's own is shared by every task; one with a
    leading axis of ``num_tasks`` in front of that shape gives row ``k`` its
    ``k``-th slice. Names are checked one by one, so shared and stacked tensors
    may mix in one dict.
    """
    rows: list[Params] = [{} for _ in range(num_tasks)]
    for name, value in params.items():
        try:
            own = tuple(policy.get_parameter(name).shape)
        except AttributeError as err:
            raise ValueError(
                f"params_list[{column}] has {name!r}, which is not a parameter of the policy"
            ) from err
        shape = tuple(value.shape)
        if shape == own:
            for row in rows:
                row[name] = value
        elif shape == (num_tasks, *own):
            for k, row in enumerate(rows):
                row[name] = value[k]
        else:
            raise ValueError(
                f"params_list[{column}][{name!r}] has shape {shape}; expected {own} (shared by "
                f"all tasks) or {(num_tasks, *own)} (stacked over the {num_tasks} tasks)"
            )
    return rows


def _default_captions(count: int) -> list[str]:
    return ["before adaptation"] + [f"after {k} step{'s' * (k > 1)}" for k in range(1, count)]


def render_adaptation(
    env_id: str,
    policy: GaussianMLPPolicy,
    params_list: Sequence[Params],
    tasks: Sequence[Mapping[str, Any]],
    captions: Sequence[str] | None = None,
    *,
    out: str | os.PathLike[str],
    seed: int = 0,
    fps: int = 20,
    size: tuple[int, int] = (480, 360),
    max_steps: int | None = None,
    deterministic: bool = False,
    env_kwargs: Mapping[str, Any] | None = None,
    stride: int = 1,
) -> Path:
    """Render each task (rows) under each parameter set (columns) into one video.

    Every panel resets with the same ``seed``, so all panels of a row start from
    the same state and differ only by their parameters. Actions are sampled as
    the sampler samples them (each panel from the same noise stream, seeded by
    ``seed``), so the video shows the behaviour the returns measure;
    ``deterministic=True`` shows the policy's mean action instead. An episode ends
    at termination, at the env's registered horizon, or after ``max_steps``;
    a panel that ended keeps its last frame (marked ``done``) while the others
    run on. The video has ``1 + the longest episode's steps`` frames: the
    initial state, then the state after each step. Each panel is captioned with
    its caption, the task, the step and the undiscounted return so far.

    Args:
        env_id: a registered id (metarl's, or any env that renders ``rgb_array``).
        policy: the policy module the parameter sets belong to.
        params_list: one parameter dict per column (e.g. ``[theta, phi_1]``). Each
            tensor is either shaped like the policy's own (shared by all tasks) or
            stacked with a leading task axis of ``len(tasks)``, as
            :func:`~metarl.policies.stack_params` and
            :func:`~metarl.adaptation.adapt` on stacked episodes give; row ``k``
            then uses ``{name: p[k]}``.
        tasks: one task dict per row.
        captions: one label per column; default ``before adaptation``,
            ``after 1 step``, ... (``params_list[k]`` taken as after ``k`` steps).
        out: ``.mp4`` (H.264 through imageio's ffmpeg plugin) or ``.gif``.
        seed: reset seed of every panel.
        fps: frames per second of the video.
        size: ``(width, height)`` of one panel in pixels.
        max_steps: cap on the steps per episode.
        deterministic: act with the mean instead of sampling.
        env_kwargs: constructor keywords of the env (its options), as in training.
        stride: keep every ``stride``-th frame (each shown ``stride`` times as long):
            a small GIF at full panel size, rather than small panels.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: an unknown suffix, mismatched lengths, empty inputs, a bad task,
            or a parameter neither shared nor stacked over ``len(tasks)`` tasks.
        RenderingError: no OpenGL backend works (MuJoCo envs only).
    """
    out = Path(out)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(
            f"cannot write {out}: unknown video suffix {out.suffix!r}; use one of {list(VIDEO_SUFFIXES)}"
        )
    if not params_list or not tasks:
        raise InputError("render_adaptation needs at least one parameter set and one task")
    captions = list(captions) if captions is not None else _default_captions(len(params_list))
    if len(captions) != len(params_list):
        raise InputError(f"got {len(captions)} captions for {len(params_list)} parameter sets")
    if max_steps is not None and max_steps <= 0:
        raise InputError(f"max_steps must be positive, got {max_steps}")
    if fps <= 0 or min(size) <= 0:
        raise InputError(f"fps and size must be positive, got fps={fps}, size={size}")
    if stride < 1:
        raise InputError(f"stride must be at least 1, got {stride}")
    size = (int(size[0]), int(size[1]))

    # columns[c][k]: the parameters of task k in column c
    columns = [_per_task(policy, p, len(tasks), c) for c, p in enumerate(params_list)]

    panels: list[list[_Panel]] = []
    try:
        for k, task in enumerate(tasks):
            panels.append([])
            for column, caption in zip(columns, captions, strict=True):
                panels[-1].append(_Panel(env_id, task, column[k], caption, size, env_kwargs or {}))
        flat = [panel for row in panels for panel in row]
        for panel in flat:
            panel.reset(seed, deterministic)

        out.parent.mkdir(parents=True, exist_ok=True)
        even = out.suffix.lower() == ".mp4"
        current = [[panel.frame() for panel in row] for row in panels]
        with _writer(out, fps / stride) as writer:
            writer.append_data(_tile(current, even))
            frame, stale = 0, set()  # panels stepped since their frame was last drawn
            while not all(panel.done for panel in flat):
                frame += 1
                for r, row in enumerate(panels):
                    for c, panel in enumerate(row):
                        if not panel.done:
                            panel.step(policy, max_steps)
                            stale.add((r, c))
                # Every stride-th frame, and the last one, with every panel up to date.
                if frame % stride == 0 or all(panel.done for panel in flat):
                    for r, c in sorted(stale):
                        current[r][c] = panels[r][c].frame()
                    stale.clear()
                    writer.append_data(_tile(current, even))
    finally:
        for row in panels:
            for panel in row:
                panel.close()
    return out
