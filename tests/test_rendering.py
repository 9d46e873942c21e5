"""Adaptation videos: frame counts, layout, content, and the OpenGL backend choice."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

import envs.navigation
import metarl.rendering as rendering
from metarl.policies import GaussianMLPPolicy, params_of, stack_params
from metarl.rendering import RenderingError, ensure_gl_backend, render_adaptation


def _policy_and_params(obs_dim: int, act_dim: int):
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes=(8,), init_std=0.1)
    theta = {k: v.detach() for k, v in params_of(policy).items()}
    phi = {k: v + 0.05 for k, v in theta.items()}
    return policy, [theta, phi]


def _varied(image: np.ndarray) -> bool:
    return len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 5


def test_navigation_gif(tmp_path):
    policy, params = _policy_and_params(2, 2)
    tasks = [{"goal": [0.3, -0.2]}, {"goal": [-0.4, 0.4]}]
    out = render_adaptation(
        "metarl/Navigation2D-v0", policy, params, tasks, out=tmp_path / "nav.gif",
        size=(64, 48), max_steps=5,
    )  # fmt: skip
    frames = imageio.mimread(out)
    assert len(frames) == 6  # the initial state, then one per step
    assert frames[0].shape[:2] == (2 * 48, 2 * 64)  # rows = tasks, columns = params
    assert _varied(frames[-1])
    # The agent moves: the drawing below the caption changes over the episode.
    assert not np.array_equal(frames[0][30:], frames[-1][30:])


def test_stacked_params_are_per_task(tmp_path, monkeypatch):
    policy, (theta, _) = _policy_and_params(2, 2)
    bias = "mean.2.bias"  # the output layer's bias: the mean action, nearly
    rights = {**theta, bias: torch.tensor([5.0, 0.0])}  # saturates to +max_step in x
    lefts = {**theta, bias: torch.tensor([-5.0, 0.0])}
    tasks = [{"goal": [0.3, -0.2]}, {"goal": [-0.4, 0.4]}]
    ends = {}  # (goal, column) -> last position drawn

    def record(trail, goal, size):
        ends.setdefault(tuple(goal), []).append(np.asarray(trail[-1]))
        return np.zeros((size[1], size[0], 3), dtype=np.uint8)

    monkeypatch.setattr(envs.navigation, "top_view", record)
    render_adaptation(
        "metarl/Navigation2D-v0", policy, [theta, stack_params([rights, lefts])], tasks,
        out=tmp_path / "nav.gif", size=(16, 16), max_steps=3,
    )  # fmt: skip
    # Frames are drawn row by row, column by column; the last two per row are the final ones.
    theta_0, stacked_0 = ends[(0.3, -0.2)][-2:]
    theta_1, stacked_1 = ends[(-0.4, 0.4)][-2:]
    np.testing.assert_allclose(theta_0, theta_1)  # shared theta: the same path in both rows
    assert stacked_0[0] > 0.25 and stacked_1[0] < -0.25  # row 0 went right, row 1 left


def test_params_with_a_wrong_task_axis(tmp_path):
    policy, (theta, _) = _policy_and_params(2, 2)
    three = stack_params([theta] * 3)
    with pytest.raises(ValueError, match=r"log_std.*\(3, 2\).*2 tasks"):
        render_adaptation(
            "metarl/Navigation2D-v0", policy, [theta, three],
            [{"goal": [0.1, 0.1]}, {"goal": [0.2, 0.2]}], out=tmp_path / "v.gif",
        )  # fmt: skip
    assert not (tmp_path / "v.gif").exists()


def test_navigation_runs_to_the_horizon(tmp_path):
    policy, params = _policy_and_params(2, 2)
    out = render_adaptation(
        "metarl/Navigation2D-v0", policy, params[:1], [{"goal": [0.1, 0.1]}],
        out=tmp_path / "nav.gif", size=(32, 32),
    )  # fmt: skip
    assert len(imageio.mimread(out)) == 101  # the registered horizon is 100


def test_half_cheetah_mp4(tmp_path):
    policy, params = _policy_and_params(17, 6)
    out = render_adaptation(
        "metarl/HalfCheetahVel-v0", policy, params, [{"velocity": 1.0}], ["theta", "phi"],
        out=tmp_path / "cheetah.mp4", size=(64, 48), max_steps=10,
    )  # fmt: skip
    with imageio.get_reader(out, format="FFMPEG") as reader:
        # not list(reader): its len() is inf for a stream, and list() preallocates from it
        frames = [frame for frame in reader]
    assert len(frames) == 11
    assert frames[0].shape == (48, 128, 3)
    for frame in (frames[0], frames[-1]):
        # Below the caption box is the MuJoCo picture; a dead GL context gives one colour.
        assert _varied(frame[32:, :64]) and _varied(frame[32:, 64:])


def test_bad_arguments(tmp_path):
    policy, params = _policy_and_params(2, 2)
    task = [{"goal": [0.0, 0.0]}]
    with pytest.raises(ValueError, match=r"\.avi"):
        render_adaptation("metarl/Navigation2D-v0", policy, params, task, out=tmp_path / "v.avi")
    assert not (tmp_path / "v.avi").exists()
    with pytest.raises(ValueError, match="captions"):
        render_adaptation(
            "metarl/Navigation2D-v0", policy, params, task, ["one"], out=tmp_path / "v.gif"
        )
    with pytest.raises(ValueError, match="goal"):
        render_adaptation(
            "metarl/Navigation2D-v0", policy, params, [{"goal": [3.0, 0.0]}], out=tmp_path / "v.gif"
        )


@pytest.fixture
def no_gl_choice(monkeypatch):
    """MUJOCO_GL and DISPLAY unset, nothing probed yet (restored afterwards)."""
    monkeypatch.setenv("MUJOCO_GL", "x")
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setenv("DISPLAY", "x")
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setattr(rendering, "_gl_backend", None)
    return monkeypatch


def test_headless_picks_egl_first(no_gl_choice):
    tried = []

    class Context:
        def free(self):
            pass

    def fake(name, width, height):
        tried.append(name)
        return Context()

    no_gl_choice.setattr(rendering, "_gl_context", fake)
    assert ensure_gl_backend() == "egl"
    assert tried == ["egl"]
    assert rendering.os.environ["MUJOCO_GL"] == "egl"


def test_no_backend_names_what_was_tried(no_gl_choice):
    def broken(name, width, height):
        raise ImportError(f"no {name} here")

    no_gl_choice.setattr(rendering, "_gl_context", broken)
    with pytest.raises(RenderingError) as err:
        ensure_gl_backend()
    message = str(err.value)
    for text in ("egl", "osmesa", "glfw", "no osmesa here", "libegl1", "libosmesa6"):
        assert text in message


def test_unknown_mujoco_gl(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "vulkan")
    monkeypatch.setattr(rendering, "_gl_backend", None)
    with pytest.raises(RenderingError, match="vulkan"):
        ensure_gl_backend()


def test_real_backend_works_here():
    # This sandbox renders headless through EGL; a failure here means videos cannot be made.
    assert ensure_gl_backend() in rendering.GL_BACKENDS


def test_stride_keeps_every_nth_frame_and_the_last(tmp_path):
    policy, params = _policy_and_params(2, 2)
    out = render_adaptation(
        "metarl/Navigation2D-v0", policy, params[:1], [{"goal": [0.1, 0.1]}],
        out=tmp_path / "s.gif", size=(32, 32), max_steps=10, stride=3,
    )  # fmt: skip
    frames = imageio.mimread(out)
    # The initial frame, then steps 3, 6, 9, and the last step (10).
    assert len(frames) == 5
    with pytest.raises(ValueError, match="stride"):
        render_adaptation(
            "metarl/Navigation2D-v0", policy, params[:1], [{"goal": [0.1, 0.1]}],
            out=tmp_path / "t.gif", stride=0,
        )  # fmt: skip


def test_the_last_strided_frame_shows_every_panel_at_its_end(tmp_path, monkeypatch):
    """Panels that end on a skipped frame are drawn at their end in the last frame."""
    policy, params = _policy_and_params(2, 2)
    drawn = []
    real = rendering._Panel.frame

    def frame(panel):
        drawn.append(panel.steps)
        return real(panel)

    monkeypatch.setattr(rendering._Panel, "frame", frame)
    render_adaptation(
        "metarl/Navigation2D-v0", policy, params, [{"goal": [0.1, 0.1]}],
        out=tmp_path / "s.gif", size=(32, 32), max_steps=10, stride=3,
    )  # fmt: skip
    # Two panels: drawn at t=0, then at steps 3, 6, 9 and both at the end, step 10.
    assert drawn == [0, 0, 3, 3, 6, 6, 9, 9, 10, 10]
