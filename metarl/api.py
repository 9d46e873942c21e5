"""The Python API for the three uses: meta-train, adapt to a new task and roll out, render.

``metarl.train`` is :func:`metarl.trainer.train` (the training loop's own module);
the rest lives here.

Everything here is built on the modules the command line uses (the trainer, the
sampler, the adaptation path of evaluation, the renderer); nothing is
implemented twice::

    import metarl

    config = metarl.load_config("experiments/configs/navigation2d.yaml", iterations=20)
    run_dir = metarl.train(config, "runs/nav")
    run = metarl.load_run(run_dir)
    adapted = run.adapt({"goal": [0.3, -0.2]}, steps=1)
    print(adapted.returns)  # mean return before adaptation, after one step
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metarl.checkpoint import load_policy
from metarl.config import Config
from metarl.config import load_config as _load_config
from metarl.episodes import Episodes
from metarl.errors import InputError
from metarl.policies import GaussianMLPPolicy, Params

__all__ = ["Adapted", "Run", "load_config", "load_run"]


def load_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = (), **values: Any
) -> Config:
    """A config from YAML, checked, with overrides.

    Args:
        path: the YAML file (``experiments/configs/*.yaml``).
        overrides: ``"a.b=value"`` strings, as ``metarl train --set``.
        **values: top-level keys to replace; a mapping value is merged into the
            file's mapping (``policy={"hidden_sizes": [64, 64]}`` keeps the
            other policy keys).

    Raises:
        ConfigError: naming the dotted key at fault.
    """
    dotted = list(overrides)
    for key, value in values.items():
        dotted += _dotted(key, value)
    return _load_config(path, dotted)


def _dotted(key: str, value: Any) -> list[str]:
    import yaml

    if isinstance(value, Mapping) and key not in ("env_kwargs",):
        return [item for k, v in value.items() for item in _dotted(f"{key}.{k}", v)]
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return [f"{key}={text.removesuffix('...').strip()}"]


@dataclass(frozen=True)
class Adapted:
    """The result of :meth:`Run.adapt` on one task.

    Attributes:
        params: the parameters after the last step (shaped like the policy's own).
        history: the parameters before adaptation and after each step.
        returns: the mean return of the episodes sampled with each entry of
            ``history`` (``returns[0]`` before adaptation, ``returns[k]`` after ``k`` steps).
    """

    params: Params
    history: list[Params]
    returns: list[float]


class Run:
    """A meta-training run directory: its config and meta-trained policy, ready to adapt.

    Build it with :func:`load_run`.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        config, policy, state = load_policy(self.run_dir)
        self.config: Config = config
        self.policy: GaussianMLPPolicy = policy
        self._state = state
        self.iterations: int = int(state["iteration"])

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}, env={self.config.env}, iterations={self.iterations})"

    def _sampler(self, num_tasks: int, episodes: int):
        from metarl.sampling import make_sampler

        if episodes < 1:
            raise InputError(f"episodes must be at least 1, got {episodes}")
        c = self.config
        return make_sampler(c.env, num_tasks, episodes, c.horizon, c.sampler, c.env_kwargs)

    def adapt(
        self, task: Mapping[str, Any], episodes: int = 20, steps: int = 1, seed: int = 0
    ) -> Adapted:
        """Adapt the policy to ``task`` with ``steps`` policy-gradient steps, as evaluation does.

        Each step samples ``episodes`` fresh episodes with the current parameters
        and takes one inner step on them (the trained step sizes, then half the
        last, as :func:`metarl.evaluation.adaptation_curve`); the same ``seed``
        gives the same episodes and parameters as ``metarl evaluate`` for that task.

        Raises:
            ValueError: a task that does not fit the env (naming the key), or bad sizes.
        """
        from metarl.evaluation import adaptation_curve
        from metarl.meta_learners import load_meta_learner

        if steps < 0:
            raise InputError(f"steps must be at least 0, got {steps}")
        task = self._check_task(task)
        with self._sampler(1, episodes) as sampler:
            curve, history = adaptation_curve(
                self.policy,
                sampler,
                [task],
                steps,
                self.config,
                seed,
                load_meta_learner(self.config, self.policy, self._state),
            )
        single = [history[0]] + [{n: p[0] for n, p in h.items()} for h in history[1:]]
        return Adapted(
            params=single[-1],
            history=single,
            returns=[values[0] for values in curve],
        )

    def rollout(
        self,
        task: Mapping[str, Any],
        params: Params | None = None,
        episodes: int = 20,
        seed: int = 0,
    ) -> tuple[Episodes, float]:
        """``episodes`` episodes on ``task`` with ``params`` (default: the meta-trained ones),
        and their mean undiscounted return."""
        task = self._check_task(task)
        with self._sampler(1, episodes) as sampler:
            collected = sampler.sample(self.policy, params, [task], seed=seed)[0]
        return collected, float(collected.episode_returns.mean())

    def evaluate(
        self,
        tasks: int = 40,
        steps: int = 3,
        episodes: int = 20,
        seed: int = 1,
        baselines_dir: str | os.PathLike[str] | None = None,
        out: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """``metarl evaluate`` on this run: held-out tasks, 0..``steps`` steps, every subgroup."""
        from metarl.evaluation import evaluate

        return evaluate(self.run_dir, tasks, steps, episodes, seed, baselines_dir, out)

    def render(
        self,
        task: Mapping[str, Any],
        path: str | os.PathLike[str],
        steps: int = 1,
        seed: int = 1,
        size: tuple[int, int] = (480, 360),
        max_steps: int | None = None,
    ) -> Path:
        """A video of the policy on ``task`` before adaptation and after each of ``steps`` steps,
        side by side (``.mp4`` or ``.gif``), as ``metarl render``."""
        from metarl.rendering import render_adaptation

        adapted = self.adapt(task, self.config.episodes_per_task, steps, seed)
        return render_adaptation(
            self.config.env,
            self.policy,
            adapted.history,
            [dict(task)],
            out=path,
            seed=seed,
            size=size,
            max_steps=max_steps,
            env_kwargs=self.config.env_kwargs,
        )

    def _check_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        import gymnasium as gym

        env = gym.make(self.config.env, **self.config.env_kwargs).unwrapped
        env.task = task  # ValueError naming the key for a bad task
        task = env.task
        env.close()
        return task


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """The run in ``run_dir`` (its ``config.yaml`` and ``checkpoints/latest.pt``).

    Raises:
        CheckpointError: a missing, foreign or unsafe run directory or checkpoint.
    """
    return Run(run_dir)
