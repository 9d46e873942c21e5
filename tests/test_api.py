"""The top-level Python API: load_config, train, load_run and the Run's methods."""

from __future__ import annotations

import pydoc

import gymnasium as gym
import pytest
import torch
from conftest import CONFIGS, tiny_navigation_config

import metarl
from metarl.config import ConfigError
from metarl.evaluation import adaptation_curve


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> metarl.Run:
    path = tmp_path_factory.mktemp("api") / "run"
    return metarl.load_run(metarl.train(tiny_navigation_config(), path, progress=False))


def test_load_config_merges_values_and_names_bad_keys():
    config = metarl.load_config(
        CONFIGS / "halfcheetah-dir.yaml",
        ["seed=3"],
        iterations=7,
        policy={"hidden_sizes": [64, 64]},
        env_kwargs={"exclude_current_positions_from_observation": False},
    )
    assert (config.seed, config.iterations, config.policy.hidden_sizes) == (3, 7, [64, 64])
    assert config.policy.activation == "tanh"  # the file's other policy keys stay
    assert config.env_kwargs == {"exclude_current_positions_from_observation": False}
    with pytest.raises(ConfigError, match=r"policy\.hidden_size"):
        metarl.load_config(CONFIGS / "halfcheetah-dir.yaml", policy={"hidden_size": [8]})


def test_adapt_gives_the_parameters_evaluation_computes(run):
    task = {"goal": [0.3, -0.2]}
    adapted = run.adapt(task, episodes=4, steps=2, seed=5)
    with run._sampler(1, 4) as sampler:
        curve, history = adaptation_curve(run.policy, sampler, [task], 2, run.config, seed=5)
    assert len(adapted.history) == 3 and len(adapted.returns) == 3
    for mine, theirs in zip(adapted.history[1:], history[1:], strict=True):
        for name, value in theirs.items():
            torch.testing.assert_close(mine[name], value[0], rtol=0, atol=0)
    assert adapted.returns == [values[0] for values in curve]
    assert adapted.params is adapted.history[-1]
    assert adapted.params["log_std"].shape == run.policy.log_std.shape


def test_rollout_uses_the_given_parameters(run):
    task = {"goal": [0.3, -0.2]}
    adapted = run.adapt(task, episodes=4, steps=1, seed=0)
    episodes, mean = run.rollout(task, adapted.params, episodes=4, seed=0)
    assert episodes.rewards.shape == (run.config.horizon, 4)
    assert mean == pytest.approx(float(episodes.episode_returns.mean()))
    _, unadapted = run.rollout(task, None, episodes=4, seed=0)
    assert mean != pytest.approx(unadapted)


def test_bad_task_and_sizes_name_the_problem(run):
    with pytest.raises(ValueError, match="goal"):
        run.adapt({"goal": [3.0, 0.0]})
    with pytest.raises(ValueError, match="velocity"):
        run.rollout({"velocity": 1.0})
    with pytest.raises(ValueError, match="episodes"):
        run.adapt({"goal": [0.0, 0.0]}, episodes=0)
    with pytest.raises(ValueError, match="steps"):
        run.adapt({"goal": [0.0, 0.0]}, steps=-1)


def test_help_lists_the_api_with_one_line_docs():
    text = pydoc.render_doc(metarl, renderer=pydoc.plaintext)
    for name in ("load_config", "train", "load_run", "Run", "Adapted"):
        assert name in metarl.__all__
        assert name in text
        assert getattr(metarl, name).__doc__.strip(), f"{name} needs a docstring"


def test_registers_the_envs():
    assert "metarl/HalfCheetahDir-v0" in gym.registry
